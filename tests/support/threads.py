"""Which threads are doing aiovirt's work right now (for "close leaves no thread behind").

A worker thread may outlive the executor that used it (anyio keeps idle workers for reuse),
so the promise a test can check is about work, not thread objects: no thread but the caller's
has a frame of aiovirt's code (or of a test driver wrapping it) on its stack.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import aiovirt

_OURS = (str(Path(aiovirt.__file__).resolve().parent), str(Path(__file__).resolve().parents[1]))


def threads_doing_our_work() -> list[str]:
    """Return the names of the other threads whose stack holds aiovirt's (or a test's) code."""
    names = {t.ident: t.name for t in threading.enumerate()}
    busy = []
    for ident, frame in sys._current_frames().items():
        if ident == threading.get_ident():
            continue
        f = frame
        while f is not None:
            if f.f_code.co_filename.startswith(_OURS):
                busy.append(names.get(ident, str(ident)))
                break
            f = f.f_back
    return busy
