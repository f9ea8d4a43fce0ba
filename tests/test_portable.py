"""Portable files: written with this machine's widest kernels, every kind of built-in run's
file decodes bit-exactly in subprocesses held to AVX2 and to SSE4 kernels, with 1 and 2
threads and the fused search off, and a file written under SSE4 decodes here
(acnkit.testing.check_portable); a component with no exact form is caught and named."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from acnkit.cli import main
from acnkit.codec import compress, decompress
from acnkit.errors import CodecError
from acnkit.exact import ARITHMETIC
from acnkit.testing import check_portable
from acnkit.testing.portable import ENVIRONMENTS
from acnkit.trained import load_run

COMMON = ["--epochs", "1", "--train-limit", "300", "--test-limit", "24", "--latent-dim", "8",
          "--batch-size", "64"]
#: every kind of built-in component in four runs: encoders and decoders (MLP, conv, the
#: PixelCNN with its stepping), priors (VAE, ACN with one Gaussian and with the mixture),
#: losses (Bernoulli, categorical, grey and colour logistic), on binary, 17-level and
#: 8-bit data
RUNS = {
    "binary-mlp-bernoulli-acn-mixture": ["--data", "digits", "--prior", "acn", "--mixtures",
                                         "3", "--encoder-hidden", "32", "--prior-hidden", "16"],
    "17-conv-categorical-vae": ["--data", "digits", "--pixels", "native", "--encoder", "conv",
                                "--decoder", "conv", "--loss", "categorical", "--prior", "vae",
                                "--channels", "4-8", "--encoder-hidden", "16"],
    "17-pixelcnn-logistic-acn": ["--data", "digits", "--pixels", "native", "--decoder",
                                 "pixelcnn", "--decoder-option", "channels=8",
                                 "--decoder-option", "layers=2", "--prior", "acn",
                                 "--encoder-hidden", "32", "--prior-hidden", "16"],
    "8bit-colour-mlp-logistic-vae": ["--data", "sample-patches", "--pixels", "native",
                                     "--prior", "vae", "--encoder-hidden", "32"],
}

@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("portable")
    made = {}
    for name, args in RUNS.items():
        out = root / name
        result = CliRunner().invoke(main, ["run", *COMMON, *args, "--out", str(out), "-q"])
        assert result.exit_code == 0, result.output
        made[name] = out
    return made


def test_every_built_in_run_decodes_alike_on_other_kernels_threads_and_back(runs):
    images = {}
    for name, path in runs.items():
        test_x = load_run(path, "cpu").data.test_x
        images[str(path)] = test_x[: 6 if "pixelcnn" in name else 12].numpy()
    # AVX2 with 2 threads and SSE4 with 1, both without the fused search, and a file
    # written under SSE4 read here (check_portable's default adds two more pairings)
    check_portable(images, lanes=3, environments=(ENVIRONMENTS[1], ENVIRONMENTS[2]))


def test_a_file_decodes_the_same_in_any_batch_and_on_the_other_path(runs):
    """Portable files are the default; they decode in-process too, in one lane and many."""
    run = load_run(runs["17-pixelcnn-logistic-acn"], "cpu")
    images = run.data.test_x.numpy()[:12]
    for lanes in (1, 5):
        coded = compress(run.model, images, "ordered", lanes=lanes)
        assert coded.header["arithmetic"] == ARITHMETIC
        assert np.array_equal(decompress(run.model, coded.data), images)


class Besselled(torch.nn.Module):
    """A decoder layer with no exact form (a Bessel function); ``ulps`` moves its result
    as another machine's kernels might."""

    ulps = 0.0

    def forward(self, x):
        return torch.special.i0e(x) * (1 + self.ulps * 2.0 ** -52)


def test_a_component_without_exact_form_is_named_and_its_file_bound_to_the_machine(
        runs, monkeypatch):
    run = load_run(runs["binary-mlp-bernoulli-acn-mixture"], "cpu")
    layer = Besselled()
    run.model.decoder.net.append(layer)
    images = run.data.test_x.numpy()[:10]
    notes: list[str] = []
    coded = compress(run.model, images, "ordered", plain_if_smaller=False, note=notes.append)
    assert coded.header["arithmetic"].startswith("machine: ")
    assert len(notes) == 1 and "special_i0e" in notes[0] and "only on a machine" in notes[0]
    assert np.array_equal(decompress(run.model, coded.data), images)
    # another machine: a warning names both kinds, and a failure says why, not "corrupt"
    module = sys.modules["acnkit.codec.compress"]
    monkeypatch.setattr(module, "machine_kind", lambda device=None: "aarch64 NEON torch 9")
    layer.ulps = 2.0 ** 34  # a relative 4e-6, as float32 sums in another order
    warned: list[str] = []
    with pytest.raises(CodecError) as failed:
        decompress(run.model, coded.data, "f.acnz", warn=warned.append)
    assert len(warned) == 1 and "aarch64 NEON torch 9" in warned[0] \
        and coded.header["arithmetic"][len("machine: "):] in warned[0]
    message = str(failed.value)
    assert "corrupt" not in message and "decompress it on a machine of that kind" in message


def test_a_file_of_the_format_before_still_decodes_where_it_was_made(runs):
    """Format 6 had no arithmetic field: its numbers were its machine's, as a
    machine-bound file's are now."""
    from acnkit.codec.fileformat import covered, pack, read_header
    from acnkit.codec.order import digest

    run = load_run(runs["binary-mlp-bernoulli-acn-mixture"], "cpu")
    images = run.data.test_x.numpy()
    coded = compress(run.model, images, "ordered", portable=False, plain_if_smaller=False)
    header, words = read_header(coded.data)
    old = {**header, "format": 6}
    old["digest"] = digest(images, "ordered", covered(old))[:32]
    data = pack(old, words.tobytes())
    assert read_header(data)[0]["arithmetic"] == ""
    assert np.array_equal(decompress(run.model, data), images)


def _parts_come_back(search, sizes: np.ndarray, seed: int) -> bool:
    """Whether every sequence of parts a pop may take (drawn at random, empty parts
    included, as a leaky coder may decode any of them) is found again by the search for
    the symbol it led to: what bits-back needs of a posterior's search."""
    from acnkit.codec.levels import Decisions

    rng = np.random.default_rng(seed)
    taken: list[np.ndarray] = []

    def pop(cut, active, params, inner):
        part = rng.integers(0, search.radix, size=active.shape)
        taken.append(np.where(active, part, -1))
        return part

    def cdf(edges):
        return np.clip(edges / np.maximum(sizes[..., None], 1), 0, 1).astype(np.float64)

    symbols = search.run(sizes.shape, cdf, pop, sizes)
    again = Decisions(search)
    found: list[np.ndarray] = []
    known = again.known(symbols)

    def record(cut, active, params, inner):
        part = known(cut, active, params, inner)
        found.append(np.where(active, part, -1))
        return part

    search.run(sizes.shape, cdf, record, sizes)
    return len(taken) == len(found) and all(
        np.array_equal(a, b) for a, b in zip(taken, found, strict=True))


def test_a_posterior_pops_only_parts_its_symbol_gives_back():
    """The sender pops a posterior from bits that code something else; the receiver
    pushes it back from z. A part the search could pop but never find again from z (an
    empty sixteenth of an interval narrower than 16) would leave other bits behind: the
    file of 10,000 8-bit images with 112 lanes failed so. A window of 2^m points is
    searched in sixteenths of 16^j blocks, then in halves of the 2^b points of a block."""
    from acnkit.codec.coder import Grid
    from acnkit.codec.latents import ExactCodecs

    codecs = ExactCodecs(Grid(4, -256, 256))
    blocks = np.array([[1, 16, 256, 4096, 65536]] * 50)
    points = np.array([[1, 2, 4, 8]] * 50)
    for seed in range(20):
        assert _parts_come_back(codecs.search, blocks, seed)
        assert _parts_come_back(codecs.halves, points, seed)
    windows = np.array([[2, 4, 8, 32, 1024]] * 50)
    assert not _parts_come_back(codecs.search, windows, 0)  # sixteenths: this test can fail


def test_the_exact_mode_resizes_by_nearest_pixels_only_and_names_what_it_lacks():
    """Nearest resizing (the conv decoder's, for sizes its strides do not divide) only
    moves numbers: the same as torch's; a bilinear one would sum, and is refused."""
    import torch.nn.functional as F

    from acnkit.exact import NotPortable, portable

    x = torch.rand(2, 3, 5, 7, dtype=torch.float64)
    with portable():
        near = F.interpolate(x, size=(9, 4))
        with pytest.raises(NotPortable, match="bilinear"):
            F.interpolate(x, size=(9, 4), mode="bilinear")
        with pytest.raises(NotPortable, match="i0e"):
            torch.special.i0e(x)
    assert torch.equal(near, F.interpolate(x, size=(9, 4)))
