// sgd_mf.cpp — biased matrix factorisation by SGD (Funk 2006; Koren, Bell & Volinsky 2009):
//   r_hat(u, i) = mu + b_u + b_i + p_u . q_i,  minimising squared error + L2.
// Hogwild over a per-epoch shuffle; see recforge/sgd.hpp for the contract.
#include <algorithm>
#include <cstdint>

#include "recforge/parallel.hpp"
#include "recforge/rng.hpp"
#include "recforge/sgd.hpp"
#include "recforge/simd.hpp"
#include "sgd_internal.hpp"

namespace recforge::sgd {
namespace {

// Rows are fetched this many ratings ahead: the factor rows of a random rating are cache
// misses on large data, and the visiting order is known in advance.
constexpr std::int64_t kPrefetch = 8;

// Updates for ratings r[begin..end); returns the sum of squared pre-update errors. F > 0 fixes
// the factor count at compile time (fully unrolled vector loops, no remainder code: ~15 % faster
// per update at f = 32/64); F == 0 reads it from the model.
template <int F>
RECFORGE_SIMD_CLONES(RECFORGE_ISA_F)
double mf_range(const Rating* r, const MFModel& m, float lr, float item_lr, float reg, float bias_reg,
                std::int64_t begin, std::int64_t end, StopToken* stop) {
    const int f = F > 0 ? F : m.factors;
    const bool biases = m.user_bias != nullptr;
    double sse = 0.0;
    for (std::int64_t t = begin; t < end; ++t) {
        if (((t - begin) & (detail::kPollEvery - 1)) == 0 && stop_requested(stop)) break;  // results dropped
        if (t + kPrefetch < end) {
            __builtin_prefetch(m.user_factors + static_cast<std::int64_t>(r[t + kPrefetch].user) * f);
            __builtin_prefetch(m.item_factors + static_cast<std::int64_t>(r[t + kPrefetch].item) * f);
        }
        const std::int32_t u = r[t].user, i = r[t].item;
        float* __restrict p = m.user_factors + static_cast<std::int64_t>(u) * f;
        float* __restrict q = m.item_factors + static_cast<std::int64_t>(i) * f;
        float pred = m.global_mean + simd::dot(p, q, f);
        if (biases) pred += m.user_bias[u] + m.item_bias[i];
        const float err = r[t].value - pred;
        sse += static_cast<double>(err) * err;
        if (biases) {
            m.user_bias[u] += lr * (err - bias_reg * m.user_bias[u]);
            m.item_bias[i] += item_lr * (err - bias_reg * m.item_bias[i]);
        }
        // Simultaneous step: both rows move along the gradient taken at their old values.
#pragma omp simd
        for (int c = 0; c < f; ++c) {
            const float pc = p[c], qc = q[c];
            p[c] = pc + lr * (err * qc - reg * pc);
            q[c] = qc + item_lr * (err * pc - reg * qc);
        }
    }
    return sse;
}

}  // namespace

double mf_epoch(Rating* r, std::int64_t n, const MFModel& m, const MFStep& s) {
    if (n <= 0) return 0.0;
    // Fisher-Yates on the triplets themselves (not an index), so the update loop then reads
    // them sequentially; one stream per epoch, so the order does not depend on threads.
    SplitMix64 rng = detail::stream(s.seed, s.epoch, 0xffffffffULL);
    for (std::int64_t k = n - 1; k > 0; --k) {
        const auto j = static_cast<std::int64_t>(rng.below(static_cast<std::uint64_t>(k) + 1));
        const Rating tmp = r[k];
        r[k] = r[j];
        r[j] = tmp;
    }
    StopToken* const stop = StopToken::current();
    const auto sse = per_thread<double>(detail::useful_threads(s.threads, n), [&](int t, int nt) {
        const std::int64_t b = share_begin(n, t, nt), e = share_begin(n, t + 1, nt);
        // Frozen items get a zero step: x + 0 * g == x, without a branch in the hot loop.
        const float item_lr = s.freeze_items ? 0.f : s.lr;
        switch (m.factors) {
            case 16:
                return mf_range<16>(r, m, s.lr, item_lr, s.reg, s.bias_reg, b, e, stop);
            case 32:
                return mf_range<32>(r, m, s.lr, item_lr, s.reg, s.bias_reg, b, e, stop);
            case 64:
                return mf_range<64>(r, m, s.lr, item_lr, s.reg, s.bias_reg, b, e, stop);
            case 128:
                return mf_range<128>(r, m, s.lr, item_lr, s.reg, s.bias_reg, b, e, stop);
            default:
                return mf_range<0>(r, m, s.lr, item_lr, s.reg, s.bias_reg, b, e, stop);
        }
    });
    throw_if_stopped(stop);
    double total = 0.0;
    for (double v : sse) total += v;
    return total / static_cast<double>(n);
}

RECFORGE_SIMD_CLONES(RECFORGE_ISA_F)
static void mf_predict_range(const MFModel& m, std::int32_t n_users, std::int32_t n_items, const std::int64_t* users,
                             const std::int64_t* items, std::int64_t begin, std::int64_t end, float* out) {
    const int f = m.factors;
    for (std::int64_t k = begin; k < end; ++k) {
        const std::int64_t u = users[k], i = items[k];
        const bool ku = u >= 0 && u < n_users, ki = i >= 0 && i < n_items;
        float s = m.global_mean;
        if (ku && ki) s += simd::dot(m.user_factors + u * f, m.item_factors + i * f, f);
        if (m.user_bias && ku) s += m.user_bias[u];
        if (m.item_bias && ki) s += m.item_bias[i];
        out[k] = s;
    }
}

void mf_predict(const MFModel& m, std::int32_t n_users, std::int32_t n_items, const std::int64_t* users,
                const std::int64_t* items, std::int64_t n, int threads, float* out) {
    constexpr std::int64_t kChunk = 4096;
    parallel_for(0, (n + kChunk - 1) / kChunk, detail::useful_threads(threads, n), 1, [&](std::int64_t c) {
        mf_predict_range(m, n_users, n_items, users, items, c * kChunk, std::min(n, (c + 1) * kChunk), out);
    });
}

}  // namespace recforge::sgd
