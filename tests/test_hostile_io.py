"""Files, folders and images from anyone: crafted compressed files, output folders prepared
in advance, image files built to hurt, odd inputs. Each refusal is one line naming what is
wrong, a non-zero exit, nothing written or replaced."""

import io
import os
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from test_codec import trained
from test_codec_levels import model as levels_model

from acnkit.cli import main
from acnkit.codec import compress, decompress, read_header
from acnkit.codec.fileformat import (
    FLAG_MODES,
    MAGIC,
    VARINT_FORMAT,
    _layout,
    _Reader,
    covered,
    pack,
)
from acnkit.codec.order import digest, log_distinct_orderings
from acnkit.errors import CodecError, UsageError
from acnkit.files import load_images, read_image


def invoke(*args, input=None):
    return CliRunner().invoke(main, [str(a) for a in args], input=input)


def one_line_failure(r, code=None):
    assert r.exit_code != 0 and (code is None or r.exit_code == code), r.output
    assert "Traceback" not in r.output and r.stderr.startswith("error:"), r.stderr
    assert r.stderr.count("\n") == 1, r.stderr


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run") / "run"
    r = invoke("run", "--prior", "vae", "--epochs", 1, "--latent-dim", 4, "--encoder-hidden", 32,
               "--decoder-hidden", 32, "--test-limit", 30, "--out", folder, "--quiet")
    assert r.exit_code == 0, r.output
    return folder


def scans(folder, names, rng=None):
    rng = rng or np.random.default_rng(0)
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 2, (8, 8)).astype(bool)).save(path)


# -- output folders ----------------------------------------------------------------------------

def test_a_link_inside_the_output_folder_is_never_followed(run, tmp_path):
    src, elsewhere, out = tmp_path / "src", tmp_path / "elsewhere", tmp_path / "out"
    scans(src, ["a.png", "lnk/b.png"])
    assert invoke("compress", run, src, "-o", tmp_path / "f.acnz").exit_code == 0
    elsewhere.mkdir()
    (elsewhere / "b.png").write_bytes(b"precious")
    out.mkdir()
    os.symlink(elsewhere, out / "lnk")
    r = invoke("decompress", tmp_path / "f.acnz", "--run", run, "-o", f"{out}/", "--overwrite")
    one_line_failure(r, 2)
    assert "is a link" in r.stderr
    assert (elsewhere / "b.png").read_bytes() == b"precious"
    assert sorted(os.listdir(out)) == ["lnk"]
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_a_folder_decompress_is_all_or_nothing(run, tmp_path, monkeypatch):
    src, out = tmp_path / "src", tmp_path / "out"
    scans(src, [f"d/{i}.png" for i in range(12)])
    assert invoke("compress", run, src, "-o", tmp_path / "f.acnz").exit_code == 0
    from PIL import Image as PILImage

    saved, real = [], PILImage.Image.save

    def dies_midway(self, fp, format=None, **kw):
        if len(saved) == 5:
            raise KeyboardInterrupt
        saved.append(1)
        return real(self, fp, format=format, **kw)

    monkeypatch.setattr(PILImage.Image, "save", dies_midway)
    r = invoke("decompress", tmp_path / "f.acnz", "--run", run, "-o", f"{out}/")
    assert r.exit_code == 130
    assert not out.exists()  # nothing half-written, and no staging folder left behind
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    monkeypatch.undo()
    r = invoke("decompress", tmp_path / "f.acnz", "--run", run, "-o", f"{out}/")
    assert r.exit_code == 0 and len(list((out / "d").iterdir())) == 12


def _forged(data: bytes, images: np.ndarray, **fields) -> bytes:
    """``data`` with header fields changed and its digest and CRC made good again."""
    header, words = read_header(data)
    header.update(fields)
    header["digest"] = digest(images, header["mode"], covered(header))[:32]
    return pack(header, words.astype("<u4").tobytes())


@pytest.mark.parametrize("names, words", [
    (["a.png", "a.png"], "two images are named"),
    (["a.png", "A.PNG"], "two images are named"),
    (["a.png", "a.png/b.png"], "is both an image and the folder"),
    (["/".join(["d"] * 1000) + "/x.png", "y.png"], "not a plain relative path"),
    (["x\ty.png", "y.png"], "not a plain relative path"),
])
def test_crafted_names_are_refused_before_anything_is_decoded(names, words, tmp_path):
    t = trained(prior="vae")
    images = t.data.test_x.numpy()[:2]
    data = compress(t.model, images, "ordered", names=["p.png", "q.png"],
                    plain_if_smaller=False).data
    with pytest.raises(CodecError, match=words):
        decompress(t.model, _forged(data, images, names=names))


# -- crafted files -----------------------------------------------------------------------------

def _field_offsets(data: bytes) -> dict[str, tuple[int, int]]:
    r = _Reader(data[:-4], "f")
    version, flags = struct.unpack_from("<HB", data, len(MAGIC))
    spans = {}
    for field, kind in _layout({"format": version, "flags": flags & ~FLAG_MODES}):
        start = r.pos
        r.field(kind)
        r.varints = version >= VARINT_FORMAT  # every field after the format
        spans[field] = (start, r.pos)
    return spans


def _with_good_crc_and_digest(body: bytes, images: np.ndarray) -> bytes:
    """A header-edited file whose digest (where the header still parses) and CRC agree
    with the edit: only acnkit's own checks stand between it and the decoder."""
    try:
        header, _ = read_header(body + struct.pack("<I", zlib.crc32(body)))
    except CodecError:
        return body + struct.pack("<I", zlib.crc32(body))
    start, end = _field_offsets(body + b"\0\0\0\0")["digest"]
    for mode in ("ordered", "set"):
        new = bytes.fromhex(digest(images, mode, covered(header))[:32])
        if header["mode"] == mode:
            body = body[:start] + new + body[end:]
    return body + struct.pack("<I", zlib.crc32(body))


def _model(kind: str):
    """A small trained model: "vae"/"acn" on 0/1 digits, "vae-17"/"acn-17" at digits' 17
    levels (a logistic mixture)."""
    prior, _, levels = kind.partition("-")
    return levels_model(prior, "mlp", "logistic") if levels else trained(prior=prior)


@pytest.mark.parametrize("prior", ["vae", "acn", "vae-17"])
def test_every_header_bit_flipped_is_refused_or_decodes_the_same_images(prior):
    """Every bit of a small file's header, flipped with the CRC and the digest made good:
    one CodecError line, or (an edit the header can take, such as a name) the same
    pixels; never a traceback, a hang or other images."""
    t = _model(prior)
    images = t.data.test_x.numpy()[:3]
    data = compress(t.model, images, "ordered", names=["a.png", "b.png", "c.png"],
                    plain_if_smaller=False).data
    header_end = _field_offsets(data)["names"][1]
    outcomes = {"refused": 0, "same": 0}
    for byte in range(len(MAGIC), header_end):
        for bit in range(8):
            body = bytearray(data[:-4])
            body[byte] ^= 1 << bit
            forged = _with_good_crc_and_digest(bytes(body), images)
            try:
                out = decompress(t.model, forged)
            except CodecError as exc:
                assert "\n" not in str(exc)
                outcomes["refused"] += 1
                continue
            assert np.array_equal(out.reshape(-1).astype(np.int64),
                                  images.reshape(-1).astype(np.int64)), (byte, bit)
            outcomes["same"] += 1
    assert outcomes["refused"] > 100


@pytest.mark.parametrize("kind", ["acn", "acn-17"])
def test_a_fuzzed_payload_is_refused_with_one_line(kind):
    """Random bit flips and cuts in the payload (CRC made good; fixed seed): CodecError,
    never a KeyError, a panic or other images."""
    t = _model(kind)
    images = t.data.test_x.numpy()[:20]
    data = compress(t.model, images, "ordered", plain_if_smaller=False).data
    start = _field_offsets(data)["names"][1]
    rng = np.random.default_rng(20261203)
    for _ in range(150):
        body = bytearray(data[:-4])
        if rng.random() < 0.2:
            body = body[: rng.integers(start, len(body))]
        for _ in range(rng.integers(1, 4)):
            i = int(rng.integers(start, len(body)))
            body[i] ^= 1 << int(rng.integers(0, 8))
        forged = bytes(body) + struct.pack("<I", zlib.crc32(bytes(body)))
        try:
            out = decompress(t.model, forged)
        except CodecError as exc:
            assert "\n" not in str(exc)
            continue
        assert np.array_equal(out, images)


def test_unknown_flags_and_wrapping_shapes_and_huge_counts_are_refused():
    t = trained(prior="vae")
    images = t.data.test_x.numpy()[:5]
    data = compress(t.model, images, "ordered", plain_if_smaller=False).data
    header, words = read_header(data)
    spans = _field_offsets(data)
    body = bytearray(data[:-4])
    body[spans["flags"][0]] |= 0x40  # a bit no flag has (0x80 would lengthen the varint)
    with pytest.raises(CodecError, match="flags 0x40 set bits"):
        read_header(bytes(body) + struct.pack("<I", zlib.crc32(bytes(body))))
    for fields, words_ in (({"input_shape": [2**32 - 1] * 4}, "does not hold"),
                           ({"count": 2**24}, "more than a file holds")):
        with pytest.raises(CodecError, match=words_):
            read_header(pack({**header, **fields}, words.astype("<u4").tobytes()))


def test_header_numbers_are_varints_read_back_exactly_and_refused_when_malformed():
    """Format 9 writes every number as a varint: each kind's extremes come back, and a
    number longer than ten bytes, written longer than it needs, or out of its kind's
    range is one line, before anything is allocated."""
    from acnkit.codec.fileformat import _encode, varint

    cases = [("B", 0), ("B", 255), ("H", 65535), ("I", 0), ("I", 127), ("I", 128),
             ("I", 2**32 - 1), ("i", 0), ("i", -1), ("i", 1), ("i", -(2**31)), ("i", 2**31 - 1)]
    for kind, value in cases:
        r = _Reader(MAGIC + _encode(kind, value, True), "f")
        assert r.number(kind) == value and r.pos == len(r.data), (kind, value)
    assert varint(127) == b"\x7f" and varint(128) == b"\x80\x01" and varint(300) == b"\xac\x02"
    bad = [("I", b"\x80" * 10 + b"\x01", "more than ten bytes"),
           ("I", b"\x85\x00", "longer than it needs"),
           ("I", varint(2**32), "out of range"), ("B", varint(256), "out of range"),
           ("i", varint(2**32), "out of range"), ("I", b"\x80\x80", "truncated")]
    for kind, raw, why in bad:
        with pytest.raises(CodecError, match=why):
            _Reader(MAGIC + raw, "f").number(kind)


def test_a_stack_that_runs_dry_says_so():
    t = trained(prior="vae")
    images = t.data.test_x.numpy()[:40]
    data = compress(t.model, images, "ordered", lanes=1, plain_if_smaller=False).data
    header, words = read_header(data)
    # the same words claimed to hold many more images: the stack empties early
    forged = pack({**header, "count": 400, "input_shape": [400, 1, 8, 8]},
                  words.astype("<u4").tobytes())
    with pytest.raises(CodecError, match="ran out of bits at image 42"):
        decompress(t.model, forged)


def test_another_models_file_names_both_fingerprints_in_full():
    t, other = trained(prior="vae"), trained(prior="vae", seed=1)
    data = compress(t.model, t.data.test_x.numpy()[:30], "ordered").data
    with pytest.raises(CodecError) as exc:
        decompress(other.model, data)
    a, b = t.model.fingerprint()[:32], other.model.fingerprint()[:32]
    assert a in str(exc.value) and b in str(exc.value)


def test_compress_refuses_more_images_than_a_file_holds(monkeypatch):
    monkeypatch.setattr(sys.modules["acnkit.codec.compress"], "MAX_IMAGES", 10)
    t = trained(prior="acn")
    with pytest.raises(UsageError, match="more than one file holds"):
        compress(t.model, t.data.test_x.numpy()[:11], "ordered")


# -- honest figures and small inputs ------------------------------------------------------------

def test_acn_ordered_mode_pays_only_for_orders_that_can_be_told_apart():
    t = trained(prior="acn")
    same = np.repeat(t.data.test_x.numpy()[:2], 150, axis=0)
    same[::3] = t.data.test_x.numpy()[5]
    ordered, as_set = (compress(t.model, same, m, plain_if_smaller=False) for m in
                       ("ordered", "set"))
    extra = (ordered.bits_per_image - as_set.bits_per_image) * len(same)
    told_apart = log_distinct_orderings(same) / np.log(2)
    assert abs(extra - told_apart) < 200, (extra, told_apart)
    assert np.array_equal(decompress(t.model, ordered.data), same)
    assert abs(ordered.model_bits_per_image - as_set.model_bits_per_image
               - told_apart / len(same)) < 1e-6


def test_small_inputs_are_stored_plainly_when_that_is_smaller(run, tmp_path):
    src = tmp_path / "src"
    scans(src, [f"s{i:02d}.png" for i in range(20)])
    f = tmp_path / "f.acnz"
    r = invoke("compress", run, src, "-o", f)
    assert r.exit_code == 0 and "stored plainly" in r.stdout, r.output
    header, _ = read_header(f.read_bytes())
    assert header["stored"] and len(_payload(f.read_bytes())) == 20 * 64 // 8  # a bit a pixel
    out = tmp_path / "out"
    r = invoke("decompress", f, "--run", run, "-o", f"{out}/")
    assert r.exit_code == 0, r.output
    for i in range(20):
        a = np.asarray(Image.open(src / f"s{i:02d}.png"))
        b = np.asarray(Image.open(out / f"s{i:02d}.png"))
        assert np.array_equal(a, b)


def _payload(data: bytes) -> bytes:
    return data[_field_offsets(data)["names"][1]: -4]


# -- image files and other inputs ---------------------------------------------------------------

@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads /proc")
def test_an_image_of_huge_dimensions_is_refused_from_its_header(tmp_path):
    path = tmp_path / "bomb.png"
    Image.new("1", (30000, 30000)).save(path)
    code = ("import sys\n"
            "from pathlib import Path\n"
            "from acnkit.files import read_image\n"
            "from acnkit.errors import UsageError\n"
            f"try:\n    read_image(Path({str(path)!r}), (1, 8, 8), 2, 128)\n"
            "except UsageError as e:\n    print('refused:', e)\n"
            "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')]\n"
            "print(hwm[0].split()[1])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    lines = out.stdout.splitlines()
    assert lines[0].startswith("refused:") and "8x8" in lines[0], out
    assert int(lines[1]) < 600_000  # kB, the peak: the pixels (900 MB) were never decoded


def test_sixteen_bit_images_are_scaled_not_clipped(tmp_path):
    path = tmp_path / "g16.png"
    levels = np.full((8, 8), 200, dtype=np.uint16)
    levels[0, 0] = 65535
    Image.fromarray(levels).save(path)
    got = read_image(path, (1, 8, 8), 2, 2)[0][0]  # 200/65535 is grey level 1 of 255 (clipped: 255)
    assert got[0, 0] == 1 and got[1, 1] == 0


@pytest.mark.parametrize("value", ["nan", "-1", "256"])
def test_a_threshold_outside_the_grey_levels_is_refused(run, tmp_path, value):
    scans(tmp_path / "src", ["a.png"])
    r = invoke("compress", run, tmp_path / "src", "--threshold", value, "-o", tmp_path / "f")
    one_line_failure(r, 2)
    assert "--threshold must be a grey level" in r.stderr and not (tmp_path / "f").exists()


def test_a_name_with_a_newline_is_refused_naming_the_file(run, tmp_path):
    scans(tmp_path / "src", ["a\nb.png"])
    r = invoke("compress", run, tmp_path / "src", "-o", tmp_path / "f")
    one_line_failure(r, 2)
    assert "a\\nb.png" in r.stderr


def test_an_empty_npy_a_lying_header_and_standard_input(run, tmp_path):
    empty = tmp_path / "empty.npy"
    empty.write_bytes(b"")
    r = invoke("compress", run, "--input", empty, "-o", tmp_path / "f")
    one_line_failure(r, 2)
    assert "is empty" in r.stderr
    buf = io.BytesIO()
    np.save(buf, np.zeros((4, 64), dtype=np.uint8))
    raw = buf.getvalue().replace(b"(4, 64)", b"(10**12,)".replace(b"10**12", b"999999999999"), 1)
    liar = tmp_path / "liar.npy"
    liar.write_bytes(raw)
    with pytest.raises(UsageError, match="claims 999999999999 values"):
        load_images(liar)
    images = np.random.default_rng(1).integers(0, 2, (30, 64)).astype(np.uint8)
    buf = io.BytesIO()
    np.save(buf, images)
    r = invoke("compress", run, "--input", "-", "-o", tmp_path / "f.acnz",
               input=buf.getvalue())
    assert r.exit_code == 0, r.output
    r = invoke("decompress", "-", "--run", run, "-o", tmp_path / "back.npy",
               input=(tmp_path / "f.acnz").read_bytes())
    assert r.exit_code == 0, r.output
    assert np.array_equal(np.load(tmp_path / "back.npy"), images)


def test_end_of_input_is_never_reported_as_an_interruption(run, tmp_path):
    r = invoke("compress", run, "--input", "-", "-o", tmp_path / "f", input=b"")
    one_line_failure(r, 2)
    assert "interrupted" not in r.output


@pytest.mark.timeout(60)
def test_a_fifo_among_the_images_is_refused_without_blocking(run, tmp_path):
    from acnkit.data.images import read_levels
    from acnkit.errors import DataError

    fifo = tmp_path / "a.png"
    os.mkfifo(fifo)  # Pillow opening the path would wait for a writer for ever
    r = invoke("compress", run, fifo, "-o", tmp_path / "x.acnz")
    one_line_failure(r, 2)
    assert f"{fifo} is a FIFO, not a regular file; give image files" in r.stderr
    assert not (tmp_path / "x.acnz").exists()
    # a FIFO put in place of a listed file, between the listing and the read
    with pytest.raises(UsageError, match="is a FIFO, not a regular file"):
        read_image(fifo, (1, 8, 8), 2, 128)
    with pytest.raises(DataError, match="is a FIFO, not a regular file"):
        read_levels(fifo, None)
