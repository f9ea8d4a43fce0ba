"""ACN against the VAE on the same held-out tiles (chelsea and flower, 386 tiles of 32x32),
ordered mode, at the same epochs of the same schedule (python acn_vs_vae.py VAE_RUN ACN_RUN
FIRST LAST): each run's held-out figure (test_bits_per_dim_ordered of metrics.jsonl, a
code length of the tiles in input order) at every epoch from FIRST to LAST, and the means."""
import json
import sys
from pathlib import Path

vae, acn = ({m["epoch"]: m for m in map(json.loads, Path(r, "metrics.jsonl").open())}
            for r in sys.argv[1:3])
first, last = int(sys.argv[3]), int(sys.argv[4])
epochs = [e for e in range(first, last + 1) if e in vae and e in acn]
key = "test_bits_per_dim_ordered"
print("epoch   vae    acn   acn - vae   (held-out bits/dim, ordered; KL nats a tile vae / acn)")
for e in epochs:
    v, a = vae[e][key], acn[e][key]
    print(f"{e:5d} {v:6.3f} {a:6.3f} {a - v:+7.3f}      {vae[e]['test_kl']:6.1f} / {acn[e]['test_kl']:6.1f}")
mv = sum(vae[e][key] for e in epochs) / len(epochs)
ma = sum(acn[e][key] for e in epochs) / len(epochs)
wins = sum(acn[e][key] < vae[e][key] for e in epochs)
print(f"mean  {mv:6.3f} {ma:6.3f} {ma - mv:+7.3f}   ACN below the VAE at {wins} of {len(epochs)} epochs")
