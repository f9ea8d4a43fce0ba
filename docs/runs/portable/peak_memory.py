"""Peak memory of compressing and decompressing the 10,000 Fashion-MNIST test images with
the 8-bit MLP ACN run, portable (exact) or machine-bound (machine):
/usr/bin/time -f %M python peak_memory.py exact|machine (run folder hard-coded below)."""
import sys, numpy as np
from acnkit.trained import load_run
from acnkit.codec import compress, decompress
run = load_run("/work/runs/fm8-mlp-acn", "cpu")
x = run.data.test_x.numpy()
c = compress(run.model, x, "set", plain_if_smaller=False, portable=sys.argv[1] == "exact")
decompress(run.model, c.data)
