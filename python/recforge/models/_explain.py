"""Explanations (``Recommender.explain``): which of a user's history items a score comes from.

Every model answers ``explain(user, item)`` with an ``Explanation``: the score, the part of it that
does not come from the user's history (``base``: biases, popularity), and one row per history item
with its ``contribution``. How the contributions are obtained (``method``):

* ``"exact"`` (ALS, ItemKNN, EASE): the score is a sum over the history items and the
  contributions are its terms, so ``base + contributions.sum() == score`` to float rounding.
  ItemKNN: ``r_uj * sim(j, i)``; EASE: ``r_uj * B[j, i]``; ALS: the user's factors are the solve
  ``x_u = A_u^-1 sum_j c_uj y_j`` of their normal equations (Hu, Koren & Volinsky 2008, section 5;
  implicit's ``explain``), so ``x_u . y_i = sum_j c_uj (y_i^T A_u^-1 y_j)``, with ``A_u`` the exact
  weighted Gram of the model (``alpha``, ``alpha0``, ``nu``, ``regularization``; explicit: the
  ALS-WR system over ``[y_j, 1]`` with targets ``r_uj - mu - b_j``).
* ``"integrated-gradients"`` (MLPScorer): exact integrated gradients of the logit along the path
  from the mean user embedding to the user's, the user's offset written on their history items'
  embeddings by least squares; ``base`` = the mean user's logit plus the part of the offset no
  history embedding expresses, and ``base + contributions.sum() == score`` to float rounding
  (``_mlp_explain``, which states the method).
* ``"similarity"`` (BPR, SGDMF, HybridMF): these scores are not a function of the history
  (the user vector was learnt by SGD), so the history-dependent part of the score (``score - base``)
  is shared out in proportion to ``r_uj * max(0, cos(v_j, v_i))``, ``v`` the model's item vectors: a
  heuristic that names the history items most like the recommended one, not an exact attribution.
* ``"popularity"`` (MostPopular): the score is the item's popularity (``base``); no history item
  contributes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["Explanation", "ScoreParts", "similarity_parts"]


@dataclass(frozen=True)
class ScoreParts:
    """A model's decomposition of one score (internal indices), before ids are attached."""

    history: np.ndarray  # (n,) int64 history item indices
    values: np.ndarray  # (n,) the stored interaction values r_uj
    contributions: np.ndarray  # (n,) float64
    base: float
    score: float
    method: str


@dataclass(frozen=True)
class Explanation:
    """Why ``item`` scores what it does for ``user``.

    Attributes
    ----------
    user, item : the external ids (the data set's own; indices for a model fitted on a matrix)
    score : float
        The score the decomposition explains: ``base + contributions["contribution"].sum()`` for the
        exact methods. ALS: the score with the user's factors solved exactly against the current item
        factors (as implicit's ``explain``); it is ``model_score`` whenever those factors are an exact
        solve (after ``partial_fit_users`` / ``recalculate_user``), and close to it after ``fit``
        (whose last half-step moves the items, not the users).
    model_score : float
        ``model.score(user, item)`` (rating models: clipped to the rating range).
    base : float
        The part of ``score`` no history item explains (biases, popularity; 0 for most models).
    method : "exact" | "integrated-gradients" | "similarity" | "popularity"
        How the contributions were obtained (module docstring).
    contributions : pandas.DataFrame
        One row per history item, largest ``|contribution|`` first: ``item`` (external id),
        ``index`` (internal), ``value`` (the stored interaction value), ``contribution`` and
        ``share`` (contribution / sum of all contributions: the share of the history's part of the
        score; shares of mixed-sign contributions can leave [0, 1]).
    """

    user: Any
    item: Any
    score: float
    model_score: float
    base: float
    method: str
    contributions: pd.DataFrame

    def top(self, n: int = 5) -> pd.DataFrame:
        """The ``n`` history items that contribute most (by absolute contribution)."""
        return self.contributions.head(n)


def build_explanation(parts: ScoreParts, user, item, model_score: float, item_ids) -> Explanation:
    """The ``Explanation`` of ``parts``, history items named by ``item_ids`` (the model's item IdMap)."""
    contrib = np.asarray(parts.contributions, np.float64)
    total = float(contrib.sum())
    share = contrib / total if total != 0 else np.zeros_like(contrib)
    order = np.lexsort((parts.history, -np.abs(contrib)))  # largest first, ties by index
    history = parts.history[order]
    frame = pd.DataFrame({
        "item": item_ids.to_external(history) if len(history) else np.empty(0, object),
        "index": history,
        "value": np.asarray(parts.values, np.float64)[order],
        "contribution": contrib[order],
        "share": share[order],
    })  # fmt: skip
    return Explanation(user, item, float(parts.score), float(model_score), float(parts.base), parts.method, frame)


def similarity_parts(history, values, vectors: np.ndarray, item: int, part: float, base: float) -> ScoreParts:
    """``part`` (the history-dependent part of the score) shared over ``history`` by ``r_uj * max(0, cos(v_j, v_i))``.

    ``vectors``: the model's (n_items, d) item vectors. When no history item has a positive
    similarity, every contribution is 0 and the whole score stays in ``base`` (nothing to point at).
    """
    v = np.asarray(vectors[history], np.float64)
    target = np.asarray(vectors[item], np.float64)
    norms = np.linalg.norm(v, axis=1) * np.linalg.norm(target)
    cos = np.divide(v @ target, norms, out=np.zeros(len(history)), where=norms > 0)
    weights = np.asarray(values, np.float64) * np.maximum(cos, 0.0)
    total = weights.sum()
    if total > 0:
        return ScoreParts(history, values, part * weights / total, base, base + part, "similarity")
    return ScoreParts(history, values, np.zeros(len(history)), base + part, base + part, "similarity")
