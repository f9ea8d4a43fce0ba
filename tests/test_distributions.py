import math

import torch
import torch.distributions as D
from acnkit_plugins.acn import ACNPrior
from acnkit_plugins.vae import StandardNormalPrior

from acnkit.distributions import DiagGaussian, MixtureDiagGaussian, kl_diag_gaussians


def _normal(g: DiagGaussian) -> D.Independent:
    return D.Independent(D.Normal(g.mean, g.log_std.exp()), 1)


def test_diag_gaussian_log_prob_matches_torch():
    torch.manual_seed(0)
    g = DiagGaussian(torch.randn(7, 5), torch.randn(7, 5) * 0.3)
    z = torch.randn(7, 5)
    torch.testing.assert_close(g.log_prob(z), _normal(g).log_prob(z))


def test_closed_form_kl_matches_torch():
    torch.manual_seed(1)
    q = DiagGaussian(torch.randn(9, 6), torch.randn(9, 6) * 0.5)
    p = DiagGaussian(torch.randn(9, 6), torch.randn(9, 6) * 0.5)
    torch.testing.assert_close(kl_diag_gaussians(q, p), D.kl_divergence(_normal(q), _normal(p)))


def test_vae_prior_kl_is_kl_to_standard_normal():
    torch.manual_seed(2)
    prior = StandardNormalPrior(4)
    q = DiagGaussian(torch.randn(3, 4), torch.randn(3, 4) * 0.2)
    ref = D.kl_divergence(_normal(q), D.Independent(D.Normal(torch.zeros(3, 4), 1.0), 1))
    torch.testing.assert_close(prior.kl(q, q.rsample(), None), ref)


def _torch_mixture(m: MixtureDiagGaussian) -> D.Independent:
    mix = D.MixtureSameFamily(D.Categorical(logits=m.logits),
                              D.Normal(m.means, m.log_stds.exp()))
    return D.Independent(mix, 1)


def test_mixture_log_prob_matches_torch():
    torch.manual_seed(3)
    m = MixtureDiagGaussian(torch.randn(4, 6, 3), torch.randn(4, 6, 3), torch.randn(4, 6, 3) * .3)
    z = torch.randn(4, 6)
    torch.testing.assert_close(m.log_prob(z), _torch_mixture(m).log_prob(z))


def test_mixture_sample_has_the_mixture_moments():
    m = MixtureDiagGaussian(torch.tensor([[[0.0, math.log(3.0)]]]),
                            torch.tensor([[[-2.0, 1.0]]]), torch.tensor([[[-1.0, -1.0]]]))
    gen = torch.Generator().manual_seed(0)
    rep = MixtureDiagGaussian(*(t.expand(40000, 1, 2) for t in (m.logits, m.means, m.log_stds)))
    s = rep.sample(gen)
    assert abs(s.mean().item() - (0.25 * -2 + 0.75 * 1)) < 0.03


def test_single_sample_mixture_kl_is_unbiased():
    """Mean of the engine's estimator over many z equals a Monte-Carlo reference of
    KL(q || p) computed independently with torch.distributions."""
    torch.manual_seed(4)
    prior = ACNPrior(latent_dim=3, hidden=16, layers=2, mixtures=4)
    context = torch.randn(1, 3)
    q = DiagGaussian(torch.tensor([[0.3, -0.5, 1.0]]), torch.tensor([[-0.5, 0.1, -1.0]]))
    n = 200_000
    with torch.no_grad():
        qn = DiagGaussian(q.mean.expand(n, 3), q.log_std.expand(n, 3))
        est = prior.kl(qn, qn.rsample(), context.expand(n, 3))
        p_ref = _torch_mixture(prior.distribution(context, 1))
        z_ref = _normal(q).sample((n,)).squeeze(1)
        ref = _normal(q).log_prob(z_ref.unsqueeze(1)).squeeze(1) - p_ref.log_prob(z_ref)
    stderr = math.hypot(est.std().item(), ref.std().item()) / math.sqrt(n)
    assert abs(est.mean().item() - ref.mean().item()) < 5 * stderr
    assert est.mean().item() > 0


def test_acn_prior_single_gaussian_uses_closed_form():
    torch.manual_seed(5)
    prior = ACNPrior(latent_dim=4, hidden=8, layers=3, mixtures=1)
    c = torch.randn(6, 4)
    q = DiagGaussian(torch.randn(6, 4), torch.zeros(6, 4))
    p = prior.distribution(c, 6)
    assert isinstance(p, DiagGaussian)
    # Closed form does not depend on the sample z.
    torch.testing.assert_close(prior.kl(q, torch.randn(6, 4), c), prior.kl(q, torch.randn(6, 4), c))
    torch.testing.assert_close(prior.kl(q, q.rsample(), c), D.kl_divergence(_normal(q), _normal(p)))


def test_acn_prior_skip_connections_shape():
    prior = ACNPrior(latent_dim=5, hidden=7, layers=3, mixtures=2)
    assert [layer.in_features for layer in prior.hidden] == [5, 12, 12]
    assert prior.out.in_features == 21 and prior.out.out_features == 5 * 3 * 2
