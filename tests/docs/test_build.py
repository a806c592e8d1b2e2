"""The documentation site as a reader meets it: built with Sphinx, warnings as errors, as CI
builds it; every internal link lands on a page and an anchor that exist; the pictures are made
from real runs; the reference names what a user types."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from tests.support.interop import require, require_tool

ROOT = Path(__file__).resolve().parents[2]
PAGES = {"index.html", "getting-started.html", "api.html", "errors.html", "events.html",
         "uri.html", "xenstore.html", "simulator.html", "cli.html", "architecture.html"}


def _have(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The built HTML site (the docs extra brings Sphinx, its theme and the picture tools)."""
    for module in ("sphinx", "myst_parser", "furo", "pyte", "rich"):
        require(_have(module), f"{module} is not installed (pip install '.[docs]')")
    require_tool("dot")  # Graphviz draws the diagrams
    tmp = tmp_path_factory.mktemp("docs")
    out = tmp / "html"
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         "-d", str(tmp / "doctrees"), str(ROOT / "docs"), str(out)],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
        env={**os.environ, "PYTHONWARNINGS": "ignore::DeprecationWarning"},
    )
    assert proc.returncode == 0, f"sphinx-build failed:\n{proc.stdout}\n{proc.stderr}"
    yield out


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value is None:
                continue
            if name == "id":
                self.ids.add(value)
            elif (name == "href" and tag in ("a", "link")) or (name == "src" and tag != "script"):
                self.links.append(value)


def _parse(page: Path) -> _Links:
    parser = _Links()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser


def test_docs_build_without_warnings(site: Path) -> None:
    assert PAGES <= {p.name for p in site.glob("*.html")}
    api = (site / "api.html").read_text()
    # the reference is generated from the docstrings, not written by hand
    for name in ("lookup_by_name", "domain_events", "XenStoreClient", "VirtError", "SimNode"):
        assert name in api, f"{name} missing from the API reference"


def test_every_internal_link_and_anchor_exists(site: Path) -> None:
    parsed = {page: _parse(page) for page in site.rglob("*.html")}
    broken = []
    for page, links in parsed.items():
        for link in links.links:
            parts = urlsplit(link)
            if parts.scheme or parts.netloc:  # another site, mailto: or data: (not ours to check)
                continue
            target = page if not parts.path else (page.parent / unquote(parts.path)).resolve()
            if not target.exists():
                broken.append(f"{page.relative_to(site)}: {link} (no such file)")
                continue
            if parts.fragment and target.suffix == ".html":
                ids = parsed.get(target) or _parse(target)
                if unquote(parts.fragment) not in ids.ids:
                    broken.append(f"{page.relative_to(site)}: {link} (no such anchor)")
    assert not broken, "broken internal links:\n" + "\n".join(sorted(set(broken)))


def test_search_finds_the_api(site: Path) -> None:
    assert (site / "search.html").exists()
    index = (site / "searchindex.js").read_text()
    for term in ("lookup_by_uuid", "domain_infos", "virterror", "xenstore"):
        assert term in index.lower(), f"{term} is not in the search index"


def test_api_reference_names_what_a_user_types(site: Path) -> None:
    api = (site / "api.html").read_text()
    for name in ("aiovirt.open", "aiovirt.open_read_only", "aiovirt.Connection",
                 "aiovirt.Domain", "aiovirt.VirtError", "aiovirt.DomainInfo"):
        assert f'id="{name}"' in api, f"{name} is not documented under its public name"
    for module_path in ("aiovirt.connection.open", "aiovirt.connection.Connection",
                        "aiovirt.domain.Domain", "aiovirt.errors.VirtError"):
        assert f'id="{module_path}"' not in api, f"{module_path}: a module path, not the name"
    # no private type in a signature: open() says what it gives
    assert "_Opening" not in api
    opening = api[api.index('id="aiovirt.open"'):api.index('id="aiovirt.open_read_only"')]
    assert "OpeningConnection" in opening


def test_cli_page_shows_top_as_a_real_run_draws_it(site: Path) -> None:
    cli = (site / "cli.html").read_text()
    match = re.search(r'<img[^>]+src="([^"]*top\.svg)"', cli)
    assert match, "the CLI page has no picture of aiovirsh top"
    svg = (site / match.group(1)).read_text()
    # the terminal's text, run together (the SVG leaves out the spans that are only spaces)
    text = "".join(re.findall(r"<text[^>]*>([^<]*)</text>", svg)).replace("&#160;", "")
    assert "aiovirshtop" in text and "morebelow" in text and "Domain-0" in text
    assert re.search(r"\d+domains\(", text)


def test_theme_is_made_for_api_docs(site: Path) -> None:
    index = (site / "index.html").read_text()
    assert "furo" in index


def test_architecture_page_draws_the_layers_and_a_call(site: Path) -> None:
    page = (site / "architecture.html").read_text()
    drawn = re.findall(r'<(?:img|object)[^>]+(?:src|data)="([^"]+\.svg)"[^>]*class="graphviz', page)
    drawn += re.findall(r'class="graphviz[^"]*"[^>]*(?:src|data)="([^"]+\.svg)"', page)
    assert len(set(drawn)) >= 2, "the architecture page lost its diagrams"
    for src in set(drawn):
        svg = (site / src).read_text()
        assert "<svg" in svg and "<text" in svg
