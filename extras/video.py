"""Video in and out for `--task video`: frames, the true motion between them, and animated GIFs.

    load_video(path)          a folder of frames (png/jpg, sorted by name) or an animated GIF -> (T, 3, H, W)
    sintel_motion(path, ...)  MPI-Sintel's forward flow and occlusions for a `final/<scene>` folder, if present
    read_clip(path, size)     what `evaluate.py --video` reads: the built-in clip ("builtin") or a user's video
    camera_clip(photo, ...)   the built-in clip: a photo filmed by a known smooth camera motion (pan, zoom,
                              rotation), with the exact flow between frames and the pixels that leave the frame
    read_flo / write_flo      Middlebury `.flo` files (Sintel's flow format)
    save_gif(frames, path)    an animated GIF

Flow convention (as Sintel's): F_t (2, H, W) in pixels (x, y) maps pixel p of frame t to p + F_t(p) in
frame t+1; `valid` (1, H, W) marks the pixels visible in both frames. `losses.warping_error` takes them.
"""
from __future__ import annotations

import math
import os

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageSequence, UnidentifiedImageError

from data import builtin_photo, crop_to_multiple, resize_short_side
from extras.image_files import IMAGE_EXTENSIONS, DataError, load_image, to_rgb_array
from losses import visible

FLO_MAGIC = 202021.25  # the first four bytes of every .flo file, as a float32


def read_flo(path: str) -> torch.Tensor:
    """A Middlebury .flo file -> flow (2, H, W), float32: the magic number, width and height (int32),
    then H x W x 2 float32 values (u, v interleaved), little-endian."""
    with open(path, "rb") as f:
        header = f.read(12)
        if len(header) < 12 or np.frombuffer(header[:4], "<f4")[0] != FLO_MAGIC:
            raise DataError(f"{path}: not a .flo file (bad magic number)")
        width, height = (int(v) for v in np.frombuffer(header[4:], "<i4"))
        data = np.frombuffer(f.read(), "<f4")
    if width < 1 or height < 1 or data.size != width * height * 2:
        raise DataError(f"{path}: a {width}x{height} .flo file needs {width * height * 2} values, it has {data.size}")
    return torch.from_numpy(data.reshape(height, width, 2).copy()).permute(2, 0, 1)


def write_flo(path: str, flow: torch.Tensor) -> None:
    """flow (2, H, W) -> a Middlebury .flo file."""
    _, height, width = flow.shape
    with open(path, "wb") as f:
        f.write(np.array([FLO_MAGIC], "<f4").tobytes() + np.array([width, height], "<i4").tobytes())
        f.write(flow.permute(1, 2, 0).contiguous().cpu().numpy().astype("<f4").tobytes())


def load_video(path: str) -> tuple[torch.Tensor, list[str]]:
    """A folder of frames (sorted by name) or an animated GIF -> (frames (T, 3, H, W) in [0, 1], names).
    One-line DataErrors: missing, empty, a single frame, frames of different sizes, an unreadable file."""
    if os.path.isdir(path):
        files = sorted(os.path.join(path, f) for f in os.listdir(path) if f.lower().endswith(IMAGE_EXTENSIONS))
        if not files:
            raise DataError(f"{path}: no frames ({', '.join(IMAGE_EXTENSIONS)}) in this folder")
        frames = [load_image(f) for f in files]
        names = [os.path.splitext(os.path.basename(f))[0] for f in files]
    elif os.path.isfile(path):
        try:
            with Image.open(path) as im:
                frames = [torch.from_numpy(to_rgb_array(frame.copy(), path)).permute(2, 0, 1)
                          for frame in ImageSequence.Iterator(im)]
        except (UnidentifiedImageError, OSError, SyntaxError) as e:
            raise DataError(f"{path}: cannot read as a video (a folder of frames or an animated GIF; "
                            f"{type(e).__name__})") from None
        names = [f"frame_{i + 1:04d}" for i in range(len(frames))]
    else:
        raise DataError(f"{path}: no such folder or file")
    if len(frames) < 2:
        raise DataError(f"{path}: {len(frames)} frame; a video needs at least 2")
    sizes = {tuple(f.shape[1:]) for f in frames}
    if len(sizes) > 1:
        first = next(i for i, f in enumerate(frames) if f.shape != frames[0].shape)
        raise DataError(f"{path}: frames of different sizes ({names[0]} is {frames[0].shape[2]}x{frames[0].shape[1]}, "
                        f"{names[first]} is {frames[first].shape[2]}x{frames[first].shape[1]})")
    return torch.stack(frames), names


def sintel_motion(path: str, names: list[str]) -> tuple[torch.Tensor, torch.Tensor] | None:
    """For MPI-Sintel's layout `<split>/final/<scene>/frame_0001.png`: the forward flows
    `<split>/flow/<scene>/frame_0001.flo` ... and occlusions `<split>/occlusions/<scene>/frame_0001.png`
    (white: occluded) -> (flows (T-1, 2, H, W), valid (T-1, 1, H, W)). None when the folders are not there."""
    scene = os.path.basename(os.path.normpath(path))
    split = os.path.dirname(os.path.dirname(os.path.normpath(path)))
    flow_dir, occlusion_dir = os.path.join(split, "flow", scene), os.path.join(split, "occlusions", scene)
    if not (os.path.isdir(flow_dir) and os.path.isdir(occlusion_dir)):
        return None
    flows, valid = [], []
    for name in names[:-1]:
        flo, png = os.path.join(flow_dir, name + ".flo"), os.path.join(occlusion_dir, name + ".png")
        for f in (flo, png):
            if not os.path.isfile(f):
                raise DataError(f"{f}: missing (Sintel layout: one flow and one occlusion file per frame but the last)")
        flows.append(read_flo(flo))
        occluded = load_image(png)[:1] > 0.5
        valid.append((~occluded).float() * visible(flows[-1][None])[0])  # not occluded, not leaving the frame
    return torch.stack(flows), torch.stack(valid)


def resize_video(frames: torch.Tensor, flows: torch.Tensor | None, valid: torch.Tensor | None, size: int
                 ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Short side to `size`, both sides cropped (centred) to a multiple of 4; flows scaled with the frames."""
    h, w = frames.shape[-2:]
    scale = size / min(h, w)
    new = (max(size, round(h * scale)), max(size, round(w * scale)))
    frames = F.interpolate(frames, size=new, mode="bilinear", antialias=True, align_corners=False)
    if flows is not None:
        flows = F.interpolate(flows, size=new, mode="bilinear", align_corners=False)
        flows = flows * torch.tensor([new[1] / w, new[0] / h]).view(1, 2, 1, 1)  # pixels of the new size
        valid = (F.interpolate(valid, size=new, mode="bilinear", align_corners=False) > 0.99).float()
    crop = (..., *crop_to_multiple(*new))
    if flows is not None:
        flows, valid = flows[crop], valid[crop] * visible(flows[crop])  # pixels leaving the crop are not valid
    return frames[crop].clamp(0, 1), flows, valid


def camera_pose(k: int, size: int, photo_shape: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Frame k's camera: photo position q = centre + A (p - c), c the frame's centre, as (A (2, 2), centre (2,)).
    A smooth motion: the window pans 1 frame pixel right and 0.5 down, zooms in 1.5 % and turns 1 degree
    a frame."""
    h, w = photo_shape
    scale = 0.55 * min(h, w) / size / 1.015 ** k  # photo pixels per frame pixel: zooming in
    angle = math.radians(1.0 * k)
    rotation = torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    centre = torch.tensor([w / 2 - 0.1 * w, h / 2 - 0.05 * h]) + scale * torch.tensor([1.0, 0.5]) * k
    return scale * rotation, centre


def camera_clip(photo: torch.Tensor | None = None, frames: int = 12, size: int = 64
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The built-in clip: a photo (default: scikit-image's astronaut, held out from training) filmed by
    `camera_pose` -> (frames (T, 3, S, S), flows (T-1, 2, S, S), valid (T-1, 1, S, S)). The scene is
    flat and still, so the flow is exact: F_t(p) = A_t+1^-1 (A_t (p - c) + centre_t - centre_t+1) + c - p;
    valid marks the pixels that stay in the frame."""
    photo = builtin_photo("astronaut") if photo is None else photo
    photo = resize_short_side(photo, round(size / 0.55))  # about one photo pixel a frame pixel: no aliasing
    h, w = photo.shape[1:]
    c = (size - 1) / 2
    y, x = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                          indexing="ij")
    p = torch.stack([x, y]).reshape(2, -1) - c  # (2, S*S), frame pixels about the centre
    images, positions = [], []
    for k in range(frames):
        a, centre = camera_pose(k, size, (h, w))
        q = a @ p + centre[:, None]              # (2, S*S): where each frame pixel looks in the photo
        grid = torch.stack([q[0] / (w - 1), q[1] / (h - 1)], -1).reshape(1, size, size, 2) * 2 - 1
        images.append(F.grid_sample(photo[None], grid, mode="bilinear", align_corners=True)[0])
        positions.append((a, centre, q))
    flows = []
    for (_, _, q), (a_next, centre_next, _) in zip(positions[:-1], positions[1:]):
        p_next = torch.linalg.solve(a_next, q - centre_next[:, None])  # A_t+1^-1 (q - centre_t+1)
        flows.append((p_next - p).reshape(2, size, size))
    flows = torch.stack(flows)
    return torch.stack(images).clamp(0, 1), flows, visible(flows)


def save_gif(frames: torch.Tensor, path: str, milliseconds: int = 120) -> None:
    """frames (T, 3, H, W) in [0, 1] -> an animated GIF that loops."""
    images = [Image.fromarray((f.clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8))
              for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=milliseconds, loop=0)


def read_clip(path: str, size: int) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, list[str]]:
    """The built-in clip ("builtin") or a user's frames at short side `size` -> (frames, flows, valid, names), the
    true flows and valid pixels when known (the built-in clip; MPI-Sintel's layout), else None for both."""
    if path == "builtin":
        frames, flows, valid = camera_clip(size=size)
        return frames, flows, valid, [f"frame_{i + 1:04d}" for i in range(len(frames))]
    frames, names = load_video(path)
    flows, valid = sintel_motion(path, names) or (None, None)
    if flows is not None and flows.shape[-2:] != frames.shape[-2:]:
        raise DataError(f"{path}: the flow files are {flows.shape[-1]}x{flows.shape[-2]}, the frames "
                        f"{frames.shape[-1]}x{frames.shape[-2]}")
    return (*resize_video(frames, flows, valid, size), names)
