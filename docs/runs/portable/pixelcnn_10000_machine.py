"""The machine-bound side of the 10,000-image PixelCNN file: compress and decompress timed,
a JSON line (python pc10k_machine.py MODEL)."""
import json, sys, time
from acnkit.codec import compress, decompress
from acnkit.files import dataset_images
from acnkit.shipped import load_model
trained = load_model(sys.argv[1])
x = dataset_images(trained, trained.config.data, "test")
t0 = time.perf_counter()
c = compress(trained.model, x, "set", portable=False)
t1 = time.perf_counter()
decompress(trained.model, c.data)
t2 = time.perf_counter()
print(json.dumps({"arithmetic": c.header["arithmetic"], "bytes": len(c.data), "lanes": len(c.header["lane_words"]),
                  "overhead_percent": c.overhead_percent, "compress_seconds": t1 - t0, "decompress_seconds": t2 - t1}))
