"""Pixels of many levels (8-bit grey and colour): the likelihoods against torch.distributions,
the loaders on small files written here in their formats, and the refusals."""

import json
import math

import numpy as np
import pytest
import torch
from acnkit_plugins.categorical import CategoricalLoss
from acnkit_plugins.logistic import DiscretisedLogisticMixture
from click.testing import CliRunner
from PIL import Image
from torch import distributions as D

from acnkit import RunConfig, Trainer
from acnkit.cli import main
from acnkit.errors import DataError, UsageError
from acnkit.interfaces import scaled
from acnkit.registry import Entry, get_registry
from acnkit.trained import load_run

REG = get_registry()


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def logistic(loc, scale):
    return D.TransformedDistribution(D.Uniform(torch.zeros_like(loc), torch.ones_like(loc)),
                                     [D.SigmoidTransform().inv, D.AffineTransform(loc, scale)])


@pytest.mark.parametrize("levels", [256, 17])
def test_one_component_logistic_is_torchs_logistic_discretised(levels):
    """Every level's mass is torch's logistic CDF at its upper bin edge less at its lower
    one (the lowest and highest levels take the tails), and nll is minus the log of the
    observed level's mass, summed."""
    loss = DiscretisedLogisticMixture(levels, 1, components=1)
    g = torch.Generator().manual_seed(0)
    params = torch.randn(4, 3, 2, 3, generator=g, dtype=torch.float64)
    params[:, 2] -= 2.0  # narrow scales: masses far in the tails too
    x = torch.randint(0, levels, (4, 1, 2, 3), generator=g)
    loc, scale = params[:, 1:2], params[:, 2:3].clamp(min=-7.0).exp()
    dist = logistic(loc[..., None], scale[..., None])
    edges = torch.linspace(-1, 1, levels, dtype=torch.float64)[:-1] + 1 / (levels - 1)
    cdf = torch.cat([torch.zeros(4, 1, 2, 3, 1, dtype=torch.float64), dist.cdf(edges),
                     torch.ones(4, 1, 2, 3, 1, dtype=torch.float64)], -1)
    probs = loss.probabilities(params, scaled(x, levels))
    assert torch.allclose(probs, torch.diff(cdf, dim=-1), atol=1e-12)
    observed = probs.gather(-1, x[..., None])[..., 0]
    assert torch.allclose(loss.nll(params, scaled(x, levels)),
                          -observed.log().flatten(1).sum(1), rtol=1e-9)


def test_logistic_mass_far_in_a_tail_is_exact_not_the_density():
    """Where sigmoid differences cancel in floats, nll is still the bin's mass: the log of a
    mass of about 1e-30 a subpixel, not log(0) nor the density at the bin's centre."""
    loss = DiscretisedLogisticMixture(256, 1, components=1)
    params = torch.tensor([[0.0, -0.9, -5.0]]).reshape(1, 3, 1, 1).double()
    x = scaled(torch.tensor([[[[200]]]]), 256)
    loc, scale = torch.tensor(-0.9).double(), torch.tensor(-5.0).double().exp()
    c, h = 2 * 200 / 255 - 1, 1 / 255
    # 1 - sigmoid(a) = sigmoid(-a): the right tail without cancellation
    exact = torch.sigmoid(-(c - h - loc) / scale) - torch.sigmoid(-(c + h - loc) / scale)
    assert math.isclose(loss.nll(params, x).item(), -math.log(exact.item()), rel_tol=1e-9)


def test_colour_coupling_shifts_green_by_red_and_blue_by_both():
    loss = DiscretisedLogisticMixture(256, 3, components=1)
    params = torch.zeros(1, 10, 1, 1, dtype=torch.float64)
    params[0, 1:4, 0, 0] = torch.tensor([0.1, -0.2, 0.3])  # means R, G, B
    params[0, 4:7, 0, 0] = -3.0  # log scales
    params[0, 7:10, 0, 0] = torch.tensor([0.5, -0.4, 0.8])  # atanh-free: tanh applied
    x = scaled(torch.tensor([200, 40, 90]).reshape(1, 3, 1, 1), 256)
    r, g_ = 2 * 200 / 255 - 1, 2 * 40 / 255 - 1
    a, b, c = (math.tanh(v) for v in (0.5, -0.4, 0.8))
    means = torch.tensor([0.1, -0.2 + a * r, 0.3 + b * r + c * g_]).double()
    scale = math.exp(-3.0)
    centre = 2 * torch.tensor([200, 40, 90]).double() / 255 - 1
    dist = logistic(means, torch.full((3,), scale).double())
    mass = dist.cdf(centre + 1 / 255) - dist.cdf(centre - 1 / 255)
    assert math.isclose(loss.nll(params, x).item(), -mass.log().sum().item(), rel_tol=1e-6)


def test_categorical_is_torchs_categorical():
    loss = CategoricalLoss(17, 3)
    g = torch.Generator().manual_seed(1)
    params = torch.randn(2, 3 * 17, 2, 2, generator=g)
    x = torch.randint(0, 17, (2, 3, 2, 2), generator=g)
    logits = params.reshape(2, 3, 17, 2, 2).movedim(2, -1)
    expected = -D.Categorical(logits=logits).log_prob(x).flatten(1).sum(1)
    assert torch.allclose(loss.nll(params, scaled(x, 17)), expected, atol=1e-5)


# -- refusals ----------------------------------------------------------------------------------

def test_grey_data_given_to_a_binary_likelihood_is_refused_before_training(tmp_path):
    r = invoke("run", "--pixels", "native", "--loss", "bernoulli", "--out", tmp_path / "r")
    assert r.exit_code == 2 and r.stderr.count("\n") == 1, r.output
    assert "the data hold 17 levels; the loss bernoulli takes 0/1" in r.stderr
    assert not (tmp_path / "r" / "checkpoint.pt").exists()


def test_a_loss_of_other_levels_is_refused(monkeypatch):
    class EightBit(CategoricalLoss):
        def __init__(self):
            super().__init__(256, 1)

    monkeypatch.setitem(get_registry().entries["loss"], "eight-bit",
                        Entry("loss", "eight-bit", EightBit, "", "test", "tests"))
    with pytest.raises(UsageError, match="the data hold 17 levels; the loss eight-bit "
                                         "takes 256 levels"):
        Trainer(RunConfig(pixels="native", loss="eight-bit"))


def test_networks_see_scaled_pixels_never_raw_levels():
    t = Trainer(RunConfig(pixels="native", epochs=1, train_limit=100, test_limit=20))
    seen = []
    t.model.encoder.register_forward_pre_hook(lambda m, a: seen.append(a[0].max().item()))
    t.fit(1)
    assert seen and max(seen) <= 1.0 and math.isfinite(t.history[-1]["test_nats"])
    assert t.history[-1]["levels"] == 17 and "test_bits_per_dim_ordered" in t.history[-1]


def test_colour_trains_through_conv_and_pixelcnn():
    for decoder, options in (("conv", {}), ("pixelcnn", {"channels": 8, "layers": 2})):
        t = Trainer(RunConfig(data="sample-patches", pixels="native", encoder="conv",
                              decoder=decoder, decoder_options=options, latent_dim=4,
                              train_limit=64, test_limit=16, batch_size=32, epochs=1))
        t.fit(1)
        m = t.history[-1]
        assert math.isfinite(m["test_nats"]) and m["test_bits_per_dim_set"] < 9, m


# -- loaders -----------------------------------------------------------------------------------

def _cifar(folder, n=3, labels=None, cut=0):
    rng = np.random.default_rng(0)
    folder.mkdir(exist_ok=True)
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        rec = rng.integers(0, 256, (n, 3073), dtype=np.uint8)
        rec[:, 0] = labels if labels is not None else rng.integers(0, 10, n)
        raw = rec.tobytes()
        (folder / name).write_bytes(raw[: len(raw) - cut])
    return rec


def test_cifar10_binary_batches(tmp_path):
    rec = _cifar(tmp_path / "c")
    data = REG.create("dataset", "cifar10", data_dir=str(tmp_path / "c"), pixels="native")
    assert data.train_x.shape == (15, 3, 32, 32) and data.levels == 256
    assert np.array_equal(data.test_x[0, 1].numpy().reshape(-1), rec[0, 1 + 1024: 1 + 2048])
    _cifar(tmp_path / "t", cut=5)
    with pytest.raises(DataError, match="truncated or not a CIFAR-10 binary batch"):
        REG.create("dataset", "cifar10", data_dir=str(tmp_path / "t"), pixels="native")
    _cifar(tmp_path / "l", labels=42)
    with pytest.raises(DataError, match="label 42"):
        REG.create("dataset", "cifar10", data_dir=str(tmp_path / "l"), pixels="native")
    with pytest.raises(UsageError, match="colour images, which --pixels binary cannot"):
        REG.create("dataset", "cifar10", data_dir=str(tmp_path / "c"), pixels="binary")


@pytest.mark.timeout(30)
def test_cifar10_refuses_a_fifo_or_a_folder_in_place_of_a_batch(tmp_path):
    import os

    _cifar(tmp_path / "c")
    (tmp_path / "c" / "test_batch.bin").unlink()
    os.mkfifo(tmp_path / "c" / "test_batch.bin")  # a plain read waits for a writer
    with pytest.raises(DataError, match="test_batch.bin is a FIFO, not a regular file"):
        REG.create("dataset", "cifar10", data_dir=str(tmp_path / "c"), pixels="native")
    (tmp_path / "c" / "test_batch.bin").unlink()
    (tmp_path / "c" / "test_batch.bin").mkdir()
    with pytest.raises(DataError, match="test_batch.bin is a folder, not a regular file"):
        REG.create("dataset", "cifar10", data_dir=str(tmp_path / "c"), pixels="native")


def _pngs(folder, n, size=(6, 5), mode="L", start=0):
    rng = np.random.default_rng(start)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        shape = (size[0], size[1], 3) if mode == "RGB" else size
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(
            folder / f"{start + i:03d}.png")


def test_a_folder_is_walked_and_read_only_up_to_its_limits(tmp_path, monkeypatch):
    from acnkit.data import images

    _pngs(tmp_path / "grey", 20)  # 20 images of 6 x 5 levels: 600 bytes in all
    (tmp_path / "grey" / "notes").mkdir()
    for i in range(5):
        (tmp_path / "grey" / "notes" / f"{i}.txt").write_text("not an image")
    monkeypatch.setattr(images, "MAX_ENTRIES", 25)  # 20 images, a folder, 5 notes: 26
    with pytest.raises(DataError, match="more than 25 files and folders; give a folder that "
                                        "holds the images alone"):
        REG.create("dataset", "images", data_dir=str(tmp_path / "grey"), pixels="native")
    monkeypatch.setattr(images, "MAX_ENTRIES", 26)
    monkeypatch.setattr(images, "MAX_LEVEL_BYTES", 599)
    with pytest.raises(DataError, match="hold more than 599 bytes of pixels"):
        REG.create("dataset", "images", data_dir=str(tmp_path / "grey"), pixels="native")
    monkeypatch.setattr(images, "MAX_LEVEL_BYTES", 600)
    data = REG.create("dataset", "images", data_dir=str(tmp_path / "grey"), pixels="native")
    assert len(data.train_x) + len(data.test_x) == 20


def test_a_folder_of_images_grey_colour_crops_and_refusals(tmp_path):
    _pngs(tmp_path / "grey", 20)
    data = REG.create("dataset", "images", data_dir=str(tmp_path / "grey"), pixels="native")
    assert data.train_x.shape == (18, 1, 6, 5) and data.test_x.shape == (2, 1, 6, 5)
    first = np.asarray(Image.open(tmp_path / "grey" / "000.png"))
    assert np.array_equal(data.train_x[0, 0].numpy(), first)
    _pngs(tmp_path / "rgb" / "train" / "cat", 4, mode="RGB")
    _pngs(tmp_path / "rgb" / "train" / "dog", 4, mode="RGB", start=10)
    _pngs(tmp_path / "rgb" / "test" / "dog", 2, mode="RGB", start=20)
    data = REG.create("dataset", "images", data_dir=str(tmp_path / "rgb"), pixels="native")
    assert data.train_x.shape == (8, 3, 6, 5) and data.test_y.tolist() == [1, 1]
    _pngs(tmp_path / "grey", 1, size=(9, 9), start=99)
    with pytest.raises(DataError, match="pass --crop HxW"):
        REG.create("dataset", "images", data_dir=str(tmp_path / "grey"), pixels="native")
    data = REG.create("dataset", "images", data_dir=str(tmp_path / "grey"), pixels="native",
                      crop="4x4")
    assert data.train_x.shape[1:] == (1, 4, 4)
    wide = np.full((6, 5), 65535, dtype=np.uint16)
    Image.fromarray(wide).save(tmp_path / "grey" / "998.png")
    data = REG.create("dataset", "images", data_dir=str(tmp_path / "grey"), pixels="native",
                      crop="4x4")
    assert int(data.train_x.max()) == 255  # 16 bits scaled to 8, not refused


def test_a_run_saved_before_levels_loads_and_keeps_its_fingerprint(tmp_path):
    out = tmp_path / "old"
    assert invoke("run", "--epochs", 1, "--latent-dim", 4, "--test-limit", 30, "--out", out,
                  "--quiet").exit_code == 0
    before = load_run(out).model.fingerprint()
    config = json.loads((out / "config.json").read_text())
    for key in ("pixels", "crop"):
        config["config"].pop(key, None) if "config" in config else config.pop(key, None)
    (out / "config.json").write_text(json.dumps(config))
    run = load_run(out)
    assert run.model.fingerprint() == before and run.model.levels == 2
    r = invoke("eval", out, "--json")
    assert r.exit_code == 0 and "test_bits_per_dim_set" in json.loads(r.stdout), r.output
