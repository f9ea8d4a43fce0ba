"""The codec: exact round trips, refused files, and sizes that match the model's nats."""

import functools
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from acnkit import RunConfig, Trainer
from acnkit.cli import main
from acnkit.codec import as_images, check_codable, compress, decompress, read_header
from acnkit.codec.coder import new_stack
from acnkit.codec.levels import Decisions, Search, popped
from acnkit.distributions import DiagGaussian
from acnkit.errors import CodecError


def trained(**kw) -> Trainer:
    return _trained(tuple(sorted(kw.items())))


@functools.cache
def _trained(kw: tuple) -> Trainer:
    base = dict(epochs=1, latent_dim=6, encoder_hidden="64", decoder_hidden="64",
                prior_hidden=32, batch_size=64, test_limit=120, train_limit=600)
    base.update(kw)
    t = Trainer(RunConfig(**base))
    # Bits-back needs a model whose posteriors fit its prior; an untrained one pays extra
    # (the bits it pops are not random), though it still decodes exactly.
    for _ in range(20):
        t.train_pass()
    return t


def rows(images: np.ndarray) -> list[bytes]:
    return sorted(r.tobytes() for r in images.reshape(len(images), -1))


CONFIGS = [dict(prior="vae"), dict(prior="vae", posterior="unit"), dict(prior="acn"),
           dict(prior="acn", posterior="unit", mixtures=3)]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "-".join(map(str, c.values())))
@pytest.mark.parametrize("mode", ["ordered", "set"])
def test_round_trip_is_exact(config, mode):
    t = trained(**config)
    images = t.data.test_x.numpy()
    out = decompress(t.model, compress(t.model, images, mode).data)
    if mode == "ordered":
        assert out.dtype == images.dtype and np.array_equal(out, images)
    else:
        assert rows(out) == rows(images)


@pytest.mark.parametrize("prior", ["vae", "acn"])
@pytest.mark.parametrize("mode", ["ordered", "set"])
@pytest.mark.parametrize("lanes", [1, 3, 7, 500])
def test_lanes_round_trip_exactly(prior, mode, lanes):
    """L chains in lockstep; more lanes than images means one image a lane."""
    t = trained(prior=prior)
    images = t.data.test_x.numpy()[:40].copy()
    images[9] = images[2]  # equal images in set mode, across lanes
    coded = compress(t.model, images, mode, lanes=lanes, plain_if_smaller=False)
    header, _ = read_header(coded.data)
    assert len(header["lane_words"]) == min(lanes, 40)
    stats: dict = {}
    out = decompress(t.model, coded.data, stats=stats)
    assert stats["lanes"] == min(lanes, 40)
    if mode == "ordered":
        assert np.array_equal(out, images)
    else:
        assert rows(out) == rows(images)


def test_lanes_are_chosen_to_cost_little_and_their_cost_is_what_was_planned():
    t = trained(prior="vae")
    images = t.data.test_x.numpy()
    auto = compress(t.model, images, "ordered", plain_if_smaller=False)
    one = compress(t.model, images, "ordered", lanes=1, plain_if_smaller=False)
    header = auto.header
    lanes = len(header["lane_words"])
    # 120 images of ~30 bits: 0.5 % of the file is less than one lane's initial words
    assert lanes == 1 and len(auto.data) == len(one.data)
    many = compress(t.model, images, "ordered", lanes=12, plain_if_smaller=False)
    extra_bits = 8 * (len(many.data) - len(one.data))
    from acnkit.codec.lanes import lane_bits

    assert 0 < extra_bits <= 11 * lane_bits(header["seed_words"])  # what choose_lanes counts


def test_lanes_are_held_back_for_large_images_so_that_a_step_stays_small():
    """What a step holds grows with its lanes times an image's subpixels: a large photo's
    colour tiles get fewer lanes than a file of that size would afford; small images and
    small files are not held back."""
    from acnkit.codec.lanes import LANE_SUBPIXELS, MAX_LANES, choose_lanes

    big_file = 1e9  # bits: affords every lane
    assert choose_lanes(20_000, big_file, 12) == MAX_LANES
    assert choose_lanes(20_000, big_file, 12, subpixels=784) == LANE_SUBPIXELS // 784 >= 600
    tiles = choose_lanes(11_750, big_file, 12, subpixels=3 * 32 * 32)
    assert tiles == LANE_SUBPIXELS // 3072 and tiles * 3072 <= LANE_SUBPIXELS
    assert choose_lanes(10, big_file, 12, subpixels=3 * 32 * 32) == 10
    assert choose_lanes(5, big_file, 12, subpixels=10 ** 9) == 1


def test_a_batch_dependent_decoder_still_decodes_exactly_with_lanes(monkeypatch):
    """Both sides call the networks on the same step's lanes: even a decoder whose rows
    depend on the rest of the batch (which the kits refuse) round-trips exactly."""
    t = trained(prior="vae")
    loss = t.model.loss
    original = type(loss).probabilities

    def batch_mixing(params, x):
        p = original(loss, params, x)[..., 1].clamp(0, 1)
        p = (p + 1e-3 * len(params)).clamp(0, 1)  # depends on the batch's size
        return torch.stack([1 - p, p], -1)

    monkeypatch.setattr(loss, "probabilities", batch_mixing)
    images = t.data.test_x.numpy()[:30]
    assert np.array_equal(decompress(t.model, compress(t.model, images, "ordered",
                                                       lanes=4).data), images)


def _table_cdf(probs: np.ndarray):
    """The CDF of rows of a probability table (..., L) at edges (..., m): what a loss's
    default Loss.cdf gives."""
    cumulative = np.concatenate([np.zeros((*probs.shape[:-1], 1)), np.cumsum(probs, -1)], -1)
    cumulative[..., -1] = 1.0
    return lambda edges: np.take_along_axis(cumulative, edges, -1)


@pytest.mark.parametrize("radix", [2, 3, 16])
@pytest.mark.parametrize("levels", [2, 3, 17, 256])
def test_level_search_pops_what_it_pushed_a_lane_at_a_time_or_a_position_at_a_time(
        levels, radix):
    """The search over levels (acnkit.codec.levels), in halves or in more parts: each
    lane's decisions pushed in one call pop back whether the receiver searches a lane's
    whole row at once or a position of every lane at a time (the autoregressive loop),
    leaving each stack as it began; a level of probability 0 still codes (the leaky
    models keep every part possible)."""
    rng = np.random.default_rng(0)
    search = Search(levels, radix)
    lanes, pixels = 5, 60
    probs = rng.dirichlet(np.ones(levels), size=(lanes, pixels))
    values = np.stack([[rng.choice(levels, p=p) for p in lane] for lane in probs])
    probs[0, 0] = 0.0
    probs[0, 0, (values[0, 0] + 1) % levels] = 1.0  # the coded level has probability 0
    seed = rng.integers(1, 2**32, size=8, dtype=np.uint64).astype(np.uint32)
    for by_position in (False, True):
        stacks = [new_stack(seed) for _ in range(lanes)]
        decisions = Decisions(search)
        if by_position:  # the sender records position by position, pushes once a lane
            for i in range(pixels):
                search.run((lanes, 1), _table_cdf(probs[:, i: i + 1]),
                           decisions.known(values[:, i: i + 1]))
        else:
            search.run(values.shape, _table_cdf(probs), decisions.known(values))
        decisions.push(stacks)
        if by_position:
            got = np.concatenate([search.run((lanes, 1), _table_cdf(probs[:, i: i + 1]),
                                             popped(search, stacks))
                                  for i in range(pixels)], 1)
        else:
            got = search.run(values.shape, _table_cdf(probs), popped(search, stacks))
        assert np.array_equal(got, values)
        assert all(np.array_equal(ans.get_compressed(), seed) for ans in stacks)


@pytest.mark.parametrize("radix", [2, 16])
@pytest.mark.parametrize("levels", [3, 17, 256])
def test_level_search_costs_the_levels_information(levels, radix):
    """The decisions' probabilities multiply to the level's: coding 20,000 levels drawn
    from their own distributions costs their summed -log2 p within 0.1 % (+ 64 bits)."""
    rng = np.random.default_rng(1)
    search = Search(levels, radix)
    probs = rng.dirichlet(np.full(levels, 0.3), size=(1, 20_000))
    values = np.array([[rng.choice(levels, p=p) for p in probs[0]]])
    information = -np.log2(np.take_along_axis(probs, values[..., None], -1)).sum()
    ans = new_stack(np.array([1, 2], dtype=np.uint32))
    decisions = Decisions(search)
    search.run(values.shape, _table_cdf(probs), decisions.known(values))
    before = ans.num_bits()
    decisions.push([ans])
    assert abs(ans.num_bits() - before - information) < 0.001 * information + 64


def test_a_cdf_that_is_not_finite_is_refused_with_one_line(monkeypatch):
    """A loss whose probabilities (hence its default CDF) hold NaN: compress says so and
    names the kit that would have caught it, instead of coding garbage."""
    t = trained(prior="vae")
    loss = t.model.loss
    original = type(loss).probabilities

    def broken(params, x):
        p = original(loss, params, x).clone()
        p[0, 0, 0, 0] = float("nan")
        return p

    monkeypatch.setattr(loss, "probabilities", broken)
    with pytest.raises(CodecError, match="CDF that is not finite.*check_loss"):
        compress(t.model, t.data.test_x.numpy()[:5], "ordered")


def test_a_search_takes_at_least_two_parts():
    with pytest.raises(ValueError, match="at least 2 parts"):
        Search(256, 1)


def test_round_trip_of_a_flat_bool_array_with_duplicates():
    t = trained(prior="vae")
    images = t.data.test_x.numpy().reshape(120, -1).astype(bool)
    images[7] = images[3]  # equal images: the set coder must still tell them apart
    images[50] = images[3]
    for mode in ("ordered", "set"):
        coded = compress(t.model, as_images(images, (1, 8, 8), 2, "x"), mode, "bool", images.shape)
        out = decompress(t.model, coded.data)
        assert out.dtype == bool and out.shape == images.shape
        if mode == "ordered":
            assert np.array_equal(out, images)
        else:
            assert rows(out) == rows(images)


@pytest.mark.parametrize("prior", ["vae", "acn"])
def test_set_mode_saves_about_log_n_factorial(prior):
    t = trained(prior=prior, test_limit=360)
    images = t.data.test_x.numpy()
    ordered, as_set = compress(t.model, images, "ordered"), compress(t.model, images, "set")
    saved_nats = 8 * (len(ordered.data) - len(as_set.data)) * math.log(2) / len(images)
    expected = math.lgamma(len(images) + 1) / len(images)
    slack = 2 * 32 * math.log(2) / len(images) + 0.05 * expected  # two 32-bit ANS words
    assert saved_nats > expected - slack
    if prior == "acn":  # the same chain; the ordered file adds the permutation, nothing else
        assert saved_nats < expected + slack
    # (A VAE's ordered file can lose more: the latents it pops read the bits of the last
    # pushed latent, which are not random when the posteriors do not fit the prior; the
    # order popped in set mode scrambles them. Trained models show it little.)
    assert as_set.model_nats_per_image == pytest.approx(
        ordered.model_nats_per_image - expected, rel=1e-9)


@pytest.mark.parametrize("prior", ["vae", "acn"])
def test_set_mode_never_writes_a_larger_file_than_ordered_mode(prior, monkeypatch):
    """Whatever the sizes, lanes and storage, a set-mode file is never larger than the
    ordered one; where set mode's coding came out larger (made so here: its bytes padded),
    the ordered file is written, said in one note, and gives back the same set."""
    import importlib

    compress_module = importlib.import_module("acnkit.codec.compress")
    t = trained(prior=prior)
    images = t.data.test_x.numpy()
    for n, lanes, plain in ((2, None, True), (5, 5, False), (40, 3, False), (40, None, True)):
        as_set = compress(t.model, images[:n], "set", lanes=lanes, plain_if_smaller=plain)
        ordered = compress(t.model, images[:n], "ordered", lanes=lanes, plain_if_smaller=plain)
        assert len(as_set.data) <= len(ordered.data), (n, lanes, plain)
        assert rows(decompress(t.model, as_set.data)) == rows(images[:n])
    pack = compress_module.pack

    def padded(header, payload):  # set mode's coding made 64 bytes larger
        return pack(header, payload + b"\0" * 64 * (header["mode"] == "set"))

    monkeypatch.setattr(compress_module, "pack", padded)
    notes: list[str] = []
    # 20 images: log2(20!) = 61 bits, below where ACN's set file is smaller by construction
    written = compress(t.model, images[:20], "set", plain_if_smaller=False, note=notes.append)
    assert written.header["mode"] == "ordered" and len(notes) == 1
    assert "set mode's file came out" in notes[0] and "wrote the ordered file" in notes[0]
    monkeypatch.setattr(compress_module, "pack", pack)
    assert len(written.data) == len(compress(t.model, images[:20], "ordered",
                                             plain_if_smaller=False).data)
    assert rows(decompress(t.model, written.data)) == rows(images[:20])


def test_acn_codes_set_mode_once_where_its_file_is_smaller_by_construction(monkeypatch):
    """ACN's ordered file is its set file's chain plus the arrangement: from 128 bits of
    arrangement (35 images) set mode codes once, and its file is the smaller; below, and
    for a VAE, it codes both and compares."""
    import importlib

    compress_module = importlib.import_module("acnkit.codec.compress")
    calls: list[str] = []
    inner = compress_module.compress

    def counted(model, images, mode="ordered", *args, **kwargs):
        calls.append(mode)
        return inner(model, images, mode, *args, **kwargs)

    monkeypatch.setattr(compress_module, "compress", counted)
    for prior, n, lanes, once in (("acn", 35, None, True), ("acn", 120, None, True),
                                  ("acn", 60, 7, True), ("acn", 34, None, False),
                                  ("vae", 60, None, False)):
        t = trained(prior=prior)
        images = t.data.test_x.numpy()[:n]
        calls.clear()
        as_set = counted(t.model, images, "set", lanes=lanes, plain_if_smaller=False)
        assert calls == (["set"] if once else ["set", "ordered"]), (prior, n)
        ordered = inner(t.model, images, "ordered", lanes=lanes, plain_if_smaller=False)
        assert len(as_set.data) < len(ordered.data) or not once, (prior, n, lanes)
        assert rows(decompress(t.model, as_set.data)) == rows(images)
    # copies of one image have no arrangement to pay for: coded both ways and compared
    t = trained(prior="acn")
    copies = np.repeat(t.data.test_x.numpy()[:2], 30, axis=0)
    calls.clear()
    counted(t.model, copies, "set", plain_if_smaller=False)
    assert calls == ["set", "ordered"]


def test_a_coder_stopped_by_a_signal_stops_the_figure_beside_it(monkeypatch):
    """The model's figure is computed in a thread beside the coder; when the coder stops
    (Ctrl-C, an error), that thread must stop too before compress gives up: a thread still
    inside torch when the interpreter exits aborts the process (exit 134, "terminate
    called without an active exception") instead of exiting 130 with one line."""
    import importlib
    import threading
    import time

    compress_module = importlib.import_module("acnkit.codec.compress")
    t = trained(prior="vae")
    cost = t.model.nets.cost
    forward = cost.forward

    def slow(*args, **kwargs):  # a batch of the figure takes a while, as a PixelCNN's does
        time.sleep(0.3)
        return forward(*args, **kwargs)

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cost, "forward", slow)
    monkeypatch.setattr(compress_module, "push_lanes", stopped)
    images = np.concatenate([t.data.test_x.numpy()] * 8)  # 30 batches, 8 in the estimate
    with pytest.raises(KeyboardInterrupt):
        compress(t.model, images, "ordered")
    assert not [th for th in threading.enumerate() if th.name == "acnkit-figure"]


def test_bytes_are_close_to_the_model_figure():
    t = trained(prior="acn", test_limit=360)
    c = compress(t.model, t.data.test_x.numpy(), "ordered")
    nats = c.bits_per_image * math.log(2)
    # The header and initial words are a fixed ~150 bytes, ~3 nats per image here.
    assert c.model_nats_per_image < nats < c.model_nats_per_image + 6


def test_corrupt_truncated_or_foreign_files_are_refused():
    t = trained(prior="acn")
    data = compress(t.model, t.data.test_x.numpy(), "ordered").data
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x10
    with pytest.raises(CodecError, match="corrupt"):
        decompress(t.model, bytes(flipped))
    with pytest.raises(CodecError, match="corrupt or truncated"):
        decompress(t.model, data[:-9])
    with pytest.raises(CodecError, match="not an acnkit compressed file"):
        decompress(t.model, b"PK\x03\x04" + data[4:])
    newer = bytearray(data)
    newer[4] = 10  # the CRC catches the edit (test_codec_hostile: one with its CRC made good)
    with pytest.raises(CodecError, match="corrupt or truncated"):
        decompress(t.model, bytes(newer))
    other = trained(prior="acn", seed=1)
    with pytest.raises(CodecError, match="another model"):
        decompress(other.model, data)


def test_header_records_what_must_match():
    t = trained(prior="vae")
    header, _ = read_header(compress(t.model, t.data.test_x.numpy(), "set").data)
    assert header["mode"] == "set" and header["count"] == 120
    assert header["image_shape"] == [1, 8, 8]
    # torch's version only where its floats are the file's (the exact arithmetic's are not)
    assert header["torch"] == "" and header["arithmetic"] == "acnkit-exact-1"
    bound, _ = read_header(compress(t.model, t.data.test_x.numpy(), "set", portable=False).data)
    assert bound["torch"] == torch.__version__ and bound["arithmetic"].startswith("machine: ")


def test_arithmetic_that_differs_is_caught_not_written(monkeypatch):
    """A receiver whose floats differ in the last bits must fail loudly, never silently."""
    t = trained(prior="acn")
    data = compress(t.model, t.data.test_x.numpy(), "ordered").data
    loss = t.model.loss
    original = type(loss).probabilities

    def drifted(params, x):
        p = (original(loss, params, x)[..., 1] * (1 + 1e-3)).clamp(0, 1)
        return torch.stack([1 - p, p], -1)

    monkeypatch.setattr(loss, "probabilities", drifted)
    with pytest.raises(CodecError, match="did not decode"):
        decompress(t.model, data)


def test_a_prior_that_cannot_be_coded_is_named():
    t = Trainer(RunConfig(prior="vae", train_limit=100, test_limit=10))

    class Odd(torch.nn.Module):
        conditional = False

        def distribution(self, context, batch_size):
            return object()

    t.model.nets.cost.prior = Odd()
    with pytest.raises(CodecError, match="prior 'vae' gives a object"):
        check_codable(t.model)
    assert isinstance(trained(prior="acn").model.prior.distribution(torch.zeros(1, 6), 1),
                      DiagGaussian)


def test_cli_round_trip_and_refusals(tmp_path):
    run = tmp_path / "run"
    cli = CliRunner()
    r = cli.invoke(main, ["run", "--prior", "acn", "--epochs", "1", "--latent-dim", "6",
                          "--encoder-hidden", "64", "--decoder-hidden", "64",
                          "--prior-hidden", "32", "--test-limit", "50", "--out", str(run)])
    assert r.exit_code == 0, r.output
    images = np.random.default_rng(0).integers(0, 2, size=(40, 64)).astype(np.uint8)
    np.save(tmp_path / "in.npy", images)
    f, out = tmp_path / "x.acnz", tmp_path / "out.npy"
    r = cli.invoke(main, ["compress", str(run), "--input", str(tmp_path / "in.npy"), "-o", str(f),
                          "--json"])
    assert r.exit_code == 0, r.output
    import json

    summary = json.loads(r.stdout)
    assert set(summary) >= {"images", "bytes", "bits_per_image", "model_nats_per_image",
                            "overhead_percent"}
    assert summary["bytes"] == f.stat().st_size and summary["images"] == 40
    r = cli.invoke(main, ["decompress", str(f), "--run", str(run), "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert np.array_equal(np.load(out), images)
    before = out.read_bytes()
    r = cli.invoke(main, ["decompress", str(f), "--run", str(run), "-o", str(out)])
    assert r.exit_code == 2 and "exists; pass --overwrite" in r.stderr
    f.write_bytes(f.read_bytes()[:-3])
    r = cli.invoke(main, ["decompress", str(f), "--run", str(run), "-o", str(out), "--overwrite"])
    assert r.exit_code == 1 and r.stderr.count("\n") == 1 and "Traceback" not in r.output
    assert out.read_bytes() == before
    np.save(tmp_path / "grey.npy", images * 0.5)
    r = cli.invoke(main, ["compress", str(run), "--input", str(tmp_path / "grey.npy"), "-o",
                          str(tmp_path / "g.acnz")])
    assert r.exit_code == 2 and "float64 values" in r.stderr
    assert not (tmp_path / "g.acnz").exists()


@pytest.mark.parametrize("name,options", [("vae", {}), ("acn", {}), ("acn", {"mixtures": 4})])
def test_builtin_priors_pass_the_codable_check(name, options):
    from acnkit.registry import get_registry
    from acnkit.testing import check_prior_codable

    check_prior_codable(lambda d: get_registry().create("prior", name, d, **options))


def test_codable_check_names_what_is_missing():
    from acnkit.testing import check_prior_codable

    class Wrong(torch.nn.Module):
        conditional = False

        def distribution(self, context, batch_size):
            return DiagGaussian(torch.zeros(batch_size, 5), torch.zeros(batch_size, 5))

    with pytest.raises(AssertionError, match=r"mean has shape \(3, 5\), not \(3, 6\)"):
        check_prior_codable(lambda d: Wrong())


def test_decompress_warns_when_versions_differ_only_for_a_machine_bound_file(monkeypatch):
    t = trained(prior="vae")
    for portable in (True, False):
        with monkeypatch.context() as m:  # a file written under another torch
            m.setattr(torch, "__version__", "1.0.0")
            c = compress(t.model, t.data.test_x.numpy(), "ordered", portable=portable)
        assert read_header(c.data)[0]["torch"] == ("" if portable else "1.0.0")
        said = []
        out = decompress(t.model, c.data, warn=said.append)
        assert np.array_equal(out, t.data.test_x.numpy())
        if portable:  # the same numbers under any torch: nothing to warn of
            assert said == []
        else:
            assert len(said) == 1 and "torch 1.0.0" in said[0] and torch.__version__ in said[0]
