"""The day table as a picture: a colour-scaled grid, a row per slot and a column per coin, drawn
straight into pixels with Pillow.

Drawn in pixels rather than with matplotlib because a day has some 1,300 numbers: as matplotlib
text objects they took about a second a day, most of a backfill's export time; as Pillow text
they take milliseconds. Every size is in pixels and the image is sized from what it holds, so
nothing is cut off at any number of rows or coins, and the numbers are at least 9 px tall at
100 %. The font is DejaVu Sans, which ships with matplotlib (no system font needed); labels are
ASCII for the same reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.colors import Colormap, TwoSlopeNorm
from PIL import Image, ImageDraw, ImageFont

from coinsum_pipeline.warehouse.charts import RED, Palette

FONT = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
WHITE, INK, GRID, MISSING = (255, 255, 255), (20, 20, 20), (90, 90, 90), (221, 221, 221)


@dataclass(frozen=True)
class TableLayout:
    """Sizes in pixels. ``numbers``: write each cell's value in it (the file); without, a
    preview of colours and names (Dagster's metadata)."""

    cell_w: int
    cell_h: int
    sum_w: int
    font: int  # px; DejaVu's digits are about 0.7 of it tall
    numbers: bool
    time_every: int  # label every n-th row with its time
    margin: int = 12
    gap: int = 10
    bar_w: int = 16


FULL_TABLE = TableLayout(cell_w=60, cell_h=22, sum_w=70, font=14, numbers=True, time_every=1)
PREVIEW_TABLE = TableLayout(
    cell_w=17, cell_h=7, sum_w=24, font=9, numbers=False, time_every=4, margin=6, gap=6, bar_w=8
)


@dataclass
class Drawing:
    """The picture, and every text on it with its box (left, top, right, bottom), so a test can
    check that each one is inside the image and how tall the digits are."""

    image: Image.Image
    texts: list[tuple[str, tuple[int, int, int, int]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._draw = ImageDraw.Draw(self.image)

    def write(
        self, xy: tuple[float, float], value: str, anchor: str, font: ImageFont.FreeTypeFont
    ) -> None:
        self._draw.text(xy, value, fill=INK, font=font, anchor=anchor)
        self.texts.append((value, self._draw.textbbox(xy, value, font=font, anchor=anchor)))

    def frame(self, box: tuple[float, float, float, float]) -> None:
        self._draw.rectangle(box, outline=GRID)


def _limit(values: np.ndarray) -> float:
    """The largest move either way: the ends of a colour scale centred on 0."""
    finite = np.isfinite(values)
    return max(float(np.abs(values[finite]).max()) if finite.any() else 1.0, 0.01)


@cache
def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(FONT), size)


def draw_day_table(
    changes: pd.DataFrame,
    sums: pd.Series,
    title: str,
    palette: Palette,
    layout: TableLayout = FULL_TABLE,
) -> Drawing:
    """The day table: a row per slot (``changes``' index, HH:MM), a column per coin (its name
    above and below) and the sum, each cell coloured by its % change on a scale centred on 0
    (up and down in ``palette``'s colours; the sum column has its own scale), a colour scale,
    and a caption; grey cells are missing."""
    font = _font(layout.font)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))

    def size(text: str, f: ImageFont.FreeTypeFont = font) -> tuple[int, int]:
        left, top, right, bottom = probe.textbbox((0, 0), text, font=f, anchor="lt")
        return right - left, bottom - top

    coins = [str(c) for c in changes.columns]
    times = [str(t) for t in changes.index]
    rows = max(len(times), 1)
    line = size("Ag")[1] + 4
    rotated = any(size(c)[0] > layout.cell_w - 4 for c in coins)
    names_h = max((size(c)[0] for c in coins), default=0) + 4 if rotated else line
    up, down = ("red", "green") if palette.up == RED else ("green", "red")
    caption = [
        f"{up} = up, {down} = down since 00:00 Beijing; the sum column has its own scale",
        "grey = missing (the reason is in missing_values)",
    ]
    title_font = _font(layout.font + 4)
    title_text = f"% change since 00:00 Beijing, {title}"

    times_w = max(size(t)[0] for t in [*times, "00:00"]) + 6
    grid_x = layout.margin + times_w
    grid_w = layout.cell_w * len(coins)
    sum_x = grid_x + grid_w + layout.gap
    bar_x = sum_x + layout.sum_w + 2 * layout.gap
    values = changes.to_numpy(dtype=float).reshape(len(times), len(coins))
    column = sums.to_numpy(dtype=float).reshape(-1, 1)
    limit = _limit(values)
    scale_labels = [f"{v:+.2f}%" for v in (limit, -limit)]
    width = bar_x + layout.bar_w + 6 + max(size(t)[0] for t in scale_labels)
    width = (
        max(
            width,
            layout.margin * 2 + max(size(c)[0] for c in caption),
            layout.margin * 2 + size(title_text, title_font)[0],
        )
        + layout.margin
    )
    grid_y = layout.margin + size(title_text, title_font)[1] + layout.gap + names_h
    grid_h = layout.cell_h * rows
    bar_h = max(grid_h, 6 * line)
    bottom_names_y = grid_y + grid_h + 3
    caption_y = max(bottom_names_y + names_h, grid_y + bar_h + line // 2) + layout.gap
    height = caption_y + line * len(caption) + layout.margin

    drawing = Drawing(Image.new("RGB", (width, height), WHITE))

    def text(xy: tuple[float, float], value: str, anchor: str) -> None:
        drawing.write(xy, value, anchor, font)

    drawing.write((layout.margin, layout.margin), title_text, "lt", title_font)
    cmap = matplotlib.colormaps[palette.cmap]
    _paint(drawing.image, values, limit, (grid_x, grid_y), layout.cell_w, layout, cmap)
    _paint(drawing.image, column, _limit(column), (sum_x, grid_y), layout.sum_w, layout, cmap)
    drawing.frame((grid_x, grid_y, grid_x + grid_w, grid_y + grid_h))
    drawing.frame((sum_x, grid_y, sum_x + layout.sum_w, grid_y + grid_h))

    if layout.numbers:
        for (row, col), value in np.ndenumerate(values):
            if np.isfinite(value):
                x = grid_x + col * layout.cell_w + layout.cell_w / 2
                text((x, grid_y + row * layout.cell_h + layout.cell_h / 2), f"{value:+.2f}", "mm")
        for row, value in enumerate(column[:, 0]):
            if np.isfinite(value):
                y = grid_y + row * layout.cell_h + layout.cell_h / 2
                text((sum_x + layout.sum_w / 2, y), f"{value:+.2f}", "mm")
    for row in range(0, len(times), layout.time_every):
        y = grid_y + row * layout.cell_h + layout.cell_h / 2
        text((grid_x - 6, y), times[row], "rm")
    for names_y, anchor in ((grid_y - 3, "b"), (bottom_names_y, "t")):
        for col, coin in enumerate([*coins, "sum"]):
            x = grid_x + col * layout.cell_w + layout.cell_w / 2
            if coin == "sum":
                x = sum_x + layout.sum_w / 2
            if rotated and coin != "sum":
                _vertical(drawing, coin, font, x, names_y, anchor)
            else:
                text((x, names_y), coin, "m" + ("d" if anchor == "b" else "t"))

    _scale(drawing, font, cmap, limit, (bar_x, grid_y, bar_h), layout.bar_w)
    for i, caption_line in enumerate(caption):
        text((layout.margin, caption_y + i * line), caption_line, "lt")
    return drawing


def _paint(
    image: Image.Image,
    values: np.ndarray,
    limit: float,
    at: tuple[int, int],
    cell_w: int,
    layout: TableLayout,
    cmap: Colormap,
) -> None:
    """Fill the cells of ``values`` from ``at`` (left, top), coloured on a scale centred on 0
    that ends at ``limit`` either way; missing values grey."""
    finite = np.isfinite(values)
    norm = TwoSlopeNorm(vcenter=0.0, vmin=-limit, vmax=limit)
    colours = (cmap(norm(np.where(finite, values, 0.0)))[..., :3] * 255).astype(np.uint8)
    colours[~finite] = MISSING
    cells = np.repeat(np.repeat(colours, layout.cell_h, axis=0), cell_w, axis=1)
    image.paste(Image.fromarray(cells, "RGB"), at)


def _vertical(
    drawing: Drawing, label: str, font: ImageFont.FreeTypeFont, x: float, y: float, anchor: str
) -> None:
    """A coin name written bottom to top, centred on ``x``, ending at ``y`` (above the grid,
    ``anchor`` "b") or starting at it (below, "t")."""
    left, top, right, bottom = font.getbbox(label)
    strip = Image.new("RGB", (right - left + 2, bottom - top + 2), WHITE)
    ImageDraw.Draw(strip).text((1 - left, 1 - top), label, fill=INK, font=font)
    strip = strip.rotate(90, expand=True)
    left_x = round(x - strip.width / 2)
    top_y = round(y - strip.height) if anchor == "b" else round(y)
    drawing.image.paste(strip, (left_x, top_y))
    drawing.texts.append((label, (left_x, top_y, left_x + strip.width, top_y + strip.height)))


def _scale(
    drawing: Drawing,
    font: ImageFont.FreeTypeFont,
    cmap: Colormap,
    limit: float,
    box: tuple[int, int, int],
    bar_w: int,
) -> None:
    """The colour scale of the coins' cells in ``box`` (left, top, height): a vertical bar from
    the largest rise (top) to the largest fall, labelled at both ends and at 0."""
    x, y, h = box
    bar = (cmap(np.linspace(1.0, 0.0, h))[:, :3] * 255).astype(np.uint8)
    drawing.image.paste(Image.fromarray(np.repeat(bar[:, None, :], bar_w, axis=1), "RGB"), (x, y))
    drawing.frame((x, y, x + bar_w, y + h))
    for value, at in ((limit, y), (0.0, y + h / 2), (-limit, y + h)):
        drawing.write((x + bar_w + 5, at), f"{value:+.2f}%", "lm", font)
