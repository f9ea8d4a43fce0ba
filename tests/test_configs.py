"""Each reference configuration trains for one epoch (a smoke test on a digits subset)."""

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from acnkit.cli import main
from acnkit.config import RunConfig
from acnkit.engine import Trainer

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*.toml"))


def test_there_are_reference_configs():
    assert {p.stem for p in CONFIGS} >= {"blog", "paper"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_trains_one_epoch(path, tmp_path):
    config = RunConfig.from_toml(path).validate()
    data = []
    if config.data == "images":  # a folder of photos, as the config's comment asks for
        import numpy as np
        from PIL import Image

        rng = np.random.default_rng(0)
        for split, n in (("train", 2), ("test", 1)):
            (tmp_path / "photos" / split).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (64, 96, 3)).astype(np.uint8)).save(
                    tmp_path / "photos" / split / f"{i}.png")
        data = ["--data-dir", str(tmp_path / "photos")]
    r = CliRunner().invoke(main, ["run", "--config", str(path), "--epochs", "1",
                                  "--train-limit", "256", "--test-limit", "64", *data,
                                  "--out", str(tmp_path / "r"), "--json"])
    assert r.exit_code == 0, r.output


def test_command_line_overrides_the_file(tmp_path):
    out = tmp_path / "r"
    r = CliRunner().invoke(main, ["run", "--config", str(CONFIGS[0]), "--latent-dim", "6",
                                  "--epochs", "1", "--train-limit", "128", "--out", str(out)])
    assert r.exit_code == 0, r.output
    import json
    saved = json.loads((out / "config.json").read_text())
    assert saved["latent_dim"] == 6 and saved["prior_layers"] == RunConfig.from_toml(
        CONFIGS[0]).prior_layers


def test_channels_shape_the_conv_nets():
    t = Trainer(RunConfig(encoder="conv", decoder="conv", channels="8-16", train_limit=300,
                          test_limit=50, epochs=1))
    convs = [m for m in t.model.encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [m.out_channels for m in convs] == [8, 8, 16, 16]
    default = Trainer(RunConfig(encoder="conv", decoder="conv", train_limit=300, test_limit=50))
    assert [m.out_channels for m in default.model.encoder.modules()
            if isinstance(m, torch.nn.Conv2d)] == [32, 32, 64, 64]
