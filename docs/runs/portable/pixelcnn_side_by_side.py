"""The PixelCNN side by side: a machine-bound then a portable set-mode file of the first N
test images with L lanes, each timed both ways, a JSON line each
(python pixelcnn_side_by_side.py RUN_OR_MODEL N L: a run folder, or a shipped model such
as fm8-pixelcnn-acn-small, whose test images are Fashion-MNIST's)."""

import json
import sys
import time
from pathlib import Path

from acnkit.codec import compress, decompress
from acnkit.files import dataset_images

if (Path(sys.argv[1]) / "checkpoint.pt").exists():
    from acnkit.trained import load_run

    trained = load_run(sys.argv[1], "cpu")
else:
    from acnkit.shipped import load_model

    trained = load_model(sys.argv[1])
x = dataset_images(trained, trained.config.data, "test")[: int(sys.argv[2])]
lanes = int(sys.argv[3])
for portable in (False, True):
    t0 = time.perf_counter()
    c = compress(trained.model, x, "set", plain_if_smaller=False, portable=portable, lanes=lanes)
    t1 = time.perf_counter()
    decompress(trained.model, c.data)
    t2 = time.perf_counter()
    print(json.dumps({"arithmetic": c.header["arithmetic"], "bytes": len(c.data),
                      "bits_per_image": c.bits_per_image,
                      "model_bits_per_image": c.model_bits_per_image,
                      "overhead_percent": c.overhead_percent, "compress_seconds": t1 - t0,
                      "decompress_seconds": t2 - t1, "lanes": lanes, "images": len(x)}),
          flush=True)
