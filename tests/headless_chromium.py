"""Real headless Chromium for the tests of pages (report, profile page, survival plot): .ci/run installs it."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import lxml.html
import pytest

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _chromium() -> list[str]:
    found = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("Chromium is needed to render pages: apt-get install chromium (.ci/run does)")
    return [found, *FLAGS]


def dump_dom(page: Path, work: Path) -> str:
    """The DOM Chromium builds from the page once it has loaded, as HTML."""
    dom = subprocess.run([*_chromium(), f"--user-data-dir={work / 'chromium'}", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120, check=True)
    assert "</html>" in dom.stdout, dom.stderr[-2000:]
    return dom.stdout


def screenshot(page: Path, work: Path, shot: Path, size: str = "1280,2000") -> Path:
    """A PNG of the page as Chromium draws it in a window of `size` (width,height)."""
    subprocess.run([*_chromium(), f"--user-data-dir={work / 'chromium'}", f"--screenshot={shot}",
                    f"--window-size={size}", page.as_uri()], capture_output=True, timeout=120, check=True)
    return shot


def document_width(page: Path, work: Path, window_width: int) -> tuple[int, int]:
    """(the page's width, the window's) as Chromium lays the page out in a window that wide: a page
    wider than its window scrolls sideways. A copy of the page is measured, with a script added."""
    scroll, client = _probed(work / f"width-{window_width}-{page.name}", page.read_text(encoding="utf-8"),
                             "[document.documentElement.scrollWidth, document.documentElement.clientWidth]",
                             work, [f"--window-size={window_width},2000"])
    return scroll, client


# No network: every host name resolves to nothing, and every address goes to a closed port here.
_OFFLINE = ["--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=http://127.0.0.1:9",
            "--proxy-bypass-list=<-loopback>"]
_LOCAL_SCHEMES = {"file", "data", "blob", "about", "chrome", "devtools"}
_ERRORS_KEPT = """<script>window.pageErrors = [];
  window.addEventListener("error", (e) => window.pageErrors.push(e.message || e.target.src || e.target.href), true);
</script>"""
_PROBED = """<script>window.addEventListener("load", () => Promise.resolve(%s).then((value) => {
  const probe = document.createElement("output"); probe.id = "probe";
  probe.textContent = JSON.stringify(value); document.body.appendChild(probe); }));</script>"""


def _page_requests(net_log: Path) -> list[str]:
    """The addresses the page asked for, from Chromium's net log (the browser's own requests, such as its
    update checks, have no page behind them: their initiator is "not an origin")."""
    log = json.loads(net_log.read_text(encoding="utf-8"))
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    asked = []
    for event in log["events"]:
        params = event.get("params", {})
        if event["type"] == start and "url" in params and params.get("initiator") != "not an origin":
            asked.append(params["url"])
    return asked


def open_offline(page: Path, work: Path, probe: str) -> tuple[list[str], Any]:
    """Open `page` with the network cut off: (every address outside this machine's files that it asked
    for, blocked but asked; the value of the JavaScript expression `probe`, or of the promise it gives, once
    the page has loaded, `window.pageErrors` holding what its scripts and resources raised). A copy of the
    page is opened, in its folder so that its relative links hold, with a script added first and last."""
    text = page.read_text(encoding="utf-8")
    head = text.index("<head>") + len("<head>")
    net_log = work / f"net-{page.stem}.json"
    shown = _probed(page.with_name(f"probe-{page.name}"), text[:head] + _ERRORS_KEPT + text[head:], probe, work,
                    [*_OFFLINE, f"--log-net-log={net_log}", "--virtual-time-budget=10000"])
    outside = [url for url in _page_requests(net_log) if urlsplit(url).scheme not in _LOCAL_SCHEMES]
    return outside, shown


def _probed(copy: Path, text: str, probe: str, work: Path, flags: list[str]) -> Any:
    """The value of the JavaScript expression `probe` (or of the promise it gives) once Chromium, run with
    `flags`, has loaded the page `text`: a copy, written as `copy` for the time it is open, with a script
    added last (`_PROBED`) that shows the value."""
    copy.write_text(text + _PROBED % probe, encoding="utf-8")
    try:
        dom = subprocess.run([*_chromium(), *flags, f"--user-data-dir={work / 'chromium'}", "--dump-dom",
                              copy.as_uri()], capture_output=True, text=True, timeout=120, check=True)
    finally:
        copy.unlink()
    return json.loads(lxml.html.fromstring(dom.stdout).get_element_by_id("probe").text)
