"""One ``aiovirsh top`` frame as the terminal shows it, at the sizes people's terminals have."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from aiovirt.cli.top import DomainRow, build_frame, text_snapshot
from aiovirt.protocol.states import DomainState


def _rows(names: list[str], cpu: float = 50.0) -> list[DomainRow]:
    return [DomainRow(i, name, DomainState.RUNNING, 8, 262144, 524288, 10**9 * i, cpu)
            for i, name in enumerate(names)]


def _draw(rows: list[DomainRow], width: int, height: int, node_cpus: int | None = 4) -> list[str]:
    out = io.StringIO()
    console = Console(file=out, width=width, height=height, color_system=None,
                      force_terminal=False, legacy_windows=False)
    console.print(build_frame(rows, uri="sim:///", sort="cpu", reverse=False, interval=1.0,
                              height=height, clock="12:00:00", node_cpus=node_cpus))
    return out.getvalue().splitlines()


def test_name_column_is_as_wide_as_the_names_it_shows() -> None:
    lines = _draw(_rows(["Domain-0", "vm1", "vm26"]), width=120, height=40)
    title = next(line for line in lines if line.split()[:2] == ["ID", "NAME"])
    # NAME is followed by STATE after the longest name (8) and one space of padding, not by
    # half the terminal
    gap = title.index("STATE") - title.index("NAME")
    assert gap <= len("Domain-0") + 3, title
    assert max(len(line) for line in lines) < 100


def test_long_names_are_cut_not_wrapped() -> None:
    lines = _draw(_rows(["a-very-long-domain-name-" * 4]), width=120, height=40)
    row = next(line for line in lines if line.lstrip().startswith("0 "))
    assert "…" in row and len(lines) == 4 + 1


@pytest.mark.parametrize(("width", "height"), [(120, 40), (80, 10), (60, 6), (40, 4)])
def test_small_terminal_keeps_header_and_footer(width: int, height: int) -> None:
    rows = _rows([f"vm{i}" for i in range(200)])
    lines = _draw(rows, width=width, height=height)
    assert len(lines) <= height, lines
    assert lines[0].startswith("aiovirsh top")
    assert lines[-1].startswith("keys:")
    assert lines[-2].startswith("200 domains")
    assert all(len(line) <= width for line in lines)
    shown = len(lines) - 4
    assert shown == max(0, height - 4)
    if shown < 200:
        assert f"({200 - shown} more below)" in lines[-2] or lines[-2].endswith("…")


def test_total_cpu_is_shown_against_the_node_cpus() -> None:
    rows = _rows([f"vm{i}" for i in range(8)], cpu=99.9)
    lines = _draw(rows, width=160, height=20, node_cpus=4)
    assert "CPU 799.2% of 400% (4 CPUs)" in lines[-2]
    snapshot = text_snapshot(rows, "cpu", False, node_cpus=4)
    assert snapshot.rstrip().endswith("CPU 799.2% of 400% (4 CPUs)")


def test_without_node_info_the_total_stands_alone() -> None:
    lines = _draw(_rows(["vm1"]), width=120, height=10, node_cpus=None)
    assert lines[-2].endswith("CPU 50.0%")
