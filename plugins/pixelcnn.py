"""Gated PixelCNN decoder (van den Oord et al. 2016, "Conditional Image Generation with
PixelCNN Decoders"), conditioned on the latent z: the autoregressive decoder of the ACN
paper's posterior-collapse experiment.

Two stacks without a blind spot: the *vertical* stack sees every pixel of the rows above
(a convolution over the rows up to the current one, shifted down one row before the
horizontal stack reads it), the *horizontal* stack the pixels to the left in the current
row. The first layer is of type A (the horizontal stack does not see the current pixel),
every later one of type B (it sees the features of the current position, which depend
only on earlier pixels). Each layer gates its features, tanh(a) * sigmoid(b), and z enters
every layer as a learned bias of the gates; with ``spatial`` it enters also through a small
map, a learned projection of z to an image-sized bias per layer. The horizontal stack has
residual connections; the output is the loss's parameters of every pixel (one Bernoulli
logit for black and white). All channels of a pixel are predicted together from the pixels
before it; a colour likelihood orders them itself (the logistic mixture: G given R, B given
R and G).

Causality is by construction (padding and shifts, no masked weights): a position's output
is computed from the same numbers whatever the pixels after it hold, so the teacher-forced
probabilities and those of step-by-step decoding agree in every bit.
"""

from __future__ import annotations

from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import acnkit
from acnkit.exact import arrays as exact
from acnkit.interfaces import Decoder


def _down(t: Tensor) -> Tensor:
    """Shift one row down: row r then holds what row r - 1 held (row 0 zeros)."""
    return F.pad(t, (0, 0, 1, 0))[:, :, :-1, :]


def _right(t: Tensor) -> Tensor:
    """Shift one column right: column c then holds what column c - 1 held."""
    return F.pad(t, (1, 0, 0, 0))[:, :, :, :-1]


class _StackConv(nn.Module):
    """A convolution whose output at (r, c) reads rows r - k//2 .. r, all columns within
    the kernel (vertical), or row r, columns c - k//2 .. c (horizontal)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, vertical: bool,
                 bias: bool = True) -> None:
        super().__init__()
        h = kernel // 2
        self.pad = (h, h, h, 0) if vertical else (h, 0, 0, 0)
        self.conv = nn.Conv2d(c_in, c_out, (h + 1, kernel) if vertical else (1, h + 1),
                              bias=bias)

    def forward(self, t: Tensor) -> Tensor:
        return self.conv(F.pad(t, self.pad))

    def last_row(self, rows: Tensor) -> Tensor:
        """The vertical output of the last of ``rows`` (B, C, R, W): the rows it reads,
        fewer at the top of the image, where the missing ones are padding."""
        left, right, top, _ = self.pad
        return self.conv(F.pad(rows, (left, right, top + 1 - rows.shape[2], 0)))


def _whole(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).isdigit():
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    return int(value)


def _row(t: Tensor, r: int) -> Tensor:
    """Row r of a bias that is either per image (B, C, 1, 1) or a map (B, C, H, W)."""
    return t if t.shape[2] == 1 else t[:, :, r: r + 1]


def _gate(t: Tensor) -> Tensor:
    a, b = t.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


class GatedLayer(nn.Module):
    def __init__(self, channels: int, kernel: int, latent_dim: int, first: bool,
                 image_channels: int, spatial: int) -> None:
        super().__init__()
        c_in = image_channels if first else channels
        self.first = first
        self.v = _StackConv(c_in, 2 * channels, kernel, vertical=True)
        self.h = _StackConv(c_in, 2 * channels, kernel, vertical=False)
        self.v_to_h = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.h_out = nn.Conv2d(channels, channels, 1)
        self.cond_v = nn.Linear(latent_dim, 2 * channels)
        self.cond_h = nn.Linear(latent_dim, 2 * channels)
        # The small spatial map: z -> (spatial, H, W) once per image, then 1x1 to each gate.
        self.map_v = nn.Conv2d(spatial, 2 * channels, 1, bias=False) if spatial else None
        self.map_h = nn.Conv2d(spatial, 2 * channels, 1, bias=False) if spatial else None

    def biases(self, z: Tensor, zmap: Tensor | None) -> tuple[Tensor, Tensor]:
        bias_v = self.cond_v(z)[:, :, None, None]
        bias_h = self.cond_h(z)[:, :, None, None]
        if zmap is not None and self.map_v is not None and self.map_h is not None:
            bias_v = bias_v + self.map_v(zmap)
            bias_h = bias_h + self.map_h(zmap)
        return bias_v, bias_h

    def vertical(self, v: Tensor, bias_v: Tensor) -> Tensor:
        return self.v(v) + bias_v

    def horizontal(self, h: Tensor, from_v: Tensor) -> Tensor:
        """The horizontal stack given what it adds from the vertical one (rows above, and
        z), over whole images; ``PixelCNNDecoder.step`` computes the same one column at a
        time from flattened weights (keep the two in step: check_stepping compares them)."""
        h_conv = self.h(h)
        if self.first:  # type A: the current pixel is not seen
            h_conv = _right(h_conv)
        h_new = self.h_out(_gate(h_conv + from_v))
        return h_new if self.first else h + h_new

    def forward(self, v: Tensor, h: Tensor, z: Tensor, zmap: Tensor | None) -> tuple[Tensor, Tensor]:
        bias_v, bias_h = self.biases(z, zmap)
        v_pre = self.vertical(v, bias_v)
        return _gate(v_pre), self.horizontal(h, self.v_to_h(_down(v_pre)) + bias_h)


class PixelCNNDecoder(Decoder):
    """p(x|z) = prod_i p(x_i | x_<i, z) over pixels in raster order."""

    autoregressive = True
    stepping = True

    def __init__(self, image_shape, latent_dim, channels: int | str | None = None,
                 layers: int = 5, kernel: int = 5, spatial: int = 0, out_hidden: int | None = None,
                 param_channels: int | None = None, linear: int = 0):
        super().__init__()
        if len(image_shape) != 3:
            raise ValueError(f"pixelcnn models images (C, H, W), got shape {tuple(image_shape)}")
        channels = 32 if channels is None else _whole("channels", channels)
        layers, kernel, spatial, linear = (
            _whole(k, v) for k, v in (("layers", layers), ("kernel", kernel),
                                      ("spatial", spatial), ("linear", linear)))
        out_hidden = None if out_hidden is None else _whole("out_hidden", out_hidden)
        if channels < 1 or layers < 1 or kernel < 3 or kernel % 2 == 0 or spatial < 0:
            raise ValueError(f"pixelcnn needs channels >= 1, layers >= 1, an odd kernel >= 3 "
                             f"and spatial >= 0; got {channels}, {layers}, {kernel}, {spatial}")
        if linear and (linear != kernel):
            raise ValueError(f"pixelcnn's linear predictor reads the first layer's window: "
                             f"linear must be 0 (none) or the kernel, {kernel}; got {linear}")
        self.image_shape = tuple(image_shape)
        self.latent_dim = latent_dim
        _, height, width = self.image_shape
        self.spatial = spatial
        self.to_map = nn.Linear(latent_dim, spatial * height * width) if spatial else None
        self.layers = nn.ModuleList(
            GatedLayer(channels, kernel, latent_dim, i == 0, image_shape[0], spatial)
            for i in range(layers))
        hidden = out_hidden or channels
        n_params = param_channels or image_shape[0]
        self.out = nn.Sequential(nn.ReLU(), nn.Conv2d(channels, hidden, 1), nn.ReLU(),
                                 nn.Conv2d(hidden, n_params, 1))
        # The linear predictor: every output parameter plus a linear function of the
        # pixels before it in the first layer's window (the rows above, the pixels to the
        # left). A pixel's mean is then the left or upper neighbour's value, or a gradient
        # such as left + above - above-left, from the first step, where the gated stacks
        # must learn an identity through tanh and sigmoid; zero at the start, so that it
        # adds only what training finds.
        self.linear_v = self.linear_h = None
        if linear:
            self.linear_v = _StackConv(image_shape[0], n_params, kernel, True, bias=False)
            self.linear_h = _StackConv(image_shape[0], n_params, kernel, False, bias=False)
            for part in (self.linear_v, self.linear_h):
                nn.init.zeros_(part.conv.weight)

    @property
    def gated(self) -> list[GatedLayer]:
        """The layers, as their class (a ModuleList's items are typed as any Module)."""
        return [cast(GatedLayer, layer) for layer in self.layers]

    def _zmap(self, z: Tensor) -> Tensor | None:
        if self.to_map is None:
            return None
        return self.to_map(z).view(len(z), self.spatial, *self.image_shape[1:])

    # the images are required here (teacher forcing), where the base class lets a decoder
    # without them take none
    def forward(self, z: Tensor, x: Tensor) -> Tensor:  # type: ignore[override]
        x = x.reshape(len(z), *self.image_shape) * 2.0 - 1.0  # [0, 1] -> [-1, 1]
        zmap = self._zmap(z)
        v = h = x
        for layer in self.layers:
            v, h = layer(v, h, z, zmap)
        params = self.out(h)
        if self.linear_v is not None and self.linear_h is not None:
            params = params + _down(self.linear_v(x)) + _right(self.linear_h(x))
        return params

    # Stepping. When row r - 1 is complete, each layer's vertical stack is computed for
    # that one row (from the rows above it, kept), and what it adds to the horizontal
    # stack of row r is kept. Each layer's horizontal outputs along row r are kept too:
    # a pixel changes only the columns after it, so a position computes one new column a
    # layer, from the kernel's window of the layer below. A pixel thus costs about 1/H of
    # a forward pass in the vertical stack and one column a layer in the horizontal one.
    def start(self, z: Tensor) -> dict:
        zmap = self._zmap(z)
        width = self.image_shape[2]
        layers = self.gated
        biases = [layer.biases(z, zmap) for layer in layers]
        # the gated vertical features of each layer (its input first), row by row: the
        # last rows that a vertical output reads, (B, C, W) each (the whole image's rows
        # took 300 MB more in float64 for 304 lanes of 28x28)
        rows: list[list[Tensor]] = [[] for _ in range(len(layers) + 1)]
        # each layer's horizontal input along the current row (the image's row for the
        # first), after `left` columns of zero padding; the last holds the stack's output
        left = layers[0].h.pad[0]
        channels = [layers[0].v.conv.in_channels] + [layer.v.conv.out_channels // 2
                                                     for layer in layers]
        cols = [torch.zeros((len(z), c, left + width), device=z.device) for c in channels]
        # the horizontal stack's convolutions at one column are matrix products
        weights = [(int(layer.first), layer.h.conv.weight.flatten(1), layer.h.conv.bias,
                    layer.h_out.weight.flatten(1), layer.h_out.bias) for layer in layers]
        hidden, last = (cast(nn.Conv2d, self.out[i]) for i in (1, 3))
        head = (hidden.weight.flatten(1), hidden.bias, last.weight.flatten(1), last.bias)
        linear = None if self.linear_h is None else self.linear_h.conv.weight.flatten(1)
        return {"z": z, "x": torch.zeros((len(z), *self.image_shape), device=z.device),
                "biases": biases, "vrows": rows, "row": -1, "from_v": [], "cols": cols,
                "weights": weights, "head": head, "kw": layers[0].h.conv.kernel_size[1],
                "left": left, "linear": linear, "linear_v": None}

    def _vertical_row(self, state: dict, r: int) -> list[Tensor]:
        """Each layer's addend to the horizontal stack of row r, (B, 2C, W): the vertical
        stack's row r - 1 (zeros for row 0) through v_to_h, plus z's bias of row r."""
        layers = self.gated
        above = layers[0].v.pad[2]  # rows above a row that its vertical output reads
        vrows = state["vrows"]  # rows max(0, r - 1 - above) .. r - 1 of each, once pushed

        def push(kept: list[Tensor], row: Tensor) -> None:
            kept.append(row)
            del kept[:-(above + 1)]

        if r > 0:
            push(vrows[0], state["x"][:, :, r - 1] * 2.0 - 1.0)
        from_v = []
        for i, (layer, (bias_v, bias_h)) in enumerate(zip(layers, state["biases"],
                                                         strict=True)):
            if r == 0:  # nothing above the first row: the vertical stack adds zeros
                cols = state["cols"][i + 1]  # (B, C, left + W), of the rows' dtype
                v_pre = cols.new_zeros((len(cols), 2 * cols.shape[1], 1, self.image_shape[2]))
            else:
                # the rows as the slice of the whole image's rows was: last_row pads them
                # into a new tensor either way, so the same numbers in the same layout
                v_pre = layer.v.last_row(torch.stack(vrows[i], 2)) + _row(bias_v, r - 1)
                push(vrows[i + 1], _gate(v_pre)[:, :, 0])
            from_v.append((layer.v_to_h(v_pre) + _row(bias_h, r))[:, :, 0])
        if self.linear_v is not None:  # the linear predictor's rows above, as layer 0's
            state["linear_v"] = (self.linear_v.last_row(torch.stack(vrows[0], 2))[:, :, 0]
                                 if r > 0 else None)
        return from_v

    #: whether :meth:`step` takes its numpy form under the exact arithmetic (the tests turn
    #: it off to hold the two to the same bits)
    numpy_when_exact = True

    def step(self, state: dict, position: int) -> Tensor:
        r, c = divmod(position, self.image_shape[2])
        if state["row"] != r:
            state["row"], state["from_v"] = r, self._vertical_row(state, r)
        if self.numpy_when_exact and exact.active() and state["z"].device.type == "cpu":
            return torch.from_numpy(self._exact_step(state, r, c))
        cols, kw = state["cols"], state["kw"]  # padded by kw - 1
        for i, (first, w_h, b_h, w_out, b_out) in enumerate(state["weights"]):
            pre = state["from_v"][i][:, :, c]
            # the window ends at column c (type A: at c - 1, and at column 0 reads nothing)
            end = c + kw - first
            if end >= kw:
                pre = pre + F.linear(cols[i][:, :, end - kw: end].flatten(1), w_h, b_h)
            out = F.linear(_gate(pre), w_out, b_out)
            cols[i + 1][:, :, kw - 1 + c] = out if first else out + cols[i][:, :, end - 1]
        w1, b1, w2, b2 = state["head"]
        h = F.linear(torch.relu(cols[-1][:, :, kw - 1 + c]), w1, b1)
        params = F.linear(torch.relu(h), w2, b2)
        if state["linear"] is not None:
            # in the order of forward: (head + rows above) + pixels to the left; zeros
            # where forward's shifts bring in zeros (row 0, column 0)
            if state["linear_v"] is not None:
                params = params + state["linear_v"][:, :, c]
            if c > 0:
                params = params + F.linear(cols[0][:, :, c - 1: c - 1 + kw].flatten(1),
                                           state["linear"])
        return params

    @staticmethod
    def _exact_state(state: dict) -> dict:
        """The state's numbers for the numpy forms: the horizontal inputs as views, each
        linear map's weights on their grid."""
        ex = state.get("exact")
        if ex is None:
            ex = state["exact"] = {
                "cols": [t.numpy() for t in state["cols"]],
                "layers": [(first, exact.Linear(w_h, b_h), exact.Linear(w_out, b_out))
                           for first, w_h, b_h, w_out, b_out in state["weights"]],
                "head": (exact.Linear(*state["head"][:2]), exact.Linear(*state["head"][2:])),
                "linear": None if state["linear"] is None else exact.Linear(state["linear"]),
                "row": -1}
        return ex

    #: positions a product of :meth:`stepped` covers at most: its rows' vertical addends
    #: and horizontal products are kept at once (about 8 KB a position for 32 channels; a
    #: 512x512 photo compressed in 674 MB at 2^15, 499 MB before stepped)
    STEPPED_POSITIONS = 1 << 13

    def stepped(self, state: dict, x: Tensor) -> Tensor:
        """:meth:`step` at every position, given every pixel of ``x``: under the exact
        arithmetic on the CPU, each layer's horizontal stack over many positions in one
        product (the rows of :meth:`_exact_step`'s products, each on its own grid, so the
        same bits), the vertical one row by row as stepping computes it; else stepping."""
        if not (self.numpy_when_exact and exact.active() and state["z"].device.type == "cpu"):
            return super().stepped(state, x)
        b, _, height, width = x.shape
        state["x"].copy_(x)  # what feed would have written, before each row reads it
        ex = self._exact_state(state)
        kw = state["kw"]
        # the image's rows as the first horizontal input, after kw - 1 columns of zeros
        pixels = np.zeros((b, x.shape[1], height, kw - 1 + width))
        pixels[..., kw - 1:] = (x * 2.0 - 1.0).numpy()
        chunk = max(1, self.STEPPED_POSITIONS // (b * width))
        parts = []
        for top in range(0, height, chunk):  # a chunk of rows at a time: memory bounded
            rows = range(top, min(height, top + chunk))
            from_v, linear_v = [], []
            for r in rows:  # (B, 2C, W) a layer, and the linear predictor's (B, P, W)
                from_v.append([t.numpy() for t in self._vertical_row(state, r)])
                linear_v.append(None if state["linear_v"] is None
                                else state["linear_v"].numpy())
            parts.append(self._exact_rows(ex, kw, pixels[:, :, rows.start: rows.stop],
                                          from_v, linear_v))
        out = np.concatenate(parts, 1)  # (B, H, W, P)
        return torch.from_numpy(np.ascontiguousarray(
            out.transpose(0, 3, 1, 2).reshape(b, -1, height * width)))

    @staticmethod
    def _exact_rows(ex: dict, kw: int, pixels: np.ndarray, from_v: list[list[np.ndarray]],
                    linear_v: list[np.ndarray | None]) -> np.ndarray:
        """:meth:`_exact_step` at every column of some rows: ``pixels`` (B, C, R, kw-1+W)
        their padded pixels, ``from_v`` each row's vertical addends (B, 2C, W) a layer,
        ``linear_v`` each row's (B, P, W) or None; the parameters (B, R, W, P). A
        position's every number is the step's: the same operations on the same rows."""
        b, _, n_rows, padded = pixels.shape
        width = padded - kw + 1
        def windows(t: np.ndarray, columns: int) -> np.ndarray:
            """(B, R, columns, C_i*kw): the window of kw columns starting at each of the
            first ``columns`` columns of ``t`` (B, C_i, R, kw-1+W), channel-major as the
            step flattens it."""
            win = np.lib.stride_tricks.sliding_window_view(t, kw, axis=3)[:, :, :, :columns]
            return win.transpose(0, 2, 3, 1, 4).reshape(b, n_rows, columns, t.shape[1] * kw)

        # the pixels' windows ending at column c - 1, for c >= 1: the first layer's (type A)
        # and the linear predictor's
        left = windows(pixels, width - 1)
        h = pixels  # the layer's input (B, C_i, R, kw-1+W)
        for i, (first, h_conv, h_out) in enumerate(ex["layers"]):
            # pre (B, R, W, 2C): the vertical addends, plus the window's product where the
            # step adds it (type A's column 0 reads nothing)
            pre = np.stack([v[i] for v in from_v], 1).transpose(0, 1, 3, 2)
            if first:  # laid out along 2C first, for the gates and products that follow
                pre = pre.copy()
                pre[:, :, 1:] = pre[:, :, 1:] + h_conv(left)
            else:  # the windows ending at column c
                pre = pre + h_conv(windows(h, width))
            half = pre.shape[-1] // 2
            new = h_out(exact.tanh(pre[..., :half]) * exact.sigmoid(pre[..., half:]))
            if not first:
                new = new + h[:, :, :, kw - 1:].transpose(0, 2, 3, 1)
            h = np.zeros((b, new.shape[-1], n_rows, padded))
            h[..., kw - 1:] = new.transpose(0, 3, 1, 2)
        hidden, last = ex["head"]
        params = last(exact.relu(hidden(exact.relu(h[..., kw - 1:].transpose(0, 2, 3, 1)))))
        if ex["linear"] is not None:
            for k, lv in enumerate(linear_v):  # rows above (none for row 0)
                if lv is not None:
                    params[:, k] = params[:, k] + lv.transpose(0, 2, 1)
            params[:, :, 1:] = params[:, :, 1:] + ex["linear"](left)
        return params

    def _exact_step(self, state: dict, r: int, c: int) -> np.ndarray:
        """:meth:`step`'s column under :func:`acnkit.exact.portable`, in numpy: the same
        operations in the same order, each from :mod:`acnkit.exact.arrays` (so the same
        bits), on numpy views of the state's tensors (float64 on the CPU there), without
        the mode's dispatch of each small operation (a step's are a few dozen numbers)."""
        ex = self._exact_state(state)
        if ex["row"] != r:  # the vertical stack's addends of this row, as arrays
            ex["row"], ex["from_v"] = r, [t.numpy() for t in state["from_v"]]
            ex["linear_v"] = None if state["linear_v"] is None else state["linear_v"].numpy()
        cols, kw = ex["cols"], state["kw"]
        b = len(cols[0])
        for i, (first, h_conv, h_out) in enumerate(ex["layers"]):
            pre = ex["from_v"][i][:, :, c]
            end = c + kw - first
            if end >= kw:
                pre = pre + h_conv(cols[i][:, :, end - kw: end].reshape(b, -1))
            half = pre.shape[1] // 2
            out = h_out(exact.tanh(pre[:, :half]) * exact.sigmoid(pre[:, half:]))
            cols[i + 1][:, :, kw - 1 + c] = out if first else out + cols[i][:, :, end - 1]
        hidden, last = ex["head"]
        params = last(exact.relu(hidden(exact.relu(cols[-1][:, :, kw - 1 + c]))))
        if ex["linear"] is not None:
            if ex["linear_v"] is not None:
                params = params + ex["linear_v"][:, :, c]
            if c > 0:
                params = params + ex["linear"](cols[0][:, :, c - 1: c - 1 + kw].reshape(b, -1))
        return params

    def feed(self, state: dict, position: int, values: Tensor) -> None:
        b, c = len(state["z"]), self.image_shape[0]
        values = values.reshape(b, c)
        state["x"].view(b, c, -1)[:, :, position] = values
        column = position % self.image_shape[2]
        state["cols"][0][:, :, state["left"] + column] = values * 2.0 - 1.0


def receptive_field_complete(image_shape: tuple[int, ...], layers: int, kernel: int) -> bool:
    """Whether the last pixel reads every earlier pixel (a sufficient test): L layers read
    L * (kernel // 2) + 1 rows up and pixels to the left, L * (kernel // 2) columns either
    side in the rows above."""
    _, height, width = image_shape
    return layers * (kernel // 2) >= max(height - 1, width - 1)


@acnkit.hookimpl
def register_decoders(register):
    register("pixelcnn", PixelCNNDecoder,
             description="gated PixelCNN, autoregressive, z a bias of every layer "
                         "(--decoder-option channels=32 layers=5 kernel=5 spatial=0 "
                         "linear=0, or the kernel for a linear predictor)")
