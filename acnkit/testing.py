"""Conformance kits: the contract each kind of component must meet, as reusable checks.

Every built-in passes them (tests/test_contracts.py runs each registered plugin through its
kit); third-party authors run them from their own test-suites::

    from acnkit.testing import SearcherContract, check_prior
    from my_plugin import MySearcher, MyPrior

    class TestMySearcher(SearcherContract):
        factory = staticmethod(MySearcher)
        recall_floor = 0.9          # exact searchers: leave at 1.0

    def test_my_prior():
        check_prior(MyPrior)        # called as MyPrior(latent_dim)

Searchers: each ``check_*`` of ``CHECKS`` takes a zero-argument factory and raises
AssertionError on a breach; ``run_contract(factory)`` runs them in turn. The other kinds
have one function each, called with the factory as acnkit calls it: ``check_encoder``,
``check_decoder``, ``check_prior``, ``check_loss``, ``check_dataset`` (and
``check_prior_codable`` for what ``acnkit compress`` needs of a prior).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from .interfaces import Loss, NeighbourSearcher
from .neighbours import brute_force_knn

Factory = Callable[[], NeighbourSearcher]


def clustered_codes(n: int, dim: int, clusters: int = 50, seed: int = 0) -> Tensor:
    """Synthetic codes in Gaussian clusters, the shape ACN's code stores take."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(clusters, dim, generator=g) * 2.0
    which = torch.randint(0, clusters, (n,), generator=g)
    return centres[which] + 0.5 * torch.randn(n, dim, generator=g)


def _fresh(factory: Factory, codes: Tensor) -> NeighbourSearcher:
    searcher = factory()
    searcher.reset(codes)
    return searcher


def check_shapes(factory: Factory, recall_floor: float = 1.0) -> None:
    codes = clustered_codes(500, 8)
    out = _fresh(factory, codes).search(codes[:17].clone(), 4)
    assert isinstance(out, Tensor), f"search returned {type(out).__name__}, not a Tensor"
    assert out.shape == (17, 4), f"search returned shape {tuple(out.shape)}, expected (17, 4)"
    assert out.dtype == torch.long, f"search returned {out.dtype}, expected torch.long"
    assert ((out >= 0) & (out < 500)).all(), "indices outside the store"
    for row in out.tolist():
        assert len(set(row)) == len(row), f"a neighbour listed twice: {row}"


def check_self_exclusion(factory: Factory, recall_floor: float = 1.0) -> None:
    codes = clustered_codes(800, 8)
    idx = torch.arange(0, 800, 7)
    out = _fresh(factory, codes).search(codes[idx].clone(), 5, exclude=idx)
    assert not (out == idx.unsqueeze(1)).any(), "a query's own row came back as its neighbour"
    assert (out >= 0).all()


def check_exclusion_lists(factory: Factory, recall_floor: float = 1.0) -> None:
    codes = clustered_codes(600, 6)
    q = codes[:20].clone()
    nearest = brute_force_knn(q, codes, 3)
    exclude = torch.cat([nearest, torch.full((20, 1), -1)], 1)
    out = _fresh(factory, codes).search(q, 3, exclude=exclude)
    assert not (out.unsqueeze(2) == nearest.unsqueeze(1)).any(), "an excluded row came back"
    assert (out >= 0).all(), "enough eligible rows, yet -1 returned"


def check_banned_rows_and_widening(factory: Factory, recall_floor: float = 1.0) -> None:
    codes = clustered_codes(1000, 8)
    banned = torch.ones(1000, dtype=torch.bool)
    allowed = torch.tensor([3, 150, 480, 777, 901, 999, 42])
    banned[allowed] = False
    q = codes[500:510].clone()
    out = _fresh(factory, codes).search(q, 5, banned=banned)
    assert torch.isin(out, allowed).all(), "a banned row came back"
    # With 7 eligible rows spread over the store, every query must still find 5 of them
    # (an exact searcher: the nearest 5).
    assert (out >= 0).all(), "fewer than k eligible rows found: the search did not widen"
    if recall_floor >= 1.0:
        ref = brute_force_knn(q, codes, 5, banned=banned)
        assert torch.equal(out.sort(1).values, ref.sort(1).values), "not the nearest eligible rows"


def check_padding_when_too_few(factory: Factory, recall_floor: float = 1.0) -> None:
    codes = clustered_codes(300, 4)
    banned = torch.ones(300, dtype=torch.bool)
    banned[[10, 20]] = False
    out = _fresh(factory, codes).search(codes[:3].clone(), 4, banned=banned)
    assert out.shape == (3, 4)
    assert (out[:, 2:] == -1).all(), "slots beyond the eligible rows must be -1"
    assert (out[:, :2].sort(1).values == torch.tensor([10, 20])).all()


def check_recall(factory: Factory, recall_floor: float = 1.0) -> None:
    codes = clustered_codes(5000, 16)
    idx = torch.arange(0, 5000, 25)
    q = codes[idx].clone()
    searcher = _fresh(factory, codes)
    out = searcher.search(q, 5, exclude=idx)
    if not getattr(searcher, "nearest", True):
        # Not meant to be near: its answers must at least not all be the nearest ones.
        assert (out >= 0).all() and len(set(out.flatten().tolist())) > 5, "answers not spread"
        return
    ref = brute_force_knn(q, codes, 5, exclude=idx)
    recall = (out.unsqueeze(2) == ref.unsqueeze(1)).any(2).float().mean().item()
    assert recall >= recall_floor, f"recall@5 {recall:.3f} below the floor {recall_floor}"


def check_rows_change(factory: Factory, recall_floor: float = 1.0) -> None:
    """Rows overwritten in the store are found at their new place: at once by an exact
    searcher (after ``update``), by any searcher after the next ``reset``."""
    codes = clustered_codes(2000, 8)
    searcher = _fresh(factory, codes)
    target = torch.full((8,), 40.0)  # far from every cluster
    rows = torch.tensor([5, 1500])
    codes[rows] = target + torch.tensor([[0.01], [0.02]])
    searcher.update(rows)
    if not getattr(searcher, "exact", True):
        searcher.reset(codes)
    if not getattr(searcher, "nearest", True):
        return  # answers that are not meant to be near cannot show where a row moved
    out = searcher.search(target.unsqueeze(0), 2)
    assert sorted(out[0].tolist()) == [5, 1500], f"moved rows not found: {out[0].tolist()}"


def check_bad_arguments(factory: Factory, recall_floor: float = 1.0) -> None:
    codes = clustered_codes(100, 4)
    searcher = _fresh(factory, codes)
    for queries, k in ((codes[:2], 0), (torch.zeros(2, 5), 2)):
        try:
            searcher.search(queries, k)
        except ValueError:
            continue
        except Exception as exc:  # noqa: BLE001 - the contract's words, not the plugin's
            raise AssertionError(f"search raised {type(exc).__name__} for bad arguments k={k} "
                                 f"shape={tuple(queries.shape)}; it must raise ValueError "
                                 f"(acnkit.neighbours.check_search_args does)") from exc
        raise AssertionError(f"search accepted bad arguments k={k} "
                             f"shape={tuple(queries.shape)}; it must raise ValueError")


CHECKS = [check_shapes, check_self_exclusion, check_exclusion_lists,
          check_banned_rows_and_widening, check_padding_when_too_few, check_recall,
          check_rows_change, check_bad_arguments]


def run_contract(factory: Factory, recall_floor: float = 1.0) -> None:
    for check in CHECKS:
        check(factory, recall_floor)


class SearcherContract:
    """Subclass as ``Test...`` with ``factory`` (and ``recall_floor``) to get one test per check."""

    factory: Factory
    recall_floor: float = 1.0


def _make_test(check: Callable) -> Callable:
    def test(self: SearcherContract) -> None:
        check(type(self).factory, self.recall_floor)
    test.__name__ = "test_" + check.__name__.removeprefix("check_")
    test.__doc__ = check.__doc__
    return test


for _check in CHECKS:
    setattr(SearcherContract, "test_" + _check.__name__.removeprefix("check_"), _make_test(_check))


def check_prior_codable(prior_factory: Callable[[int], Any], latent_dim: int = 6,
                        batch: int = 3) -> None:
    """What ``acnkit compress`` needs of a prior plugin: ``distribution(context, B)`` gives a
    :class:`~acnkit.distributions.DiagGaussian` with (B, d) ``mean`` and ``log_std``, or a
    :class:`~acnkit.distributions.MixtureDiagGaussian` with (B, d, M) ``logits``, ``means``
    and ``log_stds``; finite numbers; the same floats for one context alone as the coder
    computes them (one row at a time, twice), since sender and receiver must agree in
    every bit."""
    from .distributions import DiagGaussian, MixtureDiagGaussian

    prior = prior_factory(latent_dim).eval()
    context = (torch.randn(batch, latent_dim, generator=torch.Generator().manual_seed(0))
               if prior.conditional else None)
    with torch.no_grad():
        dist = prior.distribution(context, batch)
        one = None if context is None else context[:1]
        first, second = prior.distribution(one, 1), prior.distribution(None if one is None
                                                                       else one.clone(), 1)
    fields: dict[str, tuple[int, ...]]
    if isinstance(dist, DiagGaussian):
        fields = {"mean": (batch, latent_dim), "log_std": (batch, latent_dim)}
    elif isinstance(dist, MixtureDiagGaussian):
        m = dist.logits.shape[-1]
        fields = {k: (batch, latent_dim, m) for k in ("logits", "means", "log_stds")}
    else:
        raise AssertionError(f"distribution() gave a {type(dist).__name__}; the codec codes "
                             f"DiagGaussian and MixtureDiagGaussian priors only")
    for name, shape in fields.items():
        value = getattr(dist, name)
        assert tuple(value.shape) == shape, f"{name} has shape {tuple(value.shape)}, not {shape}"
        assert torch.isfinite(value).all(), f"{name} holds NaN or infinite numbers"
        assert torch.equal(getattr(first, name), getattr(second, name)), (
            f"{name} differs between two calls on the same context: the coder needs "
            f"deterministic priors")


# ---------------------------------------------------------------- the other kinds

def _batch_independent(fn: Callable[..., Tensor], inputs: Tensor | tuple[Tensor, ...],
                       what: str) -> None:
    """Row i of a batch's output depends on row i of its input(s) alone (in eval mode): the
    codec and the evaluation batch differently from training."""
    args = inputs if isinstance(inputs, tuple) else (inputs,)
    whole = fn(*args)
    for i in (0, len(args[0]) - 1):
        alone = fn(*(a[i: i + 1] for a in args))
        assert torch.allclose(whole[i: i + 1], alone, atol=1e-5, rtol=1e-4), (
            f"{what} of one datum changes with the rest of its batch")


def _gradients_reach(module: torch.nn.Module, value: Tensor, what: str) -> None:
    params = [p for p in module.parameters() if p.requires_grad]
    assert params, f"{what} has no trainable parameters"
    value.sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in params), (
        f"no gradient reaches {what}'s parameters")


def check_encoder(factory: Callable[..., torch.nn.Module],
                  image_shape: tuple[int, ...] = (1, 8, 8), latent_dim: int = 6) -> None:
    """An encoder ``factory(image_shape, latent_dim, posterior=...)`` gives an
    ``nn.Module`` mapping images (B, *image_shape) of 0/1 floats to a
    :class:`~acnkit.distributions.DiagGaussian` with (B, d) ``mean`` and ``log_std``,
    finite; ``posterior="unit"`` fixes ``log_std`` to zero; rows are independent; the
    gradient reaches its parameters."""
    from .distributions import DiagGaussian

    g = torch.Generator().manual_seed(0)
    x = torch.bernoulli(torch.full((5, *image_shape), 0.4), generator=g)
    for posterior in ("learned", "unit"):
        enc = factory(image_shape, latent_dim, posterior=posterior)
        assert isinstance(enc, torch.nn.Module), f"the factory gave a {type(enc).__name__}"
        q = enc(x)
        assert isinstance(q, DiagGaussian), f"forward gave a {type(q).__name__}, not a DiagGaussian"
        for name in ("mean", "log_std"):
            value = getattr(q, name)
            assert tuple(value.shape) == (5, latent_dim), (
                f"{name} has shape {tuple(value.shape)}, expected (5, {latent_dim})")
            assert torch.isfinite(value).all(), f"{name} holds NaN or infinite numbers"
        if posterior == "unit":
            assert torch.equal(q.log_std, torch.zeros_like(q.log_std)), (
                'posterior="unit" must give log_std = 0')
        _gradients_reach(enc, q.mean + q.log_std, "the encoder")
        enc.eval()
        with torch.no_grad():
            _batch_independent(lambda b, enc=enc: enc(b).mean, x, "the encoder's mean")


class _BinaryLoss(Loss):
    """Bernoulli logits, as the kit scores a decoder (the core names no loss plugin);
    ``sample`` is the base class's."""

    binary = True

    def nll(self, params: Tensor, x: Tensor) -> Tensor:
        return torch.nn.functional.binary_cross_entropy_with_logits(
            params, x, reduction="none").flatten(1).sum(1)

    def mean(self, params: Tensor) -> Tensor:
        return torch.sigmoid(params)


def check_decoder(factory: Callable[..., torch.nn.Module],
                  image_shape: tuple[int, ...] = (1, 8, 8), latent_dim: int = 6,
                  loss: Any = None) -> None:
    """A decoder ``factory(image_shape, latent_dim)`` gives an
    :class:`~acnkit.interfaces.Decoder` whose ``params(z, x)`` are finite likelihood
    parameters (B, P, H, W) (P = ``loss.param_channels(C)``, passed to the factory as
    ``param_channels`` when it is not C; ``loss`` defaults to a Bernoulli); rows are
    independent; the gradient reaches its parameters; ``sample(z, loss)`` gives images of
    the loss's levels. An autoregressive decoder also: is causal (changing pixel i, all its
    channels, changes no output at a pixel <= i, in raster order) and its teacher-forced
    log-likelihood of a sample equals the sum of the log-probabilities met while drawing
    it pixel by pixel; one with ``stepping`` passes :func:`check_stepping`."""
    from .interfaces import Decoder, scaled

    loss = loss or _BinaryLoss()
    g = torch.Generator().manual_seed(0)
    z = torch.randn(5, latent_dim, generator=g)
    levels = int(loss.levels)
    x = scaled(torch.randint(0, levels, (5, *image_shape), generator=g), levels)
    channels = image_shape[0] if len(image_shape) == 3 else 1
    p = loss.param_channels(channels)
    dec = factory(image_shape, latent_dim) if p == channels else factory(
        image_shape, latent_dim, param_channels=p)
    assert isinstance(dec, Decoder), (
        f"the factory gave a {type(dec).__name__}, not an acnkit.interfaces.Decoder")
    out = dec.params(z, x)
    want = (5, *image_shape) if p == channels else (5, p, *image_shape[1:])
    assert isinstance(out, Tensor) and tuple(out.shape) == want, (
        f"forward gave {getattr(out, 'shape', type(out).__name__)}, expected {want}")
    assert torch.isfinite(out).all(), "the decoder's output holds NaN or infinite numbers"
    _gradients_reach(dec, out, "the decoder")
    dec.eval()
    with torch.no_grad():
        _batch_independent(dec.params, (z, x), "the decoder's output")
        drawn = dec.sample(z, loss, torch.Generator().manual_seed(1))
        assert tuple(drawn.shape) == (5, *image_shape), (
            f"sample gave shape {tuple(drawn.shape)}, expected (5, *{image_shape})")
        on_grid = drawn * (levels - 1)
        assert ((on_grid - on_grid.round()).abs() < 1e-4).all() and \
            ((drawn >= 0) & (drawn <= 1)).all(), (
            f"sample gave values other than the {levels} levels in [0, 1]")
        if dec.autoregressive:
            check_causal(dec, z[:2], x[:2])
            _check_teacher_forcing(dec, z[:2], loss)
        if getattr(dec, "stepping", False):
            check_stepping(dec, z[:3], x[:3])


def _pixels(t: Tensor) -> Tensor:
    """(B, P, H, W) as (B, P, H*W): position i is pixel i in raster order."""
    return t.reshape(len(t), t.shape[1], -1)


def check_stepping(dec: Any, z: Tensor, x: Tensor) -> None:
    """A decoder's own stepping (start/step/feed) gives, pixel by pixel, what its
    teacher-forced forward gives (to float tolerance), and a row's steps do not depend on
    the rest of its batch: the codec codes with the steps, so both must hold for the
    file's figure to be the model's."""
    def stepped(zz: Tensor, xx: Tensor) -> Tensor:
        state, flat, out = dec.start(zz), _pixels(xx), []
        for i in range(flat.shape[2]):
            out.append(dec.step(state, i).reshape(len(zz), -1))
            dec.feed(state, i, flat[:, :, i])
        return torch.stack(out, 2)

    with torch.no_grad():
        forced = _pixels(dec.params(z, x))
        steps = stepped(z, x)
        assert steps.shape == forced.shape and torch.allclose(
            steps, forced, atol=1e-4, rtol=1e-4), (
            f"the decoder's stepping disagrees with its teacher-forced output (largest "
            f"difference {(steps - forced).abs().max().item():.3g})")
        alone = stepped(z[:1], x[:1])
        assert torch.allclose(alone, steps[:1], atol=1e-4, rtol=1e-4), (
            "the decoder's stepping of one image changes with the rest of its batch")


def check_causal(dec: Any, z: Tensor, x: Tensor) -> None:
    """An autoregressive decoder's output at each pixel does not change with the pixels
    at or after it (six pixels probed, changing all channels of one each time): the
    property the codec's receiver relies on."""
    base = _pixels(dec.params(z, x))
    dims = base.shape[2]
    for i in sorted({0, 1, dims // 3, dims // 2, dims - 2, dims - 1}):
        flipped = _pixels(x.clone())
        flipped[:, :, i] = 1 - flipped[:, :, i]
        out = _pixels(dec.params(z, flipped.reshape(x.shape)))
        assert torch.equal(out[:, :, : i + 1], base[:, :, : i + 1]), (
            f"the autoregressive decoder is not causal: changing pixel {i} changes its "
            f"output at a pixel <= {i} (raster order)")


def _check_teacher_forcing(dec: Any, z: Tensor, loss: Any) -> None:
    x = torch.zeros((len(z), *dec.image_shape))
    flat = _pixels(x)  # a view of x
    g = torch.Generator().manual_seed(2)
    log_p = torch.zeros(len(z), dtype=torch.float64)
    levels = int(loss.levels)
    for i in range(flat.shape[2]):
        params = dec.params(z, x)
        for c in range(flat.shape[1]):  # a pixel's channels in the loss's order
            probs = loss.probabilities(params, x)
            probs = probs.reshape(len(z), probs.shape[1], -1, levels)[:, c, i]
            drawn = torch.multinomial(probs.float(), 1, generator=g)[:, 0]
            flat[:, c, i] = drawn.float() / (levels - 1)
            log_p += probs.gather(1, drawn[:, None])[:, 0].log()
    forced = -dec.nll(z, x, loss).double()
    assert torch.allclose(forced, log_p, atol=1e-3, rtol=1e-5), (
        f"teacher-forced log-likelihood {forced.tolist()} differs from the sum of the "
        f"step-by-step log-probabilities {log_p.tolist()}")


def check_prior(factory: Callable[..., torch.nn.Module], latent_dim: int = 6,
                samples: int = 20000) -> None:
    """A prior ``factory(latent_dim)`` gives a :class:`~acnkit.interfaces.Prior` whose
    ``distribution(context, B)`` has ``log_prob`` (B,) and ``sample`` (B, d), both finite
    (``context``: (B, d) codes when ``conditional``, else None); its ``kl`` is finite, has
    shape (B,), equals the closed form of ``torch.distributions`` for a Gaussian prior and,
    for any other, averages to KL(q || p) estimated independently by Monte Carlo; a row's
    log_prob does not depend on the other rows of its batch; the gradient reaches its
    parameters."""
    from torch import distributions as D

    from .distributions import DiagGaussian
    from .interfaces import Prior

    g = torch.Generator().manual_seed(0)
    prior = factory(latent_dim)
    assert isinstance(prior, Prior), f"the factory gave a {type(prior).__name__}, not a Prior"
    b = 4
    context = torch.randn(b, latent_dim, generator=g) if prior.conditional else None
    q = DiagGaussian(torch.randn(b, latent_dim, generator=g),
                     0.3 * torch.randn(b, latent_dim, generator=g) - 0.5)
    with torch.no_grad():
        p = prior.distribution(context, b)
        z = p.sample(g)
        assert tuple(z.shape) == (b, latent_dim), f"sample has shape {tuple(z.shape)}"
        logp = p.log_prob(z)
        assert tuple(logp.shape) == (b,), f"log_prob has shape {tuple(logp.shape)}, not ({b},)"
        assert torch.isfinite(z).all() and torch.isfinite(logp).all(), "NaN or inf from the prior"
        prior.eval()  # the codec and the evaluation batch differently from training
        if context is None:
            _batch_independent(lambda zz: prior.distribution(None, len(zz)).log_prob(zz), z,
                               "the prior's log_prob")
        else:
            _batch_independent(lambda c, zz: prior.distribution(c, len(c)).log_prob(zz),
                               (context, z), "the prior's log_prob")
        prior.train()
        zq = q.rsample(g)
        kl = prior.kl(q, zq, context)
        assert tuple(kl.shape) == (b,) and torch.isfinite(kl).all(), "kl is not finite (B,)"
        # KL(q || p) by Monte Carlo with draws of its own, independent of prior.kl: the
        # batch repeated ``samples`` times, in one call
        rep = DiagGaussian(q.mean.repeat(samples, 1), q.log_std.repeat(samples, 1))
        ctx = None if context is None else context.repeat(samples, 1)
        p_rep = prior.distribution(ctx, b * samples)
        draws = rep.rsample(g)
        log_ratio = (rep.log_prob(draws) - p_rep.log_prob(draws)).view(samples, b)
        mc, spread = log_ratio.mean(0), log_ratio.std(0)
        if isinstance(p, DiagGaussian):
            exact = D.kl_divergence(
                D.Independent(D.Normal(q.mean, q.log_std.exp()), 1),
                D.Independent(D.Normal(p.mean, p.log_std.exp()), 1))
            assert torch.allclose(kl, exact, rtol=1e-4, atol=1e-4), (
                f"kl {kl.tolist()} differs from torch.distributions {exact.tolist()}")
        else:  # a single-sample estimate: its average over many z must be the KL
            kl = prior.kl(rep, rep.rsample(g), ctx).view(samples, b).mean(0)
        tolerance = 7 * spread / samples ** 0.5 + 1e-3  # two independent estimates
        assert ((kl - mc).abs() <= tolerance).all(), (
            f"kl {kl.tolist()} disagrees with a Monte Carlo estimate {mc.tolist()}")
    if any(p.requires_grad for p in prior.parameters()):
        _gradients_reach(prior, prior.kl(q, q.rsample(g), context), "the prior")


def check_loss(factory: Callable[..., Any], image_shape: tuple[int, ...] = (1, 8, 8),
               levels: int | None = None) -> None:
    """A likelihood ``factory(levels=L, channels=C)`` (the options it takes of these)
    gives a :class:`~acnkit.interfaces.Loss` for which, on random parameters
    (B, P, H, W) and images of its levels:

    - ``nll`` is finite, (B,) and differentiable in the parameters;
    - ``probabilities`` are non-negative, sum to one over the levels, and ``nll`` equals
      minus the log-probability of the observed levels, summed;
    - channel c's probabilities depend on no channel at or after c of the images, nor on
      any other pixel (the codec decodes a pixel's channels in order);
    - ``cdf`` (what the codec codes with), asked an edge at a time, is 0 at level 0 and 1
      at L, never decreases, and is the probabilities summed;
    - a row's numbers do not depend on the rest of its batch;
    - ``mean`` has the images' shape, in [0, 1]; ``sample`` draws valid levels whose
      frequencies match ``probabilities``;
    - a ``binary`` loss is a Bernoulli: ``nll`` equals
      ``torch.distributions.Bernoulli(probs=mean)``'s.
    """
    import inspect

    from torch import distributions as D

    from .interfaces import Loss, scaled

    g = torch.Generator().manual_seed(0)
    channels = image_shape[0] if len(image_shape) == 3 else 1
    takes = inspect.signature(factory).parameters
    anything = any(p.kind is p.VAR_KEYWORD for p in takes.values())
    options = {k: v for k, v in (("levels", levels), ("channels", channels))
               if v is not None and (anything or k in takes)}
    loss = factory(**options)
    assert isinstance(loss, Loss), f"the factory gave a {type(loss).__name__}, not a Loss"
    levels = int(loss.levels)
    b, p = 5, loss.param_channels(channels)
    pshape = (b, p, *image_shape[1:]) if len(image_shape) == 3 else (b, *image_shape)
    params = torch.randn(pshape, generator=g, requires_grad=True)
    x = scaled(torch.randint(0, levels, (b, *image_shape), generator=g), levels)
    try:  # the decoder gives param_channels(C) channels: a loss reading others fails here
        nll = loss.nll(params, x)
        loss.mean(params.detach())
    except (RuntimeError, IndexError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise AssertionError(
            f"the loss failed on parameters of shape {tuple(pshape)}, the "
            f"{p} channels its param_channels({channels}) asks the decoder for: does "
            f"param_channels match what nll and mean read? ({type(exc).__name__}: "
            f"{first})") from None
    assert tuple(nll.shape) == (b,) and torch.isfinite(nll).all(), "nll is not finite (B,)"
    nll.sum().backward()
    assert params.grad is not None and torch.isfinite(params.grad).all(), "no finite gradient"
    params = params.detach()
    mean = loss.mean(params)
    assert tuple(mean.shape) == (b, *image_shape), f"mean has shape {tuple(mean.shape)}"
    assert ((mean >= 0) & (mean <= 1)).all(), "mean is not in [0, 1] (images are scaled)"
    probs = loss.probabilities(params, x)
    assert tuple(probs.shape) == (b, *image_shape, levels), (
        f"probabilities have shape {tuple(probs.shape)}, expected {(b, *image_shape, levels)}")
    assert (probs >= 0).all(), "probabilities are negative"
    assert torch.allclose(probs.sum(-1), torch.ones((), dtype=probs.dtype), atol=1e-6), (
        "probabilities do not sum to one over the levels")
    observed = probs.gather(-1, torch.round(x * (levels - 1)).long()[..., None])[..., 0]
    ref = -observed.double().log().flatten(1).sum(1)
    assert torch.allclose(nll.detach().double(), ref, rtol=1e-4, atol=1e-3), (
        f"nll {nll.tolist()} is not minus the log-probability of the observed levels "
        f"{ref.tolist()}")
    _probabilities_causal(loss, params, x, probs)
    _check_cdf(loss, params, x, probs)
    with torch.no_grad():
        _batch_independent(loss.nll, (params, x), "the loss's nll")
    if loss.binary:
        ref = -D.Bernoulli(probs=mean.double()).log_prob(x.double()).flatten(1).sum(1)
        assert torch.allclose(nll.detach().double(), ref, rtol=1e-4, atol=1e-3), (
            f"nll {nll.tolist()} is not the Bernoulli's {ref.tolist()}")
    # one pixel, drawn many times: what sampling must match, in bounded memory
    _check_sampling(loss, params[:1, :, :1, :1] if params.dim() == 4 else params[:1], levels)


def _probabilities_causal(loss: Any, params: Tensor, x: Tensor, probs: Tensor) -> None:
    """Channel c's probabilities are the same whatever channels >= c hold, and a pixel's
    whatever the other pixels hold: each is changed in turn and the rest compared."""
    levels = int(loss.levels)
    b, c_all = len(x), (x.shape[1] if x.dim() == 4 else 1)

    def per_pixel(t: Tensor) -> Tensor:  # (B, C, pixels, ...)
        return t.reshape(b, c_all, -1, *t.shape[x.dim():])

    def changed(t: Tensor) -> Tensor:  # every level moved half the range
        return torch.round((t * (levels - 1) + levels // 2) % levels) / (levels - 1)

    base = per_pixel(probs)
    for c in range(c_all):
        other = per_pixel(x.clone())
        other[:, c:] = changed(other[:, c:])
        again = per_pixel(loss.probabilities(params, other.reshape(x.shape)))
        assert torch.equal(again[:, : c + 1], base[:, : c + 1]), (
            f"the probabilities of channel {c} change with channel {c} or later: a "
            f"receiver decodes a pixel's channels in order")
    if base.shape[2] > 1:
        other = per_pixel(x.clone())
        other[:, :, 1:] = changed(other[:, :, 1:])
        again = per_pixel(loss.probabilities(params, other.reshape(x.shape)))
        assert torch.equal(again[:, :, 0], base[:, :, 0]), (
            "the probabilities of a pixel change with another pixel's values")


def _check_cdf(loss: Any, params: Tensor, x: Tensor, probs: Tensor) -> None:
    """``cdf`` (what the codec codes with) at every edge 0 .. L: 0 at 0, 1 at L, never
    decreasing, and the probabilities summed (within 1e-6), asked an edge at a time as the
    codec asks it."""
    levels = int(loss.levels)
    at = loss.cdf(params, x)
    edges = torch.zeros((*probs.shape[:-1], 1), dtype=torch.long, device=probs.device)
    f = torch.cat([at(edges + k) for k in range(levels + 1)], -1)
    assert tuple(f.shape) == (*probs.shape[:-1], levels + 1), (
        f"cdf gave shape {tuple(f.shape[:-1])} + (1,) for edges {tuple(edges.shape)}")
    assert (f[..., 0] == 0).all() and (f[..., -1] == 1).all(), (
        "cdf is not 0 at level 0 and 1 at the number of levels")
    assert (f.diff(dim=-1) >= 0).all(), "cdf decreases"
    summed = torch.nn.functional.pad(torch.cumsum(probs.double(), -1), (1, 0))
    worst = (f.double() - summed).abs().max().item()
    assert worst < 1e-6, f"cdf differs from the probabilities summed by {worst:.3g}"


def _check_sampling(loss: Any, params: Tensor, levels: int, draws: int = 4000) -> None:
    """``sample`` gives levels in [0, 1] whose frequencies at the first subpixel follow
    ``probabilities`` (a chi-square-like bound on the largest deviation)."""
    g = torch.Generator().manual_seed(3)
    rep = params.expand(draws, *params.shape[1:]).contiguous()
    drawn = loss.sample(rep, g)
    on_grid = drawn * (levels - 1)
    assert ((drawn >= 0) & (drawn <= 1)).all() and \
        ((on_grid - on_grid.round()).abs() < 1e-4).all(), (
        f"sample gave values other than the {levels} levels scaled to [0, 1]")
    first = on_grid.round().long().reshape(draws, -1)[:, 0]
    freq = torch.bincount(first, minlength=levels).double() / draws
    zero = torch.zeros((1, *drawn.shape[1:]))
    p = loss.probabilities(params, zero).reshape(1, -1, levels)[0, 0]
    assert ((freq - p).abs() <= 5 * (p * (1 - p) / draws).sqrt() + 0.01).all(), (
        "sample's frequencies do not follow probabilities")


def check_dataset(factory: Callable[..., Any], **kwargs: Any) -> None:
    """A data set ``factory(data_dir=None, seed=0, **kwargs)`` gives a
    :class:`~acnkit.interfaces.Dataset`: images of integer levels below its ``levels``
    (0/1 when binarised) of shape (N, *image_shape) for train and test (uint8 up to 256
    levels), one integer label per image, non-empty splits; the same ``seed`` gives the
    same images (test figures are comparable across runs)."""
    from .interfaces import Dataset

    kwargs.setdefault("data_dir", None)
    first, again = factory(seed=0, **kwargs), factory(seed=0, **kwargs)
    assert isinstance(first, Dataset), f"the factory gave a {type(first).__name__}"
    for split in ("train", "test"):
        x, y = getattr(first, f"{split}_x"), getattr(first, f"{split}_y")
        assert len(x) > 0, f"empty {split} set"
        levels = int(getattr(first, "levels", 2))
        assert x.dtype == torch.uint8 or levels > 256 and not x.is_floating_point(), (
            f"{split} images are {x.dtype}, not torch.uint8")
        assert tuple(x.shape[1:]) == tuple(first.image_shape), (
            f"{split} images have shape {tuple(x.shape[1:])}, not {first.image_shape}")
        assert int(x.min()) >= 0 and int(x.max()) < levels, (
            f"{split} images hold values other than its {levels} levels "
            f"{'0/1' if levels == 2 else f'0 .. {levels - 1}'}")
        assert len(y) == len(x) and not torch.is_floating_point(y), (
            f"{split} needs one integer label per image")
        assert torch.equal(x, getattr(again, f"{split}_x")), (
            f"{split} images differ between two loads with the same seed")
