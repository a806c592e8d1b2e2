"""The library version: libvirt's encoding, and the package metadata agree."""

from __future__ import annotations

import importlib.metadata

import aiovirt


def test_get_version_agrees_with_package_metadata() -> None:
    major, minor, release = (int(p) for p in importlib.metadata.version("aiovirt").split(".")[:3])
    assert aiovirt.get_version() == major * 1_000_000 + minor * 1_000 + release
    assert aiovirt.__version__ == importlib.metadata.version("aiovirt")


def test_get_version_is_an_int() -> None:
    assert isinstance(aiovirt.get_version(), int)
    assert aiovirt.get_version() > 0
