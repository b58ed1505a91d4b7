"""Real pictures as MNIST digits, converted the way MNIST itself was made.

    x = load_digit("photo_of_a_7.jpg")      # (1, 28, 28) float in [0, 1], white ink on black

Any size and format Pillow reads: grayscale; inverted when the background is light; cropped to
the ink's bounding box; scaled (anti-aliased) into a 20x20 box keeping the aspect ratio; placed
in 28x28 so that its centre of mass is the centre. A missing file, a file that is not an image,
an image with no ink and an oversized image are each an ImageError (exit code 2 on the CLI).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError

MAX_PIXELS = 40_000_000   # a 6,000 x 6,000 picture; beyond that, refuse instead of filling memory
INK = 0.2                 # ink: at least this bright (0..1) once the background is black


class ImageError(UserError):
    """A picture that cannot be read as a digit."""


def load_digit(path: str | os.PathLike) -> torch.Tensor:
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if not p.is_file():
        raise ImageError(f"{p}: no such file")
    try:
        with Image.open(p) as im:
            w, h = im.size
            if w * h > MAX_PIXELS:
                raise ImageError(f"{p}: {w}x{h} pixels is too large (at most {MAX_PIXELS:,}); scale it down first")
            gray = np.asarray(im.convert("L"), dtype=np.float32) / 255.0
    except Image.DecompressionBombError as e:
        raise ImageError(f"{p}: too large to decode safely ({e})") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ImageError(f"{p}: not an image Pillow can read ({type(e).__name__})") from None
    return torch.from_numpy(to_mnist(gray, str(p)))[None]


def to_mnist(gray: np.ndarray, name: str = "image") -> np.ndarray:
    """(H, W) grayscale in [0, 1] -> (28, 28) MNIST-style digit in [0, 1]."""
    from PIL import Image

    background = float(np.median(np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])))
    if background > 0.5:                             # dark ink on a light background
        gray, background = 1.0 - gray, 1.0 - background
    span = float(gray.max()) - background
    if span < INK:
        raise ImageError(f"{name}: no ink found (the image is empty or a single colour)")
    ink = np.clip((gray - background) / span, 0.0, 1.0)
    rows, cols = np.flatnonzero((ink > INK).any(1)), np.flatnonzero((ink > INK).any(0))
    crop = ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    h, w = crop.shape
    scale = 20.0 / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    box = np.asarray(Image.fromarray((crop * 255).astype(np.uint8)).resize(size, Image.LANCZOS),
                     dtype=np.float32) / 255.0
    ys, xs = np.indices(box.shape)
    cy, cx = (ys * box).sum() / box.sum(), (xs * box).sum() / box.sum()
    top = int(np.clip(round(14 - cy), 0, 28 - box.shape[0]))
    left = int(np.clip(round(14 - cx), 0, 28 - box.shape[1]))
    out = np.zeros((28, 28), dtype=np.float32)
    out[top:top + box.shape[0], left:left + box.shape[1]] = box
    return out


def image_files(folder: str | os.PathLike) -> list[Path]:
    """The files of a gallery folder (sorted; hidden files skipped)."""
    d = Path(folder)
    if not d.is_dir():
        raise ImageError(f"{d}: no such folder")
    files = sorted(p for p in d.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise ImageError(f"{d}: the gallery folder holds no files")
    return files
