"""The benchmark commands run and print what the docs say (their figures are not tested:
timings belong in benchmarks, not in tests)."""

import json

import pytest
import torch
from click.testing import CliRunner

from acnkit.cli import main

SEARCH_KEYS = {"searcher", "n", "dim", "batch", "k", "build_seconds", "query_ms_per_batch",
               "recall_at_k", "flop_bound_ms"}


def test_bench_search_json():
    r = CliRunner().invoke(main, ["bench", "search", "--search", "torch", "--search", "annoy",
                                  "--n", "3000", "--dim", "8", "--queries", "2", "--json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert {row["searcher"] for row in rows} == {"torch", "annoy"}
    for row in rows:
        assert SEARCH_KEYS <= set(row)
        assert row["n"] == 3000 and row["flop_bound_ms"] > 0
    torch_rows = [row for row in rows if row["searcher"] == "torch"]
    assert [row["recall_at_k"] for row in torch_rows] == [1.0, 1.0]
    assert torch_rows[1]["settings"] == {"kernel": "torch"}  # the unfused kernel, beside
    assert any("search_k" in row["settings"] for row in rows if row["searcher"] == "annoy")


def test_bench_search_on_a_runs_codes(tmp_path):
    out = tmp_path / "r"
    assert CliRunner().invoke(main, ["run", "--epochs", "1", "--train-limit", "300",
                                     "--out", str(out)]).exit_code == 0
    r = CliRunner().invoke(main, ["bench", "search", "--search", "torch", "--codes", str(out),
                                  "--batch", "16", "--queries", "2", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)[0]["n"] == 300


def test_bench_epoch_json():
    r = CliRunner().invoke(main, ["bench", "epoch", "--data", "digits", "--search", "torch",
                                  "--train-limit", "256", "--json"])
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    assert result["data"] == "digits" and result["n"] == 256
    assert result["vae_epoch_seconds"] > 0
    (acn,) = result["acn"]
    assert acn["search"] == "torch"
    # each phase is charged to the model that has it: only ACN searches and builds a chain
    vae, phases = result["vae_phases"], acn["phases"]
    assert vae["store update"] == 0 and vae["ordered chain"] == 0
    assert phases["store update"] > 0 and phases["ordered chain"] > 0
    assert vae["search"] < 0.01 * phases["search"]  # the VAE only enters the phase


def test_bench_epoch_times_the_nets_of_a_config_file(tmp_path):
    config = tmp_path / "pc.toml"
    config.write_text('decoder = "pixelcnn"\nlatent_dim = 4\nencoder_hidden = "32"\n'
                      'prior_hidden = 16\n[decoder_options]\nchannels = 4\nlayers = 2\n')
    r = CliRunner().invoke(main, ["bench", "epoch", "--data", "digits", "--search", "torch",
                                  "--train-limit", "128", "--config", str(config), "--json"])
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    assert "pixelcnn" in result["nets"] and result["vae_phases"]["decoder forward"] > 0


def test_bench_codec_times_an_autoregressive_decoders_pixel_loop(tmp_path):
    out = tmp_path / "r"
    assert CliRunner().invoke(main, [
        "run", "--epochs", "1", "--train-limit", "200", "--latent-dim", "4", "--prior", "vae",
        "--decoder", "pixelcnn", "--decoder-option", "channels=4", "--decoder-option",
        "layers=2", "--out", str(out)]).exit_code == 0
    r = CliRunner().invoke(main, ["bench", "codec", str(out), "--data", "digits", "--limit",
                                  "5", "--json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)["acnkit"]
    assert all(row["round_trip"] and row["decoder"] == "pixelcnn" for row in rows)
    assert [row["pixel_steps"] for row in rows] == [5 * 64, 5 * 64]
    assert all(0 < row["pixel_loop_seconds"] <= row["decompress_seconds"] for row in rows)


def test_bench_memory_sees_what_a_search_allocates(make_plugin):
    """A searcher that allocates four times the store in every search is reported as such
    (the high-water mark is read in a fresh child process that loads the plugin too)."""
    make_plugin("acnkit-wasteful", """
        import acnkit, torch
        from acnkit_plugins.search_torch import TorchSearcher

        class Wasteful(TorchSearcher):
            def search(self, queries, k, exclude=None, banned=None):
                waste = torch.ones(4 * self.codes.numel())  # written, so really resident
                return super().search(queries, k, exclude, banned) + 0 * int(waste[-1])

        @acnkit.hookimpl
        def register_searchers(register):
            register("wasteful", Wasteful)
    """)
    for name, low, high in (("wasteful", 1.5, 1e9), ("torch", 0.0, 1.0)):
        r = CliRunner().invoke(main, ["bench", "memory", "--search", name, "--n", "1000000",
                                      "--dim", "8"])
        assert r.exit_code == 0, r.output
        result = json.loads(r.stdout)
        assert result["store_mb"] == pytest.approx(1000000 * 8 * 4 / 2**20)
        assert low <= result["extra_ratio"] < high, (name, result)


def test_bench_codec_json(tmp_path):
    out = tmp_path / "r"
    assert CliRunner().invoke(main, ["run", "--epochs", "1", "--train-limit", "300",
                                     "--latent-dim", "6", "--out", str(out)]).exit_code == 0
    r = CliRunner().invoke(main, ["bench", "codec", str(out), "--data", "digits", "--limit",
                                  "30", "--json"])
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    assert result["images"] == 30 and result["pixels"] == 64
    assert [row["mode"] for row in result["acnkit"]] == ["ordered", "set"]
    assert all(row["round_trip"] for row in result["acnkit"])
    assert {row["codec"] for row in result["classic"]} == {
        "gzip -9", "bzip2 -9", "xz -9e", "png (1-bit)", "jbig (pbmtojbg -q)", "zpaq -m5",
        "jpeg xl (cjxl -d 0 -e 9)"}
    for row in result["classic"]:  # each external one measured, or skipped naming its package
        assert "bytes" in row or "Debian package" in row["skipped"]
    # the digits are sampled from grey levels: the floor is below every real codec's size
    floor = result["floor_bits_per_image"]
    assert 0 < floor < min(r["bits_per_image"] for r in result["classic"] if "bytes" in r)


def test_external_codecs_are_skipped_when_missing_and_take_their_best_layout(monkeypatch):
    import shutil

    import numpy as np

    from acnkit.bench import codec as bench_codec

    images = (np.random.default_rng(0).random((50, 1, 8, 8)) < 0.3).astype(np.uint8)
    monkeypatch.setattr(shutil, "which", lambda program: None)
    rows = bench_codec.external_codecs(images)
    assert [r["skipped"] for r in rows if "skipped" in r] == [
        "pbmtojbg not on PATH (Debian package jbigkit-bin)",
        "zpaq not on PATH (Debian package zpaq)",
        "cjxl not on PATH (Debian package libjxl-tools)"]
    monkeypatch.undo()
    for r in bench_codec.external_codecs(images):
        if "bytes" in r:
            assert r["bytes"] == min(r["tried"].values()) and r["round_trip"], r


def test_eight_bit_codecs_decode_to_the_same_pixels_and_are_timed():
    """Every codec of 8-bit images on grey images: its file decodes to the input (checked,
    not assumed; WebP gives grey back as R = G = B), with seconds each way; WebP is never
    given a picture taller than its 16,383-pixel cap."""

    import numpy as np

    from acnkit.bench import codec as bench_codec

    rng = np.random.default_rng(1)
    images = (rng.integers(0, 40, (2100, 1, 8, 8)) + 100).astype(np.uint8)
    rows = bench_codec.external_codecs(images, 256)
    names = [r["codec"] for r in rows]
    assert names == ["gzip -9", "bzip2 -9", "xz -9e", "png (Pillow, optimize)",
                     "webp lossless (cwebp -lossless -z 9)", "jpeg xl (cjxl -d 0 -e 9)",
                     "zpaq -m5"]
    for r in rows:
        if "skipped" in r:
            assert "Debian package" in r["skipped"]
            continue
        assert r["round_trip"] and r["compress_seconds"] > 0 and r["decompress_seconds"] > 0, r
        # noise of 40 levels: about log2(40) = 5.3 bits a subpixel for a good codec
        assert 4.5 < 8 * r["bytes"] / images.size < 8.5, r
        if r["codec"].startswith("webp"):
            assert set(r["tried"]) == {"mosaic png"}  # 2100 x 8 rows: too tall for WebP


def test_the_floor_is_the_pixels_binary_entropy():
    import numpy as np

    from acnkit.bench.codec import floor_bits

    p = np.array([[0.5, 0.0, 1.0, 0.25]])  # 1 + 0 + 0 + H(1/4) bits
    h = -(0.25 * np.log2(0.25) + 0.75 * np.log2(0.75))
    assert floor_bits(p) == pytest.approx(1 + h)


def test_the_mosaic_layout_holds_every_image_once():
    import numpy as np

    from acnkit.bench.codec import _layouts

    images = np.arange(7 * 2 * 3).reshape(7, 1, 2, 3) % 2
    layouts = _layouts(images)
    assert layouts["tall"].shape == (14, 3) and layouts["mosaic"].shape == (6, 9)
    assert layouts["mosaic"].sum() == images.sum() == layouts["tall"].sum()


def test_bench_chain_json():
    r = CliRunner().invoke(main, ["bench", "chain", "--n", "500", "--dim", "4", "--json"])
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    assert result["n"] == 500 and result["chain_seconds"] > 0
    # candidate lists spare most full scans (a plain greedy chain makes one per code)
    assert 0 < result["full_scans"] < result["n"] // 10


@pytest.mark.parametrize("prior, mixtures", [("acn", 1), ("acn", 3), ("vae", 1)])
def test_timed_step_gives_the_gradients_of_the_real_step(prior, mixtures):
    """bench epoch times a step cut at every network boundary: the cuts must not change
    what the step computes."""
    from acnkit import RunConfig, Trainer
    from acnkit.bench.epoch import PhaseClock, timed_step

    cfg = RunConfig(prior=prior, mixtures=mixtures, latent_dim=6, encoder_hidden="32",
                    decoder_hidden="32", prior_hidden=16, train_limit=300)
    grads = []
    for step in ("real", "timed"):
        t = Trainer(cfg)
        if t.memory:
            t.memory.start_epoch()
        seen = {}
        t.optimizer.step = lambda seen=seen, t=t: seen.update(
            {i: p.grad.clone() for i, p in enumerate(t.parameters) if p.grad is not None})
        idx = torch.arange(40, 104)
        if step == "real":
            t.train_step(idx)
        else:
            clock = PhaseClock(t.device)
            timed_step(t, idx, clock)
            assert clock.seconds["encoder forward"] > 0
        grads.append(seen)
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for i in grads[0]:
        torch.testing.assert_close(grads[0][i], grads[1][i], rtol=1e-4, atol=1e-6)


def test_bench_search_crossover():
    r = CliRunner().invoke(main, ["bench", "search", "--search", "annoy", "--sizes",
                                  "2000,6000", "--dim", "8", "--queries", "2", "--json"])
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    assert {(row["searcher"], row["n"]) for row in result["rows"]} >= {
        ("torch", 2000), ("torch", 6000), ("annoy", 2000), ("annoy", 6000)}
    by_name = {c["searcher"]: c for c in result["crossover"]}
    assert by_name["torch"]["crossover"] is None
    annoy = by_name["annoy"]
    fastest_torch = {n: min(r["query_ms_per_batch"] for r in result["rows"]
                            if r["searcher"] == "torch" and r["n"] == n) for n in (2000, 6000)}
    for n, v in annoy["sizes"].items():
        if v:  # annoy's time at that size over exact search's fastest
            assert v["x_exact"] == pytest.approx(v["ms"] / fastest_torch[int(n)])
    wins = [int(n) for n, v in annoy["sizes"].items() if v and v["x_exact"] < 1]
    assert annoy["crossover"] == (min(wins) if wins else None)


def test_crossover_picks_the_fastest_setting_that_reaches_the_recall():
    from acnkit.bench.search import crossover

    def row(name, n, ms, recall, setting):
        return {"searcher": name, "n": n, "query_ms_per_batch": ms, "recall_at_k": recall,
                "settings": {"s": setting}}

    rows = [row("torch", 10, 1.0, 1.0, 0), row("torch", 100, 10.0, 1.0, 0),
            row("x", 10, 0.5, 0.9, 1), row("x", 10, 2.0, 1.0, 2),      # fast one misses recall
            row("x", 100, 9.0, 0.995, 3), row("x", 100, 3.0, 0.999, 4)]
    (_, x) = crossover(rows)
    assert x["sizes"][10]["settings"] == {"s": 2} and x["sizes"][10]["x_exact"] == 2.0
    assert x["sizes"][100]["settings"] == {"s": 4} and x["crossover"] == 100


def test_bench_codec_of_a_grey_run_sets_it_beside_the_8_bit_codecs(tmp_path):
    out = tmp_path / "r"
    assert CliRunner().invoke(main, ["run", "--epochs", "1", "--pixels", "native",
                                     "--train-limit", "300", "--latent-dim", "6",
                                     "--out", str(out)]).exit_code == 0
    r = CliRunner().invoke(main, ["bench", "codec", str(out), "--data", "digits", "--limit",
                                  "30", "--json"])
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    assert result["levels"] == 17 and result["floor_bits_per_image"] is None
    assert all(row["round_trip"] and row["bits_per_dim"] > 0 for row in result["acnkit"])
    assert "webp lossless (cwebp -lossless -z 9)" in {row["codec"] for row in result["classic"]}
    assert all(row.get("round_trip", True) for row in result["classic"])
    r = CliRunner().invoke(main, ["bench", "codec", str(out), "--data", "digits", "--limit",
                                  "30"])
    assert r.exit_code == 0 and "17 levels" in r.output, r.output


def test_bench_codec_without_runs_sets_out_the_other_codecs_alone():
    r = CliRunner().invoke(main, ["bench", "codec", "--data", "digits", "--pixels", "native",
                                  "--limit", "40", "--json"])
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    assert result["acnkit"] == [] and result["levels"] == 17 and result["images"] == 40
    assert all(row.get("round_trip", True) for row in result["classic"])
    r = CliRunner().invoke(main, ["bench", "codec", "--data", "digits"])
    assert r.exit_code == 2 and "give run folders, or --pixels" in r.stderr
