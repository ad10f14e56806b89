"""Explanations (issue 16): recforge's ``ALS.explain`` against implicit 0.7's ``explain`` on the same factors,
and what ``MLPScorer.explain`` (integrated gradients) leaves unexplained.

MovieLens-100K, ratings >= 4 as binary positives; recforge ``ALS(factors=64, alpha=4, regularization=0.3,
solver="cholesky")`` fitted (15 iterations, ``ctx.threads``), then implicit's ``AlternatingLeastSquares``
given the same factors (implicit with ``alpha = 1 + 4`` is the same model on binary data: ALS's module
docstring). For 200 (user, item) pairs drawn at random (seed 0):

* ``max rel diff``: the largest relative difference of one history item's contribution (implicit
  computes in float32, recforge in float64), and of the explained score;
* ``explain ms``: the median time of one ``explain`` call (recforge: with the external ids and the
  DataFrame; implicit: its top-N list over the whole history).

MLPScorer (NeuMF, factors=32, layers (64, 32, 16), 10 epochs, same data; no peer explains NCF scores)
on the same 200 pairs:

* ``mlp explain ms``: one ``explain`` call;
* ``mlp max completeness error``: the largest ``|base + sum(contributions) - model_score|`` over
  ``|model_score|`` (the model scores in float32, the explanation in float64);
* ``mlp unexplained share``: the median over pairs of ``|g . e| / |f(p_u) - f(p0)|``: the part of
  the user-dependent score (the user's logit less the mean user's) that no history item accounts for
  (``g . e``, the offset no history embedding expresses, kept in ``base``);
* ``mlp cancellation``: the median of ``sum_j |contribution_j| / |sum_j contribution_j|`` (1: every
  contribution has the same sign; larger: the history's contributions partly cancel).
"""

from __future__ import annotations

import time

import numpy as np

N_PAIRS = 200


def run(ctx) -> list[dict]:
    import recforge as rf

    als = ctx.peer("implicit.cpu.als")
    df = ctx.dataset("ml-100k", rf.datasets.load_movielens, "100k", progress=False)
    if df is None:
        return []
    df = df[df["rating"] >= 4].assign(rating=1.0)
    data = rf.Interactions.from_pandas(df, user_col="user", item_col="item", weight_col="rating")
    X = data.csr
    ours = rf.ALS(factors=64, alpha=4.0, regularization=0.3, solver="cholesky", threads=ctx.threads, seed=0)
    ours.fit(data, progress=False)
    rng = np.random.default_rng(0)
    pairs = list(zip(rng.integers(0, X.shape[0], N_PAIRS), rng.integers(0, X.shape[1], N_PAIRS)))
    case = "ml-100k f=64"
    out = []

    def ours_all():
        return [ours.explain(int(u), int(i)) for u, i in pairs]

    t0 = time.perf_counter()
    explained = ours_all()
    ours_ms = (time.perf_counter() - t0) / N_PAIRS * 1e3
    out.append({"case": case, "library": "recforge", "metric": "explain ms", "value": ours_ms, "spread": None,
                "better": "lower"})  # fmt: skip
    out += _mlp(ctx, rf, data, pairs)
    if als is None:
        return out
    peer = als.AlternatingLeastSquares(factors=64, alpha=5.0, regularization=0.3, iterations=1, use_cg=False)
    peer.fit(X, show_progress=False)
    peer.user_factors, peer.item_factors = ours.user_factors.copy(), ours.item_factors.copy()
    t0 = time.perf_counter()
    theirs = [peer.explain(int(u), X, int(i), N=X.shape[1]) for u, i in pairs]
    peer_ms = (time.perf_counter() - t0) / N_PAIRS * 1e3
    worst_item = worst_score = 0.0
    for e, (score, contributions, _) in zip(explained, theirs):
        mine = dict(zip(e.contributions["index"], e.contributions["contribution"]))
        scale = max(abs(c) for _, c in contributions) if contributions else 1.0
        for j, c in contributions:
            worst_item = max(worst_item, abs(mine[j] - c) / scale)
        worst_score = max(worst_score, abs(e.score - score) / max(abs(score), 1e-3))
    out += [
        {"case": case, "library": "implicit", "metric": "explain ms", "value": peer_ms, "spread": None,
         "better": "lower"},
        {"case": case, "library": "recforge", "metric": "max rel diff contribution", "value": worst_item,
         "spread": None, "better": "lower"},
        {"case": case, "library": "recforge", "metric": "max rel diff score", "value": worst_score, "spread": None,
         "better": "lower"},
    ]  # fmt: skip
    ctx.log(
        f"explain: {ours_ms:.2f} ms vs implicit {peer_ms:.2f} ms; max rel diff {worst_item:.2e} / {worst_score:.2e}"
    )
    return out


def _mlp(ctx, rf, data, pairs) -> list[dict]:
    from recforge.models._mlp_explain import NcfWeights

    model = rf.MLPScorer(factors=32, layers=(64, 32, 16), epochs=10, optimizer="lazy_adam", threads=ctx.threads, seed=0)
    model.fit(data, progress=False)
    t0 = time.perf_counter()
    explained = [model.explain(int(u), int(i)) for u, i in pairs]
    ms = (time.perf_counter() - t0) / len(pairs) * 1e3
    net, mean_user = NcfWeights.of(model), model.user_embedding.astype(np.float64).mean(axis=0)
    worst, unexplained, cancellation = 0.0, [], []
    for e, (_, i) in zip(explained, pairs):
        total = e.base + e.contributions["contribution"].sum()
        worst = max(worst, abs(total - e.model_score) / max(abs(e.model_score), 1e-3))
        q = model.item_embedding[int(i)].astype(np.float64)
        mean_score = net.logit(mean_user, q)
        unexplained.append(abs(e.base - mean_score) / max(abs(e.score - mean_score), 1e-12))
        c = e.contributions["contribution"]
        cancellation.append(c.abs().sum() / max(abs(c.sum()), 1e-12))
    case = "ml-100k NeuMF f=32"
    ctx.log(
        f"mlp explain: {ms:.2f} ms, completeness {worst:.2e}, unexplained {np.median(unexplained):.3f}, "
        f"cancellation {np.median(cancellation):.3g}"
    )
    return [
        {"case": case, "library": "recforge", "metric": "mlp explain ms", "value": ms, "spread": None,
         "better": "lower"},
        {"case": case, "library": "recforge", "metric": "mlp max completeness error", "value": worst,
         "spread": None, "better": "lower"},
        {"case": case, "library": "recforge", "metric": "mlp unexplained share", "value": float(np.median(unexplained)),
         "spread": None, "better": "lower"},
        {"case": case, "library": "recforge", "metric": "mlp cancellation", "value": float(np.median(cancellation)),
         "spread": None, "better": "lower"},
    ]  # fmt: skip
