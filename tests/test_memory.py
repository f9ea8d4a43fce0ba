"""The associative memory: the pick rule, the greedy chain and the contexts along it."""

import math

import numpy as np
import pytest
import torch

from acnkit.memory import (
    chain_context,
    greedy_chain,
    log_orderings,
    nearest_codes,
    pick_random,
    pick_unique,
)
from acnkit.neighbours import brute_force_knn


def naive_chain(codes: torch.Tensor, start: int = 0) -> list[int]:
    """Greedy nearest-unvisited walk, one full scan per step (the reference)."""
    x = codes.double().numpy()
    left = set(range(len(x)))
    order, cur = [], start
    while True:
        order.append(cur)
        left.discard(cur)
        if not left:
            return order
        rest = sorted(left)
        d = ((x[rest] - x[cur]) ** 2).sum(1)
        cur = rest[int(np.argmin(d))]


@pytest.mark.parametrize("n,dim,candidates", [(1, 3, 16), (2, 3, 16), (300, 4, 16),
                                              (500, 16, 2), (400, 8, 1)])
def test_chain_visits_every_code_once_and_is_the_greedy_walk(n, dim, candidates):
    codes = torch.randn(n, dim, generator=torch.Generator().manual_seed(n))
    order = greedy_chain(codes, candidates=candidates)
    assert sorted(order.tolist()) == list(range(n))
    assert order.tolist() == naive_chain(codes)


def test_chain_on_clustered_codes_with_a_start():
    g = torch.Generator().manual_seed(1)
    centres = torch.randn(5, 6, generator=g) * 10
    codes = centres[torch.randint(0, 5, (400,), generator=g)] + torch.randn(400, 6, generator=g)
    order = greedy_chain(codes, start=17)
    assert order[0] == 17
    assert order.tolist() == naive_chain(codes, 17)


def test_chain_context_is_the_previous_code_and_zeros_first():
    codes = torch.arange(12.0).view(4, 3)
    order = torch.tensor([2, 0, 3, 1])
    ctx = chain_context(codes, order)
    assert torch.equal(ctx[2], torch.zeros(3))
    assert torch.equal(ctx[0], codes[2])
    assert torch.equal(ctx[3], codes[0])
    assert torch.equal(ctx[1], codes[3])


def test_nearest_codes_match_brute_force():
    g = torch.Generator().manual_seed(3)
    store, queries = torch.randn(3000, 10, generator=g), torch.randn(1500, 10, generator=g)
    assert torch.equal(nearest_codes(queries, store), brute_force_knn(queries, store, 1)[:, 0])


def test_log_orderings_is_log_factorial():
    assert log_orderings(1) == 0.0
    assert log_orderings(5) == pytest.approx(np.log(120))
    assert log_orderings(10000) == pytest.approx(sum(np.log(np.arange(1, 10001))), rel=1e-12)


def test_pick_random_is_uniform_over_valid_candidates():
    cands = torch.tensor([[7, 8, 9, -1]]).expand(30000, 4)
    picked = pick_random(cands, torch.Generator().manual_seed(0))
    counts = torch.bincount(picked, minlength=10)[7:]
    assert (picked != -1).all() and counts.sum() == 30000
    assert (counts - 10000).abs().max() < 400


def test_pick_unique_never_repeats_within_a_batch():
    cands = torch.tensor([[1, 2], [1, 2], [1, 2], [3, -1]])
    picked = pick_unique(cands, torch.Generator().manual_seed(0))
    chosen = picked[picked >= 0].tolist()
    assert len(chosen) == len(set(chosen)) == 3
    assert picked[3] == 3


def test_pick_unique_is_uniform():
    """Each row's pick is uniform over the candidates still free: a row that competes with
    none picks each of its K with probability 1/K, and a contested pair splits evenly."""
    cands = torch.tensor([[1, 2, 3], [4, 5, 6], [1, 2, -1]])
    g = torch.Generator().manual_seed(0)
    counts = torch.zeros(3, 7)
    trials = 6000
    for _ in range(trials):
        picked = pick_unique(cands, g)
        counts[torch.arange(3), picked] += 1
    tolerance = 5 * math.sqrt(trials / 3)  # five standard deviations of a binomial count
    assert (counts[0, 1:4] - trials / 3).abs().max() < tolerance
    assert (counts[1, 4:7] - trials / 3).abs().max() < tolerance
    # row 2 takes 1 or 2, whichever row 0 left, evenly overall
    assert counts[2, 1:3].sum() == trials
    assert (counts[2, 1:3] - trials / 2).abs().max() < 5 * math.sqrt(trials / 4)
