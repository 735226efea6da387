"""The style curve: what the model paints at step T against the number of updates, from the held-out evaluations
that `--set eval_every=N` writes to a run's eval_curve.csv during training (one run per curve).

    python docs/style_curve.py runs/style-long-seed1 runs/style-long-onestep-seed1 [--out docs/style_curve.png]

For each run: E13 at steps 1 and T and each of its layers at step T over the photo's own (1.00 = no better than
the photo; relu1_2 is mostly colour, the deeper layers texture) and the SSIM to the photo at steps 1 and T, against the
updates on a log axis; RL-I2IT solid, the one-step model (`--rl off`, re-applied for steps 2 to T) dashed. It also
prints the table behind the figure, one row per evaluation.
"""
import argparse
import csv
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")


def read_curve(run: str) -> tuple[str, int, list[dict]]:
    """(label, T, rows): one row per evaluation, each quantity at step T over the photo's (step 0)."""
    with open(os.path.join(run, "config.json")) as f:
        config = json.load(f)
    with open(os.path.join(run, "eval_curve.csv"), newline="") as f:
        table = list(csv.DictReader(f))
    steps = int(config["test_steps"])
    kind = "RL-I2IT" if config["rl"] == "on" else "one-step"
    label = f"{os.path.basename(os.path.normpath(run))} ({kind}, seed {config['seed']})"
    rows = []
    for updates in sorted({int(r["updates"]) for r in table}):
        at = {int(r["step"]): r for r in table if int(r["updates"]) == updates}
        photo, last = at[0], at[steps]
        row = {"updates": updates, "E13": float(last["style loss"]) / float(photo["style loss"]),
               "E13 1": float(at[1]["style loss"]) / float(photo["style loss"])}
        row.update({layer: float(last[f"style {layer}"]) / float(photo[f"style {layer}"]) for layer in LAYERS})
        row.update({"SSIM 1": float(at[1]["SSIM to content"]), "SSIM T": float(last["SSIM to content"])})
        rows.append(row)
    return label, steps, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run folders holding eval_curve.csv (train.py --set eval_every=N)")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "style_curve.png"))
    opts = parser.parse_args()
    figure, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, run in enumerate(opts.runs):
        label, steps, rows = read_curve(run)
        style = "-" if "(RL-I2IT," in label else "--"
        x = [r["updates"] for r in rows]
        print(f"{label}: step {steps} over the photo's (E13 1: step 1's)")
        print("updates   E13  E13 1  " + "  ".join(LAYERS) + "  SSIM 1  SSIM T")
        for r in rows:
            print(f"{r['updates']:7d} {r['E13']:5.3f}  {r['E13 1']:5.3f}  "
                  + "  ".join(f"{r[layer]:7.2f}" for layer in LAYERS)
                  + f"  {r['SSIM 1']:6.2f}  {r['SSIM T']:6.2f}")
        colour = colours[i % len(colours)]
        axes[0].plot(x, [r["E13"] for r in rows], style, color=colour, label=f"{label}: step {steps}")
        axes[0].plot(x, [r["E13 1"] for r in rows], style, color=colour, alpha=0.4, label=f"{label}: step 1")
        for layer, marker in zip(LAYERS[1:3], ("o", "s")):
            axes[1].plot(x, [r[layer] for r in rows], style, marker=marker, markersize=3, color=colour,
                         label=f"{label}: {layer}")
        axes[2].plot(x, [r["SSIM T"] for r in rows], style, color=colour, label=f"{label}: step {steps}")
    for axis, title in zip(axes, ("E13 at steps 1 and T / photo's", "texture layers at step T / photo's",
                                  "SSIM to the photo at step T")):
        axis.set_xscale("log")
        axis.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # labels at powers of ten only
        axis.set_xlabel("updates")
        axis.set_title(title)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=7)
    for axis in axes[:2]:  # ratios: the one-step model's re-applied steps can be 10 times the photo's
        axis.set_yscale("log")
        axis.axhline(1.0, color="grey", linewidth=0.8)
    figure.tight_layout()
    figure.savefig(opts.out, dpi=80)
    print(f"wrote {opts.out}")


if __name__ == "__main__":
    main()
