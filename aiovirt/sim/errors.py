"""The simulated toolstack's refusals: what xend answers when it will not do a request."""

from __future__ import annotations

__all__ = ["NoSuchDomain", "SimError"]


class SimError(Exception):
    """A request the simulated toolstack refuses; ``str()`` is xend's error text."""


class NoSuchDomain(SimError):
    """No domain answers to ``ref`` (a name or an id)."""

    def __init__(self, ref: object) -> None:
        super().__init__(f"No such domain {ref}")
        self.ref = ref
