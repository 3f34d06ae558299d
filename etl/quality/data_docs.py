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
the dark theme. An outside `url(...)` in a style becomes `none`. Links (`<a href>`) stay: a browser
follows them only when they are clicked.

Gotcha: the pages hold the values GX judged, HTML-escaped (gx_suites._as_page_text), so a value never
reads as a tag here; `url(...)` is rewritten only in the pages' styles, never in their text.
"""

from __future__ import annotations

import importlib
import logging
import re
from pathlib import Path
from urllib.parse import urlsplit

from etl import fsio

log = logging.getLogger(__name__)

ASSETS = Path("static") / "rtw"  # in the Data Docs folder
_OWN_ASSETS = Path(__file__).with_name("data_docs_assets")

# What an outside address becomes, by the end of its path (GX's addresses name versions), relative to
# the Data Docs folder; None: the tag goes.
_LOCAL: tuple[tuple[re.Pattern[str], str | None], ...] = (
    (re.compile(r"/bootstrap(\.min)?\.css$"), f"{ASSETS.as_posix()}/bootstrap.min.css"),
    (re.compile(r"/bootstrap(\.bundle)?(\.min)?\.js$"), f"{ASSETS.as_posix()}/bootstrap.bundle.min.js"),
    (re.compile(r"/popper(\.min)?\.js$"), None),  # in Bootstrap's bundle
    (re.compile(r"/jquery-3[\d.]*(\.min)?\.js$"), f"{ASSETS.as_posix()}/jquery.min.js"),
    (re.compile(r"/bootstrap-table(\.min)?\.js$"), f"{ASSETS.as_posix()}/rtw-tables.js"),
    (re.compile(r"/font-awesome/.*\.css$"), f"{ASSETS.as_posix()}/rtw-data-docs.css"),
    (re.compile(r"/logo-long\.png$"), "static/images/logo-long.png"),
    (re.compile(r"/(vega|vega-lite|vega-embed)@\d+$"), None),
    (re.compile(r"/bootstrap-table.*\.css$|/filter-control/.*\.js$"), None),  # rtw-data-docs.css styles the tables
    (re.compile(r"/bootstrap-datepicker.*\.(css|js)$|/bootstrap-prefers-dark\.css$"), None),
)
_OUTSIDE = r"""(?:https?:)?//[^"'\s>]+"""
_TAG = re.compile(rf"""<(?:script|link|img)\b[^>]*?\b(?:src|href)\s*=\s*["'](?P<url>{_OUTSIDE})["'][^>]*>"""
                  r"""(?:\s*</script>)?""", re.IGNORECASE)
_NOT_LOCAL = re.compile(r"""\s(?:integrity|crossorigin)\s*=\s*["'][^"']*["']""", re.IGNORECASE)
_STYLE = re.compile(r"""(<style\b[^>]*>)(.*?)(</style>)|(\bstyle\s*=\s*")([^"]*)(")""", re.IGNORECASE | re.DOTALL)
_OUTSIDE_URL = re.compile(rf"""url\(\s*["']?{_OUTSIDE}["']?\s*\)""", re.IGNORECASE)


def make_self_contained(folder: Path) -> None:
    """Copy the assets into `folder` (GX's Data Docs) and point every page at them: no page asks for
    anything outside `folder` when it is opened."""
    _copy_assets(folder / ASSETS)
    dropped: set[str] = set()
    for page in sorted(folder.rglob("*.html")):
        text = page.read_text(encoding="utf-8")
        local = local_page(text, "../" * (len(page.relative_to(folder).parts) - 1), dropped)
        if local != text:
            fsio.write_text(page, local)
    for url in sorted(dropped):
        log.warning("GX Data Docs: %s has no local copy; the pages go without it", url)


def local_page(text: str, to_folder: str, dropped: set[str] | None = None) -> str:
    """A page's `text` with each outside asset at its local copy (`to_folder`: the way from the page up to
    the Data Docs folder, "../.." style) or gone. Addresses that no rule knows are added to `dropped`."""
    def tag(match: re.Match[str]) -> str:
        path = urlsplit(match["url"]).path
        known = next((local for pattern, local in _LOCAL if pattern.search(path)), False)
        if known is False and dropped is not None:
            dropped.add(match["url"])
        if not known:
            return ""
        return _NOT_LOCAL.sub("", match[0]).replace(match["url"], f"{to_folder}{known}")

    def style(match: re.Match[str]) -> str:
        opening, body, closing = (match[1], match[2], match[3]) if match[1] else (match[4], match[5], match[6])
        return opening + _OUTSIDE_URL.sub("none", body) + closing

    return _STYLE.sub(style, _TAG.sub(tag, text))


def _copy_assets(target: Path) -> None:
    for source in _asset_files():
        fsio.copy_file(source, target / source.name)


def _asset_files() -> list[Path]:
    bootstrap = Path(importlib.import_module("xstatic.pkg.bootstrap").BASE_DIR)
    jquery = Path(importlib.import_module("xstatic.pkg.jquery").BASE_DIR)
    return [bootstrap / "css" / "bootstrap.min.css", bootstrap / "js" / "bootstrap.bundle.min.js",
            jquery / "jquery.min.js", _OWN_ASSETS / "rtw-tables.js", _OWN_ASSETS / "rtw-data-docs.css"]
