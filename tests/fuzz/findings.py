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
        "F11",
        "Interactions.from_arrays: nested-list ids -> 'unhashable type', scalar ids, 64-bit ids with "
        "an IdMap.range -> messages naming another argument or nothing",
        ("interactions", {"users": [[0, 1]], "items": [0]}),
        _target("interactions"),
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


OPEN.append(
    Finding(
        "F23",
        "_core.topk_f32(subset=...) with an id out of range says 'candidate id ... outside' (names candidates, "
        "not subset)",
        ("core", {"fn": "topk_f32", "arg": "subset", "value": np.array([2**32 + 1, 19, 3]), "equivalent": False}),
        _detail("candidate id", targets=("core",)),
    )
)


OPEN.append(
    Finding(
        "F25",
        "recommend/similar with no users (or ids) skip the other checks: threads=None accepted, k=2^63-1 -> "
        "'array is too big'",
        ("recommend", {"model": "mlp", "users": [], "k": 3, "threads": None}),
        _target("recommend", "similar", where=lambda kw, d: np.size(kw.get("users", kw.get("ids", 0))) == 0),
    )
)


OPEN.append(
    Finding(
        "F26",
        "ALS partial_fit_users/fit on rows with large values (1e20 next to 1, below the 1e30 bound) -> 'the normal "
        "equations of row 0 are not positive definite; use regularization > 0' (a ValueError now, but it blames "
        "regularization, not the rows)",
        (
            "partial_fit",
            {
                "model": "als",
                "ids": [0],
                "rows": sp.csr_matrix(np.array([[1e20, 2, 1, 3, 1] + [0] * 15])),
            },
        ),
        _detail("not positive definite", targets=("partial_fit", "fit")),
    )
)


OPEN.append(
    Finding(
        "F27",
        "split.leave_last_out(n=np.uint64(2**64-1)) -> OverflowError 'Python int too large to convert to C long'",
        ("split", {"fn": "leave_last_out", "kwargs": {"n": np.uint64(2**64 - 1)}}),
        _detail("OverflowError", targets=("split",)),
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
