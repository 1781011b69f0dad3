"""One self-contained ``report.html``: every figure embedded as a data URI, every text escaped.

The page needs no network: no external scripts, fonts or style sheets.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from osnmf.atomic import write_text

STYLE = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{border-bottom:2px solid #444}h2{margin-top:2em;border-bottom:1px solid #ccc}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:.9em;color:#555}
table{border-collapse:collapse;font-size:.85em;margin:.8em 0}
td,th{border:1px solid #ddd;padding:3px 7px;text-align:right}th{background:#f4f4f4}
td:first-child,th:first-child{text-align:left}
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


def _table(frame: pd.DataFrame, caption: str, max_rows: int = 60) -> str:
    shown = frame.head(max_rows)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in shown.columns)
    rows = []
    for _, row in shown.iterrows():
        cells = []
        for value in row:
            text = f"{value:.3g}" if isinstance(value, float) else str(value)
            cells.append(f"<td>{html.escape(text)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    more = f"<p><em>{len(frame) - max_rows} more rows in the CSV file.</em></p>" if len(frame) > max_rows else ""
    return (
        f"<p><strong>{html.escape(caption)}</strong></p><table><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>{more}"
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
    params = pd.DataFrame({"parameter": list(parameters), "value": [str(v) for v in parameters.values()]})
    body.append('<h2 id="parameters">Parameters</h2>' + _table(params, "run parameters", max_rows=200))
    page = (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><nav>{nav}<a href='#parameters'>Parameters</a></nav>"
        + "\n".join(body)
        + "</body></html>"
    )
    return write_text(path, page)
