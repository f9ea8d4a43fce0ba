import math

import pytest
import torch

from acnkit import RunConfig, Trainer, train
from acnkit.errors import NumericalError, PluginError, UsageError
from acnkit.neighbours import brute_force_knn


def small(**kw):
    base = dict(epochs=1, latent_dim=8, encoder_hidden="64", decoder_hidden="64",
                prior_hidden=32, batch_size=64)
    base.update(kw)
    return RunConfig(**base)


@pytest.mark.parametrize("prior", ["acn", "vae"])
def test_end_to_end_nats_are_finite_and_decrease(prior):
    history = train(small(prior=prior, epochs=4))
    assert len(history) == 4
    for m in history:
        assert all(math.isfinite(m[k]) for k in ("train_nats", "test_nats", "test_kl"))
    assert history[-1]["train_nats"] < history[0]["train_nats"]
    assert history[-1]["test_nats"] < history[0]["test_nats"]
    # 64 binary pixels: a model that learned something beats 64 * log 2 nats by far.
    assert history[-1]["test_nats"] < 64 * math.log(2)


def test_runs_are_reproducible():
    a = train(small(seed=3, epochs=2))
    b = train(small(seed=3, epochs=2))
    c = train(small(seed=4, epochs=2))
    strip = lambda h: [{k: v for k, v in m.items() if "seconds" not in k} for m in h]  # noqa: E731
    assert strip(a) == strip(b)
    assert strip(a) != strip(c)


def test_store_holds_fresh_codes_of_the_batch():
    t = Trainer(small())
    t.memory.start_epoch()
    idx = torch.arange(10, 74)
    before = t.memory.store.clone()
    with torch.no_grad():
        codes = t.model.encoder(t.data.train_x[idx].float()).mean
    t.train_step(idx)
    torch.testing.assert_close(t.memory.store[idx], codes)
    untouched = torch.ones(len(t.memory), dtype=torch.bool)
    untouched[idx] = False
    assert torch.equal(t.memory.store[untouched], before[untouched])


def test_neighbour_is_one_of_the_k_nearest_never_itself():
    t = Trainer(small(k=3))
    mem = t.memory
    mem.start_epoch()
    idx = torch.arange(64)
    codes = mem.store[idx].clone() + 0.01
    picked = mem.pick(idx, codes)
    near = brute_force_knn(codes, mem.store, 3, exclude=idx)
    # Indices decide: equal code values elsewhere in the store would not count.
    assert (picked.unsqueeze(1) == near).any(1).all()
    assert not (picked == idx).any()
    assert mem.neighbour_context(idx, codes).shape == codes.shape


@pytest.mark.parametrize("search", ["torch", "sklearn", "annoy"])
def test_unique_mode_never_uses_a_code_twice_in_an_epoch(search):
    t = Trainer(small(unique=True, search=search, batch_size=100, k=5))
    seen = []
    original = t.memory.pick

    def spy(idx, codes):
        out = original(idx, codes)
        seen.extend(out.tolist())
        assert not (out == idx).any()
        return out

    t.memory.pick = spy
    for _ in range(2):
        seen.clear()
        m = t.train_epoch()
        n = len(t.data.train_x)
        assert len(seen) == n
        assert m["unique_fallbacks"] <= 1
        assert len(set(seen)) >= n - m["unique_fallbacks"]


def test_k_must_be_smaller_than_the_store():
    with pytest.raises(UsageError, match="--k 200 must be smaller than the 100 training codes"):
        Trainer(small(k=200, train_limit=100))


def test_nan_loss_stops_with_epoch_and_batch():
    t = Trainer(small(lr=1e-3))
    with torch.no_grad():
        t.model.decoder.net[0].weight.fill_(float("nan"))
    with pytest.raises(NumericalError, match=r"epoch 1, batch 1; try a smaller --lr"):
        t.train_epoch()


def test_searcher_returning_wrong_shape_is_named():
    t = Trainer(small())

    class Bad:
        def reset(self, codes): ...
        def update(self, rows): ...
        def search(self, q, k, exclude=None, banned=None):
            return torch.zeros(len(q), k + 1, dtype=torch.long)

    t.memory.searcher = Bad()
    with pytest.raises(PluginError, match=r"searcher 'torch' \(plugin 'search_torch'\) returned"):
        t.train_epoch()


def test_validation_split_is_carved_from_training_data():
    t = Trainer(small(valid_size=200))
    full = Trainer(small())
    assert len(t.data.train_x) == len(full.data.train_x) - 200
    assert torch.equal(t.data.test_x, full.data.train_x[-200:])
    assert t.train_epoch()["eval_split"] == "valid"
    assert full.train_epoch()["eval_split"] == "test"


def test_reconstruction_and_kl_share_one_sample():
    t = Trainer(small(mixtures=2))  # the mixture KL is evaluated at the sample itself
    seen = {}
    decoder_forward, prior_kl = t.model.decoder.forward, t.model.prior.kl

    def decode(z):
        seen["decoder"] = z
        return decoder_forward(z)

    def kl(posterior, z, context):
        seen["kl"] = z
        return prior_kl(posterior, z, context)

    t.model.decoder.forward, t.model.prior.kl = decode, kl
    t.memory.start_epoch()
    t.train_step(torch.arange(64))
    assert seen["decoder"] is seen["kl"]


@pytest.mark.parametrize("mixtures", [1, 3])
def test_acn_prior_log_std_is_bounded_and_untouched_inside(mixtures):
    from acnkit_plugins.acn import LOG_STD_MAX, LOG_STD_MIN

    t = Trainer(small(mixtures=mixtures))
    context = t.memory.store[:16]
    before = t.model.prior.distribution(context, 16)
    field = "log_std" if mixtures == 1 else "log_stds"
    inside = getattr(before, field)
    assert (inside > LOG_STD_MIN).all() and (inside < LOG_STD_MAX).all()
    with torch.no_grad():  # push every output far out: the bounds hold
        t.model.prior.out.bias.fill_(-1e4)
        low = getattr(t.model.prior.distribution(context, 16), field)
        t.model.prior.out.bias.fill_(1e4)
        high = getattr(t.model.prior.distribution(context, 16), field)
    assert (low == LOG_STD_MIN).all() and (high == LOG_STD_MAX).all()


def test_searcher_returning_no_valid_candidate_is_refused():
    """A row of -1s would make the picker read store[-1], the last code, silently."""
    t = Trainer(small())
    honest = t.memory.searcher

    class Empty:
        def reset(self, codes):
            honest.reset(codes)

        def update(self, rows):
            honest.update(rows)

        def search(self, q, k, exclude=None, banned=None):
            out = honest.search(q, k, exclude, banned)
            out[3] = -1  # one query left without a neighbour
            return out

    t.memory.searcher = Empty()
    with pytest.raises(PluginError, match=r"returned no valid candidate \(-1\) for a query"):
        t.train_epoch()


def test_the_nearest_training_figure_reuses_the_chains_reconstructions():
    """test_nats_nearest_train takes only the KL again (the same z): it equals the full
    cost under the nearest-training context computed from scratch."""
    import torch

    from acnkit import RunConfig, Trainer
    from acnkit.evaluate import costs, held_out_figures, prior_context

    t = Trainer(RunConfig(prior="acn", epochs=1, train_limit=300, test_limit=50))
    t.train_pass()
    m, data = t.model, t.data
    q, train_codes = m.encode(data.test_x), m.encode(data.train_x).mean
    figures = held_out_figures(m, data, q, train_codes)
    near = prior_context(m, q.mean, "nearest_train", train_codes)
    recon, kl = costs(m, data.test_x, q, near)
    assert torch.isclose(torch.tensor(figures["test_nats_nearest_train"]),
                         (recon.sum() + kl.sum()) / len(recon), rtol=1e-6)
    assert torch.isclose(torch.tensor(figures["test_kl_nearest_train"]), kl.mean(), rtol=1e-6)
