"""What runs around the method: not needed to read Algorithm 1 beside the paper.

`cli` (the command lines and every setting's check), `runlog` (progress log, checkpoints, the printed config),
`report` (the evaluation and curves after training), `evaluation` (evaluate.py's command line and modes),
`figures` (grids and CSV tables), `distributed` (one agent on K processes under torchrun), `stopping` (adaptive
stopping, the paper's future work), `memory` (will the replay buffer fit?), `image_files` (reading user images
safely), `vgg_weights` (VGG-16 weight files), `datasets` (the built-in data's generators, MNIST's idx files),
`video` (frames, optical flow files, the built-in clip), `registration` (the phantom heads and 2-D OASIS slices),
`benchmark` (throughput, memory and network sizes: `python -m extras.benchmark`), `pretrained` (a style run's
planner and actor as a small file that ships: `python -m extras.pretrained`).
"""
