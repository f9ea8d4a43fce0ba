"""Training on photos of any size: random patches drawn afresh each epoch (the same for the
same seed and epoch, resumed or not), held-out figures on the held-out photos' whole tiles."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from acnkit import RunConfig, Trainer
from acnkit.cli import main
from acnkit.data.images import Patches, tiles_of


def photo_folder(root, sizes=((40, 30), (25, 50), (16, 16)), test=((20, 24),)):
    rng = np.random.default_rng(0)
    for split, shapes in (("train", sizes), ("test", test)):
        (root / split).mkdir(parents=True)
        for i, (h, w) in enumerate(shapes):
            ramp = np.linspace(0, 200, w)[None, :, None]
            pixels = (ramp + rng.integers(0, 50, (h, w, 3))).clip(0, 255).astype(np.uint8)
            Image.fromarray(pixels, "RGB").save(root / split / f"{i}.png")
    # a grey photo beside the colour ones: its levels in all three channels
    Image.fromarray(rng.integers(0, 256, (18, 20)).astype(np.uint8), "L").save(
        root / "train" / "grey.png")
    return root


def test_patches_are_drawn_afresh_each_epoch_and_alike_for_a_seed():
    photos = [np.arange(3 * 20 * 30, dtype=np.uint8).reshape(3, 20, 30) % 251]
    draw = Patches(photos, (8, 8), seed=3)
    one, again, two = draw(1), draw(1), draw(2)
    assert one.shape == (2 * 3, 3, 8, 8)  # as many as the photo holds whole tiles
    assert np.array_equal(one, again) and not np.array_equal(one, two)
    assert not np.array_equal(one, Patches(photos, (8, 8), seed=4)(1))
    tiles = tiles_of(photos, (8, 8))
    assert tiles.shape == (6, 3, 8, 8) and np.array_equal(tiles[1], photos[0][:, :8, 8:16])


def test_a_run_on_photos_trains_on_fresh_patches_and_tests_on_fixed_tiles(tmp_path):
    folder = photo_folder(tmp_path / "photos")
    config = dict(data="images", data_dir=str(folder), patches="8x8", pixels="native",
                  latent_dim=4, encoder_hidden="32", decoder_hidden="32", prior_hidden=16,
                  batch_size=16, epochs=2)
    t = Trainer(RunConfig(**config))
    assert t.data.image_shape == (3, 8, 8) and len(t.data.test_x) == 2 * 3
    seen = []
    for _ in range(2):
        t.train_epoch()
        seen.append(t.data.train_x.clone())
    assert seen[0].shape == seen[1].shape and not torch.equal(seen[0], seen[1])
    # the run's CLI: the option, and a resumed run draws what a whole one drew
    out = tmp_path / "run"
    args = ["run", "--data", "images", "--data-dir", str(folder), "--patches", "8x8",
            "--pixels", "native", "--latent-dim", "4", "--prior", "vae", "--out", str(out),
            "--quiet"]
    r = CliRunner().invoke(main, [*args, "--epochs", "1"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["run", "--resume", str(out), "--epochs", "2", "--quiet"])
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize("extra,message", [
    (["--crop", "8x8"], "--patches draws patches from whole images; drop --crop"),
    (["--valid-size", "5"], "drop --valid-size"),
    (["--pixels", "binary"], "pass --pixels native"),
])
def test_patches_refuse_what_they_cannot_honour(tmp_path, extra, message):
    folder = photo_folder(tmp_path / "photos")
    args = ["run", "--data", "images", "--data-dir", str(folder), "--patches", "8x8",
            "--out", str(tmp_path / "r"), *(["--pixels", "native"] if "--pixels" not in extra
                                           else []), *extra]
    r = CliRunner().invoke(main, args)
    assert r.exit_code in (1, 2) and message in r.stderr and r.stderr.count("\n") == 1, r.output


def test_a_photo_smaller_than_a_patch_is_named(tmp_path):
    folder = photo_folder(tmp_path / "photos", sizes=((40, 30), (6, 50)))
    r = CliRunner().invoke(main, ["run", "--data", "images", "--data-dir", str(folder),
                                  "--patches", "8x8", "--pixels", "native", "--out",
                                  str(tmp_path / "r")])
    assert r.exit_code == 2 and "1.png is 50x6 pixels, smaller than --patches 8x8" in r.stderr


def test_permuted_colours_put_a_patch_s_channels_in_a_random_order():
    photo = np.stack([np.full((16, 16), v, dtype=np.uint8) for v in (10, 20, 30)])
    plain = Patches([photo], (8, 8), seed=1, augment=())(1)
    mixed = Patches([photo], (8, 8), seed=1, augment=("permute",))(1)
    assert all(tuple(p[:, 0, 0]) == (10, 20, 30) for p in plain)
    orders = {tuple(p[:, 0, 0]) for p in mixed}
    assert all(sorted(o) == [10, 20, 30] for o in orders) and len(orders) > 1
    r = CliRunner().invoke(main, ["run", "--data", "images", "--data-dir", "x", "--patches",
                                  "8x8", "--pixels", "native", "--augment", "flip,spin"])
    assert r.exit_code == 2 and "--augment takes none or some of flip, permute, grey" in r.stderr


def test_the_patch_data_set_passes_the_data_set_kit(tmp_path):
    from acnkit_plugins.datasets import images

    from acnkit.testing import check_dataset

    folder = photo_folder(tmp_path / "photos")
    check_dataset(images, data_dir=str(folder), patches="8x8", pixels="native")


def test_the_kit_catches_a_resample_that_breaks_its_contract():
    import dataclasses

    from acnkit import Dataset
    from acnkit.testing import check_dataset

    x = torch.zeros((4, 1, 2, 2), dtype=torch.uint8)
    y = torch.zeros(4, dtype=torch.long)
    base = Dataset("d", x, y, x, y, (1, 2, 2))
    for bad, message in ((lambda e: x, "the same images for another epoch"),
                         (lambda e: x[:2] + e, "not the training images'"),
                         (lambda e: torch.randint(0, 2, x.shape, dtype=torch.uint8),
                          "other images for the same epoch")):
        made = dataclasses.replace(base, resample=bad)
        with pytest.raises(AssertionError, match=message):
            check_dataset(lambda data_dir=None, seed=0, made=made: made)


def test_grey_patches_are_the_photo_s_luminance_as_pillow_makes_it():
    from PIL import Image

    from acnkit.data.images import GREY_SHARE, luminance

    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (3, 64, 64), dtype=np.uint8)
    pillow = np.asarray(Image.fromarray(photo.transpose(1, 2, 0)).convert("L"))
    assert np.array_equal(luminance(photo), pillow)
    plain = Patches([photo], (8, 8), seed=1, augment=("flip",))(1)
    drawn = Patches([photo], (8, 8), seed=1, augment=("flip", "permute", "grey"))(1)
    grey = (drawn[:, 0] == drawn[:, 1]).all((1, 2)) & (drawn[:, 1] == drawn[:, 2]).all((1, 2))
    assert 0.1 < grey.mean() < 0.4, (grey.mean(), GREY_SHARE)
    # a grey patch is the luminance of a window of the photo (flipped or not), never of its
    # channels shuffled
    windows = {luminance(photo[:, r: r + 8, c: c + 8]).tobytes()
               for r in range(57) for c in range(57)}
    windows |= {luminance(photo[:, r: r + 8, c: c + 8][:, :, ::-1]).tobytes()
                for r in range(57) for c in range(57)}
    assert all(p[0].tobytes() in windows for p in drawn[grey])
    # its draw comes after the others, so a run without it draws what it drew before
    permuted = Patches([photo], (8, 8), seed=1, augment=("flip", "permute"))(1)
    assert np.array_equal(permuted[~grey], drawn[~grey]) and len(plain) == len(drawn)
    # a grey photo is left as it is
    one = Patches([photo[:1]], (8, 8), seed=1, augment=("grey",))(1)
    assert one.shape[1] == 1
