"""The codec for images of many levels (8-bit grey and colour, digits' 17): bit-exact round
trips for every decoder kind, prior, mode and lanes; a loss defined here codes with no
codec change; inputs, outputs and refusals."""

import functools
import math
import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from acnkit import RunConfig, Trainer
from acnkit.cli import main
from acnkit.codec import as_images, compress, decompress, read_header
from acnkit.codec.compress import model_nats
from acnkit.errors import CodecError, UsageError
from acnkit.interfaces import Loss, to_levels
from acnkit.registry import Entry, get_registry


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _colour_folder(folder, n=24, size=(5, 4)):
    """Small RGB PNGs with structure (a gradient plus noise), so a model has something to
    learn."""
    rng = np.random.default_rng(3)
    folder.mkdir(parents=True, exist_ok=True)
    ramp = np.linspace(0, 200, size[1])[None, :, None]
    for i in range(n):
        pixels = (ramp + rng.integers(0, 40, (*size, 3))).clip(0, 255).astype(np.uint8)
        Image.fromarray(pixels, "RGB").save(folder / f"{i:03d}.png")
    return folder


@functools.cache
def model(prior="vae", decoder="mlp", loss="logistic", data="digits", data_dir=None,
          passes=5):
    options = {"channels": 8, "layers": 2, "kernel": 3} if decoder == "pixelcnn" else {}
    sizes = {} if decoder == "pixelcnn" else {"decoder_hidden": "32"}
    t = Trainer(RunConfig(prior=prior, decoder=decoder, decoder_options=options, loss=loss,
                          data=data, data_dir=data_dir, pixels="native", latent_dim=4,
                          encoder_hidden="32", prior_hidden=16, batch_size=32,
                          train_limit=300, test_limit=40, epochs=1, **sizes))
    for _ in range(passes):
        t.train_pass()
    return t


def round_trip(t, images, mode, lanes=None):
    data = compress(t.model, images, mode, lanes=lanes, plain_if_smaller=False)
    out = decompress(t.model, data.data)
    if mode == "ordered":
        assert out.dtype == images.dtype and np.array_equal(out, images)
    else:
        assert sorted(r.tobytes() for r in out) == sorted(r.tobytes() for r in images)
    return data


@pytest.mark.parametrize("prior", ["vae", "acn"])
@pytest.mark.parametrize("loss", ["logistic", "categorical"])
@pytest.mark.parametrize("mode", ["ordered", "set"])
def test_seventeen_levels_round_trip_exactly_with_an_mlp(prior, loss, mode):
    t = model(prior, "mlp", loss)
    images = t.data.test_x.numpy()
    assert int(images.max()) > 1  # grey levels, not 0/1
    round_trip(t, images, mode, lanes=3)


@pytest.mark.parametrize("prior", ["vae", "acn"])
@pytest.mark.parametrize("stepping", [True, False])
def test_grey_levels_round_trip_through_a_pixelcnn(prior, stepping, monkeypatch):
    """Position by position, with the decoder's own stepping and with a whole forward
    pass a pixel (its stepping switched off)."""
    t = model(prior, "pixelcnn", passes=1)
    if not stepping:
        monkeypatch.setattr(t.model.decoder, "stepping", False)
    for mode in ("ordered", "set"):
        round_trip(t, t.data.test_x.numpy()[:6], mode, lanes=2)


@pytest.mark.parametrize("decoder, prior", [
    ("mlp", "vae"), ("mlp", "acn"), ("conv", "vae"), ("conv", "acn"), ("pixelcnn", "vae"),
    ("pixelcnn", "acn"), ("pixelcnn-unstepped", "acn")])
def test_colour_round_trips_exactly(decoder, prior, tmp_path_factory, monkeypatch):
    """RGB images, a pixel's channels coded R, G, B with the mixture's coupling."""
    folder = _colour_folder(tmp_path_factory.mktemp("rgb") / "rgb")
    t = model(prior, decoder.split("-")[0], data="images", data_dir=str(folder), passes=2)
    if decoder.endswith("unstepped"):
        monkeypatch.setattr(t.model.decoder, "stepping", False)
    images = t.data.train_x.numpy()[:5]
    assert images.shape[1:] == (3, 5, 4)
    for mode in ("ordered", "set"):
        round_trip(t, images, mode, lanes=2)


def test_the_file_is_the_models_figure_within_its_fixed_cost():
    """Beyond the header and the initial words, the payload is the model's figure: each
    subpixel's level costs -log2 of its quantised probability."""
    t = model("vae", "mlp", "logistic", passes=20)
    images = np.concatenate([t.data.test_x.numpy(), t.data.train_x.numpy()[:260]])
    coded = compress(t.model, images, "ordered", lanes=1, plain_if_smaller=False)
    figure = model_nats(t.model, images, np.arange(len(images)), "ordered") / math.log(2)
    header_bits = 8 * (len(coded.data) - 4 * sum(coded.header["lane_words"]))
    payload = 8 * len(coded.data) - header_bits - 32 * coded.header["seed_words"]
    assert abs(payload / len(images) - figure) / figure < 0.01, (payload / len(images), figure)


class BetaBinomial(Loss):
    """A loss a plugin author might write (BB-ANS coded 8-bit MNIST with one): two
    parameters a subpixel, probabilities in closed form; it defines nothing for the
    codec."""

    def __init__(self, levels=17, channels=1):
        self.levels = levels

    def param_channels(self, channels):
        return 2 * channels

    def _dist(self, params):
        a, b = torch.nn.functional.softplus(params.double()).chunk(2, 1)
        n = self.levels - 1
        k = torch.arange(self.levels, dtype=torch.float64)
        shape = (*a.shape, 1)
        a, b = a[..., None].expand(*shape[:-1], self.levels), b[..., None].expand(
            *shape[:-1], self.levels)
        log = (torch.lgamma(torch.tensor(n + 1.0)) - torch.lgamma(k + 1) - torch.lgamma(n - k + 1)
               + torch.lgamma(k + a) + torch.lgamma(n - k + b) - torch.lgamma(n + a + b)
               + torch.lgamma(a + b) - torch.lgamma(a) - torch.lgamma(b))
        return torch.log_softmax(log, -1)  # exact up to rounding; renormalised

    def probabilities(self, params, x):
        return self._dist(params).exp()

    def nll(self, params, x):
        log = self._dist(params)
        level = to_levels(x, self.levels)
        return -log.gather(-1, level[..., None].to(log.device))[..., 0].flatten(1).sum(1).float()

    def mean(self, params):
        return (self._dist(params).exp() * torch.linspace(0, 1, self.levels)).sum(-1).float()


def test_a_loss_defined_here_codes_with_no_codec_change(monkeypatch):
    monkeypatch.setitem(get_registry().entries["loss"], "beta-binomial",
                        Entry("loss", "beta-binomial", BetaBinomial, "", "test", "tests"))
    t = Trainer(RunConfig(loss="beta-binomial", pixels="native", latent_dim=4,
                          train_limit=200, test_limit=20, epochs=1))
    t.train_pass()
    for mode in ("ordered", "set"):
        round_trip(t, t.data.test_x.numpy(), mode, lanes=2)


# -- inputs and outputs ------------------------------------------------------------------------

def test_arrays_in_every_layout_and_values_out_of_range(tmp_path):
    shape = (3, 5, 4)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (6, *shape)).astype(np.uint8)
    last = x.transpose(0, 2, 3, 1)
    assert np.array_equal(as_images(last, shape, 256, "x"), x)
    assert np.array_equal(as_images(x.reshape(6, -1), shape, 256, "x"), x)
    assert np.array_equal(as_images(x.astype(np.int64), shape, 256, "x"), x)
    bad = x.astype(np.int32)
    bad[2, 1, 3, 0] = 300
    with pytest.raises(UsageError, match=r"holds the value 300 at index \(2, 1, 3, 0\), "
                                         r"outside 0..255"):
        as_images(bad, shape, 256, "x")
    with pytest.raises(UsageError, match="the value 17 .* outside 0..16"):
        as_images(np.full((2, 1, 8, 8), 17), (1, 8, 8), 17, "x")
    with pytest.raises(UsageError, match="float64 values; give images of levels 0..255 as "
                                         "integers"):
        as_images(x.astype(float), shape, 256, "x")
    with pytest.raises(UsageError, match="has shape"):
        as_images(x.transpose(0, 2, 1, 3), shape, 256, "x")


def test_channels_last_arrays_come_back_channels_last(tmp_path):
    folder = _colour_folder(tmp_path / "rgb")
    t = model("vae", "mlp", data="images", data_dir=str(folder), passes=2)
    x = t.data.train_x.numpy()[:4]
    last = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).astype(np.int16)
    coded = compress(t.model, as_images(last, t.model.image_shape, 256, "x"), "ordered",
                     input_dtype="int16", input_shape=last.shape)
    out = decompress(t.model, coded.data)
    assert out.shape == last.shape and out.dtype == np.int16 and np.array_equal(out, last)


def test_cli_codes_grey_and_colour_png_folders_and_writes_them_back(tmp_path):
    folder = _colour_folder(tmp_path / "rgb")
    run = tmp_path / "run"
    r = invoke("run", "--data", "images", "--data-dir", folder, "--pixels", "native",
               "--latent-dim", 4, "--epochs", 1, "--out", run, "--quiet")
    assert r.exit_code == 0, r.output
    r = invoke("compress", run, folder, "-o", tmp_path / "f.acn")
    assert r.exit_code == 0, r.output
    r = invoke("decompress", tmp_path / "f.acn", "--run", run, "-o", f"{tmp_path / 'out'}/")
    assert r.exit_code == 0, r.output
    for path in sorted(folder.glob("*.png")):
        with Image.open(path) as a, Image.open(tmp_path / "out" / path.name) as b:
            assert b.mode == "RGB" and np.array_equal(np.asarray(a), np.asarray(b))
    # grey images beside colour ones for a colour run: coded by one channel, back as grey
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    grey = np.random.default_rng(1).integers(0, 256, (5, 4)).astype(np.uint8)
    Image.fromarray(grey, "L").save(mixed / "grey.png")
    Image.fromarray(grey > 127).save(mixed / "bits.png")
    shutil.copy(folder / "000.png", mixed / "colour.png")
    r = invoke("compress", run, mixed, "-o", tmp_path / "m.acn")
    assert r.exit_code == 0 and "3 images as 3 tiles" in r.stdout, r.output
    r = invoke("decompress", tmp_path / "m.acn", "--run", run, "-o", f"{tmp_path / 'm'}/")
    assert r.exit_code == 0, r.output
    for name in ("grey.png", "bits.png", "colour.png"):
        with Image.open(mixed / name) as a, Image.open(tmp_path / "m" / name) as b:
            assert a.mode == b.mode and np.array_equal(np.asarray(a), np.asarray(b)), name
    # one of another size: coded as tiles, and back exactly
    big = np.random.default_rng(0).integers(0, 256, (6, 4, 3)).astype(np.uint8)
    Image.fromarray(big, "RGB").save(tmp_path / "big.png")
    r = invoke("compress", run, tmp_path / "big.png", "-o", tmp_path / "g.acn")
    assert r.exit_code == 0 and "as 2 tiles" in r.stdout, r.output
    r = invoke("decompress", tmp_path / "g.acn", "--run", run, "-o", f"{tmp_path / 'big'}/")
    assert r.exit_code == 0, r.output
    with Image.open(tmp_path / "big" / "big.png") as b:
        assert b.mode == "RGB" and np.array_equal(np.asarray(b), big)


def test_cli_codes_a_digits_run_at_its_seventeen_levels(tmp_path):
    run = tmp_path / "n"
    assert invoke("run", "--pixels", "native", "--epochs", 1, "--latent-dim", 4,
                  "--test-limit", 30, "--out", run, "--quiet").exit_code == 0
    r = invoke("compress", run, "--data", "digits", "-o", tmp_path / "f", "--json")
    assert r.exit_code == 0, r.output
    r = invoke("decompress", tmp_path / "f", "--run", run, "-o", tmp_path / "x.npy")
    assert r.exit_code == 0, r.output
    x = np.load(tmp_path / "x.npy")
    assert x.shape[1:] == (1, 8, 8) and int(x.max()) == 16
    # 8-bit image files hold levels this run does not model: refused, naming the file
    Image.fromarray(np.full((8, 8), 200, np.uint8), "L").save(tmp_path / "a.png")
    r = invoke("compress", run, tmp_path / "a.png", "-o", tmp_path / "g")
    assert r.exit_code == 2 and "a.png" in r.stderr and "17 levels" in r.stderr, r.output


# -- files of one kind given to a model of another ---------------------------------------------

def test_a_binary_file_and_an_eight_bit_run_refuse_each_other():
    grey, binary = model("vae", "mlp"), Trainer(RunConfig(latent_dim=4, train_limit=100,
                                                          test_limit=10, epochs=1))
    a = compress(grey.model, grey.data.test_x.numpy()[:5], "ordered").data
    b = compress(binary.model, binary.data.test_x.numpy()[:5], "ordered").data
    with pytest.raises(CodecError, match="made with another model"):
        decompress(binary.model, a)
    with pytest.raises(CodecError, match="made with another model"):
        decompress(grey.model, b)
    assert read_header(a)[0]["levels"] == 17 and read_header(b)[0]["levels"] == 2


def test_stored_files_keep_every_level():
    """Noise costs the model more than its plain packing (five bits a subpixel at 17
    levels): compress stores it, and it comes back exactly."""
    t = model("vae", "mlp")
    images = np.random.default_rng(0).integers(0, 17, (3, 1, 8, 8)).astype(np.uint8)
    coded = compress(t.model, images, "ordered")
    assert coded.header.get("stored") and len(coded.data) < 3 * 64 * 5 // 8 + 200
    assert np.array_equal(decompress(t.model, coded.data), images)


def test_lanes_split_into_blocks_of_rows_round_trip(monkeypatch):
    """The loss is called on blocks of lanes (to bound its memory): one lane a block
    codes exactly too, both sides splitting alike."""
    monkeypatch.setattr("acnkit.codec.image.BLOCK_SUBPIXELS", 1)
    t = model("acn", "mlp", "logistic")
    for mode in ("ordered", "set"):
        round_trip(t, t.data.test_x.numpy()[:12], mode, lanes=4)
