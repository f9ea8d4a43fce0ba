"""Portable against machine-bound coding of the same 32 colour tiles (the top 128x256 of
chelsea), 8 lanes, one thread (python portable_cost.py RUN_OR_MODEL: a run folder, or a
shipped model such as photos): bytes, seconds each way and the round trip of each."""
import time, sys, numpy as np, torch
from pathlib import Path
torch.set_num_threads(1)
from acnkit.codec import compress, decompress
import skimage.data
if (Path(sys.argv[1]) / "checkpoint.pt").exists():
    from acnkit.trained import load_run
    r = load_run(sys.argv[1], "cpu")
else:
    from acnkit.shipped import load_model
    r = load_model(sys.argv[1])
im = skimage.data.chelsea()[:128, :256]
tiles = np.stack([im[i:i+32, j:j+32].transpose(2,0,1) for i in range(0,128,32) for j in range(0,256,32)])
for portable in (True, False):
    t = time.perf_counter()
    c = compress(r.model, tiles, "ordered", lanes=8, portable=portable, plain_if_smaller=False)
    t1 = time.perf_counter()
    out = decompress(r.model, c.data)
    t2 = time.perf_counter()
    print("portable" if portable else "machine", len(c.data), f"{t1-t:.1f} s / {t2-t1:.1f} s", np.array_equal(out, tiles))
