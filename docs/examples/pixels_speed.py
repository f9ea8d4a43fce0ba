"""One training epoch of the same PixelCNN at 8 bits (discretised logistic mixture) and
binarised (Bernoulli), measured back to back in one run: what modelling 256 levels costs.

    OMP_NUM_THREADS=1 python docs/examples/pixels_speed.py [--images 2560] [--data fashion-mnist]

Uses configs/pixelcnn-8bit.toml for both, changing only --pixels and the loss, so the nets
are the same size except the last 1x1 convolution (15 outputs a pixel against 1)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from acnkit import RunConfig, Trainer

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "pixelcnn-8bit.toml"


def epoch_seconds(pixels: str, data: str, images: int) -> float:
    config = RunConfig.from_toml(CONFIG, pixels=pixels, data=data, prior="vae",
                                 loss="logistic" if pixels == "native" else "bernoulli",
                                 train_limit=images, test_limit=64, epochs=1)
    trainer = Trainer(config)
    t0 = time.perf_counter()
    trainer.train_pass()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2560)
    parser.add_argument("--data", default="fashion-mnist")
    args = parser.parse_args()
    torch.set_num_threads(1)
    binary = epoch_seconds("binary", args.data, args.images)
    native = epoch_seconds("native", args.data, args.images)
    print(f"{args.images} images, one thread: binary {binary:.1f} s, 8-bit {native:.1f} s, "
          f"ratio {native / binary:.2f}")


if __name__ == "__main__":
    main()
