"""The compiled exact kernels (acnkit/exact/_kernels.c) against the numpy definitions they
speed up: the same bits for every input, special values included, or a portable file made
where they are built would not open where they are not."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from acnkit.exact import functions as fn
from acnkit.exact import layers
from acnkit.exact.bits import EXACT, np_exponent, np_pow2

pytestmark = pytest.mark.skipif(fn.KERNELS is None, reason="the C kernels were not built here")


def inputs() -> np.ndarray:
    rng = np.random.default_rng(0)
    special = [0.0, -0.0, np.inf, -np.inf, np.nan, 5e-324, -5e-324, 2.0**-1022, 2.0**-1000,
               1e-300, 1e300, -1e300, 709.78, 710.0, -745.2, -746.0, 40.0, -40.0,
               40.0 - 2.0**-10, -40.0 + 2.0**-10, 0.5, -0.5, 1.0, 2.0, np.sqrt(2.0),
               np.nextafter(np.sqrt(2.0), 3.0), np.nextafter(np.sqrt(2.0), 0.0),
               np.float64(np.float32(0.1))]
    # the sigmoid table's own points and their neighbours
    points = np.arange(-41.0, 41.0, 2.0**-7)
    around = np.concatenate([points, np.nextafter(points, np.inf), np.nextafter(points, -np.inf)])
    scales = [rng.standard_normal(20000) * s for s in (1e-6, 0.1, 1.0, 5.0, 30.0, 300.0)]
    wide = rng.uniform(-800, 800, 20000)
    logs = np.exp(rng.uniform(-745, 709, 20000))
    return np.concatenate([special, around, *scales, wide, logs, -logs])


def same(a: np.ndarray, b: np.ndarray) -> bool:
    """Bit for bit, every NaN taken as one."""
    both_nan = np.isnan(a) & np.isnan(b)
    return bool(np.all(both_nan | (a.view(np.int64) == b.view(np.int64))))


@pytest.mark.parametrize("name", ["exp", "log", "sigmoid", "tanh", "erfc", "normal_cdf"])
def test_each_kernel_gives_the_numpy_definition_s_bits(name):
    x = inputs()
    compiled = getattr(fn, f"_{name}")
    reference = getattr(fn, f"_np_{name}")
    assert compiled is not reference
    with np.errstate(all="ignore"):
        want = reference(x)
    got = compiled(x)
    assert same(got, want), x[~((np.isnan(got) & np.isnan(want)) | (got == want))][:10]
    # shapes and non-contiguous views come back as they went in
    grid = x[:1200].reshape(30, 40)[:, ::2]
    with np.errstate(all="ignore"):
        assert same(compiled(grid), reference(grid)) and compiled(grid).shape == (30, 20)
    assert compiled(np.float64(0.25)).shape == ()


def test_the_linear_layer_s_rows_are_scaled_as_numpy_scales_them():
    rng = np.random.default_rng(1)
    w = layers.Weights(torch.from_numpy(rng.standard_normal((37, 50)) / 7))
    a = rng.standard_normal((64, 50)) * np.exp(rng.uniform(-20, 20, (64, 1)))
    a[3] = 0.0  # a row of zeros: the coarsest grid
    a[5, 7] = np.inf
    a[6, 2] = np.nan
    bias = rng.standard_normal(37)
    grid = EXACT - w.bound_exponent - np_exponent(np.abs(a).max(-1, keepdims=True))
    with np.errstate(all="ignore"):
        want = np.round(a * np_pow2(grid)) @ w.np_qt
        want *= np_pow2(-grid)
        want *= w.np_scale
        want += bias
        got = layers._compiled_linear(a, w, bias)
    assert same(got, want)
    got3 = layers._compiled_linear(a.reshape(4, 16, 50), w, None)
    assert got3.shape == (4, 16, 37)


@pytest.mark.parametrize(("kernel", "padding", "with_bias"),
                         [((3, 5), (0, 0), True), ((3, 5), (2, 1), False), ((1, 1), (0, 0), True),
                          ((2, 3), (1, 1), True)])
def test_the_convolution_s_compiled_path_gives_the_torch_path_s_bits(monkeypatch, kernel,
                                                                       padding, with_bias):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((5, 6, 7, 9)) * np.exp(rng.uniform(-20, 20, (5, 1, 1, 1)))
    x[1] = 0.0  # an image of zeros: the coarsest grid
    x[3, 2, 4, 4] = np.nan  # a NaN spreads through its image's windows on both paths
    weight = torch.from_numpy(rng.standard_normal((4, 6, *kernel)))
    bias = torch.from_numpy(rng.standard_normal(4)) if with_bias else None
    got = layers.conv2d(torch.from_numpy(x), weight, bias, padding=padding)
    monkeypatch.setattr(layers, "KERNELS", None)
    want = layers.conv2d(torch.from_numpy(x), weight, bias, padding=padding)
    assert got.shape == want.shape == (5, 4, 7 + 2 * padding[0] - kernel[0] + 1,
                                       9 + 2 * padding[1] - kernel[1] + 1)
    assert same(got.numpy(), want.numpy())
    assert not np.isnan(got[0].numpy()).any()


def test_bad_buffers_are_refused_not_overrun():
    k = fn.KERNELS
    with pytest.raises(ValueError):
        k.exp(np.zeros(4), np.zeros(3))
    with pytest.raises(ValueError):
        k.sigmoid(np.zeros(4), np.zeros(4), np.zeros(10))
    with pytest.raises(ValueError):
        k.quantize_rows(np.zeros(10), np.zeros(10), 3, 20)
    with pytest.raises((BufferError, TypeError)):
        k.exp(np.zeros(4), np.zeros(8)[::2])  # a strided view is not one block of memory


def _cpu_has(*flags: str) -> bool:
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        return False
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    return all(f in line.split() for f in flags)


_PROBE = """
import importlib.machinery, importlib.util, sys
import numpy as np
sys.path.insert(0, {root!r})
from acnkit.exact import functions as fn
spec = importlib.util.spec_from_file_location("_kernels", {lib!r})
k = importlib.util.module_from_spec(spec); spec.loader.exec_module(k)
fn.KERNELS = None
k.set_constants(fn._EXP_TERMS, fn._ERFC_P, fn._LOG_TERMS, fn.LN2_HI, fn.LN2_LO, fn.INV_LN2,
                fn.SQRT2, fn.SQRT_HALF, fn.EXP_MIN, fn.EXP_MAX, float(fn.SIGMOID_RANGE),
                float(2 ** fn.SIGMOID_BITS))
x = np.load({inputs!r})
outs = []
for name in ("exp", "log", "erfc", "normal_cdf"):
    o = np.empty_like(x); getattr(k, name)(x, o); outs.append(o)
for name in ("sigmoid", "tanh"):
    o = np.empty_like(x); getattr(k, name)(x, o, fn._sigmoid_table()); outs.append(o)
np.save({out!r}, np.stack(outs))
"""


@pytest.mark.parametrize("arch,flags", [("x86-64", ()), ("x86-64-v3", ("avx2", "fma")),
                                        ("x86-64-v4", ("avx512f", "avx512dq"))])
def test_the_kernels_built_for_each_kind_of_cpu_agree(tmp_path, arch, flags):
    """The file built alone for baseline x86-64 (SSE2, scalar), AVX2 and AVX-512, each with
    setup.py's flags: every function gives the numpy definition's bits (a machine without
    AVX-512 runs another clone than this one; that clone must not differ)."""
    import os
    import shutil
    import subprocess
    import sys
    import sysconfig
    from pathlib import Path

    if shutil.which("gcc") is None or not sys.platform.startswith("linux"):
        pytest.skip("needs gcc on Linux")
    if os.uname().machine != "x86_64" or not _cpu_has(*flags):
        pytest.skip(f"this CPU cannot run {arch} code")
    root = Path(__file__).resolve().parents[1]
    lib = tmp_path / "_kernels.so"
    cmd = ["gcc", "-shared", "-fPIC", f"-march={arch}", "-DACNKIT_NO_CLONES",
           f"-I{sysconfig.get_paths()['include']}", "-O3", "-ffp-contract=off",
           "-fno-fast-math", "-fno-unsafe-math-optimizations", "-fexcess-precision=standard",
           "-fno-trapping-math", "-fno-math-errno", str(root / "acnkit/exact/_kernels.c"),
           "-o", str(lib)]
    subprocess.run(cmd, check=True, capture_output=True)
    x = inputs()
    np.save(tmp_path / "x.npy", x)
    code = _PROBE.format(root=str(root), lib=str(lib), inputs=str(tmp_path / "x.npy"),
                         out=str(tmp_path / "o.npy"))
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=120)
    got = np.load(tmp_path / "o.npy")
    with np.errstate(all="ignore"):
        want = [fn._np_exp(x), fn._np_log(x), fn._np_erfc(x), fn._np_normal_cdf(x),
                fn._np_sigmoid(x), fn._np_tanh(x)]
    for g, w in zip(got, want, strict=True):
        assert same(g, w)
