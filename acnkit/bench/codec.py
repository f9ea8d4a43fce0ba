"""``acnkit bench codec``: acnkit's files beside the codecs people use, on the same images."""

from __future__ import annotations

import itertools
import math
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..codec import compress, decompress, same_images
from ..errors import UsageError
from ..files import dataset_images, run_dataset
from ..registry import get_registry
from ..trained import load_run

#: the widest side WebP takes
WEBP_MAX_SIDE = 16383


@dataclass(frozen=True)
class Classic:
    """A codec people use, as the bench runs it: on each of ``layouts`` (the images as it
    is given them; the smallest file kept), encoded and decoded through files, timed both
    ways, the decoded pixels checked against the input. ``program``: the command it needs
    on PATH (None: Python's own library), ``package`` the Debian package that ships it."""

    name: str
    layouts: tuple[str, ...]
    encode: Callable[[Path, Path], None]
    decode: Callable[[Path, Path], None]
    program: str | None = None
    package: str | None = None


def _call(*command: str | Path, cwd: Path | None = None) -> None:
    try:
        subprocess.run([str(c) for c in command], check=True, capture_output=True,
                       timeout=3600, cwd=cwd)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        raise UsageError(f"{command[0]} failed: {exc}") from None


def _in_process(module: str, **options: Any) -> tuple[Callable[[Path, Path], None],
                                                      Callable[[Path, Path], None]]:
    """A compressor of Python's standard library, on a file's bytes."""
    import importlib

    lib: Any = importlib.import_module(module)

    def encode(src: Path, out: Path) -> None:
        out.write_bytes(lib.compress(src.read_bytes(), **options))

    def decode(out: Path, back: Path) -> None:
        back.write_bytes(lib.decompress(out.read_bytes()))

    return encode, decode


def _png_save(src: Path, out: Path) -> None:
    from PIL import Image

    with Image.open(src) as img:
        img.save(out, format="PNG", optimize=True)


def _png_load(out: Path, back: Path) -> None:
    from PIL import Image

    with Image.open(out) as img:
        img.load()
        img.save(back, format="PNG", compress_level=0)


def _zpaq(src: Path, out: Path) -> None:
    _call("zpaq", "a", out.name, src.name, "-m5", cwd=src.parent)


def _unzpaq(out: Path, back: Path) -> None:
    folder = back.parent / f"{back.name}.d"
    _call("zpaq", "x", out.name, "-to", folder, cwd=out.parent)
    next(p for p in folder.rglob("*") if p.is_file()).rename(back)


def classics(levels: int) -> list[Classic]:
    """The codecs the bench sets beside acnkit's files: for 0/1 images those of bilevel
    images (on the packed bits, 8 pixels a byte, or 1-bit pictures), for grey and colour
    those of 8-bit images (on the raw bytes, pixel by pixel, or 8-bit pictures)."""
    import lzma

    rows = [Classic("gzip -9", ("raw",), *_in_process("gzip", compresslevel=9, mtime=0)),
            Classic("bzip2 -9", ("raw",), *_in_process("bz2", compresslevel=9)),
            Classic("xz -9e", ("raw",), *_in_process("lzma",
                                                      preset=9 | lzma.PRESET_EXTREME))]
    jxl = Classic("jpeg xl (cjxl -d 0 -e 9)", ("tall png", "mosaic png"),
                  lambda src, out: _call("cjxl", "-d", "0", "-e", "9", "--quiet", src, out),
                  lambda out, back: _call("djxl", out, back, "--quiet"), "cjxl",
                  "libjxl-tools")
    zpaq = Classic("zpaq -m5", ("raw", "tall pbm") if levels == 2 else ("raw",), _zpaq,
                   _unzpaq, "zpaq", "zpaq")
    if levels == 2:
        return [*rows, Classic("png (1-bit)", ("tall png",), _png_save, _png_load),
                Classic("jbig (pbmtojbg -q)", ("tall pbm", "mosaic pbm"),
                        lambda src, out: _call("pbmtojbg", "-q", src, out),
                        lambda out, back: _call("jbgtopbm", out, back), "pbmtojbg",
                        "jbigkit-bin"), zpaq, jxl]
    webp = Classic("webp lossless (cwebp -lossless -z 9)", ("tall png", "mosaic png"),
                   lambda src, out: _call("cwebp", "-quiet", "-lossless", "-z", "9", src,
                                          "-o", out),
                   lambda out, back: _call("dwebp", "-quiet", out, "-o", back), "cwebp",
                   "webp")
    return [*rows, Classic("png (Pillow, optimize)", ("tall png", "mosaic png"), _png_save,
                           _png_load), webp, jxl, zpaq]


def _layouts(images: np.ndarray) -> dict[str, np.ndarray]:
    """The images as one tall picture and as a near-square mosaic (empty tiles are 0):
    (H, W) for one channel, (H, W, C) for several."""
    n, c, h, w = len(images), images.shape[1], images.shape[-2], images.shape[-1]
    pixels = images.reshape(n, c, h, w).transpose(0, 2, 3, 1)  # channels last
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    tiles = np.zeros((rows * cols, h, w, c), dtype=images.dtype)
    tiles[:n] = pixels
    mosaic = tiles.reshape(rows, cols, h, w, c).transpose(0, 2, 1, 3, 4).reshape(
        rows * h, cols * w, c)
    tall = pixels.reshape(n * h, w, c)
    if c == 1:
        tall, mosaic = tall[..., 0], mosaic[..., 0]
    return {"tall": tall, "mosaic": mosaic}


def _pbm(picture: np.ndarray) -> bytes:
    """A raw PBM (P4): 1 is black, rows padded to whole bytes."""
    h, w = picture.shape
    return f"P4\n{w} {h}\n".encode() + np.packbits(picture.astype(bool), axis=1).tobytes()


def _inputs(images: np.ndarray, levels: int, folder: Path) -> dict[str, tuple[Path, Any]]:
    """Each layout's file, and what decoding it must give back (bytes, or pixels)."""
    from PIL import Image

    n = len(images)
    inputs: dict[str, tuple[Path, Any]] = {}
    if levels == 2:
        raw = np.packbits(images.reshape(n, -1), axis=1).tobytes()
    else:  # pixel by pixel, channels interleaved, as an image's bytes are held
        raw = np.ascontiguousarray(images.transpose(0, 2, 3, 1)).tobytes()
    (folder / "raw.bin").write_bytes(raw)
    inputs["raw"] = (folder / "raw.bin", raw)
    for layout, picture in _layouts(images).items():
        if levels == 2:
            (folder / f"{layout}.pbm").write_bytes(_pbm(picture))
            # Pillow reads a 1-bit picture as True for white: the paper, 0 here
            inputs[f"{layout} pbm"] = (folder / f"{layout}.pbm", ~picture.astype(bool))
            img = Image.fromarray(~picture.astype(bool))
        else:
            img = Image.fromarray(picture, "RGB" if picture.ndim == 3 else "L")
        img.save(folder / f"{layout}.png", compress_level=1)
        inputs[f"{layout} png"] = (folder / f"{layout}.png", np.asarray(img))
    return inputs


def _same(back: Path, expected: Any) -> bool:
    from PIL import Image

    if isinstance(expected, bytes):
        return back.read_bytes() == expected
    with Image.open(back) as img:
        got = np.asarray(img)
    if expected.dtype == bool:  # a decoder may write 1-bit pictures as 0/1 or 0/255 grey
        got = got > 0
    if got.ndim == 3 and expected.ndim == 2 and (got[..., :3] == got[..., :1]).all():
        got = got[..., 0]  # grey decoded as R = G = B (WebP has no grey pictures)
    return got.shape == expected.shape and bool(np.array_equal(got, expected))


def external_codecs(images: np.ndarray, levels: int = 2) -> list[dict[str, Any]]:
    """Every codec of :func:`classics` on the same images, each in the layout it codes
    smallest, with its seconds each way and whether it decoded to the input; a program
    not on PATH is reported as skipped, naming its package."""
    n = len(images)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        inputs = _inputs(images, levels, folder)
        for codec in classics(levels):
            if codec.program is not None and shutil.which(codec.program) is None:
                rows.append({"codec": codec.name, "skipped": f"{codec.program} not on PATH "
                             f"(Debian package {codec.package})"})
                continue
            tried: dict[str, dict[str, Any]] = {}
            for layout in codec.layouts:
                src, expected = inputs[layout]
                if codec.program == "cwebp" and max(expected.shape[:2]) > WEBP_MAX_SIDE:
                    continue  # WebP caps a side at 16,383 pixels
                tag = f"{codec.name.split()[0]}-{layout.replace(' ', '-')}"
                out, back = folder / f"{tag}.out", folder / f"{tag}.back{src.suffix}"
                t0 = time.perf_counter()
                codec.encode(src, out)
                t1 = time.perf_counter()
                codec.decode(out, back)
                t2 = time.perf_counter()
                tried[layout] = {"bytes": out.stat().st_size, "compress_seconds": t1 - t0,
                                 "decompress_seconds": t2 - t1,
                                 "round_trip": _same(back, expected)}
            best = min(tried, key=lambda k: tried[k]["bytes"])
            rows.append({"codec": codec.name, "layout": best, **tried[best],
                         "bits_per_image": 8 * tried[best]["bytes"] / n,
                         "tried": {k: v["bytes"] for k, v in tried.items()}})
    return rows


def floor_bits(intensity: np.ndarray) -> float:
    """Bits per image no codec beats on average for pixels sampled from their grey levels:
    the sum of each pixel's binary entropy given its level."""
    p = np.clip(intensity.reshape(len(intensity), -1).astype(np.float64), 0.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -(np.where(p > 0, p * np.log2(p), 0.0) + np.where(p < 1, (1 - p) * np.log2(1 - p), 0.0))
    return float(h.sum(1).mean())


def bench_codec(runs: list[str], data: str, split: str = "test",
                limit: int | None = None, lanes: int | None = None,
                classic: bool = True, pixels: str | None = None,
                arithmetics: tuple[str, ...] = ("exact",)) -> dict[str, Any]:
    """Compress and decompress the same images with each run in both modes, check the round
    trip, and set the bytes and seconds beside the model's figure and the codecs people
    use for such images (bilevel ones for 0/1 images, 8-bit ones for grey and colour);
    ``arithmetics``: the portable file (``exact``), the machine-bound one (``machine``,
    the machine's floats), or both side by side."""
    rows: list[dict[str, Any]] = []
    images, floor, levels = None, None, 2
    for run in runs:
        loaded = load_run(run, "cpu")
        c = loaded.config
        dataset = run_dataset(loaded, data)
        x = dataset_images(loaded, data, split, dataset)[:limit]
        levels = loaded.model.levels
        if dataset.intensity is not None and levels == 2:
            floor = floor_bits(dataset.intensity(split)[:limit])
        if images is not None and (images.shape != x.shape or not np.array_equal(images, x)):
            raise UsageError(f"run {run} reads {data} differently (another --data-seed, "
                             f"--pixels or --crop); compare runs on the same images")
        images = x
        for mode, arithmetic in itertools.product(("ordered", "set"), arithmetics):
            t0 = time.perf_counter()
            result = compress(loaded.model, x, mode, lanes=lanes, plain_if_smaller=False,
                              portable=arithmetic == "exact")
            t1 = time.perf_counter()
            stats: dict[str, Any] = {}
            out = decompress(loaded.model, result.data, stats=stats)
            t2 = time.perf_counter()
            rows.append({
                "codec": f"acnkit {c.prior}" + (" machine" if arithmetic == "machine" else ""),
                "arithmetic": result.header["arithmetic"], "run": str(run), "mode": mode,
                "bytes": len(result.data), "bits_per_image": result.bits_per_image,
                "model_bits_per_image": result.model_bits_per_image,
                "overhead_percent": result.overhead_percent,
                "compress_seconds": t1 - t0, "decompress_seconds": t2 - t1,
                "decoder": c.decoder, **stats,
                "pixel_step_ms": 1000 * stats["pixel_loop_seconds"] / max(1, stats["pixel_steps"]),
                "round_trip": same_images(x, out, mode),
            })
    if not runs:  # the other codecs alone, on the data set's own pixels or binarised
        dataset = get_registry().create("dataset", data, pixels=pixels or "binary",
                                        given={"pixels"} if pixels == "native" else set())
        x = dataset.test_x if split == "test" else dataset.train_x
        images = x.numpy().astype(np.uint8)[:limit]
        levels = int(getattr(dataset, "levels", 2))
    assert images is not None
    dims = int(images[0].size)
    others = external_codecs(images, levels) if classic else []
    for row in [*rows, *others]:
        if "bits_per_image" in row:
            row["bits_per_dim"] = row["bits_per_image"] / dims
    return {"data": data, "split": split, "images": len(images), "pixels": dims,
            "levels": levels, "image_shape": list(images.shape[1:]), "acnkit": rows,
            "classic": others, "floor_bits_per_image": floor}
