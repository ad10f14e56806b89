"""Offline A/B comparison: several models on one split, each metric with a paired confidence interval.

Every model is scored on the same users (full-catalogue ranking, training items excluded; or rating
error for rating models), and each model's difference to a baseline is estimated per metric with a
paired test over users: a per-user paired bootstrap (default) or a paired t-test. Pairing matters:
the users' difficulty varies far more than the models' difference, and it cancels in a paired test.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from .._validation import check_k, check_positive
from ._common import hit_matrix, relevant_rows
from .protocols import _relevant_by_threshold, _split_rating_metrics, _train_test, recommend_for_evaluation
from .ranking import RANKING_METRICS, per_user_metrics
from .rating import RATING_METRICS

__all__ = ["compare", "plot_comparison"]

logger = logging.getLogger(__name__)

METHODS = ("bootstrap", "ttest")
DEFAULT_RANKING = ("ndcg", "recall", "precision")
_BOOTSTRAP_CHUNK = 1 << 22  # resample weights held at once (resamples x users), 32 MB of float64


def compare(
    models,
    train,
    test,
    *,
    k: int = 10,
    metrics=None,
    baseline=None,
    method: str = "bootstrap",
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    relevance_threshold: float | None = None,
    chart=None,
    batch_size: int = 1024,
    threads: int = 0,
    progress: bool | None = None,
) -> pd.DataFrame:
    """Compare models on one train/test split with paired confidence intervals against a baseline.

    Parameters
    ----------
    models : dict name -> model, or a sequence of models (named by class, "-2", "-3" appended to repeats)
        Unfitted models (``is_fitted`` false) are fitted on ``train`` here; fitted ones are used as
        they are (they must have ``train``'s shape).
    train, test : recforge.Interactions or scipy.sparse (n_users, n_items)
    k : int, cut-off of the ranking metrics
    metrics : sequence of str, optional
        Ranking metrics (``precision``, ``recall``, ``ndcg``, ``map``, ``hit_rate``, ``mrr``, scored
        at ``k`` on every user with a relevant test item) and, for rating models, ``rmse`` / ``mae``
        (over every test rating). Default: rmse and mae when every model predicts ratings (plus
        ndcg, recall, precision with ``relevance_threshold``), else ndcg, recall and precision.
    baseline : str, optional
        The name of the model the others are compared with (default: the first).
    method : {"bootstrap", "ttest"}
        "bootstrap": ``n_bootstrap`` resamples of the users (with replacement), the same resample for
        every model, so each difference is paired; the interval is the percentile interval of the
        resampled differences and ``p_value`` twice the smaller tail beyond 0, ``2 (tail + 1) /
        (n_bootstrap + 1)`` (so never below ``2 / (n_bootstrap + 1)``). "ttest": the
        paired t-test on the per-user differences (per-rating for mae; not defined for rmse, which
        is not a mean).
    n_bootstrap : int >= 1
    confidence : float in (0, 1), the interval's coverage
    seed : int, seeds the resamples
    relevance_threshold : float, optional
        Test entries >= it are relevant (default: > 0); required to rank rating models.
    chart : str or path, optional
        Write a PNG of the comparison there (``plot_comparison``; needs matplotlib:
        ``pip install recforge[plot]``).
    batch_size, threads, progress : as in ``evaluate``

    Returns
    -------
    pandas.DataFrame, one row per (metric, model), baseline first within each metric, with columns
    ``metric`` ("ndcg@10", "rmse", ...), ``model``, ``value`` (the metric on the whole test set),
    ``ci_low`` / ``ci_high`` (the interval of the value itself), ``diff`` (value - baseline's),
    ``diff_low`` / ``diff_high`` (the paired interval of the difference; NaN for the baseline),
    ``p_value``, ``significant`` (the difference's interval excludes 0), ``better`` ("higher" or
    "lower") and ``n`` (users, or ratings for the t-test of mae). ``df.attrs`` holds the method,
    confidence, baseline and k.
    """
    named = _named_models(models)
    if baseline is None:
        baseline = next(iter(named))
    if baseline not in named:
        raise ValueError(f"baseline must be one of the model names {list(named)}, got {baseline!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    k = check_k(k)
    n_bootstrap = check_positive(n_bootstrap, "n_bootstrap", integer=True)
    confidence = check_positive(confidence, "confidence")
    if not confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    tr, t = _train_test(train, test)
    rating_names, ranking_names = _metric_plan(named, metrics, relevance_threshold)

    for name, model in named.items():
        if not getattr(model, "is_fitted", True):
            logger.info("compare: fitting %s", name)
            model.fit(train, progress=progress)
        n_items = getattr(model, "n_items", t.shape[1])
        if n_items != t.shape[1]:
            raise ValueError(f"model {name!r} has {n_items} items but train/test have {t.shape[1]}")

    rows = []
    if ranking_names:
        rel_t = t if relevance_threshold is None else _relevant_by_threshold(t, relevance_threshold)
        rel_all = relevant_rows(rel_t, rel_t.shape[0])
        users = np.flatnonzero(np.diff(rel_all.indptr) > 0)
        rel = rel_all[users]
        per_model = {}
        for name, model in named.items():
            rec = recommend_for_evaluation(model, users, k, t.shape[1], batch_size, threads, progress)
            per_model[name] = per_user_metrics(hit_matrix(rec, rel), np.diff(rel.indptr), ranking_names)
        for metric in ranking_names:
            values = {name: per_model[name][metric] for name in named}
            ones = np.ones(users.size)
            rows += _paired(f"{metric}@{k}", values, {n: ones for n in named}, baseline, "higher", method,
                            n_bootstrap, confidence, seed, sqrt=False)  # fmt: skip
    if rating_names:
        coo = t.tocoo()
        u, i, truth = coo.row.astype(np.int64), coo.col.astype(np.int64), coo.data.astype(np.float64)
        users, user_pos = np.unique(u, return_inverse=True)
        counts = np.bincount(user_pos).astype(np.float64)
        errors = {name: np.asarray(model.score(u, i), np.float64) - truth for name, model in named.items()}
        for metric in rating_names:
            if method == "ttest":  # pairs are ratings: mae is their mean
                if metric == "rmse":
                    raise ValueError("method='ttest' does not apply to rmse (a root of a mean): use 'bootstrap'")
                values = {name: np.abs(e) for name, e in errors.items()}
                rows += _paired(metric, values, {n: np.ones(truth.size) for n in named}, baseline, "lower",
                                method, n_bootstrap, confidence, seed, sqrt=False)  # fmt: skip
                continue
            # per user: the sum of squared (rmse) or absolute (mae) errors, and the user's count
            sums = {name: np.bincount(user_pos, weights=e**2 if metric == "rmse" else np.abs(e))
                    for name, e in errors.items()}  # fmt: skip
            rows += _paired(metric, sums, {n: counts for n in named}, baseline, "lower", method, n_bootstrap,
                            confidence, seed, sqrt=metric == "rmse")  # fmt: skip
    out = pd.DataFrame(rows)
    out.attrs.update(method=method, confidence=confidence, baseline=baseline, k=k)
    if chart is not None:
        plot_comparison(out, chart)
    return out


def _named_models(models) -> dict:
    if isinstance(models, dict):
        named = dict(models)
        bad = [n for n in named if not isinstance(n, str)]
        if bad:
            raise TypeError(f"models must be keyed by str names, got {bad[0]!r}")
    elif isinstance(models, (list, tuple)):
        named = {}
        for m in models:
            base = type(m).__name__
            name, n = base, 1
            while name in named:
                n += 1
                name = f"{base}-{n}"
            named[name] = m
    else:
        raise TypeError(f"models must be a dict name -> model or a list of models, got {type(models).__name__}")
    if len(named) < 2:
        raise ValueError(f"compare needs at least two models, got {len(named)}")
    for name, m in named.items():
        if not hasattr(m, "recommend"):
            raise TypeError(f"model {name!r} has no recommend method: {type(m).__name__}")
    return named


def _metric_plan(named: dict, metrics, threshold) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(rating metrics, ranking metrics) valid for every model (evaluate's rules, model by model)."""
    rating_models = [n for n, m in named.items() if getattr(m, "predicts_ratings", False)]
    if metrics is None:
        if len(rating_models) == len(named):
            metrics = RATING_METRICS + (DEFAULT_RANKING if threshold is not None else ())
        else:
            metrics = DEFAULT_RANKING
    names = (metrics,) if isinstance(metrics, str) else tuple(metrics)
    allowed = RANKING_METRICS + RATING_METRICS
    bad = [m for m in names if m not in allowed]
    if bad or not names:
        raise ValueError(f"metrics must be names from {allowed}, got {list(names)}")
    for model in named.values():
        _split_rating_metrics(model, names, threshold)  # the same errors as evaluate
    return tuple(m for m in names if m in RATING_METRICS), tuple(m for m in names if m in RANKING_METRICS)


def _paired(metric, numerators, denominators, baseline, better, method, n_bootstrap, confidence, seed, sqrt):
    """Rows for one metric: each model's statistic sum(num) / sum(den) (its root when ``sqrt``), with
    intervals; every model's units (users or ratings) are the same, in the same order."""
    names = list(numerators)
    num = np.vstack([numerators[n] for n in names])  # (models, units)
    den = denominators[names[0]]
    finish = np.sqrt if sqrt else (lambda x: x)
    value = finish(num.sum(axis=1) / den.sum())
    b = names.index(baseline)
    alpha = 1.0 - confidence
    if method == "bootstrap":
        stats = _bootstrap(num, den, n_bootstrap, seed, finish)  # (models, resamples)
        lo, hi = np.quantile(stats, [alpha / 2, 1 - alpha / 2], axis=1)
        diffs = stats - stats[b]
        d_lo, d_hi = np.quantile(diffs, [alpha / 2, 1 - alpha / 2], axis=1)
        # two-sided: twice the smaller tail beyond 0, with the +1 that keeps a finite bootstrap from saying 0
        tail = np.minimum((diffs <= 0).sum(axis=1), (diffs >= 0).sum(axis=1))
        p = np.minimum(1.0, 2 * (tail + 1) / (n_bootstrap + 1))
    else:
        from scipy import stats as st  # scipy.stats costs ~0.3 s to import: only when asked

        n = num.shape[1]
        crit = st.t.ppf(1 - alpha / 2, n - 1) if n > 1 else np.nan
        se = num.std(axis=1, ddof=1) / np.sqrt(n) if n > 1 else np.full(len(names), np.nan)
        lo, hi = value - crit * se, value + crit * se
        d = num - num[b]
        d_se = d.std(axis=1, ddof=1) / np.sqrt(n) if n > 1 else np.full(len(names), np.nan)
        d_mean = d.mean(axis=1)
        d_lo, d_hi = d_mean - crit * d_se, d_mean + crit * d_se
        with np.errstate(divide="ignore", invalid="ignore"):
            tstat = np.where(d_se > 0, d_mean / d_se, 0.0)
        p = 2 * st.t.sf(np.abs(tstat), n - 1) if n > 1 else np.full(len(names), np.nan)
    order = [b] + [j for j in range(len(names)) if j != b]
    rows = []
    for j in order:
        base = j == b
        rows.append(
            {
                "metric": metric,
                "model": names[j],
                "value": float(value[j]),
                "ci_low": float(lo[j]),
                "ci_high": float(hi[j]),
                "diff": float(value[j] - value[b]),
                "diff_low": np.nan if base else float(d_lo[j]),
                "diff_high": np.nan if base else float(d_hi[j]),
                "p_value": np.nan if base else float(p[j]),
                "significant": False if base else bool(d_lo[j] > 0 or d_hi[j] < 0),
                "better": better,
                "n": int(num.shape[1]),
            }
        )
    return rows


def _bootstrap(num: np.ndarray, den: np.ndarray, n_bootstrap: int, seed: int, finish) -> np.ndarray:
    """(models, n_bootstrap) statistics sum(w * num) / sum(w * den) over resamples of the units."""
    n = num.shape[1]
    rng = np.random.default_rng(seed)
    out = np.empty((num.shape[0], n_bootstrap))
    step = max(1, _BOOTSTRAP_CHUNK // max(n, 1))
    for start in range(0, n_bootstrap, step):
        b = min(step, n_bootstrap - start)
        # Counts of each unit in b resamples of size n with replacement (one multinomial per resample).
        w = rng.multinomial(n, np.full(n, 1.0 / n), size=b).astype(np.float64)  # (b, n)
        out[:, start : start + b] = finish((num @ w.T) / (w @ den))
    return out


def plot_comparison(df: pd.DataFrame, path, title: str | None = None) -> Path:
    """PNG of a ``compare`` result: one panel per metric, each model's value with its interval, the
    baseline's bar grey, and each difference (with its interval) written beside its bar, ``*`` when
    significant. Needs matplotlib (``pip install recforge[plot]``). Returns the path written."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("plot_comparison needs matplotlib: pip install 'recforge[plot]'") from None
    need = {"metric", "model", "value", "ci_low", "ci_high", "diff", "diff_low", "diff_high", "significant"}
    if not isinstance(df, pd.DataFrame) or not need <= set(df.columns):
        raise ValueError(f"df must be a DataFrame returned by compare (columns {sorted(need)})")
    metrics = list(dict.fromkeys(df["metric"]))
    baseline = df.attrs.get("baseline", df["model"].iloc[0])
    fig = Figure(figsize=(6.4, 0.6 + 0.45 * df["model"].nunique() * len(metrics) + 0.5 * len(metrics)))
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(metrics), 1, squeeze=False)[:, 0]
    for ax, metric in zip(axes, metrics):
        part = df[df["metric"] == metric].iloc[::-1]  # baseline on top
        y = np.arange(len(part))
        err = np.vstack([part["value"] - part["ci_low"], part["ci_high"] - part["value"]])
        colors = ["0.6" if m == baseline else "C0" for m in part["model"]]
        ax.barh(y, part["value"], xerr=err, color=colors, capsize=3)
        ax.set_yticks(y, part["model"])
        ax.set_title(metric + ("  (lower is better)" if part["better"].iloc[0] == "lower" else ""), fontsize=10)
        right = float(part["ci_high"].max())
        for yy, row in zip(y, part.itertuples(index=False)):
            if row.model == baseline:
                text = "baseline"
            else:
                text = f"{row.diff:+.4f} [{row.diff_low:+.4f}, {row.diff_high:+.4f}]" + (
                    " *" if row.significant else ""
                )
            ax.text(right * 1.02, yy, text, va="center", fontsize=8)
        ax.set_xlim(0, right * 1.75)
    method = df.attrs.get("method", "bootstrap")
    conf = df.attrs.get("confidence", 0.95)
    fig.suptitle(title or f"vs {baseline}: {conf:.0%} paired {method} intervals (* excludes 0)", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    return path
