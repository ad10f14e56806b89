"""What the rating models (SGDMF, explicit ALS) share: the rating range learned at fit and clipping to it.

A rating model predicts values on the scale of its training ratings. ``clip=True`` (their default)
clips every prediction (``score`` / ``predict``) into that scale: ``rating_scale`` when declared,
else ``[min, max]`` of the training ratings, learned by ``fit`` as ``rating_range_`` and saved with
the model. Ranking (``recommend``) is unchanged by clipping, which only creates ties.
"""

from __future__ import annotations

import numpy as np

__all__ = ["RatingPredictions"]


class RatingPredictions:
    """Mixin for FactorModel subclasses that predict ratings (see the module docstring)."""

    rating_range_: tuple[float, float] | None = None

    @property
    def predicts_ratings(self) -> bool:
        """True: ``score`` predicts ratings, evaluated by RMSE / MAE (``rf.evaluation.evaluate``)."""
        return True

    def _learn_rating_range(self, ratings: np.ndarray) -> None:
        """Set ``rating_range_`` from the declared ``rating_scale`` or the training ratings."""
        declared = getattr(self, "rating_scale", None)
        if declared is not None:
            lo, hi = declared
        else:
            lo, hi = (float(ratings.min()), float(ratings.max())) if ratings.size else (0.0, 0.0)
        self.rating_range_ = (float(lo), float(hi))

    @classmethod
    def from_factors(cls, *args, **kwargs):
        """``FactorModel.from_factors``; the rating range comes from ``seen`` (none when it is empty)."""
        model = super().from_factors(*args, **kwargs)
        model.rating_range_ = None
        if model.predicts_ratings and model.seen_.nnz:
            model._learn_rating_range(model.seen_.data)
        return model

    def _clip_bounds(self) -> tuple[float, float] | None:
        """The range predictions are clipped into, or None."""
        if self.clip is True:
            return self.rating_range_  # None for a model built from factors without ratings
        if self.clip is False or self.clip is None:
            return None
        lo, hi = self.clip
        return float(lo), float(hi)

    def _clip_predictions(self, s: np.ndarray) -> np.ndarray:
        bounds = self._clip_bounds() if self.predicts_ratings else None
        return s if bounds is None else np.clip(s, *bounds, out=s)

    def _after_forget(self, side, touched):
        super()._after_forget(side, touched)
        if self.rating_range_ is not None and self.predicts_ratings:  # the range of the ratings that remain
            self._learn_rating_range(self.seen_.data)

    def _arrays(self):
        out = super()._arrays()
        if self.rating_range_ is not None:
            out["rating_range"] = np.asarray(self.rating_range_, np.float64)
        return out

    def _restore(self, arrays):
        saved = arrays.pop("rating_range", None)
        super()._restore(arrays)
        if saved is not None:
            if saved.shape != (2,) or not np.isfinite(saved).all() or saved[0] > saved[1]:
                raise ValueError(f"array 'rating_range' must be a finite (low, high) pair, got {saved!r}")
            self.rating_range_ = (float(saved[0]), float(saved[1]))
        elif self.predicts_ratings:  # files written before the range was saved: the training ratings
            self._learn_rating_range(self.seen_.data)
