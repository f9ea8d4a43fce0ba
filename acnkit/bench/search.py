"""Benchmarks behind ``acnkit bench``: neighbour search and whole training epochs.

Every figure is a ratio or a time measured in the same process, so that a slow or busy
machine shifts all of them together. Times are medians over repeated measurements.
"""

from __future__ import annotations

import io
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import progress
from ..bounded import compressed_members
from ..errors import UsageError
from ..neighbours import exact_knn
from ..registry import get_registry
from ..testing import clustered_codes

#: settings tried for each searcher in ``bench search`` (the first is its default)
SEARCH_SETTINGS: dict[str, list[dict[str, Any]]] = {
    "torch": [{"fused": True}, {"fused": False}],
    "annoy": [{"trees": 10, "search_k": -1}, {"trees": 10, "search_k": 2000},
              {"trees": 50, "search_k": 5000}, {"trees": 50, "search_k": 20000}],
    "sklearn": [{"algorithm": "auto"}, {"algorithm": "brute"}],
    "faiss-ivf": [{"nprobe": 8}, {"nprobe": 32}],
}


def median_seconds(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def matmul_gflops(device: torch.device, size: int = 1024, repeats: int = 10) -> float:
    """This machine's float32 matrix-product rate, measured now."""
    a = torch.randn(size, size, device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def run() -> None:
        torch.mm(a, a)
        sync()

    return 2 * size**3 / median_seconds(run, repeats, warmup=2) / 1e9


#: what --codes takes, in its refusals
CODES = "give a run folder, or a .pt tensor or .npy array"


def load_codes(path: str) -> torch.Tensor:
    """Codes from a run folder (its checkpoint's store), a .pt tensor or a .npy array."""
    from ..files import npy_array, read_regular_input  # the codec's readers, only when asked

    p = Path(path)
    if not p.exists():
        raise UsageError(f"--codes {p} does not exist; give a run folder, a .pt tensor or a "
                         f".npy array")
    if p.is_dir():
        from ..rundir import load_checkpoint

        state = load_checkpoint(p)
        if "store" not in state:
            raise UsageError(f"{p} is a run without a code store (a vae run); use an acn run")
        codes = state["store"]
    elif p.suffix == ".npy":
        array = npy_array(read_regular_input(p, "--codes ", CODES), f"--codes {p}", "codes")
        if array.dtype.kind not in "fiu":
            raise UsageError(f"--codes {p} holds {array.dtype.name} values; give numbers")
        codes = torch.from_numpy(np.asarray(array, dtype=np.float32))
    else:
        raw = read_regular_input(p, "--codes ", CODES)
        try:
            if compressed_members(io.BytesIO(raw)):
                raise ValueError("compressed members, which torch.save never writes")
            codes = torch.load(io.BytesIO(raw), weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same one line
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:100]
            raise UsageError(f"--codes {p}: cannot read it as a tensor ({first}); give a run "
                             f"folder, a .pt tensor or a .npy array") from None
        if not isinstance(codes, torch.Tensor):
            raise UsageError(f"--codes {p} must hold a tensor, not a {type(codes).__name__}")
    if codes.dim() != 2 or codes.shape[0] < 2 or codes.shape[1] < 1:
        raise UsageError(f"--codes {p} must hold a 2-D array of at least 2 codes (N x d), "
                         f"got shape {tuple(codes.shape)}")
    codes = codes.float()
    if not torch.isfinite(codes).all():
        raise UsageError(f"--codes {p} holds NaN or infinite values")
    return codes


def search_memory(searcher: str, n: int, dim: int, batch: int, k: int) -> dict[str, Any]:
    """Memory a searcher holds beside the code store (its index or copy, made by
    ``reset``) and the peak one search adds on top, from the process's high-water mark
    (run it in a fresh process: ``acnkit bench memory``)."""
    import gc
    import resource

    def peak() -> int:
        # VmHWM is this process's own high-water mark; ru_maxrss also counts the parent's
        # resident size at fork (Linux carries it across exec), which hides every peak of
        # a child started by a large process (a test runner, a notebook)
        try:
            with open("/proc/self/status") as f:
                hwm = next(line for line in f if line.startswith("VmHWM:"))
            return int(hwm.split()[1]) * 1024
        except (OSError, StopIteration):
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux

    # Warm the runtime (thread pools, kernels) on a tiny store: its one-time allocations
    # are not the search's.
    tiny = get_registry().create("searcher", searcher)
    tiny.reset(torch.randn(4096, dim))
    tiny.search(torch.randn(batch, dim), k)
    del tiny
    store = torch.empty(n, dim).normal_()  # filled in place: no temporary copies
    idx = torch.randint(0, n, (batch,))  # no temporary of size n before the baseline
    queries = store[idx].clone()
    s = get_registry().create("searcher", searcher)
    gc.collect()
    start = peak()
    s.reset(store)
    gc.collect()
    before = peak()
    for _ in range(3):
        s.search(queries, k, exclude=idx)
    held, extra = max(0, before - start), max(0, peak() - before)
    store_bytes = store.numel() * 4
    return {"searcher": searcher, "n": n, "dim": dim, "batch": batch, "k": k,
            "settings": s.settings(), "store_mb": store_bytes / 2**20,
            "held_mb": held / 2**20, "held_ratio": held / store_bytes,
            "extra_mb": extra / 2**20, "extra_ratio": extra / store_bytes}


def bench_search(searchers: list[str], n: int, dim: int, batch: int, k: int,
                 codes: torch.Tensor | None = None, queries: int = 20,
                 device: str = "cpu", seed: int = 0,
                 settings: dict[str, list[dict[str, Any]]] | None = None) -> list[dict[str, Any]]:
    reg = get_registry()
    dev = torch.device(device)
    if codes is None:
        codes = clustered_codes(n, dim, clusters=max(10, n // 600), seed=seed)
    codes = codes.to(dev)
    n, dim = codes.shape
    if batch > n - k:
        raise UsageError(f"--batch {batch} is too large for {n} codes")
    rate = matmul_gflops(dev)
    flop_bound_ms = 2 * batch * n * dim / (rate * 1e9) * 1e3
    g = torch.Generator().manual_seed(seed)
    batches = [torch.randperm(n, generator=g)[:batch].to(dev) for _ in range(queries)]
    reference = [exact_knn(codes[i], codes, k, exclude=i)[1] for i in batches]
    rows = []
    plan = [(name, options) for name in searchers
            for options in (settings or SEARCH_SETTINGS).get(name, [{}])]
    with progress.task(f"search bench, {n} codes", len(plan), "settings") as shown:
        for name, options in plan:
            rows.append(_bench_one(reg.create("searcher", name, **options), name, options,
                                   codes, batches, reference, k))
            shown()
    for r in rows:
        r.update(flop_bound_ms=flop_bound_ms, matmul_gflops=rate,
                 ratio_to_bound=r["query_ms_per_batch"] / flop_bound_ms)
    return rows


def _bench_one(searcher: Any, name: str, options: dict[str, Any], codes: torch.Tensor,
               batches: list[torch.Tensor], reference: list[torch.Tensor],
               k: int) -> dict[str, Any]:
    """Build time, median query time and recall of one searcher setting."""
    dev = codes.device
    n, dim = codes.shape
    batch = len(batches[0])
    t0 = time.perf_counter()
    searcher.reset(codes)
    build = time.perf_counter() - t0
    answers: list[torch.Tensor] = []

    def query_all() -> None:
        answers.clear()
        for i in batches:
            answers.append(searcher.search(codes[i], k, exclude=i))
        if dev.type == "cuda":
            torch.cuda.synchronize()

    per_batch = median_seconds(query_all, 3) / len(batches)
    hits = sum((a.unsqueeze(2) == r.unsqueeze(1)).any(2).sum().item()
               for a, r in zip(answers, reference, strict=True))
    return {
        "searcher": name, "n": n, "dim": dim, "batch": batch, "k": k,
        "settings": searcher.settings() or options,
        "build_seconds": build, "query_ms_per_batch": per_batch * 1e3,
        "recall_at_k": hits / (len(batches) * batch * k),
    }


#: recall at which an approximate searcher counts as a replacement for exact search
CROSSOVER_RECALL = 0.99


def crossover(rows: list[dict[str, Any]], exact: str = "torch") -> list[dict[str, Any]]:
    """For each searcher, at each store size: its fastest setting with recall at least
    :data:`CROSSOVER_RECALL`, the ratio of its time to exact search's at that size, and the
    crossover, the smallest size at which it is faster (None: at no size tried)."""
    sizes = sorted({r["n"] for r in rows})
    reference: dict[int, float] = {}
    for r in rows:  # the fastest setting of exact search at each size
        if r["searcher"] == exact:
            reference[r["n"]] = min(reference.get(r["n"], float("inf")), r["query_ms_per_batch"])
    out = []
    for name in dict.fromkeys(r["searcher"] for r in rows):
        per_size: dict[int, dict[str, Any] | None] = {}
        for n in sizes:
            ok = [r for r in rows if r["searcher"] == name and r["n"] == n
                  and r["recall_at_k"] >= CROSSOVER_RECALL]
            if ok and n in reference:
                best = min(ok, key=lambda r: r["query_ms_per_batch"])
                per_size[n] = {"ms": best["query_ms_per_batch"], "settings": best["settings"],
                               "x_exact": best["query_ms_per_batch"] / reference[n]}
            else:
                per_size[n] = None  # not reached at this recall
        wins = [n for n in sizes if (s := per_size[n]) is not None and s["x_exact"] < 1.0]
        out.append({"searcher": name, "sizes": per_size,
                    "crossover": wins[0] if wins and name != exact else None})
    return out


def bench_search_sizes(searchers: list[str], sizes: list[int], dim: int, batch: int, k: int,
                       codes: torch.Tensor | None = None, **kwargs: Any) -> dict[str, Any]:
    """``bench_search`` at every store size of ``sizes``: clustered synthetic codes, or
    random subsets of ``codes`` (sizes larger than ``codes`` are skipped, not invented);
    exact search (torch) is always among them, as the reference."""
    names = list(dict.fromkeys(["torch", *searchers]))
    rows, skipped = [], []
    g = torch.Generator().manual_seed(0)
    for n in sizes:
        part = None
        if codes is not None:
            if n > len(codes):
                skipped.append(n)
                continue
            part = codes[torch.randperm(len(codes), generator=g)[:n]]
        rows.extend(bench_search(names, n, dim, batch, k, codes=part, **kwargs))
    return {"rows": rows, "crossover": crossover(rows), "skipped_sizes": skipped,
            "codes": "given" if codes is not None else "clustered synthetic"}


def bench_chain(n: int, dim: int, codes: torch.Tensor | None = None) -> dict[str, Any]:
    """Seconds to build the greedy chain over ``codes`` (default: ``n`` clustered codes),
    beside one batched exact 1-NN search of the same codes for scale."""
    from ..memory import greedy_chain, nearest_codes

    if codes is None:
        codes = clustered_codes(n, dim, clusters=max(10, n // 600), seed=0)
    stats: dict[str, Any] = {}
    t0 = time.perf_counter()
    order = greedy_chain(codes, stats=stats)
    chain = time.perf_counter() - t0
    t0 = time.perf_counter()
    nearest_codes(codes, codes)
    knn = time.perf_counter() - t0
    assert len(order) == len(codes)
    return {"n": len(codes), "dim": codes.shape[1], "chain_seconds": chain,
            "full_scans": stats["full_scans"], "knn_seconds": knn}
