"""Draws docs/framework.png, our redrawing of the paper's framework figure (Planner-Actor-Critic).

    python docs/framework.py
"""
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

BOXES = {  # name: (x, y, width, height, label, colour)
    "state": (0.2, 2.2, 1.6, 1.0, "state $s_t$\n(an image)", "#e8e8e8"),
    "planner": (2.6, 2.2, 1.8, 1.0, "Planner $\\pi_\\psi$\nstochastic (E2)", "#cfe2f3"),
    "plan": (5.2, 2.2, 1.6, 1.0, "plan $p_t$, drawn\nwith rsample()", "#fff2cc"),
    "actor": (7.6, 2.2, 1.8, 1.0, "Actor $\\mu_\\phi$\ndeterministic", "#cfe2f3"),
    "action": (10.2, 2.2, 1.6, 1.0, "action $a_t$\n(an image)", "#e8e8e8"),
    "env": (10.0, 0.2, 2.0, 1.0, "environment\n$s_{t+1} = T(s_t, a_t)$", "#d9ead3"),
    "critic": (5.0, 4.2, 2.0, 1.0, "Critic $Q_\\theta(s_t, p_t)$\ntwin, E4 E5 E8", "#f4cccc"),
    "aux": (10.0, 4.2, 2.0, 1.0, "auxiliary loss\n$J_{Aux}(a_t, y)$ (E9)", "#f4cccc"),
    "buffer": (4.0, 0.2, 4.0, 1.0, "replay buffer D of $(s_t, p_t, r_t, s_{t+1}, d_t)$:\nminibatches for E4-E9", "#ead1dc"),
}
ARROWS = [  # (from, to, label, style)
    ("state", "planner", "", "-"), ("planner", "plan", "", "-"), ("plan", "actor", "", "-"),
    ("planner", "actor", "skip features", "arc"), ("actor", "action", "", "-"), ("action", "env", "", "-"),
    ("env", "buffer", "reward $r_t = R(s_{t+1}, y)$", "-"), ("env", "state", "$s_{t+1}$: the next state", "loop"),
    ("plan", "critic", "", "-"), ("critic", "planner", "$-Q$ (E6)", "grad"), ("action", "aux", "", "-"),
    ("aux", "actor", "E9", "grad"),
]


def anchor(box, toward):
    x, y, w, h = box[:4]
    tx, ty, tw, th = toward[:4]
    cx, cy, tcx, tcy = x + w / 2, y + h / 2, tx + tw / 2, ty + th / 2
    if abs(tcx - cx) * h > abs(tcy - cy) * w:  # leave by the left or right side
        return (x + w if tcx > cx else x, cy)
    return (cx, y + h if tcy > cy else y)


def main() -> None:
    fig, ax = plt.subplots(figsize=(9.6, 5.0))
    ax.set_xlim(0, 12.2)
    ax.set_ylim(-1.0, 5.8)
    ax.axis("off")
    for x, y, w, h, label, colour in BOXES.values():
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.05", fc=colour, ec="#444444"))
        ax.text(x + w / 2, y + h / 2, label, ha="center", va="center", fontsize=9)
    for a, b, label, style in ARROWS:
        start, end = anchor(BOXES[a], BOXES[b]), anchor(BOXES[b], BOXES[a])
        if style == "arc":
            start, end = (start[0] - 0.9, start[1] - 0.5), (end[0] + 0.9, end[1] - 0.5)
        if style == "loop":  # under the buffer, back to the left
            (x, y, w, h), (sx, sy, sw, sh) = BOXES[a][:4], BOXES[b][:4]
            start, end = (x + w / 2, y), (sx + sw / 2, sy)
        kw = dict(arrowstyle="-|>", mutation_scale=12, lw=1.2,
                  color="#cc0000" if style == "grad" else "#333333",
                  linestyle="--" if style == "grad" else "-",
                  connectionstyle={"arc": "arc3,rad=0.25", "grad": "arc3,rad=0.25",
                                   "loop": "bar,fraction=-0.08,angle=0"}.get(style, "arc3"))
        ax.add_patch(FancyArrowPatch(start, end, **kw))
        if label:
            mx, my = (start[0] + end[0]) / 2, (start[1] + end[1]) / 2
            dx, dy = {"arc": (0, -0.55), "grad": (-0.9, 0.45), "loop": (-3.0, -1.85)}.get(style, (0, 0.08))
            ax.text(mx + dx, my + dy, label, ha="center", va="bottom", fontsize=8,
                    color="#cc0000" if style == "grad" else "#333333")
    ax.text(0.2, 5.5, "RL-I2IT, one step t. Solid: data. Dashed red: gradient; -Q trains the planner, J_Aux the "
            "actor and, through it, the planner.", fontsize=9)
    fig.tight_layout()
    fig.savefig(os.path.join(os.path.dirname(os.path.abspath(__file__)), "framework.png"), dpi=90)


if __name__ == "__main__":
    main()
