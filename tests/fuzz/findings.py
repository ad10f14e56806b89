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


@dataclasses.dataclass(frozen=True)
class Finding:
    id: str
    title: str
    reproducer: tuple  # (target, kwargs) for targets.TARGETS
    match: Callable  # (target, kwargs, outcome, detail) -> bool
    skip: Callable | None = None  # (target, kwargs) -> bool
    timeout: float | None = None  # seconds before the reproducer counts as a hang (a hang finding's)


# Matchers for registering a finding: by message pattern, or by target (and a predicate on the case).
def _detail(*patterns: str, targets: tuple = (), outcomes: tuple = ("crash", "hang", "garbage", "unclear")):
    rx = re.compile("|".join(patterns))

    def match(target, kwargs, outcome, detail):
        return outcome in outcomes and (not targets or target in targets) and bool(rx.search(detail))

    return match


def _target(*targets: str, outcomes: tuple = ("crash", "hang", "garbage", "unclear"), where=None):
    def match(target, kwargs, outcome, detail):
        return target in targets and outcome in outcomes and (where is None or where(kwargs, detail))

    return match


OPEN: list[Finding] = []  # every finding is fixed (h10-rest); register a new one here with its reproducer

# Closed on reflection, not defects (kept here so that nobody files them again):
# - F9 (rest): `_core.Csr` with bool data stores 0/1, as NumPy and SciPy convert a bool matrix (the usual
#   spelling of binary interactions); an empty matrix's `.data` is an empty float32 array even when built as
#   a pattern: with no entries there is nothing to tell apart, and by the CSR contract (csr.hpp) an empty
#   matrix "has values", so kernels that need values take it.
# - F19 (rest): a large fit that is simply large, e.g. MLPScorer(factors=10**6) on 30 x 20 (1.2 GB of
#   embeddings and Adam moments: about 90 s here), is the work that was asked for: Ctrl-C stops it, memory
#   is checked up front. The unbounded ones were the defect (epochs and negatives up to 2^31 - 1: now at
#   most 10,000, refused saying why; an ALS Gram matrix past RAM; an MLP batch_size of 2^31 - 1). Generated
#   runs skip such large-but-legitimate fits (`slow_but_legitimate`): each would cost the case timeout.
# - F28 (found by h10-rest with other seeds): `_core.mlp_score_all` with an item_emb one row short is a
#   catalogue of one item fewer, not an error (its rows define the items). Its other half, a float64 user_emb
#   next to float32 tables, now names both arrays.
# - F25 (rest): MLPScorer's ranking calls take threads=None (the model's own threads), as documented; the
#   oracle now says so. The empty-id case itself (k and threads unchecked without users) was fixed earlier.


def slow_but_legitimate(target: str, kwargs: dict) -> bool:
    """A generated fit whose size makes it legitimately slower than the case timeout (see F19 above)."""
    value = kwargs.get("value")
    return (
        target == "fit"
        and kwargs.get("model", "").startswith("mlp")
        and kwargs.get("param") == "factors"
        and isinstance(value, (int, np.integer))
        and 10**5 < value < 2**31 - 1  # 2^31 - 1 is refused (memory): still run
    )


def open_finding(target: str, kwargs: dict, outcome: str, detail: str) -> str | None:
    """The id of the open finding that explains this bad outcome, or None."""
    for f in OPEN:
        if f.match(target, kwargs, outcome, detail):
            return f.id
    return None


def skipped(target: str, kwargs: dict) -> bool:
    return slow_but_legitimate(target, kwargs) or any(f.skip is not None and f.skip(target, kwargs) for f in OPEN)
