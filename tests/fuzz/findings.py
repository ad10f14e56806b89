"""Findings of the fuzz suite not fixed yet (the details, with reproducers: /work/notes/h10-fuzz-findings.md
in the project notes; the ids match).

Each finding has a reproducer case (``test_fuzz.py::test_finding`` runs it, ``xfail(strict=True)``
while the finding is open: it flips to a failure once fixed, the cue to delete the entry here) and a
``match`` over results: the generated-case test tolerates a bad outcome only when an open finding
matches it. ``skip`` marks inputs not even run by the generated test (those that hang: each would
cost the whole case timeout).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp


@dataclasses.dataclass(frozen=True)
class Finding:
    id: str
    title: str
    reproducer: tuple  # (target, kwargs) for targets.TARGETS
    match: Callable  # (target, kwargs, outcome, detail) -> bool
    skip: Callable | None = None  # (target, kwargs) -> bool
    timeout: float | None = None  # seconds before the reproducer counts as a hang (a hang finding's)


def _detail(*patterns: str, targets: tuple = (), outcomes: tuple = ("crash", "hang", "garbage", "unclear")):
    rx = re.compile("|".join(patterns))

    def match(target, kwargs, outcome, detail):
        return outcome in outcomes and (not targets or target in targets) and bool(rx.search(detail))

    return match


def _target(*targets: str, outcomes: tuple = ("crash", "hang", "garbage", "unclear"), where=None):
    def match(target, kwargs, outcome, detail):
        return target in targets and outcome in outcomes and (where is None or where(kwargs, detail))

    return match


def _threads_absurd(kwargs) -> bool:
    t = kwargs.get("threads", kwargs.get("value") if kwargs.get("param") == "threads" else None)
    return t is not None and not (isinstance(t, (int, np.integer)) and not isinstance(t, bool) and 0 <= t <= 64)


_Q = np.array([[1.0, 2.0]], np.float32)
_IT = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], np.float32)


def _broken_col(n_rows: int, n_cols: int):
    """A CSR (n_rows, n_cols) whose stored column index in row 0 is ``n_cols`` (one past the end)."""
    from oracle import BrokenSparse

    indptr = np.array([0] + [2] * n_rows, np.int32)
    return BrokenSparse(("csr", indptr, np.array([0, n_cols], np.int32), np.ones(2, np.float32), (n_rows, n_cols)))


OPEN = [
    Finding(
        "F1",
        "threads= above the cores (10^5, 2^31-1, 2^63) or not an int: libgomp aborts/OOMs, bad_alloc, or "
        "max_threads(): incompatible function arguments",
        ("topk", {"queries": _Q, "items": _IT, "k": 1, "threads": 2**63}),
        lambda t, kw, o, d: o in ("crash", "hang", "garbage", "unclear") and _threads_absurd(kw),
    ),
    Finding(
        "F2",
        "_core.Csr of an empty matrix: .indptr/.indices raise AttributeError ('setflags') and leak a "
        "dtype reference ('Reference count error detected' later)",
        (
            "core_csr",
            {"indptr": np.array([0], np.int32), "indices": np.array([], np.int32), "data": None, "shape": (0, 0)},
        ),
        _detail("setflags", "Reference count error"),
    ),
    Finding(
        "F3",
        "pybind11's 'incompatible function arguments' instead of a message naming the argument (lists, "
        "None, floats, out-of-range ints for _core arguments)",
        ("core", {"fn": "mlp_sample_epoch", "arg": "seed", "value": "1", "equivalent": False}),
        _detail("incompatible (function|constructor) arguments"),
    ),
    Finding(
        "F4",
        "similar_items/similar_users return fewer than k columns where recommend pads with -1/-inf",
        ("similar", {"model": "als", "side": "items", "ids": [0], "k": 25, "threads": 1}),
        _detail(r"shapes \(", targets=("similar",)),
    ),
    Finding(
        "F5",
        "sparse inputs not fully validated: out-of-range/negative column ids and broken row pointers are "
        "accepted (garbage) or refused by scipy/C++ messages naming nothing (from_scipy, transforms, "
        "MostPopular.fit, metrics, auc, partial_fit_users, fit)",
        ("from_scipy", {"matrix": _broken_col(3, 4)}),
        _detail(
            "accepted an input that must be refused naming \\('(matrix|csr|interactions|test|exclude)",
            "index pointer",
            "indices and data should have the same size",
            "unsupported data types",
            "_M_default_append",
            "must have no negative elements",
            "could not be broadcast",
            "could not broadcast",
            "column index .* out of range",
            "ratings: ",
            r"interactions\.indptr must",
            "interactions: column index",
            targets=("from_scipy", "transform", "fit", "metric", "auc", "partial_fit", "interactions"),
        ),
    ),
    Finding(
        "F6",
        "absurd sizes (k ~ 2^31..2^64, fold-in ids ~ 2^31, negatives ~ 10^9) are not refused up front: "
        "MemoryError / 'array is too big' / 'Maximum allowed dimension exceeded' / std::bad_alloc",
        ("recommend", {"model": "als", "users": [0], "k": 2**62, "threads": 1}),
        _detail("MemoryError", "too big", "Maximum allowed dimension", "bad_alloc", "Out of memory"),
    ),
    Finding(
        "F7",
        "recommend_all(batch_size=0 / negative / float) -> 'range() arg 3 must not be zero', 'need at "
        "least one array to concatenate', '... cannot be interpreted as an integer'",
        ("recommend_all", {"model": "als", "k": 3, "batch_size": 0, "threads": 1}),
        _detail(
            "range\\(\\) arg 3",
            "need at least one array",
            "cannot be interpreted as an integer",
            targets=("recommend_all", "auc"),
        ),
    ),
    Finding(
        "F8",
        "auc: batch_size <= 0 accepted; non-real scores (datetime64) accepted; ragged scores -> numpy's message",
        (
            "auc",
            {
                "scores": np.ones((2, 3), np.float32),
                "test": sp.csr_matrix(np.array([[1, 0, 0], [0, 1, 0]], np.float32)),
                "batch_size": -1,
            },
        ),
        _target("auc"),
    ),
    Finding(
        "F9",
        "_core kernels accept arrays they cannot use: wrong shapes (als_gram Y), float16/float64/strided "
        "outputs written through a silent copy, 64-bit ids wrapped to 32 bits, fractional ids truncated, "
        "absurd scalars; out-of-range ids raise IndexError instead of ValueError",
        (
            "core",
            {
                "fn": "sgd_sample_negatives",
                "arg": "users",
                "value": np.array([2**32, 5, 29], np.int64),
                "equivalent": False,
            },
        ),
        _target(
            "core", "core_threads", "core_csr", where=lambda kw, d: "incompatible" not in d and "setflags" not in d
        ),
    ),
    Finding(
        "F10",
        "split.temporal(cutoff=nan) puts everything in train (and other non-finite cutoffs accepted)",
        ("split", {"fn": "temporal", "kwargs": {"cutoff": float("nan")}}),
        _target("split"),
    ),
    Finding(
        "F11",
        "Interactions.from_arrays: nested-list ids -> 'unhashable type', scalar ids, 64-bit ids with "
        "an IdMap.range -> messages naming another argument or nothing",
        ("interactions", {"users": [[0, 1]], "items": [0]}),
        _target("interactions"),
    ),
    Finding(
        "F12",
        "topk/recommend of ragged nested lists -> numpy's 'setting an array element with a sequence'",
        ("topk", {"queries": [[1, 2], [3]], "items": _IT, "k": 1, "threads": 1}),
        _detail("setting an array element", "inhomogeneous", targets=("topk", "recommend", "metric")),
    ),
    Finding(
        "F13",
        "ALS.partial_fit_users / fit: a singular system (e.g. negative or huge values) throws "
        "std::domain_error through OpenMP: std::terminate, SIGABRT (release build)",
        (
            "partial_fit",
            {"model": "als", "ids": 0, "rows": sp.csr_matrix(np.array([[3e38, 1, 1] + [0] * 17], np.float64))},
        ),
        _detail("terminate called", "SIGABRT"),
    ),
    Finding(
        "F14",
        "a diverged SGD fit blames lr when another parameter (regularization) is the absurd one; "
        "1e9 lr/regularization accepted by the _core epochs",
        ("fit", {"model": "sgdmf", "param": "regularization", "value": 1e30}),
        _target("fit", where=lambda kw, d: kw.get("param") not in (None, "threads")),
    ),
    Finding(
        "F15",
        "metrics: recommended_ids/users/k of the wrong kind give numpy/scipy messages",
        (
            "metric",
            {
                "fn": "precision_at_k",
                "recommended_ids": [[0, 1], [2]],
                "test": sp.csr_matrix(np.eye(2, 3, dtype=np.float32)),
            },
        ),
        _target("metric"),
    ),
    Finding(
        "F16",
        "recommend: k of 2^64-1 (np.uint64) and similar absurd k -> numpy's messages",
        ("recommend", {"model": "popular", "users": [0], "k": np.uint64(2**64 - 1), "threads": 1}),
        _target("recommend", "recommend_all", "similar", "score", "topk"),
    ),
    Finding(
        "F17",
        "transforms: parameter and matrix messages (B out of [0, 1] named instead of the broken csr; "
        "huge 64-bit column ids -> MemoryError)",
        ("transform", {"fn": "log_confidence", "csr": _broken_col(3, 4), "params": {}}),
        _target("transform"),
    ),
    Finding(
        "F18",
        "finite but huge values (1e30, 3e38) in the training matrix: ALS fits NaN factors silently, "
        "SGD fits diverge with a message blaming lr",
        (
            "fit",
            {
                "model": "als",
                "interactions": sp.csr_matrix(np.diag(np.full(20, 3e38))[:, :20].repeat(1, 0)[:20].astype(np.float64)),
            },
        ),
        _target("fit", "partial_fit", where=lambda kw, d: "NaN or infinite values in" in d or "diverged" in d),
    ),
]


ABSURD_WORK = {"epochs": 1000, "negatives": 1000, "factors": 4096, "cg_steps": 1000}


def _absurd_work(target, kwargs) -> bool:
    """A fit whose size parameter asks for hours of work (it hangs until refused up front)."""
    value = kwargs.get("value")
    limit = ABSURD_WORK.get(kwargs.get("param"))
    return target == "fit" and limit is not None and isinstance(value, (int, np.integer)) and value > limit


OPEN.append(
    Finding(
        "F19",
        "hangs: epochs/negatives of 2^31-1, factors=20000 with Cholesky, mlp epochs=10^6 run for hours "
        "(not refused up front with the work they need; Ctrl-C not seen inside the C++ call, see F20)",
        ("fit", {"model": "als", "param": "epochs", "value": 2**31 - 1}),
        lambda t, kw, o, d: o == "hang" or _absurd_work(t, kw),
        skip=_absurd_work,
        timeout=5.0,
    )
)


def open_finding(target: str, kwargs: dict, outcome: str, detail: str) -> str | None:
    """The id of the open finding that explains this bad outcome, or None."""
    for f in OPEN:
        if f.match(target, kwargs, outcome, detail):
            return f.id
    return None


def skipped(target: str, kwargs: dict) -> bool:
    return any(f.skip is not None and f.skip(target, kwargs) for f in OPEN)
