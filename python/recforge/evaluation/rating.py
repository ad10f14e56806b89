"""Rating-prediction error: RMSE and MAE."""

from __future__ import annotations

import numpy as np

__all__ = ["RATING_METRICS", "mae", "rmse"]

#: The rating-error metrics ``evaluate`` computes for rating models (``predicts_ratings``).
RATING_METRICS = ("rmse", "mae")


def _pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    arrays = []
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        if not hasattr(y, "__array__") and not isinstance(y, (list, tuple)):
            raise TypeError(f"{name} must be a 1-D array of numbers, got {type(y).__name__}")
        a = np.asarray(y)
        if a.ndim != 1:
            raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
        if a.size == 0:
            raise ValueError(f"{name} is empty")
        if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)) or a.dtype == np.bool_:
            raise TypeError(f"{name} must hold real numbers, got dtype {a.dtype}")
        a = a.astype(np.float64)
        if not np.isfinite(a).all():
            raise ValueError(f"{name} contains NaN or infinite values")
        arrays.append(a)
    if arrays[0].shape != arrays[1].shape:
        raise ValueError(f"y_true and y_pred must have the same length, got {arrays[0].size} and {arrays[1].size}")
    return arrays[0], arrays[1]


def rmse(y_true, y_pred) -> float:
    """Root mean squared error: sqrt(mean((y_true - y_pred)^2)).

    Parameters
    ----------
    y_true, y_pred : (n,) arrays of real numbers, finite, same length, n >= 1
    """
    t, p = _pair(y_true, y_pred)
    return float(np.sqrt(np.mean((t - p) ** 2)))


def mae(y_true, y_pred) -> float:
    """Mean absolute error: mean(|y_true - y_pred|).

    Parameters
    ----------
    y_true, y_pred : (n,) arrays of real numbers, finite, same length, n >= 1
    """
    t, p = _pair(y_true, y_pred)
    return float(np.mean(np.abs(t - p)))
