"""Held-out figures are code lengths: checked against independent computations."""

import math

import pytest
import torch
import torch.distributions as D
import torch.nn.functional as F

from acnkit import RunConfig, Trainer
from acnkit.evaluate import EVAL_SEED, held_out_figures, train_mixture_nats
from tests.test_memory import naive_chain


def trained(passes: int = 1, **kw) -> Trainer:
    base = dict(epochs=1, latent_dim=6, encoder_hidden="64", decoder_hidden="64",
                prior_hidden=32, batch_size=64, test_limit=300)
    base.update(kw)
    t = Trainer(RunConfig(**base))
    for _ in range(passes):
        t.train_pass()
    return t


def prior_dist(t: Trainer, context: torch.Tensor) -> D.Distribution:
    """The prior as a torch.distributions object, built from the plugin's raw outputs."""
    p = t.model.prior.distribution(context, len(context))
    if hasattr(p, "logits"):
        comps = D.Normal(p.means, p.log_stds.exp())
        return D.Independent(D.MixtureSameFamily(D.Categorical(logits=p.logits), comps), 1)
    return D.Independent(D.Normal(p.mean, p.log_std.exp()), 1)


@pytest.mark.parametrize("mixtures,posterior", [(1, "unit"), (3, "learned")])
def test_acn_test_nats_are_the_sum_of_costs_along_the_chain(mixtures, posterior):
    t = trained(passes=10, mixtures=mixtures, posterior=posterior)
    figures = held_out_figures(t.model, t.data)
    x = t.data.test_x.float()
    with torch.no_grad():
        q = t.model.encode(x)
        # The evaluation's one sample per image (all 300 images fit in one batch).
        eps = torch.randn(q.mean.shape, generator=torch.Generator().manual_seed(EVAL_SEED))
        z = q.mean + q.log_std.exp() * eps
        total = 0.0
        previous = torch.zeros(1, q.mean.shape[1])
        for i in naive_chain(q.mean):
            logits = t.model.decoder(z[i: i + 1])
            recon = F.binary_cross_entropy_with_logits(logits, x[i: i + 1], reduction="sum")
            post = D.Independent(D.Normal(q.mean[i: i + 1], q.log_std[i: i + 1].exp()), 1)
            prior = prior_dist(t, previous)
            if mixtures == 1:
                kl = D.kl_divergence(post, prior)
            else:
                kl = post.log_prob(z[i: i + 1]) - prior.log_prob(z[i: i + 1])
            total += recon.item() + kl.item()
            previous = q.mean[i: i + 1]
    assert figures["test_nats"] == pytest.approx(total / len(x), rel=1e-5)
    order = sum(math.log(k) for k in range(1, len(x) + 1)) / len(x)
    assert figures["test_nats_set"] == figures["test_nats"]
    assert figures["test_nats_ordered"] == pytest.approx(figures["test_nats"] + order, rel=1e-9)
    # The optimistic figure is kept apart, under its own name.
    assert figures["test_nats_nearest_train"] != figures["test_nats"]


def test_vae_set_mode_saves_log_n_factorial_per_image():
    t = trained(prior="vae")
    figures = held_out_figures(t.model, t.data)
    n = len(t.data.test_x)
    order = sum(math.log(k) for k in range(1, n + 1)) / n
    own = figures["test_recon"] + figures["test_kl"]  # image by image
    assert figures["test_nats_ordered"] == pytest.approx(own, rel=1e-12)
    assert figures["test_nats_set"] == pytest.approx(own - order, rel=1e-9)
    # the headline is set mode for the VAE too, as for ACN
    assert figures["test_nats"] == figures["test_nats_set"]
    assert figures["test_bits_per_dim"] == pytest.approx(
        figures["test_nats_set"] / (math.log(2) * 64), rel=1e-12)
    assert figures["test_order_nats"] == pytest.approx(order, rel=1e-9)
    assert "test_nats_nearest_train" not in figures


@pytest.mark.parametrize("mixtures", [1, 2])
def test_train_mixture_bound_against_a_direct_computation(mixtures):
    t = trained(mixtures=mixtures, train_limit=50, test_limit=20)
    x = t.data.test_x.float()
    train_codes = t.model.encode(t.data.train_x).mean
    q = t.model.encode(x)
    got = train_mixture_nats(t.model, x, q, train_codes, batch_size=7)
    noise = torch.Generator().manual_seed(EVAL_SEED)
    total = 0.0
    with torch.no_grad():
        for s in range(0, len(x), 7):  # the same draws, batch by batch
            mean, std = q.mean[s: s + 7], q.log_std[s: s + 7].exp()
            z = mean + std * torch.randn(mean.shape, generator=noise)
            for i in range(len(z)):
                zi = z[i: i + 1]
                recon = F.binary_cross_entropy_with_logits(t.model.decoder(zi), x[s + i: s + i + 1],
                                                           reduction="sum").item()
                per_code = [prior_dist(t, train_codes[n: n + 1]).log_prob(zi).item()
                            for n in range(len(train_codes))]
                log_mix = torch.logsumexp(torch.tensor(per_code, dtype=torch.float64), 0).item()
                log_mix -= math.log(len(train_codes))
                log_q = D.Independent(D.Normal(mean[i], std[i]), 1).log_prob(zi[0]).item()
                total += recon + log_q - log_mix
    assert got["test_nats_train_mixture"] == pytest.approx(total / len(x), rel=1e-5)


@pytest.mark.parametrize("prior", ["vae", "acn"])
def test_eval_with_train_codes_both_splits_in_both_modes(tmp_path, prior):
    from click.testing import CliRunner

    from acnkit.cli import main

    out = tmp_path / prior
    args = ["run", "--prior", prior, "--epochs", "1", "--latent-dim", "6", "--encoder-hidden",
            "64", "--decoder-hidden", "64", "--prior-hidden", "32", "--train-limit", "300",
            "--test-limit", "100", "--out", str(out)]
    assert CliRunner().invoke(main, args).exit_code == 0
    r = CliRunner().invoke(main, ["eval", str(out), "--with-train", "--mixture", "--json"])
    assert r.exit_code == 0, r.output
    import json

    m = json.loads(r.stdout)
    order = sum(math.log(k) for k in range(1, 401)) / 400
    assert m["train_test_nats_ordered"] - m["train_test_nats_set"] == pytest.approx(order)
    own = m["train_test_recon"] + m["train_test_kl"]  # the prior's own code: ACN's is a set
    assert m["train_test_nats_set" if prior == "acn" else "train_test_nats_ordered"] == \
        pytest.approx(own)
    assert m["train_test_nats"] == m["train_test_nats_set"]  # the headline mode
    assert ("test_nats_train_mixture" in m) == (prior == "acn")


def test_importance_sampled_bound_matches_exact_integration_on_a_2d_latent():
    """-log p(x) = -log of the integral of p(x|z) p(z) over z, by quadrature on a fine grid
    of the 2-d latent space; the importance-sampled figure must approach it from above."""
    from acnkit.evaluate import importance_sampled_nll

    t = Trainer(RunConfig(prior="vae", latent_dim=2, encoder_hidden="64",
                          decoder_hidden="64", train_limit=600, epochs=2))
    t.fit()
    x = t.data.test_x[:6]
    posterior = t.model.encode(x)
    side = torch.linspace(-6, 6, 1201, dtype=torch.float64)
    step = float(side[1] - side[0])
    grid = torch.cartesian_prod(side, side)                                   # G x 2
    log_prior = -0.5 * (grid ** 2).sum(1) - math.log(2 * math.pi)
    with torch.no_grad():
        logits = torch.cat([t.model.decoder(chunk.float()).flatten(1).double()
                            for chunk in grid.split(100_000)])                # G x 64
    xs = x.flatten(1).double()                                                # 6 x 64
    log_lik = xs @ torch.nn.functional.logsigmoid(logits).T \
        + (1 - xs) @ torch.nn.functional.logsigmoid(-logits).T               # 6 x G
    exact = -(torch.logsumexp(log_lik + log_prior, 1) + 2 * math.log(step)).mean().item()
    many = importance_sampled_nll(t.model, x, posterior, None, samples=4000)
    one = importance_sampled_nll(t.model, x, posterior, None, samples=1)
    assert exact <= many + 0.02, (exact, many)         # a bound, up to quadrature error
    assert many - exact < 0.05, (exact, many)          # and a tight one with many samples
    assert one > many                                   # more samples, tighter


def test_knn_accuracy_equals_sklearn_and_is_reported_every_epoch():
    from sklearn.neighbors import KNeighborsClassifier

    from acnkit.evaluate import knn_accuracy

    t = trained(prior="vae")
    assert 0 <= held_out_figures(t.model, t.data)["test_knn5_accuracy"] <= 1
    g = torch.Generator().manual_seed(0)
    train_codes, test_codes = torch.randn(400, 6, generator=g), torch.randn(300, 6, generator=g)
    t.data.train_y = torch.randint(0, 4, (400,), generator=g)
    t.data.test_y = torch.randint(0, 4, (300,), generator=g)
    clf = KNeighborsClassifier(5).fit(train_codes.numpy(), t.data.train_y.numpy())
    expected = float((clf.predict(test_codes.numpy()) == t.data.test_y.numpy()).mean())
    got = knn_accuracy(train_codes, t.data.train_y, test_codes, t.data.test_y, 5)
    assert got == pytest.approx(expected, abs=1e-12)
