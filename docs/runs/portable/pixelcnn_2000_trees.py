"""One revision's timing of the shipped fm8-pixelcnn-acn-small on the first 2,000 test
images, set mode, 20 lanes, a JSON line: python pixelcnn_2000_trees.py TREE p|m, TREE a
checkout of acnkit (`git worktree add /tmp/head REV`, its C kernels copied or built), p
portable, m machine-bound. Run two trees in turn, alternating, on a quiet machine."""
import sys, json, time
sys.path.insert(0, sys.argv[1])
import torch
torch.set_num_threads(1)
import acnkit
assert acnkit.__file__.startswith(sys.argv[1])
from acnkit.codec import compress, decompress
from acnkit.files import dataset_images
from acnkit.shipped import load_model
t = load_model("fm8-pixelcnn-acn-small")
x = dataset_images(t, t.config.data, "test")[:2000]
portable = sys.argv[2] == "p"
t0 = time.perf_counter()
c = compress(t.model, x, "set", plain_if_smaller=False, portable=portable, lanes=20)
t1 = time.perf_counter(); decompress(t.model, c.data); t2 = time.perf_counter()
print(json.dumps({"tree": sys.argv[1], "arithmetic": c.header["arithmetic"], "bytes": len(c.data), "compress_seconds": round(t1 - t0, 1), "decompress_seconds": round(t2 - t1, 1)}), flush=True)
