"""The configuration of one run: every option of ``acnkit run``, validated in one place."""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass
class RunConfig:
    """Options of a run. Field names are the CLI's options with dashes as underscores."""

    prior: str = "acn"
    search: str = "torch"
    data: str = "digits"
    data_dir: str | None = None
    encoder: str = "mlp"
    decoder: str = "mlp"
    loss: str = "bernoulli"
    epochs: int = 10
    batch_size: int = 128
    latent_dim: int = 32
    k: int = 5
    lr: float = 1e-3
    seed: int = 0
    data_seed: int = 0
    device: str = "cpu"
    posterior: str = "learned"
    encoder_hidden: str = "512"
    decoder_hidden: str = "512"
    channels: str | None = None
    prior_hidden: int = 512
    prior_layers: int = 3
    mixtures: int = 1
    unique: bool = False
    refresh: int | None = None
    search_options: dict[str, Any] = field(default_factory=dict)
    train_limit: int | None = None
    test_limit: int | None = None
    valid_size: int | None = None

    def validate(self) -> RunConfig:
        positive = {
            "epochs": self.epochs, "batch_size": self.batch_size, "latent_dim": self.latent_dim,
            "prior_hidden": self.prior_hidden, "prior_layers": self.prior_layers,
            "mixtures": self.mixtures,
        }
        for name, value in positive.items():
            if not isinstance(value, int) or value < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be a whole number >= 1, "
                                 f"got {value!r}")
        if self.k < 1:
            raise UsageError(f"--k must be >= 1 (neighbours to choose from), got {self.k}")
        if not self.lr > 0 or self.lr == float("inf"):
            raise UsageError(f"--lr must be a positive number, got {self.lr}")
        if self.posterior not in ("unit", "learned"):
            raise UsageError(f"--posterior must be 'unit' or 'learned', got {self.posterior!r}")
        if self.refresh is not None and self.refresh < 1:
            raise UsageError(f"--refresh must be >= 1 batches, got {self.refresh}")
        for name in ("train_limit", "test_limit", "valid_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
        if self.device not in ("cpu", "cuda") and not self.device.startswith("cuda:"):
            raise UsageError(f"--device must be cpu or cuda[:N], got {self.device!r}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UsageError(f"unknown config keys {', '.join(unknown)}; known: "
                             f"{', '.join(sorted(known))}")
        return cls(**data)

    @classmethod
    def from_toml(cls, path: str | Path, **overrides: Any) -> RunConfig:
        try:
            data = tomllib.loads(Path(path).read_text())
        except OSError as exc:
            raise UsageError(f"cannot read config {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise UsageError(f"config {path} is not valid TOML: {exc}") from None
        data = {k.replace("-", "_"): v for k, v in data.items()}
        data.update(overrides)
        return cls.from_dict(data)

    def searcher_options(self) -> dict[str, Any]:
        options = dict(self.search_options)
        if self.refresh is not None:
            options["refresh"] = self.refresh
        return options

    # Options that change the model or the data: a checkpoint made under other values cannot
    # be continued under these.
    STRUCTURAL = (
        "prior", "data", "encoder", "decoder", "loss", "batch_size", "latent_dim", "posterior",
        "encoder_hidden", "decoder_hidden", "channels", "prior_hidden", "prior_layers", "mixtures",
        "train_limit", "test_limit", "valid_size", "data_seed", "seed",
    )
