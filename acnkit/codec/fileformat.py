"""The file format: magic ``ACNZ``, a binary header, the ANS words (u32), and a CRC-32 of
everything before it. All little-endian.

The header is described once, in :data:`LAYOUT`, and both written and read from that
description: about 100 bytes, since a small file should not pay for a verbose one.
"""

from __future__ import annotations

import math
import re
import struct
import zlib
from typing import Any

import numpy as np

from ..errors import CodecError, UsageError
from ..exact import ARITHMETIC as ARITHMETIC_NAME
from ..version import __version__
from .order import MODES

MAGIC = b"ACNZ"
#: 2: posteriors popped dithered and windowed; the digest covers the header too.
#: 3: lanes (several ANS stacks coded in lockstep; their word counts in the header).
#: 4: images of any level count up to 256 (the levels in the header)
#: 5: subpixels coded by a search over their levels (the loss's CDF)
#: 6: posteriors dithered a whole image at a time and popped a window size at a time
#: 7: portable: the ``arithmetic`` field; the exact arithmetic's latents are searched
#: 8: images of any size as tiles (:data:`FLAG_TILES`)
#: 9: every number after the format a varint (:func:`varint`), counts and lengths too, and
#: torch's version only in a machine-bound file: a digits file's header 81 bytes where
#: format 7 took 125 (docs/compression.md, "The file")
FORMAT_VERSION, TILED_FORMAT, VARINT_FORMAT = 9, 8, 9
#: the formats this acnkit reads (6: its numbers are the writing machine's, as a
#: machine-bound file of format 7)
READ_FORMATS = (6, 7, 8, 9)
#: the largest value of each fixed-size number of formats up to 8, which a varint of
#: format 9 may not exceed either (the checks after reading rest on these ranges)
_LIMITS = {"B": (0, 0xFF), "H": (0, 0xFFFF), "I": (0, 0xFFFFFFFF),
           "i": (-(1 << 31), (1 << 31) - 1)}
#: the formats this acnkit refuses, and what came after them
OLD_FORMATS = {1: "dithered posteriors", 2: "lanes", 3: "8-bit images",
               4: "the search over levels", 5: "posteriors coded a window size at a time"}
#: a file may claim at most this many images per 32-bit word of payload (an image costs
#: far more than an eighth of a bit): a tampered count is refused before any work
IMAGES_PER_WORD = 256
#: at most this many bytes of decoded images (a tampered shape is refused, not allocated)
MAX_DECODED_BYTES = 1 << 34
#: at most this many images a file: the coder's uniform codes (the order) take sizes below
#: 2^24 (constriction's limit), at compress time too
MAX_IMAGES = (1 << 24) - 1
#: the flag bits a file may set: set mode, conditional prior, stored (no model coding),
#: image modes recorded (the ``modes`` field follows the names; an acnkit before it refuses
#: such a file for its unknown flag instead of writing its images in another mode)
FLAG_SET, FLAG_CONDITIONAL, FLAG_STORED, FLAG_MODES = 1, 2, 4, 8
#: ... and tiles: the images are the tiles of larger (or smaller) ones, whose sizes the
#: ``tiles`` field holds (format 8)
FLAG_TILES = 16
KNOWN_FLAGS = FLAG_SET | FLAG_CONDITIONAL | FLAG_STORED | FLAG_MODES | FLAG_TILES
#: a tiled file's images are at most this many pixels a side
MAX_SIDE = 1 << 16
#: the image modes (Pillow's) a file records, by the index its ``modes`` bytes hold: the
#: mode each image file is written back in, where it is not the run's own (a 1-bit scan on
#: a grey run, a 0/255 grey scan on a binary one)
IMAGE_MODES = ("1", "L", "RGB")
#: the levels a subpixel may have (8-bit images at most)
MAX_LEVELS = 256
#: at most this many bytes of a step's level decisions (every lane's image, every subpixel,
#: every cut of its levels, :func:`max_lanes`): compress takes fewer lanes to stay
#: within it, and a file claiming more lanes is refused before any decoding
MAX_STEP_BYTES = 1 << 30
#: an image's name: at most this many folders deep, bytes a part and bytes in all
MAX_NAME_DEPTH, MAX_NAME_PART, MAX_NAME_BYTES = 32, 255, 1024
#: a version as acnkit and torch write theirs (2.13.0+cpu, 0.1.0, 2.14.0.dev20260101)
VERSION = re.compile(r"[0-9][0-9A-Za-z.+_-]{0,62}")
DTYPES = ("uint8", "bool", "int8", "int16", "int32", "int64", "uint16", "uint32", "uint64")

#: the header after the magic, in order: (field, encoding). An encoding is a struct code,
#: ``shape`` (a u8 count and that many u32), ``hex16`` (16 bytes, shown as hex), ``text``
#: (a u8 length and UTF-8), ``lines`` (a u32 length and UTF-8 lines: the images' names,
#: empty when none were given) or ``u32s`` (a u16 count and that many u32: the words of
#: each lane, whose stacks follow one another in the payload). When the flags hold
#: :data:`FLAG_MODES`, a ``modes`` field follows: a u32 count (1: every image, or one an
#: image in input order) and that many bytes, each an index into :data:`IMAGE_MODES`.
#: When they hold :data:`FLAG_TILES`, a ``tiles`` field follows that: a u32 count of whole
#: images and each one's height and width (two u32); the names and modes are then the
#: whole images', and the file's images are their tiles (:mod:`acnkit.codec.tiles`).
LAYOUT: tuple[tuple[str, str], ...] = (
    ("format", "H"), ("flags", "B"), ("count", "I"),
    ("image_shape", "shape"), ("levels", "H"), ("input_shape", "shape"),
    ("input_dtype", "B"), ("grid_bits", "B"), ("grid_lo", "i"), ("grid_hi", "i"),
    ("seed_words", "H"), ("lane_words", "u32s"), ("model", "hex16"), ("digest", "hex16"),
    ("acnkit", "text"), ("torch", "text"), ("names", "lines"),
)
#: format 7 adds, after ``torch``, ``arithmetic`` (text): what the probabilities were
#: computed with, :data:`acnkit.exact.ARITHMETIC` (the same on every machine), or
#: ``machine: <kind>`` (:func:`machine_kind`: the file opens on that kind of machine only)
ARITHMETIC_FIELD = ("arithmetic", "text")
#: the ``arithmetic`` of a machine-bound file begins so
MACHINE = "machine: "


def machine_kind(device: Any = None) -> str:
    """What a machine-bound file needs of the machine that opens it: processor
    architecture, torch's CPU kernels and torch's version (and the GPU, when coded on
    one)."""
    import platform

    import torch

    kind = f"{platform.machine()} {torch.backends.cpu.get_cpu_capability()} torch {torch.__version__}"
    if device is not None and getattr(device, "type", "cpu") == "cuda":
        kind += f" {torch.cuda.get_device_name(device)}"
    return kind[:200]


def _fields(header: dict[str, Any]) -> dict[str, Any]:
    """The header as the flat fields of :data:`LAYOUT`."""
    g = header["grid"]
    return {**header, "format": header.get("format", FORMAT_VERSION),
            "arithmetic": header.get("arithmetic", ""),
            "names": "\n".join(header.get("names") or []),
            "flags": (FLAG_SET * (header["mode"] == "set")
                      | FLAG_CONDITIONAL * bool(header["conditional"])
                      | FLAG_STORED * bool(header.get("stored"))
                      | FLAG_MODES * bool(header.get("modes"))
                      | FLAG_TILES * bool(header.get("tiles"))),
            "modes": bytes(IMAGE_MODES.index(m) for m in header.get("modes") or []),
            "input_dtype": DTYPES.index(header["input_dtype"]),
            "grid_bits": g["bits"], "grid_lo": g["lo"], "grid_hi": g["hi"]}


def _header(fields: dict[str, Any]) -> dict[str, Any]:
    """The flat fields read back as the header dict that :func:`pack` takes."""
    dtype = fields["input_dtype"]
    return {
        "format": fields["format"], "mode": MODES[fields["flags"] & FLAG_SET],
        "conditional": bool(fields["flags"] & FLAG_CONDITIONAL),
        "stored": bool(fields["flags"] & FLAG_STORED), "flags": fields["flags"],
        "count": fields["count"],
        "image_shape": fields["image_shape"], "levels": fields["levels"],
        "input_shape": fields["input_shape"],
        "input_dtype": DTYPES[dtype] if dtype < len(DTYPES) else "?",
        "grid": {"bits": fields["grid_bits"], "lo": fields["grid_lo"], "hi": fields["grid_hi"]},
        "seed_words": fields["seed_words"], "lane_words": fields["lane_words"],
        "model": fields["model"],
        "digest": fields["digest"], "acnkit": fields["acnkit"], "torch": fields["torch"],
        "arithmetic": fields.get("arithmetic", ""),
        "names": fields["names"].split("\n") if fields["names"] else [],
        "modes": [IMAGE_MODES[i] if i < len(IMAGE_MODES) else "?"
                  for i in fields.get("modes", b"")],
        "tiles": fields.get("tiles", []),
    }


def varint(n: int) -> bytes:
    """``n`` >= 0 as LEB128: seven bits a byte, low bits first, the top bit set on every
    byte but the last (one byte below 128)."""
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _zigzag(n: int) -> int:
    """A signed number as a varint's: 0, -1, 1, -2, ... as 0, 1, 2, 3, ..."""
    return 2 * n if n >= 0 else -2 * n - 1


def _encode_varint(kind: str, value: Any) -> bytes:
    """Format 9's encodings: the same fields, every count, length and number a varint."""
    if kind in ("shape", "u32s"):
        return varint(len(value)) + b"".join(varint(v) for v in value)
    if kind == "hex16":
        return bytes.fromhex(value)[:16]
    if kind in ("text", "lines", "bytes"):
        raw = value if kind == "bytes" else value.encode()[:255 if kind == "text" else None]
        return varint(len(raw)) + raw
    if kind == "pairs":
        return varint(len(value)) + b"".join(varint(int(v)) for pair in value for v in pair)
    return varint(_zigzag(value) if kind == "i" else value)


def _encode(kind: str, value: Any, varints: bool = False) -> bytes:
    if varints:
        return _encode_varint(kind, value)
    if kind == "shape":
        return struct.pack(f"<B{len(value)}I", len(value), *value)
    if kind == "u32s":
        return struct.pack(f"<H{len(value)}I", len(value), *value)
    if kind == "hex16":
        return bytes.fromhex(value)[:16]
    if kind == "text":
        raw = value.encode()[:255]
        return struct.pack("<B", len(raw)) + raw
    if kind == "lines":
        raw = value.encode()
        return struct.pack("<I", len(raw)) + raw
    if kind == "bytes":
        return struct.pack("<I", len(value)) + value
    if kind == "pairs":
        flat = [int(v) for pair in value for v in pair]
        return struct.pack(f"<I{len(flat)}I", len(value), *flat)
    return struct.pack(f"<{kind}", value)


def _layout(fields: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """The fields a header of this format and these flags holds: :data:`LAYOUT` (with
    :data:`ARITHMETIC_FIELD` from format 7), and ``modes`` after it when
    :data:`FLAG_MODES` is set."""
    layout = LAYOUT
    if fields["format"] >= 7:
        at = [name for name, _ in LAYOUT].index("torch") + 1
        layout = LAYOUT[:at] + (ARITHMETIC_FIELD,) + LAYOUT[at:]
    layout += (("modes", "bytes"),) if fields["flags"] & FLAG_MODES else ()
    return layout + ((("tiles", "pairs"),) if fields["flags"] & FLAG_TILES else ())


def pack(header: dict[str, Any], payload: bytes) -> bytes:
    """The bytes of a file with ``header`` and the ANS words ``payload``."""
    body = _header_bytes(_fields(header)) + payload
    return body + struct.pack("<I", zlib.crc32(body))


def covered(header: dict[str, Any]) -> bytes:
    """Every header field but the digest, as written: what the digest covers besides the
    images, so that no edit of a shape, a dtype or a flag decodes to another array."""
    return _header_bytes(_fields(header), leave_out="digest")


def _header_bytes(fields: dict[str, Any], leave_out: str = "") -> bytes:
    """The magic, the format (two bytes, in every format, so that any acnkit can tell
    which it is) and the other fields but ``leave_out``, each in its format's encoding."""
    varints = fields["format"] >= VARINT_FORMAT
    return MAGIC + b"".join(_encode(kind, fields[name], varints and name != "format")
                            for name, kind in _layout(fields) if name != leave_out)


class _Reader:
    def __init__(self, data: bytes | memoryview, name: str) -> None:
        self.data, self.pos, self.name = data, len(MAGIC), name
        self.varints = False  # set once the format is read

    def number(self, kind: str) -> int:
        """A varint (format 9) within the range of the fixed-size number ``kind`` of the
        formats before; at most ten bytes, and no byte more than its value needs."""
        value, shift = 0, 0
        for _ in range(10):
            (byte,) = self.take("<B")
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        else:
            raise CodecError(f"{self.name} has a malformed header (a number of more than "
                             f"ten bytes)")
        if shift > 7 and byte == 0:
            raise CodecError(f"{self.name} has a malformed header (a number written longer "
                             f"than it needs)")
        if kind == "i":
            value = value >> 1 if value % 2 == 0 else -(value >> 1) - 1
        low, high = _LIMITS[kind]
        if not low <= value <= high:
            raise CodecError(f"{self.name} has a malformed header (a number out of range)")
        return value

    def _varint_field(self, kind: str) -> Any:
        if kind in ("shape", "u32s"):
            size = self.number("B" if kind == "shape" else "H")
            return [self.number("I") for _ in range(size)]
        if kind in ("text", "lines", "bytes"):
            size = self.number("B" if kind == "text" else "I")
            raw = bytes(self.take(f"<{size}s")[0])
            return raw if kind == "bytes" else raw.decode(errors="replace")
        if kind == "pairs":
            size = self.number("I")
            if 2 * size > len(self.data) - self.pos:  # before any allocation
                raise CodecError(f"{self.name} is truncated ({len(self.data) + 4} bytes)")
            flat = [self.number("I") for _ in range(2 * size)]
            return [[flat[2 * i], flat[2 * i + 1]] for i in range(size)]
        return self.number(kind)

    def take(self, fmt: str) -> tuple:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise CodecError(f"{self.name} is truncated ({len(self.data) + 4} bytes)")
        out = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return out

    def field(self, kind: str) -> Any:
        if self.varints and kind != "hex16":
            return self._varint_field(kind)
        if kind == "shape":
            return list(self.take(f"<{self.take('<B')[0]}I"))
        if kind == "u32s":
            return list(self.take(f"<{self.take('<H')[0]}I"))
        if kind == "hex16":
            return bytes(self.take("<16s")[0]).hex()
        if kind == "text":
            size = self.take("<B")[0]
            return bytes(self.take(f"<{size}s")[0]).decode(errors="replace")
        if kind == "lines":
            size = self.take("<I")[0]
            return bytes(self.take(f"<{size}s")[0]).decode(errors="replace")
        if kind == "bytes":
            size = self.take("<I")[0]
            return bytes(self.take(f"<{size}s")[0])
        if kind == "pairs":
            size = self.take("<I")[0]
            if 8 * size > len(self.data) - self.pos:  # before any allocation
                raise CodecError(f"{self.name} is truncated ({len(self.data) + 4} bytes)")
            flat = self.take(f"<{2 * size}I")
            return [[flat[2 * i], flat[2 * i + 1]] for i in range(size)]
        return self.take(f"<{kind}")[0]


def safe_name(name: str) -> bool:
    """A name an image may be written under inside an output folder: relative, without
    '..', empty parts, control characters or backslashes, at most :data:`MAX_NAME_DEPTH`
    parts of :data:`MAX_NAME_PART` bytes and :data:`MAX_NAME_BYTES` in all."""
    parts = name.split("/")
    return bool(name) and not name.startswith("/") and "\\" not in name and \
        all(p not in ("", ".", "..") for p in parts) and name.isprintable() and \
        len(parts) <= MAX_NAME_DEPTH and len(name.encode(errors="replace")) <= MAX_NAME_BYTES \
        and all(len(p.encode(errors="replace")) <= MAX_NAME_PART for p in parts)


def name_clash(names: list[str]) -> str | None:
    """Why ``names`` cannot all be written into one folder: a name given twice (after
    Unicode normalisation and case folding, as a case-insensitive file system sees it), or
    a name that is a folder of another (``a.png`` and ``a.png/b.png``); None if they can."""
    import unicodedata

    seen: dict[str, str] = {}
    folders: dict[str, str] = {}
    for name in names:
        key = unicodedata.normalize("NFC", name).casefold()
        if key in seen:
            return f"two images are named {seen[key]!r} and {name!r}"
        seen[key] = name
        parts = key.split("/")
        for depth in range(1, len(parts)):
            folders.setdefault("/".join(parts[:depth]), name)
    for key, name in seen.items():
        if key in folders:
            return f"{name!r} is both an image and the folder of {folders[key]!r}"
    return None


def read_header(data: bytes, name: str = "the file") -> tuple[dict[str, Any], np.ndarray]:
    """The header and ANS words of an acnkit file, after every check that needs no model.
    The words are a view of ``data`` (read-only where ``data`` is bytes), not a copy: a
    stored file's words are its images."""
    if len(data) < 4 or data[:4] != MAGIC:
        raise CodecError(f"{name} is not an acnkit compressed file (no ACNZ magic)")
    if len(data) < 10:
        raise CodecError(f"{name} is truncated ({len(data)} bytes)")
    (crc,) = struct.unpack("<I", data[-4:])
    (version,) = struct.unpack_from("<H", data, 4)
    body = memoryview(data)[:-4]  # read in place: a stored file may be as large as its images
    if zlib.crc32(body) != crc:
        raise CodecError(f"{name} is corrupt or truncated (its CRC-32 does not match)")
    if version in OLD_FORMATS:
        raise CodecError(f"{name} has format version {version}, from an acnkit before "
                         f"{OLD_FORMATS[version]}; this acnkit {__version__} reads version "
                         f"{FORMAT_VERSION}: decode it with the acnkit that wrote it")
    if version not in READ_FORMATS:
        raise CodecError(f"{name} has format version {version}; this acnkit {__version__} "
                         f"reads versions {READ_FORMATS[0]} to {READ_FORMATS[-1]} only: the "
                         f"file is corrupt or from a newer acnkit")
    r = _Reader(body, name)
    fields: dict[str, Any] = {"format": version, "flags": 0}
    fields["format"] = r.field(LAYOUT[0][1])
    r.varints = version >= VARINT_FORMAT
    fields["flags"] = r.field(LAYOUT[1][1])
    for field, kind in _layout(fields)[2:]:
        fields[field] = r.field(kind)
    header = _header(fields)
    if (len(r.data) - r.pos) % 4 or header["input_dtype"] == "?":
        raise CodecError(f"{name} has a malformed header")
    words = np.frombuffer(body, dtype="<u4", offset=r.pos).astype(np.uint32, copy=False)
    check_fields(header, words, name)
    return header, words


def check_fields(header: dict[str, Any], words: np.ndarray, name: str) -> None:
    """Every field within what the payload and the format allow (a header edited with its
    CRC recomputed must fail here, not hang, allocate or trace back)."""
    count, shape, inp, g, levels = (header["count"], header["image_shape"],
                                    header["input_shape"], header["grid"], header["levels"])
    lanes = header["lane_words"]
    pixels = math.prod(shape) if shape else 0  # Python integers: no wrap-around
    stored = header["stored"]
    tiles = header.get("tiles") or []
    whole = len(tiles) if tiles else count  # what the names and modes are of
    problems = [
        (header["flags"] & ~KNOWN_FLAGS, f"its flags {header['flags']:#04x} set bits this "
                                         f"acnkit does not know"),
        (count < 1, "it holds no images"),
        (count > MAX_IMAGES, f"it claims {count} images, more than a file holds ({MAX_IMAGES})"),
        (count > IMAGES_PER_WORD * len(words),
         f"it claims {count} images, more than its {4 * len(words)} bytes of payload hold"),
        (not shape or min(shape) < 1 or len(shape) > 4, f"its image shape {shape} is not one "
                                                       f"acnkit writes"),
        (not 2 <= levels <= MAX_LEVELS, f"its {levels} levels a subpixel are not 2 to "
                                        f"{MAX_LEVELS}"),
        (header["input_dtype"] == "bool" and levels > 2,
         f"its images of {levels} levels cannot be bools"),
        (count * pixels > MAX_DECODED_BYTES, f"{count} images of shape {shape} are too many"),
        (not inp or len(inp) > 5 or math.prod(inp) != count * pixels,
         f"its array shape {inp} does not hold {count} images of {pixels} pixels"),
        (bool(header["names"]) and len(header["names"]) != whole,
         f"it names {len(header['names'])} images but holds {whole}"),
        (not all(safe_name(n) for n in header["names"]),
         "an image name is not a plain relative path"),
        (header["format"] >= 7 and not (header["arithmetic"] == ARITHMETIC_NAME
                                         or header["arithmetic"].startswith(MACHINE)
                                         or (stored and header["arithmetic"] == "")),
         f"its arithmetic {header['arithmetic'][:40]!r} is not one acnkit writes"),
        (not VERSION.fullmatch(header["acnkit"]) or not (
            VERSION.fullmatch(header["torch"]) or (
                header["torch"] == "" and header["format"] >= VARINT_FORMAT
                and not header["arithmetic"].startswith(MACHINE))),
         f"its version fields {header['acnkit']!r} and {header['torch']!r} are not versions "
         f"(the bytes that name the acnkit and torch that wrote it are damaged)"),
        (bool(header["flags"] & FLAG_MODES) and not modes_fit(header["modes"], whole,
                                                               shape, levels, bool(tiles)),
         f"its image modes {header['modes'][:4]} do not fit its {whole} images of shape "
         f"{shape} at {levels} levels"),
        (bool(header["flags"] & FLAG_TILES) and not tiles_fit(header, count),
         f"its {len(tiles)} tiled images do not fit its {count} tiles of shape {shape} in "
         f"ordered mode (format {TILED_FORMAT} or later)"),
    ]
    if stored:
        problems += [
            (bool(lanes) or header["seed_words"] != 0, "a stored file has no lanes"),
            (len(words) != stored_words(count, pixels, level_bits(levels)),
             f"its {len(words)} words are not {count} stored images of {pixels} pixels"),
        ]
    else:
        problems += [
            (not g["lo"] < g["hi"] or g["hi"] - g["lo"] > 4 * (1 << 16) or g["bits"] > 40
             or max(abs(g["lo"]), abs(g["hi"])) > (1 << 30),
             f"its latent grid {g} is not one acnkit writes"),
            (not lanes or sum(lanes) != len(words) or min(lanes) < 1 or len(lanes) > count,
             f"its {len(lanes)} lanes of {sum(lanes)} words do not fit its {len(words)} "
             f"words and {count} images"),
            (len(lanes) > max_lanes(pixels, levels),
             f"its {len(lanes)} lanes would need more than {MAX_STEP_BYTES >> 20} MB of "
             f"level decisions a step"),
            (not 1 <= header["seed_words"] <= min(lanes, default=0),
             "its initial words do not fit"),
            (any(int(words[end - 1]) == 0 for end in np.cumsum(lanes) if 0 < end <= len(words)),
             "a lane's payload does not end in a word"),
        ]
    for bad, why in problems:
        if bad:
            raise CodecError(f"{name} is corrupt: {why}")
    clash = name_clash(header["names"])
    if clash:
        raise CodecError(f"{name} is corrupt: {clash}")


def default_mode(shape: tuple[int, ...] | list[int], levels: int) -> str:
    """The mode images of ``shape`` at ``levels`` levels are written in when their file
    records none: 1-bit for a binary run, else grey or RGB by their channels."""
    return "1" if levels == 2 else "RGB" if shape[0] == 3 else "L"


def file_modes(modes: list[str] | None, shape: tuple[int, ...], levels: int,
               ordered: bool) -> list[str]:
    """What a header records of images' ``modes``: nothing when each is the run's own
    (:func:`default_mode`), one mode when all share it, else one an image, in ordered mode
    only (set mode does not keep which image is which)."""
    if not modes or all(m == default_mode(shape, levels) for m in modes):
        return []
    if len(set(modes)) == 1:
        return [modes[0]]
    if not ordered:
        raise UsageError("the images are of several modes (1-bit and grey), which set mode "
                         "cannot keep apart: compress them in ordered mode, or in one file "
                         "a mode")
    return list(modes)


def modes_fit(modes: list[str], count: int, shape: list[int], levels: int,
              tiled: bool = False) -> bool:
    """Whether recorded image modes can be the modes of ``count`` images of ``shape`` at
    ``levels`` levels: one for all or one an image, each a grey mode of a one-channel
    binary or 8-bit run (an RGB image is written in its run's own mode, never recorded);
    in a tiled file (format 8) of an 8-bit colour run, grey images beside colour ones
    (coded by their first channel)."""
    if tiled and len(shape) == 3 and shape[0] == 3:
        return len(modes) in (1, count) and levels == 256 \
            and all(m in ("1", "L", "RGB") for m in modes)
    return len(modes) in (1, count) and len(shape) == 3 and shape[0] == 1 \
        and levels in (2, 256) and all(m in ("1", "L") for m in modes)


def tiles_fit(header: dict[str, Any], count: int) -> bool:
    """Whether a tiled file's images (height, width each) are cut into exactly its
    ``count`` tiles of its image shape, in ordered mode, by format 8 or later."""
    from .tiles import tile_count

    tiles, shape = header["tiles"], header["image_shape"]
    if header["format"] < TILED_FORMAT or header["mode"] != "ordered" or len(shape) != 3 \
            or not tiles or header["stored"]:
        return False
    if not all(1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE for h, w in tiles):
        return False
    return sum(tile_count((h, w), tuple(shape[1:])) for h, w in tiles) == count


def level_bits(levels: int) -> int:
    """Bits a subpixel of ``levels`` levels takes stored plainly."""
    return max(1, (levels - 1).bit_length())


def max_lanes(subpixels: int, levels: int) -> int:
    """The most lanes whose step's level decisions fit :data:`MAX_STEP_BYTES`: 64 bytes a
    subpixel and bit of its levels, more than either search keeps (eight halvings of a
    probability, a part and a flag, or two cuts of 16 probabilities, for 256 levels)."""
    return max(1, MAX_STEP_BYTES // max(1, subpixels * level_bits(levels) * 64))


def stored_words(count: int, pixels: int, bits: int) -> int:
    """The 32-bit words of ``count`` images of ``pixels`` subpixels stored ``bits`` a
    subpixel (packed, the last word padded)."""
    return -(-count * pixels * bits // 32)
