"""Seeded differential fuzz: random request sequences, byte for byte, to a fresh real C
xenstored 4.17 and a fresh simulated one; every reply and watch event must be the same.

The sequences come from ``xs_fuzz.generate`` (paths valid and invalid, ``@`` names, permission
strings, transactions open on up to three connections at once, watches, domain ops, malformed
payloads; see that module). Both daemons are fresh for every sequence: the C daemon starts in
about 5 ms here, so isolation costs little. Only what ``xs_fuzz.normalise`` lists is
normalised (C's stale errno on a few malformed or unknown-name requests, and its assertion
crash when that errno is 0), each with the reason.

``AIOVIRT_XS_FUZZ_SEED`` and ``AIOVIRT_XS_FUZZ_COUNT`` pick other sequences; to count agreeing
sequences by hand: ``python -m tests.xenstored.xs_fuzz --count 1000``.
"""

from __future__ import annotations

import asyncio
import os

import pytest

from aiovirt.protocol.xs_wire import XsOp
from aiovirt.sim.store import XenStoreDB
from aiovirt.sim.xenstored import XenStored
from tests.support.real_xenstored import real_xenstored, require_real_xenstored
from tests.xenstored.xs_fuzz import (
    HYPERVISOR_DOMAINS,
    Sequence,
    Step,
    compare,
    format_sequence,
    normalise,
    run,
    sequences,
)

pytestmark = pytest.mark.interop

SEED = int(os.environ.get("AIOVIRT_XS_FUZZ_SEED", "0"))
COUNT = int(os.environ.get("AIOVIRT_XS_FUZZ_COUNT", "400"))


async def _both(seq: Sequence, directory: str) -> tuple[list, list]:
    with real_xenstored(f"{directory}/c", trace=False, domains=HYPERVISOR_DOMAINS) as real_path:
        db = XenStoreDB(domain_exists=HYPERVISOR_DOMAINS.__contains__)
        async with XenStored(db, f"{directory}/sim", None) as server:
            real, sim = await asyncio.gather(asyncio.to_thread(run, real_path, seq),
                                             asyncio.to_thread(run, server.socket_path, seq))
    return real, sim


async def test_random_sequences_get_the_same_frames_as_from_c_xenstored(
        short_dir: str) -> None:
    require_real_xenstored()
    failures: list[tuple[Sequence, str]] = []
    for seq in sequences(SEED, COUNT):
        real, sim = await _both(seq, short_dir)
        diff = compare(seq, real, sim)
        if diff is not None:
            failures.append((seq, diff))
    if failures:
        first_seq, _ = failures[0]
        report = "\n\n".join(diff for _, diff in failures[:10])
        pytest.fail(f"{len(failures)} of {COUNT} sequences differ from C xenstored "
                    f"(seeds {SEED}..{SEED + COUNT - 1}):\n{report}\n\n"
                    f"sequence {first_seq.seed}:\n{format_sequence(first_seq)}")


async def test_the_c_daemon_gives_the_same_record_twice(short_dir: str) -> None:
    # The harness must record what the daemon decides, not how its poll rounds fell: two
    # fresh C daemons fed the same sequences give identical records (normalised as above).
    require_real_xenstored()
    differ = []
    for seq in sequences(SEED + 10_000, 30):
        records = []
        for _ in range(2):
            with real_xenstored(f"{short_dir}/c", trace=False) as real_path:
                records.append(normalise(seq, await asyncio.to_thread(run, real_path, seq)))
        if records[0] != records[1]:
            differ.append(seq.seed)
    assert differ == []


def test_a_different_reply_is_reported() -> None:
    # The comparison itself: a changed error name, a missing event and an extra frame are
    # differences; a stale errno on a malformed READ is not.
    seq = Sequence(1, 1, [Step(0, XsOp.READ, b"/a\0"), Step(0, XsOp.READ, b"/a", stale=True)])
    real = [(0, 0, ("ERROR", 1, 0, b"ENOENT\0")), (1, 0, ("ERROR", 2, 0, b"EACCES\0"))]
    assert compare(seq, real, [(0, 0, ("ERROR", 1, 0, b"ENOENT\0")),
                               (1, 0, ("ERROR", 2, 0, b"ENOMEM\0"))]) is None
    assert compare(seq, real, [(0, 0, ("ERROR", 1, 0, b"EINVAL\0")),
                               (1, 0, ("ERROR", 2, 0, b"ENOMEM\0"))]) is not None
    assert compare(seq, real, real[:1]) is not None
    assert compare(seq, real, [*real, (2, 0, ("WATCH_EVENT", 0, 0, b"/a\0t\0"))]) is not None
    crashed = [real[0], (1, 0, ("EOF",))]
    assert compare(seq, crashed, [real[0], (1, 0, ("ERROR", 2, 0, b"ENOMEM\0"))]) is None
    assert compare(seq, crashed, [real[0], (1, 0, ("READ", 2, 0, b""))]) is not None
