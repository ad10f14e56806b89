"""Factorisation by stochastic gradient descent: ``SGDMF`` (explicit ratings), ``BPR`` (implicit).

Both run their epochs in the C++ core (``csrc/cpu/sgd_*.cpp``) with the GIL released, updating
the shared factors from several threads without locks (Hogwild). Determinism: with ``threads=1``
a fit is a pure function of the data and ``seed`` (bitwise repeatable on the same build and CPU);
with more threads the order in which racing updates land varies, so results differ slightly from
run to run (not in quality). An epoch uses at most one thread per 65,536 samples: below that,
threads cost more than they save (fork/join, and on a small catalogue the threads keep stealing
the same cache lines from each other), so small data sets run on one thread whatever ``threads``
says (and are then repeatable too).
"""

from __future__ import annotations

import numpy as np

from .._backend import resolve_threads
from .._validation import as_csr, check_positive, check_scores
from ._params import EPOCHS, NEGATIVES, Param, check_epochs
from ._ratings import RatingPredictions
from ._training import TrainingDiverged, run_epochs
from .base import COMMON_PARAMS, FactorModel

__all__ = ["SGDMF", "BPR"]


def _init_factors(rng: np.random.Generator, rows: int, factors: int, std: float) -> np.ndarray:
    return (rng.standard_normal((rows, factors), dtype=np.float32) * np.float32(std)).astype(np.float32)


class _SGDModel(FactorModel):
    """What SGDMF and BPR share: users folded in by SGD epochs over their rows with the items frozen."""

    def _learn_users(self, m, epochs: int | None = None, progress: bool | None = False):
        """(factors, biases or None) of the users given by the rows of ``m`` (canonical CSR), the model unchanged.

        The factors start from the initial distribution (seeded by ``seed``, the user count and the
        number of rows), the biases from 0; then ``epochs`` (default: the model's) SGD passes over
        the rows with the item side frozen.
        """
        epochs = self.epochs if epochs is None else check_epochs(epochs)
        n = m.shape[0]
        rng = np.random.default_rng([self.seed, self.n_users, n])
        factors = _init_factors(rng, n, self.factors, self.init_std)
        biases = None if self.user_bias is None else np.zeros(n, np.float32)
        self._reset_rows(factors, m)
        data = self._fold_in_data(m)
        if data is not None:
            threads = resolve_threads(self.threads)

            def run_epoch(epoch):
                stats = self._epoch(data, epoch, threads, users=(factors, biases))
                return (stats["loss"] if isinstance(stats, dict) else stats), {}, False

            run_epochs(
                self,
                epochs,
                run_epoch,
                progress=progress,
                desc=f"{type(self).__name__} fold-in",
                record=False,
            )
        # A fold-in can diverge like a fit (huge ratings, lr): an error (partial_fit_users' caller
        # restores the model, the lock's rollback), rather than NaN factors.
        for name, a in (("user_factors", factors), ("user_bias", biases)):
            if a is not None and not np.isfinite(a).all():
                top = float(np.abs(m.data).max()) if m.nnz else 0.0
                lr = self.steps()[0] if hasattr(self, "steps") else self.lr  # BPR: lr None means the loss's default
                raise TrainingDiverged(
                    f"{type(self).__name__} fold-in diverged ({name} became NaN or inf); lower lr (now "
                    f"{lr:g}) or scale interactions_rows down (largest |value| {top:.3g})"
                )
        return factors, biases

    def _user_vectors_for_rows(self, m):
        return self._learn_users(m)[0]

    def _fold_in_users(self, user_ids, rows, epochs, progress, check=None):
        """``partial_fit_users``: learn the rows' users (``_learn_users``) and write them at ``user_ids``."""

        def update(ids, m, n_users):
            factors, biases = self._learn_users(m, epochs, progress)
            self.user_factors[ids] = factors
            if biases is not None:
                self.user_bias[ids] = biases

        return self._fold_in("user", user_ids, rows, update, check=check)

    def _fold_in_data(self, m):
        """The kernel's form of the fold-in rows ``m``; None when they hold nothing to learn from."""
        raise NotImplementedError

    def _reset_rows(self, factors, m) -> None:
        """Hook: adjust the starting factors of the fold-in rows (SGDMF: users without ratings get 0)."""


class SGDMF(RatingPredictions, _SGDModel):
    """Biased matrix factorisation for explicit ratings, trained by SGD (Funk / Koren's "SVD").

    Predicts ``r(u, i) = mu + b_u + b_i + p_u . q_i`` and minimises the squared error plus
    ``regularization * (|p_u|^2 + |q_i|^2) + bias_regularization * (b_u^2 + b_i^2)`` by SGD over
    the training ratings, shuffled every epoch from ``seed``; threads update the factors without
    locks (Hogwild).

    Parameters
    ----------
    factors : int >= 1
    lr : float > 0
        Learning rate of the first epoch.
    regularization : float >= 0
        L2 regularisation of the factors. Was ``reg`` (deprecated).
    epochs : int >= 1
        Maximum number of passes (fewer with early stopping, see ``fit``).
    biases : bool
        Learn ``mu``, ``b_u`` and ``b_i``. Without them the model is plain ``p_u . q_i``.
    bias_regularization : float >= 0, optional
        L2 regularisation of the biases (default: ``regularization``). Was ``bias_reg`` (deprecated).
    lr_schedule : {"constant", "inverse", "exponential"}
        Learning rate of epoch ``t``: ``lr``, ``lr / (1 + decay * t)`` or ``lr * (1 - decay) ** t``.
    decay : float in [0, 1)
        The schedule's rate (ignored by "constant").
    init_std : float >= 0
        Factors start as N(0, init_std^2); biases start at 0.
    rating_scale : (low, high), optional
        Declared range of the ratings: ``fit`` rejects ratings outside it.
    clip : bool or (low, high)
        Clip predictions (``score``) into a range: True (default) the rating scale (``rating_scale``
        when declared, else the training ratings' ``[min, max]``, learned by ``fit`` as
        ``rating_range_`` and saved with the model); (low, high) that range; False or None: none.
    device : {"auto", "cpu", "cuda"}
    threads : int
        0 = all cores. With 1 a fit is bitwise repeatable for a seed.
    seed : int

    Notes
    -----
    The defaults (32 factors, lr 0.04 decaying 5 % per epoch, regularization 0.12, 20 epochs,
    clipped to the rating scale) are the setting that validation splits carved from the training
    part of each MovieLens-100K fold chose most often (bench/bench_sgd.py; never the test folds).
    Surprise's defaults (100 factors, lr 0.005, regularization 0.02), which these replaced, tie
    Surprise's ``SVD``; these beat it by about 0.02 RMSE (bench/RESULTS.md, "Defaults").

    Users and items without any training rating keep zero factors and zero bias, so their
    predictions fall back to ``mu`` plus the other side's bias. Ids outside the training matrix
    are an error in ``score`` unless ``unknown="bias"`` is passed (same fallback).
    """

    _param_spec = {
        **COMMON_PARAMS,
        "factors": Param("int", low=1),
        "lr": Param("float", low=0, low_open=True),
        "regularization": Param("float", low=0),
        "epochs": EPOCHS,
        "biases": Param("bool"),
        "bias_regularization": Param("float", low=0, optional=True),
        "lr_schedule": Param("choice", choices=("constant", "inverse", "exponential")),
        "decay": Param("float", low=0, high=1, high_open=True),
        "init_std": Param("float", low=0),
        "rating_scale": Param("range", optional=True),
        "clip": Param("clip", optional=True),
    }
    _aliases = {"reg": "regularization", "bias_reg": "bias_regularization"}

    def __init__(
        self,
        factors: int = 32,
        lr: float = 0.04,
        regularization: float = 0.12,
        epochs: int = 20,
        biases: bool = True,
        bias_regularization: float | None = None,
        lr_schedule: str = "exponential",
        decay: float = 0.05,
        init_std: float = 0.1,
        rating_scale=None,
        clip=True,
        device: str = "auto",
        threads: int = 0,
        seed: int = 42,
        **deprecated,
    ):
        self._store_params(locals())

    def learning_rate(self, epoch: int) -> float:
        """Learning rate used in epoch ``epoch`` (0-based) under the schedule."""
        if self.lr_schedule == "inverse":
            return self.lr / (1.0 + self.decay * epoch)
        if self.lr_schedule == "exponential":
            return self.lr * (1.0 - self.decay) ** epoch
        return self.lr

    def _epoch(self, data, epoch: int, threads: int, users=None) -> float:
        """One SGD pass over ``data`` (``ops.sgd_ratings``); returns its training MSE.

        ``users``: (factors, biases) of the rows of ``data`` to learn with the items frozen (fold-in).
        """
        bias_reg = self.regularization if self.bias_regularization is None else self.bias_regularization
        user_factors, user_bias = (self.user_factors, self.user_bias) if users is None else users
        return self._ops.sgd_mf_epoch(
            data, user_factors, self.item_factors, user_bias, self.item_bias,
            global_mean=self.global_bias, lr=self.learning_rate(epoch), regularization=self.regularization,
            bias_regularization=bias_reg, threads=threads, seed=self.seed, epoch=epoch, freeze_items=users is not None,
        )  # fmt: skip

    def fit(self, interactions, validation=None, patience: int | None = None, callback=None,
            progress: bool | None = None):  # fmt: skip
        """Fit on explicit ratings.

        Parameters
        ----------
        interactions : scipy.sparse matrix (n_users, n_items) or recforge.Interactions
            Stored values are the ratings (a stored 0 is a rating of 0).
        validation : same kind and shape, optional
            Held-out ratings: their RMSE is computed after each epoch (``history_[e]["val_rmse"]``).
        patience : int >= 1, optional
            With ``validation``: stop when the validation RMSE has not improved for ``patience``
            epochs and keep the factors of the best epoch.
        callback : callable(epoch, seconds_this_epoch, loss), optional
            Called after each epoch with the training MSE of that epoch (pre-update errors).
        progress : bool, optional
            Show a tqdm progress bar (None: ``recforge.get_config()["progress"]``).
        """
        train = self._start_fit(interactions)
        self._check_scale(train.data, "interactions")
        self._learn_rating_range(train.data)
        val = None
        if validation is not None:
            vcsr = as_csr(validation, "validation")
            if vcsr.shape != train.shape:
                raise ValueError(f"validation must have the training shape {train.shape}, got {vcsr.shape}")
            self._check_scale(vcsr.data, "validation")
            val = vcsr.tocoo()
        if patience is not None:
            if val is None:
                raise ValueError("patience needs a validation set (fit(..., validation=...))")
            patience = check_positive(patience, "patience", integer=True)
        threads = resolve_threads(self.threads)

        n_users, n_items = train.shape
        data = self._ops.sgd_ratings(train)
        rng = np.random.default_rng(self.seed)
        self.user_factors = _init_factors(rng, n_users, self.factors, self.init_std)
        self.item_factors = _init_factors(rng, n_items, self.factors, self.init_std)
        if self.biases:
            self.global_bias = float(np.mean(train.data, dtype=np.float64))
            self.user_bias = np.zeros(n_users, np.float32)
            self.item_bias = np.zeros(n_items, np.float32)
        else:
            self.global_bias, self.user_bias, self.item_bias = 0.0, None, None
        # Cold rows never get a gradient: zero them so that they predict from the biases alone.
        self.user_factors[np.diff(train.indptr) == 0] = 0.0
        self.item_factors[np.bincount(train.indices, minlength=n_items) == 0] = 0.0
        self.seen_ = None  # fitted only once the epochs succeed (a divergence leaves it unfitted)

        best = {"rmse": np.inf, "epoch": -1, "state": None}

        def run_epoch(epoch):
            mse = self._epoch(data, epoch, threads)
            if not np.isfinite(mse):
                raise TrainingDiverged(
                    f"SGDMF diverged in epoch {epoch} (training loss {mse}); lower lr (now {self.lr:g}), "
                    f"regularization (now {self.regularization:g}), bias_regularization (now "
                    f"{self.bias_regularization}) or factors (now {self.factors}), or scale interactions down (largest "
                    f"|rating| {float(np.abs(train.data).max()):.3g})"
                )
            if val is None:
                return mse, {}, False
            rmse = self._rmse(val)
            if rmse < best["rmse"]:
                best.update(rmse=rmse, epoch=epoch, state=self._copy_state() if patience else None)
            stop = patience is not None and epoch - best["epoch"] >= patience
            return mse, {"val_rmse": rmse}, stop

        run_epochs(self, self.epochs, run_epoch, callback=callback, progress=progress, desc="SGDMF")
        if patience is not None and best["state"] is not None:
            self._set_state(best["state"])
        self.best_epoch_ = best["epoch"] if val is not None else len(self.history_) - 1
        return self._finish_fit(train)

    def partial_fit_users(self, user_ids, interactions_rows, epochs: int | None = None, progress: bool = False):
        """Fold in new or changed users without a full refit.

        Their factors restart from the initial distribution and their biases from 0, then SGD
        runs over their ratings only, with the item factors and biases (and the global mean)
        held fixed. Other users do not change.

        Parameters
        ----------
        user_ids : 1-D int array (n,)
            Users to (re)learn; ids >= n_users add users (any gap gets empty rows, zero factors).
        interactions_rows : scipy.sparse (n, n_items)
            Their complete rating rows; they replace the rows in ``seen_``.
        epochs : int, optional
            Passes over their ratings (default: the model's ``epochs``), with the model's
            learning-rate schedule.
        """
        return self._fold_in_users(user_ids, interactions_rows, epochs, progress,
                                   check=lambda m: self._check_scale(m.data, "interactions_rows"))  # fmt: skip

    def _fold_in_data(self, m):
        self._check_scale(m.data, "rows")
        return self._ops.sgd_ratings(m) if m.nnz else None

    def _reset_rows(self, factors, m):
        factors[m.getnnz(axis=1) == 0] = 0.0  # no ratings: biases alone

    # -- prediction -----------------------------------------------------------------------------
    def score(self, users, items, unknown: str = "error") -> np.ndarray:
        """Predicted ratings for (user, item) pairs.

        Parameters
        ----------
        users, items : 1-D int arrays of the same length (internal indices)
        unknown : {"error", "bias"}
            What to do with an id outside the training matrix (e.g. -1 from
            ``IdMap.to_index(..., missing=-1)``): raise ValueError, or predict from the global
            mean plus the known side's bias.

        Returns
        -------
        (n,) float32, clipped as ``clip`` says (default: into the rating scale).
        """
        if unknown not in ("error", "bias"):
            raise ValueError(f"unknown must be 'error' or 'bias', got {unknown!r}")
        if unknown == "error":
            return super().score(users, items)
        self._check_fitted()
        u, i = (np.asarray(x).reshape(-1) for x in (users, items))
        for name, arr in (("users", u), ("items", i)):
            if arr.size and not np.issubdtype(arr.dtype, np.integer):
                raise TypeError(f"{name} must be integer indices, got dtype {arr.dtype}")
        if u.shape != i.shape:
            raise ValueError(f"users and items must have the same length, got {u.size} and {i.size}")
        return check_scores(self._score_pairs(u.astype(np.int64, copy=False), i.astype(np.int64, copy=False)), self)

    predict = score

    def _score_pairs(self, users, items):
        # Out-of-range ids count as unknown in the kernel (the "bias" fallback); "error" mode
        # has rejected them before this point.
        s = self._ops.sgd_mf_predict(
            users,
            items,
            self.user_factors,
            self.item_factors,
            self.user_bias,
            self.item_bias,
            global_mean=self.global_bias,
            threads=resolve_threads(self.threads),
        )
        return self._clip_predictions(s)

    def _rmse(self, coo) -> float:
        pred = self._score_pairs(coo.row, coo.col)
        return float(np.sqrt(np.mean((pred.astype(np.float64) - coo.data) ** 2)))

    # -- helpers --------------------------------------------------------------------------------
    def _check_scale(self, values, name):
        if self.rating_scale is not None and values.size:
            lo, hi = self.rating_scale
            bad = (values < lo) | (values > hi)
            if bad.any():
                raise ValueError(
                    f"{name} has {int(bad.sum())} ratings outside rating_scale {tuple(self.rating_scale)}, "
                    f"e.g. {values[bad][0]}"
                )

    def _copy_state(self):
        return {k: None if v is None else v.copy() for k, v in self._state().items()}

    def _state(self):
        return {"user_factors": self.user_factors, "item_factors": self.item_factors,
                "user_bias": self.user_bias, "item_bias": self.item_bias}  # fmt: skip

    def _set_state(self, state):
        for k, v in state.items():
            setattr(self, k, v)

    def _bias_names(self):
        return ("user_bias", "item_bias", "global_bias") if self.biases else ()


class BPR(_SGDModel):
    """Pairwise ranking for implicit feedback: BPR (Rendle et al. 2009) or WARP (Weston et al. 2011).

    Each epoch draws as many positives as the training matrix stores (uniformly, with
    replacement) and pairs each with sampled negatives, checked against the user's row so that
    a positive is never used as a negative.

    Parameters
    ----------
    factors : int >= 1
    lr : float > 0, optional
        Default (None): 0.05 for BPR, 0.002 for WARP (see Notes).
    regularization : float >= 0, optional
        L2 on the factors (and item biases) each update touches. Was ``reg`` (deprecated).
        Default (None): 0.01 for BPR, 1.0 for WARP (see Notes).
    epochs : int >= 1
    negatives : int >= 1
        BPR: negatives (pairwise updates) per sampled positive.
    sampling : {"uniform", "popularity"}
        Negatives drawn uniformly over items, or in proportion to their number of users.
    item_biases : bool
        Learn an item bias (ranks like ``[p_u, 1] . [q_i, b_i]``).
    loss : {"bpr", "warp"}
        "bpr": maximise ``log sigmoid(s_ui - s_uj)``. "warp": draw negatives until one violates
        the margin (``s_uj > s_ui - 1``), at most ``max_sampled``; after ``N`` draws the rank of
        ``i`` is estimated as ``floor((n_items - 1) / N)`` and the hinge ``1 - s_ui + s_uj`` is
        weighted by ``log(max(1, rank))``, so positives ranked low get large steps (LightFM's
        WARP). A positive with no violator in ``max_sampled`` draws gets no update.
    max_sampled : int >= 1
        WARP: negatives tried per positive.
    init_std : float >= 0
        Factors start as N(0, init_std^2); item biases at 0.
    device : {"auto", "cpu", "cuda"}
    threads : int
        0 = all cores. With 1 a fit is bitwise repeatable for a seed.
    seed : int

    Notes
    -----
    The two losses take steps of different sizes: a BPR step is at most ``lr`` times a sigmoid
    (< 1), a WARP step ``lr`` times ``log(rank)``, up to ``log(n_items)`` (about 8 for 3000 items).
    So each loss has its own default ``lr`` / ``regularization``, chosen on validation splits carved
    from the training part of MovieLens-100K and Last.fm-2K (``RECFORGE_BENCH_DEFAULTS_CASES=warp-grid
    python bench/run.py defaults``). WARP at BPR's values (0.05 / 0.01, the default before) diverges
    on both within 30 epochs.

    Stored entries with a value > 0 are the positives; their magnitude is not used. A positive
    whose user interacted with (nearly) every item may find no negative in 32 draws: it is
    skipped and counted (``history_[e]["skipped"]``).
    """

    _param_spec = {
        **COMMON_PARAMS,
        "factors": Param("int", low=1),
        "lr": Param("float", low=0, low_open=True, optional=True),
        "regularization": Param("float", low=0, optional=True),
        "epochs": EPOCHS,
        "negatives": NEGATIVES,
        "sampling": Param("choice", choices=("uniform", "popularity")),
        "item_biases": Param("bool"),
        "loss": Param("choice", choices=("bpr", "warp")),
        "max_sampled": Param("int", low=1),
        "init_std": Param("float", low=0),
    }
    _aliases = {"reg": "regularization"}

    def __init__(
        self,
        factors: int = 64,
        lr: float | None = None,
        regularization: float | None = None,
        epochs: int = 100,
        negatives: int = 1,
        sampling: str = "uniform",
        item_biases: bool = True,
        loss: str = "bpr",
        max_sampled: int = 100,
        init_std: float = 0.1,
        device: str = "auto",
        threads: int = 0,
        seed: int = 42,
        **deprecated,
    ):
        self._store_params(locals())

    #: The defaults of ``lr`` and ``regularization`` per loss (see Notes).
    DEFAULT_STEPS = {"bpr": (0.05, 0.01), "warp": (0.002, 1.0)}

    def steps(self) -> tuple[float, float]:
        """(lr, regularization) in use: the parameters, or the loss's defaults where they are None."""
        lr, reg = self.DEFAULT_STEPS[self.loss]
        return (lr if self.lr is None else self.lr), (reg if self.regularization is None else self.regularization)

    def _epoch(self, data, epoch: int, threads: int, users=None) -> dict:
        """One BPR/WARP pass over ``data`` (``ops.sgd_positives``); returns the epoch's stats.

        ``users``: (factors, None) of the rows of ``data`` to learn with the items frozen (fold-in).
        """
        lr, reg = self.steps()
        user_factors = self.user_factors if users is None else users[0]
        return self._ops.sgd_rank_epoch(
            data, user_factors, self.item_factors, self.item_bias, lr=lr,
            regularization=reg, negatives=self.negatives, sampling=self.sampling, loss=self.loss,
            max_sampled=self.max_sampled, threads=threads, seed=self.seed, epoch=epoch, freeze_items=users is not None,
        )  # fmt: skip

    def fit(self, interactions, callback=None, progress: bool | None = None):
        """Fit on implicit feedback.

        Parameters
        ----------
        interactions : scipy.sparse matrix (n_users, n_items) or recforge.Interactions
            Entries with a value > 0 are positives.
        callback : callable(epoch, seconds_this_epoch, loss), optional
            Called after each epoch with its mean loss (BPR: -log sigmoid per pair; WARP:
            weighted hinge per sampled positive).
        progress : bool, optional
            Show a tqdm progress bar (None: ``recforge.get_config()["progress"]``).
        """
        train = self._start_fit(interactions)
        data = self._ops.sgd_positives(train)
        if data.nnz == 0:
            raise ValueError("interactions has no positive entries (values > 0) to learn from")
        threads = resolve_threads(self.threads)
        n_users, n_items = train.shape
        rng = np.random.default_rng(self.seed)
        self.user_factors = _init_factors(rng, n_users, self.factors, self.init_std)
        self.item_factors = _init_factors(rng, n_items, self.factors, self.init_std)
        self.item_bias = np.zeros(n_items, np.float32) if self.item_biases else None
        self.user_bias, self.global_bias = None, 0.0
        self.seen_ = None  # fitted only once the epochs succeed (a divergence leaves it unfitted)

        def run_epoch(epoch):
            st = self._epoch(data, epoch, threads)
            if not np.isfinite(st["loss"]):
                raise TrainingDiverged(
                    f"{self.loss.upper()} diverged in epoch {epoch}; lower lr (now {self.steps()[0]:g}), "
                    f"regularization (now {self.steps()[1]:g}) or factors (now {self.factors})"
                )
            return st["loss"], {"pairs": st["pairs"], "updates": st["updates"], "skipped": st["skipped"]}, False

        run_epochs(self, self.epochs, run_epoch, callback=callback, progress=progress, desc=self.loss.upper())
        return self._finish_fit(train)

    def partial_fit_users(self, user_ids, interactions_rows, epochs: int | None = None, progress: bool = False):
        """Fold in new or changed users without a full refit.

        Their factors restart from the initial distribution and are trained on their positives
        only (negatives checked against their rows), with the item factors and biases fixed.

        Parameters
        ----------
        user_ids : 1-D int array (n,)
            Users to (re)learn; ids >= n_users add users (any gap gets empty rows, zero factors).
        interactions_rows : scipy.sparse (n, n_items)
            Their complete rows (values > 0 are positives); they replace the rows in ``seen_``.
        epochs : int, optional
            Passes over their positives (default: the model's ``epochs``).
        """
        return self._fold_in_users(user_ids, interactions_rows, epochs, progress)

    def _fold_in_data(self, m):
        data = self._ops.sgd_positives(m)
        return data if data.nnz else None

    def _bias_names(self):
        return ("item_bias",) if self.item_biases else ()
