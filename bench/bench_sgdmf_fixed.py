"""SGDMF with ONE fixed setting for every fold (no per-fold tuning) vs Surprise SVD at its defaults.

MovieLens-100K official folds u1..u5 (2 with ``--quick``), fit + predict timed for both libraries
(interleaved, median of ``--repeat`` runs per fold, summed over the folds), RMSE averaged over the
folds. Supplements bench_sgd.py, whose per-fold validation grid is not counted in its time ratio:
this shows the ratio holds without any tuning. The setting: factors 32, lr 0.04, reg 0.12, lr
decaying 5 % per epoch, 20 epochs, predictions clipped to [1, 5], seed 42. Needs scikit-surprise
(without it: recforge's row only).
"""

from __future__ import annotations

FIXED = {
    "factors": 32,
    "lr": 0.04,
    "regularization": 0.12,
    "lr_schedule": "exponential",
    "decay": 0.05,
    "epochs": 20,
    "seed": 42,
}


def run(ctx):
    from bench_sgd import explicit_part

    import recforge as rf

    rows = []
    explicit_part(ctx, rf, ctx.peer("surprise"), "ml-100k", rows, fixed=FIXED)
    return rows
