"""Images of any size coded as tiles of the model's size: every pixel back, the edges'
padding costing nothing, each image's size and place restored; refusals of what tiles
cannot keep."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest

from acnkit import RunConfig, Trainer
from acnkit.codec import FORMAT_VERSION, compress, decompress, read_header
from acnkit.codec.tiles import cut, cut_all, extents, join, tile_count
from acnkit.errors import CodecError, UsageError


def trained(**kw) -> Trainer:
    return _trained(tuple(sorted((k, tuple(sorted(v.items())) if isinstance(v, dict) else v)
                                 for k, v in kw.items())))


@functools.cache
def _trained(kw: tuple) -> Trainer:
    base = dict(epochs=1, latent_dim=6, encoder_hidden="64", decoder_hidden="64",
                prior_hidden=32, batch_size=64, test_limit=60, train_limit=400)
    base.update({k: dict(v) if k == "decoder_options" else v for k, v in kw})
    t = Trainer(RunConfig(**base))
    for _ in range(5):
        t.train_pass()
    return t


def photos(channels: int, levels: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    sizes = [(13, 20), (8, 8), (5, 3), (1, 1), (17, 9)]
    return [rng.integers(0, levels, size=(channels, h, w)).astype(np.uint8) for h, w in sizes]


def test_cutting_and_joining_give_back_every_pixel():
    images = photos(3, 256)
    tiles, ext, sizes = cut_all(images, (8, 8))
    assert len(tiles) == sum(tile_count(tuple(s), (8, 8)) for s in sizes) == len(ext)
    assert [list(e) for e in extents((13, 20), (8, 8))] == [[8, 8], [8, 8], [8, 4],
                                                             [5, 8], [5, 8], [5, 4]]
    for a, b in zip(join(tiles, sizes), images, strict=True):
        assert np.array_equal(a, b)
    one, _ = cut(images[3], (8, 8))
    assert one.shape == (1, 3, 8, 8) and one[0, :, 1:, :].max() == 0  # zeros past the edge


@pytest.mark.parametrize("prior", ["vae", "acn"])
@pytest.mark.parametrize("portable", [True, False])
def test_images_of_any_size_round_trip_exactly(prior, portable):
    model = trained(prior=prior, data="digits", pixels="binary").model
    images = photos(1, 2)
    tiles, _, sizes = cut_all(images, (8, 8))
    names = [f"p{i}.png" for i in range(len(images))]
    c = compress(model, tiles, "ordered", tiles=sizes, names=names, portable=portable,
                 lanes=3)
    header, _ = read_header(c.data)
    assert header["format"] == FORMAT_VERSION and header["tiles"] == sizes and header["names"] == names
    back = join(decompress(model, c.data), header["tiles"])
    for a, b in zip(back, images, strict=True):
        assert np.array_equal(a, b)


def test_an_autoregressive_decoder_codes_only_the_real_pixels():
    model = trained(decoder="pixelcnn", decoder_options={"layers": 2, "channels": 8},
                    data="digits", pixels="native", prior="acn", decoder_hidden=None).model
    images = photos(1, model.levels, seed=1)
    tiles, _, sizes = cut_all(images, (8, 8))
    c = compress(model, tiles, "ordered", tiles=sizes, lanes=2)
    for a, b in zip(join(decompress(model, c.data), sizes), images, strict=True):
        assert np.array_equal(a, b)


def test_padding_costs_nothing():
    """A 1 x 1 image in an 8 x 8 tile costs its pixel, its tile's size (ten bits at most)
    and the latent's net cost, far below the tile's 64 pixels coded."""
    model = trained(prior="vae", data="digits", pixels="native", loss="categorical").model
    rng = np.random.default_rng(3)
    small = [rng.integers(0, model.levels, size=(1, 1, 1)).astype(np.uint8) for _ in range(40)]
    full = [np.pad(s, ((0, 0), (0, 7), (0, 7))) for s in small]
    a = compress(model, cut_all(small, (8, 8))[0], tiles=[[1, 1]] * 40, lanes=1)
    b = compress(model, cut_all(full, (8, 8))[0], tiles=[[8, 8]] * 40, lanes=1)
    assert len(a.data) < 0.5 * len(b.data), (len(a.data), len(b.data))


def test_tiles_refuse_set_mode_and_sizes_that_do_not_fit():
    model = trained(prior="vae", data="digits", pixels="binary").model
    tiles, _, sizes = cut_all(photos(1, 2), (8, 8))
    with pytest.raises(UsageError, match="set mode would not keep"):
        compress(model, tiles, "set", tiles=sizes)
    with pytest.raises(UsageError, match="tiles must be the tiles of images"):
        compress(model, tiles[:-1], tiles=sizes)


def test_a_tiled_file_whose_sizes_were_edited_is_refused():
    from acnkit.codec.fileformat import pack

    model = trained(prior="vae", data="digits", pixels="binary").model
    tiles, _, sizes = cut_all(photos(1, 2), (8, 8))
    header, words = read_header(compress(model, tiles, tiles=sizes, lanes=1).data)
    payload = words.astype("<u4").tobytes()
    # still 6 tiles: passes the header checks, and the digest catches it after decoding
    with pytest.raises(CodecError, match="corrupt"):
        decompress(model, pack({**header, "tiles": [[13, 19]]}, payload))
    # 25 tiles: more than the file holds
    with pytest.raises(CodecError, match="tiled images do not fit"):
        read_header(pack({**header, "tiles": [[40, 40]]}, payload))


def test_the_cli_codes_image_files_of_any_size_and_writes_them_back(tmp_path):
    from click.testing import CliRunner
    from PIL import Image

    from acnkit.cli import main

    run = tmp_path / "run"
    cli = CliRunner()
    r = cli.invoke(main, ["run", "--prior", "acn", "--epochs", "1", "--latent-dim", "6",
                          "--encoder-hidden", "64", "--decoder-hidden", "64",
                          "--prior-hidden", "32", "--test-limit", "50", "--train-limit", "300",
                          "--out", str(run)])
    assert r.exit_code == 0, r.output
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    rng = np.random.default_rng(5)
    made = {}
    for name, (w, h) in {"a.png": (20, 13), "sub/b.png": (8, 8), "c.png": (3, 30)}.items():
        pixels = rng.integers(0, 2, size=(h, w)).astype(bool)
        Image.fromarray(pixels).save(src / name)
        made[name] = pixels
    f = tmp_path / "x.acnz"
    r = cli.invoke(main, ["compress", str(run), str(src), "-o", str(f)])
    assert r.exit_code == 0, r.output
    assert "3 images as 11 tiles of 8x8" in r.stdout
    r = cli.invoke(main, ["decompress", str(f), "--run", str(run), "-o", str(tmp_path / "x.npy")])
    assert r.exit_code == 2 and "give -o a folder" in r.stderr
    r = cli.invoke(main, ["decompress", str(f), "--run", str(run), "-o", str(tmp_path / "out") + "/"])
    assert r.exit_code == 0, r.output
    for name, pixels in made.items():
        with Image.open(tmp_path / "out" / name) as img:
            assert img.mode == "1" and np.array_equal(np.asarray(img), pixels), name
    r = cli.invoke(main, ["compress", str(run), str(src), "--set", "-o", str(tmp_path / "y.acnz")])
    assert r.exit_code == 2 and "set mode would not keep" in r.stderr
    assert not (tmp_path / "y.acnz").exists()


def test_a_grey_image_in_a_colour_file_costs_one_channel():
    model = trained(prior="vae", data="sample-patches", pixels="native", train_limit=200).model
    rng = np.random.default_rng(7)
    grey = np.repeat(rng.integers(0, 256, size=(1, 40, 45)).astype(np.uint8), 3, axis=0)
    tiles, _, sizes = cut_all([grey], (32, 32))
    as_grey = compress(model, tiles, tiles=sizes, modes=["L"], lanes=1)
    as_colour = compress(model, tiles, tiles=sizes, modes=["RGB"], lanes=1)
    assert len(as_grey.data) < 0.5 * len(as_colour.data), (len(as_grey.data),
                                                           len(as_colour.data))
    back = join(decompress(model, as_grey.data), sizes)[0]
    assert np.array_equal(back, grey)
    with pytest.raises(UsageError, match="grey image's tiles must hold its levels"):
        bad = tiles.copy()
        bad[0, 1, 0, 0] ^= 1
        compress(model, bad, tiles=sizes, modes=["L"])


def test_bench_photos_codes_each_photo_alone_and_all_together(tmp_path):
    from click.testing import CliRunner
    from PIL import Image

    from acnkit.cli import main

    run = tmp_path / "run"
    r = CliRunner().invoke(main, ["run", "--data", "sample-patches", "--pixels", "native",
                                  "--prior", "vae", "--latent-dim", "6", "--encoder-hidden",
                                  "64", "--decoder-hidden", "64", "--epochs", "1",
                                  "--train-limit", "200", "--test-limit", "20", "--out",
                                  str(run), "--quiet"])
    assert r.exit_code == 0, r.output
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 37, 3)).astype(np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(rng.integers(0, 256, (33, 20)).astype(np.uint8), "L").save(tmp_path / "b.png")
    r = CliRunner().invoke(main, ["bench", "photos", "--run", str(run), str(tmp_path / "a.png"),
                                  str(tmp_path / "b.png"), "--json"])
    assert r.exit_code == 0, r.output
    import json

    result = json.loads(r.stdout)
    assert [p["photo"] for p in result["photos"]] == ["a.png", "b.png"]
    for photo in result["photos"]:
        assert all(c["round_trip"] for c in photo["codecs"].values()), photo
    assert result["together"]["round_trip"] and result["subpixels"] == 40 * 37 * 3 + 33 * 20


def test_a_file_of_tiles_decodes_alike_under_sse4_kernels(tmp_path):
    """A portable file of grey and colour photos of other sizes, written here with the
    widest kernels, decodes bit for bit in a process held to SSE4 kernels and one thread
    (the PixelCNN's stepping across kernels: tests/test_portable.py)."""
    import os
    import subprocess
    import sys

    from acnkit.testing.portable import SSE4

    out = tmp_path / "run"
    from click.testing import CliRunner

    from acnkit.cli import main

    r = CliRunner().invoke(main, ["run", "--data", "sample-patches", "--pixels", "native",
                                  "--encoder-hidden", "32", "--decoder-hidden", "32",
                                  "--latent-dim", "4", "--epochs", "1", "--train-limit", "64",
                                  "--test-limit", "8", "--out", str(out), "--quiet"])
    assert r.exit_code == 0, r.output
    from acnkit.trained import load_run

    model = load_run(out, "cpu").model
    rng = np.random.default_rng(4)
    colour = rng.integers(0, 256, (3, 35, 33)).astype(np.uint8)
    grey = np.repeat(rng.integers(0, 256, (1, 20, 40)).astype(np.uint8), 3, axis=0)
    tiles, _, sizes = cut_all([colour, grey], (32, 32))
    c = compress(model, tiles, tiles=sizes, modes=["RGB", "L"], lanes=2)
    (tmp_path / "f.acnz").write_bytes(c.data)
    code = (f"import numpy as np\nfrom acnkit.trained import load_run\n"
            f"from acnkit.codec import decompress\n"
            f"m = load_run({str(out)!r}, 'cpu').model\n"
            f"data = open({str(tmp_path / 'f.acnz')!r}, 'rb').read()\n"
            f"np.save({str(tmp_path / 'back.npy')!r}, decompress(m, data))\n")
    env = {**os.environ, **SSE4, "OMP_NUM_THREADS": "1", "ACNKIT_THREADS": "1"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=300,
                   capture_output=True)
    back = join(np.load(tmp_path / "back.npy"), sizes)
    assert np.array_equal(back[0], colour) and np.array_equal(back[1], grey)


def test_the_cli_counts_a_grey_photo_s_bits_per_dim_over_its_one_channel(tmp_path):
    from click.testing import CliRunner
    from PIL import Image

    from acnkit.cli import main

    run, cli = tmp_path / "run", CliRunner()
    r = cli.invoke(main, ["run", "--prior", "vae", "--data", "sample-patches", "--pixels",
                          "native", "--epochs", "1", "--latent-dim", "6", "--encoder-hidden",
                          "64", "--decoder-hidden", "64", "--train-limit", "200",
                          "--test-limit", "20", "--out", str(run)])
    assert r.exit_code == 0, r.output
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 256, (40, 50), dtype=np.uint8)).save(tmp_path / "g.png")
    Image.fromarray(rng.integers(0, 256, (33, 20, 3), dtype=np.uint8)).save(tmp_path / "c.png")
    for files, subpixels in (([tmp_path / "g.png"], 40 * 50),
                             ([tmp_path / "g.png", tmp_path / "c.png"], 40 * 50 + 33 * 20 * 3)):
        r = cli.invoke(main, ["compress", str(run), *map(str, files), "-o",
                              str(tmp_path / "x.acnz"), "--overwrite", "--json"])
        assert r.exit_code == 0, r.output
        out = json.loads(r.stdout)
        assert out["bits_per_dim"] == pytest.approx(8 * out["bytes"] / subpixels)
