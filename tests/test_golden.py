"""Files written by an earlier acnkit, kept in the repository: each must still decode to
its images, bit for bit, with the shipped model its fingerprint names. A change to the
exact arithmetic, a loss's CDF or a decoder's stepping that moves one float breaks them,
as it would break every file users hold (the promise: a file opens later too)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from acnkit.codec import decompress, read_header
from acnkit.shipped import by_fingerprint, load_model

GOLDEN = Path(__file__).parent / "golden"

#: (file, its images, how it was made): written with the exact arithmetic on a 2-core
#: AVX-512 machine, 2 lanes, by acnkit.codec.compress(model, images, mode, lanes=2,
#: plain_if_smaller=False); the images are Fashion-MNIST's first six test images
FILES = [
    ("fm8-six-ordered.acnz", "fm8-six.npy", "fm8-pixelcnn-acn-small, ordered, commit 1950ff2"),
    ("fm8-six-set.acnz", "fm8-six.npy", "fm8-pixelcnn-acn-small, set, commit 1950ff2"),
    # format 9 (varints), the first three images, one lane
    ("fm8-three-ordered-format9.acnz", "fm8-six.npy", "the same, ordered, format 9"),
]


@pytest.mark.parametrize("file, images, made", FILES, ids=[f[0] for f in FILES])
def test_a_file_written_earlier_decodes_to_its_images(file, images, made):
    data = (GOLDEN / file).read_bytes()
    header, _ = read_header(data)
    name = by_fingerprint(header["model"])
    assert name is not None, f"no shipped model has the fingerprint of {file} ({made})"
    out = decompress(load_model(name).model, data, file)
    want = np.load(GOLDEN / images)[: header["count"]]
    if header["mode"] == "ordered":
        assert np.array_equal(out, want)
    else:
        assert sorted(r.tobytes() for r in out) == sorted(r.tobytes() for r in want)


def test_a_file_of_photos_written_earlier_decodes_to_their_pixels_and_modes(tmp_path):
    """Two photos of other sizes than the model's (a colour one and a grey one, each less
    than a tile), written by the shipped photo model as tiles: the command line finds the
    model from the file and writes both back, each in its own mode, pixel for pixel."""
    from click.testing import CliRunner
    from PIL import Image

    from acnkit.cli import main

    r = CliRunner().invoke(main, ["decompress", str(GOLDEN / "photos-two-format9.acnz"),
                                  "-o", str(tmp_path) + "/"])
    assert r.exit_code == 0, r.output
    for name in ("photo-colour.png", "photo-grey.png"):
        with Image.open(GOLDEN / name) as want, Image.open(tmp_path / name) as got:
            assert got.mode == want.mode and got.size == want.size
            assert np.array_equal(np.asarray(got), np.asarray(want)), name


@pytest.mark.parametrize("machine", ["AVX2", "SSE4"])
def test_the_golden_files_decode_on_a_narrower_cpu(machine, tmp_path):
    """The photo file and an 8-bit file, decoded by `acnkit decompress` in a process held
    to AVX2 or SSE4 kernels (torch, oneDNN, MKL, numpy's loops, OpenBLAS): the same pixels
    as written on the widest ones."""
    import os
    import subprocess
    import sys

    from PIL import Image

    from acnkit.testing import portable

    env = {**os.environ, **getattr(portable, machine), "OMP_NUM_THREADS": "1"}
    for file, out in (("photos-two-format9.acnz", tmp_path / "photos/"),
                      ("fm8-three-ordered-format9.acnz", tmp_path / "three.npy")):
        done = subprocess.run([sys.executable, "-m", "acnkit", "decompress",
                               str(GOLDEN / file), "-o", str(out) + ("/" if out.suffix == ""
                                                                      else "")],
                              env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
    for name in ("photo-colour.png", "photo-grey.png"):
        with Image.open(GOLDEN / name) as want, Image.open(tmp_path / "photos" / name) as got:
            assert got.mode == want.mode and np.array_equal(np.asarray(got), np.asarray(want))
    three = np.load(tmp_path / "three.npy")
    assert np.array_equal(three.reshape(len(three), -1),
                          np.load(GOLDEN / "fm8-six.npy")[:3].reshape(3, -1))
