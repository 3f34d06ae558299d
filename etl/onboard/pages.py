"""How onboarding results are shown: Rich tables for the terminal, an offline HTML page for a profile.

What the tables show comes from the file being onboarded (column names, labels, values, sheet names):
plain text for Rich, never markup, its control characters escaped (etl/terminal.py).

The profile page is one self-contained file (inline CSS, a few lines of script to filter columns),
written owner-only (0600, in a 0700 folder) because even masked, a profile describes patient data.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from etl import fsio
from etl.onboard.check import CheckReport
from etl.onboard.profile import MIN_SHOWN, ColumnProfile, FileProfile, counted, icdo3_text, values_text
from etl.terminal import plain, printable

_TEMPLATES = Path(__file__).parent / "templates"


def empty_share(column: ColumnProfile) -> str:
    """The share of a column's records left empty, on the terminal and the page alike; '–' in a record set
    without records (no share at all: 0 % beside the type `empty` read as a contradiction)."""
    return f"{column.null_rate:.0%}" if column.rows else "–"


def profile_tables(profile: FileProfile) -> RenderableType:
    """The profile as terminal tables: a header, then one table per record set."""
    parts: list[RenderableType] = [Text.assemble(
        ("Profile of ", "bold"), (printable(profile.file_name), "bold cyan"), f" ({profile.format}, "
        f"{counted(len(profile.record_sets), 'record set')}); values seen < {MIN_SHOWN} times are masked")]
    parts += [plain(f"  {note}", style="dim") for note in (*profile.notes, *profile.notices)]
    for rs in profile.record_sets:
        labelled = any(c.label for c in rs.columns)  # CSV and Excel have none: no empty column
        # Why scaffold drafts a column with an ICD-O-3 type (or, shaped like one, does not): only where one is.
        icdo3 = any(icdo3_text(c) for c in rs.columns)
        table = Table(title=plain(f"{rs.name}: {rs.records:,} records"), title_justify="left", expand=False)
        table.add_column("column", overflow="fold")
        if labelled:
            table.add_column("label", overflow="fold")
        table.add_column("type")
        table.add_column("detail", overflow="fold")
        if icdo3:
            table.add_column("ICD-O-3", overflow="fold")
        table.add_column("empty", justify="right")
        table.add_column("distinct", justify="right")
        table.add_column("frequent values", overflow="fold")
        for c in rs.columns:
            cells = [c.name, *([c.label or ""] if labelled else []), c.kind, c.detail,
                     *([icdo3_text(c)] if icdo3 else []), empty_share(c), str(c.distinct), values_text(c)]
            table.add_row(*(plain(cell) for cell in cells))
        parts.append(table)
    return Group(*parts)


def check_tables(report: CheckReport) -> RenderableType:
    """The findings of `rtw check` as a table, then a one-line verdict."""
    parts: list[RenderableType] = []
    if report.record_sets:
        sets = ", ".join(f"{name} {count:,}" for name, count in report.record_sets.items())
        parts.append(Text(f"{report.source_id}: {counted(len(report.files), 'current file')}; record sets: {sets}",
                          style="dim"))
    if report.findings:
        table = Table(title=f"rtw check {report.source_id}: {report.mapping_path}", title_justify="left")
        table.add_column("severity")
        table.add_column("where", overflow="fold")
        table.add_column("problem", overflow="fold")
        for finding in sorted(report.findings, key=lambda f: f.severity != "error"):
            style = "red" if finding.severity == "error" else "yellow"
            table.add_row(Text(finding.severity, style=style), plain(finding.where), plain(finding.message))
        parts.append(table)
    warnings = counted(len(report.warnings), "warning")
    if report.usable:
        verdict = Text(f"{report.source_id}: the mapping is usable ({warnings})", style="green")
    else:
        verdict = Text(f"{report.source_id}: the mapping is not usable: {counted(len(report.errors), 'error')}, "
                       f"{warnings}", style="red")
    parts.append(verdict)
    return Group(*parts)


def profile_html(profile: FileProfile) -> str:
    environment = Environment(loader=FileSystemLoader(_TEMPLATES), autoescape=True, undefined=StrictUndefined,
                              trim_blocks=True, lstrip_blocks=True)
    environment.filters["icdo3_text"] = icdo3_text
    environment.filters["empty_share"] = empty_share
    return environment.get_template("profile.html.j2").render(
        profile=profile, min_shown=MIN_SHOWN, generated_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))


def write_private(path: Path, text: str) -> Path:
    """Write a file readable by its owner only, atomically (a reader never sees half a page); folders it
    creates are owner-only too (a profile may be the first thing written to a new home)."""
    fsio.private_folder(path.parent)
    return fsio.write_text(path, text)


def write_profile_page(profile: FileProfile, out: Path) -> Path:
    """The profile as an offline HTML page at `out` (mode 0600)."""
    return write_private(out, profile_html(profile))
