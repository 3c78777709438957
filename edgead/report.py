"""Reports people can read: Markdown tables, and HTML pages that embed them with plots."""

from __future__ import annotations

import base64
import html
import io
from typing import Any


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


def roc_png(curves: list[tuple[str, list[int], list[float]]], title: str) -> bytes:
    """ROC curves, one per (name, labels, scores)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_auc_score, roc_curve

    fig, ax = plt.subplots(figsize=(4.5, 4.2))
    for name, labels, scores in curves:
        if len(set(labels)) < 2:
            continue
        fpr, tpr, _ = roc_curve(labels, scores)
        ax.plot(fpr, tpr, label=f"{name} ({100 * roc_auc_score(labels, scores):.1f})")
    ax.plot([0, 1], [0, 1], color="#bbb", lw=0.8, ls="--")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=title)
    ax.legend(loc="lower right", fontsize=8)
    png = figure_png(fig)
    plt.close(fig)
    return png


def histogram_png(
    labels: list[int], scores: list[float], threshold: float | None, title: str
) -> bytes:
    """Score histograms of good vs defective images, with the threshold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    s, y = np.asarray(scores), np.asarray(labels)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    bins = np.linspace(s.min(), s.max(), 30)
    ax.hist(s[y == 0], bins=bins, alpha=0.6, label="good", color="#2a7")
    ax.hist(s[y == 1], bins=bins, alpha=0.6, label="defective", color="#d43")
    if threshold is not None:
        ax.axvline(threshold, color="k", lw=1, ls="--", label="threshold")
    ax.set(xlabel="image score", ylabel="images", title=title)
    ax.legend(fontsize=8)
    png = figure_png(fig)
    plt.close(fig)
    return png


def overlays_png(cases: list[tuple[str, Any]], title: str) -> bytes:
    """A row of labelled overlay images (BGR arrays)."""
    import cv2
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(cases), figsize=(3 * len(cases), 3.3), squeeze=False)
    for ax, (caption, image) in zip(axes[0], cases, strict=True):
        ax.imshow(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
        ax.set_title(caption, fontsize=8)
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    png = figure_png(fig)
    plt.close(fig)
    return png


def plots_available() -> bool:
    """Whether matplotlib (the report extra) is there to draw plots."""
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


def bench_plots(report: Any) -> dict[str, bytes]:
    """Latency distribution per stage (batch 1) and throughput per batch size, as PNGs."""
    try:
        import matplotlib
    except ImportError:
        return {}
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}
    samples = {k: v for k, v in report.latency_samples_ms.items() if v}
    if samples:
        fig, ax = plt.subplots(figsize=(6, 3.4))
        ax.boxplot(list(samples.values()), orientation="horizontal", showfliers=True)
        ax.set_yticks(range(1, len(samples) + 1), list(samples))
        ax.set(xlabel="ms per image (batch 1)", title="latency per stage")
        out["latency distribution per stage (batch 1)"] = figure_png(fig)
        plt.close(fig)
    if report.throughput:
        fig, ax = plt.subplots(figsize=(5, 3.2))
        batches = [str(b) for b in report.throughput]
        ax.bar(batches, list(report.throughput.values()), color="#37a")
        ax.set(xlabel="batch size", ylabel="images/s", title="throughput")
        out["throughput per batch size"] = figure_png(fig)
        plt.close(fig)
    return out


def compare_plots(report: Any) -> dict[str, bytes]:
    """Backbone and total latency (batch 1) of each configuration side by side, as PNGs."""
    try:
        import matplotlib
    except ImportError:
        return {}
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ran = [c for c in report.configurations if c.unavailable is None]
    out = {}
    for stage in ("graph", "total"):
        samples = [c.latency_samples_ms.get(stage, []) for c in ran]
        if not any(samples):
            continue
        fig, ax = plt.subplots(figsize=(6, 0.6 + 0.45 * len(ran)))
        ax.boxplot(samples, orientation="horizontal", showfliers=True)
        ax.set_yticks(range(1, len(ran) + 1), [c.label for c in ran])
        ax.set(xlabel="ms per image (batch 1)", title=f"{stage} latency per configuration")
        fig.tight_layout()
        out[f"{stage} latency per configuration (batch 1, interleaved)"] = figure_png(fig)
        plt.close(fig)
    return out
