"""The pictures users look at: the curve of the 27-coin sum and the colour-scaled day table.

Rendered headless to PNG files (matplotlib's ``Figure`` without pyplot: no display, no global
state shared between runs); the export asset shows small previews of them in its Dagster
metadata. Labels are ASCII: the machines running this may have no CJK font.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.colors import Colormap, TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.ticker import MaxNLocator
from PIL import Image


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


@dataclass(frozen=True)
class Curve:
    """What the curve shows, one entry per slot: its Beijing ``days`` and ``times``, the sum (NaN
    when no coin reported), how many coins are ``up`` and ``down`` since 00:00, and whether the
    slot is ``incomplete`` (fewer coins reported than its basket has)."""

    days: list[str]
    times: list[str]
    sums: pd.Series
    up: pd.Series
    down: pd.Series
    incomplete: pd.Series


def curve_figure(curve: Curve, title: str, palette: Palette) -> Figure:
    """The sum over slots, day boundaries marked when it spans several days, incomplete slots
    marked, and below it the breadth. A slot with no sum is a gap in the line, not a zero."""
    values = pd.to_numeric(curve.sums, errors="coerce").reset_index(drop=True)
    up, down = (pd.to_numeric(b).reset_index(drop=True) for b in (curve.up, curve.down))
    incomplete = curve.incomplete.reset_index(drop=True).astype(bool)
    x = np.arange(len(values))
    fig = Figure(figsize=(12 if len(values) > 48 else 9, 5.6), dpi=100)
    ax, ax_breadth = fig.subplots(
        2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1.2], "hspace": 0.08}
    )
    ax.plot(x, values, color="#1f4e79", linewidth=1.4, marker="o" if len(x) == 1 else None)
    ax.fill_between(x, values, 0, where=values >= 0, color=palette.up, alpha=0.18, interpolate=True)
    ax.fill_between(
        x, values, 0, where=values < 0, color=palette.down, alpha=0.18, interpolate=True
    )
    ax.axhline(0, color="#555555", linewidth=0.8)
    if incomplete.any():
        ax.scatter(
            x[incomplete],
            values[incomplete].fillna(0),
            s=28,
            facecolors="white",
            edgecolors="#e08214",
            linewidths=1.4,
            zorder=3,
            label="incomplete slot (fewer coins than the basket)",
        )
        ax.legend(loc="best", fontsize=8, frameon=False)
    ax_breadth.bar(x, up, color=palette.up, width=0.8, label="coins up")
    ax_breadth.bar(x, -down, color=palette.down, width=0.8, label="coins down")
    ax_breadth.axhline(0, color="#555555", linewidth=0.8)
    most = max(float(up.max()), float(down.max()), 1.0) if len(x) else 1.0
    ax_breadth.set_ylim(-most * 1.15, most * 1.7)  # headroom above the bars for the legend
    ax_breadth.set_ylabel("coins up / down", fontsize=8)
    ax_breadth.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax_breadth.legend(loc="upper left", fontsize=7, frameon=False, ncols=2)
    starts = [i for i in range(len(curve.days)) if i == 0 or curve.days[i] != curve.days[i - 1]]
    for panel in (ax, ax_breadth):
        for i in starts[1:]:
            panel.axvline(i - 0.5, color="#999999", linewidth=0.8, linestyle="--")
        panel.grid(axis="y", alpha=0.3)
    ticks, labels = _time_ticks(curve.days, curve.times, starts)
    ax_breadth.set_xticks(ticks, labels, fontsize=8)
    ax.set_title(f"27-coin sum of % change since 00:00 Beijing, {title}", fontsize=11)
    ax.set_ylabel("sum of % changes (%)")
    fig.subplots_adjust(left=0.09, right=0.98, top=0.93, bottom=0.09)
    return fig


def _time_ticks(days: list[str], times: list[str], starts: list[int]) -> tuple[list[int], list]:
    """Ticks a person can read: every 2 hours for a day; for up to 3 days each day's start
    (month-day) and its 06:00, 12:00 and 18:00; for longer ranges day starts, thinned to at
    most 16 labels."""
    if len(starts) <= 1:
        ticks = list(range(0, len(times), 4))
        return ticks, [times[i] for i in ticks]
    if len(starts) <= 3:
        ticks = [i for i, t in enumerate(times) if t in ("00:00", "06:00", "12:00", "18:00")]
        return ticks, [f"{days[i][5:]}\n00:00" if times[i] == "00:00" else times[i] for i in ticks]
    ticks = starts[:: -(-len(starts) // 16)]
    return ticks, [days[i][5:] for i in ticks]


@dataclass(frozen=True)
class TableLayout:
    """The day table's geometry in inches at ``dpi``; margins are fixed in inches, so the title
    and labels fit at any number of rows. ``numbers``: write each cell's value in it."""

    cell_w: float
    cell_h: float
    sum_w: float
    font: float
    numbers: bool
    dpi: int = 100
    left: float = 0.62
    gap: float = 0.12
    legend_w: float = 0.95


# The file: a cell fits "+12.34" in 9 pt digits (about 9 px tall at 100 dpi).
FULL_TABLE = TableLayout(cell_w=0.58, cell_h=0.21, sum_w=0.78, font=9, numbers=True)
# The preview in Dagster's metadata: colours and names only, a few KB.
PREVIEW_TABLE = TableLayout(
    cell_w=0.17, cell_h=0.075, sum_w=0.3, font=5.5, numbers=False, left=0.4, legend_w=0.55
)


def day_table_figure(
    changes: pd.DataFrame,
    sums: pd.Series,
    title: str,
    palette: Palette,
    layout: TableLayout = FULL_TABLE,
) -> Figure:
    """The day table as a heat map: a row per slot (``changes``' index), a column per coin (its
    name above and below) and the sum, each cell its % change, coloured up or down by
    ``palette`` with a colour legend; grey cells are missing."""
    coins = list(changes.columns)
    values = changes.to_numpy(dtype=float)
    cmap = matplotlib.colormaps[palette.cmap].with_extremes(bad="#dddddd")
    rotated = max((len(c) for c in coins), default=0) * layout.font / 72 * 0.6 > layout.cell_w
    label_h = (max((len(c) for c in coins), default=0) * 0.6 if rotated else 1.2) * layout.font
    top = 0.5 + 0.3 * layout.font / 9 + label_h / 72  # the title, then the coin names
    up, down = ("red", "green") if palette.up == RED else ("green", "red")
    caption = [
        f"{up} = up, {down} = down since 00:00 Beijing (the sum column has its own scale)",
        "grey = missing (the reason is in missing_values)",
    ]
    line = layout.font * 1.5 / 72
    bottom = 0.25 + label_h / 72 + line * len(caption)
    grid_w, grid_h = layout.cell_w * len(coins), layout.cell_h * max(len(changes), 1)
    legend_h = max(grid_h, 1.0)  # a readable colour scale even for one slot
    right = layout.left + grid_w + layout.gap + layout.sum_w + layout.gap + layout.legend_w + 0.2
    caption_w = layout.left + max(map(len, caption)) * layout.font * 0.55 / 72 + 0.2
    width, height = max(right, caption_w), top + legend_h + bottom
    fig = Figure(figsize=(width, height), dpi=layout.dpi)

    def box(left: float, w: float, h: float = grid_h) -> list[float]:  # inches -> fractions
        return [left / width, (bottom + legend_h - h) / height, w / width, h / height]

    ax = fig.add_axes(box(layout.left, grid_w))
    image = _heat(ax, values, cmap, layout)
    ax.set_xticks(range(len(coins)), coins, rotation=90 if rotated else 0, fontsize=layout.font)
    ax.tick_params(axis="x", top=True, labeltop=True)
    step = 1 if layout.numbers else 4
    ticks = list(range(0, len(changes), step))
    ax.set_yticks(ticks, [changes.index[i] for i in ticks], fontsize=layout.font)
    fig.suptitle(
        f"% change since 00:00 Beijing, {title}", fontsize=layout.font + 3, y=1 - 0.1 / height
    )

    ax_sum = fig.add_axes(box(layout.left + grid_w + layout.gap, layout.sum_w))
    _heat(ax_sum, sums.to_numpy(dtype=float).reshape(-1, 1), cmap, layout)
    ax_sum.set_xticks([0], ["sum"], fontsize=layout.font)
    ax_sum.tick_params(axis="x", top=True, labeltop=True)
    ax_sum.set_yticks([])

    legend_left = layout.left + grid_w + layout.gap + layout.sum_w + layout.gap + 0.05
    bar = fig.colorbar(image, cax=fig.add_axes(box(legend_left, 0.15, legend_h)))
    bar.ax.tick_params(labelsize=layout.font - 1)
    bar.ax.set_title("%", fontsize=layout.font)
    fig.text(layout.left / width, 0.12 / height, "\n".join(caption), fontsize=layout.font)
    return fig


def _heat(ax: Axes, values: np.ndarray, cmap: Colormap, layout: TableLayout) -> AxesImage:
    """Cells coloured on a scale centred on 0 and symmetric around it, the values written in."""
    finite = np.isfinite(values).any()
    limit = max(float(np.nanmax(np.abs(values))) if finite else 1.0, 0.01)
    norm = TwoSlopeNorm(vcenter=0.0, vmin=-limit, vmax=limit)
    image = ax.imshow(np.ma.masked_invalid(values), aspect="auto", cmap=cmap, norm=norm)
    if layout.numbers:
        _annotate(ax, values, fontsize=layout.font)
    return image


def _annotate(ax: Axes, values: np.ndarray, fontsize: float) -> None:
    for (row, col), value in np.ndenumerate(values):
        if np.isfinite(value):
            ax.text(col, row, f"{value:+.2f}", ha="center", va="center", fontsize=fontsize)


def save_png(fig: Figure, path: Path) -> Path:
    """Written whole or not at all: a user with the old file open keeps a whole file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(staging)
    staging.replace(path)
    return path


def preview_markdown(fig: Figure, alt: str, dpi: float, colors: int = 48) -> str:
    """The figure as a small inline PNG in Markdown, which the Dagster UI shows as an image.
    Metadata is kept in the event log for good and a day's exports are redone after every slot,
    so only previews of about 10 KB go there (``dpi`` sets its size, ``colors`` its palette); the
    full PNGs are files."""
    rendered, buffer = io.BytesIO(), io.BytesIO()
    fig.savefig(rendered, format="png", dpi=dpi)
    with Image.open(rendered) as image:
        image.convert("RGB").quantize(colors=colors).save(buffer, format="PNG", optimize=True)
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f"![{alt}](data:image/png;base64,{encoded})"
