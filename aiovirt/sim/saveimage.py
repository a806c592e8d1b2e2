"""The file ``xm save`` writes: xend's guest record followed by the memory image.

Layout: ``LinuxGuestRecord``, a 4-byte big-endian length, the domain's S-expression, then a
small stand-in for the ``xc_save`` image (the page count as a native unsigned long, then one
zero page). Reading checks the header as xend's restore did, with its messages.
"""

from __future__ import annotations

import asyncio
import os
import struct
from pathlib import Path

from aiovirt.sim.errors import SimError

__all__ = ["SAVE_MAGIC", "decode_save_image", "encode_save_image", "read_save_image",
           "write_save_image"]

SAVE_MAGIC = b"LinuxGuestRecord"
_HEADER = len(SAVE_MAGIC) + 4


def encode_save_image(config: bytes, pages: int) -> bytes:
    """Return the save file of a domain whose record is ``config`` and that holds ``pages``."""
    return (SAVE_MAGIC + struct.pack(">I", len(config)) + config + struct.pack("=L", pages)
            + b"\0" * 4096)


def decode_save_image(blob: bytes, path: str | os.PathLike[str]) -> bytes:
    """Return the domain record of a save file read from ``path``; SimError if it is not one."""
    magic = blob[:len(SAVE_MAGIC)]
    if magic != SAVE_MAGIC:
        raise SimError(
            f"not a valid guest state file: found {magic.decode('latin-1')!r}")
    if len(blob) < _HEADER:
        raise SimError(f"can't read guest state file {os.fspath(path)}: truncated header")
    (length,) = struct.unpack(">I", blob[len(SAVE_MAGIC):_HEADER])
    text = blob[_HEADER:_HEADER + length]
    if len(text) != length:
        raise SimError(f"can't read guest state file {os.fspath(path)}: truncated config")
    return text


async def write_save_image(path: str | os.PathLike[str], config: bytes, pages: int) -> None:
    """Write a save file at ``path`` off the event loop; OSError as the file system says."""
    await asyncio.to_thread(Path(path).write_bytes, encode_save_image(config, pages))


async def read_save_image(path: str | os.PathLike[str]) -> bytes:
    """Return the domain record of the save file at ``path``, read off the event loop."""
    try:
        blob = await asyncio.to_thread(Path(path).read_bytes)
    except OSError as exc:
        raise SimError(f"can't read guest state file {os.fspath(path)}: {exc}") from exc
    return decode_save_image(blob, path)
