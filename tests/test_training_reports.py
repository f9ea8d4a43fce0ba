"""What the epoch lines and compare say when a figure would mislead: posterior collapse
(a KL near zero) is warned of, and a 5-NN accuracy of data with one label is n/a."""

from __future__ import annotations

import torch

from acnkit.display import COLLAPSE_NATS, epoch_line, final_comparison
from acnkit.engine import Trainer
from acnkit.evaluate import held_out_figures


def metrics(kl: float, knn: float | None = 0.9) -> dict:
    m = {"epoch": 3, "train_nats": 100.0, "train_recon": 99.0, "train_kl": kl,
         "test_nats_set": 101.0, "test_nats_ordered": 102.0, "test_recon": 100.0,
         "test_kl": kl, "epoch_seconds": 1.0, "search_seconds": 0.0}
    if knn is not None:
        m["test_knn5_accuracy"] = knn
    return m


def test_a_collapsed_posterior_is_warned_of_in_the_epoch_line_and_in_compare():
    collapsed, fine = metrics(0.03), metrics(12.0)
    assert "posterior collapse" in epoch_line("", collapsed, 10)
    assert "warning" not in epoch_line("", fine, 10)
    assert "warning" not in epoch_line("", metrics(COLLAPSE_NATS), 10)
    lines = final_comparison(collapsed, fine, "vae", "acn")
    assert any(line.startswith("vae: warning: KL 0.03 nats") for line in lines)
    assert not any(line.startswith("acn: warning") for line in lines)


def test_knn_accuracy_of_one_label_is_not_reported():
    lines = final_comparison(metrics(5.0, None), metrics(6.0, None), "vae", "acn")
    assert "vae 5.00 nats, n/a (one label); acn 6.00 nats, n/a (one label)" in lines[-1]


def test_held_out_figures_leave_out_knn_for_one_label_and_keep_it_for_two():
    from acnkit.config import RunConfig

    t = Trainer(RunConfig(epochs=1, latent_dim=4, encoder_hidden="32", decoder_hidden="32",
                          prior="vae", train_limit=100, test_limit=40))
    data = t.data
    assert "test_knn5_accuracy" in held_out_figures(t.model, data)
    data.train_y = torch.zeros_like(data.train_y)
    data.test_y = torch.zeros_like(data.test_y)
    assert "test_knn5_accuracy" not in held_out_figures(t.model, data)


def test_the_defaults_train_colour_without_nan_for_five_seeds(tmp_path):
    """The embedded colour patches at their own levels with every default net: no seed of
    0-4 stops on a non-finite loss or gradient (one did on a folder of photo patches)."""
    from click.testing import CliRunner

    from acnkit.cli import main

    for seed in range(5):
        r = CliRunner().invoke(main, ["run", "--data", "sample-patches", "--pixels", "native",
                                      "--seed", str(seed), "--epochs", "1", "--json",
                                      "--test-limit", "8",
                                      "--out", str(tmp_path / f"s{seed}")])
        assert r.exit_code == 0, (seed, r.output)
