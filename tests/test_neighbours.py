
import pytest
import torch

from acnkit import neighbours
from acnkit.neighbours import brute_force_knn, exact_knn


@pytest.fixture(params=[False, True], ids=["one-chunk", "many-chunks"])
def chunked(request, monkeypatch):
    if request.param:
        monkeypatch.setattr(neighbours, "CHUNK_BYTES", 1)  # 1024-row chunks
    return request.param


def test_exact_knn_equals_brute_force(chunked):
    g = torch.Generator().manual_seed(0)
    codes = torch.randn(3000, 8, generator=g)
    q_idx = torch.randint(0, 3000, (64,), generator=g)
    queries = codes[q_idx]
    _, got = exact_knn(queries, codes, 5, exclude=q_idx)
    ref = brute_force_knn(queries, codes, 5, exclude=q_idx)
    assert torch.equal(got, ref)
    assert not (got == q_idx.unsqueeze(1)).any()


def test_exclusion_lists_and_banned_rows(chunked):
    g = torch.Generator().manual_seed(1)
    codes = torch.randn(2500, 4, generator=g)
    queries = torch.randn(10, 4, generator=g)
    plain = brute_force_knn(queries, codes, 3)
    exclude = torch.cat([plain[:, :2], torch.full((10, 1), -1)], 1)
    banned = torch.zeros(2500, dtype=torch.bool)
    banned[plain[:, 2]] = True
    _, got = exact_knn(queries, codes, 3, exclude=exclude, banned=banned)
    assert torch.equal(got, brute_force_knn(queries, codes, 3, exclude, banned))
    assert not torch.isin(got, plain).any()


def test_fewer_eligible_rows_than_k_pads_with_minus_one():
    codes = torch.randn(6, 3)
    banned = torch.tensor([True, True, True, False, False, True])
    _, got = exact_knn(codes[:2], codes, 4, exclude=torch.tensor([3, 0]), banned=banned)
    assert got[0].tolist() == [4, -1, -1, -1]
    assert sorted(got[1].tolist()[:2]) == [3, 4] and got[1, 2:].tolist() == [-1, -1]


def test_large_groups_with_a_partial_last_group(monkeypatch):
    monkeypatch.setattr(neighbours, "group_size", lambda b, n, d: 37)
    monkeypatch.setattr(neighbours, "CHUNK_BYTES", 1)
    g = torch.Generator().manual_seed(2)
    codes = torch.randn(5000, 6, generator=g)
    idx = torch.randint(0, 5000, (20,), generator=g)
    _, got = exact_knn(codes[idx], codes, 7, exclude=idx)
    assert torch.equal(got, brute_force_knn(codes[idx], codes, 7, exclude=idx))


def test_group_minima_stay_small_beside_a_large_store():
    n, d, b = 1_000_000, 32, 128
    minima_bytes = b * (n // neighbours.group_size(b, n, d)) * 4
    assert minima_bytes <= 0.05 * n * d * 4


# -- the compiled fused kernel (acnkit/_fused_knn.c) ----------------------------------------

fused = pytest.mark.skipif(neighbours.fused_kernel() is None,
                           reason="the fused kernel is not built or the CPU lacks AVX-512")


def reference(queries, codes, k, exclude=None, banned=None):
    """brute_force_knn, padded with -1 to k columns as every searcher answers."""
    got = brute_force_knn(queries, codes, k, exclude, banned)
    return torch.cat([got, got.new_full((len(got), k - got.shape[1]), -1)], 1)


@fused
@pytest.mark.parametrize("n, d", [(1, 3), (5, 1), (31, 7), (32, 20), (33, 64), (1000, 20),
                                  (3001, 32)])
@pytest.mark.parametrize("b", [1, 7, 9, 64])
def test_fused_kernel_equals_brute_force(n, d, b):
    g = torch.Generator().manual_seed(n * 100 + d + b)
    codes = torch.randn(n, d, generator=g)
    store = neighbours.TransposedStore(codes)
    queries = torch.randn(b, d, generator=g)
    for k in (1, 5):
        _, got = neighbours.fused_knn(queries, codes, store, k)
        assert torch.equal(got, reference(queries, codes, k)), (n, d, b, k)
        own = torch.randint(0, n, (b,), generator=g)
        exclude = torch.stack([own, torch.randint(-1, n, (b,), generator=g),
                               torch.full((b,), -1)], 1)
        banned = torch.rand(n, generator=g) < 0.5
        _, got = neighbours.fused_knn(codes[own], codes, store, k, exclude, banned)
        assert torch.equal(got, reference(codes[own], codes, k, exclude, banned))


@fused
def test_fused_kernel_follows_rows_that_change_and_pads_with_minus_one():
    g = torch.Generator().manual_seed(5)
    codes = torch.randn(2000, 16, generator=g)
    store = neighbours.TransposedStore(codes)
    rows = torch.randperm(2000, generator=g)[:300]
    codes[rows] = torch.randn(300, 16, generator=g) * 3
    store.update(codes, rows)
    q = torch.randn(50, 16, generator=g)
    assert torch.equal(neighbours.fused_knn(q, codes, store, 7)[1], brute_force_knn(q, codes, 7))
    banned = torch.ones(2000, dtype=torch.bool)
    banned[[10, 1500]] = False
    _, got = neighbours.fused_knn(q, codes, store, 4, banned=banned)
    assert (got[:, 2:] == -1).all() and (got[:, :2].sort(1).values == torch.tensor([10, 1500])).all()
    # more candidates than the kernel holds: the torch kernel answers, as exactly
    _, got = neighbours.fused_knn(q, codes, store, 70)
    assert torch.equal(got, brute_force_knn(q, codes, 70))


@pytest.mark.parametrize("fused_option", [True, False])
def test_torch_searcher_meets_the_contract_with_either_kernel(fused_option):
    from acnkit_plugins.search_torch import TorchSearcher

    from acnkit.testing import run_contract

    run_contract(lambda: TorchSearcher(fused=fused_option))
    s = TorchSearcher(fused=fused_option)
    s.reset(torch.randn(100, 4))
    expected = "fused" if fused_option and neighbours.fused_kernel() else "torch"
    assert s.settings() == {"kernel": expected}


def test_a_config_file_can_turn_the_fused_kernel_off(tmp_path):
    from click.testing import CliRunner

    import acnkit
    from acnkit.cli import main

    toml = tmp_path / "c.toml"
    toml.write_text("[search_options]\nfused = false\n")
    out = tmp_path / "r"
    r = CliRunner().invoke(main, ["run", "--config", str(toml), "--latent-dim", "4",
                                  "--encoder-hidden", "32", "--decoder-hidden", "32",
                                  "--prior-hidden", "16", "--epochs", "1", "--train-limit",
                                  "200", "--out", str(out)])
    assert r.exit_code == 0, r.output
    config = acnkit.load_run(out).config
    assert acnkit.Trainer(config).memory.searcher.settings() == {"kernel": "torch"}


@pytest.mark.parametrize("unique", [False, True])
def test_torch_searcher_equals_brute_force_on_every_step_of_training(unique):
    """The searcher ACN trains with (fused kernel where built) answers every query of a
    short run exactly as brute force on the live store, exclusions and the uniqueness
    mask included."""
    from acnkit import RunConfig, Trainer

    t = Trainer(RunConfig(latent_dim=6, encoder_hidden="32", decoder_hidden="32",
                          prior_hidden=16, train_limit=400, batch_size=50, unique=unique))
    searcher, calls = t.memory.searcher, []
    search = searcher.search

    def checked(queries, k, exclude=None, banned=None):
        got = search(queries, k, exclude, banned)
        assert torch.equal(got, reference(queries, searcher.codes, k, exclude, banned))
        calls.append(len(queries))
        return got

    searcher.search = checked
    t.fit(2)
    assert sum(calls) >= 2 * 400
