"""Pictures of Atari-style observations: RGB frames, GIFs and PNG strips (Pillow; no screen needed).

Each channel gets a colour (channel order = MinAtar's); where channels overlap, the later channel is
drawn on top, as MinAtar's own display does. Cells that a mask hid from the agent but that hold
something in the true game are drawn dark grey, so a viewer sees what the agent missed.
"""

from __future__ import annotations

import colorsys
from pathlib import Path

import numpy as np

HIDDEN = np.array([70, 70, 70], np.uint8)


def palette(channels: int) -> np.ndarray:
    """uint8 ``(channels, 3)``: evenly spaced bright hues."""
    hues = np.linspace(0.0, 1.0, channels, endpoint=False) + 0.05
    return np.array([[int(255 * c) for c in colorsys.hsv_to_rgb(h % 1.0, 0.75, 1.0)] for h in hues], np.uint8)


def to_rgb(obs: np.ndarray, truth: np.ndarray | None = None, scale: int = 16) -> np.ndarray:
    """uint8 ``(..., 10*scale, 10*scale, 3)`` from bool ``(..., 10, 10, C)`` observations.

    `truth` (the unmasked observation) marks hidden cells in grey.
    """
    obs = np.asarray(obs, bool)
    colours = palette(obs.shape[-1])
    top = np.where(obs.any(-1), obs.shape[-1] - 1 - np.argmax(obs[..., ::-1], axis=-1), -1)
    rgb = np.where((top >= 0)[..., None], colours[np.maximum(top, 0)], 0).astype(np.uint8)
    if truth is not None:
        missed = np.asarray(truth, bool).any(-1) & ~obs.any(-1)
        rgb[missed] = HIDDEN
    rgb = rgb.repeat(scale, axis=-3).repeat(scale, axis=-2)
    rgb[..., ::scale, :, :] //= 3  # faint grid lines
    rgb[..., :, ::scale, :] //= 3
    return rgb


def _captioned(frame: np.ndarray, caption: str):
    from PIL import Image, ImageDraw

    height = 14
    image = Image.new("RGB", (frame.shape[1], frame.shape[0] + height), (20, 20, 20))
    image.paste(Image.fromarray(frame), (0, height))
    ImageDraw.Draw(image).text((3, 1), caption, fill=(230, 230, 230))
    return image


def save_gif(path: Path, frames: np.ndarray, captions: list[str], fps: float = 10.0) -> None:
    images = [_captioned(f, c) for f, c in zip(frames, captions)]
    images[0].save(path, format="GIF", save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)


def save_strip(path: Path, frames: np.ndarray, captions: list[str], per_row: int = 10) -> None:
    from PIL import Image

    images = [_captioned(f, c) for f, c in zip(frames, captions)]
    w, h = images[0].size
    rows = (len(images) + per_row - 1) // per_row
    sheet = Image.new("RGB", (min(len(images), per_row) * (w + 2), rows * (h + 2)), (0, 0, 0))
    for i, image in enumerate(images):
        sheet.paste(image, ((i % per_row) * (w + 2), (i // per_row) * (h + 2)))
    sheet.save(path, format="PNG")
