"""The pictures users look at: the curve of the 27-coin sum and the colour-scaled day table.

Rendered headless to PNG files (matplotlib's ``Figure`` without pyplot: no display, no global
state shared between runs), which the export asset also embeds in its Dagster metadata. Labels
are ASCII: the machines running this may have no CJK font.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator


@dataclass(frozen=True)
class Palette:
    """The colours of up and down: ``up``/``down`` for lines and bars, ``cmap`` from the most
    down to the most up."""

    up: str
    down: str
    cmap: str


class PaletteError(ValueError):
    """An unknown colour convention; the message names the known ones."""


RED, GREEN = "#d73027", "#1a9850"
PALETTES: dict[str, Palette] = {
    "cn": Palette(up=RED, down=GREEN, cmap="RdYlGn_r"),  # China's markets: red is up
    "west": Palette(up=GREEN, down=RED, cmap="RdYlGn"),  # Western markets: green is up
}


def render_curve(
    days: list[str],
    times: list[str],
    sums: pd.Series,
    breadth: tuple[pd.Series, pd.Series],
    path: Path,
    title: str,
    palette: Palette,
) -> Path:
    """The sum over slots (their Beijing ``days`` and ``times``), day boundaries marked when it
    spans several days, and below it the breadth: how many coins are up and down since 00:00
    (``breadth``). A slot with no sum (no coin reported) is a gap in the line, not a zero."""
    values = pd.to_numeric(sums, errors="coerce").reset_index(drop=True)
    up, down = (pd.to_numeric(b).reset_index(drop=True) for b in breadth)
    x = np.arange(len(values))
    fig = Figure(figsize=(12 if len(values) > 48 else 9, 5.6), dpi=100)
    ax, ax_breadth = fig.subplots(
        2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1.2], "hspace": 0.08}
    )
    ax.plot(x, values, color="#1f4e79", linewidth=1.4, marker="o" if len(x) == 1 else None)
    up_fill, down_fill = palette.up, palette.down
    ax.fill_between(x, values, 0, where=values >= 0, color=up_fill, alpha=0.18, interpolate=True)
    ax.fill_between(x, values, 0, where=values < 0, color=down_fill, alpha=0.18, interpolate=True)
    ax.axhline(0, color="#555555", linewidth=0.8)
    ax_breadth.bar(x, up, color=palette.up, width=0.8, label="coins up")
    ax_breadth.bar(x, -down, color=palette.down, width=0.8, label="coins down")
    ax_breadth.axhline(0, color="#555555", linewidth=0.8)
    most = max(float(up.max()), float(down.max()), 1.0) if len(x) else 1.0
    ax_breadth.set_ylim(-most * 1.15, most * 1.7)  # headroom above the bars for the legend
    ax_breadth.set_ylabel("coins up / down", fontsize=8)
    ax_breadth.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax_breadth.legend(loc="upper left", fontsize=7, frameon=False, ncols=2)
    starts = [i for i in range(len(days)) if i == 0 or days[i] != days[i - 1]]
    for panel in (ax, ax_breadth):
        for i in starts[1:]:
            panel.axvline(i - 0.5, color="#999999", linewidth=0.8, linestyle="--")
        panel.grid(axis="y", alpha=0.3)
    if len(starts) > 1:
        ax_breadth.set_xticks(starts, [days[i][5:] for i in starts], fontsize=8)
    else:
        ticks = list(range(0, len(times), 4))
        ax_breadth.set_xticks(ticks, [times[i] for i in ticks], fontsize=8)
    ax.set_title(f"27-coin sum of % change since 00:00 Beijing, {title}", fontsize=11)
    ax.set_ylabel("sum of % changes")
    fig.subplots_adjust(left=0.09, right=0.98, top=0.93, bottom=0.07)
    return _save(fig, path)


def render_day_table(
    changes: pd.DataFrame, sums: pd.Series, path: Path, title: str, palette: Palette
) -> Path:
    """The day table as a heat map: a row per slot (``changes``' index), a column per coin and
    the sum, each cell its % change, coloured up or down by ``palette``; grey cells are
    missing."""
    coins = list(changes.columns)
    values = changes.to_numpy(dtype=float)
    limit = max(float(np.nanmax(np.abs(values))) if np.isfinite(values).any() else 1.0, 0.01)
    cmap = matplotlib.colormaps[palette.cmap].with_extremes(bad="#dddddd")
    height = 2.0 + 0.22 * len(changes)
    fig = Figure(figsize=(2.0 + 0.55 * len(coins) + 1.2, height), dpi=80)
    ax, ax_sum = fig.subplots(1, 2, gridspec_kw={"width_ratios": [len(coins), 2]})
    norm = TwoSlopeNorm(vcenter=0.0, vmin=-limit, vmax=limit)
    ax.imshow(np.ma.masked_invalid(values), aspect="auto", cmap=cmap, norm=norm)
    _annotate(ax, values, fontsize=5.5)
    ax.set_xticks(range(len(coins)), coins, rotation=90, fontsize=7)
    ax.set_yticks(range(len(changes)), list(changes.index), fontsize=7)
    ax.set_title(f"% change since 00:00 Beijing, {title}", fontsize=10)

    column = sums.to_numpy(dtype=float).reshape(-1, 1)
    sum_limit = max(float(np.nanmax(np.abs(column))) if np.isfinite(column).any() else 1.0, 0.01)
    ax_sum.imshow(
        np.ma.masked_invalid(column),
        aspect="auto",
        cmap=cmap,
        norm=TwoSlopeNorm(vcenter=0.0, vmin=-sum_limit, vmax=sum_limit),
    )
    _annotate(ax_sum, column, fontsize=6.5)
    ax_sum.set_xticks([0], ["sum"], fontsize=8)
    ax_sum.set_yticks([])
    # Fixed margins: tight_layout would draw the 1,300 labels twice (it doubles the time).
    fig.subplots_adjust(left=0.04, right=0.99, top=0.97, bottom=0.05, wspace=0.03)
    return _save(fig, path)


def _annotate(ax: Axes, values: np.ndarray, fontsize: float) -> None:
    for (row, col), value in np.ndenumerate(values):
        if np.isfinite(value):
            ax.text(col, row, f"{value:+.2f}", ha="center", va="center", fontsize=fontsize)


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(staging)
    staging.replace(path)
    return path


def image_markdown(path: Path, alt: str) -> str:
    """The PNG inlined as Markdown, which the Dagster UI shows as an image in metadata."""
    encoded = base64.b64encode(path.read_bytes()).decode("ascii")
    return f"![{alt}](data:image/png;base64,{encoded})"
