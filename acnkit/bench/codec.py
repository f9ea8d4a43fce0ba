"""``acnkit bench codec``: acnkit's files beside the codecs people use, on the same images."""

from __future__ import annotations

import math
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..codec import compress, decompress, same_images
from ..errors import UsageError
from ..files import dataset_images, run_dataset
from ..trained import load_run

#: codecs for bilevel images run as programs when they are on PATH: name -> (program,
#: packages that ship it)
EXTERNAL = {"jbig (pbmtojbg -q)": ("pbmtojbg", "jbigkit-bin"), "zpaq -m5": ("zpaq", "zpaq"),
            "jpeg xl (cjxl -d 0 -e 9)": ("cjxl", "libjxl-tools")}


def classic_codecs(images: np.ndarray) -> list[dict[str, Any]]:
    """Bytes of general-purpose codecs on the same binary images: gzip -9, bzip2 -9 and
    xz -9e of the packed bits (8 pixels a byte), and one 1-bit PNG holding every image."""
    import bz2
    import gzip
    import io
    import lzma

    from PIL import Image

    n = len(images)
    flat = images.reshape(n, -1)
    packed = np.packbits(flat, axis=1).tobytes()
    width = images.shape[-1]
    sheet = Image.fromarray(flat.reshape(-1, width).astype(bool))  # images stacked
    png = io.BytesIO()
    sheet.save(png, format="PNG", optimize=True)
    sizes = {
        "gzip -9": len(gzip.compress(packed, compresslevel=9, mtime=0)),
        "bzip2 -9": len(bz2.compress(packed, compresslevel=9)),
        "xz -9e": len(lzma.compress(packed, preset=9 | lzma.PRESET_EXTREME)),
        "png (1-bit)": len(png.getvalue()),
    }
    rows = [{"codec": k, "bytes": v, "bits_per_image": 8 * v / n} for k, v in sizes.items()]
    return rows + external_codecs(images)


def _layouts(images: np.ndarray) -> dict[str, np.ndarray]:
    """The images as one tall picture and as a near-square mosaic (empty tiles are 0)."""
    n, h, w = len(images), images.shape[-2], images.shape[-1]
    flat = images.reshape(n, h, w).astype(bool)
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    tiles = np.zeros((rows * cols, h, w), dtype=bool)
    tiles[:n] = flat
    mosaic = tiles.reshape(rows, cols, h, w).transpose(0, 2, 1, 3).reshape(rows * h, cols * w)
    return {"tall": flat.reshape(n * h, w), "mosaic": mosaic}


def _pbm(picture: np.ndarray) -> bytes:
    """A raw PBM (P4): 1 is black, rows padded to whole bytes."""
    h, w = picture.shape
    return f"P4\n{w} {h}\n".encode() + np.packbits(picture, axis=1).tobytes()


def external_codecs(images: np.ndarray) -> list[dict[str, Any]]:
    """JBIG, zpaq -m5 and lossless JPEG XL on the same images, each in the layout it codes
    smallest (tall or mosaic; zpaq: the packed bits or the tall PBM); a program not on PATH
    is reported as skipped, naming its package."""
    from PIL import Image

    n = len(images)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        inputs: dict[str, Path] = {}
        for layout, picture in _layouts(images).items():
            inputs[f"{layout} pbm"] = folder / f"{layout}.pbm"
            inputs[f"{layout} pbm"].write_bytes(_pbm(picture))
            inputs[f"{layout} png"] = folder / f"{layout}.png"
            Image.fromarray(~picture).save(inputs[f"{layout} png"], optimize=True)
        inputs["packed bits"] = folder / "packed.bin"
        inputs["packed bits"].write_bytes(np.packbits(images.reshape(n, -1), axis=1).tobytes())
        for codec, (program, package) in EXTERNAL.items():
            if shutil.which(program) is None:
                rows.append({"codec": codec, "skipped": f"{program} not on PATH "
                             f"(Debian package {package})"})
                continue
            sizes = {}
            for layout in _candidates(program):
                out = folder / f"{program}-{layout.replace(' ', '-')}.out"
                _run(program, inputs[layout], out)
                sizes[layout] = out.stat().st_size
            best = min(sizes, key=lambda k: sizes[k])
            rows.append({"codec": codec, "layout": best, "bytes": sizes[best],
                         "bits_per_image": 8 * sizes[best] / n, "tried": sizes})
    return rows


def _candidates(program: str) -> list[str]:
    return {"pbmtojbg": ["tall pbm", "mosaic pbm"], "cjxl": ["tall png", "mosaic png"],
            "zpaq": ["packed bits", "tall pbm"]}[program]


def _run(program: str, source: Path, out: Path) -> None:
    commands = {"pbmtojbg": ["pbmtojbg", "-q", str(source), str(out)],
                "cjxl": ["cjxl", "-d", "0", "-e", "9", "--quiet", str(source), str(out)],
                "zpaq": ["zpaq", "a", str(out), source.name, "-m5"]}
    try:
        subprocess.run(commands[program], check=True, capture_output=True, timeout=3600,
                       cwd=source.parent)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        raise UsageError(f"{program} failed on {source.name}: {exc}") from None


def floor_bits(intensity: np.ndarray) -> float:
    """Bits per image no codec beats on average for pixels sampled from their grey levels:
    the sum of each pixel's binary entropy given its level."""
    p = np.clip(intensity.reshape(len(intensity), -1).astype(np.float64), 0.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -(np.where(p > 0, p * np.log2(p), 0.0) + np.where(p < 1, (1 - p) * np.log2(1 - p), 0.0))
    return float(h.sum(1).mean())


def bench_codec(runs: list[str], data: str, split: str = "test",
                limit: int | None = None, lanes: int | None = None) -> dict[str, Any]:
    """Compress and decompress the same images with each run in both modes, check the round
    trip, and set the bytes beside the model's nats and the classic codecs."""
    rows: list[dict[str, Any]] = []
    images, floor = None, None
    for run in runs:
        loaded = load_run(run, "cpu")
        c = loaded.config
        dataset = run_dataset(loaded, data)
        x = dataset_images(loaded, data, split, dataset)[:limit]
        if dataset.intensity is not None:
            floor = floor_bits(dataset.intensity(split)[:limit])
        if images is not None and not np.array_equal(images, x):
            raise UsageError(f"run {run} binarises {data} differently (another --data-seed); "
                             f"compare runs on the same images")
        images = x
        for mode in ("ordered", "set"):
            t0 = time.perf_counter()
            result = compress(loaded.model, x, mode, lanes=lanes, plain_if_smaller=False)
            t1 = time.perf_counter()
            stats: dict[str, Any] = {}
            out = decompress(loaded.model, result.data, stats=stats)
            t2 = time.perf_counter()
            rows.append({
                "codec": f"acnkit {c.prior}", "run": str(run), "mode": mode,
                "bytes": len(result.data), "bits_per_image": result.bits_per_image,
                "model_bits_per_image": result.model_bits_per_image,
                "overhead_percent": result.overhead_percent,
                "compress_seconds": t1 - t0, "decompress_seconds": t2 - t1,
                "decoder": c.decoder, **stats,
                "pixel_step_ms": 1000 * stats["pixel_loop_seconds"] / max(1, stats["pixel_steps"]),
                "round_trip": same_images(x, out, mode),
            })
    assert images is not None
    return {"data": data, "split": split, "images": len(images),
            "pixels": int(images[0].size), "acnkit": rows, "classic": classic_codecs(images),
            "floor_bits_per_image": floor}
