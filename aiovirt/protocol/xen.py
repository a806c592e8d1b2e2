"""Constants of Xen's public interface that more than one of its wires uses, defined once.

- :data:`DOMID_FIRST_RESERVED`: domain ids from here on name Xen's special domains
  (``DOMID_SELF``, ``DOMID_IO``, ...), never a guest; hypercalls never list them.
- :data:`DOMID_SELF`: "the calling domain", the first reserved id (the xenstore wire's
  ``INTRODUCE``/``IS_DOMAIN_INTRODUCED`` accept it, as the hypercalls do).
- :data:`NULL_UUID`: the all-zero UUID: Domain-0's, and the handle a backend gives when it does
  not know a domain's UUID.
"""

from __future__ import annotations

import uuid

__all__ = ["DOMID_FIRST_RESERVED", "DOMID_SELF", "NULL_UUID"]

DOMID_FIRST_RESERVED = 0x7FF0
DOMID_SELF = DOMID_FIRST_RESERVED
NULL_UUID = uuid.UUID(int=0)
