"""Reading user images: odd formats are converted, bad files give a one-line DataError."""
import numpy as np
import pytest
import torch
from PIL import Image

from data import ContentImages, center_crop, load_style_image
from extras.image_files import DataError, list_images, load_image
from extras.datasets import make_style_image


def save(tmp_path, name, array, mode=None):
    path = tmp_path / name
    Image.fromarray(array, mode) if mode else Image.fromarray(array)
    Image.fromarray(array).save(path)
    return str(path)


def test_grey_rgba_and_16bit_become_rgb(tmp_path):
    grey = save(tmp_path, "grey.png", np.full((20, 30), 128, np.uint8))
    rgba = np.zeros((20, 20, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 255, 0  # fully transparent red: white after compositing
    rgba_path = save(tmp_path, "rgba.png", rgba)
    deep = save(tmp_path, "deep.png", np.full((20, 20), 65535, np.uint16))
    g, a, d = load_image(grey), load_image(rgba_path), load_image(deep)
    assert g.shape == (3, 20, 30) and torch.allclose(g, torch.full_like(g, 128 / 255))
    assert a.shape == (3, 20, 20) and torch.allclose(a, torch.ones_like(a))
    assert d.shape == (3, 20, 20) and torch.allclose(d, torch.ones_like(d))


def test_unreadable_tiny_and_missing_files(tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    with pytest.raises(DataError, match="cannot read as an image"):
        load_image(str(broken))
    with pytest.raises(DataError, match="smaller than"):
        load_image(save(tmp_path, "tiny.png", np.zeros((8, 8, 3), np.uint8)))
    with pytest.raises(DataError, match="no such file"):
        load_image(str(tmp_path / "nope.png"))


def test_empty_and_missing_folders(tmp_path):
    with pytest.raises(DataError, match="no images"):
        list_images(str(tmp_path))
    with pytest.raises(DataError, match="no such folder"):
        list_images(str(tmp_path / "nope"))


def test_folder_split_and_crops(tmp_path):
    for i in range(12):
        save(tmp_path, f"{i:02d}.png", np.random.default_rng(i).integers(0, 255, (40, 50, 3), dtype=np.uint8))
    train, test = ContentImages(str(tmp_path), "train", 32), ContentImages(str(tmp_path), "test", 32)
    assert len(train.sources) == 10 and len(test.sources) == 2
    assert not set(train.sources) & set(test.sources)
    crops = train.sample(3, torch.Generator().manual_seed(0))
    assert crops.shape == (3, 3, 32, 32) and crops.min() >= 0 and crops.max() <= 1
    assert test.fixed(2).shape == (2, 3, 32, 32)


def test_builtin_data():
    crops = ContentImages(None, "train", 32).sample(2, torch.Generator().manual_seed(0))
    assert crops.shape == (2, 3, 32, 32) and crops.std() > 0.05
    style = load_style_image(None, 48)
    assert style.shape == (3, 48, 48) and torch.allclose(style, center_crop(make_style_image(512), 48))
    assert style.std() > 0.1  # a bold image, not a flat one


def high_frequency_share(image: torch.Tensor) -> float:
    """The share of a grey image's spectral energy above a quarter of the sampling rate (either axis)."""
    grey = image.mean(0)
    power = torch.fft.fft2(grey - grey.mean()).abs() ** 2
    fy, fx = torch.fft.fftfreq(grey.shape[0]).abs(), torch.fft.fftfreq(grey.shape[1]).abs()
    high = torch.maximum(fy[:, None], fx[None, :]) >= 0.25
    return (power[high].sum() / power.sum()).item()


def test_builtin_style_is_not_aliased():
    """At 64 px the built-in style keeps its bands, not the pixel-wide stripes of the strokes drawn at 64 px."""
    assert high_frequency_share(make_style_image(64)) > 0.2           # drawn at 64 px: aliased
    assert high_frequency_share(load_style_image(None, 64)) < 0.1     # drawn at 512, resized
