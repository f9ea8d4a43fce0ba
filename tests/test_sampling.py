"""Daydreams and prior samples: latents turned into images."""

from click.testing import CliRunner
from conftest import SMALL
from test_engine import small

from acnkit import Trainer
from acnkit.cli import main


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_sample_draws_a_vaes_prior_and_refuses_acn(tmp_path):
    out = tmp_path / "r"
    for prior in ("vae", "acn"):
        assert CliRunner().invoke(main, [
            "run", "--epochs", "1", "--train-limit", "200", "--latent-dim", "4", "--prior", prior,
            "--decoder", "pixelcnn", "--decoder-option", "channels=4", "--decoder-option",
            "layers=2", "--out", str(out / prior)]).exit_code == 0
    png = tmp_path / "s.png"
    r = CliRunner().invoke(main, ["sample", str(out / "vae"), "--n", "12", "--out", str(png)])
    assert r.exit_code == 0 and png.stat().st_size > 0, r.output
    r = CliRunner().invoke(main, ["sample", str(out / "vae"), "--n", "12", "--out", str(png)])
    assert r.exit_code == 2 and "exists" in r.output  # nothing overwritten
    r = CliRunner().invoke(main, ["sample", str(out / "acn"), "--out", str(tmp_path / "t.png")])
    assert r.exit_code == 2 and "acnkit daydream" in r.output


def test_daydream_feeds_binary_images_to_the_encoder():
    from acnkit.daydream import daydream

    t = Trainer(small())
    seen = []
    forward = t.model.encoder.forward

    def spy(x):
        seen.append(x)
        return forward(x)

    t.model.encoder.forward = spy
    frames = daydream(t.model, t.data.test_x, seeds=3, steps=4)
    assert frames.shape == (3, 5, 1, 8, 8)
    assert len(seen) == 4
    for x in [frames, *seen]:
        assert ((x == 0) | (x == 1)).all(), "a dream must be an image of 0/1 pixels"


def test_daydream_needs_a_conditional_prior(tmp_path):
    out = tmp_path / "v"
    assert invoke("run", "--prior", "vae", *SMALL, "--epochs", 1, "--out", out).exit_code == 0
    r = invoke("daydream", out, "--out", tmp_path / "d.png")
    assert r.exit_code == 2 and "cannot daydream" in r.stderr
