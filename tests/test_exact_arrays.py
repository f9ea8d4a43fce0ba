"""acnkit.exact.arrays gives the bits of the mode's replacements, and the logistic
mixture's numpy CDF those of its torch code under the mode: a file written with either
decodes with the other."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from acnkit_plugins.logistic import DiscretisedLogisticMixture

from acnkit.exact import active, arrays, portable


def _hard_values(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Values of every size: tiny, huge, exact zeros, ties, negative."""
    x = rng.normal(size=shape) * 10.0 ** rng.integers(-12, 4, size=shape)
    x[rng.random(shape) < 0.05] = 0.0
    x[rng.random(shape) < 0.05] = 0.5
    return x


def _bits(a: np.ndarray | torch.Tensor) -> np.ndarray:
    a = a.numpy() if isinstance(a, torch.Tensor) else a
    return np.ascontiguousarray(a, dtype=np.float64).view(np.int64)


@pytest.mark.parametrize("name", ["exp", "expm1", "log", "log1p", "sigmoid", "tanh",
                                  "logsigmoid"])
def test_elementwise_match_the_mode(name: str) -> None:
    rng = np.random.default_rng(0)
    x = _hard_values(rng, (4000,))
    if name in ("log", "log1p"):
        x = np.abs(x)
    with portable():
        expected = getattr(torch, name, None) or getattr(F, name)
        want = expected(torch.from_numpy(x))
    np.testing.assert_array_equal(_bits(getattr(arrays, name)(x)), _bits(want))


@pytest.mark.parametrize("n", [1, 3, 5, 16])
def test_reductions_match_the_mode(n: int) -> None:
    rng = np.random.default_rng(n)
    x = _hard_values(rng, (7, n, 11))
    t = torch.from_numpy(x)
    with portable():
        want = {"sum": t.sum(1), "cumsum": torch.cumsum(t, 1),
                "softmax": torch.softmax(t, 1), "log_softmax": F.log_softmax(t, 1)}
    got = {"sum": arrays.sum_in_order(x, 1), "cumsum": arrays.cumsum(x, 1),
           "softmax": arrays.softmax(x, 1), "log_softmax": arrays.log_softmax(x, 1)}
    for key, value in want.items():
        np.testing.assert_array_equal(_bits(got[key]), _bits(value), err_msg=key)


def test_cumsum_keeps_infinities_as_numpy_sums_them() -> None:
    x = np.array([[1.0, np.inf, 2.0], [1.0, 2.0, 3.0]])
    with portable():
        want = torch.cumsum(torch.from_numpy(x), 1)
    np.testing.assert_array_equal(arrays.cumsum(x, 1), want.numpy())


def test_sum_in_order_refuses_a_long_axis() -> None:
    with pytest.raises(ValueError, match="at most 16"):
        arrays.sum_in_order(np.zeros(17), 0)


def test_active_says_whether_the_mode_is_on() -> None:
    assert not active()
    with portable():
        assert active()
        with portable():
            assert active()
        assert active()
    assert not active()


@pytest.mark.parametrize(("channels", "components", "levels"),
                         [(1, 5, 256), (3, 5, 256), (3, 2, 17), (3, 1, 2), (2, 4, 256)])
def test_logistic_numpy_cdf_gives_the_bits_of_its_torch_code(
        channels: int, components: int, levels: int) -> None:
    loss = DiscretisedLogisticMixture(levels=levels, channels=channels,
                                      components=components)
    g = torch.Generator().manual_seed(channels * 100 + components)
    b, h, w = 6, 2, 3
    params = torch.randn(b, loss.param_channels(channels), h, w, generator=g,
                         dtype=torch.float64) * 3
    params[0] *= 40  # components far apart, scales at the clamp, weights near one-hot
    params[1] /= 1000
    levels_of = torch.randint(0, levels, (b, channels, h, w), generator=g)
    levels_of[2] = 0
    levels_of[3] = levels - 1
    x = levels_of.double() / (levels - 1)
    edges = torch.randint(-1, levels + 2, (b, channels, h, w, 7), generator=g)
    try:
        with portable():
            loss.numpy_when_exact = False
            want = loss.cdf(params, x)(edges)
            loss.numpy_when_exact = True
            got = loss.cdf(params, x)(edges)
    finally:
        loss.numpy_when_exact = True
    assert got.dtype == want.dtype == torch.float64
    assert got.shape == want.shape
    np.testing.assert_array_equal(_bits(got), _bits(want))


@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_the_mode(bias: bool) -> None:
    rng = np.random.default_rng(7)
    w = torch.from_numpy(rng.normal(size=(9, 20)))
    b = torch.from_numpy(rng.normal(size=9)) if bias else None
    x = _hard_values(rng, (3, 4, 20))
    x[0, 0] = 0.0  # a row of zeros
    with portable():
        want = F.linear(torch.from_numpy(x), w, b)
    np.testing.assert_array_equal(_bits(arrays.Linear(w, b)(x)), _bits(want))
    np.testing.assert_array_equal(_bits(arrays.relu(x)), _bits(torch.relu(torch.from_numpy(x))))


@pytest.mark.parametrize("loss_name", ["bernoulli", "categorical"])
def test_the_default_cdf_in_numpy_gives_the_bits_of_its_torch_code(loss_name, monkeypatch):
    """Loss.cdf's default (the probabilities summed) sums and looks up in numpy under the
    exact arithmetic: the same bits as its torch code under the mode."""
    from acnkit_plugins.bernoulli import BernoulliLoss
    from acnkit_plugins.categorical import CategoricalLoss

    from acnkit.interfaces import Loss

    loss = BernoulliLoss() if loss_name == "bernoulli" else CategoricalLoss(levels=17)
    g = torch.Generator().manual_seed(5)
    shape = (5, 1, 3, 4)
    params = torch.randn(5, loss.param_channels(1), 3, 4, generator=g, dtype=torch.float64) * 6
    x = torch.randint(0, loss.levels, shape, generator=g).double() / (loss.levels - 1)
    edges = torch.randint(-1, loss.levels + 2, (*shape, 3), generator=g)
    with portable():
        got = Loss.cdf(loss, params, x)(edges)
        monkeypatch.setattr(arrays, "active", lambda: False)
        want = Loss.cdf(loss, params, x)(edges)
    assert got.shape == want.shape
    np.testing.assert_array_equal(_bits(got), _bits(want))
