"""Alternating least squares: implicit feedback (iALS) and explicit ratings with biases.

Implicit feedback (Hu, Koren & Volinsky 2008; ``alpha0`` and ``nu`` from Rendle et al. 2022,
"Revisiting the Performance of iALS on Item Recommendation Benchmarks"). Each stored value
``r_ui >= 0`` of the interaction matrix is a positive (preference 1) with confidence
``c_ui = 1 + alpha * r_ui``; every user-item pair also contributes ``alpha0 * (x_u . y_i)^2``. The
objective is ::

    sum_{(u,i) stored} c_ui (1 - x_u.y_i)^2 + alpha0 * sum_{(u,i) not stored} (x_u.y_i)^2
      + sum_u lambda_u |x_u|^2 + sum_i lambda_i |y_i|^2,
    lambda_u = regularization * (n_u + alpha0 * n_items) ** nu   (nu = 0: constant, the classic iALS)

with ``regularization_scaling="all_pairs"`` (the default), or, with ``"observed"``, ::

    lambda_u = regularization * n_u ** nu

where ``n_u`` is the number of stored entries of row u: ``nu=1`` is ALS-WR (Zhou et al. 2008), the
regulariser of Spark MLlib's implicit ALS (``regParam * numExplicits``), independent of ``alpha0``.
Items are regularised alike (``n_i``, ``n_users``).

Each half-iteration solves every row's normal equations against the fixed other side, either
exactly (``solver="cholesky"``) or with ``cg_steps`` steps of conjugate gradient warm-started from
the previous factors (``solver="cg"``, Takács et al. 2011), both in the C++ core.

Explicit feedback (``feedback="explicit"``): the model is ``r_ui ~ mu + b_u + b_i + x_u.y_i``
fitted on the stored ratings only, with ALS-WR regularisation (Zhou et al. 2008)::

    sum_{(u,i) stored} (r_ui - mu - b_u - b_i - x_u.y_i)^2
      + regularization * (sum_u n_u (|x_u|^2 + b_u^2) + sum_i n_i (|y_i|^2 + b_i^2))

``mu`` is the mean training rating (fixed). A user half-step solves ``[x_u, b_u]`` jointly as one
least-squares problem with features ``[y_i, 1]`` and targets ``r_ui - mu - b_i`` (the item biases
held fixed), and symmetrically for items.

Relation to ``implicit`` (benfred/implicit 0.7): its ``AlternatingLeastSquares`` uses the
stored value times its ``alpha`` as the confidence itself (``c = alpha * r``, so binary data at
``alpha=1`` gives positives no extra weight), and a constant ``regularization``; ours with
``alpha=a`` equals implicit's with ``alpha=1 + a`` on binary data.

Confidence convention (ALS is the one place it is applied): the matrix holds weights ``r`` (raw
counts, or the weights of ``recforge.transforms``: ``log_scale``, ``bm25_weight``,
``tfidf_weight``), and ALS turns them into the confidence ``1 + alpha * r`` itself. Hu et al.'s
linear confidence is ``ALS(alpha=a).fit(counts)``, their log confidence
``ALS(alpha=a).fit(transforms.log_scale(counts, eps))``. ``transforms.linear_confidence`` and
``transforms.log_confidence`` return confidences (``1 + alpha * ...``) for models that take them
as given: fitting ALS on them applies the convention twice (``1 + a * (1 + alpha * r)``).

Every stored entry counts, including an explicitly stored 0 (implicit: a positive with
confidence 1; call ``eliminate_zeros()`` on the matrix to drop such entries).

Folding in (``partial_fit_users`` / ``partial_fit_items`` / ``recalculate_user`` /
``recommend_for_rows``) always solves the rows exactly (Cholesky) against the fixed other side,
whatever ``solver`` the model was fitted with.

Rows without interactions: their normal equations have a zero right-hand side, so their factors
(and, explicit, their bias) are exactly zero after a half-step; such users rank items by the
item bias (explicit) or not at all (implicit: every score is 0) -- unless side features give them
a prior.

Side information (implicit; ``fit(..., user_features=, item_features=)``, ``rf.Features`` or
scipy.sparse as ``HybridMF`` takes them): each factor gets a prior ``x_u ~ N(W_u f_u, 1 /
feature_weight)`` (likewise items), i.e. the objective gains ``feature_weight * sum_u |x_u - W_u
f_u|^2``; before every half-step the map ``W`` is refitted to the current factors by ridge
regression (penalty ``regularization``), then each row is solved toward its prior mean by the C++
half-step (``A_u += feature_weight I``, ``b_u += feature_weight W f_u``). A user or item without
interactions gets ``(alpha0 YᵀY + (lambda + feature_weight) I)^-1 feature_weight W f``: cold items
in the catalogue are ranked from their features by ``recommend``, and ``recommend_for_features``,
``item_factors_for``, ``add_items`` and ``similar_items_by_features`` answer for users and items
unseen at fit time (the API shared with ``HybridMF``). Chosen over features as pseudo-rows (each
feature a pseudo-user / pseudo-item) on validation splits: bench/als_side_validation.py,
bench/RESULTS.md ("ALS side information"). With features, ``forget_*`` is refused (the maps learnt
from every row) and fold-ins solve a row toward its features' prior (zero for rows they add).
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from .._backend import resolve_threads, single_threaded_blas
from .._ops import als_row_regularization, to_host
from .._validation import check_memory
from ._explain import ScoreParts
from ._features import FeatureColdStart
from ._params import EPOCHS, Param
from ._ratings import RatingPredictions
from ._training import run_epochs
from .base import COMMON_PARAMS, FactorModel, check_state_arrays

__all__ = ["ALS"]

# The exact solve (explicit ALS, solver="cholesky") costs factors^3 / 3 flops per row and a
# factors^2 system per thread: 2048 is ~3e9 flops (about a second) per row, so a fit stays
# interruptible between rows; larger factors go through CG.
_MAX_EXACT_FACTORS = 2048
# Largest |rating| (explicit) or alpha * weight (implicit) accepted: sums of confidence x factor
# products must stay far below float32's 3.4e38.
_MAX_VALUE = 1e30


class ALS(FeatureColdStart, RatingPredictions, FactorModel):
    """Matrix factorisation by alternating least squares (implicit iALS or explicit with biases).

    Parameters
    ----------
    factors : int >= 1
        Latent dimension f.
    regularization : float >= 0
        lambda. Implicit: the weight of the L2 penalty, scaled per row by ``nu`` and
        ``regularization_scaling``. Explicit: multiplied by each row's number of ratings (ALS-WR).
    epochs : int >= 1
        Full iterations (a user half-step then an item half-step). Was ``iterations`` (deprecated).
    alpha : float >= 0
        Implicit confidence scale: ``c = 1 + alpha * r`` for each stored weight ``r``. ALS applies
        it: fit on raw counts or on weights (``transforms.log_scale``, ``bm25_weight``,
        ``tfidf_weight``) with the ``alpha`` you want, never on confidences that already are
        ``1 + alpha * r`` (``transforms.linear_confidence`` / ``log_confidence``): that applies it
        twice. Scaling the weights by ``s`` is the same as scaling ``alpha`` by ``s``.
    solver : {"cg", "cholesky"}
        Implicit only: conjugate gradient (fast, approximate) or the exact Cholesky solve.
        Explicit ALS always solves exactly.
    cg_steps : int >= 1
        Conjugate gradient steps per row and half-step.
    alpha0 : float >= 0
        Implicit: weight of the unobserved pairs (1 = classic iALS).
    nu : float >= 0
        Implicit: frequency scaling exponent of the regularisation (0 = classic constant).
    regularization_scaling : {"all_pairs", "observed"}
        Implicit: what ``nu`` scales. "all_pairs": ``(n_u + alpha0 * n_items) ** nu`` (Rendle et al.,
        the pairs a row is fitted on, weighted); "observed": ``n_u ** nu``, the row's stored entries
        alone. ALS-WR as in Spark MLlib: ``regularization_scaling="observed", nu=1``. No effect at
        ``nu=0`` or on explicit ALS (always ALS-WR).
    feedback : {"implicit", "explicit"}
    clip : bool or (low, high)
        Explicit only: clip predicted ratings (``score``) into a range: True (default) the training
        ratings' ``[min, max]`` (``rating_range_``, learned by ``fit``, saved with the model);
        (low, high) that range; False or None: none. Implicit scores are never clipped.
    device : {"auto", "cpu", "cuda"}
        Where to fit: "cuda" runs every half-step, the loss and the fold-in on the GPU (CuPy; the
        factors are CuPy arrays), with the same objective as on the CPU up to float32 rounding;
        "auto" follows the data (CuPy sparse input: the GPU).
    threads : int >= 0
        Threads of the C++ kernels (0 = all cores). The result does not depend on it.
    seed : int
        Seed of the random initial factors (numpy ``default_rng``).
    calculate_loss : bool
        Compute the training objective after every iteration (``history_``, the callback's
        ``loss``; costs about one CG step per iteration).
    feature_weight : float >= 0
        Implicit, with ``user_features`` / ``item_features`` (``fit``): the precision of the prior
        that pulls each factor toward the linear map of its features (see "Side information").
        1 was the best worst case over the validation splits of bench/als_side_validation.py (with
        alpha 5, regularization 1, 32 factors; 100 suits user cold start best, 3-10 item cold start).

    Attributes
    ----------
    user_factors : (n_users, factors) float32
    item_factors : (n_items, factors) float32
    user_bias, item_bias : (n_users,), (n_items,) float32, explicit only (None for implicit)
    global_bias : float, explicit only (the mean training rating)
    seen_ : scipy.sparse.csr_matrix (n_users, n_items), the training matrix
    history_ : list of dict (epoch, seconds, loss) per iteration
    user_feature_map, item_feature_map : (n_user_features, factors), (n_item_features, factors) float32
        With side features: the ridge maps W of the prior means ``W f`` (None for a side without features).
    user_features_, item_features_ : scipy.sparse.csr_matrix or None, the fitted feature matrices
    """

    _param_spec = {
        **COMMON_PARAMS,
        "factors": Param("int", low=1),
        "regularization": Param("float", low=0),
        "epochs": EPOCHS,
        "alpha": Param("float", low=0),
        "solver": Param("choice", choices=("cg", "cholesky")),
        "cg_steps": Param("int", low=1),
        "alpha0": Param("float", low=0),
        "nu": Param("float", low=0),
        "regularization_scaling": Param("choice", choices=("all_pairs", "observed")),
        "feedback": Param("choice", choices=("implicit", "explicit")),
        "clip": Param("clip", optional=True),
        "calculate_loss": Param("bool"),
        "feature_weight": Param("float", low=0),
    }
    _aliases = {"iterations": "epochs"}
    user_feature_map: np.ndarray | None = None
    item_feature_map: np.ndarray | None = None

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 0.05,
        epochs: int = 15,
        alpha: float = 1.0,
        solver: str = "cg",
        cg_steps: int = 3,
        alpha0: float = 1.0,
        nu: float = 0.0,
        regularization_scaling: str = "all_pairs",
        feedback: str = "implicit",
        clip=True,
        device: str = "auto",
        threads: int = 0,
        seed: int = 42,
        calculate_loss: bool = False,
        feature_weight: float = 1.0,
        **deprecated,
    ):
        self._store_params(locals())

    @property
    def explicit(self) -> bool:
        return self.feedback == "explicit"

    @property
    def predicts_ratings(self) -> bool:
        """Explicit ALS predicts ratings (evaluated by RMSE / MAE); implicit ALS ranks."""
        return self.explicit

    def _check_values(self, m, name: str) -> None:
        """Refuse values whose confidences (or residuals) would overflow float32 in the solves."""
        top = float(np.abs(m.data).max()) if m.nnz else 0.0
        if top * (1.0 if self.explicit else max(self.alpha, 1.0)) > _MAX_VALUE:
            raise ValueError(
                f"{name} holds values up to {top:.3g}"
                + ("" if self.explicit else f" (alpha={self.alpha:g})")
                + f": ALS needs {'|r|' if self.explicit else 'alpha * r'} <= {_MAX_VALUE:g} to stay clear of float32 "
                "overflow; scale the values down (e.g. rf.transforms.log_scale)"
            )

    def _check_fit_size(self, n_users, n_items, nnz):
        super()._check_fit_size(n_users, n_items, nnz)
        f = self.factors
        check_memory(4.0 * f * f, f"factors={f} (the {f} x {f} Gram matrix of each half-step)")
        exact = self.explicit or self.solver == "cholesky"
        if exact and self.factors > _MAX_EXACT_FACTORS:
            f = self.factors
            what = "explicit ALS" if self.explicit else "solver='cholesky'"
            raise ValueError(
                f"factors must be <= {_MAX_EXACT_FACTORS} for {what}: each row's exact solve costs about factors^3 / 3 "
                f"= {f**3 / 3:.2g} flops and a {f * f * 4 / 2**30:.3g} GiB system per thread (factors={f}); "
                "use solver='cg' for larger factors"
            )

    # -- fitting ----------------------------------------------------------------------------
    def fit(self, interactions, callback=None, progress: bool | None = None, *, user_features=None,
            item_features=None):  # fmt: skip
        """Fit on ``interactions`` (users x items).

        Parameters
        ----------
        interactions : scipy.sparse matrix or recforge.Interactions, (n_users, n_items)
            Implicit: weights r >= 0 (raw counts or ``recforge.transforms`` weights; ALS uses the
            confidence ``1 + alpha * r``, so never pass a ``*_confidence`` output).
            Explicit: the ratings.
        callback : callable(epoch, seconds_this_epoch, loss), optional
            Called after each iteration (0-based) with its wall time and the training objective
            (None unless ``calculate_loss=True``). The model can be evaluated from it.
        progress : bool, optional
            Show a tqdm progress bar (None: ``recforge.get_config()["progress"]``).
        user_features, item_features : rf.Features or scipy.sparse, optional
            Implicit only: side information, one row per user / item (rows matching the interactions'
            id maps, finite values), as ``HybridMF.fit`` takes them. Each factor is pulled toward
            ``W f`` (its features ``f`` through a map ``W`` refitted by ridge regression before every
            half-step) with the weight ``feature_weight``; a user or item without interactions gets
            its factor from its features alone. See "Side information" in the module docstring.
        """
        if self.explicit and (user_features is not None or item_features is not None):
            raise ValueError("user_features / item_features need feedback='implicit' (explicit ALS takes no side "
                             "features)")  # fmt: skip
        train = self._start_fit(interactions, allow_negative=self.explicit)
        self._check_values(train, "interactions")
        fu, fi = self._set_features(user_features, item_features, *train.shape, identity_default=False)
        maps = {side: _RidgeMap(m, self.regularization, f"{side}_features", self.factors)
                for side, m in (("user", fu), ("item", fi)) if m is not None}  # fmt: skip
        self.user_feature_map = self.item_feature_map = None
        self.user_features_ = self.item_features_ = None
        if self.explicit:
            self._learn_rating_range(train.data)
        else:
            self.rating_range_ = None
            _warn_raw_counts(train.data)
        threads = resolve_threads(self.threads)
        n_users, n_items = train.shape
        rng = np.random.default_rng(self.seed)
        # Small random factors: the first half-step solves users from the item factors alone, so
        # only their scale matters (0.1/sqrt(f) keeps the initial scores ~0.01, Rendle et al.).
        scale = np.float32(0.1 / np.sqrt(self.factors))
        xp = self._ops.xp  # the factors live on the fitted device (drawn on the host: the same start on both)
        self.user_factors = xp.asarray(rng.standard_normal((n_users, self.factors), np.float32) * scale)
        self.item_factors = xp.asarray(rng.standard_normal((n_items, self.factors), np.float32) * scale)
        if self.explicit:
            self.global_bias = float(train.data.mean(dtype=np.float64))
            self.user_bias = xp.zeros(n_users, np.float32)
            self.item_bias = xp.zeros(n_items, np.float32)
        else:
            self.global_bias, self.user_bias, self.item_bias = 0.0, None, None
        user_items = self._kernel_csr(interactions, train)
        item_users = self._kernel_csr(interactions, train, transposed=True)

        def prior(side):  # the prior means W f of a side with features, W refitted to its current factors
            if side not in maps:
                return None
            setattr(self, f"{side}_feature_map", maps[side].fit(getattr(self, f"{side}_factors")))
            return self._prior(side, maps[side].features)

        def run_epoch(epoch):
            self._half_step(user_items, self.item_factors, self.user_factors, self.item_bias, self.user_bias, threads,
                            rows="interactions (user rows)", prior=prior("user"))  # fmt: skip
            self._half_step(item_users, self.user_factors, self.item_factors, self.user_bias, self.item_bias, threads,
                            rows="interactions (item columns)", prior=prior("item"))  # fmt: skip
            if not (self._ops.xp.isfinite(self.user_factors).all() and self._ops.xp.isfinite(self.item_factors).all()):
                raise ValueError(f"ALS diverged in epoch {epoch}: the factors overflowed float32; scale the "
                                 "interactions (or alpha) down, or raise regularization")  # fmt: skip
            return (self._loss(user_items, item_users, threads) if self.calculate_loss else None), {}, False

        self.user_features_, self.item_features_ = fu, fi
        self._finish_fit(train)  # fitted from here on, so that a callback can evaluate the model
        try:
            run_epochs(self, self.epochs, run_epoch, callback=callback, progress=progress, desc="ALS")
        except BaseException:
            self.seen_ = None  # a half-fitted model must not look fitted
            raise
        return self

    def _half_step(self, m, other, own, other_bias, own_bias, threads: int, exact: bool = False, *,
                   rows: str = "interactions", gram=None, cg_steps: int | None = None,
                   prior=None) -> None:  # fmt: skip
        """Solve ``own`` (and ``own_bias``) in place for every row of ``m`` against ``other``; ``rows`` names
        the argument ``m`` comes from, for the message of a row whose system is singular; ``gram``: the
        implicit solve's ``otherᵀother`` when the caller keeps it (computed here by default); ``cg_steps``:
        the model's by default; ``prior``: the rows' prior means (side features), pulled toward with
        ``feature_weight``."""
        try:
            self._solve_half_step(m, other, own, other_bias, own_bias, threads, exact, gram, cg_steps, prior)
        except ValueError as exc:  # a singular row: regularization <= 0, or values spanning too many decades
            if "not positive definite" not in str(exc):
                raise
            raise ValueError(
                f"{rows}: {exc}; scale the values down (e.g. rf.transforms.log_scale"
                + ("" if self.explicit else ", or a smaller alpha")
                + ") or raise regularization"
            ) from None

    def _solve_half_step(self, m, other, own, other_bias, own_bias, threads: int, exact: bool, gram=None,
                         cg_steps: int | None = None, prior=None) -> None:  # fmt: skip
        ops = self._ops
        if self.explicit:
            ops.als_explicit_half_step(m, other, other_bias, own, own_bias, regularization=self.regularization,
                                       global_mean=self.global_bias, threads=threads)  # fmt: skip
        else:
            gram = ops.gram(other, threads) if gram is None else gram
            ops.als_implicit_half_step(m, other, gram, own, alpha=self.alpha,
                                       regularization=self.regularization, alpha0=self.alpha0, nu=self.nu,
                                       scaling=self.regularization_scaling,
                                       solver="cholesky" if exact else self.solver,
                                       cg_steps=self.cg_steps if cg_steps is None else cg_steps,
                                       threads=threads, prior=prior,
                                       prior_weight=self.feature_weight if prior is not None else 0.0)  # fmt: skip

    def _loss(self, user_items, item_users, threads: int) -> float:
        """Training objective (see the module docstring), normalised by the number of stored values."""
        X, Y, ops = self.user_factors, self.item_factors, self._ops
        xp = ops.xp
        nu = xp.diff(user_items.indptr).astype(xp.float64)
        ni = xp.diff(item_users.indptr).astype(xp.float64)
        if self.explicit:
            sse = ops.als_explicit_sse(user_items, X, self.user_bias, Y, self.item_bias,
                                       global_mean=self.global_bias, threads=threads)  # fmt: skip
            reg = self.regularization * (
                nu @ (xp.einsum("ij,ij->i", X, X, dtype=xp.float64) + self.user_bias.astype(xp.float64) ** 2)
                + ni @ (xp.einsum("ij,ij->i", Y, Y, dtype=xp.float64) + self.item_bias.astype(xp.float64) ** 2)
            )
            return float((sse + reg) / user_items.nnz)
        users = ops.als_implicit_loss(user_items, X, Y, alpha=self.alpha, regularization=self.regularization,
                                      alpha0=self.alpha0, nu=self.nu, scaling=self.regularization_scaling,
                                      threads=threads)  # fmt: skip
        # The items' regularisation: the same call on the transposed matrix minus its data terms is
        # wasteful, so compute lambda_i |y_i|^2 here.
        lam = self._row_regularization(ni, X.shape[0])
        items = float(lam @ xp.einsum("ij,ij->i", Y, Y, dtype=xp.float64))
        for side, own in (("user", X), ("item", Y)):  # side features: feature_weight |x - W f|^2
            mean = self._prior(side, getattr(self, f"{side}_features_"))
            if mean is not None:
                items += self.feature_weight * float(xp.sum((own.astype(xp.float64) - mean) ** 2))
        return (users + items) / user_items.nnz

    def _row_regularization(self, counts, n_cols):
        """Implicit ``lambda`` of rows with ``counts`` stored entries against ``n_cols`` columns (float64)."""
        return als_row_regularization(counts, n_cols, regularization=self.regularization, alpha0=self.alpha0,
                                      nu=self.nu, scaling=self.regularization_scaling)  # fmt: skip

    # -- folding in -------------------------------------------------------------------------
    def _solve_rows(self, m, other, other_bias, threads: int | None = None, *, name: str = "rows", gram=None,
                    start=None, cg_steps: int | None = None, prior=None):  # fmt: skip
        """Exact factors (and biases) of the rows of ``m`` (the argument ``name``, for the message of a singular
        row) against the fixed ``other`` side (``threads``: the model's by default; the streaming updater
        solves its small batches on one). ``gram``: ``otherᵀother`` (float32) when the caller keeps it.
        ``start``: the rows' current factors (and biases; float32 arrays are refined in place and returned):
        refined by the model's own solver (warm-started CG steps, ``cg_steps`` or the model's, as one epoch
        of the fit would), not solved exactly. ``prior``: the rows' prior means (side features)."""
        xp = self._ops.xp
        if start is None:
            own = xp.zeros((m.shape[0], self.factors), np.float32)
            own_bias = xp.zeros(m.shape[0], np.float32) if self.explicit else None
        else:
            own, own_bias = (xp.ascontiguousarray(a, dtype=np.float32) if a is not None else None for a in start)
        threads = resolve_threads(self.threads if threads is None else threads)
        self._half_step(self._ops.csr(m), other, own, other_bias, own_bias, threads, exact=start is None, rows=name,
                        gram=gram, cg_steps=cg_steps, prior=prior)  # fmt: skip
        return own, own_bias

    def _rows_allow_negative(self) -> bool:
        return self.explicit

    def _user_vectors_for_rows(self, m):
        # Fitted with user features, a user unknown to them still has the prior W 0 = 0 at feature_weight.
        prior = self._prior("user", _no_features(m.shape[0], self.user_features_))
        return self._solve_rows(m, self.item_factors, self.item_bias, name="rows", prior=prior)[0]

    # -- side information: the prior W f ----------------------------------------------------------
    def _prior(self, side: str, features):
        """The prior means ``features @ W`` (n, f) float32 on the model's device; None without ``side`` features."""
        W = getattr(self, f"{side}_feature_map", None)
        if W is None or features is None:
            return None
        return self._ops.xp.asarray(np.ascontiguousarray(features @ to_host(W), np.float32))

    def _from_features(self, side: str, m):
        """Factors of new users / items given by feature rows ``m``: the solve of an empty row toward ``W f``,
        as a row without interactions is solved in ``fit``."""
        other = "item" if side == "user" else "user"
        empty = sp.csr_matrix((m.shape[0], getattr(self, f"n_{other}s")), dtype=np.float32)
        return self._solve_rows(empty, getattr(self, f"{other}_factors"), None, name=f"{side}_rows",
                                prior=self._prior(side, m))[0]  # fmt: skip

    def item_factors_for(self, item_rows) -> tuple[np.ndarray, None]:
        """(factors (n, f) float32, None: implicit ALS has no item bias) of items given by feature rows
        (n, n_item_features): items unseen at fit time (as ``HybridMF.item_factors_for``)."""
        self._check_embeddings()
        return self._from_features("item", self._feature_rows(item_rows, "item")), None

    # FeatureColdStart's hooks
    def _check_embeddings(self) -> None:
        self._check_fitted()  # a side fitted without features is refused by _feature_rows, naming it

    def _recommend_feature_users(self, m, k, items, threads):
        return self._rank(self._queries_for(self._from_features("user", m)), None, k, items, threads)

    def _append_items(self, m) -> None:
        self.item_factors = self._ops.xp.vstack([self.item_factors, self._from_features("item", m)])

    def _rows(self, rows):
        m = super()._rows(rows)
        self._check_values(m, "rows")
        return m

    def recalculate_user(self, rows) -> np.ndarray:
        """Factors of users given by interaction rows, without changing the model (fold-in).

        Parameters
        ----------
        rows : scipy.sparse (n, n_items)
            Each row one (new or changed) user's interactions.

        Returns
        -------
        (n, factors) float32: the exact solve of each row against the fitted item factors.
        """
        self._check_fitted()
        return self._user_vectors_for_rows(self._rows(rows))

    def partial_fit_users(self, user_ids, interactions_rows):
        """Re-solve exactly the users ``user_ids`` from their new rows against the fixed items.

        Parameters
        ----------
        user_ids : 1-D int array (n,)
            Users to update; ids >= n_users add users (any gap gets empty rows and zero factors).
        interactions_rows : scipy.sparse (n, n_items)
            Their complete interaction rows; they replace the rows in ``seen_``.
        """
        return self._fold_in_exact("user", user_ids, interactions_rows)

    def partial_fit_items_external(self, items, interactions_rows):
        """``partial_fit_items`` with external item ids: known items are re-solved, new ones added
        (the model's ``item_ids_`` grows with them in the order given)."""
        return self._fold_in_external("item", items, interactions_rows, self.partial_fit_items)

    def partial_fit_items(self, item_ids, interactions_rows):
        """Re-solve exactly the items ``item_ids`` from their new columns against the fixed users.

        Parameters
        ----------
        item_ids : 1-D int array (n,)
            Items to update; ids >= n_items add items.
        interactions_rows : scipy.sparse (n, n_users)
            Each item's complete column of ``seen_``, as a row (item x users).
        """
        return self._fold_in_exact("item", item_ids, interactions_rows)

    def _fold_in_exact(self, side: str, ids, rows):
        other = "item" if side == "user" else "user"

        def update(ids, m, n_new):
            other_factors, other_bias = getattr(self, f"{other}_factors"), getattr(self, f"{other}_bias")
            features = getattr(self, f"{side}_features_")
            if features is not None:  # rows added by the fold-in have no features (an empty row each)
                features = sp.vstack([features, _no_features(n_new - features.shape[0], features)], format="csr")
                setattr(self, f"{side}_features_", features)
                features = features[ids]
            x, b = self._solve_rows(m, other_factors, other_bias, name="interactions_rows",
                                    prior=self._prior(side, features))  # fmt: skip
            ids = self._on_device(ids)
            getattr(self, f"{side}_factors")[ids] = x
            if b is not None:
                getattr(self, f"{side}_bias")[ids] = b

        return self._fold_in(side, ids, rows, update, allow_negative=self.explicit,
                             check=lambda m: self._check_values(m, "interactions_rows"))  # fmt: skip

    # -- explanations and forgetting -------------------------------------------------------------
    def _explain_parts(self, u, i):
        """Exact: ``score = base + sum_j t_j z_i^T A_u^-1 z_j`` from the user's normal equations (float64).

        Implicit: ``A_u = alpha0 YᵀY + sum_j (c_j - alpha0) y_j y_jᵀ + lambda_u I``, ``z = y``,
        ``t_j = c_j = 1 + alpha r_j``, base 0. Explicit (the joint ``[x_u, b_u]`` solve): ``z = [y, 1]``,
        ``A_u = sum_j z_j z_jᵀ + regularization n_u I``, ``t_j = r_j - mu - b_j``, base ``mu + b_i``.
        With user features (implicit): ``A_u`` gains ``feature_weight I`` and the base is the features'
        share ``feature_weight z_i^T A_u^-1 W f_u``.
        """
        history, values = self._history(u)
        Y, gram = self._explain_items()
        if self.explicit:
            item_bias = to_host(self.item_bias).astype(np.float64)
            Z = np.hstack([Y, np.ones((len(Y), 1))])
            z_hist, targets = Z[history], values - self.global_bias - item_bias[history]
            A = z_hist.T @ z_hist + self.regularization * len(history) * np.eye(Z.shape[1])
            base = self.global_bias + float(item_bias[i])
        else:
            Z, z_hist, targets = Y, Y[history], 1.0 + self.alpha * values
            lam = self._row_regularization(len(history), len(Y))
            A = self.alpha0 * gram + (z_hist.T * (targets - self.alpha0)) @ z_hist + lam * np.eye(Y.shape[1])
            base = 0.0
        prior = None
        if self.user_feature_map is not None:  # the row's prior mean W f_u (0 for a user added by a fold-in)
            prior = to_host(self._prior("user", self.user_features_[u])).astype(np.float64)[0]
            A += self.feature_weight * np.eye(A.shape[0])
        elif not len(history):  # no history: zero factors (and bias), the kernel's convention
            return ScoreParts(history, values, np.zeros(0), base, base, "exact")
        try:
            factor = scipy.linalg.cho_factor(A)
        except np.linalg.LinAlgError:
            raise ValueError(f"user {u}'s normal equations are not positive definite; raise regularization") from None
        weights = scipy.linalg.cho_solve(factor, Z[i])  # A_u^-1 z_i (A_u is symmetric)
        if prior is not None:
            base += self.feature_weight * float(weights @ prior)
        contributions = targets * (z_hist @ weights)
        return ScoreParts(history, values, contributions, base, base + float(contributions.sum()), "exact")

    def _explain_items(self) -> tuple[np.ndarray, np.ndarray]:
        """The item factors in float64 and their Gram ``YᵀY``, kept until the model changes (``_invalidate``):
        the Gram costs n_items x factors^2, far more than one user's system."""
        cache = self.__dict__.get("_explain_cache")
        if cache is None:
            Y = to_host(self.item_factors).astype(np.float64)
            cache = self._explain_cache = (Y, Y.T @ Y)
        return cache

    def _forget(self, side, ids):
        """Refused with side features (either side's): ALS forgets exactly (the other side re-solved without the
        rows), but the feature maps were fitted to factors learnt from the rows to forget."""
        if self.user_features_ is not None or self.item_features_ is not None:
            raise TypeError(f"ALS forgets {side}s only when fitted without user_features and item_features: the "
                            "feature maps were learnt from every row; refit without the rows")  # fmt: skip
        return super()._forget(side, ids)

    def _after_forget(self, side, touched):
        """Re-solve the other side exactly against the remaining rows (one exact half-step on it).

        Only the rows the forgotten ones touched change, unless every row's solve involves every
        other row: implicit with ``alpha0 > 0`` (the Gram of all rows) or explicit (``mu``, the mean
        rating, is recomputed without them). Exact means: the other side equals one exact half-step
        without the forgotten rows (with ``alpha0 = 0`` and ``solver="cg"`` the untouched rows keep
        their CG solve, which never saw the forgotten rows either); the remaining rows of this side
        stay as they were, so the model equals a refit without them only at convergence, and then
        only where the refit's optimum is unique: exact ALS iterations afterwards
        (``partial_fit_users`` / ``partial_fit_items`` of every row) reach it (ML-100K, alpha0 = 0:
        50 of them match a converged refit to 3e-7; bench/RESULTS.md, "Forgetting users").
        """
        super()._after_forget(side, touched)
        other = "item" if side == "user" else "user"
        if self.explicit:
            self.global_bias = float(self.seen_.data.mean(dtype=np.float64)) if self.seen_.nnz else 0.0
        rows = self.seen_.T.tocsr() if other == "item" else self.seen_
        solve = np.arange(rows.shape[0]) if self.explicit or self.alpha0 > 0 else touched
        x, b = self._solve_rows(rows[solve], getattr(self, f"{side}_factors"), getattr(self, f"{side}_bias"),
                                name=f"the remaining interactions ({other} rows)")  # fmt: skip
        factors = getattr(self, f"{other}_factors").copy()  # copies: the lock's rollback keeps the old arrays
        factors[self._on_device(solve)] = x
        setattr(self, f"{other}_factors", factors)
        if b is not None:
            bias = getattr(self, f"{other}_bias").copy()
            bias[self._on_device(solve)] = b
            setattr(self, f"{other}_bias", bias)

    def _score_pairs(self, users, items):
        return self._clip_predictions(super()._score_pairs(users, items))

    def _bias_names(self) -> tuple[str, ...]:
        return ("user_bias", "item_bias", "global_bias") if self.explicit else ()

    # -- persistence of the side information ------------------------------------------------------
    def _array_names(self):
        return (*super()._array_names(), "user_feature_map", "item_feature_map")

    def _arrays(self):
        return {**super()._arrays(), **self._feature_arrays()}

    def _restore(self, arrays):
        super()._restore(arrays)
        self._restore_features(arrays, *self.seen_.shape, required=False)
        expected = {}
        for side in ("user", "item"):
            name, features = f"{side}_feature_map", getattr(self, f"{side}_features_")
            if features is None and name in arrays:
                raise ValueError(f"array {name!r} is saved without {side}_features")
            if features is not None:
                expected[name] = (features.shape[1], self.user_factors.shape[1])
        check_state_arrays(arrays, expected)
        for name in ("user_feature_map", "item_feature_map"):
            setattr(self, name, arrays[name].astype(np.float32) if name in expected else None)


class _RidgeMap:
    """The ridge regression ``W = argmin |F W - X|^2 + ridge |W|^2`` of factors ``X`` on features ``F``,
    refitted every half-step: ``FᵀF + ridge I`` is factored once. LAPACK runs single-threaded: the same
    bits whatever the thread count (the fit does not depend on it), and no idle BLAS threads spinning
    (a 1,500-feature factorisation took 0.8 s multithreaded on a loaded 2-core machine, 0.05 s so)."""

    def __init__(self, features: sp.csr_matrix, ridge: float, name: str, factors: int):
        n = features.shape[1]
        check_memory(8.0 * n * (n + factors), f"{name} with {n} columns (the dense {n} x {n} ridge system)")
        self.features = features
        system = (features.T @ features).toarray().astype(np.float64) + ridge * np.eye(n)
        try:
            with single_threaded_blas():
                self._factor = scipy.linalg.cho_factor(system)
        except np.linalg.LinAlgError:
            raise ValueError(f"{name}: the ridge system of the feature map is singular (features with no rows, or "
                             "repeated columns); raise regularization") from None  # fmt: skip

    def fit(self, factors) -> np.ndarray:
        """W (n_features, f) float32 for the current ``factors`` (on any device; W on the host)."""
        rhs = np.asarray(self.features.T @ to_host(factors).astype(np.float64))
        with single_threaded_blas():
            return scipy.linalg.cho_solve(self._factor, rhs).astype(np.float32)


def _no_features(n: int, like: sp.csr_matrix | None) -> sp.csr_matrix | None:
    """``n`` empty feature rows as wide as ``like`` (None when the model has no such features)."""
    return None if like is None else sp.csr_matrix((n, like.shape[1]), dtype=np.float32)


# Raw counts whose 99th percentile is this many times their median: a few huge counts would dominate
# the confidences (Last.fm-2K: median 260 plays, 99th percentile 7228, max 352698).
_HEAVY_TAIL_RATIO = 10.0


def _warn_raw_counts(weights: np.ndarray) -> None:
    """Warn when implicit ALS gets raw integer counts with a heavy tail (log / BM25 weighting helps)."""
    if weights.size == 0:
        return
    sample = weights[:: max(1, weights.size // 100_000)]  # the percentiles of a strided sample suffice
    if not np.array_equal(sample, np.floor(sample)):
        return  # not raw counts (weighted already)
    median, p99 = np.percentile(sample, [50, 99])
    if median >= 1 and p99 > _HEAVY_TAIL_RATIO * median:
        warnings.warn(
            f"ALS got raw counts with a heavy tail (median {median:g}, 99th percentile {p99:g}): the largest "
            "counts dominate the confidence 1 + alpha * r. Weighting them usually ranks much better: "
            "rf.transforms.log_scale(counts) or rf.transforms.bm25_weight(counts) (CLI: --weighting log|bm25)",
            UserWarning,
            stacklevel=3,
        )
