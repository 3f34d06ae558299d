"""GX Data Docs that open without the internet, and tell no one that they were opened.

GX 1.x writes into every page `<link>` and `<script>` tags to public CDNs (Bootstrap, jQuery,
bootstrap-table, Font Awesome, Vega, a date picker, a dark theme) and an `<img>` of its logo on S3,
with the time the page was built in its address. Offline, a page shows unstyled and the index lists
no page at all (bootstrap-table draws its tables); online, opening a report on patients' data tells
those hosts when, and from which address, it was opened. No site-builder setting removes the tags:
GX looks custom views up after its own templates, and custom styles only add to them.

So once GX has written the pages, `make_self_contained` points each tag at a copy in the folder itself
(`static/rtw/`), from pinned packages (XStatic-Bootstrap: Bootstrap 4's styles and its script bundled
with Popper; XStatic-jQuery: the jQuery GX names) or from files the project writes (data_docs_assets/:
the parts of bootstrap-table GX uses, and its five Font Awesome icons as characters), and the logo at
GX's own copy in `static/images/`. Any other outside tag is dropped: Vega (no expectation of the
catalogue draws a chart), the date picker and filter controls (the index has a search box instead),
the dark theme. An outside `url(...)` in a style becomes `none`, an outside `@import` goes. Links (`<a href>`)
stay: a browser follows them only when they are clicked. Addresses are found in double, single or no quotes; an outside
src or href left in any other tag (one these rules do not rewrite: `<iframe>`, `<source>`) is warned about.

Gotcha: the pages hold the values GX judged, HTML-escaped (gx_suites._as_page_text), so a value never
reads as a tag here; `url(...)` is rewritten only in the pages' styles, never in their text.
"""

from __future__ import annotations

import importlib
import logging
import re
from pathlib import Path, PurePosixPath
from typing import NamedTuple
from urllib.parse import urlsplit

from etl import fsio

log = logging.getLogger(__name__)

ASSETS = Path("static") / "rtw"  # in the Data Docs folder
_OWN_ASSETS = Path(__file__).with_name("data_docs_assets")


class _Copy(NamedTuple):
    """A file copied into `ASSETS` under its own name: from the package whose `BASE_DIR` holds it
    (imported when copied), or from data_docs_assets/ (package None)."""

    package: str | None
    path: str

    @property
    def local(self) -> str:  # relative to the Data Docs folder
        return f"{ASSETS.as_posix()}/{PurePosixPath(self.path).name}"

    def source(self) -> Path:
        folder = Path(importlib.import_module(self.package).BASE_DIR) if self.package else _OWN_ASSETS
        return folder / self.path


# What an outside address becomes, by the end of its path (GX's addresses name versions): a copy in
# `ASSETS`, a file GX writes itself (relative to the Data Docs folder), or None: the tag goes.
_LOCAL: tuple[tuple[re.Pattern[str], _Copy | str | None], ...] = (
    (re.compile(r"/bootstrap(\.min)?\.css$"), _Copy("xstatic.pkg.bootstrap", "css/bootstrap.min.css")),
    (re.compile(r"/bootstrap(\.bundle)?(\.min)?\.js$"), _Copy("xstatic.pkg.bootstrap", "js/bootstrap.bundle.min.js")),
    (re.compile(r"/popper(\.min)?\.js$"), None),  # in Bootstrap's bundle
    (re.compile(r"/jquery-3[\d.]*(\.min)?\.js$"), _Copy("xstatic.pkg.jquery", "jquery.min.js")),
    (re.compile(r"/bootstrap-table(\.min)?\.js$"), _Copy(None, "rtw-tables.js")),
    (re.compile(r"/font-awesome/.*\.css$"), _Copy(None, "rtw-data-docs.css")),
    (re.compile(r"/logo-long\.png$"), "static/images/logo-long.png"),
    (re.compile(r"/(vega|vega-lite|vega-embed)@\d+$"), None),
    (re.compile(r"/bootstrap-table.*\.css$|/filter-control/.*\.js$"), None),  # rtw-data-docs.css styles the tables
    (re.compile(r"/bootstrap-datepicker.*\.(css|js)$|/bootstrap-prefers-dark\.css$"), None),
)
_OUTSIDE = r"""(?:https?:)?//[^"'\s>]+"""
# src= or href= (not data-href=), its value in double, single or no quotes
_ADDRESS = rf"""(?<![\w-])(?:src|href)\s*=\s*(?P<quote>["']?)(?P<url>{_OUTSIDE})(?P=quote)"""
_TAG = re.compile(rf"""<(?:script|link|img)\b[^>]*?{_ADDRESS}[^>]*>(?:\s*</script>)?""", re.IGNORECASE)
_LEFT = re.compile(rf"""<(?!a\b)\w+\b[^>]*?{_ADDRESS}""", re.IGNORECASE)  # links (<a href>) stay
_NOT_LOCAL = re.compile(r"""\s(?:integrity|crossorigin)\s*=\s*["'][^"']*["']""", re.IGNORECASE)
_STYLE = re.compile(r"""(<style\b[^>]*>)(.*?)(</style>)|((?<![\w-])style\s*=\s*)("[^"]*"|'[^']*'|[^\s"'>]+)""",
                    re.IGNORECASE | re.DOTALL)
_OUTSIDE_URL = re.compile(rf"""url\(\s*["']?{_OUTSIDE}["']?\s*\)""", re.IGNORECASE)
# `@import "https://..."` names a style sheet without url(): the rule goes whole (url(...) becomes none first)
_OUTSIDE_IMPORT = re.compile(rf"""@import\s+(?:["']{_OUTSIDE}["']|none)[^;{{}}\n]*;?""", re.IGNORECASE)


def make_self_contained(folder: Path) -> None:
    """Copy the assets into `folder` (GX's Data Docs) and point every page at them: no page asks for
    anything outside `folder` when it is opened."""
    for copy in dict.fromkeys(local for _, local in _LOCAL if isinstance(local, _Copy)):
        fsio.copy_file(copy.source(), folder / copy.local)
    dropped: set[str] = set()
    left: dict[str, Path] = {}
    for page in sorted(folder.rglob("*.html")):
        text = page.read_text(encoding="utf-8")
        local = local_page(text, "../" * (len(page.relative_to(folder).parts) - 1), dropped)
        for url in outside_left(local):
            left.setdefault(url, page.relative_to(folder))
        if local != text:
            fsio.write_text(page, local)
    for url in sorted(dropped):
        log.warning("GX Data Docs: %s has no local copy; the pages go without it", url)
    for url, page in sorted(left.items()):  # a tag no rule above rewrites
        log.warning("GX Data Docs: %s (and maybe other pages) still asks for %s when opened", page, url)


def local_page(text: str, to_folder: str, dropped: set[str]) -> str:
    """A page's `text` with each outside asset at its local copy (`to_folder`: the way from the page up to
    the Data Docs folder, "../.." style) or gone. Addresses that no rule knows are added to `dropped`."""
    def tag(match: re.Match[str]) -> str:
        path = urlsplit(match["url"]).path
        known = next((local for pattern, local in _LOCAL if pattern.search(path)), "")
        if known == "":
            dropped.add(match["url"])
        if not known:
            return ""
        start, end = match.start("url") - match.start(), match.end("url") - match.start()
        local = known.local if isinstance(known, _Copy) else known
        return _NOT_LOCAL.sub("", match[0][:start] + to_folder + local + match[0][end:])

    def style(match: re.Match[str]) -> str:
        if match[1]:
            return match[1] + _OUTSIDE_IMPORT.sub("", _OUTSIDE_URL.sub("none", match[2])) + match[3]
        return match[4] + _OUTSIDE_URL.sub("none", match[5])

    return _STYLE.sub(style, _TAG.sub(tag, text))


def outside_left(text: str) -> list[str]:
    """The outside addresses a page's tags other than links (`<a href>`) still name in src or href, which
    a browser would ask for when the page is opened: none after `local_page`, unless a tag it does not
    rewrite (`<iframe>`, `<source>`, ...) appears in GX's pages."""
    return [match["url"] for match in _LEFT.finditer(text)]
