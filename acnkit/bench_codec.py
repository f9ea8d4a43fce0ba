"""``acnkit bench codec``: acnkit's files beside the codecs people use, on the same images."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from .codec import compress, decompress, same_images
from .errors import UsageError
from .files import dataset_images
from .trained import load_run


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
    return [{"codec": k, "bytes": v, "bits_per_image": 8 * v / n} for k, v in sizes.items()]


def bench_codec(runs: list[str], data: str, split: str = "test",
                limit: int | None = None) -> dict[str, Any]:
    """Compress and decompress the same images with each run in both modes, check the round
    trip, and set the bytes beside the model's nats and the classic codecs."""
    rows: list[dict[str, Any]] = []
    images = None
    for run in runs:
        loaded = load_run(run, "cpu")
        c = loaded.config
        x = dataset_images(loaded, data, split)[:limit]
        if images is not None and not np.array_equal(images, x):
            raise UsageError(f"run {run} binarises {data} differently (another --data-seed); "
                             f"compare runs on the same images")
        images = x
        for mode in ("ordered", "set"):
            t0 = time.perf_counter()
            result = compress(loaded.model, x, mode)
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
            "pixels": int(images[0].size), "acnkit": rows, "classic": classic_codecs(images)}
