"""Which backend answers each call: the table, the router that reads it, and each backend's
answers.

- :mod:`aiovirt.routing.table`: the routing table as data, and the fallback rule;
- :mod:`aiovirt.routing.router`: :class:`~aiovirt.routing.router.Router`, one per connection,
  the only reader of the table;
- :mod:`aiovirt.routing.identity`: "is this id still this domain?", asked of every answer;
- :mod:`aiovirt.routing.hypervisor`, :mod:`~aiovirt.routing.xend`,
  :mod:`~aiovirt.routing.xenstore`: what the face needs from each backend (its records made
  libvirt's values, its answer to each call it appears under).

This package imports the backends and never the face (:mod:`aiovirt.connection`); the face
imports it. It imports nothing itself, so importing one of its modules loads only what that
module needs.
"""
