"""The gated PixelCNN decoder: causality, teacher forcing, no blind spot, z in every layer;
training, daydreaming and the codec with an autoregressive decoder."""

import json
import math

import numpy as np
import pytest
import torch
from acnkit_plugins.bernoulli import BernoulliLoss
from acnkit_plugins.pixelcnn import PixelCNNDecoder, receptive_field_complete
from click.testing import CliRunner

from acnkit import RunConfig, Trainer
from acnkit.cli import main
from acnkit.codec import compress, decompress
from acnkit.daydream import daydream

SHAPE = (1, 8, 8)
D = 64


def decoder(**kw) -> PixelCNNDecoder:
    torch.manual_seed(0)
    options = dict(channels=8, layers=4, kernel=5)
    options.update(kw)
    return PixelCNNDecoder(SHAPE, 6, **options).eval()


def batch(n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 6, generator=g), torch.bernoulli(torch.full((n, *SHAPE), 0.5), generator=g)


def with_linear(dec: PixelCNNDecoder, seed: int = 1) -> PixelCNNDecoder:
    """The linear predictor's weights drawn at random (they start at zero)."""
    g = torch.Generator().manual_seed(seed)
    for part in (dec.linear_v, dec.linear_h):
        assert part is not None
        with torch.no_grad():
            part.conv.weight.copy_(torch.randn(part.conv.weight.shape, generator=g))
    return dec


@pytest.mark.parametrize("kw", [{}, {"kernel": 3, "layers": 2}, {"spatial": 2},
                                {"linear": 5}])
@torch.no_grad()
def test_changing_pixel_i_never_changes_an_output_at_or_before_i(kw):
    dec = decoder(**kw)
    if "linear" in kw:
        with_linear(dec)
    z, x = batch()
    base = dec(z, x).reshape(3, -1)
    for i in range(D):
        flipped = x.clone().reshape(3, -1)
        flipped[:, i] = 1 - flipped[:, i]
        out = dec(z, flipped.reshape(x.shape)).reshape(3, -1)
        assert torch.equal(out[:, : i + 1], base[:, : i + 1]), i
        if i < D - 1 and kw == {}:
            assert not torch.equal(out[:, i + 1:], base[:, i + 1:]), i  # and it is read


@torch.no_grad()
def test_teacher_forced_likelihood_is_the_product_of_the_sampling_steps():
    dec = decoder()
    z, _ = batch(4)
    g = torch.Generator().manual_seed(3)
    x = torch.zeros(4, *SHAPE)
    flat = x.view(4, -1)
    step_logits = torch.empty(4, D)
    for i in range(D):  # draw pixel by pixel, as sampling and the decoding codec do
        logits = dec(z, x).reshape(4, -1)
        step_logits[:, i] = logits[:, i]
        flat[:, i] = torch.bernoulli(torch.sigmoid(logits[:, i]), generator=g)
    forced = dec(z, x).reshape(4, -1)
    assert torch.equal(forced, step_logits)  # in every bit: what the codec relies on
    p = torch.sigmoid(step_logits.double())
    log_product = torch.where(flat.double() > 0, p, 1 - p).log().sum(1)
    nll = torch.nn.functional.binary_cross_entropy_with_logits(forced, flat, reduction="none").sum(1)
    assert torch.allclose(-nll.double(), log_product, atol=1e-4)


def test_no_blind_spot_every_earlier_pixel_reaches_the_output():
    dec = decoder()
    assert receptive_field_complete(SHAPE, 4, 5)
    z, x = batch(1)
    for r, c in ((7, 7), (4, 3), (1, 0)):
        xg = x.clone().requires_grad_()
        dec(z, xg)[0, 0, r, c].backward()
        reads = xg.grad.reshape(-1) != 0
        pos = r * 8 + c
        assert reads[:pos].all(), f"({r}, {c}) misses {(~reads[:pos]).nonzero().flatten().tolist()}"
        assert not reads[pos:].any()
    # the pixels up and to the right are where a masked-convolution PixelCNN is blind
    xg = x.clone().requires_grad_()
    dec(z, xg)[0, 0, 4, 1].backward()
    assert (xg.grad[0, 0, 3, 2:] != 0).all()


def test_z_enters_every_layer():
    dec = decoder(spatial=2)
    z, x = batch()
    dec(z, x).sum().backward()
    for i, layer in enumerate(dec.layers):
        for lin in (layer.cond_v, layer.cond_h, layer.map_v, layer.map_h):
            assert lin.weight.grad is not None and lin.weight.grad.abs().sum() > 0, i


def test_bad_options_are_refused():
    for kw in ({"kernel": 4}, {"layers": 0}, {"channels": 0}, {"kernel": "x"},
               {"layers": 2.5}, {"spatial": True}, {"linear": 3}, {"linear": -5}):
        with pytest.raises(ValueError):
            decoder(**kw)
    with pytest.raises(ValueError, match=r"images \(C, H, W\)"):
        PixelCNNDecoder((64,), 6)


@torch.no_grad()
def test_sampling_is_batched_and_reproducible():
    dec = decoder()
    z, _ = batch(5)
    loss = BernoulliLoss()
    a = dec.sample(z, loss, torch.Generator().manual_seed(0))
    b = dec.sample(z, loss, torch.Generator().manual_seed(0))
    assert a.shape == (5, *SHAPE) and torch.equal(a, b)
    assert ((a == 0) | (a == 1)).all()


def small(**kw) -> RunConfig:
    base = dict(decoder="pixelcnn", decoder_options={"layers": 3, "channels": 8},
                latent_dim=6, encoder_hidden="64", prior_hidden=32, batch_size=64,
                train_limit=300, test_limit=24, epochs=1)
    base.update(kw)
    return RunConfig(**base)


@pytest.mark.parametrize("prior", ["vae", "acn"])
def test_train_daydream_and_code_exactly(prior):
    t = Trainer(small(prior=prior))
    (m,) = t.fit()
    assert math.isfinite(m["test_nats"]) and m["train_kl"] > 0
    if prior == "acn":
        frames = daydream(t.model, t.data.test_x, 2, 2)
        assert frames.shape == (2, 3, *SHAPE) and ((frames == 0) | (frames == 1)).all()
    images = t.data.test_x.numpy()
    for mode in ("ordered", "set"):
        coded = compress(t.model, images, mode)
        out = decompress(t.model, coded.data)
        if mode == "ordered":
            assert np.array_equal(out, images)
        else:
            assert sorted(r.tobytes() for r in out) == sorted(r.tobytes() for r in images)


def test_cli_decoder_options(tmp_path):
    runner = CliRunner()
    args = ["run", "--decoder", "pixelcnn", "--decoder-option", "channels=8", "--latent-dim", "6",
            "--encoder-hidden", "32", "--prior", "vae", "--train-limit", "100",
            "--test-limit", "10", "--epochs", "1", "--json"]
    res = runner.invoke(main, [*args, "--decoder-option", "layers=2", "--decoder-option",
                               "kernel=3", "--out", str(tmp_path / "a")])
    assert res.exit_code == 0, res.output
    cfg = json.loads((tmp_path / "a" / "config.json").read_text())
    assert cfg["decoder_options"] == {"channels": 8, "layers": 2, "kernel": 3}
    res = runner.invoke(main, [*args, "--decoder-option", "layers", "--out", str(tmp_path / "b")])
    assert res.exit_code == 2 and "KEY=VALUE" in res.output
    res = runner.invoke(main, [*args, "--decoder-option", "kernel=4", "--out", str(tmp_path / "c")])
    assert res.exit_code == 2 and "odd kernel" in res.output
    res = runner.invoke(main, [*args, "--decoder-option", "depth=4", "--out", str(tmp_path / "d")])
    assert res.exit_code == 2 and "does not take option 'depth'" in res.output


def test_compress_refuses_a_decoder_that_peeks_at_a_later_pixel():
    """Such a decoder trains and compresses without complaint, and only decompress would
    fail: compress probes causality first and names the decoder and the kit."""
    from acnkit.errors import CodecError

    t = Trainer(small(prior="vae"))
    decoder = t.model.decoder
    causal = decoder.forward

    def peeking(z, x):  # each position also reads the pixel after it
        out = causal(z, x)
        return out + x.reshape(out.shape).roll(-1, dims=-1)

    decoder.forward = peeking
    with pytest.raises(CodecError, match=r"decoder 'pixelcnn' \(plugin 'pixelcnn'\) cannot be "
                                         r"coded: .*not causal.*check_decoder"):
        compress(t.model, t.data.test_x.numpy()[:3], "ordered")
    decoder.forward = causal
    assert len(compress(t.model, t.data.test_x.numpy()[:3], "ordered").data) > 0


def test_stepping_matches_teacher_forcing_and_passes_the_kit():
    from acnkit.testing import check_decoder, check_stepping

    dec = decoder()
    z, x = batch(3)
    check_stepping(dec, z, x)
    check_decoder(lambda shape, d: PixelCNNDecoder(shape, d, channels=8, layers=3, spatial=2))


@pytest.mark.parametrize("shape", [(1, 6, 7), (3, 5, 6)])
def test_the_linear_predictor_steps_as_it_trains_and_reads_only_earlier_pixels(shape):
    """Zero at the start (the decoder's output unchanged); with weights, each output reads
    the pixels of the first layer's window before it, stepping agrees with teacher forcing,
    and it can say 'the left neighbour' or 'left + above - above-left' exactly."""
    from acnkit.testing import check_causal, check_stepping

    torch.manual_seed(0)
    plain = PixelCNNDecoder(shape, 6, channels=8, layers=2, kernel=5, param_channels=4).eval()
    torch.manual_seed(0)
    dec = PixelCNNDecoder(shape, 6, channels=8, layers=2, kernel=5, param_channels=4,
                          linear=5).eval()
    g = torch.Generator().manual_seed(2)
    z = torch.randn(3, 6, generator=g)
    x = torch.randint(0, 256, (3, *shape), generator=g).float() / 255
    with torch.no_grad():
        assert torch.equal(dec(z, x), plain(z, x))
    with_linear(dec)
    check_causal(dec, z, x)
    check_stepping(dec, z, x)
    # a gradient predictor: the output's channel 0 is left + above - above-left of channel 0
    # (in [-1, 1], as the decoder reads the image), where all three exist
    assert dec.linear_v is not None and dec.linear_h is not None
    with torch.no_grad():
        dec.linear_v.conv.weight.zero_()
        dec.linear_h.conv.weight.zero_()
        dec.linear_h.conv.weight[0, 0, 0, -1] = 1.0  # the window ends at the left pixel
        dec.linear_v.conv.weight[0, 0, -1, 2] = 1.0  # last row of the window: above
        dec.linear_v.conv.weight[0, 0, -1, 1] = -1.0  # above-left
        out = dec(z, x) - plain(z, x)
    c = 2 * x[:, 0] - 1
    want = c[:, 1:, :-1] + c[:, :-1, 1:] - c[:, :-1, :-1]
    assert torch.allclose(out[:, 0, 1:, 1:], want, atol=1e-5)


@pytest.mark.parametrize("prior", ["vae", "acn"])
@pytest.mark.parametrize("stepping", [True, False])
def test_codec_with_and_without_the_stepping_api_is_exact(prior, stepping, monkeypatch):
    """With stepping both sides code with the steps; without it (a decoder that offers
    none), the sender's teacher-forced pass and the receiver's full passes."""
    t = Trainer(small(prior=prior, epochs=1))
    t.fit()
    monkeypatch.setattr(type(t.model.decoder), "stepping", stepping)
    images = t.data.test_x.numpy()[:12]
    for mode, lanes in (("ordered", 1), ("set", 5)):
        stats: dict = {}
        out = decompress(t.model, compress(t.model, images, mode, lanes=lanes,
                                              plain_if_smaller=False).data,
                         stats=stats)
        assert stats["pixel_steps"] == 12 * 64
        if mode == "ordered":
            assert np.array_equal(out, images)
        else:
            assert sorted(r.tobytes() for r in out) == sorted(r.tobytes() for r in images)


def test_a_stepping_path_that_depends_on_its_batch_is_caught_not_written(tmp_path):
    from acnkit.errors import CodecError
    from acnkit.testing import check_decoder

    class Drifting(PixelCNNDecoder):
        def step(self, state, position):  # the batch's size leaks into every row
            return super().step(state, position) + 1e-2 * (len(state["z"]) - 1)

    with pytest.raises(AssertionError, match="the decoder.s stepping"):
        check_decoder(lambda shape, d: Drifting(shape, d, channels=8, layers=3))
    t = Trainer(small(prior="vae"))
    t.model.decoder.__class__ = Drifting
    out = tmp_path / "never.acnz"
    with pytest.raises(CodecError, match="cannot be coded: the decoder.s stepping"):
        compress(t.model, t.data.test_x.numpy()[:4], "ordered")
    assert not out.exists()


def test_runs_written_with_the_old_size_defaults_still_load():
    """config.json of runs made before sizes could be left unset holds decoder_hidden
    '512' even for a PixelCNN (which takes no hidden): it loads; a size set on purpose that
    the decoder does not take is still refused."""
    from acnkit.errors import UsageError
    from acnkit.model import build_model

    old = small(decoder_hidden="512", encoder_hidden="512", prior_hidden=512, prior_layers=3,
                mixtures=1).validate()
    assert type(build_model(old, SHAPE, torch.device("cpu")).decoder).__name__ == \
        "PixelCNNDecoder"
    with pytest.raises(UsageError, match="does not take --decoder-hidden"):
        build_model(small(decoder_hidden="64").validate(), SHAPE, torch.device("cpu"))


@pytest.mark.parametrize(("shape", "options"), [
    ((1, 6, 7), {}), ((3, 5, 6), {"linear": 5}), ((1, 7, 5), {"spatial": 2, "kernel": 3}),
    ((3, 4, 9), {"linear": 3, "kernel": 3, "out_hidden": 5})])
def test_the_numpy_step_gives_the_bits_of_the_torch_step_under_the_exact_arithmetic(
        shape, options):
    """Under acnkit.exact.portable the decoder steps in numpy: every position's parameters
    (and so every file) the same bits as its torch code run under the mode."""
    from acnkit.exact import portable
    from acnkit.exact.arrays import active

    torch.manual_seed(1)
    dec = PixelCNNDecoder(shape, 6, channels=8, layers=3, param_channels=10, **options).eval()
    if "linear" in options:
        with_linear(dec)
    exact = dec.double()
    g = torch.Generator().manual_seed(3)
    z = torch.randn(4, 6, generator=g, dtype=torch.float64) * 3
    x = torch.randint(0, 256, (4, shape[0], shape[1] * shape[2]), generator=g).double() / 255

    def stepped(numpy: bool) -> list[np.ndarray]:
        exact.numpy_when_exact = numpy
        out = []
        with torch.no_grad(), portable():
            assert active()
            state = exact.start(z)
            for i in range(shape[1] * shape[2]):
                out.append(exact.step(state, i).numpy().copy())
                exact.feed(state, i, x[:, :, i])
        return out

    try:
        by_torch, by_numpy = stepped(False), stepped(True)
    finally:
        exact.numpy_when_exact = True
    for i, (a, b) in enumerate(zip(by_torch, by_numpy, strict=True)):
        assert a.dtype == b.dtype == np.float64
        np.testing.assert_array_equal(a.view(np.int64), b.view(np.int64), err_msg=f"pixel {i}")


@pytest.mark.parametrize(("shape", "options", "positions"), [
    ((1, 6, 7), {}, 1 << 13), ((3, 5, 6), {"linear": 5}, 12), ((1, 7, 5), {"spatial": 2,
     "kernel": 3}, 1), ((3, 4, 9), {"linear": 3, "kernel": 3, "out_hidden": 5}, 40)])
def test_the_sender_s_stepped_gives_the_bits_of_stepping(shape, options, positions,
                                                         monkeypatch):
    """The sender asks every position at once (stepped: each layer one product over many
    positions, in chunks of rows); the receiver steps. Under the exact arithmetic the two
    agree in every bit, whatever the chunks; in the machine's the sender steps too. The
    kit's check_stepped holds both, and catches a stepped that is off by one bit."""
    from acnkit.exact import portable
    from acnkit.interfaces import Decoder
    from acnkit.testing import check_stepped

    torch.manual_seed(1)
    dec = PixelCNNDecoder(shape, 6, channels=8, layers=3, param_channels=10, **options).eval()
    if "linear" in options:
        with_linear(dec)
    monkeypatch.setattr(PixelCNNDecoder, "STEPPED_POSITIONS", positions)
    g = torch.Generator().manual_seed(3)
    z = torch.randn(4, 6, generator=g, dtype=torch.float64) * 3
    x = torch.randint(0, 256, (4, *shape), generator=g).double() / 255
    with torch.no_grad(), portable():
        steps = Decoder.stepped(dec, dec.start(z), x)
        at_once = dec.stepped(dec.start(z), x)
    assert steps.shape == (4, 10, shape[1] * shape[2])
    np.testing.assert_array_equal(at_once.numpy().view(np.int64), steps.numpy().view(np.int64))
    check_stepped(dec, z.float(), x.float())

    def off(self, state, xx):  # one parameter's last bit changed
        out = Decoder.stepped(self, state, xx).clone()
        out.view(-1)[7] = torch.nextafter(out.view(-1)[7], out.view(-1)[7] + 1)
        return out

    monkeypatch.setattr(PixelCNNDecoder, "stepped", off)
    with pytest.raises(AssertionError, match="stepped differs from its stepping"):
        check_stepped(dec, z.float(), x.float())
