"""The library version, kept in one place and checked against the package metadata by tests."""

__version__ = "0.1.0"


def get_version() -> int:
    """Return the library version as libvirt encodes it: major*1,000,000 + minor*1,000 + release."""
    major, minor, release = (int(p) for p in __version__.split(".")[:3])
    return major * 1_000_000 + minor * 1_000 + release
