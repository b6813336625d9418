"""PNG bytes for the report: the stages' own plots (`plot_curves`, `plot_scores`) drawn into
memory, and bar charts of the data stage's histograms. matplotlib is imported only here, when
a figure is drawn, with the Agg backend (no display needed)."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import BinaryIO


def png(draw: Callable[[BinaryIO], None]) -> bytes:
    """The PNG that `draw` writes to the file object it is given."""
    buffer = io.BytesIO()
    draw(buffer)
    return buffer.getvalue()


def bar_panels(title: str, xlabel: str, panels: dict[str, dict[str, int]]) -> bytes:
    """One bar chart per panel, side by side, each bar labelled with its count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    widest = max((len(counts) for counts in panels.values()), default=1)
    width = max(3.0, 0.55 * widest + 1.2)
    fig, axes = plt.subplots(1, len(panels), figsize=(width * len(panels), 3.6), dpi=100, squeeze=False)
    for ax, (name, counts) in zip(axes[0], panels.items(), strict=True):
        bars = ax.bar(range(len(counts)), list(counts.values()), color="#4c72b0")
        ax.bar_label(bars, fontsize=8)
        ax.set_xticks(range(len(counts)), list(counts), fontsize=8, rotation=30 if widest > 4 else 0)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("records")
        ax.set_title(name, fontsize=10)
        ax.margins(y=0.15)
    fig.suptitle(title)
    fig.tight_layout()
    drawn = png(lambda out: fig.savefig(out, format="png"))
    plt.close(fig)
    return drawn
