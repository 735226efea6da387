"""What J_Aux asks for: the style task's objective optimised directly on the pixels of the held-out photos.

    python docs/style_optimum.py [--iterations 200] [--style-weight 4e4]

No networks: Adam on the image itself (Gatys et al.), from the photo, on E14 = L_CO + lambda L_ST
+ beta L_TV with the style preset's VGG-16, style image and weights. It prints E13 layer by layer against the
photo's own (1.00 = no better than the photo) and the SSIM to the photo, and writes docs/style_optimum.png:
the photo, then the optimised image. A trained model's eval.csv has the same columns ("style relu1_2" ...),
so the two can be read side by side: which layers (relu1_2 mostly colour, the deeper ones texture) the
policy learnt to move within its budget, and how far the objective's own optimum goes (docs/style-transfer.md).
Under a minute on 2 CPU cores.
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from config import Args  # noqa: E402
from vgg import denormalize, normalize  # noqa: E402
from evaluate import held_out, save_grid, ssim_to  # noqa: E402
from losses import STYLE_LAYERS, auxiliary_loss_style, style_terms  # noqa: E402
from tasks import PRESETS, build  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--style-weight", type=float, default=PRESETS["style"]["cpu"]["style_weight"])
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "style_optimum.png"))
    opts = parser.parse_args()
    torch.manual_seed(0)
    preset = PRESETS["style"]["cpu"]
    args = Args(task="style", image_size=preset["image_size"], style_size=preset["style_size"])
    task = build(args, torch.device("cpu"))
    env, photos = task["env"], held_out("style", task["test_data"]).cpu()
    content = normalize(photos)
    with torch.no_grad():
        content_features, before = env.vgg(content, last="relu2_2"), style_terms(env.vgg(content), env.style_grams)
    image = content.clone().requires_grad_(True)
    optimiser = torch.optim.Adam([image], lr=0.05)
    for _ in range(opts.iterations):
        loss, parts = auxiliary_loss_style(image, env.vgg(image), content_features, env.style_grams, opts.style_weight,
                                           args.tv_weight)  # E14
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        with torch.no_grad():
            image.copy_(normalize(denormalize(image)))  # valid pixels, as the environment keeps them
    with torch.no_grad():
        after = style_terms(env.vgg(image), env.style_grams)
        ssim = ssim_to(denormalize(image), photos).mean().item()
    total = sum(t.mean() for t in after.values()) / sum(t.mean() for t in before.values())
    print(f"{opts.iterations} Adam steps on the pixels, lambda {opts.style_weight:g}: "
          f"E13 {total:.2f} of the photo's; content loss {parts['content'].item():.3g}; SSIM to the photo {ssim:.2f}")
    print("E13 by layer, of the photo's: " + ", ".join(f"{n} {(after[n].mean() / before[n].mean()).item():.2f}"
                                                      for n in STYLE_LAYERS))
    save_grid([[p, o] for p, o in zip(photos, denormalize(image.detach()))], opts.out, ["photo", "optimum"], 2)
    print(f"wrote {opts.out}")


if __name__ == "__main__":
    main()
