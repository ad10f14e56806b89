// The hybrid factor model's epoch (recforge/hybrid.hpp): Hogwild Adagrad over feature embeddings.
#include "recforge/hybrid.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <mutex>
#include <vector>

#include "recforge/parallel.hpp"
#include "recforge/rng.hpp"
#include "recforge/simd.hpp"

namespace recforge::hybrid {

namespace {

constexpr std::int64_t kBlock = 4096;  // samples per random stream
constexpr float kEps = 1e-6f;

// One side's trained arrays (users: no bias) as the calling thread sees them: the shared arrays,
// except the features of `slot` (slot[k] >= 0), whose rows are the thread's own copies (Local).
struct Rows {
    float* emb = nullptr;
    float* g2 = nullptr;
    float* bias = nullptr;     // null on the user side
    float* bias_g2 = nullptr;
    const std::int32_t* slot = nullptr;  // null: every row shared
    float* own_emb = nullptr;
    float* own_g2 = nullptr;
    float* own_bias = nullptr;
    float* own_bias_g2 = nullptr;
    int f = 0;
    std::int64_t stride = 0;  // floats from one shared row to the next (emb and g2 alike)

    static Rows shared(float* emb, float* g2, float* bias, float* bias_g2, int f, std::int64_t stride) {
        Rows rows;
        rows.emb = emb;
        rows.g2 = g2;
        rows.bias = bias;
        rows.bias_g2 = bias_g2;
        rows.f = f;
        rows.stride = stride > 0 ? stride : f;
        return rows;
    }

    RECFORGE_INLINE std::int32_t own(std::int32_t k) const { return slot ? slot[k] : -1; }
    RECFORGE_INLINE float* emb_row(std::int32_t k, std::int32_t s) const {
        return s < 0 ? emb + k * stride : own_emb + static_cast<std::int64_t>(s) * f;
    }
    RECFORGE_INLINE float* g2_row(std::int32_t k, std::int32_t s) const {
        return s < 0 ? g2 + k * stride : own_g2 + static_cast<std::int64_t>(s) * f;
    }
    RECFORGE_INLINE float* bias_at(std::int32_t k, std::int32_t s) const { return s < 0 ? bias + k : own_bias + s; }
    RECFORGE_INLINE float* bias_g2_at(std::int32_t k, std::int32_t s) const {
        return s < 0 ? bias_g2 + k : own_bias_g2 + s;
    }
};

// out = sum_k F[row, k] * E[k] (f floats); bias (when given, item side) = sum_k F[row, k] * b[k].
// Sixteen lanes at a time, summed over the row's features in a register (the same additions, in
// the same order, as a loop over features outside), then stored once.
RECFORGE_INLINE void represent(const CsrView& F, std::int64_t row, const Rows& rows, float* __restrict out,
                               float* bias) {
    const std::int64_t begin = F.indptr[row], end = F.indptr[row + 1];
    const int f = rows.f;
    int d = 0;
#if defined(__GNUC__)
    for (; d + 16 <= f; d += 16) {
        simd::v16f acc = {};
        for (std::int64_t p = begin; p < end; ++p) {
            const std::int32_t k = F.indices[p];
            acc += F.data[p] * *reinterpret_cast<const simd::v16f*>(rows.emb_row(k, rows.own(k)) + d);
        }
        *reinterpret_cast<simd::v16f*>(out + d) = acc;
    }
#endif
    for (; d < f; ++d) {
        float acc = 0.0f;
        for (std::int64_t p = begin; p < end; ++p) {
            const std::int32_t k = F.indices[p];
            acc += F.data[p] * rows.emb_row(k, rows.own(k))[d];
        }
        out[d] = acc;
    }
    if (bias) {
        float total = 0.0f;
        for (std::int64_t p = begin; p < end; ++p) {
            const std::int32_t k = F.indices[p];
            total += F.data[p] * *rows.bias_at(k, rows.own(k));
        }
        *bias = total;
    }
}

// Adagrad ascent along `grad` (f floats, the gradient of the objective with respect to the
// representation) for every feature k of F's row: E[k] += lr * (F[row,k] grad - reg E[k]) / sqrt(G).
RECFORGE_INLINE void update(const CsrView& F, std::int64_t row, const float* grad, const Rows& rows, float reg,
                            float lr) {
    const int f = rows.f;
    for (std::int64_t p = F.indptr[row]; p < F.indptr[row + 1]; ++p) {
        const float w = F.data[p];
        const std::int32_t k = F.indices[p], s = rows.own(k);
        float* e = rows.emb_row(k, s);
        float* g = rows.g2_row(k, s);
        for (int d = 0; d < f; ++d) {
            const float step = w * grad[d] - reg * e[d];
            g[d] += step * step;
            e[d] += lr * step / std::sqrt(g[d] + kEps);
        }
    }
}

RECFORGE_INLINE void update_bias(const CsrView& F, std::int64_t row, float grad, const Rows& rows, float lr) {
    for (std::int64_t p = F.indptr[row]; p < F.indptr[row + 1]; ++p) {
        const std::int32_t k = F.indices[p], s = rows.own(k);
        float* g = rows.bias_g2_at(k, s);
        float* b = rows.bias_at(k, s);
        const float step = F.data[p] * grad;
        *g += step * step;
        *b += lr * step / std::sqrt(*g + kEps);
    }
}

// Several threads: the rows of the features many entities share (genres, demographics) are written
// by nearly every step of every thread, and a cache line written by two cores moves between them on
// each write (two threads ran no faster than one). So each thread steps on its own copies of those
// rows (`Local`, taken when a block starts) and adds what its block changed to the shared rows when
// the block ends, under a lock: a thread sees the others' changes to them block by block (4096
// samples) instead of step by step. One thread: no copies, the shared rows directly.
struct Hot {
    std::vector<std::int32_t> features;  // the copied features
    std::vector<std::int32_t> slot;      // feature -> index in `features`, or -1

    // Features on at least max(2, n_rows / kHotShare) rows of F; the most frequent of them when
    // there are more than kHotMax, or than the copies of all threads hold in kHotBytes (four arrays
    // of f floats per feature and thread: rows, accumulators, and both as taken).
    static constexpr std::int64_t kHotShare = 256;
    static constexpr std::int64_t kHotMax = 1024;
    static constexpr std::int64_t kHotBytes = std::int64_t{64} << 20;

    Hot(const CsrView& F, int f, int threads) {
        if (threads < 2) return;
        const std::int64_t most = std::min(kHotMax, kHotBytes / (std::int64_t{16} * f * threads));
        std::vector<std::int64_t> count(static_cast<std::size_t>(F.n_cols), 0);
        for (std::int64_t p = 0; p < F.nnz(); ++p) ++count[static_cast<std::size_t>(F.indices[p])];
        const std::int64_t least = std::max<std::int64_t>(2, F.n_rows / kHotShare);
        for (std::int64_t k = 0; k < F.n_cols; ++k)
            if (count[k] >= least) features.push_back(static_cast<std::int32_t>(k));
        if (static_cast<std::int64_t>(features.size()) > most) {
            std::stable_sort(features.begin(), features.end(),
                             [&](std::int32_t a, std::int32_t b) { return count[a] > count[b]; });
            features.resize(static_cast<std::size_t>(most));
            std::sort(features.begin(), features.end());
        }
        if (features.empty()) return;
        slot.assign(static_cast<std::size_t>(F.n_cols), -1);
        for (std::size_t h = 0; h < features.size(); ++h) slot[features[h]] = static_cast<std::int32_t>(h);
    }
};

// One thread's copies of one side's hot rows, and their values when its block started.
struct Local {
    std::vector<float> emb, g2, bias, bias_g2;      // the rows the thread steps on
    std::vector<float> emb0, g20, bias0, bias_g20;  // ... as taken from the shared arrays

    // The thread's view: `shared` with the hot rows redirected to the copies (taken now).
    Rows take(const Rows& shared, const Hot& hot) {
        if (hot.features.empty()) return shared;
        const int f = shared.f;
        const std::size_t n = hot.features.size();
        emb.resize(n * f);
        g2.resize(n * f);
        for (std::size_t h = 0; h < n; ++h) {
            const std::int64_t k = hot.features[h];
            std::copy_n(shared.emb + k * shared.stride, f, emb.data() + h * f);
            std::copy_n(shared.g2 + k * shared.stride, f, g2.data() + h * f);
        }
        emb0 = emb;
        g20 = g2;
        Rows rows = shared;
        rows.slot = hot.slot.data();
        rows.own_emb = emb.data();
        rows.own_g2 = g2.data();
        if (shared.bias) {
            bias.resize(n);
            bias_g2.resize(n);
            for (std::size_t h = 0; h < n; ++h) {
                bias[h] = shared.bias[hot.features[h]];
                bias_g2[h] = shared.bias_g2[hot.features[h]];
            }
            bias0 = bias;
            bias_g20 = bias_g2;
            rows.own_bias = bias.data();
            rows.own_bias_g2 = bias_g2.data();
        }
        return rows;
    }

    // Adds the block's changes to the shared rows (the caller holds the lock).
    void give(const Rows& shared, const Hot& hot) const {
        const int f = shared.f;
        for (std::size_t h = 0; h < hot.features.size(); ++h) {
            const std::int64_t k = hot.features[h];
            for (int d = 0; d < f; ++d) {
                shared.emb[k * shared.stride + d] += emb[h * f + d] - emb0[h * f + d];
                shared.g2[k * shared.stride + d] += g2[h * f + d] - g20[h * f + d];
            }
            if (shared.bias) {
                shared.bias[k] += bias[h] - bias0[h];
                shared.bias_g2[k] += bias_g2[h] - bias_g20[h];
            }
        }
    }
};

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

    Screen(const CsrView& item_features, const Rows& item_rows, const Step& step) {
        if (step.loss != Loss::warp) return;
        const int f = item_rows.f;
        items.resize(static_cast<std::size_t>(item_features.n_rows) * f);
        bias.resize(static_cast<std::size_t>(item_features.n_rows));
        parallel_for(0, item_features.n_rows, step.threads, 256,
                     [&](std::int64_t i) { represent(item_features, i, item_rows, items.data() + i * f, &bias[i]); });
    }

    // Brings item i's row up to date after a step changed its features' embeddings (as the
    // stepping thread sees them).
    RECFORGE_INLINE void refresh(const CsrView& item_features, std::int32_t i, const Rows& item_rows) {
        if (items.empty()) return;
        represent(item_features, i, item_rows, items.data() + static_cast<std::int64_t>(i) * item_rows.f, &bias[i]);
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
// loader picks the widest the CPU has. The two sides' Rows by value: local copies the compiler
// keeps in registers (by reference the one-thread epoch was ~2% slower).
RECFORGE_SIMD_CLONES(RECFORGE_ISA_F)
Partial run_block(const CsrView& positives, const Positives& is_positive, const CsrView& user_features,
                  const CsrView& item_features, const std::int32_t* negatives, std::int64_t n_negatives,
                  const Rows user_rows, const Rows item_rows, const Step& step, const std::int32_t* owner,
                  const UserDraw& users, std::int64_t block, std::int64_t count, Screen& screen) {
    const std::int64_t nnz = positives.nnz();
    const int f = item_rows.f;
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
        represent(user_features, u, user_rows, uv, nullptr);
        float bi = 0.0f, bj = 0.0f;
        represent(item_features, i, item_rows, iv, &bi);
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
            represent(item_features, c, item_rows, jv, &bj);
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
        update(user_features, u, gu, user_rows, step.user_reg, step.lr);
        update(item_features, i, gi, item_rows, step.item_reg, step.lr);
        update(item_features, j, gj, item_rows, step.item_reg, step.lr);
        update_bias(item_features, i, di, item_rows, step.lr);
        update_bias(item_features, j, dj, item_rows, step.lr);
        screen.refresh(item_features, i, item_rows);
        screen.refresh(item_features, j, item_rows);
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
    const int f = params.factors;
    const Rows user_rows = Rows::shared(params.user_emb, params.user_emb_g2, nullptr, nullptr, f, params.user_stride);
    const Rows item_rows = Rows::shared(params.item_emb, params.item_emb_g2, params.item_bias, params.item_bias_g2, f,
                                        params.item_stride);
    Screen screen(item_features, item_rows, step);
    const int threads = resolve_threads(step.threads);
    const Hot user_hot(user_features, f, threads), item_hot(item_features, f, threads);
    std::vector<Local> user_local(static_cast<std::size_t>(threads)), item_local(user_local.size());
    const bool copies = !user_hot.features.empty() || !item_hot.features.empty();
    std::mutex shared_rows;  // held while a thread takes its copies or adds its changes
    parallel_for(0, blocks, threads, 1, [&](std::int64_t block) {
        const std::int64_t count = std::min(kBlock, nnz - block * kBlock);
        const std::size_t t = static_cast<std::size_t>(thread_index());
        Rows own_user_rows = user_rows, own_item_rows = item_rows;
        if (copies) {
            std::lock_guard<std::mutex> lock(shared_rows);
            own_user_rows = user_local[t].take(user_rows, user_hot);
            own_item_rows = item_local[t].take(item_rows, item_hot);
        }
        partial[block] = run_block(positives, is_positive, user_features, item_features, negatives, n_negatives,
                                   own_user_rows, own_item_rows, step, owner.data(), users, block, count, screen);
        if (copies) {
            std::lock_guard<std::mutex> lock(shared_rows);
            user_local[t].give(user_rows, user_hot);
            item_local[t].give(item_rows, item_hot);
        }
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
