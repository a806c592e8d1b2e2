"""A domain of a connected node, and what ``info()`` returns.

:class:`Domain` is defined with :class:`~aiovirt.connection.Connection` in
:mod:`aiovirt.connection` (each refers to the other); this module names it for the readers
and importers of ``aiovirt.domain``.
"""

from __future__ import annotations

from aiovirt.connection import Domain
from aiovirt.info import DomainInfo
from aiovirt.protocol.states import DomainState

__all__ = ["Domain", "DomainInfo", "DomainState"]
