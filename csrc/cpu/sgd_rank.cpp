// sgd_rank.cpp — pairwise ranking by SGD for implicit feedback.
//   BPR (Rendle et al. 2009): maximise log sigmoid(x_uij), x_uij = p_u.(q_i - q_j) + b_i - b_j.
//   WARP (Weston, Bengio & Usunier 2011, "WSABIE"; as in LightFM): for a positive (u, i), draw
//   negatives until one violates the margin (s_uj > s_ui - 1), at most max_sampled; after N
//   draws the rank of i is estimated as floor((n_items - 1) / N) and the hinge update
//   1 - s_ui + s_uj is weighted by log(max(1, that rank)). No violator: no update.
// Negatives are verified against the user's sorted CSR row (binary search), so a positive is
// never used as a negative. See recforge/sgd.hpp for the threading/determinism contract.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "recforge/sgd.hpp"
#include "sgd_internal.hpp"

namespace recforge::sgd {
namespace {

using detail::Rng;

// Draws before a positive is declared to have no negative (only users who interacted with
// nearly every item exhaust it; with k positives out of m items it fails w.p. (k/m)^32).
constexpr int kNegativeTries = 32;

inline std::int32_t draw_negative(const Positives& d, Sampling sampling, Rng& rng,
                                  const std::int32_t* row, std::int64_t len) {
    if (len >= d.n_items) return -1;  // the user has every item: no negative exists
    for (int t = 0; t < kNegativeTries; ++t) {
        // Popularity sampling: an item drawn from a random stored entry has probability
        // proportional to its number of users, at O(1) cost.
        const std::int32_t j = sampling == Sampling::uniform
                                   ? static_cast<std::int32_t>(rng.below(static_cast<std::uint64_t>(d.n_items)))
                                   : d.indices[rng.below(static_cast<std::uint64_t>(d.nnz))];
        if (!std::binary_search(row, row + len, j)) return j;
    }
    return -1;
}

// One pairwise step moving s_ui up and s_uj down with weight g (all three rows read before
// any is written).
inline void pair_update(float* __restrict p, float* __restrict qi, float* __restrict qj, int f,
                        float g, float lr, float reg) {
#pragma omp simd
    for (int c = 0; c < f; ++c) {
        const float pc = p[c], ic = qi[c], jc = qj[c];
        p[c] = pc + lr * (g * (ic - jc) - reg * pc);
        qi[c] = ic + lr * (g * pc - reg * ic);
        qj[c] = jc + lr * (-g * pc - reg * jc);
    }
}

RECFORGE_SIMD_CLONES
RankStats rank_range(const Positives& d, const RankModel& m, const RankStep& s, Rng rng,
                     std::int64_t n_samples) {
    const int f = m.factors;
    float* const bias = m.item_bias;
    RankStats st;
    double loss = 0.0;
    for (std::int64_t t = 0; t < n_samples; ++t) {
        const std::int64_t idx = static_cast<std::int64_t>(rng.below(static_cast<std::uint64_t>(d.nnz)));
        const std::int32_t u = d.row_of[idx], i = d.indices[idx];
        const std::int32_t* row = d.indices + d.indptr[u];
        const std::int64_t len = d.indptr[u + 1] - d.indptr[u];
        float* __restrict p = m.user_factors + static_cast<std::int64_t>(u) * f;
        float* __restrict qi = m.item_factors + static_cast<std::int64_t>(i) * f;
        if (s.loss == Loss::bpr) {
            for (int n = 0; n < s.negatives; ++n) {
                const std::int32_t j = draw_negative(d, s.sampling, rng, row, len);
                if (j < 0) {
                    ++st.skipped;
                    break;
                }
                float* __restrict qj = m.item_factors + static_cast<std::int64_t>(j) * f;
                float x = detail::dot(p, qi, f) - detail::dot(p, qj, f);
                if (bias) x += bias[i] - bias[j];
                // -log sigmoid(x) and sigmoid(-x) from one exp, stable for large |x|.
                const float z = std::exp(-std::fabs(x));
                const float g = x >= 0.f ? z / (1.f + z) : 1.f / (1.f + z);
                loss += static_cast<double>(std::max(-x, 0.f) + std::log1p(z));
                pair_update(p, qi, qj, f, g, s.lr, s.reg);
                if (bias) {
                    bias[i] += s.lr * (g - s.reg * bias[i]);
                    bias[j] += s.lr * (-g - s.reg * bias[j]);
                }
                ++st.pairs;
                ++st.updates;
            }
        } else {  // WARP
            float pos = detail::dot(p, qi, f);
            if (bias) pos += bias[i];
            for (int n = 1; n <= s.max_sampled; ++n) {
                const std::int32_t j = draw_negative(d, s.sampling, rng, row, len);
                if (j < 0) {
                    ++st.skipped;
                    break;
                }
                float* __restrict qj = m.item_factors + static_cast<std::int64_t>(j) * f;
                float neg = detail::dot(p, qj, f);
                if (bias) neg += bias[j];
                ++st.pairs;
                if (neg > pos - 1.f) {
                    const float rank = std::floor(static_cast<float>(d.n_items - 1) / static_cast<float>(n));
                    const float w = std::log(std::max(1.f, rank));
                    loss += static_cast<double>(w) * (1.0 - pos + neg);
                    pair_update(p, qi, qj, f, w, s.lr, s.reg);
                    if (bias) {
                        bias[i] += s.lr * (w - s.reg * bias[i]);
                        bias[j] += s.lr * (-w - s.reg * bias[j]);
                    }
                    ++st.updates;
                    break;
                }
            }
        }
    }
    st.loss = loss;
    return st;
}

}  // namespace

RankStats rank_epoch(const Positives& d, const RankModel& m, const RankStep& s) {
    RankStats total;
    if (d.nnz <= 0) return total;
    const auto parts = detail::per_thread<RankStats>(s.threads, [&](int t, int nt) {
        const std::int64_t n = detail::share_begin(d.nnz, t + 1, nt) - detail::share_begin(d.nnz, t, nt);
        return rank_range(d, m, s, Rng(s.seed, s.epoch, static_cast<std::uint64_t>(t)), n);
    });
    for (const RankStats& p : parts) {
        total.loss += p.loss;
        total.pairs += p.pairs;
        total.updates += p.updates;
        total.skipped += p.skipped;
    }
    // BPR: mean over scored pairs; WARP: mean over sampled positives (0 for a non-violated one).
    const std::int64_t denom = s.loss == Loss::bpr ? total.pairs : d.nnz;
    total.loss = denom > 0 ? total.loss / static_cast<double>(denom) : 0.0;
    return total;
}

void sample_negatives(const Positives& d, const std::int32_t* users, std::int64_t n,
                      Sampling sampling, std::uint64_t seed, std::int32_t* out) {
    Rng rng(seed, 0, 0);
    for (std::int64_t k = 0; k < n; ++k) {
        const std::int32_t u = users[k];
        out[k] = draw_negative(d, sampling, rng, d.indices + d.indptr[u], d.indptr[u + 1] - d.indptr[u]);
    }
}

}  // namespace recforge::sgd
