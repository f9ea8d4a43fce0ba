"""The PixelCNN side by side: a machine-bound then a portable set-mode file of the first N
test images with L lanes, each timed both ways, a JSON line each
(python pixelcnn_side_by_side.py RUN N L)."""

import json
import sys
import time

from acnkit.codec import compress, decompress
from acnkit.trained import load_run

run = load_run(sys.argv[1], "cpu")
x = run.data.test_x.numpy()[: int(sys.argv[2])]
lanes = int(sys.argv[3])
for portable in (False, True):
    t0 = time.perf_counter()
    c = compress(run.model, x, "set", plain_if_smaller=False, portable=portable, lanes=lanes)
    t1 = time.perf_counter()
    decompress(run.model, c.data)
    t2 = time.perf_counter()
    print(json.dumps({"arithmetic": c.header["arithmetic"], "bytes": len(c.data),
                      "bits_per_image": c.bits_per_image,
                      "model_bits_per_image": c.model_bits_per_image,
                      "overhead_percent": c.overhead_percent, "compress_seconds": t1 - t0,
                      "decompress_seconds": t2 - t1, "lanes": lanes, "images": len(x)}),
          flush=True)
