"""Alternating least squares: implicit feedback (iALS) and explicit ratings with biases.

Implicit feedback (Hu, Koren & Volinsky 2008; ``alpha0`` and ``nu`` from Rendle et al. 2022,
"Revisiting the Performance of iALS on Item Recommendation Benchmarks"). Each stored value
``r_ui >= 0`` of the interaction matrix is a positive (preference 1) with confidence
``c_ui = 1 + alpha * r_ui``; every user-item pair also contributes ``alpha0 * (x_u . y_i)^2``. The
objective is ::

    sum_{(u,i) stored} c_ui (1 - x_u.y_i)^2 + alpha0 * sum_{(u,i) not stored} (x_u.y_i)^2
      + sum_u lambda_u |x_u|^2 + sum_i lambda_i |y_i|^2,
    lambda_u = regularization * (n_u + alpha0 * n_items) ** nu   (nu = 0: constant, the classic iALS)

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

import logging
import time

import numpy as np
import scipy.sparse as sp

from .._backend import resolve_device, resolve_threads
from .._validation import as_csr, check_nonnegative, check_positive
from .base import FactorModel, check_fold_in_ids, grow_rows, replace_rows

__all__ = ["ALS"]

logger = logging.getLogger(__name__)

_SOLVERS = ("cg", "cholesky")
_FEEDBACK = ("implicit", "explicit")


class ALS(FactorModel):
    """Matrix factorisation by alternating least squares (implicit iALS or explicit with biases).

    Parameters
    ----------
    factors : int >= 1
        Latent dimension f.
    regularization : float >= 0
        lambda. Implicit: the weight of the L2 penalty (scaled by ``(n_u + alpha0 * n_items) ** nu``).
        Explicit: multiplied by each row's number of ratings (ALS-WR).
    iterations : int >= 1
        Full iterations (a user half-step then an item half-step).
    alpha : float >= 0
        Implicit confidence scale: ``c = 1 + alpha * r``.
    solver : {"cg", "cholesky"}
        Implicit only: conjugate gradient (fast, approximate) or the exact Cholesky solve.
        Explicit ALS always solves exactly.
    cg_steps : int >= 1
        Conjugate gradient steps per row and half-step.
    alpha0 : float >= 0
        Implicit: weight of the unobserved pairs (1 = classic iALS).
    nu : float >= 0
        Implicit: frequency scaling exponent of the regularisation (0 = classic constant).
    feedback : {"implicit", "explicit"}
    device : {"auto", "cpu", "cuda"}
        ALS runs on the CPU; "cuda" raises a clear error.
    threads : int >= 0
        Threads of the C++ kernels (0 = all cores). The result does not depend on it.
    seed : int
        Seed of the random initial factors (numpy ``default_rng``).
    calculate_loss : bool
        Compute the training objective after every iteration and pass it to ``fit``'s callback
        (costs about one CG step per iteration).

    Attributes
    ----------
    user_factors : (n_users, factors) float32
    item_factors : (n_items, factors) float32
    user_bias, item_bias : (n_users,), (n_items,) float32, explicit only (None for implicit)
    global_bias : float, explicit only (the mean training rating)
    """

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 0.05,
        iterations: int = 15,
        alpha: float = 1.0,
        solver: str = "cg",
        cg_steps: int = 3,
        alpha0: float = 1.0,
        nu: float = 0.0,
        feedback: str = "implicit",
        device: str = "auto",
        threads: int = 0,
        seed: int = 42,
        calculate_loss: bool = False,
    ):
        self.factors = check_positive(factors, "factors", integer=True)
        self.regularization = check_nonnegative(regularization, "regularization")
        self.iterations = check_positive(iterations, "iterations", integer=True)
        self.alpha = check_nonnegative(alpha, "alpha")
        if solver not in _SOLVERS:
            raise ValueError(f"solver must be one of {_SOLVERS}, got {solver!r}")
        self.solver = solver
        self.cg_steps = check_positive(cg_steps, "cg_steps", integer=True)
        self.alpha0 = check_nonnegative(alpha0, "alpha0")
        self.nu = check_nonnegative(nu, "nu")
        if feedback not in _FEEDBACK:
            raise ValueError(f"feedback must be one of {_FEEDBACK}, got {feedback!r}")
        self.feedback = feedback
        if device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
        self.device = device
        resolve_threads(threads)  # validates
        self.threads = int(threads)
        self.seed = check_nonnegative(seed, "seed", integer=True)
        self.calculate_loss = bool(calculate_loss)

    @property
    def explicit(self) -> bool:
        return self.feedback == "explicit"

    # -- fitting ----------------------------------------------------------------------------
    def fit(self, interactions, callback=None, progress: bool = True):
        """Fit on ``interactions`` (users x items).

        Parameters
        ----------
        interactions : scipy.sparse matrix or recforge.Interactions, (n_users, n_items)
            Implicit: values r >= 0 (confidence 1 + alpha r). Explicit: the ratings.
        callback : callable(iteration, seconds, loss), optional
            Called after each iteration (0-based) with its wall time and the training objective
            (None unless ``calculate_loss=True``).
        progress : bool
            Show a tqdm progress bar over the iterations.
        """
        if resolve_device(self.device, interactions) == "cuda":
            raise NotImplementedError("ALS has no CUDA kernels yet: use device='cpu' (or 'auto')")
        train = as_csr(interactions, allow_negative=self.explicit)
        threads = resolve_threads(self.threads)
        n_users, n_items = train.shape
        rng = np.random.default_rng(self.seed)
        # Small random factors: the first half-step solves users from the item factors alone, so
        # only their scale matters (0.1/sqrt(f) keeps the initial scores ~0.01, Rendle et al.).
        scale = np.float32(0.1 / np.sqrt(self.factors))
        self.user_factors = (rng.standard_normal((n_users, self.factors), np.float32) * scale)
        self.item_factors = (rng.standard_normal((n_items, self.factors), np.float32) * scale)
        if self.explicit:
            self.global_bias = float(train.data.mean(dtype=np.float64))
            self.user_bias = np.zeros(n_users, np.float32)
            self.item_bias = np.zeros(n_items, np.float32)
        else:
            self.global_bias, self.user_bias, self.item_bias = 0.0, None, None
        self._train = train  # set now so that a callback can evaluate the model between iterations
        user_items = self._ops.csr(train)
        item_users = self._ops.csr(train.T.tocsr())

        from tqdm.auto import tqdm

        bar = tqdm(range(self.iterations), desc="ALS", unit="it", disable=not progress)
        try:
            self._iterate(user_items, item_users, threads, bar, callback)
        except BaseException:
            self._train = None  # a half-fitted model must not look fitted
            raise
        return self

    def _iterate(self, user_items, item_users, threads, bar, callback) -> None:
        for it in bar:
            start = time.perf_counter()
            self._half_step(user_items, self.item_factors, self.user_factors, self.item_bias, self.user_bias,
                            threads, exact=False)
            self._half_step(item_users, self.user_factors, self.item_factors, self.user_bias, self.item_bias,
                            threads, exact=False)
            seconds = time.perf_counter() - start
            loss = self._loss(user_items, item_users, threads) if self.calculate_loss else None
            if loss is not None:
                bar.set_postfix(loss=f"{loss:.5g}")
            logger.debug("ALS iteration %d: %.3fs, loss %s", it, seconds, loss)
            if callback is not None:
                callback(it, seconds, loss)

    def _half_step(self, m, other, own, other_bias, own_bias, threads: int, exact: bool) -> None:
        """Solve ``own`` (and ``own_bias``) in place for every row of ``m`` against ``other``."""
        ops = self._ops
        if self.explicit:
            ops.als_explicit_half_step(m, other, other_bias, own, own_bias, regularization=self.regularization,
                                       global_mean=self.global_bias, threads=threads)
        else:
            ops.als_implicit_half_step(m, other, ops.gram(other, threads), own, alpha=self.alpha,
                                       regularization=self.regularization, alpha0=self.alpha0, nu=self.nu,
                                       solver="cholesky" if exact else self.solver, cg_steps=self.cg_steps,
                                       threads=threads)

    def _loss(self, user_items, item_users, threads: int) -> float:
        """Training objective (see the module docstring), normalised by the number of stored values."""
        X, Y = self.user_factors, self.item_factors
        if self.explicit:
            sse = self._ops.als_explicit_sse(user_items, X, self.user_bias, Y, self.item_bias,
                                             global_mean=self.global_bias, threads=threads)
            nu = np.diff(user_items.indptr).astype(np.float64)
            ni = np.diff(item_users.indptr).astype(np.float64)
            reg = self.regularization * (
                nu @ (np.einsum("ij,ij->i", X, X, dtype=np.float64) + self.user_bias.astype(np.float64) ** 2)
                + ni @ (np.einsum("ij,ij->i", Y, Y, dtype=np.float64) + self.item_bias.astype(np.float64) ** 2)
            )
            return float((sse + reg) / user_items.nnz)
        users = self._ops.als_implicit_loss(user_items, X, Y, alpha=self.alpha, regularization=self.regularization,
                                            alpha0=self.alpha0, nu=self.nu, threads=threads)
        # The items' regularisation: the same call on the transposed matrix minus its data terms is
        # wasteful, so compute lambda_i |y_i|^2 here.
        ni = np.diff(item_users.indptr).astype(np.float64)
        lam = self.regularization * (ni + self.alpha0 * X.shape[0]) ** self.nu
        items = float(lam @ np.einsum("ij,ij->i", Y, Y, dtype=np.float64))
        return (users + items) / user_items.nnz

    # -- folding in -------------------------------------------------------------------------
    def _rows_csr(self, rows, n_cols: int, n: int | None, name: str) -> sp.csr_matrix:
        m = as_csr(rows, name, allow_empty=True, allow_negative=self.explicit)
        if m.shape[1] != n_cols:
            raise ValueError(f"{name} must have {n_cols} columns, got shape {m.shape}")
        if n is not None and m.shape[0] != n:
            raise ValueError(f"{name} must have one row per id ({n}), got {m.shape[0]} rows")
        return m

    def _solve_rows(self, m: sp.csr_matrix, other, other_bias) -> tuple[np.ndarray, np.ndarray | None]:
        """Exact factors (and biases) of the rows of ``m`` against the fixed ``other`` side."""
        own = np.zeros((m.shape[0], self.factors), np.float32)
        own_bias = np.zeros(m.shape[0], np.float32) if self.explicit else None
        threads = resolve_threads(self.threads)
        self._half_step(self._ops.csr(m), other, own, other_bias, own_bias, threads, exact=True)
        return own, own_bias

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
        m = self._rows_csr(rows, self.n_items, None, "rows")
        return self._solve_rows(m, self.item_factors, self.item_bias)[0]

    def recommend_for_rows(self, rows, k: int = 10, exclude_seen: bool = True, items=None, threads: int = 0):
        """``recommend`` for users given by interaction rows (folded in, the model unchanged).

        Parameters
        ----------
        rows : scipy.sparse (n, n_items)
        k, items, threads : as in ``recommend``
        exclude_seen : bool
            Leave out the items stored in each row.

        Returns
        -------
        ids (n, k) int64 and scores (n, k) float32, as ``recommend``.
        """
        self._check_fitted()
        m = self._rows_csr(rows, self.n_items, None, "rows")
        q, it = self._ranking_vectors_for(self._solve_rows(m, self.item_factors, self.item_bias)[0])
        return self._rank(q, it, m if exclude_seen else None, k, items, threads)

    def partial_fit_users(self, user_ids, interactions_rows):
        """Re-solve exactly the users ``user_ids`` from their new rows against the fixed items.

        Parameters
        ----------
        user_ids : 1-D int array (n,)
            Users to update; ids >= n_users add users (any gap gets empty rows and zero factors).
        interactions_rows : scipy.sparse (n, n_items)
            Their complete interaction rows; they replace the rows in the training matrix.
        """
        return self._fold_in("user", user_ids, interactions_rows)

    def partial_fit_items(self, item_ids, interactions_rows):
        """Re-solve exactly the items ``item_ids`` from their new columns against the fixed users.

        Parameters
        ----------
        item_ids : 1-D int array (n,)
            Items to update; ids >= n_items add items.
        interactions_rows : scipy.sparse (n, n_users)
            Each item's complete column of the training matrix, as a row (item x users).
        """
        return self._fold_in("item", item_ids, interactions_rows)

    def _fold_in(self, side: str, ids, rows):
        """Re-solve the ``side`` ("user" | "item") rows ``ids`` from ``rows`` against the other side."""
        self._check_fitted()
        other = "item" if side == "user" else "user"
        ids = check_fold_in_ids(ids, f"{side}_ids")
        n_own, n_other = (self.n_users, self.n_items) if side == "user" else (self.n_items, self.n_users)
        m = self._rows_csr(rows, n_other, len(ids), "interactions_rows")
        x, b = self._solve_rows(m, getattr(self, f"{other}_factors"), getattr(self, f"{other}_bias"))
        n_new = max(n_own, int(ids.max()) + 1 if len(ids) else 0)
        factors = grow_rows(getattr(self, f"{side}_factors"), n_new)
        factors[ids] = x
        setattr(self, f"{side}_factors", factors)
        if self.explicit:
            bias = grow_rows(getattr(self, f"{side}_bias"), n_new)
            bias[ids] = b
            setattr(self, f"{side}_bias", bias)
        # The training matrix is users x items: an item's row is a column of it.
        if side == "user":
            self._train = replace_rows(self._train, ids, m, n_new)
        else:
            self._train = replace_rows(self._train.T.tocsr(), ids, m, n_new).T.tocsr()
        return self

    # -- persistence ------------------------------------------------------------------------
    def _params(self) -> dict:
        return {
            "factors": self.factors, "regularization": self.regularization, "iterations": self.iterations,
            "alpha": self.alpha, "solver": self.solver, "cg_steps": self.cg_steps, "alpha0": self.alpha0,
            "nu": self.nu, "feedback": self.feedback, "device": self.device, "threads": self.threads,
            "seed": self.seed, "calculate_loss": self.calculate_loss,
        }

    def _bias_names(self) -> tuple[str, ...]:
        return ("user_bias", "item_bias", "global_bias") if self.explicit else ()

