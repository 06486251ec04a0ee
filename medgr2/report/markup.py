"""HTML pieces the report and its sections share: escaping and tables."""

from __future__ import annotations

import html
from typing import Any


def escape(x: Any) -> str:
    """``x`` as text safe inside HTML (for report sections)."""
    return html.escape(str(x), quote=True)


def table(header: list[str], rows: list[list[Any]]) -> str:
    """An HTML table (floats to 3 decimals, ``None`` as "–"), for report sections."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(_fmt(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3f}"
    if v is None:
        return "–"
    return str(v)
