// The hybrid factor model's epoch (recforge/hybrid.hpp): Hogwild Adagrad over feature embeddings.
#include "recforge/hybrid.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "recforge/parallel.hpp"
#include "recforge/rng.hpp"
#include "recforge/simd.hpp"

namespace recforge::hybrid {

namespace {

constexpr std::int64_t kBlock = 4096;  // samples per random stream
constexpr float kEps = 1e-6f;

// out = sum_k F[row, k] * emb[k] (f floats); bias (when given) = sum_k F[row, k] * b[k]. Sixteen
// lanes at a time, summed over the row's features in a register (the same additions, in the same
// order, as a loop over features outside), then stored once.
RECFORGE_INLINE void represent(const CsrView& F, std::int64_t row, const float* emb, const float* b, int f,
                               float* __restrict out, float* bias) {
    const std::int64_t begin = F.indptr[row], end = F.indptr[row + 1];
    int d = 0;
#if defined(__GNUC__)
    for (; d + 16 <= f; d += 16) {
        simd::v16f acc = {};
        for (std::int64_t p = begin; p < end; ++p)
            acc += F.data[p] *
                   *reinterpret_cast<const simd::v16f*>(emb + static_cast<std::int64_t>(F.indices[p]) * f + d);
        *reinterpret_cast<simd::v16f*>(out + d) = acc;
    }
#endif
    for (; d < f; ++d) {
        float acc = 0.0f;
        for (std::int64_t p = begin; p < end; ++p)
            acc += F.data[p] * emb[static_cast<std::int64_t>(F.indices[p]) * f + d];
        out[d] = acc;
    }
    if (bias) {
        float total = 0.0f;
        for (std::int64_t p = begin; p < end; ++p) total += F.data[p] * b[F.indices[p]];
        *bias = total;
    }
}

// Adagrad ascent along `grad` (f floats, the gradient of the objective with respect to the
// representation) for every feature k of F's row: E[k] += lr * (F[row,k] grad - reg E[k]) / sqrt(G).
RECFORGE_INLINE void update(const CsrView& F, std::int64_t row, const float* grad, float* emb, float* g2, float reg,
                            float lr, int f) {
    for (std::int64_t p = F.indptr[row]; p < F.indptr[row + 1]; ++p) {
        const float w = F.data[p];
        float* e = emb + static_cast<std::int64_t>(F.indices[p]) * f;
        float* g = g2 + static_cast<std::int64_t>(F.indices[p]) * f;
        for (int d = 0; d < f; ++d) {
            const float step = w * grad[d] - reg * e[d];
            g[d] += step * step;
            e[d] += lr * step / std::sqrt(g[d] + kEps);
        }
    }
}

RECFORGE_INLINE void update_bias(const CsrView& F, std::int64_t row, float grad, float* bias, float* g2, float lr) {
    for (std::int64_t p = F.indptr[row]; p < F.indptr[row + 1]; ++p) {
        const std::int32_t k = F.indices[p];
        const float step = F.data[p] * grad;
        g2[k] += step * step;
        bias[k] += lr * step / std::sqrt(g2[k] + kEps);
    }
}

// Whether item i is in user u's row of `m`: one bit of a users x items bitmap when that fits in
// kBitmapBits (an unpredictable binary search per negative draw cost as much as a representation),
// else a binary search of the row.
constexpr std::int64_t kBitmapBits = std::int64_t{1} << 27;  // 16 MiB

struct Positives {
    const CsrView& m;
    std::vector<std::uint64_t> bits;  // empty: binary search

    explicit Positives(const CsrView& rows) : m(rows) {
        if (m.n_rows > kBitmapBits / std::max<std::int64_t>(m.n_cols, 1)) return;
        bits.assign(static_cast<std::size_t>((m.n_rows * m.n_cols + 63) / 64), 0);
        for (std::int64_t u = 0; u < m.n_rows; ++u)
            for (std::int64_t p = m.indptr[u]; p < m.indptr[u + 1]; ++p) {
                const std::int64_t at = u * m.n_cols + m.indices[p];
                bits[static_cast<std::size_t>(at >> 6)] |= std::uint64_t{1} << (at & 63);
            }
    }

    RECFORGE_INLINE bool contains(std::int64_t u, std::int32_t i) const {
        if (!bits.empty()) {
            const std::int64_t at = u * m.n_cols + i;
            return (bits[static_cast<std::size_t>(at >> 6)] >> (at & 63)) & 1;
        }
        return std::binary_search(m.indices + m.indptr[u], m.indices + m.indptr[u + 1], i);
    }
};

RECFORGE_INLINE float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

// WARP's first look at a draw: its score from a table of item representations (one row of f
// floats instead of a sum over the item's feature rows: a fraction of the memory traffic, which
// bounds the epoch on catalogues whose embeddings outgrow the cache). Only a draw that violates
// there is scored exactly, so every step still takes a true violator. The table is computed at
// the start of the epoch and a step's two items are brought up to date after it; the rows of
// other items see a shared feature's changes at the next epoch (a draw whose score rose since may
// be passed over). Empty (every draw scored exactly) for the other losses, which take the first
// draw that is not a positive.
struct Screen {
    std::vector<float> items, bias;  // n_items x f, n_items

    Screen(const CsrView& item_features, const Params& params, const Step& step) {
        if (step.loss != Loss::warp) return;
        const int f = params.factors;
        items.resize(static_cast<std::size_t>(item_features.n_rows) * f);
        bias.resize(static_cast<std::size_t>(item_features.n_rows));
        parallel_for(0, item_features.n_rows, step.threads, 256, [&](std::int64_t i) {
            represent(item_features, i, params.item_emb, params.item_bias, f, items.data() + i * f, &bias[i]);
        });
    }

    // Brings item i's row up to date after a step changed its features' embeddings.
    RECFORGE_INLINE void refresh(const CsrView& item_features, std::int32_t i, const Params& params) {
        if (items.empty()) return;
        const int f = params.factors;
        represent(item_features, i, params.item_emb, params.item_bias, f,
                  items.data() + static_cast<std::int64_t>(i) * f, &bias[i]);
    }

    RECFORGE_INLINE bool may_violate(const float* uv, std::int32_t c, int f, float si) const {
        return items.empty() || simd::dot(uv, items.data() + static_cast<std::int64_t>(c) * f, f) + bias[c] > si - 1.0f;
    }
};

// A user with a positive, drawn with probability proportional to row_nnz(u)^power (Walker's alias
// table, Vose's construction: one uniform slot and one coin per draw). Power 0 is every user with
// history alike (no coin); power 1 is never built (a uniform draw over the positives is the same
// distribution at one random number).
struct UserDraw {
    // Slot k: user with probability keep / 2^53, else alias. One 16-byte record per slot, and the
    // choice made without a branch (the coin is unpredictable by design).
    struct Slot {
        std::uint64_t keep;  // 53-bit threshold: the coin (53 random bits) below it keeps `user`
        std::int32_t user, alias;
    };
    static constexpr double kOne = 9007199254740992.0;  // 2^53
    std::vector<Slot> slots;
    bool uniform = true;

    UserDraw(const CsrView& positives, float power) {
        if (power == 1.0f) return;
        std::vector<double> weight;
        for (std::int64_t u = 0; u < positives.n_rows; ++u)
            if (positives.row_nnz(u) > 0) {
                const auto id = static_cast<std::int32_t>(u);
                slots.push_back({static_cast<std::uint64_t>(kOne), id, id});
                weight.push_back(std::pow(static_cast<double>(positives.row_nnz(u)), static_cast<double>(power)));
            }
        uniform = power == 0.0f;
        if (uniform || slots.empty()) return;
        const std::size_t n = slots.size();
        double total = 0.0;
        for (const double w : weight) total += w;
        std::vector<std::size_t> small, large;
        for (std::size_t k = 0; k < n; ++k) {
            weight[k] *= static_cast<double>(n) / total;
            (weight[k] < 1.0 ? small : large).push_back(k);
        }
        while (!small.empty() && !large.empty()) {
            const std::size_t s = small.back(), l = large.back();
            small.pop_back();
            // coin * 2^-53 < weight  <=>  coin < ceil(weight * 2^53), exactly (a power-of-two scaling).
            slots[s].keep = static_cast<std::uint64_t>(std::ceil(weight[s] * kOne));
            slots[s].alias = slots[l].user;
            weight[l] -= 1.0 - weight[s];
            if (weight[l] < 1.0) {
                large.pop_back();
                small.push_back(l);
            }
        }
        // What is left (rounding) keeps its slot: keep stays 2^53.
    }

    RECFORGE_INLINE std::int32_t draw(SplitMix64& rng) const {
        const Slot& slot = slots[rng.below(slots.size())];
        if (uniform) return slot.user;
        const std::int32_t pick[2] = {slot.alias, slot.user};
        return pick[(rng.next() >> 11) < slot.keep];
    }
};

struct Partial {
    double loss = 0.0;
    std::int64_t samples = 0;
};

// The samples of one block, on its own random stream. Compiled once per instruction set; the
// loader picks the widest the CPU has.
RECFORGE_SIMD_CLONES(RECFORGE_ISA_F)
Partial run_block(const CsrView& positives, const Positives& is_positive, const CsrView& user_features,
                  const CsrView& item_features, const std::int32_t* negatives, std::int64_t n_negatives,
                  const Params& params, const Step& step, const std::int32_t* owner, const UserDraw& users,
                  std::int64_t block, std::int64_t count, Screen& screen) {
    const std::int64_t nnz = positives.nnz();
    const int f = params.factors;
    SplitMix64 rng(epoch_thread_seed(step.seed, step.epoch, static_cast<std::uint64_t>(block)));
    std::vector<float> buf(static_cast<std::size_t>(f) * 6);
    float* uv = buf.data();
    float* iv = uv + f;
    float* jv = iv + f;
    float* gu = jv + f;
    float* gi = gu + f;
    float* gj = gi + f;
    Partial out;
    const auto draw_positive = [&]() -> std::int64_t {
        if (step.user_power == 1.0f) return static_cast<std::int64_t>(rng.below(static_cast<std::uint64_t>(nnz)));
        const std::int32_t u = users.draw(rng);
        return positives.indptr[u] +
               static_cast<std::int64_t>(rng.below(static_cast<std::uint64_t>(positives.row_nnz(u))));
    };
    std::int64_t next = draw_positive();
    for (std::int64_t t = 0; t < count; ++t) {
        const std::int64_t p = next;
        const std::int64_t u = owner[p];
        const std::int32_t i = positives.indices[p];
        represent(user_features, u, params.user_emb, nullptr, f, uv, nullptr);
        float bi = 0.0f, bj = 0.0f;
        represent(item_features, i, params.item_emb, params.item_bias, f, iv, &bi);
        const float si = simd::dot(uv, iv, f) + bi;
        // A negative: drawn until it is not a positive of u (and, for WARP, until it violates).
        std::int32_t j = -1;
        float sj = 0.0f;
        int draws = 0;
        const int max_draws = step.loss == Loss::warp ? step.max_sampled : 16;
        while (draws < max_draws) {
            const std::int32_t c = negatives[rng.below(static_cast<std::uint64_t>(n_negatives))];
            ++draws;
            if (is_positive.contains(u, c)) continue;
            if (!screen.may_violate(uv, c, f, si)) continue;
            represent(item_features, c, params.item_emb, params.item_bias, f, jv, &bj);
            sj = simd::dot(uv, jv, f) + bj;
            if (step.loss != Loss::warp || sj > si - 1.0f) {
                j = c;
                break;
            }
        }
        // The next sample's positive, drawn where the stream would draw it anyway, and fetched from
        // memory while this sample's updates run.
        next = draw_positive();
        __builtin_prefetch(owner + next);
        __builtin_prefetch(positives.indices + next);
        if (j < 0) continue;
        // d objective / d score_i and d score_j.
        float di, dj;
        if (step.loss == Loss::bpr) {
            const float g = sigmoid(sj - si);  // 1 - sigmoid(si - sj)
            di = g;
            dj = -g;
            out.loss += std::log1p(std::exp(-(si - sj)));
        } else if (step.loss == Loss::warp) {
            const float weight = std::log(
                std::max(1.0f, std::floor(static_cast<float>(n_negatives - 1) / static_cast<float>(draws))));
            di = weight;
            dj = -weight;
            out.loss += weight * (1.0f - si + sj);
        } else {
            di = 1.0f - sigmoid(si);
            dj = -sigmoid(sj);
            out.loss += std::log1p(std::exp(-si)) + std::log1p(std::exp(sj));
        }
        ++out.samples;
        for (int d = 0; d < f; ++d) {
            gu[d] = di * iv[d] + dj * jv[d];
            gi[d] = di * uv[d];
            gj[d] = dj * uv[d];
        }
        update(user_features, u, gu, params.user_emb, params.user_emb_g2, step.user_reg, step.lr, f);
        update(item_features, i, gi, params.item_emb, params.item_emb_g2, step.item_reg, step.lr, f);
        update(item_features, j, gj, params.item_emb, params.item_emb_g2, step.item_reg, step.lr, f);
        update_bias(item_features, i, di, params.item_bias, params.item_bias_g2, step.lr);
        update_bias(item_features, j, dj, params.item_bias, params.item_bias_g2, step.lr);
        screen.refresh(item_features, i, params);
        screen.refresh(item_features, j, params);
    }
    return out;
}

}  // namespace

EpochStats epoch(const CsrView& positives, const CsrView& user_features, const CsrView& item_features,
                 const std::int32_t* negatives, std::int64_t n_negatives, const Params& params, const Step& step) {
    const std::int64_t nnz = positives.nnz();
    const std::int64_t n_users = positives.n_rows;
    const std::int64_t blocks = (nnz + kBlock - 1) / kBlock;
    if (nnz == 0 || n_negatives == 0) return {};
    std::vector<Partial> partial(static_cast<std::size_t>(blocks));
    // Each entry's user: the row of entry p (for uniform draws over the positives).
    std::vector<std::int32_t> owner(static_cast<std::size_t>(nnz));
    for (std::int64_t u = 0; u < n_users; ++u)
        std::fill(owner.begin() + positives.indptr[u], owner.begin() + positives.indptr[u + 1],
                  static_cast<std::int32_t>(u));

    const UserDraw users(positives, step.user_power);
    const Positives is_positive(positives);
    Screen screen(item_features, params, step);
    parallel_for(0, blocks, step.threads, 1, [&](std::int64_t block) {
        const std::int64_t count = std::min(kBlock, nnz - block * kBlock);
        partial[block] = run_block(positives, is_positive, user_features, item_features, negatives, n_negatives, params,
                                   step, owner.data(), users, block, count, screen);
    });
    EpochStats stats;
    for (const Partial& p : partial) {
        stats.loss += p.loss;
        stats.samples += p.samples;
    }
    if (stats.samples) stats.loss /= static_cast<double>(stats.samples);
    return stats;
}

}  // namespace recforge::hybrid
