"""Portable compress/decompress of 10,000 8-bit test images with an MLP run (python
blas_threads.py one|two RUN), numpy's BLAS held to one thread while coding (as acnkit
does) or left to its own (two threads on this machine)."""
import sys, time, contextlib
from acnkit.codec import compress, decompress
from acnkit.files import dataset_images
from acnkit.trained import load_run
mode = sys.argv[1]
if mode == "two":
    import threadpoolctl
    threadpoolctl.threadpool_limits = lambda *a, **k: contextlib.nullcontext()
t = load_run(sys.argv[2] if len(sys.argv) > 2 else "runs/mlp8-small", "cpu")
x = dataset_images(t, "fashion-mnist", "test")
t0 = time.perf_counter()
c = compress(t.model, x, "set", plain_if_smaller=False)
t1 = time.perf_counter()
decompress(t.model, c.data)
t2 = time.perf_counter()
print(mode, f"compress {t1-t0:.2f} decompress {t2-t1:.2f} bytes {len(c.data)} lanes {len(c.header['lane_words'])}", flush=True)
