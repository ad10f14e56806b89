"""MLPScorer explanations (``method="integrated-gradients"``): exact integrated gradients of the logit
with respect to the user embedding, decomposed over the user's history items.

An NCF user is a free embedding ``p_u`` learnt by SGD, not a function of the history, so the score is
explained in two steps, each stated so it can be checked:

1. Integrated gradients (Sundararajan et al. 2017) of the logit ``f(p, q_i)`` along the straight path
   from a baseline user ``p0`` (the mean user embedding: "an average user") to ``p_u``:
   ``f(p_u) - f(p0) = g . (p_u - p0)`` with ``g`` the gradient averaged over the path. The logit is
   piecewise linear in ``p`` (GMF: linear; MLP: ReLU layers), so the path splits into segments of
   constant activation pattern and ``g`` is integrated exactly segment by segment: the identity
   holds to float rounding, not up to a quadrature error.
2. The user's offset ``p_u - p0`` written on their history items' embeddings by least squares,
   ``p_u - p0 = sum_j c_j q_j + e`` (``Q_H^T c``, the minimum-norm solution when the history
   spans more than the embedding width): item ``j`` contributes ``c_j (g . q_j)``. The part of the
   offset no history embedding expresses (``g . e``) is not given to any item: it joins ``base``.

So ``base = f(p0, q_i) + g . e`` and ``base + sum_j contribution_j = f(p_u, q_i)`` (the model's
logit, computed here in float64). Step 2 is a modelling choice, as every mapping of a free
embedding onto items is (the ALS view ``x_u = sum_j c_j y_j``, which ALS makes exact): the residual
``g . e`` says how much of the score it leaves unexplained.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._ops import to_host
from ._explain import ScoreParts

__all__ = ["NcfWeights", "integrated_gradient", "integrated_gradient_parts"]

# Segments of one straight path are bounded by the number of hidden units crossing zero along it
# (each unit can cross a few times in deep nets); a path needing more is a degenerate input.
_MAX_SEGMENTS = 100_000


@dataclass(frozen=True)
class NcfWeights:
    """An NCF scorer's parameters in float64: ``logit = w_gmf . (p_g * q_g) + w_h . MLP([p_m, q_m]) + b``."""

    gmf_dim: int  # leading width of each embedding row that is the GMF part (the rest: the MLP part)
    weights: tuple  # hidden layers, each (in, out)
    biases: tuple  # each (out,)
    output_weights: np.ndarray  # (gmf_dim + last hidden width,)
    output_bias: float

    @classmethod
    def of(cls, model) -> NcfWeights:
        """The weights of a fitted ``MLPScorer``."""
        as64 = lambda a: np.asarray(to_host(a), np.float64)  # noqa: E731
        return cls(model._gmf_dim, tuple(map(as64, model.weights)), tuple(map(as64, model.biases)),
                   as64(model.output_weights), float(to_host(model.output_bias)[0]))  # fmt: skip

    def logit(self, p: np.ndarray, q: np.ndarray) -> float:
        """``f(p, q)`` for one user embedding ``p`` and item embedding ``q`` (float64)."""
        g = self.gmf_dim
        out = float(self.output_weights[:g] @ (p[:g] * q[:g])) + self.output_bias
        if self.weights:
            h = np.concatenate([p[g:], q[g:]])
            for w, b in zip(self.weights, self.biases):
                h = np.maximum(h @ w + b, 0.0)
            out += float(self.output_weights[g:] @ h)
        return out

    def gradient(self, p: np.ndarray, q: np.ndarray, direction: np.ndarray | None = None) -> np.ndarray:
        """``df/dp`` at ``p`` (ReLU'(0) = 0), or, with ``direction``, on the linear piece just past ``p``
        along it (a unit at 0 counts as active when the path raises it)."""
        g = self.gmf_dim
        grad = np.empty_like(p)
        grad[:g] = self.output_weights[:g] * q[:g]
        if self.weights:
            h = np.concatenate([p[g:], q[g:]])
            dh = np.concatenate([direction[g:], np.zeros(len(q) - g)]) if direction is not None else np.zeros(len(h))
            masks = []
            for w, b in zip(self.weights, self.biases):
                z, dz = h @ w + b, dh @ w
                on = (z > 0) | ((z == 0) & (dz > 0))
                h, dh = np.where(on, z, 0.0), np.where(on, dz, 0.0)
                masks.append(on)
            back = self.output_weights[g:]
            for w, on in zip(reversed(self.weights), reversed(masks)):
                back = (back * on) @ w.T
            grad[g:] = back[: len(p) - g]  # the user half of the MLP input [p_m, q_m]
        return grad

    def _next_kink(self, p: np.ndarray, q: np.ndarray, direction: np.ndarray) -> float:
        """How far along ``direction`` from ``p`` the activation pattern first changes (inf: never)."""
        g = self.gmf_dim
        h = np.concatenate([p[g:], q[g:]])
        dh = np.concatenate([direction[g:], np.zeros(len(q) - g)])
        step = np.inf
        for w, b in zip(self.weights, self.biases):
            z, dz = h @ w + b, dh @ w
            on = (z > 0) | ((z == 0) & (dz > 0))
            crossing = (on & (dz < 0)) | (~on & (dz > 0))  # moving towards zero from its side
            if crossing.any():
                step = min(step, float(np.min(-z[crossing] / dz[crossing])))
            h, dh = np.where(on, z, 0.0), np.where(on, dz, 0.0)
        return max(step, 0.0)


def integrated_gradient(net: NcfWeights, baseline: np.ndarray, p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """The gradient of ``f(., q)`` averaged over the straight path from ``baseline`` to ``p``, exactly.

    The path is cut where a hidden unit changes sign; on each piece the gradient is constant. So
    ``integrated_gradient(...) . (p - baseline) == f(p) - f(baseline)`` to float rounding.
    """
    delta = p - baseline
    if not net.weights:  # GMF: linear in p
        return net.gradient(p, q)
    total, t = np.zeros_like(p), 0.0
    for _ in range(_MAX_SEGMENTS):
        point = baseline + t * delta
        end = min(1.0, t + net._next_kink(point, q, delta))
        end = max(end, np.nextafter(t, 2.0))  # a kink at round-off distance: step past it
        total += (min(end, 1.0) - t) * net.gradient(point, q, direction=delta)
        t = end
        if t >= 1.0:
            return total
    raise RuntimeError(f"integrated gradients: more than {_MAX_SEGMENTS} linear pieces on one path")


def integrated_gradient_parts(net: NcfWeights, user_embedding, u: int, item_embedding, i: int, history,
                              values) -> ScoreParts:  # fmt: skip
    """``ScoreParts`` of user ``u`` and item ``i`` by integrated gradients from the mean user (module docstring)."""
    users, items = to_host(user_embedding), to_host(item_embedding)  # float32, no copy on the CPU
    baseline = np.mean(users, axis=0, dtype=np.float64)  # the mean user: one pass, no float64 copy of the table
    p, q = users[u].astype(np.float64), items[i].astype(np.float64)
    grad = integrated_gradient(net, baseline, p, q)
    offset = p - baseline
    on_history = items[history].astype(np.float64)  # (n, e)
    if len(history):
        coefficients = np.linalg.lstsq(on_history.T, offset, rcond=None)[0]
    else:
        coefficients = np.zeros(0)
    contributions = coefficients * (on_history @ grad)
    residual = float(grad @ (offset - on_history.T @ coefficients))
    base = net.logit(baseline, q) + residual
    return ScoreParts(history, values, contributions, base, net.logit(p, q), "integrated-gradients")
