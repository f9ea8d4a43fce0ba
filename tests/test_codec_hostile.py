"""The codec on inputs and files a hostile or careless user gives it: devices, tampered
headers, odd shapes, duplicates, data unlike the training data, absurd latents."""

import os
import stat

import numpy as np
import pytest
from click.testing import CliRunner
from test_codec import trained

from acnkit.atomic import atomic_write_bytes
from acnkit.cli import main
from acnkit.codec import as_images, compress, decompress, read_header
from acnkit.codec.coder import WINDOW, Codecs, Grid, new_stack
from acnkit.codec.fileformat import pack
from acnkit.errors import CodecError, UsageError


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


# -- 1. only regular files are ever replaced -------------------------------------------------

def test_a_fifo_is_refused_not_replaced(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(UsageError, match="is a FIFO"):
        atomic_write_bytes(fifo, b"data")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


@pytest.mark.skipif(not os.path.exists("/dev/null"), reason="no /dev/null")
def test_compress_and_decompress_never_replace_a_device(tmp_path):
    run = tmp_path / "run"
    assert invoke("run", "--epochs", 1, "--train-limit", 200, "--test-limit", 30,
                  "--latent-dim", 4, "--out", run).exit_code == 0
    before = os.stat("/dev/null")
    r = invoke("compress", run, "--data", "digits", "-o", "/dev/null", "--overwrite")
    assert r.exit_code == 2 and "character device" in r.stderr
    file = tmp_path / "f.acnz"
    assert invoke("compress", run, "--data", "digits", "-o", file).exit_code == 0
    r = invoke("decompress", file, "--run", run, "-o", "/dev/null", "--overwrite")
    assert r.exit_code == 2 and "character device" in r.stderr
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev


# -- 4 and 7. tampered headers, with their CRC made good -------------------------------------

def _tampered(data: bytes, **fields) -> bytes:
    header, words = read_header(data)
    header.update(fields)
    return pack(header, words.astype("<u4").tobytes())


def test_tampered_headers_are_refused_before_decoding():
    t = trained(prior="acn")
    data = compress(t.model, t.data.test_x.numpy(), "ordered").data
    cases = [({"count": 10**9}, "claims 1000000000 images"), ({"count": 0}, "holds no images"),
             ({"image_shape": [1, 100000, 100000]}, "corrupt"),
             ({"image_shape": []}, r"image shape \[\] is not one acnkit writes"),
             ({"image_shape": [0]}, "is not one acnkit writes"),
             ({"grid": {"bits": 4, "lo": 5, "hi": 5}}, "latent grid"),
             ({"input_shape": [7, 7]}, "does not hold"),
             ({"lane_words": []}, "0 lanes of 0 words do not fit"),
             ({"lane_words": [1, 10**6]}, "lanes of 1000001 words do not fit"),
             ({"seed_words": 10**4}, "initial words do not fit")]
    for fields, message in cases:
        with pytest.raises(CodecError, match=message):
            decompress(t.model, _tampered(data, **fields))
    header, words = read_header(data)
    words = words.copy()  # the file's words are a read-only view of its bytes
    words[-1] = 0
    with pytest.raises(CodecError, match="does not end in a word"):
        decompress(t.model, pack(header, words.astype("<u4").tobytes()))


@pytest.mark.parametrize("fields", [{"input_dtype": "int16"}, {"input_shape": [1, 120, 64]},
                                    {"mode": "set"}])
def test_every_header_field_is_covered_by_the_digest(fields):
    t = trained(prior="vae")
    data = compress(t.model, t.data.test_x.numpy(), "ordered").data
    with pytest.raises(CodecError):
        decompress(t.model, _tampered(data, **fields))


def test_the_conditional_flag_must_match_the_model():
    t = trained(prior="vae")
    data = compress(t.model, t.data.test_x.numpy(), "ordered").data
    with pytest.raises(CodecError, match="plain one"):
        decompress(t.model, _tampered(data, conditional=True))


def test_a_version_field_says_the_file_may_be_corrupt():
    t = trained(prior="vae")
    data = bytearray(compress(t.model, t.data.test_x.numpy(), "ordered").data)
    data[4] = 15  # a flipped bit: the CRC no longer matches
    with pytest.raises(CodecError, match="corrupt or truncated"):
        decompress(t.model, bytes(data))
    with pytest.raises(CodecError, match="corrupt or from a newer acnkit"):
        decompress(t.model, _repack_version(bytes(data), 10))
    with pytest.raises(CodecError, match="version 5, from an acnkit before posteriors coded a"):
        decompress(t.model, _repack_version(bytes(data), 5))
    with pytest.raises(CodecError, match="version 4, from an acnkit before the search over"):
        decompress(t.model, _repack_version(bytes(data), 4))
    with pytest.raises(CodecError, match="version 3, from an acnkit before 8-bit images"):
        decompress(t.model, _repack_version(bytes(data), 3))
    with pytest.raises(CodecError, match="version 1, from an acnkit before dithered"):
        decompress(t.model, _repack_version(bytes(data), 1))
    with pytest.raises(CodecError, match="version 2, from an acnkit before lanes"):
        decompress(t.model, _repack_version(bytes(data), 2))


def _repack_version(data: bytes, version: int) -> bytes:
    import struct
    import zlib

    body = data[:4] + struct.pack("<H", version) + data[6:-4]
    return body + struct.pack("<I", zlib.crc32(body))


# -- 5. duplicates have no order to hide bits in ---------------------------------------------

def test_set_mode_figure_counts_only_the_orders_that_can_be_told_apart():
    t = trained(prior="vae")
    same = np.repeat(t.data.test_x.numpy()[:1], 300, axis=0)
    c = compress(t.model, same, "set")
    # nothing to reorder: the file is the images' own cost plus its fixed bytes (header,
    # initial words: about 1,000 bits), not log(300!)/300 nats an image below it
    extra_bits = (c.bits_per_image - c.model_bits_per_image) * len(same)
    assert -200 < extra_bits < 1500, extra_bits
    assert len(compress(t.model, same, "ordered").data) == len(c.data)
    assert np.array_equal(decompress(t.model, c.data), same)


# -- 6. shapes ---------------------------------------------------------------------------------

def test_only_image_shaped_arrays_are_taken():
    x = np.zeros((5, 64), dtype=np.uint8)
    for shape in ((5, 64), (5, 8, 8), (5, 1, 8, 8)):
        assert as_images(x.reshape(shape), (1, 8, 8), 2, "x").shape == (5, 1, 8, 8)
    for shape in ((5, 2, 32), (5, 4, 16), (5, 1, 64)):
        with pytest.raises(UsageError, match=r"\(N, 1, 8, 8\) or \(N, 8, 8\) or \(N, 64\)"):
            as_images(x.reshape(shape), (1, 8, 8), 2, "x")


def test_a_text_file_as_input_is_named_for_what_it_is(tmp_path):
    run = tmp_path / "run"
    assert invoke("run", "--epochs", 1, "--train-limit", 200, "--test-limit", 30,
                  "--latent-dim", 4, "--out", run).exit_code == 0
    text = tmp_path / "images.npy"
    text.write_text("0 1 0 1\n" * 10)
    r = invoke("compress", run, "--input", text, "-o", tmp_path / "f.acnz")
    assert r.exit_code == 2 and "is not a .npy file" in r.stderr, r.stderr
    assert r.stderr.strip().endswith("numpy.save")


# -- 3. no absurd latent comes out of a posterior pop ----------------------------------------

def test_posterior_pops_stay_within_the_window_whatever_the_bits():
    """Popped from random bits (what a pop reads on data unlike the training data), a
    posterior's latents stay within mean +- WINDOW std: the grid's floor probability gives
    far-away points some mass, and each such z would cost thousands of bits."""
    grid = Grid(bits=4, lo=-(1 << 15), hi=1 << 15)  # a wide grid: a large floor of far points
    codecs = Codecs(grid)
    rng = np.random.default_rng(0)
    mean, std = rng.normal(size=32), np.full(32, 0.5)
    lo, hi = (mean - WINDOW * std) / grid.step, (mean + WINDOW * std) / grid.step
    outside = 0
    for step in range(300):
        ans = new_stack(rng.integers(1, 2**32, size=64, dtype=np.uint64).astype(np.uint32))
        symbols = codecs.posteriors(mean[None], std[None], [step])[0].pop(ans)
        outside += int(((symbols < np.floor(lo)) | (symbols > np.ceil(hi))).sum())
    assert outside == 0


def test_posterior_windows_are_the_largest_power_of_two_within_the_window():
    """A window's size is what lets an image's dimensions share a coder call: a power of
    two of grid points, never more than mean +- WINDOW std holds, never half of it or less."""
    grid = Grid(bits=5, lo=-(1 << 12), hi=1 << 12)
    rng = np.random.default_rng(1)
    mean, std = rng.normal(size=(50, 16)), np.exp(rng.normal(size=(50, 16)) - 2)
    start, size = Codecs(grid)._windows(mean, std)
    points = np.ceil((mean + WINDOW * std) / grid.step) - np.floor((mean - WINDOW * std) / grid.step) + 1
    assert ((size & (size - 1)) == 0).all() and (size >= 2).all()
    assert (size <= points).all() and (2 * size > points).all()
    assert (start >= np.floor((mean - WINDOW * std) / grid.step)).all()
    assert (start + size - 1 <= np.ceil((mean + WINDOW * std) / grid.step)).all()


# -- 2. clean bits on data unlike the training data ------------------------------------------

def test_data_unlike_the_training_data_cost_no_more_than_the_model_says():
    """Thresholded digits (load_digits().images >= 8) are unlike the randomly binarised
    training digits: where q is wider than p, undithered posterior pops read back the
    previous image's quantile and walk z into q's tails (ACN files were 13-19 % over the
    model's figure). With the dither the overhead is the fixed cost, as on the model's own
    training images."""
    from sklearn.datasets import load_digits

    from acnkit import RunConfig, Trainer

    t = Trainer(RunConfig(prior="acn", data="digits", epochs=30))
    t.fit()
    own_images = t.data.train_x.numpy()  # 1,437 images
    thresholded = (load_digits().images >= 8).astype(np.uint8)[:, None]  # all 1,797
    for mode in ("ordered", "set"):
        own = compress(t.model, own_images, mode).overhead_percent
        unlike = compress(t.model, thresholded, mode).overhead_percent
        assert abs(unlike - own) < 1.0, (mode, own, unlike)


# -- 8. image files in and out ---------------------------------------------------------------

def test_image_files_round_trip_under_their_names(tmp_path):
    from PIL import Image

    run = tmp_path / "run"
    assert invoke("run", "--epochs", 1, "--train-limit", 200, "--test-limit", 30,
                  "--latent-dim", 4, "--out", run).exit_code == 0
    rng = np.random.default_rng(0)
    pictures = rng.integers(0, 2, size=(4, 8, 8)).astype(bool)
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    names = ["a.png", "sub/b.pbm", "c.tif", "d.png"]
    for name, picture in zip(names[:3], pictures[:3], strict=True):
        Image.fromarray(picture).save(folder / name)  # 1-bit
    Image.fromarray(pictures[3].astype(np.uint8) * 255).save(folder / "d.png")  # 0/255 grey
    file = tmp_path / "f.acnz"
    r = invoke("compress", run, folder, "-o", file)
    assert r.exit_code == 0, r.output
    out = tmp_path / "out"
    r = invoke("decompress", file, "--run", run, "-o", f"{out}/")
    assert r.exit_code == 0 and "under their names" in r.output, r.output
    for name in names:
        with Image.open(out / name) as back, Image.open(folder / name) as given:
            assert back.mode == given.mode, name  # the 0/255 grey file comes back grey
            assert np.array_equal(np.asarray(back), np.asarray(given)), name
    r = invoke("decompress", file, "--run", run, "-o", f"{out}/")
    assert r.exit_code == 2 and "exists" in r.stderr  # nothing replaced without --overwrite
    r = invoke("compress", run, folder, "--set", "-o", tmp_path / "s.acnz")
    assert r.exit_code == 2 and "several modes" in r.stderr  # set mode cannot keep which
    (folder / "d.png").unlink()
    r = invoke("compress", run, folder, "--set", "-o", tmp_path / "s.acnz")
    assert r.exit_code == 0 and "not their names" in r.output
    r = invoke("decompress", tmp_path / "s.acnz", "--run", run, "-o", f"{tmp_path / 'set'}/")
    assert r.exit_code == 0 and "no names kept" in r.output
    assert sorted(p.name for p in (tmp_path / "set").iterdir())[0] == "image-00000.png"


def test_image_files_that_do_not_fit_are_named(tmp_path):
    from PIL import Image

    run = tmp_path / "run"
    assert invoke("run", "--epochs", 1, "--train-limit", 200, "--test-limit", 30,
                  "--latent-dim", 4, "--out", run).exit_code == 0
    grey = tmp_path / "grey.png"
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8) * 4).save(grey)
    r = invoke("compress", run, grey, "-o", tmp_path / "f.acnz")
    assert r.exit_code == 2 and "grey.png has grey levels other than 0 and 255" in r.stderr \
        and "--threshold" in r.stderr
    assert invoke("compress", run, grey, "--threshold", 128, "-o",
                  tmp_path / "f.acnz").exit_code == 0
    big = tmp_path / "big.png"  # another size: coded as tiles of the model's
    Image.fromarray(np.zeros((9, 8), dtype=bool)).save(big)
    r = invoke("compress", run, big, "-o", tmp_path / "g.acnz")
    assert r.exit_code == 0 and "1 images as 2 tiles of 8x8" in r.stdout
    huge = tmp_path / "huge.png"  # past what a tiled file records of a side
    Image.fromarray(np.zeros((1, 65537), dtype=bool)).save(huge)
    r = invoke("compress", run, huge, "-o", tmp_path / "h.acnz")
    assert r.exit_code == 2 and "huge.png is 65537x1 pixels, more than 65536 a side" in r.stderr
    assert not (tmp_path / "h.acnz").exists()
