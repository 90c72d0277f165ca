"""A self-contained HTML report: headings, key-value tables, paragraphs and embedded PNGs.

Images are inlined as base64 so the single file can be mailed or attached to
an issue and still show every picture.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any, Sequence

_STYLE = """
body{font-family:system-ui,-apple-system,sans-serif;max-width:1100px;margin:2em auto;color:#222;line-height:1.45}
h1{border-bottom:2px solid #444}h2{margin-top:1.8em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ccc;padding:.25em .7em;text-align:left}
th{background:#f3f3f3}img{max-width:100%;border:1px solid #ddd;margin:.4em 0}
figure{display:inline-block;margin:.4em 1em .4em 0;vertical-align:top}figcaption{font-size:.9em;color:#555}
pre{background:#f7f7f7;padding:.6em;white-space:pre-wrap}
"""


class HtmlReport:
    """Collects sections in order; ``write(path)`` renders one HTML file."""

    def __init__(self, title: str) -> None:
        self.title = title
        self._parts: list[str] = []

    def heading(self, text: str) -> None:
        self._parts.append(f"<h2>{html.escape(text)}</h2>")

    def paragraph(self, text: str) -> None:
        self._parts.append(f"<p>{html.escape(text)}</p>")

    def preformatted(self, text: str) -> None:
        self._parts.append(f"<pre>{html.escape(text)}</pre>")

    def table(self, rows: Sequence[Sequence[Any]], header: Sequence[str] | None = None) -> None:
        out = ["<table>"]
        if header:
            out.append("<tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in header) + "</tr>")
        for row in rows:
            out.append("<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row) + "</tr>")
        out.append("</table>")
        self._parts.append("".join(out))

    def images(self, paths: Sequence[str | Path], captions: Sequence[str] | None = None) -> None:
        figs = []
        for i, path in enumerate(paths):
            path = Path(path)
            if not path.is_file():
                continue
            data = base64.b64encode(path.read_bytes()).decode("ascii")
            cap = html.escape(captions[i]) if captions else html.escape(path.name)
            figs.append(f'<figure><img src="data:image/png;base64,{data}" alt="{cap}">'
                        f"<figcaption>{cap}</figcaption></figure>")
        self._parts.append("<div>" + "".join(figs) + "</div>")

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        body = "\n".join(self._parts)
        path.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}"
                        f"</title><style>{_STYLE}</style></head><body><h1>{html.escape(self.title)}</h1>\n"
                        f"{body}\n</body></html>\n")
        return path


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
