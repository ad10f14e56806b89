"""``rf.transforms``: weighting of a users x items matrix, as pure functions on CSR.

Every function takes a scipy.sparse matrix (or an Interactions) of shape (n_users, n_items),
returns a new float32 CSR with the same sparsity pattern and never modifies its input.
Notation: ``r_ui`` a stored value, ``N`` the number of users, ``df_i`` the number of users with
a stored value for item ``i``, ``len_u`` the sum of user ``u``'s row, ``avg_len`` its mean over users.

The confidence convention (apply it once). ``recforge.ALS(alpha=a)`` turns every stored weight
``w_ui`` into the confidence ``c_ui = 1 + a * w_ui`` itself (Hu, Koren & Volinsky 2008). So:

* weights (``log_scale``, ``bm25_weight``, ``tfidf_weight``, or raw counts) go to ALS as they are,
  with ``alpha`` as the scale: ``ALS(alpha=a).fit(log_scale(r))`` uses Hu et al.'s log confidence
  ``1 + a * log(1 + r / eps)``; ``ALS(alpha=a).fit(r)`` their linear one, ``1 + a * r``;
* confidences (``linear_confidence``, ``log_confidence``) already hold ``1 + alpha * ...``: they are
  for models that take the confidence itself (e.g. ``implicit``'s ALS). Fitting ``recforge.ALS`` on
  them applies the convention twice (``1 + a * (1 + alpha * r)``): fit on ``r`` or ``log_scale(r)``
  with ``alpha`` instead.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ._validation import as_csr, check_nonnegative, check_positive
from .data.interactions import Interactions

__all__ = [
    "WEIGHTINGS",
    "binary",
    "bm25_weight",
    "linear_confidence",
    "log_confidence",
    "log_scale",
    "tfidf_weight",
    "weight",
]


def _as_float32_weights(data: np.ndarray, source: np.ndarray) -> np.ndarray:
    """Computed weights ``data`` as float32, refusing an overflow (``source``: the values they came from)."""
    with np.errstate(over="ignore", invalid="ignore"):
        data32 = data.astype(np.float32, copy=False)
    if data32.size and not np.isfinite(data32).all():  # finite but huge inputs (3e38) overflow float32
        raise ValueError(
            f"the weighted values overflow float32 (the input's values go up to {float(np.abs(source).max()):.3g}): "
            "scale csr (or alpha) down"
        )
    return data32


def _with_data(csr: sp.csr_matrix, data: np.ndarray) -> sp.csr_matrix:
    out = sp.csr_matrix((_as_float32_weights(data, csr.data), csr.indices.copy(), csr.indptr.copy()), shape=csr.shape)
    out.has_sorted_indices = True
    return out


def linear_confidence(csr, alpha: float = 40.0) -> sp.csr_matrix:
    """Linear confidence of implicit ALS (Hu, Koren & Volinsky 2008): ``c_ui = 1 + alpha * r_ui``.

    A confidence, not a weight: ``recforge.ALS(alpha=alpha)`` computes it from ``r`` itself, so fit
    ALS on ``csr`` (not on this) to use it. Meant for models that take the confidence as given.

    Parameters
    ----------
    csr : scipy.sparse matrix or Interactions, shape (n_users, n_items)
    alpha : float >= 0

    Returns
    -------
    scipy.sparse.csr_matrix, float32, same shape and pattern
    """
    x = as_csr(csr, "csr", allow_empty=True)
    alpha = check_nonnegative(alpha, "alpha")
    return _with_data(x, 1.0 + alpha * x.data.astype(np.float64))


def log_confidence(csr, alpha: float = 1.0, eps: float = 1.0) -> sp.csr_matrix:
    """Log-scaled confidence (Hu, Koren & Volinsky 2008): ``c_ui = 1 + alpha * log(1 + r_ui / eps)``.

    Damps heavy counts (play counts, clicks). Needs ``r_ui >= 0``; ``alpha >= 0``, ``eps > 0``.
    A confidence, not a weight: for ``recforge.ALS`` use ``ALS(alpha=alpha).fit(log_scale(csr, eps))``,
    which applies this same confidence (fitting ALS on this output would add ``1 + alpha * ...`` again).
    """
    x = as_csr(csr, "csr", allow_empty=True, allow_negative=False)
    alpha = check_nonnegative(alpha, "alpha")
    eps = check_positive(eps, "eps")
    return _with_data(x, 1.0 + alpha * np.log1p(x.data.astype(np.float64) / eps))


def log_scale(csr, eps: float = 1.0) -> sp.csr_matrix:
    """Log-scaled weights ``w_ui = log(1 + r_ui / eps)``: damps heavy counts (play counts, clicks).

    A weight: ``recforge.ALS(alpha=a).fit(log_scale(r, eps))`` fits with Hu et al.'s log confidence
    ``1 + a * log(1 + r / eps)`` (what ``log_confidence(r, a, eps)`` returns). Needs ``r_ui >= 0``;
    ``eps > 0``.
    """
    x = as_csr(csr, "csr", allow_empty=True, allow_negative=False)
    eps = check_positive(eps, "eps")
    return _with_data(x, np.log1p(x.data.astype(np.float64) / eps))


def _document_frequency(x: sp.csr_matrix) -> np.ndarray:
    return np.bincount(x.indices, minlength=x.shape[1]).astype(np.float64)


def bm25_weight(csr, K1: float = 1.2, B: float = 0.75) -> sp.csr_matrix:
    """Okapi BM25 weighting, users as documents and items as terms.

    ``w_ui = idf_i * r_ui * (K1 + 1) / (r_ui + K1 * (1 - B + B * len_u / avg_len))`` with the
    always-positive ``idf_i = log(1 + (N - df_i + 0.5) / (df_i + 0.5))``.
    Needs ``r_ui >= 0``; ``K1 >= 0``, ``0 <= B <= 1``. A weight: fit ``recforge.ALS(alpha=a)`` on it
    (confidence ``1 + a * w_ui``; ``a`` sets how much a weighted entry outweighs a missing one).
    """
    x = as_csr(csr, "csr", allow_empty=True, allow_negative=False)
    K1 = check_nonnegative(K1, "K1")
    B = check_nonnegative(B, "B")
    if B > 1:
        raise ValueError(f"B must be in [0, 1], got {B}")
    n_documents = x.shape[0]
    per_row = np.diff(x.indptr)
    # Document lengths summed in float64, entry by entry in column order: a layout-free sum (ItemKNN
    # sums the same values in the same order from the transposed layout, to the same bits).
    length = np.bincount(np.repeat(np.arange(n_documents), per_row), weights=x.data, minlength=n_documents)
    idf, saturation = _bm25_parts(n_documents, _document_frequency(x), length, K1, B)
    return _with_data(x, _bm25_combine(x.data, saturation, np.repeat(saturation, per_row), idf[x.indices], K1))


def _bm25_parts(n_documents: int, df: np.ndarray, length: np.ndarray, K1: float, B: float):
    """BM25's per-term idf and per-document saturation ``K1 * (1 - B + B * length / avg_length)``."""
    idf = np.log1p((n_documents - df + 0.5) / (df + 0.5))
    avg = length.mean() if n_documents else 0.0
    saturation = K1 * ((1.0 - B) + B * (length / avg if avg > 0 else np.ones_like(length)))
    return idf, saturation


def _bm25_combine(values, saturation, value_saturation, value_idf, K1: float) -> np.ndarray:
    """The weights ``idf * r * (K1 + 1) / (r + saturation)`` of ``values`` (float64), given each value's
    document saturation (``value_saturation``, an array this overwrites and returns) and term idf."""
    r = values.astype(np.float64)
    w = value_saturation
    w += r  # the denominator r + K1 * norm
    r *= K1 + 1.0
    # A zero value with K1 * norm = 0 (K1 = 0, or an all-zero row and B = 1) has 0/0: its weight is 0, as
    # there is nothing to weigh (the denominator, kept where it is not positive). Masked only when needed.
    np.divide(r, w, out=w, where=True if saturation.min(initial=1.0) > 0 else w > 0)
    w *= value_idf
    return w


#: ``tfidf_weight``'s idf formulas, by name (N documents, df_i of them hold term i).
_IDF_FORMULAS = ("smooth", "plain")


def tfidf_weight(csr, idf: str = "smooth") -> sp.csr_matrix:
    """TF-IDF weighting, users as documents and items as terms: ``w_ui = r_ui * idf_i``.

    ``idf="smooth"`` (default; scikit-learn's ``TfidfTransformer``): ``idf_i = log((1 + N) / (1 + df_i)) + 1``,
    positive for every item, so no stored value becomes 0 unless ``r_ui`` is 0.
    ``idf="plain"``: the textbook ``idf_i = log(N / df_i)`` (Manning, Raghavan & Schuetze, *Introduction to
    Information Retrieval*, 2008, eq. 6.7): rarer items weigh relatively more than with "smooth", and an
    item every user holds weighs 0. A weight: fit ``recforge.ALS(alpha=a)`` on it (confidence ``1 + a * w_ui``).
    """
    x = as_csr(csr, "csr", allow_empty=True)
    if not isinstance(idf, str) or idf not in _IDF_FORMULAS:
        raise ValueError(f"idf must be one of {_IDF_FORMULAS}, got {idf!r}")
    w = x.data.astype(np.float64)
    w *= _tfidf_idf(x.shape[0], _document_frequency(x), idf)[x.indices]
    return _with_data(x, w)


def _tfidf_idf(n_documents: int, df: np.ndarray, idf: str) -> np.ndarray:
    """Each term's idf (float64) by the formula named ``idf``, given its document frequency ``df``."""
    if idf == "smooth":
        return np.log((1.0 + n_documents) / (1.0 + df)) + 1.0
    # "plain"; a term in no document has no stored value: its idf (log of inf) is never read
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(n_documents / df)


def binary(csr) -> sp.csr_matrix:
    """Every stored value as 1: presence only (counts and ratings forgotten)."""
    x = as_csr(csr, "csr", allow_empty=True)
    return _with_data(x, np.ones(x.nnz))


#: The weightings by name (``weight``, the CLI's ``--weighting``): "none" keeps the values.
WEIGHTINGS = {"none": None, "binary": binary, "log": log_scale, "bm25": bm25_weight, "tfidf": tfidf_weight}


def weight(data, weighting: str = "none"):
    """``data`` weighted by the named scheme, of the same kind: an Interactions stays one (same id maps).

    Parameters
    ----------
    data : scipy.sparse matrix or Interactions (n_users, n_items)
    weighting : {"none", "binary", "log", "bm25", "tfidf"}
        "none": unchanged; "binary": ``binary``; "log": ``log_scale``; "bm25": ``bm25_weight``;
        "tfidf": ``tfidf_weight`` (each with its default parameters). Raw play or click counts
        usually rank much better weighted (log or bm25) than raw in ALS; the timestamps of an
        Interactions are kept (the pattern does not change).
    """
    if not isinstance(weighting, str) or weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {tuple(WEIGHTINGS)}, got {weighting!r}")
    fn = WEIGHTINGS[weighting]
    if fn is None:
        return data
    if isinstance(data, Interactions):
        return Interactions(fn(data.csr), data.user_ids, data.item_ids, data.timestamps)
    return fn(data)
