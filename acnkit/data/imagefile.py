"""What an image file is, read from its own bytes: its container, bit depth, mode, alpha,
transparency, palette, frames and colour space; and, for the codec, the levels that write
back to the same pixels, or one line that says why there are none.

This is the one place that decides whether ``acnkit compress`` can give a file back
exactly. Pillow alone cannot say: it opens a 16-bit RGB PNG as 8-bit RGB, a CMYK JPEG as
CMYK it would convert, an animated PNG as its first frame; so the depth is read from the
file's own header (PNG's IHDR, TIFF's BitsPerSample, a PGM's maxval) and every property that
a write-back would lose is checked before any pixel is coded.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: the containers acnkit writes back, by suffix (Pillow's format names)
WRITES = {".png": "PNG", ".pbm": "PPM", ".pgm": "PPM", ".ppm": "PPM", ".tif": "TIFF",
          ".tiff": "TIFF"}
#: the image modes acnkit writes back exactly
RESTORED = ("1", "L", "RGB")
#: PNG colour types, in words
_PNG_COLOUR = {0: "grey", 2: "RGB", 3: "paletted", 4: "grey+alpha", 6: "RGBA"}
#: TIFF photometric interpretations that name a colour space acnkit does not code
_TIFF_SPACE = {5: "CMYK (separated)", 6: "YCbCr", 8: "CIELab", 9: "ICCLab", 10: "ITULab",
               32844: "LogL", 32845: "LogLuv"}
#: Pillow's words for a metadata chunk past its limits (PngImagePlugin.MAX_TEXT_CHUNK)
#: (lower case: its wording changed case between releases)
_METADATA_LIMIT = ("decompressed data too large", "max_text_chunk",
                   "too much memory used in text chunks")


class Unrestorable(ValueError):
    """An image file acnkit cannot give back exactly; the text says what it is and what to
    do, without the path (the caller names it)."""


@dataclass(frozen=True)
class ImageFile:
    """An opened image file's properties, as its own header states them."""

    format: str  #: Pillow's name of the container: PNG, TIFF, PPM, JPEG, ...
    mode: str  #: Pillow's mode: 1, L, RGB, RGBA, P, I;16, CMYK, ...
    bits: int  #: bits a sample, as stored (1, 2, 4, 8, 16, ...)
    frames: int  #: pages or animation frames
    width: int
    height: int
    transparency: bool  #: a colour or palette entry marked transparent (PNG tRNS)
    space: str | None  #: a colour space other than grey or RGB, when the header names one
    kind: str = ""  #: the header's own word for its channels, where Pillow's mode hides it

    @property
    def what(self) -> str:
        """In words, for messages: 'a 16-bit RGB PNG', 'a paletted PNG', ..."""
        kind = self.space or self.kind or {
            "1": "1-bit", "L": "grey", "P": "paletted", "LA": "grey+alpha",
            "PA": "paletted+alpha"}.get(self.mode, self.mode)
        depth = f"{self.bits}-bit " if self.bits not in (1, 8) else ""
        if self.bits == 1 and self.mode != "1":
            depth = "1-bit "
        return f"a {depth}{kind} {self.format}"


def _png_depth(raw: bytes) -> tuple[int, int] | None:
    """(bit depth, colour type) of a PNG's IHDR, or None if the bytes do not hold one."""
    if raw[:8] != b"\x89PNG\r\n\x1a\n" or raw[12:16] != b"IHDR" or len(raw) < 26:
        return None
    return raw[24], raw[25]


def _pnm_header(raw: bytes) -> tuple[list[int], int] | None:
    """A PBM/PGM/PPM's numbers (width, height[, maxval]) and the offset where its pixels
    start (after the one whitespace that ends the header), past comments; None if cut short."""
    count = 2 if raw[:2] in (b"P1", b"P4") else 3
    numbers: list[int] = []
    pos = 2
    while len(numbers) < count:
        while pos < len(raw) and (raw[pos:pos + 1].isspace() or raw[pos:pos + 1] == b"#"):
            if raw[pos:pos + 1] == b"#":
                end = raw.find(b"\n", pos)
                pos = len(raw) if end < 0 else end
            pos += 1
        start = pos
        while pos < len(raw) and raw[pos:pos + 1].isdigit():
            pos += 1
        if pos == start:
            return None
        numbers.append(int(raw[start:pos]))
    return numbers, pos + 1


def _pnm_more(raw: bytes, header: tuple[list[int], int]) -> bool:
    """Whether a PBM/PGM/PPM (its :func:`_pnm_header` given) holds bytes past its first
    image: Netpbm puts several images back to back in one file, and Pillow reads the first
    alone."""
    (width, height, *maxval), start = header
    channels = 3 if raw[:2] in (b"P3", b"P6") else 1
    if raw[:2] in (b"P1", b"P2", b"P3"):  # plain: numbers as text (P1's digits may touch)
        body = re.sub(rb"#[^\n]*", b" ", raw[start:])
        values = len(re.findall(rb"[01]", body)) if raw[:2] == b"P1" else len(body.split())
        return values > width * height * channels
    if raw[:2] == b"P4":
        size = (width + 7) // 8 * height
    else:
        size = width * height * channels * (2 if maxval and maxval[0] > 255 else 1)
    return bool(raw[start + size:].strip())


def describe(img: Any, raw: bytes) -> ImageFile:
    """The properties of ``img`` (opened by Pillow from ``raw``) that decide whether it
    can be written back exactly."""
    frames = int(getattr(img, "n_frames", 1))
    bits = 1 if img.mode == "1" else 16 if img.mode.startswith("I;16") else \
        32 if img.mode in ("I", "F") else 8
    space = {"CMYK": "CMYK", "YCbCr": "YCbCr", "LAB": "CIELab", "HSV": "HSV"}.get(img.mode)
    kind = ""
    if img.format == "PNG" and (ihdr := _png_depth(raw)) is not None:
        bits, kind = ihdr[0], _PNG_COLOUR.get(ihdr[1], "")
    elif img.format == "TIFF":
        tags = getattr(img, "tag_v2", {})
        sample = tags.get(258, bits)
        bits = max(sample) if isinstance(sample, tuple) else int(sample)
        if tags.get(339, 1) not in (1, (1,) * len(tags.get(339, (1,)))):
            space = space or "floating-point or signed"
        space = space or _TIFF_SPACE.get(tags.get(262, 1))
    elif img.format == "PPM" and (header := _pnm_header(raw)) is not None:
        numbers, _ = header  # width, height and, but for a PBM, maxval
        if len(numbers) == 3 and numbers[2] != 255:
            bits = numbers[2].bit_length()
        frames = 2 if _pnm_more(raw, header) else 1
    return ImageFile(format=img.format or "unknown", mode=img.mode, bits=bits,
                     frames=frames, width=img.width,
                     height=img.height,
                     transparency="transparency" in img.info, space=space, kind=kind)


def refusal(info: ImageFile, suffix: str) -> str | None:
    """Why ``info``'s pixels could not be written back exactly under a name ending in
    ``suffix``, and what to do; None when they can (then :func:`exact_levels` maps them).
    What the pixels are is judged first (frames, colour space, alpha, depth, palette,
    transparency): converting the container alone would not help those."""
    if info.frames > 1 and info.format == "PPM":  # frames counted as 2: "more than one"
        return ("holds more than its first image (Netpbm images back to back); acnkit "
                "codes one image a file and would keep the first alone: save each image as "
                "its own file")
    if info.frames > 1:
        kind = "pages (a multi-page TIFF)" if info.format == "TIFF" else "frames (an animation)"
        return (f"has {info.frames} {kind}; acnkit codes one image a file and would keep "
                f"the first alone: save each frame as its own file")
    if info.space:
        return (f"is {info.what} image; acnkit codes grey and RGB levels, and converting "
                f"{info.space} to RGB is not invertible: convert it to RGB (Pillow: "
                f"Image.convert('RGB')) and compress the result")
    if info.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        return (f"is {info.what} image with an alpha channel; acnkit codes grey and RGB "
                f"levels and would drop the alpha: remove it (Pillow: Image.convert('RGB') "
                f"or convert('L')) if it is not needed")
    if info.bits > 8 or info.mode in ("I", "F") or info.mode.startswith("I;16"):
        return (f"is {info.what} image of {info.bits} bits a sample; acnkit codes 8-bit "
                f"levels and 8 bits would not restore it: convert it to 8 bits first")
    if info.mode == "P":
        return (f"is {info.what} image; a palette's indices are not levels acnkit codes: "
                f"convert it to grey or RGB (Pillow: Image.convert('L') or convert('RGB'); "
                f"the file written back is then that mode)")
    if info.transparency:
        return (f"is {info.what} image that marks a colour transparent (tRNS); acnkit "
                f"would drop the transparency: remove it, or convert the image to RGBA and "
                f"drop the alpha if it is not needed")
    if info.mode not in RESTORED or (info.mode != "1" and info.bits != 8):
        return (f"is {info.what} image; acnkit restores 1-bit, 8-bit grey and 8-bit RGB "
                f"images exactly: convert it to one of them (Pillow: Image.convert('L'))")
    # what it holds could come back; the container it is named for must too
    writes = WRITES.get(suffix.lower())
    if writes is None:
        return (f"is named {suffix or 'without a suffix'}; acnkit restores "
                f"{', '.join(WRITES)} files: convert it to PNG")
    if info.format != writes:
        return (f"is {info.what} file named {suffix}; acnkit writes a {suffix} file back as "
                f"{writes}, so its pixels would not come back in the same container: "
                f"convert it to {writes} (or rename it to the suffix of its format)")
    return None


def opened(raw: bytes) -> Any:
    """Pillow's image of ``raw``, not yet decoded; a metadata chunk past Pillow's limits is
    raised as :class:`Unrestorable` naming it."""
    from PIL import Image

    try:
        return Image.open(io.BytesIO(raw))
    except ValueError as exc:
        if any(words in str(exc).lower() for words in _METADATA_LIMIT):
            raise Unrestorable(
                "holds a metadata chunk (compressed text or an ICC profile) larger than "
                "Pillow reads; strip its metadata (optipng -strip all, or Pillow: "
                "Image.open(f).save(g)) and compress the result") from None
        raise


def exact_levels(img: Any, info: ImageFile, channels: int, binary: bool,
                 grey_as_colour: bool = False) -> np.ndarray:
    """The (C, H, W) uint8 levels of an image that :func:`refusal` accepted, for a run of
    ``channels`` channels (binary: 0/1 levels, else 0..255), such that writing them back
    in ``info.mode`` (:func:`picture`) gives the same pixels. Raises Unrestorable where
    the image's channels or levels are not the run's; ``grey_as_colour``: a grey image for
    an 8-bit colour run comes as its levels in all three channels (a tiled file codes the
    first alone)."""
    img.load()
    if grey_as_colour and channels == 3 and not binary and info.mode in ("1", "L"):
        grey = np.asarray(img, dtype=bool) * np.uint8(255) if info.mode == "1" \
            else np.asarray(img).astype(np.uint8)
        return np.repeat(grey[None], 3, axis=0)
    if info.mode == "RGB":
        if channels != 3:
            raise Unrestorable("is an RGB image; this run codes grey images: convert it "
                               "(Pillow: Image.convert('L')), or use a colour run")
        return np.asarray(img).transpose(2, 0, 1).copy()
    if channels != 1:
        raise Unrestorable(f"is {info.what} image; this run codes RGB images: convert it "
                           f"(Pillow: Image.convert('RGB')), or use a grey run")
    if info.mode == "1":
        ones = np.asarray(img, dtype=bool)
        return (ones if binary else ones * np.uint8(255)).astype(np.uint8)[None]
    grey = np.asarray(img)
    if binary:
        if not np.isin(grey, (0, 255)).all():
            raise Unrestorable("has grey levels other than 0 and 255; give 1-bit images or "
                               "pass --threshold T (grey level >= T is 1)")
        return (grey == 255).astype(np.uint8)[None]
    return grey.astype(np.uint8)[None]


def picture(image: np.ndarray, mode: str, binary: bool) -> Any:
    """Levels (C, H, W) of a run (binary: 0/1) as Pillow's image in ``mode``: the inverse
    of :func:`exact_levels`."""
    from PIL import Image

    if mode == "RGB":
        return Image.fromarray(np.ascontiguousarray(image.transpose(1, 2, 0)), "RGB")
    plane = image[0]  # one channel, or a grey image's first of three equal ones
    if mode == "1":
        return Image.fromarray(plane.astype(bool) if binary else plane == 255)
    return Image.fromarray(np.ascontiguousarray(plane * np.uint8(255) if binary else plane),
                           "L")


def container(name: str) -> str:
    """The Pillow format a file named ``name`` is written in."""
    return WRITES.get(Path(name).suffix.lower(), "PNG")
