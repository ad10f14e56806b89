"""Synthetic interactions with power-law activity/popularity and a planted low-rank structure.

Generative model (a topic model, so ``P(item | user)`` has rank ``factors + 1``):

* item popularity ``pop_i ∝ rank_i ** -item_exponent`` (ranks a random permutation);
* every item has topic weights ``Q_i ~ Dirichlet(concentration)`` over ``factors`` topics, and
  topic ``k`` picks item ``i`` with probability ``phi_ki ∝ pop_i * Q_ik``;
* every user has topic weights ``theta_u ~ Dirichlet(concentration)``; a share ``noise`` of
  each user's draws comes from plain popularity instead (an extra "topic" ``phi_K = pop``);
* user ``u`` makes ``n_u`` distinct interactions, ``n_u ∝ rank_u ** -user_exponent`` (at least
  1, at most half the catalogue), summing to exactly ``nnz``.

Sampling is vectorised: per user a multinomial over topics, per topic one multinomial over
items for all its draws, shuffled onto the users' slots. Repeated (user, item) draws are removed
(sorted keys) and redrawn for the users that fall short, so the result has exactly ``nnz``
distinct pairs, ordered by (user, item). Ratings (1-5) rise with the planted affinity (the
user's topic weight on the item's main topic) plus user/item biases and noise, so explicit
models can learn them too.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from .._validation import check_nonnegative, check_positive

__all__ = ["synthetic", "SyntheticTruth"]


class SyntheticTruth(NamedTuple):
    """The planted model behind :func:`synthetic` (``return_truth=True``)."""

    user_topics: np.ndarray  #: (n_users, factors + 1) float64, rows sum to 1 (last: popularity share)
    item_topics: np.ndarray  #: (factors + 1, n_items) float64, P(item | topic), rows sum to 1
    item_affinity: np.ndarray  #: (n_items, factors) float64, Dirichlet topic weights Q (rows sum to 1)
    popularity: np.ndarray  #: (n_items,) float64, base popularity, sums to 1

    def scores(self, users) -> np.ndarray:
        """P(item | user) for ``users`` (int array of shape (n,)): float64 array of shape (n, n_items)."""
        return self.user_topics[np.asarray(users)] @ self.item_topics


def _user_counts(n_users: int, n_items: int, nnz: int, exponent: float, rng) -> np.ndarray:
    """Per-user interaction counts: power law in a random rank order, each in [1, cap], summing to nnz."""
    cap = max(1, n_items // 2)
    w = rng.permutation(np.arange(1, n_users + 1, dtype=np.float64)) ** -exponent
    extra_total = nnz - n_users  # everyone gets 1, the rest follows the power law
    x = np.zeros(n_users)
    free = np.ones(n_users, dtype=bool)
    for _ in range(64):  # water-filling: clip at the cap, give the excess to the others
        rest = extra_total - x[~free].sum()
        x[free] = rest * w[free] / w[free].sum()
        over = free & (x > cap - 1)
        if not over.any():
            break
        x[over] = cap - 1
        free &= ~over
    base = np.floor(x).astype(np.int64)
    short = extra_total - int(base.sum())
    if short > 0:  # largest remainders among users below the cap
        frac = np.where(base < cap - 1, x - base, -1.0)
        base[np.argpartition(-frac, short - 1)[:short]] += 1
    return base + 1


def _draw(users: np.ndarray, m: np.ndarray, theta: np.ndarray, phi: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray]:
    """``m[j]`` independent item draws for each user ``users[j]``: (user of each draw, item).

    Per user a multinomial split of its draws over topics; per topic one multinomial over the
    items for all its draws together, shuffled onto the users' slots. Loops run over topics only.
    """
    per_topic = rng.multinomial(m, theta[users])  # (len(users), topics)
    n_items = phi.shape[1]
    # int32 halves the memory traffic of the big arrays; outputs are filled in place.
    total = int(per_topic.sum())
    out_users = np.empty(total, dtype=np.int32)
    out_items = np.empty(total, dtype=np.int32)
    users32 = users.astype(np.int32)
    start = 0
    for k in range(phi.shape[0]):
        c = per_topic[:, k]
        n_k = int(c.sum())
        if n_k == 0:
            continue
        items = np.repeat(np.arange(n_items, dtype=np.int32), rng.multinomial(n_k, phi[k]))
        rng.shuffle(items)
        out_items[start : start + n_k] = items
        out_users[start : start + n_k] = np.repeat(users32, c)
        start += n_k
    return out_users, out_items


def synthetic(
    n_users: int = 10_000,
    n_items: int = 5_000,
    nnz: int = 500_000,
    factors: int = 16,
    seed: int = 0,
    *,
    user_exponent: float = 0.8,
    item_exponent: float = 0.8,
    concentration: float = 0.05,
    noise: float = 0.05,
    timestamps: bool = True,
    return_truth: bool = False,
):
    """Seeded synthetic interactions with a planted low-rank preference structure.

    Parameters
    ----------
    n_users, n_items : int
        Every user gets at least one interaction; items nobody picked are absent.
    nnz : int
        Exact number of distinct (user, item) pairs, ``n_users <= nnz <= n_users * (n_items // 2)``.
    factors : int
        Number of planted topics.
    seed : int
        Same seed and arguments, same data.
    user_exponent, item_exponent : float >= 0
        Power-law exponents of user activity and item popularity (0: uniform).
    concentration : float > 0
        Dirichlet concentration of user and item topic weights; small values give users and
        items few topics each (a strong structure), large values a weak one.
    noise : float in [0, 1]
        Share of each user's draws that follows plain popularity.
    timestamps : bool
        Add a ``timestamp`` column (int64 unix seconds, uniform over three years from 2017).
    return_truth : bool
        Also return the planted model as a :class:`SyntheticTruth`.

    Returns
    -------
    pandas.DataFrame with columns ``user`` (int64 in [0, n_users)), ``item`` (int64 in
    [0, n_items)), ``rating`` (float32, integers 1-5) and ``timestamp``; or
    ``(DataFrame, SyntheticTruth)`` when ``return_truth``.
    """
    n_users = check_positive(n_users, "n_users", integer=True)
    n_items = check_positive(n_items, "n_items", integer=True)
    nnz = check_positive(nnz, "nnz", integer=True)
    factors = check_positive(factors, "factors", integer=True)
    user_exponent = check_nonnegative(user_exponent, "user_exponent")
    item_exponent = check_nonnegative(item_exponent, "item_exponent")
    concentration = check_positive(concentration, "concentration")
    noise = check_nonnegative(noise, "noise")
    if noise > 1:
        raise ValueError(f"noise must be in [0, 1], got {noise}")
    cap = max(1, n_items // 2)
    if not n_users <= nnz <= n_users * cap:
        raise ValueError(
            f"nnz must be in [n_users, n_users * (n_items // 2)] = [{n_users}, {n_users * cap}], got {nnz}"
        )
    rng = np.random.default_rng(seed)

    # --- the planted model
    pop = rng.permutation(np.arange(1, n_items + 1, dtype=np.float64)) ** -item_exponent
    pop /= pop.sum()
    q = rng.gamma(concentration, size=(n_items, factors))  # Dirichlet via normalised gammas
    q /= np.maximum(q.sum(axis=1, keepdims=True), 1e-300)
    phi = np.vstack([(pop[:, None] * q).T, pop[None, :]])  # (factors + 1, n_items)
    phi /= phi.sum(axis=1, keepdims=True)
    theta = rng.gamma(concentration, size=(n_users, factors))
    theta /= np.maximum(theta.sum(axis=1, keepdims=True), 1e-300)
    theta = np.hstack([(1.0 - noise) * theta, np.full((n_users, 1), noise)])

    counts = _user_counts(n_users, n_items, nnz, user_exponent, rng)

    # --- sampling: exact per-user draws; repeated pairs are redrawn for the users left short
    chunks: list[np.ndarray] = []  # sorted, disjoint arrays of accepted keys
    need = counts.copy()
    for round_ in range(64):
        users = np.flatnonzero(need)
        if users.size == 0:
            break
        if round_ < 8:
            draw_users, items = _draw(users, need[users], theta, phi, rng)
        else:  # the few left after 8 rounds (heavy users, skewed catalogue): uniform items
            draw_users = np.repeat(users, need[users])
            items = rng.integers(0, n_items, len(draw_users))
        keys = draw_users.astype(np.int64)
        keys *= n_items
        keys += items
        keys.sort()
        keys = keys[np.concatenate(([True], keys[1:] != keys[:-1]))]  # (np.unique hashes: slower)
        for c in filter(len, chunks):  # drop pairs accepted in an earlier round
            pos = np.minimum(np.searchsorted(c, keys), len(c) - 1)
            keys = keys[c[pos] != keys]
        chunks.append(keys)
        need -= np.bincount(keys // n_items, minlength=n_users)
    # Few sorted runs: the stable sort (timsort) merges them in about linear time.
    keys = np.sort(np.concatenate(chunks), kind="stable")
    if len(keys) != nnz:  # cannot happen: the cap leaves every user enough free items
        raise RuntimeError(f"synthetic: sampled {len(keys)} pairs instead of {nnz}")

    u = keys // n_items
    i = keys - u * n_items
    # --- ratings: planted affinity (the user's weight on the item's main topic), standardised,
    # plus biases and noise -> 1..5. One gather per pair, unlike the full theta_u . Q_i.
    main_topic = q.argmax(axis=1)
    aff = theta[:, :factors].ravel()[u * factors + main_topic[i]]
    aff = (aff - aff.mean()) / (aff.std() + 1e-12)
    latent = rng.standard_normal(len(u), dtype=np.float32)
    latent *= 0.6
    latent += (3.6 + 0.9 * aff).astype(np.float32)
    latent += rng.normal(0, 0.4, n_items).astype(np.float32)[i]
    latent += rng.normal(0, 0.3, n_users).astype(np.float32)[u]
    rating = np.clip(np.rint(latent, out=latent), 1, 5, out=latent)
    df = pd.DataFrame({"user": u, "item": i, "rating": rating}, copy=False)  # no block copies
    if timestamps:
        df["timestamp"] = rng.integers(1_483_228_800, 1_483_228_800 + 3 * 365 * 86_400, len(u), dtype=np.int64)
    if return_truth:
        return df, SyntheticTruth(theta, phi, q, pop)
    return df
