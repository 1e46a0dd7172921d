"""The pictures users look at: the curve of the 27-coin sum and the colour-scaled day table.

Rendered headless to PNG files (matplotlib's ``Figure`` on an Agg canvas, without pyplot: no
display, no global state shared between runs); the export asset shows small previews of them in
its Dagster metadata. Labels are ASCII: the machines running this may have no CJK font.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import matplotlib.colors
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
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


def palette_named(name: str) -> Palette:
    """The palette ``COINSUM_COLORS`` names."""
    try:
        return PALETTES[name.strip().lower()]
    except KeyError:
        raise PaletteError(
            f"COINSUM_COLORS is {name!r}: use cn (red up, green down, as China's markets show "
            "it) or west (green up, red down)."
        ) from None


def colour_scale(palette: Palette, steps: int = 11) -> list[str]:
    """The day table's colour scale as ``steps`` hex colours, from the most down to the most
    up: what the board's HTML table interpolates, so it colours as the picture does."""
    cmap = matplotlib.colormaps[palette.cmap]
    return [matplotlib.colors.to_hex(cmap(i / (steps - 1))) for i in range(steps)]


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


def curve_image(curve: Curve, title: str, palette: Palette) -> Image.Image:
    """The sum over slots, day boundaries marked when it spans several days, incomplete slots
    marked, and below it the breadth. A slot with no sum is a gap in the line, not a zero.
    Rendered once, at 100 dpi: the file and the preview are made from the same pixels."""
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
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return Image.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba()).convert("RGB")


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


def save_png(picture: Image.Image, path: Path) -> Path:
    """Written whole or not at all: a user with the old file open keeps a whole file. Light
    compression: the files are a few hundred KB either way, and stronger levels cost more time
    than a backfill's exports spend drawing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.tmp.png")
    picture.save(staging, format="PNG", compress_level=3)
    staging.replace(path)
    return path


def half_size(image: Image.Image) -> Image.Image:
    """A preview's size: half the file's, as if drawn at 50 dpi."""
    return image.resize((image.width // 2, image.height // 2), Image.Resampling.LANCZOS)


def preview_markdown(image: Image.Image, alt: str, colors: int = 48) -> str:
    """The image as a small inline PNG in Markdown, which the Dagster UI shows as an image.
    Metadata is kept in the event log for good and a day's exports are redone after every slot,
    so only small previews go there (``colors``: the palette's size); the full PNGs are
    files."""
    buffer = io.BytesIO()
    image.convert("RGB").quantize(colors=colors).save(buffer, format="PNG", optimize=True)
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f"![{alt}](data:image/png;base64,{encoded})"
