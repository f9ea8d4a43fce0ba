"""``acnkit bench photos``: whole photos of any size, each coded alone by acnkit (as tiles of
its model) and by the lossless codecs people use on photos, every file decoded and checked
pixel for pixel, seconds each way; and all the photos in one acnkit file beside the sum of
the others' files."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..codec import compress, decompress
from ..codec.tiles import cut_all, join
from ..errors import UsageError
from ..files import read_images
from .codec import _call

#: the codecs beside acnkit, each at its strongest lossless setting: (name, program,
#: Debian package, encode, decode), the commands given (source, file, back)
PHOTO_CODECS = (
    ("PNG (optipng -o2)", "optipng", "optipng",
     lambda src, out: _call("optipng", "-quiet", "-o2", "-out", out, src),
     lambda out, back: shutil.copy(out, back)),
    ("WebP lossless (cwebp -z 9)", "cwebp", "webp",
     lambda src, out: _call("cwebp", "-quiet", "-lossless", "-z", "9", src, "-o", out),
     lambda out, back: _call("dwebp", out, "-quiet", "-o", back)),
    ("JPEG XL (cjxl -d 0 -e 9)", "cjxl", "libjxl-tools",
     lambda src, out: _call("cjxl", "--quiet", "-d", "0", "-e", "9", src, out),
     lambda out, back: _call("djxl", "--quiet", out, back)),
)


def _same(back: Path, image: np.ndarray) -> bool:
    from PIL import Image

    with Image.open(back) as img:
        got = np.asarray(img.convert("RGB" if image.shape[0] == 3 else "L"))
    want = image.transpose(1, 2, 0) if image.shape[0] == 3 else image[0]
    return bool(np.array_equal(got, want))


def _timed(fn: Any, *args: Any) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def bench_photos(trained: Any, inputs: list[str], lanes: int | None = None,
                 classic: bool = True) -> dict[str, Any]:
    """Each photo of ``inputs`` coded alone by ``trained`` (a run or a shipped model) and by
    :data:`PHOTO_CODECS`, then all of them in one acnkit file; bytes, bits/dim, seconds
    each way and the round trip of every file."""
    model = trained.model
    if len(model.image_shape) != 3 or model.levels != 256:
        raise UsageError("bench photos needs a model of 8-bit grey or colour images")
    images, names, modes = read_images(inputs, model.image_shape, 256, None, any_size=True)
    photos = list(images)
    tile = (model.image_shape[1], model.image_shape[2])
    rows: list[dict[str, Any]] = []
    codecs = [c for c in PHOTO_CODECS if classic and shutil.which(c[1])]
    with tempfile.TemporaryDirectory(prefix="acnkit-photos-") as tmp:
        folder = Path(tmp)
        for i, (photo, name, mode) in enumerate(zip(photos, names, modes, strict=True)):
            subpixels = photo.shape[1] * photo.shape[2] * (3 if mode == "RGB" else 1)
            row: dict[str, Any] = {"photo": name, "mode": mode, "width": photo.shape[2],
                                   "height": photo.shape[1], "codecs": {}}
            tiles, _, sizes = cut_all([photo], tile)
            coded, c_s = _timed(compress, model, tiles, "ordered", "uint8", None, None, lanes,
                                True, [mode], True, None, sizes)
            back, d_s = _timed(decompress, model, coded.data)
            exact = bool(np.array_equal(join(back, sizes)[0], photo))
            row["codecs"]["acnkit"] = {"bytes": len(coded.data),
                                       "bits_per_dim": 8 * len(coded.data) / subpixels,
                                       "compress_seconds": c_s, "decompress_seconds": d_s,
                                       "round_trip": exact}
            src = folder / f"{i}.png"
            _save(photo, mode, src)
            for codec, _, _, encode, decode in codecs:
                out, back_path = folder / f"{i}.out", folder / f"{i}.back.png"
                _, c_s = _timed(encode, src, out)
                _, d_s = _timed(decode, out, back_path)
                size = out.stat().st_size
                row["codecs"][codec] = {"bytes": size, "bits_per_dim": 8 * size / subpixels,
                                        "compress_seconds": c_s, "decompress_seconds": d_s,
                                        "round_trip": _same(back_path, photo)}
                out.unlink()
                back_path.unlink()
            rows.append(row)
        together = None
        if len(photos) > 1:
            tiles, _, sizes = cut_all(photos, tile)
            coded, c_s = _timed(compress, model, tiles, "ordered", "uint8", None, names,
                                lanes, True, modes, True, None, sizes)
            back, d_s = _timed(decompress, model, coded.data)
            exact = all(np.array_equal(a, b) for a, b in zip(join(back, sizes), photos,
                                                            strict=True))
            together = {"bytes": len(coded.data), "compress_seconds": c_s,
                        "decompress_seconds": d_s, "round_trip": exact}
    subpixels = sum(r["width"] * r["height"] * (3 if r["mode"] == "RGB" else 1) for r in rows)
    totals = {name: sum(r["codecs"][name]["bytes"] for r in rows)
              for name in rows[0]["codecs"]} if rows else {}
    return {"photos": rows, "together": together, "totals": totals, "subpixels": subpixels,
            "missing": [f"{c[0]} ({c[1]}: apt-get install {c[2]})" for c in PHOTO_CODECS
                        if classic and not shutil.which(c[1])]}


def _save(photo: np.ndarray, mode: str, path: Path) -> None:
    from ..data.imagefile import picture

    picture(photo, mode, False).save(path, format="PNG")
