"""Video style transfer (--task video): warps and flows, the temporal term, the two GRUs' memories,
video files in and out, and train / evaluate as a user runs them."""
import csv
import os

import numpy as np
import pytest
import torch
from PIL import Image

from actor import VideoActor
from conftest import one_line_error, run_script
from data import DataError
from env import VideoEnv
from losses import synthetic_flow, temporal_loss, visible, warp, warping_error
from planner import VideoPlanner
from extras.video import camera_clip, load_video, read_clip, read_flo, resize_video, save_gif, sintel_motion, write_flo

TINY = ["--task", "video", "--set", "vgg=random", "--image-size", "32", "--num-envs", "2", "--batch-size", "2",
        "--total-steps", "6", "--max-episode-steps", "3", "--learning-starts", "2", "--test-steps", "2",
        "--set", "save_every=1"]


def shift(image, dx, dy):
    """image(p + (dx, dy)) by integer indexing, zeros outside: what warp must give for a constant field."""
    out = torch.zeros_like(image)
    h, w = image.shape[-2:]
    out[..., max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)] = \
        image[..., max(0, dy):h - max(0, -dy), max(0, dx):w - max(0, -dx)]
    return out


def test_warp_by_an_integer_shift_moves_pixels_exactly():
    image = torch.rand(2, 3, 9, 11)
    for dx, dy in ((2, 0), (0, -3), (1, 2)):
        field = torch.tensor([float(dx), float(dy)]).view(1, 2, 1, 1).expand(2, 2, 9, 11)
        assert torch.allclose(warp(image, field), shift(image, dx, dy), atol=1e-6)
        inside = visible(field)  # the pixels whose source is in the image: all but the last dx columns, dy rows
        assert inside.sum() == 2 * (11 - abs(dx)) * (9 - abs(dy))


def test_synthetic_flow_is_smooth_seeded_and_bounded():
    def draw(seed):
        return synthetic_flow(3, 64, 64, torch.Generator().manual_seed(seed))

    a, b, c = draw(0), draw(0), draw(1)
    assert a.shape == (3, 2, 64, 64) and torch.equal(a, b) and not torch.equal(a, c)
    # smooth: neighbouring pixels move almost alike, far less than the field varies over the image
    neighbour = (a[..., 1:] - a[..., :-1]).abs().max()
    assert neighbour < 0.2 and neighbour < 0.1 * (a.amax((2, 3)) - a.amin((2, 3))).min()
    # the global shift is at most 10 / 256 of the size, the local field a few standard deviations of 2 / 256
    assert a.abs().max() < 64 * (10 + 4 * 2) / 256


def test_temporal_loss_is_zero_for_a_function_that_commutes_with_the_warp():
    x = torch.rand(2, 3, 16, 16)
    flow = torch.tensor([2.0, -1.0]).view(1, 2, 1, 1).expand(2, 2, 16, 16)  # integer: warp is exact indexing
    x_next = warp(x, flow)
    pointwise = lambda image: 2 * image - 0.5  # commutes with any warp (pixel by pixel)  # noqa: E731
    assert torch.allclose(temporal_loss(pointwise(x), pointwise(x_next), flow), torch.zeros(2), atol=1e-6)
    blur_x = lambda image: (image + image.roll(1, -1)) / 2  # noqa: E731 (roll wraps: does not commute near the edge)
    assert (temporal_loss(pointwise(x), x_next.flip(-1), flow) > 0.05).all()  # a mirror does not commute
    assert (temporal_loss(blur_x(x), blur_x(x_next), flow) > 0).all()
    # hand-built: outputs differing by 0.5 on every visible pixel give L_CT = 0.5
    assert torch.allclose(temporal_loss(x, warp(x, flow) + 0.5, flow), torch.full((2,), 0.5), atol=1e-5)


def test_warping_error_on_hand_built_frames():
    frame = torch.rand(1, 3, 8, 8)
    flow = torch.tensor([1.0, 0.0]).view(1, 2, 1, 1).expand(1, 2, 8, 8)  # each pixel moves 1 right
    next_frame = shift(frame, -1, 0)  # next(p) = frame(p - (1, 0)): the content moved right
    valid = visible(flow)
    assert warping_error(frame, next_frame, flow, valid).item() < 1e-10
    assert warping_error(frame, next_frame + 0.1, flow, valid).item() == pytest.approx(0.01, rel=1e-4)


def test_camera_clip_flow_is_exact():
    frames, flows, valid = camera_clip(frames=5, size=48)
    assert frames.shape == (5, 3, 48, 48) and flows.shape == (4, 2, 48, 48) and valid.shape == (4, 1, 48, 48)
    assert 0.8 < valid.mean() < 1  # some pixels leave the frame, most stay
    true = warping_error(frames[:-1], frames[1:], flows, valid)
    none = warping_error(frames[:-1], frames[1:], torch.zeros_like(flows), torch.ones_like(valid))
    assert (true < none / 10).all() and (true < 1e-3).all()  # only interpolation is left


def test_flo_round_trip_and_bad_file(tmp_path):
    flow = torch.randn(2, 5, 7)
    write_flo(str(tmp_path / "a.flo"), flow)
    assert torch.equal(read_flo(str(tmp_path / "a.flo")), flow)
    assert os.path.getsize(tmp_path / "a.flo") == 12 + 5 * 7 * 2 * 4
    assert (tmp_path / "a.flo").read_bytes()[:4] == b"PIEH"  # the magic number, 202021.25, in ASCII
    (tmp_path / "b.flo").write_bytes(b"ABCD" + bytes(8))  # a wrong magic number
    with pytest.raises(DataError, match="not a .flo file"):
        read_flo(str(tmp_path / "b.flo"))
    (tmp_path / "c.flo").write_bytes((tmp_path / "a.flo").read_bytes()[:-4])  # cut short
    with pytest.raises(DataError, match="needs 70 values"):
        read_flo(str(tmp_path / "c.flo"))


def write_frames(folder, frames, names=None):
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        name = names[i] if names else f"frame_{i + 1:04d}"
        Image.fromarray((f.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(folder / f"{name}.png")


def test_frames_folder_gif_and_bad_videos(tmp_path):
    frames = torch.rand(3, 3, 20, 24)
    write_frames(tmp_path / "clip", frames, ["b", "a", "c"])
    loaded, names = load_video(str(tmp_path / "clip"))
    assert names == ["a", "b", "c"] and loaded.shape == (3, 3, 20, 24)  # sorted by name
    assert torch.allclose(loaded[0], frames[1], atol=1 / 255)
    save_gif(frames, str(tmp_path / "clip.gif"))
    gif, names = load_video(str(tmp_path / "clip.gif"))
    assert gif.shape == (3, 3, 20, 24) and names[0] == "frame_0001"
    (tmp_path / "empty").mkdir()
    write_frames(tmp_path / "one", frames[:1])
    write_frames(tmp_path / "sizes", frames)
    Image.new("RGB", (30, 20)).save(tmp_path / "sizes" / "frame_0009.png")
    write_frames(tmp_path / "broken", frames)
    (tmp_path / "broken" / "frame_0002.png").write_text("not an image")
    (tmp_path / "notes.gif").write_text("not a gif")
    for path, text in (("missing", "no such folder or file"), ("empty", "no frames"), ("one", "1 frame"),
                       ("sizes", "frames of different sizes"), ("broken", "frame_0002.png: cannot read"),
                       ("notes.gif", "cannot read as a video")):
        with pytest.raises(DataError, match=text):
            load_video(str(tmp_path / path))


def test_sintel_layout_is_found_and_resized(tmp_path):
    split = tmp_path / "training"
    frames, flows, _ = camera_clip(frames=3, size=32)
    write_frames(split / "final" / "scene", frames)
    (split / "flow" / "scene").mkdir(parents=True)
    (split / "occlusions" / "scene").mkdir(parents=True)
    for i, flow in enumerate(flows):
        write_flo(str(split / "flow" / "scene" / f"frame_{i + 1:04d}.flo"), flow)
        occluded = np.zeros((32, 32), np.uint8)
        occluded[:4] = 255  # the top rows are occluded
        Image.fromarray(occluded).save(split / "occlusions" / "scene" / f"frame_{i + 1:04d}.png")
    loaded, names = load_video(str(split / "final" / "scene"))
    read, valid = sintel_motion(str(split / "final" / "scene"), names)
    assert torch.allclose(read, flows) and valid.shape == (2, 1, 32, 32)
    assert valid[:, :, :4].sum() == 0 and valid[:, :, 4:].mean() > 0.8
    assert sintel_motion(str(tmp_path), names) is None  # a plain folder has no motion
    small, small_flows, small_valid = resize_video(loaded, read, valid, 16)
    assert small.shape == (3, 3, 16, 16) and torch.allclose(small_flows, 0.5 * flows[..., ::2, ::2], atol=0.3)
    os.remove(split / "flow" / "scene" / "frame_0002.flo")
    with pytest.raises(DataError, match="frame_0002.flo: missing"):
        sintel_motion(str(split / "final" / "scene"), names)


def test_memories_are_reset_and_carried_as_the_readme_says():
    torch.manual_seed(0)
    planner, actor = VideoPlanner(), VideoActor()
    state = torch.randn(2, 3, 32, 32)
    # the planner's step-wise hidden state: None is the reset (zeros); the GRU output is the next step's hidden state
    dist0, features0 = planner(state, None)
    dist_zero, _ = planner(state, torch.zeros(2, 64, 8, 8))
    assert torch.equal(dist0.mean, dist_zero.mean)
    h1 = features0[-1]
    assert h1.shape == (2, 64, 8, 8) and h1.abs().max() < 1  # a GRU state lies in (-1, 1)
    dist1, features1 = planner(state, h1)
    assert not torch.allclose(dist1.mean, dist0.mean)  # the same image at the next step plans differently
    # the actor's frame-wise hidden state: None for a first frame, carried to the same step of the next frame
    action0, m1 = actor.step(dist0.mean, features0, None)
    assert torch.equal(action0, actor(dist0.mean, features0)) and m1.shape == (2, 16, 8, 8)
    action1, _ = actor.step(dist0.mean, features0, m1)
    assert not torch.allclose(action0, action1)


def test_video_env_resets_memory_and_stores_it():
    from vgg import load_vgg16

    torch.manual_seed(0)
    planner, actor = VideoPlanner(), VideoActor()
    env = VideoEnv(load_vgg16("random"), torch.rand(3, 32, 32), planner, actor, seed=3)
    env.reset(torch.rand(2, 3, 32, 32))
    assert env.hidden.shape == (2, 64, 8, 8) and env.hidden.abs().sum() == 0
    env.hidden = torch.ones(2, 64, 8, 8) * 0.5
    assert torch.equal(env.extras()["hidden"], env.hidden)
    env.reset(torch.rand(2, 3, 32, 32))
    assert env.hidden.abs().sum() == 0  # a new frame starts afresh
    fields = env.buffer_columns(32, (1, 8, 8))
    assert fields["hidden"].shape == fields["next_hidden"].shape == (64, 8, 8)
    # J_Aux has the temporal term, with gradient to both networks; zeta = 0 leaves it out
    state = env.reset(torch.rand(2, 3, 32, 32))
    batch = {"state": state, "content": state, "hidden": torch.zeros(2, 64, 8, 8)}
    loss, parts = env.auxiliary_loss(actor(planner(state)[0].rsample(), planner(state)[1]), batch)
    assert parts["temporal"] > 0
    loss.backward()
    assert actor.frame_gru.gates.weight.grad.abs().sum() > 0 and planner.step_gru.gates.weight.grad.abs().sum() > 0
    env.temporal_weight = 0
    assert "temporal" not in env.auxiliary_loss(actor(planner(state)[0].rsample(), planner(state)[1]), batch)[1]


def test_rollout_video_carries_the_frame_hidden_state_per_step_index_and_resets_it_before_the_first_frame():
    """extras.evaluation.rollout_video: step k of frame f gets the frame-wise hidden state that step k of frame f - 1 made;
    the first frame gets none (zeros); the planner's hidden state starts afresh at every frame."""
    from extras.evaluation import rollout_video
    from vgg import load_vgg16

    torch.manual_seed(0)
    planner, actor = VideoPlanner(), VideoActor()
    env = VideoEnv(load_vgg16("random"), torch.rand(3, 16, 16), planner, actor)
    calls, step = [], actor.step

    def spy(plan, features, frame_hidden):
        action, new_hidden = step(plan, features, frame_hidden)
        calls.append((frame_hidden, new_hidden))
        return action, new_hidden

    actor.step = spy
    planner_hiddens, forward = [], planner.forward
    planner.forward = lambda state, hidden=None: (planner_hiddens.append(hidden), forward(state, hidden))[1]
    states = rollout_video(planner, actor, env, torch.rand(3, 3, 16, 16), 2)  # 3 frames, 2 steps each
    assert len(states) == 3 and states[0].shape == (3, 3, 16, 16)
    assert len(calls) == 6 and calls[0][0] is None and calls[1][0] is None    # frame 0: no hidden state at either step
    for frame in (1, 2):
        for k in (0, 1):
            assert calls[2 * frame + k][0] is calls[2 * (frame - 1) + k][1]     # step k of the frame before
    assert all(planner_hiddens[2 * f].abs().sum() == 0 for f in range(3))     # h_0 = 0 at every frame
    assert all(planner_hiddens[2 * f + 1].abs().sum() > 0 for f in range(3))


def test_updates_run_the_planner_on_each_state_with_its_own_memory():
    """train.update: s_t with h_t (E6, E9, the temporal term) and s_t+1 with h_t+1 (E4); a swap of
    recurrent_inputs(batch) and recurrent_inputs(batch, "next_hidden") would pair a state with the other state's hidden state."""
    import train
    from config import Args
    from critic import Critic
    from vgg import load_vgg16

    torch.manual_seed(0)
    args = Args(task="video", image_size=16, batch_size=2, planner_every=1)
    planner, actor = VideoPlanner(), VideoActor()
    env = VideoEnv(load_vgg16("random"), torch.rand(3, 16, 16), planner, actor)
    task = dict(planner=planner, actor=actor, critic=Critic(3, 16, (1, 4, 4)), plan_shape=(1, 4, 4), env=env)
    modules, log_alpha, target_entropy = train.initialise(args, task, torch.device("cpu"))
    state, next_state = torch.randn(2, 3, 16, 16), torch.randn(2, 3, 16, 16)
    batch = dict(state=state, next_state=next_state, content=state, plan=torch.randn(2, 1, 4, 4),
                 reward=torch.zeros(2), done=torch.zeros(2), hidden=torch.full((2, 64, 4, 4), 0.25),
                 next_hidden=torch.full((2, 64, 4, 4), -0.5))

    class Buffer:
        def sample(self, n, generator):
            return batch

    env.unpack = lambda stored: stored
    seen, forward = [], planner.forward
    planner.forward = lambda s, hidden=None: (seen.append((s, hidden)), forward(s, hidden))[1]
    train.update(args, task, Buffer(), modules, log_alpha, target_entropy, 1, None, False)
    pairs = [(s is state, s is next_state, m) for s, m in seen if s is state or s is next_state]
    assert any(is_state for is_state, _, _ in pairs) and any(is_next for _, is_next, _ in pairs)
    for is_state, is_next, m in pairs:
        assert m is (batch["hidden"] if is_state else batch["next_hidden"])


def test_collect_stores_the_memory_of_both_states(tmp_path):
    """A1.8 for video: the transition holds h_t (zeros at s_0) and h_t+1 = the planner's GRU output, which
    the environment carries to the next step."""
    from buffer import ReplayBuffer
    from tasks import build
    from train import collect, parse_args

    args, _ = parse_args([*TINY, "--set", "vgg=random"])
    task = build(args, torch.device("cpu"))
    env = task["env"]
    buffer = ReplayBuffer(16, env.buffer_columns(args.image_size, task["plan_shape"]), torch.device("cpu"))
    state = env.reset(torch.rand(2, 3, 32, 32))
    running = torch.ones(2, dtype=torch.bool)
    collect(args, task, buffer, state, running)
    carried = env.hidden.clone()
    assert carried.abs().sum() > 0
    collect(args, task, buffer, env.state, running)

    def stored(name, rows):  # decoded from 8 bits: steps of 1/127 from -128/127
        return (buffer.storage[name][rows].float() - 128) / 127

    assert torch.equal(stored("hidden", slice(0, 2)), torch.zeros(2, 64, 8, 8))                # h_0 = 0, exactly
    assert torch.allclose(stored("next_hidden", slice(0, 2)), carried, atol=0.5 / 127)         # h_1
    assert torch.allclose(stored("hidden", slice(2, 4)), carried, atol=0.5 / 127)              # carried to s_1
    assert not torch.allclose(stored("next_hidden", slice(2, 4)), carried, atol=0.5 / 127)     # h_2 moved on


def test_train_and_evaluate_a_video(tmp_path):
    result = run_script("train.py", *TINY, "--run-dir", str(tmp_path), "--name", "v", "--no-progress")
    assert result.returncode == 0, result.stderr[-2000:]
    run = tmp_path / "v"
    with open(run / "progress.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows[-1]["temporal"] and float(rows[-1]["temporal"]) > 0
    for name in ("video_eval.csv", "video_strip.png", "video_step1.gif", "video_step2.gif", "video_input.gif"):
        assert (run / name).is_file(), name
    assert len(os.listdir(run / "video" / "step2")) == 12  # the built-in clip's frames
    # a GIF the project has never seen, then a frames folder without motion
    clip = torch.rand(4, 3, 30, 40)
    save_gif(clip, str(tmp_path / "mine.gif"))
    out = tmp_path / "out"
    result = run_script("evaluate.py", "--checkpoint", str(run), "--video", str(tmp_path / "mine.gif"),
                        "--steps", "1", "2", "--out", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "no true flow" in result.stdout
    assert Image.open(out / "video" / "step2" / "frame_0004.png").size == (40, 32)  # short side 32, 42 -> 40
    gif = Image.open(out / "video_step2.gif")
    assert gif.n_frames == 4
    # the built-in clip gives the temporal error; input frames (step 0) are nearly consistent
    result = run_script("evaluate.py", "--checkpoint", str(run), "--video", "--steps", "1", "--out", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    header = next(line for line in result.stdout.splitlines() if "temporal error" in line)
    table = [line.split() for line in result.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert header.split()[:3] == ["step", "temporal", "error"] and float(table[0][1]) < 1e-3
    # step 1's error is E32 of the step-1 frames the run wrote, under the clip's true flow (8-bit frames: 2 %)
    frames, flows, valid, names = read_clip("builtin", 32)
    step1 = torch.stack([torch.from_numpy(np.asarray(Image.open(out / "video" / "step1" / f"{n}.png"), dtype=np.float32))
                         .permute(2, 0, 1) / 255 for n in names])
    assert not torch.allclose(step1, frames, atol=1e-2)  # the model changed the frames
    assert float(table[1][1]) == pytest.approx(warping_error(step1[:-1], step1[1:], flows, valid).mean().item(),
                                               rel=0.02)
    # bad input: one line
    (tmp_path / "one").mkdir()
    Image.new("RGB", (32, 32)).save(tmp_path / "one" / "a.png")
    one_line_error(run_script("evaluate.py", "--checkpoint", str(run), "--video", str(tmp_path / "one")), "1 frame")
    one_line_error(run_script("evaluate.py", "--checkpoint", str(run), "--video", "--image", str(tmp_path / "one" / "a.png")),
                   "one at a time")
    one_line_error(run_script("train.py", "--task", "style", "--temporal-weight", "1"), "--temporal-weight is for --task video")
