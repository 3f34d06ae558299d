"""Real headless Chromium for the tests of pages (report, profile page, survival plot): .ci/run installs it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

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


_WIDTH_PROBE = """<script>window.addEventListener("load", () => {
  const probe = document.createElement("output"); probe.id = "width-probe";
  probe.textContent = document.documentElement.scrollWidth + " " + document.documentElement.clientWidth;
  document.body.appendChild(probe); });</script>"""


def document_width(page: Path, work: Path, window_width: int) -> tuple[int, int]:
    """(the page's width, the window's) as Chromium lays the page out in a window that wide: a page
    wider than its window scrolls sideways. A copy of the page is measured, with a script added."""
    probe = work / f"width-{window_width}-{page.name}"
    probe.write_text(page.read_text(encoding="utf-8") + _WIDTH_PROBE, encoding="utf-8")
    dom = subprocess.run([*_chromium(), f"--user-data-dir={work / 'chromium'}", f"--window-size={window_width},2000",
                          "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120, check=True)
    found = lxml.html.fromstring(dom.stdout).get_element_by_id("width-probe").text
    scroll, client = map(int, found.split())
    return scroll, client
