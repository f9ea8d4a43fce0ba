"""Time two versions of a PixelCNN plugin module stepping through every position of the
same random images with the same weights (the paper-like PixelCNN: 6 layers of 7 x 7, 32
channels, spatial z, 28 x 28), and check both against the teacher-forced forward pass.

    git show <commit>:plugins/pixelcnn.py > /tmp/old_pixelcnn.py
    OMP_NUM_THREADS=1 python docs/examples/stepping_speed.py /tmp/old_pixelcnn.py plugins/pixelcnn.py 40
"""

from __future__ import annotations

import importlib.util
import sys
import time

import torch


def load(path: str, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def stepped(decoder, z: torch.Tensor, x: torch.Tensor) -> tuple[float, torch.Tensor]:
    state, out = decoder.start(z), []
    t0 = time.perf_counter()
    for i in range(x.shape[1]):
        out.append(decoder.step(state, i))
        decoder.feed(state, i, x[:, i])
    return time.perf_counter() - t0, torch.stack(out, 1)


def main(old_path: str, new_path: str, lanes: int) -> None:
    torch.manual_seed(0)
    options = dict(channels=32, layers=6, kernel=7, spatial=4)
    old = load(old_path, "old_pixelcnn").PixelCNNDecoder((1, 28, 28), 16, **options).eval()
    new = load(new_path, "new_pixelcnn").PixelCNNDecoder((1, 28, 28), 16, **options).eval()
    new.load_state_dict(old.state_dict())
    z, x = torch.randn(lanes, 16), (torch.rand(lanes, 784) < 0.3).float()
    with torch.no_grad():
        forced = old(z, x.view(lanes, 1, 28, 28)).view(lanes, -1)
        t_old, p_old = stepped(old, z, x)
        t_new, p_new = stepped(new, z, x)
    print(f"{lanes} lanes x 784 positions, {torch.get_num_threads()} thread(s): "
          f"old {t_old:.2f} s, new {t_new:.2f} s, old / new {t_old / t_new:.2f}; largest "
          f"difference from the forward pass: old {(p_old - forced).abs().max():.1e}, "
          f"new {(p_new - forced).abs().max():.1e}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 40)
