// sgd_rank.cpp — pairwise ranking by SGD for implicit feedback.
//   BPR (Rendle et al. 2009): maximise log sigmoid(x_uij), x_uij = p_u.(q_i - q_j) + b_i - b_j.
//   WARP (Weston, Bengio & Usunier 2011, "WSABIE"; as in LightFM): for a positive (u, i), draw
//   negatives until one violates the margin (s_uj > s_ui - 1), at most max_sampled; after N
//   draws the rank of i is estimated as floor((n_items - 1) / N) and the hinge update
//   1 - s_ui + s_uj is weighted by log(max(1, that rank)). No violator: no update.
// Negatives are verified against the user's sorted CSR row (binary search), so a positive is
// never used as a negative. See recforge/sgd.hpp for the threading/determinism contract.
//
// Speed: every sample touches ~5 random cache lines outside the factor rows (the sampled entry,
// the user's indptr and row) plus 3 factor rows; on data larger than the cache each is a DRAM
// miss. Samples are therefore drawn kAhead steps in advance and their lines prefetched in
// stages (entry -> user's rows -> negative), so the misses overlap instead of queueing.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "recforge/parallel.hpp"
#include "recforge/rng.hpp"
#include "recforge/sgd.hpp"
#include "recforge/simd.hpp"
#include "sgd_internal.hpp"

namespace recforge::sgd {
namespace {

// Draws before a positive is declared to have no negative (only users who interacted with
// nearly every item exhaust it; with k positives out of m items it fails w.p. (k/m)^32).
constexpr int kNegativeTries = 32;
// Pipeline depth (samples between consecutive prefetch stages): on 4M samples over 200K users x
// 50K items, 8 beat 2, 4 and 16 (490 vs 644, 523, 720 ns/sample, one thread, busy machine).
constexpr std::int64_t kAhead = 8;
// Membership-search steps taken in flight: each sample's search advances one step in each of
// the kSearchSteps iterations before its use, the rest at use. Measured (one thread, busy
// machine, ns/sample, before -> 3 / 7 / 15 steps): ml-100k-sized 60 -> 76 / 124 / 170; 4M
// samples with 200-item rows 490-730 -> 310 / 330 / 400. Three pipelined probes cover the
// top of a long row's search tree, where the cache misses are.
constexpr std::int64_t kSearchSteps = 3;
constexpr std::int64_t kRing = 64;  // >= 4 * kAhead + 1, a power of two
static_assert(kRing >= 4 * kAhead + 1 && (kRing & (kRing - 1)) == 0, "ring too small");

// The positives as the hot loop reads them: plain fields, loaded once.
struct Rows {
    const std::int64_t* indptr;
    const std::int32_t* indices;
    const std::int32_t* row_of;
    std::int64_t nnz;
    std::int64_t n_items;
    explicit Rows(const Positives& p)
        : indptr(p.csr.indptr), indices(p.csr.indices), row_of(p.row_of), nnz(p.csr.nnz()), n_items(p.csr.n_cols) {}
};

// True when j is in the sorted row[0..len). Branch-free halving: the comparisons depend on
// random data, so a branchy search mispredicts about once per step.
inline bool in_row(const std::int32_t* row, std::int64_t len, std::int32_t j) {
    if (len == 0) return false;
    const std::int32_t* base = row;
    std::int64_t n = len;
    while (n > 1) {
        const std::int64_t half = n / 2;
        base = base[half] <= j ? base + half : base;
        n -= half;
    }
    return *base == j;
}

inline std::int32_t candidate(const Rows& d, Sampling sampling, SplitMix64& rng) {
    // Popularity sampling: an item drawn from a random stored entry has probability
    // proportional to its number of users, at O(1) cost.
    return sampling == Sampling::uniform ? static_cast<std::int32_t>(rng.below(static_cast<std::uint64_t>(d.n_items)))
                                         : d.indices[rng.below(static_cast<std::uint64_t>(d.nnz))];
}

inline std::int32_t draw_negative(const Rows& d, Sampling sampling, SplitMix64& rng, const std::int32_t* row,
                                  std::int64_t len) {
    if (len >= d.n_items) return -1;  // the user has every item: no negative exists
    for (int t = 0; t < kNegativeTries; ++t) {
        const std::int32_t j = candidate(d, sampling, rng);
        if (!in_row(row, len, j)) return j;
    }
    return -1;
}

inline void prefetch_row(const float* p, int f) {
    for (int c = 0; c < f; c += 16) __builtin_prefetch(p + c);
}

// One pairwise step moving s_ui up and s_uj down with weight g (all three rows read before
// any is written).
inline void pair_update(float* __restrict p, float* __restrict qi, float* __restrict qj, int f, float g, float lr,
                        float item_lr, float reg) {
#pragma omp simd
    for (int c = 0; c < f; ++c) {
        const float pc = p[c], ic = qi[c], jc = qj[c];
        p[c] = pc + lr * (g * (ic - jc) - reg * pc);
        qi[c] = ic + item_lr * (g * pc - reg * ic);
        qj[c] = jc + item_lr * (-g * pc - reg * jc);
    }
}

// Sum of log(1 + z) over many z in [0, 1] with one multiply each: the product is kept in a
// double and folded into the sum every 512 factors (each <= 2, so it cannot overflow).
struct LogSum {
    double sum = 0.0, prod = 1.0;
    int count = 0;
    void add(double one_plus_z) {
        prod *= one_plus_z;
        if (++count == 512) {
            sum += std::log(prod);
            prod = 1.0;
            count = 0;
        }
    }
    double total() const { return sum + std::log(prod); }
};

struct Slot {                    // one upcoming sample moving through the prefetch stages
    std::int64_t idx;            // stored entry (the positive)
    const std::int32_t* base;    // binary search of j in the user's row: current window
    std::int64_t n;              //   [base, base + n), halved once per pipeline step
    std::int32_t u, i, j;
};

// One halving step of the membership search (the same steps as in_row), then a prefetch of the
// next probe: the searches of the samples in flight advance together, so the misses of a long
// row (a heavy user's, thousands of entries) overlap instead of forming one dependent chain.
// Branch-free: a finished search (n == 1) takes a no-op step (half == 0), which costs less than
// the mispredictions of testing for it.
inline void search_step(Slot& sl) {
    const std::int64_t half = sl.n / 2;
    sl.base += half & -static_cast<std::int64_t>(sl.base[half] <= sl.j);  // arithmetic, not a branch
    sl.n -= half;
    __builtin_prefetch(sl.base + sl.n / 2);
}

// Probed by the searches of empty rows (which sampling never produces, but the kernel must not
// read past the index array even then).
constexpr std::int32_t kEmptyRow[1] = {-1};

RECFORGE_SIMD_CLONES(RECFORGE_ISA_F)
// Stops early (results discarded by the caller) when `stop` asks: polled every kPollEvery samples
// and every kPollEvery negatives, so a huge `negatives` or `max_sampled` stays interruptible.
RankStats rank_range(const Rows& d, const RankModel& m, const RankStep& s, SplitMix64 rng, std::int64_t n_samples,
                     StopToken* stop) {
    const int f = m.factors;
    float* const bias = m.item_bias;
    const float lr = s.lr, reg = s.reg;
    // Frozen items get a zero step: x + 0 * g == x, without a branch in the hot loop.
    const float item_lr = s.freeze_items ? 0.f : s.lr;
    RankStats st;
    LogSum softplus;      // BPR: sum of log(1 + exp(-|x|))
    double hinge = 0.0;   // BPR: sum of max(-x, 0); WARP: weighted hinge
    Slot ring[kRing];

    // Stage 1 (t + 4A): draw the positive entry, prefetch it.
    auto stage1 = [&](std::int64_t t) {
        Slot& sl = ring[t & (kRing - 1)];
        sl.idx = static_cast<std::int64_t>(rng.below(static_cast<std::uint64_t>(d.nnz)));
        __builtin_prefetch(d.row_of + sl.idx);
        __builtin_prefetch(d.indices + sl.idx);
    };
    // Stage 2 (t + 3A): the user and positive are in cache; prefetch their rows.
    auto stage2 = [&](std::int64_t t) {
        Slot& sl = ring[t & (kRing - 1)];
        sl.u = d.row_of[sl.idx];
        sl.i = d.indices[sl.idx];
        __builtin_prefetch(d.indptr + sl.u);
        prefetch_row(m.user_factors + static_cast<std::int64_t>(sl.u) * f, f);
        prefetch_row(m.item_factors + static_cast<std::int64_t>(sl.i) * f, f);
    };
    // Stage 3 (t + 2A): draw the first negative candidate, prefetch its factor row and start its
    // membership search in the user's row (advanced one step per sample until t).
    auto stage3 = [&](std::int64_t t) {
        Slot& sl = ring[t & (kRing - 1)];
        sl.j = candidate(d, s.sampling, rng);
        const std::int64_t b = d.indptr[sl.u], len = d.indptr[sl.u + 1] - b;
        sl.base = len > 0 ? d.indices + b : kEmptyRow;
        sl.n = len > 0 ? len : 1;
        __builtin_prefetch(sl.base + sl.n / 2);
        prefetch_row(m.item_factors + static_cast<std::int64_t>(sl.j) * f, f);
        if (bias) __builtin_prefetch(bias + sl.j);
    };
    for (std::int64_t t = 0; t < std::min<std::int64_t>(4 * kAhead, n_samples); ++t) stage1(t);
    for (std::int64_t t = 0; t < std::min<std::int64_t>(3 * kAhead, n_samples); ++t) stage2(t);
    for (std::int64_t t = 0; t < std::min<std::int64_t>(2 * kAhead, n_samples); ++t) stage3(t);

    for (std::int64_t t = 0; t < n_samples; ++t) {
        if ((t & (detail::kPollEvery - 1)) == 0 && stop_requested(stop)) break;
        if (t + 4 * kAhead < n_samples) stage1(t + 4 * kAhead);
        if (t + 3 * kAhead < n_samples) stage2(t + 3 * kAhead);
        if (t + 2 * kAhead < n_samples) stage3(t + 2 * kAhead);
        for (std::int64_t k = 1; k <= kSearchSteps && t + k < n_samples; ++k) search_step(ring[(t + k) & (kRing - 1)]);
        Slot& sl = ring[t & (kRing - 1)];
        while (sl.n > 1) search_step(sl);
        const std::int32_t u = sl.u, i = sl.i;
        const std::int32_t* row = d.indices + d.indptr[u];
        const std::int64_t len = d.indptr[u + 1] - d.indptr[u];
        float* __restrict p = m.user_factors + static_cast<std::int64_t>(u) * f;
        float* __restrict qi = m.item_factors + static_cast<std::int64_t>(i) * f;
        // The prefetched candidate is the first draw; a positive one is redrawn inline.
        std::int32_t j = sl.j;
        if (len >= d.n_items) j = -1;
        else if (len > 0 && *sl.base == j) j = draw_negative(d, s.sampling, rng, row, len);

        if (s.loss == Loss::bpr) {
            for (int n = 0; n < s.negatives; ++n) {
                if ((n & (detail::kPollEvery - 1)) == detail::kPollEvery - 1 && stop_requested(stop)) break;
                if (n > 0) j = draw_negative(d, s.sampling, rng, row, len);
                if (j < 0) {
                    ++st.skipped;
                    break;
                }
                float* __restrict qj = m.item_factors + static_cast<std::int64_t>(j) * f;
                float x = simd::dot(p, qi, f) - simd::dot(p, qj, f);
                if (bias) x += bias[i] - bias[j];
                // -log sigmoid(x) = max(-x, 0) + log(1 + exp(-|x|)) and sigmoid(-x), from one exp.
                const float z = std::exp(-std::fabs(x));
                const float g = x >= 0.f ? z / (1.f + z) : 1.f / (1.f + z);
                hinge += static_cast<double>(std::max(-x, 0.f));
                softplus.add(1.0 + static_cast<double>(z));
                pair_update(p, qi, qj, f, g, lr, item_lr, reg);
                if (bias) {
                    bias[i] += item_lr * (g - reg * bias[i]);
                    bias[j] += item_lr * (-g - reg * bias[j]);
                }
                ++st.pairs;
                ++st.updates;
            }
        } else {  // WARP
            float pos = simd::dot(p, qi, f);
            if (bias) pos += bias[i];
            for (int n = 1; n <= s.max_sampled; ++n) {
                if ((n & (detail::kPollEvery - 1)) == 0 && stop_requested(stop)) break;
                if (n > 1) j = draw_negative(d, s.sampling, rng, row, len);
                if (j < 0) {
                    ++st.skipped;
                    break;
                }
                float* __restrict qj = m.item_factors + static_cast<std::int64_t>(j) * f;
                float neg = simd::dot(p, qj, f);
                if (bias) neg += bias[j];
                ++st.pairs;
                if (neg > pos - 1.f) {
                    const float rank = std::floor(static_cast<float>(d.n_items - 1) / static_cast<float>(n));
                    const float w = std::log(std::max(1.f, rank));
                    hinge += static_cast<double>(w) * (1.0 - pos + neg);
                    pair_update(p, qi, qj, f, w, lr, item_lr, reg);
                    if (bias) {
                        bias[i] += item_lr * (w - reg * bias[i]);
                        bias[j] += item_lr * (-w - reg * bias[j]);
                    }
                    ++st.updates;
                    break;
                }
            }
        }
    }
    st.loss = hinge + (s.loss == Loss::bpr ? softplus.total() : 0.0);
    return st;
}

}  // namespace

RankStats rank_epoch(const Positives& p, const RankModel& m, const RankStep& s) {
    const Rows d(p);
    RankStats total;
    if (d.nnz <= 0) return total;
    StopToken* const stop = StopToken::current();
    const auto parts = per_thread<RankStats>(detail::useful_threads(s.threads, d.nnz), [&](int t, int nt) {
        const std::int64_t n = share_begin(d.nnz, t + 1, nt) - share_begin(d.nnz, t, nt);
        return rank_range(d, m, s, detail::stream(s.seed, s.epoch, static_cast<std::uint64_t>(t)), n, stop);
    });
    throw_if_stopped(stop);
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

void sample_negatives(const Positives& p, const std::int32_t* users, std::int64_t n, Sampling sampling,
                      std::uint64_t seed, std::int32_t* out) {
    const Rows d(p);
    SplitMix64 rng = detail::stream(seed, 0, 0);
    for (std::int64_t k = 0; k < n; ++k) {
        const std::int32_t u = users[k];
        out[k] = draw_negative(d, sampling, rng, d.indices + d.indptr[u], d.indptr[u + 1] - d.indptr[u]);
    }
}

}  // namespace recforge::sgd
