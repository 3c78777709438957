"""Reports people can read: Markdown tables, and HTML pages that embed them with plots."""

from __future__ import annotations

import base64
import html
import io


def markdown_to_html(
    text: str, title: str = "edgead report", images: dict[str, bytes] | None = None
) -> str:
    """A self-contained HTML page from Markdown (Python-Markdown, tables extension)."""
    import markdown

    body = markdown.markdown(text, extensions=["tables"])
    for name, png in (images or {}).items():
        data = base64.b64encode(png).decode()
        body += (
            f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(name)}</figcaption></figure>\n"
        )
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
        "padding:4px 8px;text-align:right}th{background:#f3f3f3}img{max-width:100%}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
        f"</title><style>{style}</style></head><body><h1>{html.escape(title)}</h1>\n"
        f"{body}</body></html>\n"
    )


def figure_png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()
