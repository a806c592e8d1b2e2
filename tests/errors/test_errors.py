"""libvirt-grade errors: numbers, messages, last errors per task, handlers and their order."""

from __future__ import annotations

import asyncio
import logging
import pickle
from typing import Any

import pytest

import aiovirt
from aiovirt.errors import (
    ErrorDomain,
    ErrorHandler,
    ErrorLevel,
    ErrorNumber,
    VirtError,
    copy_last_error,
    default_error_handler,
    get_last_error,
    report,
    reporting,
    reset_last_error,
    set_error_handler,
)

# Spot checks against libvirt's include/libvirt/virterror.h (append-only since 0.1.0).
LIBVIRT_ERROR_NUMBERS = {
    "OK": 0, "INTERNAL_ERROR": 1, "NO_MEMORY": 2, "NO_SUPPORT": 3, "UNKNOWN_HOST": 4,
    "NO_CONNECT": 5, "INVALID_CONN": 6, "INVALID_DOMAIN": 7, "INVALID_ARG": 8,
    "OPERATION_FAILED": 9, "GET_FAILED": 10, "POST_FAILED": 11, "HTTP_ERROR": 12,
    "SEXPR_SERIAL": 13, "NO_XEN": 14, "XEN_CALL": 15, "OS_TYPE": 16, "NO_KERNEL": 17,
    "NO_ROOT": 18, "NO_SOURCE": 19, "NO_TARGET": 20, "NO_NAME": 21, "NO_OS": 22,
    "NO_DEVICE": 23, "NO_XENSTORE": 24, "DRIVER_FULL": 25, "CALL_FAILED": 26,
    "XML_ERROR": 27, "DOM_EXIST": 28, "OPERATION_DENIED": 29, "OPEN_FAILED": 30,
    "READ_FAILED": 31, "PARSE_FAILED": 32, "CONF_SYNTAX": 33, "WRITE_FAILED": 34,
    "XML_DETAIL": 35, "INVALID_NETWORK": 36, "NETWORK_EXIST": 37, "SYSTEM_ERROR": 38,
    "RPC": 39, "GNUTLS_ERROR": 40, "WAR_NO_NETWORK": 41, "NO_DOMAIN": 42, "NO_NETWORK": 43,
    "INVALID_MAC": 44, "AUTH_FAILED": 45, "OPERATION_INVALID": 55, "OPERATION_TIMEOUT": 68,
}
LIBVIRT_ERROR_DOMAINS = {
    "NONE": 0, "XEN": 1, "XEND": 2, "XENSTORE": 3, "SEXPR": 4, "XML": 5, "DOM": 6, "RPC": 7,
    "PROXY": 8, "CONF": 9, "STATS_LINUX": 16, "URI": 45,
}


def test_every_error_number_is_libvirts() -> None:
    assert {e.name: int(e) for e in ErrorNumber} == LIBVIRT_ERROR_NUMBERS


def test_every_error_domain_is_libvirts() -> None:
    assert {d.name: int(d) for d in ErrorDomain} == LIBVIRT_ERROR_DOMAINS
    assert [(lv.name, int(lv)) for lv in ErrorLevel] == [("NONE", 0), ("WARNING", 1),
                                                          ("ERROR", 2)]


@pytest.mark.parametrize(
    ("code", "info", "message"),
    [
        (ErrorNumber.NO_DOMAIN, "vm1", "Domain not found: vm1"),
        (ErrorNumber.NO_DOMAIN, None, "Domain not found"),
        (ErrorNumber.GET_FAILED, "/xend/domain/vm1", "GET operation failed: /xend/domain/vm1"),
        (ErrorNumber.NO_CONNECT, "Xen Daemon", "could not connect to Xen Daemon"),
        (ErrorNumber.NO_CONNECT, None, "could not connect to hypervisor"),
        (ErrorNumber.INTERNAL_ERROR, "x", "internal error x"),
        (ErrorNumber.INVALID_ARG, "memory 12 KiB is under 4096", "invalid argument: memory 12 "
                                                                  "KiB is under 4096"),
        (ErrorNumber.OPERATION_DENIED, "destroy",
         "operation forbidden for read only access: destroy"),
        (ErrorNumber.XML_ERROR, "<memory>",
         "XML description is invalid or not well formed: <memory>"),
        (ErrorNumber.NO_KERNEL, None, "missing kernel information"),
        (ErrorNumber.NO_XENSTORE, None, "could not connect to Xen Store"),
        (ErrorNumber.SYSTEM_ERROR, "boom", "boom"),
        (9999, "x", "unknown error x"),
    ],
)
def test_messages_are_formatted_the_libvirt_way(code: int, info: str | None,
                                                message: str) -> None:
    err = VirtError(code, ErrorDomain.DOM, info)
    assert str(err) == message == err.message == err.get_error_message()
    assert err.str2 == info
    assert err.code == code and err.get_error_code() == int(code)


def test_fields_and_tuple() -> None:
    err = VirtError(ErrorNumber.HTTP_ERROR, ErrorDomain.XEND, "503", int1=503, str3="x")
    assert err.as_tuple() == (12, 2, "got unknown HTTP error code 503", 2,
                              "got unknown HTTP error code %s", "503", "x", 503, 0)
    assert err.level == ErrorLevel.ERROR
    assert err.get_error_domain() == 2
    assert isinstance(err.code, ErrorNumber) and isinstance(err.domain, ErrorDomain)
    assert repr(err) == "VirtError(HTTP_ERROR, XEND, 'got unknown HTTP error code 503')"
    assert VirtError(ErrorNumber.NO_DOMAIN, message="custom").message == "custom"


def test_unknown_numbers_stay_ints() -> None:
    err = VirtError(1234, 777, "x")
    assert err.code == 1234 and not isinstance(err.code, ErrorNumber)
    assert err.domain == 777
    assert "1234" in repr(err)


def test_copy_and_pickle_are_independent() -> None:
    err = VirtError(ErrorNumber.NO_DOMAIN, ErrorDomain.DOM, "vm1", conn=object(), int1=3)
    clone = err.copy()
    assert clone is not err and clone.as_tuple() == err.as_tuple()
    clone.message = "changed"
    assert err.message == "Domain not found: vm1"
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is VirtError and back.as_tuple() == err.as_tuple()
    assert back.conn is None  # live objects do not travel


class Sink:
    """The ErrorSink protocol: what report() needs from a connection."""

    def __init__(self) -> None:
        self._last_error: VirtError | None = None
        self._error_handler: tuple[ErrorHandler, Any] | None = None
        self.name = "conn"

    def set_error_handler(self, func: ErrorHandler | None, ctx: Any = None) -> None:
        self._error_handler = None if func is None else (func, ctx)


class Api:
    """A tiny public object whose async methods report through the decorator."""

    def __init__(self, sink: Sink | None) -> None:
        self.sink = sink
        self.calls = 0

    def _error_sink(self) -> Sink | None:
        return self.sink

    @reporting
    async def fail(self, code: ErrorNumber = ErrorNumber.NO_DOMAIN, info: str = "vm1") -> None:
        self.calls += 1
        raise VirtError(code, ErrorDomain.DOM, info)

    @reporting
    async def nested(self) -> None:
        await self.fail()

    @reporting
    async def ok(self) -> int:
        return 42


class Dom:
    name = "vm1"


async def test_report_stores_connection_and_task_error(capsys: pytest.CaptureFixture[str]) -> None:
    sink = Sink()
    with pytest.raises(VirtError) as info:
        await Api(sink).fail()
    err = info.value
    assert sink._last_error is err
    assert err.conn is sink
    assert get_last_error() is err
    assert capsys.readouterr().err == "libvir: Domain error : Domain not found: vm1\n"


async def test_global_slot_when_no_connection() -> None:
    set_error_handler(lambda ctx, err: None)
    with pytest.raises(VirtError) as info:
        await Api(None).fail()
    assert get_last_error() is info.value
    assert info.value.conn is None


async def test_nested_public_calls_report_once() -> None:
    seen: list[VirtError] = []
    set_error_handler(lambda ctx, err: seen.append(err))
    with pytest.raises(VirtError):
        await Api(None).nested()
    assert len(seen) == 1


async def test_success_reports_nothing() -> None:
    seen: list[VirtError] = []
    set_error_handler(lambda ctx, err: seen.append(err))
    assert await Api(Sink()).ok() == 42
    assert seen == [] and get_last_error() is None


async def test_ok_code_is_a_no_op() -> None:
    seen: list[VirtError] = []
    set_error_handler(lambda ctx, err: seen.append(err))
    await report(VirtError(ErrorNumber.OK))
    assert seen == [] and get_last_error() is None


async def test_connection_handler_wins_over_global() -> None:
    calls: list[tuple[str, object, VirtError]] = []
    set_error_handler(lambda ctx, err: calls.append(("global", ctx, err)), "g")
    sink = Sink()
    sink.set_error_handler(lambda ctx, err: calls.append(("conn", ctx, err)), "c")
    with pytest.raises(VirtError) as info:
        await Api(sink).fail()
    assert calls == [("conn", "c", info.value)]
    # Without its own handler the connection falls back to the global one.
    sink.set_error_handler(None)
    with pytest.raises(VirtError) as info2:
        await Api(sink).fail()
    assert calls[-1] == ("global", "g", info2.value)
    assert len(calls) == 2


async def test_async_handler_is_awaited_before_the_raise() -> None:
    events: list[str] = []

    async def handler(ctx: object, err: VirtError) -> None:
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        events.append(f"handled {ErrorNumber(err.code).name}")

    set_error_handler(handler)
    try:
        await Api(None).fail()
    except VirtError:
        events.append("caught")
    assert events == ["handled NO_DOMAIN", "caught"]


async def test_async_connection_handler_is_awaited_too() -> None:
    done = asyncio.Event()

    async def handler(ctx: asyncio.Event, err: VirtError) -> None:
        await asyncio.sleep(0)
        ctx.set()

    sink = Sink()
    sink.set_error_handler(handler, done)
    with pytest.raises(VirtError):
        await Api(sink).fail()
    assert done.is_set()


@pytest.mark.parametrize("asynchronous", [False, True])
async def test_raising_handler_is_logged_and_the_original_error_raised(
    asynchronous: bool, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(ctx: object, err: VirtError) -> None:
        raise RuntimeError("handler bug")

    async def broken_async(ctx: object, err: VirtError) -> None:
        raise RuntimeError("handler bug")

    set_error_handler(broken_async if asynchronous else broken)
    with caplog.at_level(logging.ERROR, logger="aiovirt.errors"):
        with pytest.raises(VirtError) as info:
            await Api(None).fail()
    assert info.value.code == ErrorNumber.NO_DOMAIN
    assert "handler bug" in caplog.text
    assert get_last_error() is info.value


async def test_handler_cancellation_propagates() -> None:
    async def handler(ctx: object, err: VirtError) -> None:
        raise asyncio.CancelledError

    set_error_handler(handler)
    with pytest.raises(asyncio.CancelledError):
        await Api(None).fail()


def test_default_handler_line_with_a_domain(capsys: pytest.CaptureFixture[str]) -> None:
    default_error_handler(VirtError(ErrorNumber.NO_DOMAIN, ErrorDomain.DOM, "vm1", dom=Dom()))
    assert capsys.readouterr().err == "libvir: Domain error vm1: Domain not found: vm1\n"


@pytest.mark.parametrize(
    ("err", "line"),
    [
        (VirtError(ErrorNumber.GET_FAILED, ErrorDomain.XEND, "No such domain nosuch"),
         "libvir: Xen Daemon error : GET operation failed: No such domain nosuch\n"),
        (VirtError(ErrorNumber.NO_XEN, ErrorDomain.XEN, "/proc/xen/privcmd"),
         "libvir: Xen error : could not use Xen hypervisor entry /proc/xen/privcmd\n"),
        (VirtError(ErrorNumber.XML_ERROR, ErrorDomain.XML, "<memory>"),
         "libvir: XML error : XML description is invalid or not well formed: <memory>\n"),
        (VirtError(ErrorNumber.INTERNAL_ERROR, ErrorDomain.NONE, "x\n"),
         "libvir: error : internal error x\n"),
        (VirtError(ErrorNumber.NO_DOMAIN, ErrorDomain.DOM, "vm1", level=ErrorLevel.WARNING),
         "libvir: Domain warning : Domain not found: vm1\n"),
        (VirtError(ErrorNumber.INVALID_DOMAIN, ErrorDomain.DOM, "info", dom=Dom()),
         "libvir: Domain error : invalid domain pointer in info\n"),
    ],
)
def test_default_handler_lines(err: VirtError, line: str,
                               capsys: pytest.CaptureFixture[str]) -> None:
    default_error_handler(err)
    assert capsys.readouterr().err == line


async def test_set_error_handler_none_restores_the_default(
    capsys: pytest.CaptureFixture[str],
) -> None:
    seen: list[VirtError] = []
    aiovirt.set_error_handler(lambda ctx, err: seen.append(err))
    with pytest.raises(VirtError):
        await Api(None).fail()
    assert len(seen) == 1 and capsys.readouterr().err == ""
    aiovirt.set_error_handler(None)
    with pytest.raises(VirtError):
        await Api(None).fail()
    assert len(seen) == 1
    assert capsys.readouterr().err == "libvir: Domain error : Domain not found: vm1\n"


# ---------------------------------------------------------------------------------------------
# The last error belongs to the task that raised it.


def quiet() -> None:
    set_error_handler(lambda ctx, err: None)


async def test_error_in_one_gathered_task_is_never_seen_by_another() -> None:
    quiet()
    raised = asyncio.Event()

    async def failing() -> VirtError | None:
        with pytest.raises(VirtError):
            await Api(None).fail(info="a")
        raised.set()
        return get_last_error()

    async def watching() -> VirtError | None:
        await asyncio.wait_for(raised.wait(), 5)
        return get_last_error()

    mine, theirs = await asyncio.gather(failing(), watching())
    assert mine is not None and mine.str2 == "a"
    assert theirs is None
    assert get_last_error() is None  # nor the parent


async def test_each_task_keeps_its_own_error_under_gather() -> None:
    quiet()
    barrier = asyncio.Barrier(10)

    async def worker(i: int) -> str | None:
        with pytest.raises(VirtError):
            await Api(None).fail(info=f"vm{i}")
        await barrier.wait()  # every task has raised before any reads
        err = get_last_error()
        return err.str2 if err else None

    results = await asyncio.gather(*(worker(i) for i in range(10)))
    assert results == [f"vm{i}" for i in range(10)]


async def test_task_group_isolation() -> None:
    quiet()
    raised = asyncio.Event()
    seen: dict[str, VirtError | None] = {}

    async def failing() -> None:
        with pytest.raises(VirtError):
            await Api(None).fail(info="tg")
        seen["failing"] = get_last_error()
        raised.set()

    async def other() -> None:
        await asyncio.wait_for(raised.wait(), 5)
        seen["other"] = get_last_error()

    async with asyncio.TaskGroup() as tg:
        tg.create_task(failing())
        tg.create_task(other())
    assert seen["failing"] is not None and seen["failing"].str2 == "tg"
    assert seen["other"] is None
    assert get_last_error() is None


async def test_fresh_task_starts_with_no_error_even_if_its_parent_has_one() -> None:
    quiet()
    with pytest.raises(VirtError):
        await Api(None).fail(info="parent")
    assert get_last_error() is not None

    async def child() -> VirtError | None:
        return get_last_error()

    assert await asyncio.create_task(child()) is None
    assert (await asyncio.gather(child()))[0] is None
    async with asyncio.TaskGroup() as tg:
        t = tg.create_task(child())
    assert t.result() is None
    assert get_last_error() is not None and get_last_error().str2 == "parent"  # type: ignore[union-attr]


async def test_grandchild_after_parent_died_starts_clean() -> None:
    quiet()

    async def parent() -> asyncio.Task[VirtError | None]:
        with pytest.raises(VirtError):
            await Api(None).fail(info="gone")

        async def grandchild() -> VirtError | None:
            await asyncio.sleep(0)
            return get_last_error()

        return asyncio.create_task(grandchild())

    task = await asyncio.create_task(parent())
    # Create many tasks so ids of dead tasks get reused; none may inherit "gone".
    for _ in range(50):
        assert await asyncio.create_task(asyncio.sleep(0, get_last_error())) is None
    assert await task is None


async def test_reset_and_copy_last_error() -> None:
    quiet()
    with pytest.raises(VirtError) as info:
        await Api(None).fail(info="vm7")
    copied = copy_last_error()
    assert copied is not None and copied is not info.value
    assert copied.as_tuple() == info.value.as_tuple()
    copied.message = "edited"
    assert get_last_error() is info.value and info.value.message == "Domain not found: vm7"
    reset_last_error()
    assert get_last_error() is None and copy_last_error() is None
    assert copied.str2 == "vm7"  # the copy outlives the reset


async def test_copied_error_can_be_reported_again() -> None:
    seen: list[VirtError] = []
    set_error_handler(lambda ctx, err: seen.append(err))
    with pytest.raises(VirtError):
        await Api(None).fail()
    copied = copy_last_error()
    assert copied is not None
    await report(copied)
    assert seen == [seen[0], copied]


def test_outside_asyncio_the_thread_has_its_own_slot() -> None:
    async def fail_in_loop() -> None:
        quiet()
        with pytest.raises(VirtError):
            await Api(None).fail()

    asyncio.run(fail_in_loop())
    assert get_last_error() is None


def test_public_names_exported() -> None:
    for name in ("VirtError", "ErrorNumber", "ErrorDomain", "ErrorLevel", "get_last_error",
                 "reset_last_error", "copy_last_error", "set_error_handler",
                 "default_error_handler"):
        assert hasattr(aiovirt, name)
