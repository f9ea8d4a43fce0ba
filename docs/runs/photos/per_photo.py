"""Each photo's model figure (the reconstruction term at the posterior mean, bits/dim over its whole
32x32 tiles) beside Pillow's optimised PNG (python per_photo.py RUN)."""
import sys, torch, numpy as np
torch.set_num_threads(1)
from acnkit.trained import load_run
import skimage.data as sd
from sklearn.datasets import load_sample_images
from PIL import Image
import io
r = load_run(sys.argv[1], "cpu")
m = r.model
def tiles(p):
    h, w = p.shape[:2]; out = []
    for i in range(0, h - 31, 32):
        for j in range(0, w - 31, 32): out.append(p[i:i+32, j:j+32].transpose(2, 0, 1))
    return torch.from_numpy(np.stack(out))
china, flower = load_sample_images().images
for name, p in (("china(train)", china), ("chelsea(test)", sd.chelsea()), ("flower(test)", flower)):
    x = tiles(p)
    with torch.no_grad():
        xin = m.inputs(x); q = m.encoder(xin)
        nll = m.decoder.nll(q.mean, xin, m.loss)
    buf = io.BytesIO(); Image.fromarray(p).save(buf, format="PNG", optimize=True)
    print(f"{name:15s} model recon {float((nll / 3072 / np.log(2)).mean()):.2f} bits/dim;  PNG {8 * len(buf.getvalue()) / p.size:.2f}")
