"""NumPy drawing helpers for the control kernels' pictures (`pendulum.render`, `maze2d.render`): filled discs and
thick segments on an RGB canvas, and the captioned GIF / PNG-strip writers shared with the Atari viewer."""

from __future__ import annotations

import numpy as np

from agentlab.kernels.atari.viewer import save_gif, save_strip  # noqa: F401 (re-exported for `agentlab render`)


def canvas(height: int, width: int, colour: tuple[int, int, int]) -> np.ndarray:
    """uint8 ``(height, width, 3)`` filled with `colour`."""
    return np.broadcast_to(np.asarray(colour, np.uint8), (height, width, 3)).copy()


def pixel_centres(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(px, py)``: the column and row coordinates of every pixel's centre, broadcastable to the image."""
    rows, cols = image.shape[:2]
    return np.arange(cols)[None, :] + 0.5, np.arange(rows)[:, None] + 0.5


def disc(image: np.ndarray, cx: float, cy: float, radius: float, colour: tuple[int, int, int]) -> None:
    """Fill the disc of `radius` pixels around ``(cx, cy)`` (column, row) in place."""
    px, py = pixel_centres(image)
    image[(px - cx) ** 2 + (py - cy) ** 2 <= radius**2] = colour


def segment(
    image: np.ndarray, start: tuple[float, float], end: tuple[float, float], width: float, colour: tuple[int, int, int]
) -> None:
    """Fill the pixels within ``width / 2`` of the segment `start` -> `end` (column, row points) in place."""
    px, py = pixel_centres(image)
    (x0, y0), (x1, y1) = start, end
    dx, dy = x1 - x0, y1 - y0
    length2 = max(dx * dx + dy * dy, 1e-12)
    t = np.clip(((px - x0) * dx + (py - y0) * dy) / length2, 0.0, 1.0)
    image[(px - x0 - t * dx) ** 2 + (py - y0 - t * dy) ** 2 <= (width / 2) ** 2] = colour
