"""The teacher-forced forward pass (encoder, then decoder on the images) of a shipped model's
first N test images, float32, one thread, batches of 100: what a PixelCNN's decode is
measured against (python forward_seconds.py MODEL N...)."""
import sys
import time

import torch

from acnkit.files import dataset_images
from acnkit.shipped import load_model

torch.set_num_threads(1)
trained = load_model(sys.argv[1])
m = trained.model
x = torch.from_numpy(dataset_images(trained, trained.config.data, "test"))
with torch.no_grad():
    for n in map(int, sys.argv[2:]):
        t = time.perf_counter()
        for i in range(0, n, 100):
            xb = m.inputs(x[i:i + 100].reshape(-1, *m.image_shape))
            m.decoder.params(m.encoder(xb).mean, xb)
        print(f"{n} images: {time.perf_counter() - t:.2f} s")
