"""Images for deformable registration (`--task register`): built-in phantom subjects, OASIS slices, k-means.

Built-in data (no download): the Shepp-Logan head phantom that scikit-image ships. Its regions have
distinct intensities, so its label map is exact (`phantom_atlas`). Each *subject* is the atlas warped by
a random smooth field u (moving(p) = atlas(p + u(p))) with a random intensity change (gamma, a smooth
bias, noise); its labels are the atlas labels warped by the same u, and the field that registers one
subject onto another is known exactly (`true_field`). Train and test subjects come from different seeds.

Real data (`--data-root`): the 2-D OASIS slices of the neurite/VoxelMorph tutorials
(`neurite-oasis.2d.v1.0`: one folder per subject with `slice_norm.nii.gz` and `slice_seg24.nii.gz`),
read with nibabel, padded to a square and resized to the working size. No true field there.

Pairs (`--pair-mode`): "atlas" (fixed = the atlas, moving = a subject; the built-in atlas is the
undeformed phantom, an OASIS atlas is the first subject by name) or "subject" (two different subjects).
Every image's k-means segmentation, the reward's labels (E33), is computed once here and cached.
"""
from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F

from data import DataError
from losses import compose, kmeans_labels, label_dice, synthetic_flow, warp, warp_labels

OASIS_FILES = ("slice_norm.nii.gz", "slice_seg24.nii.gz")
NOISE = 0.02  # std of the scanner noise of the built-in images (atlas and subjects)


def phantom_atlas(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The Shepp-Logan phantom at size x size: image (1, S, S) in [0, 1] and exact labels (1, S, S), int64.
    Labels at 400 x 400 are the phantom's intensity values, the dark value split into the outside (label
    0, background) and the dark regions inside the head; the image is averaged over each pixel's area
    and the labels taken at its centre. Regions left with fewer than (S/16)^2 pixels (the tiny ellipses)
    join the brain around them."""
    from skimage.data import shepp_logan_phantom
    from skimage.measure import label as connected

    phantom = torch.from_numpy(shepp_logan_phantom()).float()                 # (400, 400), values 0 ... 1
    values = phantom.unique()                                                 # sorted: 0 first
    labels = torch.searchsorted(values, phantom) + 1                          # 1 ... V by intensity
    outside = torch.from_numpy(connected(phantom.numpy() == 0, connectivity=1))
    labels[(outside == outside[0, 0]) & (phantom == 0)] = 0                   # the dark outside: background
    image = F.interpolate(phantom[None, None], size=(size, size), mode="area")[0]
    centre = ((torch.arange(size) + 0.5) * phantom.shape[0] / size).long()    # nearest high-res pixel
    labels = labels[centre][:, centre][None]
    counts = torch.bincount(labels.flatten(), minlength=len(values) + 1)
    brain = int(counts[1:].argmax()) + 1                                       # the largest region inside the head
    tiny = (counts > 0) & (counts < max(4, (size // 16) ** 2))                 # the small ellipses, a few pixels now
    labels[tiny[labels]] = brain                                               # ... join the brain around them
    return image.clamp(0, 1), torch.unique(labels, return_inverse=True)[1]     # labels 0 ... L-1


def intensity_change(image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A subject's scanner: image ** gamma (gamma in 0.8 ... 1.25), times a smooth bias of +-10 %, plus
    noise of std NOISE; (N, 1, S, S) in [0, 1] -> the same."""
    n, _, h, w = image.shape
    gamma = torch.exp((torch.rand(n, 1, 1, 1, generator=generator) * 2 - 1) * np.log(1.25))
    bias = 1 + 0.1 * torch.tanh(synthetic_flow(n, h, w, generator, shift=0, local=0.5 / max(h, w))[:, :1])
    noise = NOISE * torch.randn(image.shape, generator=generator)
    return (image.clamp(0, 1) ** gamma * bias + noise).clamp(0, 1)


def invert_field(field: torch.Tensor, iterations: int = 30) -> torch.Tensor:
    """The inverse v of a smooth field u, by the fixed point v(p) = -u(p + v(p)): then warping by u and
    then by v is the identity, compose(u, v) = 0 (up to interpolation)."""
    inverse = -field
    for _ in range(iterations):
        inverse = -warp(field, inverse, padding="border")
    return inverse


class RegistrationPairs:
    """(fixed, moving) pairs: items (4, S, S), the fixed image, the moving image, and their k-means labels
    (the reward's segmentation, E33, as float class indices), all computed once.

    `folder=None`: built-in phantom subjects (`subjects` for training, a quarter as many for testing, other
    seeds); a folder: OASIS subjects, every 5th by name held out (the atlas, the first, in neither split).
    `fixed(n)` draws the same n test pairs every time and keeps their truth in `truth`: true labels of
    both images ("fixed_labels", "moving_labels", (n, 1, S, S)) and, for the built-in data, the field
    that registers them ("field", (n, 2, S, S), in pixels; None for OASIS).
    """

    def __init__(self, folder: str | None, split: str, size: int, classes: int = 3, mode: str = "atlas",
                 subjects: int = 160, displacement: float = 0.03) -> None:
        if mode not in ("atlas", "subject"):
            raise ValueError(f"pair mode {mode!r}: choose atlas or subject")
        self.folder, self.mode, self.classes = folder, mode, classes
        if folder is None:
            atlas, atlas_labels = phantom_atlas(size)
            scan = torch.Generator().manual_seed(0)                             # the atlas: one noisy scan of the phantom
            atlas = (atlas + NOISE * torch.randn(atlas.shape, generator=scan)).clamp(0, 1)
            n = subjects if split == "train" else max(2, subjects // 4)
            generator = torch.Generator().manual_seed({"train": 1, "test": 2}[split])
            # u: a smooth field of std `displacement` x S at 4 x 4 points, and a shift of up to 2 % of S
            fields = synthetic_flow(n, size, size, generator, shift=0.02, local=displacement)
            images = intensity_change(warp(atlas.expand(n, 1, -1, -1), fields, padding="border"), generator)
            self.atlas = (atlas[None], atlas_labels[None], torch.zeros(1, 2, size, size))
            self.subjects = (images, warp_labels(atlas_labels.expand(n, 1, -1, -1), fields), fields)
            self.inverses = invert_field(fields)
            self.names_ = [f"phantom-{split}[{i}]" for i in range(n)]
        else:
            folders = list_subjects(folder)
            keep = [f for i, f in enumerate(folders[1:]) if (i % 5 == 0) == (split == "test")]
            if len(keep) < (1 if mode == "atlas" else 2):
                raise DataError(f"{folder}: {len(keep)} {split} subject(s) after the atlas ({len(folders)} in all), "
                                f"too few for --pair-mode {mode}")
            atlas = read_oasis_subject(folders[0], size)
            self.atlas = (atlas[0][None], atlas[1][None], None)
            read = [read_oasis_subject(f, size) for f in keep]
            self.subjects = (torch.stack([r[0] for r in read]), torch.stack([r[1] for r in read]), None)
            self.names_ = [os.path.basename(f) for f in keep]
        # E33's segmentation, once per image: the reward never segments again
        self.atlas_kmeans = kmeans_labels(self.atlas[0], classes)
        self.kmeans = kmeans_labels(self.subjects[0], classes)
        self.sources = list(range(len(self.names_)))
        self.truth: dict[str, torch.Tensor | None] = {}

    def choose(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """n random (fixed, moving) subject indices; -1 is the atlas."""
        moving = torch.randint(len(self.sources), (n,), generator=generator)
        if self.mode == "atlas":
            return torch.full((n,), -1), moving
        other = torch.randint(len(self.sources) - 1, (n,), generator=generator)
        return other + (other >= moving).long(), moving          # a different subject

    def image(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images and k-means labels of subjects `index` (-1: the atlas): (n, 1, S, S) each."""
        images = torch.cat([self.atlas[0], self.subjects[0]])[index + 1]
        return images, torch.cat([self.atlas_kmeans, self.kmeans])[index + 1].float()

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """n random pairs: (n, 4, S, S), fixed, moving, k-means labels of fixed, of moving."""
        return self.sample_of(*self.choose(n, generator))

    def fixed(self, n: int) -> torch.Tensor:
        """The first n of one fixed list of held-out pairs, every subject exactly once as the moving image
        (against the atlas, or with --pair-mode subject against the next subject by name, so each is also
        fixed once); their true labels and fields in `truth`. Any n gives a prefix of the same list."""
        if not 1 <= n <= len(self.sources):
            raise ValueError(f"{n} held-out pairs asked for; there are {len(self.sources)} subjects")
        moving = torch.arange(n)
        fixed = torch.full((n,), -1) if self.mode == "atlas" else (moving + 1) % len(self.sources)
        labels = torch.cat([self.atlas[1], self.subjects[1]])
        self.truth = {"fixed_labels": labels[fixed + 1], "moving_labels": labels[moving + 1], "field": None}
        if self.atlas[2] is not None:  # moving = atlas(p + u_m(p)), fixed = atlas(p + u_f(p)) (u = 0: the atlas)
            u_fixed = torch.cat([self.atlas[2], self.subjects[2]])[fixed + 1]
            self.truth["field"] = true_field(u_fixed, self.inverses[moving])
        return self.sample_of(fixed, moving)

    def sample_of(self, fixed: torch.Tensor, moving: torch.Tensor) -> torch.Tensor:
        (fixed_image, fixed_kmeans), (moving_image, moving_kmeans) = self.image(fixed), self.image(moving)
        return torch.cat([fixed_image, moving_image, fixed_kmeans, moving_kmeans], 1)

    @property
    def names(self) -> list[str]:
        return self.names_


def true_field(u_fixed: torch.Tensor, inverse_moving: torch.Tensor) -> torch.Tensor:
    """The field Omega with warp(moving, Omega) = fixed when moving = atlas(p + u_m(p)) and fixed = atlas(p +
    u_f(p)): Omega(p) = u_f(p) + u_m^-1(p + u_f(p)) = compose(u_m^-1, u_f) (E25's composition)."""
    return compose(inverse_moving, u_fixed)


def list_subjects(folder: str) -> list[str]:
    """The OASIS subject folders under `folder` (those holding slice_norm.nii.gz), sorted by name."""
    if not os.path.isdir(folder):
        raise DataError(f"{folder}: no such folder")
    subjects = sorted(os.path.join(folder, d) for d in os.listdir(folder)
                      if os.path.isdir(os.path.join(folder, d)) and any(
                          os.path.isfile(os.path.join(folder, d, f)) for f in OASIS_FILES))
    if len(subjects) < 2:
        raise DataError(f"{folder}: {len(subjects)} subject folder(s) with {' and '.join(OASIS_FILES)} "
                        "(the neurite-oasis.2d layout: one folder per subject); pairs need at least 2")
    return subjects


def read_nifti_slice(path: str) -> np.ndarray:
    """A 2-D NIfTI image as float64 (H, W); singleton axes are dropped, anything else 3-D is refused."""
    import nibabel

    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file")
    try:
        array = np.asarray(nibabel.load(path).dataobj, dtype=np.float64)
    except Exception as e:  # noqa: BLE001 (any unreadable file gets the same one-line error)
        raise DataError(f"{path}: cannot read as NIfTI ({type(e).__name__})") from None
    squeezed = array.squeeze()
    if squeezed.ndim != 2:
        raise DataError(f"{path}: a {squeezed.ndim}-D array of shape {array.shape}; --task register needs 2-D slices")
    if min(squeezed.shape) < 16:
        raise DataError(f"{path}: slice is {squeezed.shape[1]}x{squeezed.shape[0]}, smaller than 16x16")
    return squeezed


def read_oasis_subject(folder: str, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One subject folder -> image (1, S, S) in [0, 1] and labels (1, S, S), int64: both padded with zeros to a
    square (centred), then resized to S (the image by area or bilinear, the labels nearest)."""
    image, labels = (read_nifti_slice(os.path.join(folder, f)) for f in OASIS_FILES)
    if image.shape != labels.shape:
        raise DataError(f"{folder}: {OASIS_FILES[1]} is {labels.shape[1]}x{labels.shape[0]}, "
                        f"{OASIS_FILES[0]} is {image.shape[1]}x{image.shape[0]}: they must match")
    if np.any(labels != np.round(labels)) or labels.min() < 0:
        raise DataError(f"{folder}: {OASIS_FILES[1]} holds values that are not label numbers")
    low, high = image.min(), image.max()
    image = (image - low) / (high - low) if high > low else np.zeros_like(image)
    side = max(image.shape)

    def square(a: np.ndarray) -> torch.Tensor:
        top, left = (side - a.shape[0]) // 2, (side - a.shape[1]) // 2
        out = np.zeros((side, side))
        out[top:top + a.shape[0], left:left + a.shape[1]] = a
        return torch.from_numpy(out).float()[None, None]

    image = F.interpolate(square(image), size=(size, size), mode="area" if side >= size else "bilinear")
    labels = F.interpolate(square(labels), size=(size, size), mode="nearest")
    return image[0].clamp(0, 1), labels[0].long()


def read_pair(fixed: str, moving: str, size: int, classes: int) -> tuple[torch.Tensor, dict]:
    """Two OASIS subject folders as one pair (1, 4, S, S), as RegistrationPairs gives them, and its truth."""
    (fixed_image, fixed_labels), (moving_image, moving_labels) = (read_oasis_subject(f, size) for f in (fixed, moving))
    images = torch.stack([fixed_image, moving_image])                         # (2, 1, S, S)
    pair = torch.cat([*images, *kmeans_labels(images, classes).float()])[None]
    return pair, {"fixed_labels": fixed_labels[None], "moving_labels": moving_labels[None], "field": None}


def true_label_dice(fields: list[torch.Tensor], truth: dict) -> torch.Tensor:
    """Dice of the moving image's true labels warped by each field Omega_k against the fixed image's, mean over
    the fixed image's labels but the background (E33's mean_dice): (K + 1, N)."""
    device = fields[0].device
    fixed_labels, moving_labels = truth["fixed_labels"].to(device), truth["moving_labels"].to(device)
    return torch.stack([label_dice(moving_labels, fixed_labels, field) for field in fields])


def kmeans_label_dice(fields: list[torch.Tensor], pairs: torch.Tensor, classes: int) -> torch.Tensor:
    """The same of the reward's k-means labels (channels 2, 3 of the pairs): E33's Dice / 10, (K + 1, N)."""
    kmeans = pairs[:, 2:4].long()
    return torch.stack([label_dice(kmeans[:, 1:], kmeans[:, :1], field, classes) for field in fields])
