"""The configuration of one run: every option of ``acnkit run``, validated in one place."""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .bounded import NotRegularFile, TooLarge, read_regular
from .errors import UsageError

#: at most this many bytes of a --config file (a config of options is a few hundred)
MAX_CONFIG_BYTES = 1 << 20

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


#: the Python types each annotation of RunConfig admits
_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,), "str | None": (str,), "int": (int,), "int | None": (int,),
    "float": (int, float), "bool": (bool,), "dict[str, Any]": (dict,),
}


@dataclass
class RunConfig:
    """Options of a run. Field names are the CLI's options with dashes as underscores."""

    prior: str = "acn"
    search: str = "torch"
    data: str = "digits"
    data_dir: str | None = None
    encoder: str = "mlp"
    decoder: str = "mlp"
    #: None: the likelihood that fits --pixels (bernoulli for binary, logistic for native)
    loss: str | None = None
    #: "binary" (sampled 0/1 pixels, the default) or "native" (the data set's own levels)
    pixels: str = "binary"
    #: "HxW": crop every image of a folder to its centre H x W (--data images)
    crop: str | None = None
    #: "HxW": train on H x W patches drawn at random from photos of any size each epoch,
    #: held-out figures on the held-out photos' whole tiles (--data images)
    patches: str | None = None
    #: with --patches: "flip", "permute" (a colour patch's channels in a random order),
    #: "grey" (a share of colour patches made grey), comma-separated, or "none"
    augment: str = "flip"
    #: the weights a new run starts from: a shipped model's name or a model folder (its
    #: config must describe the same networks); None: the components' own initialisation
    init: str | None = None
    epochs: int = 10
    batch_size: int = 128
    latent_dim: int = 32
    k: int = 5
    lr: float = 1e-3
    seed: int = 0
    data_seed: int = 0
    device: str = "cpu"
    posterior: str = "learned"
    # The nets' sizes: None leaves the plugin's own default (512, 512, 512, 3 and 1 for the
    # built-ins); only a value the user set reaches a factory.
    encoder_hidden: str | None = None
    decoder_hidden: str | None = None
    channels: str | None = None
    prior_hidden: int | None = None
    prior_layers: int | None = None
    mixtures: int | None = None
    unique: bool = False
    refresh: int | None = None
    search_options: dict[str, Any] = field(default_factory=dict)
    decoder_options: dict[str, Any] = field(default_factory=dict)
    train_limit: int | None = None
    test_limit: int | None = None
    valid_size: int | None = None
    #: torch's threads; None: chosen from the work and the machine (acnkit.threads)
    threads: int | None = None

    def check_types(self) -> None:
        """Every field has its declared type (a TOML file or a hand-edited config.json can
        hold anything); bool is not taken for a number."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            allowed = _TYPES[str(f.type)]
            if value is None and "None" in str(f.type):
                continue
            if isinstance(value, bool) and bool not in allowed:
                ok = False
            else:
                ok = isinstance(value, allowed)
            if not ok:
                want = {"int": "a whole number", "float": "a number", "str": "a string",
                        "bool": "true or false", "dict[str, Any]": "a table of options"}[
                    str(f.type).replace(" | None", "")]
                raise UsageError(f"option {f.name.replace('_', '-')} must be {want}, got "
                                 f"{value!r}")
        if isinstance(self.lr, int):
            self.lr = float(self.lr)

    def validate(self) -> RunConfig:
        self.check_types()
        positive = {
            "epochs": self.epochs, "batch_size": self.batch_size, "latent_dim": self.latent_dim,
            "prior_hidden": self.prior_hidden, "prior_layers": self.prior_layers,
            "mixtures": self.mixtures,
        }
        for name, value in positive.items():
            if value is not None and (not isinstance(value, int) or value < 1):
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
        for name in ("train_limit", "test_limit", "valid_size", "threads"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
        for key in self.decoder_options:
            if not key.isidentifier():
                raise UsageError(f"decoder option {key!r} is not a keyword; give one of the "
                                 f"decoder factory's parameters, such as layers")
        if self.pixels not in PIXELS:
            raise UsageError(f"--pixels must be one of {', '.join(PIXELS)}, got "
                             f"{self.pixels!r}")
        if self.loss is None:
            self.loss = "bernoulli" if self.pixels == "binary" else "logistic"
        if self.crop is not None:
            crop_size(self.crop)
        if self.patches is None and self.augment != "flip":
            raise UsageError("--augment changes the patches of --patches; give --patches HxW")
        if self.patches is not None:
            crop_size(self.patches, "--patches")
            if self.crop is not None:
                raise UsageError("--patches draws patches from whole images; drop --crop")
            augments(self.augment)
            if self.valid_size:
                raise UsageError("--patches draws the training images afresh each epoch, "
                                 "so none can be held out: drop --valid-size (the folder's "
                                 "test/ images, or every tenth file, are held out)")
        check_device_name(self.device)
        return self

    def structure(self) -> dict[str, Any]:
        """The :data:`STRUCTURAL` options, as a model's fingerprint sees them: options added
        later are left out at their defaults, so that older runs keep their fingerprints
        (and their compressed files decode)."""
        return {k: getattr(self, k) for k in self.STRUCTURAL
                if not (k in LATER_DEFAULTS and getattr(self, k) == LATER_DEFAULTS[k])}

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
            raw = read_regular(path, MAX_CONFIG_BYTES)
            data = tomllib.loads(raw.decode())
        except NotRegularFile:
            raise UsageError(f"cannot read config {path}: not a regular file; give a TOML "
                             f"file") from None
        except TooLarge:
            raise UsageError(f"cannot read config {path}: larger than {MAX_CONFIG_BYTES} "
                             f"bytes, which no config needs; give a TOML file of "
                             f"options") from None
        except OSError as exc:
            raise UsageError(f"cannot read config {path}: {exc.strerror}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise UsageError(f"config {path} is not valid TOML: {exc}") from None
        data = {k.replace("-", "_"): v for k, v in data.items()}
        data.update(overrides)
        try:
            config = cls.from_dict(data)
            config.check_types()
        except UsageError as exc:
            raise UsageError(f"config {path}: {exc}") from None
        return config

    def given(self, **fields: str) -> set[str]:
        """The factory options (keys) whose config fields (values) are set away from their
        defaults: only those may be refused when a plugin does not take them."""
        defaults = type(self)()
        return {option for option, name in fields.items()
                if getattr(self, name) != getattr(defaults, name)}

    def net_options(self, **fields: str) -> tuple[dict[str, Any], set[str]]:
        """The factory options (keys) whose config fields (values) are set (not None): only
        those reach a factory, which keeps its own default for the others; and those of
        them a factory must take or refuse by name. Runs written before sizes could be left
        unset hold the old defaults (:data:`OLD_SIZE_DEFAULTS`): those reach a factory that
        takes them, and one that does not (a PixelCNN's ``hidden``) is not refused."""
        options = {option: getattr(self, name) for option, name in fields.items()
                   if getattr(self, name) is not None}
        given = {option for option, name in fields.items()
                 if option in options and options[option] != OLD_SIZE_DEFAULTS.get(name)}
        return options, given

    def searcher_options(self) -> dict[str, Any]:
        options = dict(self.search_options)
        if self.refresh is not None:
            options["refresh"] = self.refresh
        return options

    # Options that change the model or the data: a checkpoint made under other values cannot
    # be continued under these.
    STRUCTURAL = (
        "prior", "data", "encoder", "decoder", "loss", "batch_size", "latent_dim", "posterior",
        "encoder_hidden", "decoder_hidden", "channels", "decoder_options", "prior_hidden",
        "prior_layers", "mixtures", "train_limit", "test_limit", "valid_size", "data_seed", "seed",
        "pixels", "crop", "patches", "augment",
    )

    # The structural options that shape the networks (the others choose the data): what a
    # run started from a model's weights (--init) must share with it.
    NETWORKS = (
        "prior", "encoder", "decoder", "loss", "latent_dim", "posterior", "encoder_hidden",
        "decoder_hidden", "channels", "decoder_options", "prior_hidden", "prior_layers",
        "mixtures",
    )


#: --pixels
PIXELS = ("binary", "native")
#: structural options added after runs were saved, at the value those runs had
LATER_DEFAULTS: dict[str, Any] = {"pixels": "binary", "crop": None, "patches": None,
                                  "augment": "flip"}


#: what --augment may ask of patches: flipped left to right at random, a colour patch's
#: channels in a random order (so a colour model meets colours its few photos lack), and a
#: share of colour patches made grey (so it meets grey photos as often as colour ones)
AUGMENTS = ("flip", "permute", "grey")


def augments(text: str) -> tuple[str, ...]:
    """``--augment``: a comma-separated subset of :data:`AUGMENTS`, or ``none``."""
    names = () if text.strip() == "none" else tuple(p.strip() for p in text.split(","))
    bad = [n for n in names if n not in AUGMENTS]
    if bad or not text.strip():
        raise UsageError(f"--augment takes none or some of {', '.join(AUGMENTS)} (comma-"
                         f"separated), got {text!r}")
    return names


def crop_size(text: str, option: str = "--crop") -> tuple[int, int]:
    """``HxW`` as (H, W), both >= 1."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise UsageError(f"{option} must be HxW in pixels, such as 32x32; got {text!r}")
    return int(parts[0]), int(parts[1])


#: what config.json held for the nets' sizes before they could be left to the plugin
OLD_SIZE_DEFAULTS: dict[str, Any] = {"encoder_hidden": "512", "decoder_hidden": "512",
                                     "prior_hidden": 512, "prior_layers": 3, "mixtures": 1}


def check_device_name(name: str) -> None:
    """cpu, cuda or cuda:N; anything else is a usage error, not torch's RuntimeError."""
    if name in ("cpu", "cuda") or (name.startswith("cuda:") and name[5:].isdigit()):
        return
    raise UsageError(f"--device must be cpu or cuda[:N], got {name!r}")
