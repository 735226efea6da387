"""What runs around the method: not needed to read Algorithm 1 beside the paper.

`runlog` (progress log, checkpoints, the printed config), `report` (the evaluation and curves after training),
`distributed` (one agent on K processes under torchrun), `stopping` (adaptive stopping, the paper's future work),
`video` (frames, optical flow files, the built-in clip), `registration` (the phantom heads and 2-D OASIS slices),
`benchmark` (throughput, memory and network sizes: `python -m extras.benchmark`).
"""
