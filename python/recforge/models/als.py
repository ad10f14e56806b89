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
item bias (explicit) or not at all (implicit: every score is 0).
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg

from .._backend import resolve_threads
from .._ops import als_row_regularization, to_host
from .._validation import check_memory
from ._explain import ScoreParts
from ._params import EPOCHS, Param
from ._ratings import RatingPredictions
from ._training import run_epochs
from .base import COMMON_PARAMS, FactorModel

__all__ = ["ALS"]

# The exact solve (explicit ALS, solver="cholesky") costs factors^3 / 3 flops per row and a
# factors^2 system per thread: 2048 is ~3e9 flops (about a second) per row, so a fit stays
# interruptible between rows; larger factors go through CG.
_MAX_EXACT_FACTORS = 2048
# Largest |rating| (explicit) or alpha * weight (implicit) accepted: sums of confidence x factor
# products must stay far below float32's 3.4e38.
_MAX_VALUE = 1e30


class ALS(RatingPredictions, FactorModel):
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

    Attributes
    ----------
    user_factors : (n_users, factors) float32
    item_factors : (n_items, factors) float32
    user_bias, item_bias : (n_users,), (n_items,) float32, explicit only (None for implicit)
    global_bias : float, explicit only (the mean training rating)
    seen_ : scipy.sparse.csr_matrix (n_users, n_items), the training matrix
    history_ : list of dict (epoch, seconds, loss) per iteration
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
    }
    _aliases = {"iterations": "epochs"}

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
    def fit(self, interactions, callback=None, progress: bool | None = None):
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
        """
        train = self._start_fit(interactions, allow_negative=self.explicit)
        self._check_values(train, "interactions")
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

        def run_epoch(epoch):
            self._half_step(user_items, self.item_factors, self.user_factors, self.item_bias, self.user_bias, threads,
                            rows="interactions (user rows)")  # fmt: skip
            self._half_step(item_users, self.user_factors, self.item_factors, self.user_bias, self.item_bias, threads,
                            rows="interactions (item columns)")  # fmt: skip
            if not (self._ops.xp.isfinite(self.user_factors).all() and self._ops.xp.isfinite(self.item_factors).all()):
                raise ValueError(f"ALS diverged in epoch {epoch}: the factors overflowed float32; scale the "
                                 "interactions (or alpha) down, or raise regularization")  # fmt: skip
            return (self._loss(user_items, item_users, threads) if self.calculate_loss else None), {}, False

        self._finish_fit(train)  # fitted from here on, so that a callback can evaluate the model
        try:
            run_epochs(self, self.epochs, run_epoch, callback=callback, progress=progress, desc="ALS")
        except BaseException:
            self.seen_ = None  # a half-fitted model must not look fitted
            raise
        return self

    def _half_step(self, m, other, own, other_bias, own_bias, threads: int, exact: bool = False, *,
                   rows: str = "interactions", gram=None, cg_steps: int | None = None) -> None:  # fmt: skip
        """Solve ``own`` (and ``own_bias``) in place for every row of ``m`` against ``other``; ``rows`` names
        the argument ``m`` comes from, for the message of a row whose system is singular; ``gram``: the
        implicit solve's ``otherᵀother`` when the caller keeps it (computed here by default); ``cg_steps``:
        the model's by default."""
        try:
            self._solve_half_step(m, other, own, other_bias, own_bias, threads, exact, gram, cg_steps)
        except ValueError as exc:  # a singular row: regularization <= 0, or values spanning too many decades
            if "not positive definite" not in str(exc):
                raise
            raise ValueError(
                f"{rows}: {exc}; scale the values down (e.g. rf.transforms.log_scale"
                + ("" if self.explicit else ", or a smaller alpha")
                + ") or raise regularization"
            ) from None

    def _solve_half_step(self, m, other, own, other_bias, own_bias, threads: int, exact: bool, gram=None,
                         cg_steps: int | None = None) -> None:  # fmt: skip
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
                                       threads=threads)  # fmt: skip

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
        return (users + items) / user_items.nnz

    def _row_regularization(self, counts, n_cols):
        """Implicit ``lambda`` of rows with ``counts`` stored entries against ``n_cols`` columns (float64)."""
        return als_row_regularization(counts, n_cols, regularization=self.regularization, alpha0=self.alpha0,
                                      nu=self.nu, scaling=self.regularization_scaling)  # fmt: skip

    # -- folding in -------------------------------------------------------------------------
    def _solve_rows(self, m, other, other_bias, threads: int | None = None, *, name: str = "rows", gram=None,
                    start=None, cg_steps: int | None = None):  # fmt: skip
        """Exact factors (and biases) of the rows of ``m`` (the argument ``name``, for the message of a singular
        row) against the fixed ``other`` side (``threads``: the model's by default; the streaming updater
        solves its small batches on one). ``gram``: ``otherᵀother`` (float32) when the caller keeps it.
        ``start``: the rows' current factors (and biases; float32 arrays are refined in place and returned):
        refined by the model's own solver (warm-started CG steps, ``cg_steps`` or the model's, as one epoch
        of the fit would), not solved exactly."""
        xp = self._ops.xp
        if start is None:
            own = xp.zeros((m.shape[0], self.factors), np.float32)
            own_bias = xp.zeros(m.shape[0], np.float32) if self.explicit else None
        else:
            own, own_bias = (xp.ascontiguousarray(a, dtype=np.float32) if a is not None else None for a in start)
        threads = resolve_threads(self.threads if threads is None else threads)
        self._half_step(self._ops.csr(m), other, own, other_bias, own_bias, threads, exact=start is None, rows=name,
                        gram=gram, cg_steps=cg_steps)  # fmt: skip
        return own, own_bias

    def _rows_allow_negative(self) -> bool:
        return self.explicit

    def _user_vectors_for_rows(self, m):
        return self._solve_rows(m, self.item_factors, self.item_bias, name="rows")[0]

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
            x, b = self._solve_rows(m, other_factors, other_bias, name="interactions_rows")
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
        if not len(history):  # no history: zero factors (and bias), the kernel's convention
            return ScoreParts(history, values, np.zeros(0), base, base, "exact")
        try:
            factor = scipy.linalg.cho_factor(A)
        except np.linalg.LinAlgError:
            raise ValueError(f"user {u}'s normal equations are not positive definite; raise regularization") from None
        weights = scipy.linalg.cho_solve(factor, Z[i])  # A_u^-1 z_i (A_u is symmetric)
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
