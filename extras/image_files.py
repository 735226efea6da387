"""Reading the user's image files safely for data.py and the video frames: one float tensor (3, H, W) in [0, 1]
per file whatever its mode (grey, RGBA, 16-bit), and a one-line `DataError` that names the file or folder for
whatever cannot be used (missing, unreadable, too small, not an A|B pair).
"""
from __future__ import annotations

import os
import warnings

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
MIN_SIZE = 16  # smaller images are refused: nothing useful can be cropped from them


class DataError(ValueError):
    """Bad user data; the message is one line that names the file or folder."""


def to_rgb_array(image: Image.Image, name: str) -> np.ndarray:
    """Any PIL image -> (H, W, 3) float32 in [0, 1]. Grey is repeated to three channels, an alpha
    channel is composited over white, 16-bit and float images are scaled by their bit depth."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(image, dtype=np.float64)
        a = a / (65535.0 if a.max() > 255 else 255.0)
        a = np.repeat(a[..., None], 3, axis=2)
    elif image.mode == "F":
        a = np.clip(np.asarray(image, dtype=np.float64), 0, 1)
        a = np.repeat(a[..., None], 3, axis=2)
    else:
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
            rgba = image.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            image = Image.alpha_composite(white, rgba)
        a = np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0
    if min(a.shape[:2]) < MIN_SIZE:
        raise DataError(f"{name}: image is {a.shape[1]}x{a.shape[0]}, smaller than {MIN_SIZE}x{MIN_SIZE}")
    return a.astype(np.float32)


def load_image(path: str) -> torch.Tensor:
    """Read an image file -> (3, H, W) in [0, 1], with a one-line DataError when it cannot be used."""
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                im.load()
                array = to_rgb_array(im, path)
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise DataError(f"{path}: cannot read as an image ({type(e).__name__})") from None
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def list_images(folder: str) -> list[str]:
    """Sorted image files directly in `folder` (or below it), with a DataError if there are none."""
    if not os.path.isdir(folder):
        raise DataError(f"{folder}: no such folder")
    files = sorted(os.path.join(root, f) for root, _, names in os.walk(folder) for f in names
                   if f.lower().endswith(IMAGE_EXTENSIONS))
    if not files:
        raise DataError(f"{folder}: no images ({', '.join(IMAGE_EXTENSIONS)}) found")
    return files


def header_size(path: str) -> tuple[int, int]:
    """(width, height) of an image file from its header, with a one-line DataError when unreadable."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                return im.size
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise DataError(f"{path}: cannot read as an image ({type(e).__name__})") from None


def check_sizes(files: list[str], size: int) -> None:
    """Refuse, in one line, files that cannot be read or are smaller than the working size (header only)."""
    small = []
    for path in files:
        w, h = header_size(path)
        if min(w, h) < size:
            small.append(f"{os.path.basename(path)} ({w}x{h})")
    if small:
        raise DataError(f"{len(small)} image(s) smaller than the working size {size}x{size}, e.g. {small[0]}: "
                        f"use a smaller --image-size or remove them")


def check_pairs(files: list[str], size: int) -> None:
    """Refuse, in one line, a file that cannot be read, is not A|B side by side (width 2 x height), or
    whose halves are smaller than the working size (reads headers only)."""
    for path in files:
        w, h = header_size(path)
        if w != 2 * h:
            raise DataError(f"{path}: {w}x{h} is not an A|B pair (pix2pix aligned images are twice as wide as high)")
        if h < size:
            raise DataError(f"{path}: halves are {h}x{h}, smaller than the working size {size}x{size}: "
                            "use a smaller --image-size")
