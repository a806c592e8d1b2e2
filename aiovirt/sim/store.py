"""The simulated node's xenstore database, with the C daemon's (cxenstored 4.17) semantics.

:class:`XenStoreDB` holds the tree (values, permission lists, children in creation order),
the watches, the transactions and the set of introduced domains. Two kinds of callers use it:

- in-process code of the simulated node, through the privileged synchronous API of contract 1
  (:meth:`XenStoreDB.read`, :meth:`~XenStoreDB.write`, ...): every change fires watches exactly
  as the same change made by a client would;
- the socket server (``aiovirt.sim.xenstored``), which opens one :class:`Session` per client
  connection with :meth:`XenStoreDB.connect` and calls the ``op_*`` methods with the session and
  the transaction named by the request header.

What is emulated from C 4.17 (facts in ``xenstore-wire.md``):

- paths: relative paths resolve against ``/local/domain/<domid>`` (0 for sockets); WRITE and
  MKDIR create missing ancestors (deepest first, each with its parent's perms); only the target
  fires a watch; ``RM /`` is EINVAL; RM of a missing node is OK if its parent exists;
- generations: one global counter, bumped by every modifying access, by TRANSACTION_START and
  by each node a commit writes; DIRECTORY_PART reports the node's generation;
- watches: initial event after the WATCH reply; a change to P fires watches on P and its
  ancestors; RM fires one event per removed node, deepest first, descendants only to watches
  set exactly on them; events are pushed to the session's sink synchronously, i.e. before the
  reply of the request that caused them;
- transactions are not snapshots: a node is read live at its first touch and privately after
  that; a node found missing makes C read its ancestors up to the nearest existing one, and
  the transaction records each (so it keeps its copy of that ancestor, and a change to it
  outside is a conflict); at commit every node first touched by a read must still have the
  generation it had (missing nodes must still be missing), else EAGAIN and nothing is applied;
  on success the targets fire in first-touch order (a node first seen missing only if it
  exists after the commit); an RM whose walk meets a child the transaction's copy lists but
  that is gone answers EIO; ids are per session, 1, 2, ...;
- permissions: entry 1 is owner + default; domids are C's unsigned ``strtol`` base 0 (``b-1``
  is kept and printed back); privileged sessions bypass checks; a missing node under an
  ancestor the caller cannot reach is EACCES, not ENOENT; new nodes copy the parent's list and
  a guest creator becomes the owner; a guest may not change the owner (EPERM); a SET_PERMS
  owner that does not exist is ENOENT and entries naming a gone domain grant nothing (XSA-322;
  which domains exist is the hypervisor's answer, ``domain_exists``; the mark is for good).

Guests get C's default watch, transaction, permission-count, node-size, nodes-per-domain and
nodes-per-transaction quotas. Where it still differs from C, and why (the memory and rate
quotas, ...): ``docs/simulator.md``, "How its xenstore daemon differs from the real one".
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from aiovirt.protocol.xen import DOMID_SELF
from aiovirt.protocol.xs_wire import (
    PAYLOAD_MAX,
    Perm,
    PermAccess,
)

__all__ = [
    "NO_GENERATION",
    "EventSink",
    "Node",
    "Session",
    "StoreError",
    "Transaction",
    "Watch",
    "XenStoreDB",
]

log = logging.getLogger(__name__)

NO_GENERATION = -1
SPECIAL_EVENTS = ("@introduceDomain", "@releaseDomain")
# Access bits of a permission check (not op codes): PermAccess's read and write, plus owner.
_PERM_READ = int(PermAccess.READ)
_PERM_WRITE = int(PermAccess.WRITE)
_PERM_OWNER = 4
_PERM_ALL = _PERM_READ | _PERM_WRITE | _PERM_OWNER
_DOM0_ONLY = (Perm(0, PermAccess.NONE),)
# C 4.17's default quotas for unprivileged domains (xenstored_core.c).
QUOTA_WATCHES = 128
QUOTA_TRANSACTIONS = 10
QUOTA_PERMS = 5
QUOTA_NODE_SIZE = 2048
QUOTA_NODES = 1000  # nodes a guest's domain may own
QUOTA_TRANS_NODES = 1024  # nodes a guest's transaction may touch
_RECORD_HEADER = 24  # sizeof(struct xs_tdb_record_hdr); each perm entry is 8 bytes

#: Called with (event path, token) for every event a session's watches produce.
EventSink = Callable[[str, str], None]


class StoreError(Exception):
    """A request the daemon answers with an error; ``name`` is the errno name ("ENOENT")."""

    def __init__(self, name: str, detail: str = "") -> None:
        super().__init__(f"{name}: {detail}" if detail else name)
        self.name = name
        self.detail = detail


class _Ignored(Perm):
    """A permission entry C marks XS_PERM_IGNORE (XSA-322): its domain did not exist when the
    entry was set, or went away since. It is listed as before and grants nothing, for good:
    a later domain with the same id does not inherit it."""

    __slots__ = ()


class Node:
    """One node: raw value, permission list (entry 1 = owner), children in creation order."""

    __slots__ = ("children", "generation", "perms", "value")

    def __init__(self, value: bytes, perms: tuple[Perm, ...], generation: int,
                 children: dict[str, None] | None = None) -> None:
        self.value = value
        self.perms = perms
        self.generation = generation
        self.children: dict[str, None] = {} if children is None else children

    def copy(self) -> Node:
        """Return a private copy (the children dict is copied, names are shared)."""
        return Node(self.value, self.perms, self.generation, dict(self.children))

    def directory_payload(self) -> bytes:
        """Return the DIRECTORY payload: each child name NUL-terminated."""
        if not self.children:
            return b""
        return ("\0".join(self.children) + "\0").encode("utf-8", "surrogateescape")


@dataclass(slots=True)
class _Access:
    """A node as a transaction sees it after its first touch."""

    node: Node | None
    check_generation: int | None  # None: first touched by a write, not checked at commit
    modified: bool = False
    fire: bool = False
    exact: bool = False
    perms: tuple[Perm, ...] | None = None  # at the first touch; None if it was missing
    owner: int | None = None  # the owner at the first touch; None if it was missing


@dataclass(slots=True)
class Transaction:
    """One open C-style transaction of a session."""

    id: int
    session: Session
    accessed: dict[str, _Access] = field(default_factory=dict)
    failed: bool = False  # a write in it failed: its commit answers ENOMEM, as C's does
    node_created: bool = False  # C's trans->node_created: the commit checks the node quota


@dataclass(frozen=True, slots=True)
class Watch:
    """A registered watch: ``path`` is canonical (or an ``@`` name), ``strip`` is how many
    leading characters of an event path to remove for a watch set with a relative path."""

    path: str
    token: str
    strip: int
    seq: int


class Session:
    """One client's state: identity, watches, open transactions, where its events go.

    ``privileged`` sessions (every socket connection of the real daemon) bypass permission
    checks. ``read_only`` sessions are refused every mutating op with EACCES (Xen 3.0's
    ``socket_ro``).
    """

    __slots__ = ("_seq", "closed", "domid", "next_tx_id", "privileged", "read_only", "sink",
                 "target", "transactions", "watches")

    def __init__(self, seq: int, sink: EventSink | None, domid: int, privileged: bool,
                 read_only: bool) -> None:
        self._seq = seq
        self.sink = sink
        self.domid = domid
        self.privileged = privileged
        self.read_only = read_only
        self.target: int | None = None
        self.watches: dict[tuple[str, str], Watch] = {}
        self.transactions: dict[int, Transaction] = {}
        self.next_tx_id = 1
        self.closed = False

    @property
    def seq(self) -> int:
        """Return the session's creation number (events reach sessions in this order)."""
        return self._seq

    @property
    def home(self) -> str:
        """Return the domain path that relative paths are resolved against."""
        return f"/local/domain/{self.domid}"

    def set_identity(self, domid: int, *, privileged: bool) -> None:
        """Act as domain ``domid`` from now on (tests use this to exercise guest permissions)."""
        self.domid = domid
        self.privileged = privileged


def _parent(path: str) -> str:
    """Return C's ``get_parent()``: everything before the last ``/`` after the first
    character, or ``/`` (so also for ``@`` names and malformed paths, which C walks too)."""
    cut = path.rfind("/", 1)
    return path[:cut] if cut > 0 else "/"


def _ancestors(path: str) -> Iterator[str]:
    """Yield ``path`` and each ancestor up to ``/``."""
    yield path
    while path != "/":
        path = _parent(path)
        yield path


_LONG_MIN = -(1 << 63)
_LONG_MAX = (1 << 63) - 1
_SPACE = " \t\n\v\f\r"


def _strtol(text: str, base: int) -> tuple[int, int]:
    """Return glibc's ``strtol(text, &end, base)`` for base 0 or 10 as (value, end index):
    leading white space, a sign, ``0x`` or ``0`` prefixes in base 0, saturating at the
    limits of a 64-bit long. ``end`` is 0 when no digits were read."""
    i = 0
    n = len(text)
    while i < n and text[i] in _SPACE:
        i += 1
    sign = 1
    if i < n and text[i] in "+-":
        sign = -1 if text[i] == "-" else 1
        i += 1
    if base == 0:
        if text[i:i + 2] in ("0x", "0X") and i + 2 < n and text[i + 2] in _HEX:
            base, i = 16, i + 2
        elif text[i:i + 1] == "0":
            base = 8
        else:
            base = 10
    digits = _HEX[:base] if base <= 10 else _HEX
    start = i
    while i < n and text[i] in digits:
        i += 1
    if i == start:
        return 0, 0
    value = sign * int(text[start:i], base)
    return max(_LONG_MIN, min(_LONG_MAX, value)), i


_HEX = "0123456789abcdefABCDEF"


def _atoi(text: str) -> int:
    """Return C's atoi() of ``text`` as the daemon keeps it: an unsigned 32-bit domid."""
    return _strtol(text, 10)[0] & 0xFFFFFFFF


def parse_perm(text: str) -> Perm:
    """Return the entry for one permission string as C's ``xs_strings_to_perms`` reads it:
    a letter of ``rwbn`` and a domid in ``strtol`` base 0 notation, kept as an unsigned
    32-bit number (so ``b-1`` is owner 4294967295, printed back as ``b-1``); raise EINVAL
    for anything else."""
    access = _LETTERS.get(text[:1])
    rest = text[1:]
    value, end = _strtol(rest, 0)
    if access is None or not rest or end != len(rest):
        raise StoreError("EINVAL", f"bad permission {text!r}")
    return Perm(value & 0xFFFFFFFF, access)


def perm_text(perm: Perm) -> str:
    """Return a permission entry as C prints it (``%i`` of the domid: signed)."""
    domid = perm.domid & 0xFFFFFFFF
    return f"{_LETTER_OF[perm.access]}{domid - (1 << 32) if domid & 0x80000000 else domid}"


_LETTERS = {"n": PermAccess.NONE, "r": PermAccess.READ, "w": PermAccess.WRITE,
            "b": PermAccess.BOTH}
_LETTER_OF = {v: k for k, v in _LETTERS.items()}
_PATH_CHARS = re.compile(r"[A-Za-z0-9\-/_@]*\Z")
_LOCAL_DOMAIN = re.compile(r"/local/domain/(?:-[0-9]{1,4}|[0-9]{1,5})/")
_PATH_MAX = 2048


def valid_path(path: str) -> bool:
    """Return C's ``is_valid_nodename()`` of a canonical path: absolute, no ``//``, no
    trailing ``/``, at most 2048 characters after a ``/local/domain/<n>/`` prefix, and only
    ``A-Z a-z 0-9 - / _ @``."""
    if path[:1] != "/" or (path[-1] == "/" and path != "/") or "//" in path:
        return False
    m = _LOCAL_DOMAIN.match(path)
    if len(path) > (m.end() if m else 0) + _PATH_MAX:
        return False
    return _PATH_CHARS.match(path) is not None


class XenStoreDB:
    """The in-memory xenstore: tree, watches, transactions, introduced domains.

    The synchronous methods without the ``op_`` prefix are the privileged in-process API
    (contract 1); they raise :class:`StoreError` and fire watches like a client's request.
    """

    def __init__(self, domain_exists: Callable[[int], bool] | None = None) -> None:
        # ``domain_exists`` is the hypervisor's answer (C's xc_domain_getinfo); None: every
        # domain exists, as under the reference daemon's stub.
        self._hypervisor = domain_exists
        # Domains C keeps a struct for without their being introduced (a SET_PERMS named them
        # while the hypervisor had them); they go with the domain (release_domain/forget).
        self._known: set[int] = set()
        # Initial tree and generation counter as C 4.17 leaves them after start-up (obs).
        self._nodes: dict[str, Node] = {
            "/": Node(b"", _DOM0_ONLY, 1, {"tool": None}),
            "/tool": Node(b"", _DOM0_ONLY, 2, {"xenstored": None}),
            "/tool/xenstored": Node(b"", _DOM0_ONLY, 3),
        }
        self._generation = 4
        self._owned: dict[int, int] = {0: len(self._nodes)}  # C's nbentry: nodes per owner
        self._session_seq = 0
        self._watch_seq = 0
        self._watch_index: dict[str, list[tuple[Session, Watch]]] = {}
        self._sessions: dict[int, Session] = {}
        self._introduced: set[int] = {0}
        self._special_perms: dict[str, tuple[Perm, ...]] = dict.fromkeys(SPECIAL_EVENTS,
                                                                         _DOM0_ONLY)
        self._targets: dict[int, int] = {}
        self._internal = self.connect(None)

    # ------------------------------------------------------------------ sessions

    def connect(self, sink: EventSink | None = None, *, domid: int = 0,
                privileged: bool | None = None, read_only: bool = False) -> Session:
        """Return a new session; ``sink`` receives its watch events (None drops them).

        ``privileged`` defaults to ``domid == 0``.
        """
        self._session_seq += 1
        session = Session(self._session_seq, sink, domid,
                          domid == 0 if privileged is None else privileged, read_only)
        self._sessions[session.seq] = session
        return session

    def disconnect(self, session: Session) -> None:
        """Forget ``session``: its watches and open transactions go away."""
        self._drop_watches(session)
        session.transactions.clear()
        session.closed = True
        self._sessions.pop(session.seq, None)

    @property
    def generation(self) -> int:
        """Return the next generation number the store will hand out."""
        return self._generation

    def _next_generation(self) -> int:
        gen = self._generation
        self._generation = gen + 1
        return gen

    # ------------------------------------------------------------------ path helpers

    def canonical(self, session: Session, path: str) -> str:
        """Return ``path`` made absolute for ``session`` as C's ``canonicalize()`` does:
        ``/`` paths and ``@`` names as they are, anything else under the session's home.
        Nothing is validated here (see :func:`valid_path`)."""
        if path[:1] in ("/", "@"):
            return path
        return f"{session.home}/{path}"

    def _checked(self, session: Session, path: str) -> str:
        """Return the canonical form of an in-process caller's path; EINVAL if invalid."""
        path = self.canonical(session, path)
        if path not in self._nodes and not valid_path(path):
            raise StoreError("EINVAL", f"invalid path {path!r}")
        return path

    # ------------------------------------------------------------------ permissions

    def domain_exists(self, domid: int) -> bool:
        """Return whether C would treat ``domid`` as existing: introduced, already known, or
        present in the hypervisor."""
        if domid in self._introduced or domid in self._known:
            return True
        return self._hypervisor is None or self._hypervisor(domid)

    def forget_domain(self, domid: int) -> None:
        """The hypervisor no longer has ``domid`` (C's check_domains() frees its struct)."""
        self._known.discard(domid)
        self._ignore_entries_of(domid)

    def _ignore_entries_of(self, domid: int) -> None:
        # C's domain_adjust_node_perms() marks such entries when it next reads each node (the
        # domain's struct is gone, or younger than the node); marking them all now is the
        # same, as every later write of a node reads it first.
        def mark(node: Node) -> None:
            perms = node.perms
            if any(p.domid == domid and type(p) is Perm for p in perms[1:]):
                node.perms = (perms[0], *(_Ignored(*p) if p.domid == domid else p
                                          for p in perms[1:]))

        for node in self._nodes.values():
            mark(node)
        for session in self._sessions.values():
            for tx in session.transactions.values():
                for acc in tx.accessed.values():
                    if acc.node is not None:
                        mark(acc.node)

    def _perm(self, session: Session, perms: tuple[Perm, ...]) -> int:
        if session.privileged:
            return _PERM_ALL & ~_PERM_WRITE if session.read_only else _PERM_ALL
        domid = session.domid
        target = session.target
        owner = perms[0].domid
        if owner == domid or (target is not None and owner == target):
            bits = _PERM_ALL
        else:
            bits = int(perms[0].access)
            for entry in perms[1:]:
                if type(entry) is _Ignored:  # XSA-322
                    continue
                if entry.domid == domid or (target is not None and entry.domid == target):
                    bits = int(entry.access)
                    break
        return bits & ~_PERM_WRITE if session.read_only else bits

    def _get_node(self, session: Session, tx: Transaction | None, path: str,
                  need: int) -> Node:
        """C's ``get_node()``: the node at canonical ``path`` if the caller has ``need`` on
        it, else StoreError (see :meth:`_lookup`; a missing node is ENOENT)."""
        node = self._lookup(session, tx, path, need)
        if node is None:
            raise StoreError("ENOENT", path)
        return node

    def _lookup(self, session: Session, tx: Transaction | None, path: str,
                need: int) -> Node | None:
        """C's ``get_node()``, with None for ENOENT. An invalid path (``@`` names included)
        is EINVAL before anything is read. Otherwise, when the node is missing or denies
        ``need``, C reads the ancestors up to the nearest existing one
        (``errno_from_parents()``; a transaction records each as read, so a later change to
        it is a conflict): if that one grants none of ``need`` the answer is EACCES
        (existence must not leak), else ENOENT or EACCES as the node itself says."""
        if path not in self._nodes and (tx is None or path not in tx.accessed) \
                and not valid_path(path):
            raise StoreError("EINVAL", f"invalid path {path!r}")
        node = self._read(tx, path)
        if node is not None:
            if (self._perm(session, node.perms) & need) == need:
                return node
        elif tx is None and session.privileged:
            return None  # the walk below would read nothing that matters: all is allowed
        current = path
        while True:  # ask_parents()
            current = _parent(current)
            ancestor = self._read(tx, current)
            if ancestor is not None:
                if not self._perm(session, ancestor.perms) & need:
                    raise StoreError("EACCES", path)
                break
            if current == "/":
                break
        if node is not None:
            raise StoreError("EACCES", path)
        return None

    # ------------------------------------------------------------------ node access

    def _read(self, tx: Transaction | None, path: str) -> Node | None:
        """C's ``read_node()``: the node (live, or the transaction's private copy after its
        first touch); a transaction records every node it reads, also missing ones."""
        if tx is None:
            return self._nodes.get(path)
        acc = tx.accessed.get(path)
        if acc is None:
            self._trans_node_quota(tx)
            live = self._nodes.get(path)
            if live is None:
                acc = _Access(None, NO_GENERATION)
            else:
                acc = _Access(live.copy(), live.generation, perms=live.perms,
                              owner=live.perms[0].domid)
            tx.accessed[path] = acc
        return acc.node

    def _queue(self, acc: _Access, exact: bool) -> None:
        # C's queue_watches(): a non-exact event replaces an exact one, not the other way.
        if not acc.fire:
            acc.fire = True
            acc.exact = exact
        elif not exact:
            acc.exact = False

    def _put(self, session: Session, tx: Transaction | None, path: str, node: Node,
             *, fire: bool, old_perms: tuple[Perm, ...] | None = None) -> None:
        node.generation = self._next_generation()
        if tx is None:
            live = self._nodes.get(path)
            self._count_owner(live, node, old_perms if live is node else None)
            self._nodes[path] = node
            if fire:
                self._fire(path, node.perms, old_perms)
            return
        acc = tx.accessed.get(path)
        if acc is None:
            self._trans_node_quota(tx)
            acc = tx.accessed[path] = _Access(node, None, perms=node.perms)
        acc.node = node
        acc.modified = True
        if fire:
            self._queue(acc, False)

    def _delete(self, tx: Transaction | None, path: str, old: Node, *, exact: bool) -> None:
        self._next_generation()
        if tx is None:
            self._count_owner(self._nodes.pop(path, None), None)
            self._fire(path, old.perms, exact=exact)
            return
        acc = tx.accessed.get(path)
        if acc is None:
            self._trans_node_quota(tx)
            acc = tx.accessed[path] = _Access(None, None, perms=old.perms,
                                                 owner=old.perms[0].domid)
        acc.node = None
        acc.modified = True
        self._queue(acc, exact)

    def _count_owner(self, old: Node | None, new: Node | None,
                     old_perms: tuple[Perm, ...] | None = None) -> None:
        # ``old_perms``: those ``old`` had before they were changed in place
        owned = self._owned
        if old is not None:
            owned[(old_perms or old.perms)[0].domid] -= 1
        if new is not None:
            owned[new.perms[0].domid] = owned.get(new.perms[0].domid, 0) + 1

    def owned_nodes(self, domid: int) -> int:
        """Return how many nodes ``domid`` owns (C's per-domain entry count)."""
        return self._owned.get(domid, 0)

    def _trans_node_quota(self, tx: Transaction) -> None:
        # C's access_node(): a guest's transaction touching a 1025th node fails, for good.
        if len(tx.accessed) >= QUOTA_TRANS_NODES and not tx.session.privileged:
            tx.failed = True
            raise StoreError("ENOSPC", f"transaction {tx.id} touches too many nodes")

    def _domid_unprivileged(self, domid: int) -> bool:
        return domid != 0

    # ------------------------------------------------------------------ events

    def _fire(self, path: str, perms: tuple[Perm, ...] | None,
              old_perms: tuple[Perm, ...] | None = None, *, exact: bool = False) -> None:
        """C's ``fire_watches()`` for a node event: ``perms`` are the node's (None: look the
        node up now, as a commit does), ``old_perms`` those it had before a change."""
        index = self._watch_index
        if not index:  # nobody watches anything: the common case while a big node starts
            return
        if exact:
            hits = list(index.get(path, ()))
        else:
            hits = []
            for ancestor in _ancestors(path):
                found = index.get(ancestor)
                if found:
                    hits.extend(found)
        if not hits:
            return
        if len(hits) > 1:
            hits.sort(key=lambda hit: (hit[0].seq, hit[1].seq))
        for session, watch in hits:
            sink = session.sink
            if sink is None:
                continue
            if not self._may_see(session, path, perms, old_perms):
                continue
            sink(path[watch.strip:] if watch.strip else path, watch.token)

    def _may_see(self, session: Session, path: str, perms: tuple[Perm, ...] | None,
                 old_perms: tuple[Perm, ...] | None) -> bool:
        """C's ``watch_permitted()``: the old perms, the node's, or its parent's grant read.
        A node given without perms that no longer exists is seen by nobody, not even dom0
        (a node a transaction created and removed again)."""
        if old_perms is not None and self._perm(session, old_perms) & _PERM_READ:
            return True
        if perms is None:
            node = self._nodes.get(path)
            if node is None:
                return False
            perms = node.perms
        if self._perm(session, perms) & _PERM_READ:
            return True
        parent = self._nodes.get(_parent(path))
        return parent is not None and bool(self._perm(session, parent.perms) & _PERM_READ)

    def _fire_special(self, name: str) -> None:
        perms = self._special_perms.get(name, _DOM0_ONLY)
        for session, watch in sorted(self._watch_index.get(name, ()),
                                     key=lambda hit: (hit[0].seq, hit[1].seq)):
            if session.sink is None:
                continue
            if not session.privileged and not self._perm(session, perms) & _PERM_READ:
                continue
            session.sink(name, watch.token)

    def _drop_watches(self, session: Session) -> None:
        for watch in session.watches.values():
            entries = self._watch_index.get(watch.path)
            if entries:
                entries[:] = [e for e in entries if e[0] is not session]
                if not entries:
                    del self._watch_index[watch.path]
        session.watches.clear()

    # ------------------------------------------------------------------ session ops

    def transaction(self, session: Session, tx_id: int) -> Transaction | None:
        """Return the transaction a request header names (None for 0); ENOENT if unknown."""
        if not tx_id:
            return None
        tx = session.transactions.get(tx_id)
        if tx is None:
            raise StoreError("ENOENT", f"no transaction {tx_id}")
        return tx

    def op_read(self, session: Session, tx: Transaction | None, path: str) -> bytes:
        """Return the value of ``path``."""
        path = self.canonical(session, path)
        return self._get_node(session, tx, path, _PERM_READ).value

    def op_directory(self, session: Session, tx: Transaction | None, path: str) -> bytes:
        """Return the DIRECTORY payload of ``path`` (E2BIG if over the payload limit)."""
        path = self.canonical(session, path)
        payload = self._get_node(session, tx, path, _PERM_READ).directory_payload()
        if len(payload) > PAYLOAD_MAX:
            raise StoreError("E2BIG", f"directory of {path} is {len(payload)} bytes")
        return payload

    def op_directory_part(self, session: Session, tx: Transaction | None, path: str,
                          offset_text: str) -> bytes:
        """Return ``gen\\0`` and the child names from byte ``offset`` (C's DIRECTORY_PART)."""
        path = self.canonical(session, path)
        node = self._get_node(session, tx, path, _PERM_READ)
        names = node.directory_payload()
        offset = _strtol(offset_text, 10)[0] & 0xFFFFFFFF  # atoi() into an unsigned int
        gen = f"{node.generation}".encode() + b"\0"
        if offset >= len(names):
            return gen + b"\0"
        limit = PAYLOAD_MAX - len(gen) - 1
        end = offset
        while end < len(names):
            stop = names.index(b"\0", end) + 1
            if stop - offset > limit:
                break
            end = stop
        chunk = names[offset:end]
        if end == len(names):
            chunk += b"\0"
        return gen + chunk

    def op_get_perms(self, session: Session, tx: Transaction | None, path: str) -> bytes:
        """Return the GET_PERMS payload of ``path`` (an ``@`` name is not a path: EINVAL)."""
        path = self.canonical(session, path)
        node = self._get_node(session, tx, path, _PERM_READ)
        return "".join(f"{perm_text(p)}\0" for p in node.perms).encode()

    def op_write(self, session: Session, tx: Transaction | None, path: str,
                 value: bytes) -> None:
        """Set the value of ``path``, creating it and its missing ancestors."""
        path = self.canonical(session, path)
        node = self._lookup(session, tx, path, _PERM_WRITE)
        if node is None:
            self._create(session, tx, path, value)
            return
        if self._too_big(session, node.perms, value, node.children):
            self._write_failed(tx, 1)
        node.value = value
        self._put(session, tx, path, node, fire=True)

    def _too_big(self, session: Session, perms: tuple[Perm, ...], value: bytes,
                 children: dict[str, None]) -> bool:
        """C's node size quota: a guest's node record (header, perms, value, child names)
        must stay under 2048 bytes."""
        if session.privileged:
            return False
        size = _RECORD_HEADER + 8 * len(perms) + len(value)
        size += sum(len(name.encode("utf-8", "surrogateescape")) + 1 for name in children)
        return size >= QUOTA_NODE_SIZE

    def _write_failed(self, tx: Transaction | None, attempts: int) -> None:
        # C bumps the generation for each write it attempted, undoes what it wrote, and
        # marks a transaction failed (its commit answers ENOMEM).
        for _ in range(attempts):
            self._next_generation()
        if tx is not None:
            tx.failed = True
        raise StoreError("ENOSPC", "node over the size quota")

    def op_mkdir(self, session: Session, tx: Transaction | None, path: str) -> None:
        """Create ``path`` (and ancestors) with an empty value; an existing node is left alone."""
        path = self.canonical(session, path)
        if self._lookup(session, tx, path, _PERM_WRITE) is None:
            self._create(session, tx, path, b"")

    def _create(self, session: Session, tx: Transaction | None, path: str,
                value: bytes) -> None:
        # C's construct_node() + create_node(): _get_node() has checked the nearest existing
        # ancestor grants write.
        missing = [path]
        current = _parent(path)
        while True:
            parent = self._read(tx, current)
            if parent is not None:
                break
            missing.append(current)
            current = _parent(current)
        perms = parent.perms
        if not session.privileged:
            perms = (Perm(session.domid, perms[0].access), *perms[1:])
        if tx is not None:
            tx.node_created = True
        if not session.privileged:  # each write's quotas, bottom-up, before any write
            owned = self.owned_nodes(session.domid) if session.domid != 0 else 0
            for k in range(len(missing)):
                # C's domain_entry(): the connection's own count, which grows as each new
                # node is written outside a transaction and not at all inside one.
                if owned + (k if tx is None else 0) >= QUOTA_NODES:
                    raise StoreError("ENOSPC", f"domain {session.domid} owns too many nodes")
                kids = {missing[k - 1].rsplit("/", 1)[1]: None} if k else {}
                if self._too_big(session, perms, value if k == 0 else b"", kids):
                    self._write_failed(tx, k + 1)
            kids = {**parent.children, missing[-1].rsplit("/", 1)[1]: None}
            if self._too_big(session, parent.perms, parent.value, kids):
                self._write_failed(tx, len(missing) + 1)
        # Build top-down, write bottom-up as C does (the deepest node gets the lowest gen).
        created: list[tuple[str, Node]] = []
        for name in reversed(missing):
            node = Node(value if name == path else b"", perms, 0)
            if created:
                created[-1][1].children[name.rsplit("/", 1)[1]] = None
            created.append((name, node))
        for name, node in reversed(created):
            self._put(session, tx, name, node, fire=name == path)
        top = missing[-1]
        parent.children[top.rsplit("/", 1)[1]] = None
        self._put(session, tx, current, parent, fire=False)

    def op_rm(self, session: Session, tx: Transaction | None, path: str) -> None:
        """Remove ``path`` and its whole subtree (OK if missing but its parent exists)."""
        path = self.canonical(session, path)
        if self._lookup(session, tx, path, _PERM_WRITE) is None:
            if self._read(tx, _parent(path)) is not None:
                return
            raise StoreError("ENOENT", path)
        if path == "/":
            raise StoreError("EINVAL", "cannot remove /")
        self._rm_node(session, tx, path)

    def _rm_node(self, session: Session, tx: Transaction | None, path: str) -> None:
        # C's rm_node(): the parent is read first, then the subtree is walked depth first,
        # each node deleted after its children and unlinked from its parent (one rewrite of
        # the parent per child). In a transaction a child the transaction's copy of its
        # parent lists but that is gone by now stops the walk half done: EIO (C calls it
        # corruption), and what was deleted so far stays deleted in the transaction.
        parent_path = _parent(path)
        parent = self._read(tx, parent_path)
        if parent is None:
            raise StoreError("EINVAL", f"parent of {path} is gone")
        node = self._read(tx, path)
        if node is None or not self._delete_tree(session, tx, path, node, path):
            raise StoreError("EIO", f"a node under {path} is gone")
        name = path.rsplit("/", 1)[1]
        if name not in parent.children:
            raise StoreError("EIO", f"{parent_path} does not list {name}")
        del parent.children[name]
        self._put(session, tx, parent_path, parent, fire=False)

    def _delete_tree(self, session: Session, tx: Transaction | None, path: str, node: Node,
                     root: str) -> bool:
        prefix = "" if path == "/" else path
        for name in list(node.children):
            child_path = f"{prefix}/{name}"
            child = self._read(tx, child_path)
            if child is None or not self._delete_tree(session, tx, child_path, child, root):
                return False
            del node.children[name]
            self._put(session, tx, path, node, fire=False)
        self._delete(tx, path, node, exact=path != root)
        return True

    def op_set_perms_wire(self, session: Session, tx: Transaction | None,
                          args: list[str]) -> None:
        """SET_PERMS from the wire: ``args`` are the payload's strings (path, then perms),
        parsed as C does, before the path is looked at."""
        if len(args) < 2:
            raise StoreError("EINVAL", "SET_PERMS needs a path and perms")
        if not session.privileged and len(args) - 1 > QUOTA_PERMS:
            raise StoreError("ENOSPC", f"more than {QUOTA_PERMS} permission entries")
        perms = tuple(parse_perm(text) for text in args[1:])
        # C's domain_alloc_permrefs(): the domains named become known; an owner that does
        # not exist is refused before the path is looked at (XSA-322).
        for entry in perms:
            if self.domain_exists(entry.domid):
                self._known.add(entry.domid)
        if not self.domain_exists(perms[0].domid):
            raise StoreError("ENOENT", f"domain {perms[0].domid} does not exist")
        perms = (perms[0], *(p if p.domid in self._known or p.domid in self._introduced
                             else _Ignored(*p) for p in perms[1:]))
        self.op_set_perms(session, tx, args[0], perms)

    def op_set_perms(self, session: Session, tx: Transaction | None, path: str,
                     perms: tuple[Perm, ...]) -> None:
        """Replace the permission list of ``path`` (or of a special event name)."""
        if path[:1] == "@":
            if path not in SPECIAL_EVENTS:
                raise StoreError("EINVAL", f"SET_PERMS of unknown special name {path}")
            current = self._special_perms[path]
            needed = _PERM_WRITE | _PERM_OWNER
            if self._perm(session, current) & needed != needed:
                raise StoreError("EACCES", path)
            self._special_perms[path] = perms
            return
        path = self.canonical(session, path)
        node = self._get_node(session, tx, path, _PERM_WRITE | _PERM_OWNER)
        if not session.privileged and perms[0].domid != node.perms[0].domid:
            raise StoreError("EPERM", f"{path}: a guest may not change the owner")
        if self._too_big(session, perms, node.value, node.children):
            self._write_failed(tx, 1)
        old = node.perms
        node.perms = perms
        self._put(session, tx, path, node, fire=True, old_perms=old)

    def op_watch(self, session: Session, path: str, token: str) -> Callable[[], None]:
        """Register a watch; return the callable that sends its initial event (call it after
        the WATCH reply is queued)."""
        original = path
        strip = 0
        if path[:1] == "@":
            if len(path) > _PATH_MAX:
                raise StoreError("EINVAL", "special watch name too long")
        else:
            if path[:1] != "/":
                strip = len(session.home) + 1
            path = self.canonical(session, path)
            if not valid_path(path):
                raise StoreError("EINVAL", f"invalid watch path {path!r}")
        key = (path, token)
        if key in session.watches:
            raise StoreError("EEXIST", f"watch {path} {token}")
        if not session.privileged and sum(
                len(s.watches) for s in self._sessions.values()
                if s.domid == session.domid and not s.privileged) > QUOTA_WATCHES:
            raise StoreError("E2BIG", f"domain {session.domid} is over its watch quota")
        self._watch_seq += 1
        watch = Watch(path, token, strip, self._watch_seq)
        session.watches[key] = watch
        self._watch_index.setdefault(path, []).append((session, watch))

        def initial_event() -> None:
            if session.sink is not None and not session.closed:
                session.sink(original, token)

        return initial_event

    def op_unwatch(self, session: Session, path: str, token: str) -> None:
        """Remove the watch with this path (made canonical, not validated: an invalid path
        matches nothing) and token; ENOENT if none."""
        path = self.canonical(session, path)
        watch = session.watches.pop((path, token), None)
        if watch is None:
            raise StoreError("ENOENT", f"no watch {path} {token}")
        entries = self._watch_index[path]
        entries[:] = [e for e in entries if e[1] is not watch]
        if not entries:
            del self._watch_index[path]

    def op_reset_watches(self, session: Session) -> None:
        """Drop every watch and transaction of ``session``."""
        self._drop_watches(session)
        session.transactions.clear()

    def op_transaction_start(self, session: Session, tx: Transaction | None) -> int:
        """Open a transaction and return its id (EBUSY inside a transaction)."""
        if tx is not None:
            raise StoreError("EBUSY", "nested transaction")
        if not session.privileged and len(session.transactions) > QUOTA_TRANSACTIONS:
            raise StoreError("ENOSPC", "over the transaction quota")  # C lets an 11th through
        self._next_generation()
        tx_id = session.next_tx_id
        while tx_id == 0 or tx_id in session.transactions:
            tx_id = (tx_id + 1) & 0xFFFFFFFF
        session.next_tx_id = (tx_id + 1) & 0xFFFFFFFF
        session.transactions[tx_id] = Transaction(tx_id, session)
        return tx_id

    def op_transaction_end(self, session: Session, tx: Transaction | None,
                           commit: bool) -> None:
        """End ``tx``: abort, or commit (EAGAIN if anything it read has changed since)."""
        if tx is None:
            raise StoreError("ENOENT", "TRANSACTION_END outside a transaction")
        session.transactions.pop(tx.id, None)
        if not commit:
            return
        if tx.failed:
            raise StoreError("ENOMEM", f"transaction {tx.id} failed earlier")
        nodes = self._nodes
        if tx.node_created and not session.privileged:
            self._commit_node_quota(tx)
        for path, acc in tx.accessed.items():
            if acc.check_generation is None:
                continue
            live = nodes.get(path)
            if (NO_GENERATION if live is None else live.generation) != acc.check_generation:
                raise StoreError("EAGAIN", f"{path} changed during transaction {tx.id}")
        # C's finalize_transaction(): each modified node is applied, then its event fired
        # (an event whose node was first seen missing is only sent if the node now exists).
        for path, acc in tx.accessed.items():
            if not acc.modified:
                continue
            if acc.node is None:
                self._count_owner(nodes.pop(path, None), None)
            else:
                acc.node.generation = self._next_generation()
                self._count_owner(nodes.get(path), acc.node)
                nodes[path] = acc.node
            if acc.fire:
                self._fire(path, None, acc.perms, exact=acc.exact)

    def _commit_node_quota(self, tx: Transaction) -> None:
        # C's transaction_fix_domains(): each domain's count now, plus what the transaction
        # added and removed as it saw the nodes, must stay under the quota.
        delta: dict[int, int] = {}
        for acc in tx.accessed.values():
            if not acc.modified:
                continue
            if acc.node is not None:
                owner = acc.node.perms[0].domid
                delta[owner] = delta.get(owner, 0) + 1
            if acc.owner is not None:
                delta[acc.owner] = delta.get(acc.owner, 0) - 1
        for domid, change in delta.items():
            if self._domid_unprivileged(domid) and \
                    self.owned_nodes(domid) + change >= QUOTA_NODES:
                raise StoreError("ENOSPC", f"domain {domid} would own too many nodes")

    def op_get_domain_path(self, text: str) -> bytes:
        """Return ``/local/domain/<atoi(text)>\\0`` (not validated, as C does)."""
        return f"/local/domain/{_atoi(text)}\0".encode()

    def _require_privileged(self, session: Session) -> None:
        if not session.privileged or session.read_only:
            raise StoreError("EACCES", "privileged operation")

    def op_is_domain_introduced(self, session: Session, text: str) -> bool:
        """Return whether domain ``atoi(text)`` is introduced (DOMID_SELF always is)."""
        self._require_privileged(session)
        domid = _atoi(text)
        return domid == DOMID_SELF or domid in self._introduced

    def op_introduce(self, session: Session, domid_text: str, evtchn_text: str) -> None:
        """INTRODUCE a domain (the ring is not simulated): fires @introduceDomain once.
        The event channel is an unsigned number in C: only 0 is refused."""
        self._require_privileged(session)
        if _atoi(evtchn_text) == 0:
            raise StoreError("EINVAL", "event channel must be > 0")
        self.introduce_domain(_atoi(domid_text))

    def op_release(self, session: Session, domid_text: str) -> None:
        """RELEASE a domain: its nodes go, then @releaseDomain fires."""
        self._require_privileged(session)
        self.release_domain(_atoi(domid_text))

    def op_resume(self, session: Session, domid_text: str) -> None:
        """RESUME a domain (re-arms its shutdown event; nothing else to do here)."""
        self._require_privileged(session)
        domid = _atoi(domid_text)
        if domid == 0:
            raise StoreError("EINVAL", "cannot resume domain 0")
        if domid not in self._introduced:
            raise StoreError("ENOENT", f"domain {domid} is not introduced")

    def op_set_target(self, session: Session, domid_text: str, target_text: str) -> None:
        """SET_TARGET: domain d gets owner rights on target t's nodes."""
        self._require_privileged(session)
        domid, target = _atoi(domid_text), _atoi(target_text)
        if domid not in self._introduced or target not in self._introduced:
            raise StoreError("ENOENT", "domain not introduced")
        self._targets[domid] = target
        for s in self._sessions.values():
            if s.domid == domid and not s.privileged:
                s.target = target

    def target_of(self, domid: int) -> int | None:
        """Return the SET_TARGET target of ``domid``, if any."""
        return self._targets.get(domid)

    # ------------------------------------------------------------------ in-process API

    def read(self, path: str) -> bytes:
        """Return the value of ``path`` (privileged)."""
        return self.op_read(self._internal, None, path)

    def write(self, path: str, value: bytes | str) -> None:
        """Set ``path`` to ``value``, creating ancestors; fires watches (privileged)."""
        if isinstance(value, str):
            value = value.encode("utf-8")
        self.op_write(self._internal, None, path, value)

    def mkdir(self, path: str) -> None:
        """Create ``path`` with an empty value if it does not exist (privileged)."""
        self.op_mkdir(self._internal, None, path)

    def rm(self, path: str) -> None:
        """Remove ``path`` and its subtree; fires one event per removed node (privileged)."""
        self.op_rm(self._internal, None, path)

    def directory(self, path: str) -> list[str]:
        """Return the child names of ``path`` in creation order (privileged)."""
        node = self._get_node(self._internal, None, self.canonical(self._internal, path),
                              _PERM_READ)
        return list(node.children)

    def exists(self, path: str) -> bool:
        """Return whether ``path`` is a node."""
        return self.canonical(self._internal, path) in self._nodes

    def get_perms(self, path: str) -> list[Perm]:
        """Return the permission list of ``path`` (entry 1 = owner and default)."""
        node = self._get_node(self._internal, None, self.canonical(self._internal, path),
                              _PERM_READ)
        return [Perm(*p) for p in node.perms]

    def set_perms(self, path: str, perms: Iterable[Perm]) -> None:
        """Replace the permission list of ``path``; fires watches (privileged)."""
        entries = tuple(perms)
        if not entries:
            raise StoreError("EINVAL", "a permission list needs the owner entry")
        self.op_set_perms(self._internal, None, path, entries)

    def introduce_domain(self, domid: int) -> None:
        """Mark ``domid`` introduced; fires @introduceDomain the first time (never for 0)."""
        if domid in self._introduced:
            return
        self._introduced.add(domid)
        self._fire_special("@introduceDomain")

    def is_introduced(self, domid: int) -> bool:
        """Return whether ``domid`` is introduced."""
        return domid in self._introduced

    def release_domain(self, domid: int, *, remove_owned_nodes: bool = True) -> None:
        """Forget ``domid``: remove the nodes it owns (as C does unless ``-K``) with their
        events, then fire @releaseDomain. EINVAL for 0, ENOENT if not introduced."""
        if domid == 0:
            raise StoreError("EINVAL", "cannot release domain 0")
        if domid not in self._introduced:
            raise StoreError("ENOENT", f"domain {domid} is not introduced")
        self._introduced.discard(domid)
        self._known.discard(domid)
        self._ignore_entries_of(domid)
        self._targets.pop(domid, None)
        for name, perms in self._special_perms.items():
            # C's remove_domid_from_perm(): the domain's entries go, an owner becomes dom0.
            owner = perms[0] if perms[0].domid != domid else Perm(0, perms[0].access)
            self._special_perms[name] = (owner, *(p for p in perms[1:] if p.domid != domid))
        if remove_owned_nodes:
            owned = self._owned_roots(domid)
            for path in owned:
                if path in self._nodes:
                    self.op_rm(self._internal, None, path)
        self._fire_special("@releaseDomain")

    def _owned_roots(self, domid: int) -> list[str]:
        roots: list[str] = []

        def walk(path: str) -> None:
            node = self._nodes.get(path)
            if node is None:
                return
            if path != "/" and node.perms[0].domid == domid:
                roots.append(path)
                return
            prefix = "" if path == "/" else path
            for name in node.children:
                walk(f"{prefix}/{name}")

        walk("/")
        return roots

    def fire_special(self, name: str) -> None:
        """Fire a special watch (``@releaseDomain`` when a domain shuts down, for example)."""
        if name[:1] != "@":
            raise StoreError("EINVAL", f"{name} is not a special name")
        self._fire_special(name)

    def walk(self, path: str = "/") -> Iterator[tuple[str, Node]]:
        """Yield (path, node) for ``path`` and every descendant, depth first, in order."""
        node = self._nodes.get(path)
        if node is None:
            return
        yield path, node
        prefix = "" if path == "/" else path
        for name in list(node.children):
            yield from self.walk(f"{prefix}/{name}")
