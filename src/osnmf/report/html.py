"""One self-contained ``report.html``: every figure embedded as a data URI, every text escaped.

The page needs no network: no external scripts, fonts or style sheets.
"""

from __future__ import annotations

import base64
import html
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from osnmf.atomic import write_text

STYLE = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{border-bottom:2px solid #444}h2{margin-top:2em;border-bottom:1px solid #ccc}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:.9em;color:#555}
.table-wrap{max-width:100%;overflow-x:auto;margin:.8em 0}
table{border-collapse:collapse;font-size:.85em}
td,th{border:1px solid #ddd;padding:3px 7px;text-align:left;vertical-align:top}th{background:#f4f4f4}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.note{background:#f8f8f0;border-left:4px solid #cc9;padding:.5em 1em}
nav a{margin-right:1em}
"""


@dataclass
class Section:
    """A report section: paragraphs (plain text, escaped), figures (PNG path, caption), tables."""

    title: str
    paragraphs: list[str] = field(default_factory=list)
    figures: list[tuple[Path, str]] = field(default_factory=list)
    tables: list[tuple[pd.DataFrame, str]] = field(default_factory=list)
    html: str = ""  # trusted markup after the figures (the atlas view), inserted as is

    @property
    def anchor(self) -> str:
        return "".join(c if c.isalnum() else "-" for c in self.title.lower())


def _image(path: Path, caption: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    alt = html.escape(caption, quote=True)
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{alt}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def cell_text(value) -> str:
    """A table cell as a reader wants it: no Python reprs (tuples, dicts, None, nan)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        return f"{float(value):#.3g}".rstrip(".")  # 1.00, not 1: the digits shown are the digits known
    if isinstance(value, dict):
        return "; ".join(f"{cell_text(k)}: {cell_text(v)}" for k, v in value.items())
    if isinstance(value, (tuple, list, np.ndarray)):
        return ", ".join(cell_text(v) for v in value)
    return str(value)


NUMBER_TEXT = re.compile(r"^[-+−]?\d+(\.\d+)?(e[-+]?\d+)?( ± \d+(\.\d+)?)?$")


def _is_number(value) -> bool:
    """A number, or text that is one (``0.98``, ``0.981 ± 0.004``)."""
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, (int, float, np.integer, np.floating)):
        return True
    return isinstance(value, str) and bool(NUMBER_TEXT.match(value))


def numeric_columns(frame: pd.DataFrame) -> list[bool]:
    """Per column: every value shown is a number (right-aligned); a column with text is left-aligned."""
    def shown(column):
        return [v for v in frame[column] if cell_text(v) != "—"]

    return [bool(shown(c)) and all(_is_number(v) for v in shown(c)) for c in frame.columns]


def _table(frame: pd.DataFrame, caption: str, max_rows: int = 60) -> str:
    shown = frame.head(max_rows)
    numeric = numeric_columns(shown)
    cls = [' class="num"' if n else "" for n in numeric]
    head = "".join(f"<th{c}>{html.escape(str(name))}</th>" for name, c in zip(shown.columns, cls, strict=True))
    rows = []
    for row in shown.itertuples(index=False):
        cells = "".join(f"<td{c}>{html.escape(cell_text(v))}</td>" for v, c in zip(row, cls, strict=True))
        rows.append(f"<tr>{cells}</tr>")
    more = f"<p><em>{len(frame) - max_rows} more rows in the CSV file.</em></p>" if len(frame) > max_rows else ""
    return (
        f'<p><strong>{html.escape(caption)}</strong></p><div class="table-wrap"><table><thead><tr>{head}</tr>'
        f"</thead><tbody>{''.join(rows)}</tbody></table></div>{more}"
    )


def write_report(path: str | Path, title: str, sections: list[Section], parameters: dict) -> Path:
    """Write the report atomically and return its path."""
    nav = "".join(f'<a href="#{s.anchor}">{html.escape(s.title)}</a>' for s in sections)
    body = []
    for section in sections:
        parts = [f'<h2 id="{section.anchor}">{html.escape(section.title)}</h2>']
        parts += [f"<p>{html.escape(p)}</p>" for p in section.paragraphs]
        parts += [_table(frame, caption) for frame, caption in section.tables]
        parts += [_image(png, caption) for png, caption in section.figures]
        parts += [section.html] if section.html else []
        body.append("\n".join(parts))
    params = pd.DataFrame({"parameter": list(parameters), "value": [cell_text(v) for v in parameters.values()]})
    body.append('<h2 id="parameters">Parameters</h2>' + _table(params, "run parameters", max_rows=200))
    page = (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><nav>{nav}<a href='#parameters'>Parameters</a></nav>"
        + "\n".join(body)
        + "</body></html>"
    )
    return write_text(path, page)
