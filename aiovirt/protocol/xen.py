"""Constants of Xen's public interface that more than one of its wires uses, defined once.

- :data:`DOMID_FIRST_RESERVED`: domain ids from here on name Xen's special domains
  (``DOMID_SELF``, ``DOMID_IO``, ...), never a guest; hypercalls never list them.
- :data:`DOMID_SELF`: "the calling domain", the first reserved id (the xenstore wire's
  ``INTRODUCE``/``IS_DOMAIN_INTRODUCED`` accept it, as the hypercalls do).
- :data:`NULL_UUID`: the all-zero UUID: Domain-0's, and the handle a backend gives when it does
  not know a domain's UUID.
- :data:`MAX_MEMORY_KIB`: the most memory (KiB) a size may say on every route: xend counts whole
  MiB and xend 3.0.x hands Xen a domain's maximum as a C ``int`` of KiB, so 2097151 MiB
  (2 TiB less 1 MiB) is the largest it can carry.
"""

from __future__ import annotations

import uuid

__all__ = ["DOMID_FIRST_RESERVED", "DOMID_SELF", "MAX_MEMORY_KIB", "NULL_UUID"]

DOMID_FIRST_RESERVED = 0x7FF0
DOMID_SELF = DOMID_FIRST_RESERVED
NULL_UUID = uuid.UUID(int=0)
MAX_MEMORY_KIB = ((1 << 31) - 1) // 1024 * 1024
