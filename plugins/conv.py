"""Convolutional encoder and decoder after the ACN paper: a VGG-style encoder (pairs of 3x3
convolutions, each pair halving the resolution) whose output is the posterior, and a
mirrored deconvolutional decoder."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

import acnkit
from acnkit.heads import learned_variance, posterior_from_head
from acnkit.interfaces import Decoder, Encoder


def _channels(channels: int | str) -> list[int]:
    if isinstance(channels, int):
        return [channels, channels * 2]
    parts = [c for c in str(channels).replace(",", "-").split("-") if c]
    sizes = [int(c) for c in parts if c.isdigit()]
    if not sizes or len(sizes) != len(parts) or min(sizes) < 1:
        raise ValueError(f"channels must be positive integers such as '32-64', got {channels!r}")
    return sizes


class ConvEncoder(Encoder):
    def __init__(self, image_shape, latent_dim, posterior="unit", channels="32-64",
                 hidden=512, **_):
        super().__init__()
        if len(image_shape) != 3:
            raise ValueError(f"conv nets need images (C, H, W), got shape {image_shape}")
        self.latent_dim, self.learned = latent_dim, learned_variance(posterior)
        layers: list[nn.Module] = []
        c_in = image_shape[0]
        for c in _channels(channels):
            layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.ReLU(),
                       nn.Conv2d(c, c, 3, stride=2, padding=1), nn.ReLU()]
            c_in = c
        self.features = nn.Sequential(*layers, nn.Flatten())
        with torch.no_grad():
            flat = self.features(torch.zeros(1, *image_shape)).shape[1]
        hidden = int(str(hidden).split("-")[0])
        self.head = nn.Sequential(nn.Linear(flat, hidden), nn.ReLU(),
                                  nn.Linear(hidden, latent_dim * (2 if self.learned else 1)))

    def forward(self, x):
        h = self.head(self.features(x))
        return posterior_from_head(h, self.learned)


class ConvDecoder(Decoder):
    def __init__(self, image_shape, latent_dim, channels="32-64", hidden=512,
                 param_channels=None, **_):
        super().__init__()
        if len(image_shape) != 3:
            raise ValueError(f"conv nets need images (C, H, W), got shape {image_shape}")
        self.image_shape = tuple(image_shape)
        sizes = list(reversed(_channels(channels)))
        scale = 2 ** len(sizes)
        self.start = (sizes[0], math.ceil(image_shape[1] / scale), math.ceil(image_shape[2] / scale))
        hidden = int(str(hidden).split("-")[0])
        self.fc = nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(),
                                nn.Linear(hidden, math.prod(self.start)), nn.ReLU())
        layers: list[nn.Module] = []
        for i, c in enumerate(sizes):
            c_out = sizes[i + 1] if i + 1 < len(sizes) else sizes[-1]
            layers += [nn.ConvTranspose2d(c, c_out, 4, stride=2, padding=1), nn.ReLU(),
                       nn.Conv2d(c_out, c_out, 3, padding=1), nn.ReLU()]
        out = image_shape[0] if param_channels is None else param_channels  # the loss's
        layers.append(nn.Conv2d(sizes[-1], out, 3, padding=1))
        self.deconv = nn.Sequential(*layers)

    def forward(self, z):
        h = self.deconv(self.fc(z).view(-1, *self.start))
        _, height, width = self.image_shape
        if h.shape[-2:] != (height, width):  # sizes not divisible by the scale: crop
            h = h[..., :height, :width] if h.shape[-2] >= height else F.interpolate(
                h, size=(height, width))
        return h


@acnkit.hookimpl
def register_encoders(register):
    register("conv", ConvEncoder, description="VGG-style conv encoder (paper); channels '32-64'")


@acnkit.hookimpl
def register_decoders(register):
    register("conv", ConvDecoder, description="deconvolutional decoder mirroring the conv encoder")
