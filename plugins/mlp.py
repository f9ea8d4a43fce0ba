"""Multi-layer perceptron encoder and decoder."""

from __future__ import annotations

import math

from torch import nn

import acnkit
from acnkit.heads import learned_variance, posterior_from_head
from acnkit.interfaces import Decoder, Encoder


def _hidden(hidden: int | str | list[int] | tuple[int, ...]) -> list[int]:
    if isinstance(hidden, str):
        hidden = [int(h) for h in hidden.replace(",", "-").split("-") if h]
    elif isinstance(hidden, int):
        hidden = [hidden]
    if not hidden or min(hidden) < 1:
        raise ValueError(f"hidden sizes must be positive integers, got {hidden!r}")
    return list(hidden)


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class MLPEncoder(Encoder):
    def __init__(self, image_shape, latent_dim, posterior="learned", hidden=512):
        super().__init__()
        self.latent_dim, self.learned = latent_dim, learned_variance(posterior)
        out = latent_dim * (2 if self.learned else 1)
        self.net = _mlp([math.prod(image_shape), *_hidden(hidden), out])

    def forward(self, x):
        h = self.net(x.flatten(1))
        return posterior_from_head(h, self.learned)


class MLPDecoder(Decoder):
    def __init__(self, image_shape, latent_dim, hidden=512, param_channels=None):
        super().__init__()
        self.image_shape = tuple(image_shape)
        # the loss's parameters a pixel (P, H, W); one a subpixel: the images' own shape
        self.out_shape = (self.image_shape if param_channels is None
                          else (param_channels, *self.image_shape[1:]))
        self.net = _mlp([latent_dim, *reversed(_hidden(hidden)), math.prod(self.out_shape)])

    def forward(self, z):
        return self.net(z).view(-1, *self.out_shape)


@acnkit.hookimpl
def register_encoders(register):
    register("mlp", MLPEncoder, description="MLP encoder (hidden sizes e.g. '512' or '512-256')")


@acnkit.hookimpl
def register_decoders(register):
    register("mlp", MLPDecoder, description="MLP decoder (mirror of the encoder's hidden sizes)")
