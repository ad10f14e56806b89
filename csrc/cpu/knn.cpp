// Item-item nearest neighbours (recforge/knn.hpp): sparse row products into a per-thread dense
// accumulator, then a per-item (or per-user) selection of the best entries.
#include "recforge/knn.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "recforge/parallel.hpp"
#include "recforge/simd.hpp"

namespace recforge::knn {

namespace {

struct Scored {
    float score;
    std::int32_t id;
};

// Higher score first, equal scores by lower id: the one order of every result here.
inline bool better(const Scored& a, const Scored& b) {
    return a.score > b.score || (a.score == b.score && a.id < b.id);
}

// Keeps the best k entries of `c` (under `better`), in their current order. The k-th best score is
// found on a copy of the scores (`work`, cheaper to select in than the pairs); entries scoring
// above it stay, and of those equal to it, the lowest ids up to k.
void keep_best_in_order(std::vector<Scored>& c, std::size_t k, std::vector<float>& work) {
    if (c.size() <= k) return;
    if (k == 0) return c.clear();
    work.resize(c.size());
    for (std::size_t x = 0; x < c.size(); ++x) work[x] = c[x].score;
    std::nth_element(work.begin(), work.begin() + static_cast<std::ptrdiff_t>(k - 1), work.end(),
                     std::greater<float>());
    const float kth = work[k - 1];
    std::size_t above = 0, equal = 0;
    for (const Scored& s : c) {
        above += s.score > kth;
        equal += s.score == kth;
    }
    // Of the entries equal to the k-th best, the (k - above) lowest ids stay: ids up to last_tie.
    std::int64_t last_tie = std::numeric_limits<std::int64_t>::max();
    if (equal > k - above) {
        std::vector<std::int32_t> ties;
        for (const Scored& s : c)
            if (s.score == kth) ties.push_back(s.id);
        std::nth_element(ties.begin(), ties.begin() + static_cast<std::ptrdiff_t>(k - above - 1), ties.end());
        last_tie = ties[k - above - 1];
    }
    c.erase(std::remove_if(c.begin(), c.end(),
                           [&](const Scored& s) { return s.score < kth || (s.score == kth && s.id > last_tie); }),
            c.end());
}

// A lower bound of the k-th best of scores[0, n): the k-th largest of the maxima of blocks of 8
// consecutive entries (k blocks hold an entry at least that good), so typically little more than
// k entries reach it, whatever their order. -inf when there are fewer than k whole blocks.
// `maxima` is scratch space.
float kth_best_bound(const float* scores, std::int64_t n, std::int64_t k, std::vector<float>& maxima) {
    constexpr std::int64_t kBlock = 8;
    const std::int64_t blocks = n / kBlock;
    if (k < 1 || blocks < k) return -std::numeric_limits<float>::infinity();
    maxima.resize(static_cast<std::size_t>(blocks));
    for (std::int64_t b = 0; b < blocks; ++b) {
        const float* x = scores + b * kBlock;
        float top = x[0];
        for (std::int64_t l = 1; l < kBlock; ++l) top = x[l] > top ? x[l] : top;
        maxima[b] = top;
    }
    std::nth_element(maxima.begin(), maxima.begin() + (k - 1), maxima.end(), std::greater<float>());
    return maxima[k - 1];
}

// How many of scores[0, t) are >= bar (t < 2^31; vectorised: one compare per entry, no branch).
RECFORGE_INLINE std::int64_t count_at_least(const float* scores, std::int64_t t, float bar) {
    std::uint32_t count = 0;
    for (std::int64_t x = 0; x < t; ++x) count += scores[x] >= bar;
    return count;
}

RECFORGE_INLINE float as_float(std::uint32_t bits) {
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
}

RECFORGE_INLINE std::uint32_t as_bits(float f) {
    std::uint32_t bits;
    std::memcpy(&bits, &f, sizeof bits);
    return bits;
}

// The dense path's candidates for item i from its raw accumulator acc[0, n) (every entry >= 0):
// turns the sums into similarities (acc[j] *= own * scale[j], acc[i] = 0), writes to ids / sims
// (n slots), in id order, every entry at least a lower bound of the k-th best positive similarity,
// clears the accumulator and returns how many. Only products and compares: the same floats on any
// instruction set, so the passes are compiled per set (RECFORGE_ISA_V4 clones).
// The bound: split the entries into groups (entry j in group j % groups, about 8 entries each) and
// take the largest value that at least k group maxima reach (k groups hold an entry at least that
// good). The strided groups make the maxima one vertical, vectorised pass; the value is found by a
// binary search over float bit patterns with branch-free counting passes, as in keep_best_positive.
RECFORGE_SIMD_CLONES(RECFORGE_ISA_V4)
std::int64_t dense_candidates(float* acc, const float* scale, std::int64_t n, std::int64_t i, float own, std::int64_t k,
                              std::vector<float>& maxima, std::int32_t* ids, float* sims) {
    constexpr std::int64_t kGroupSize = 8;
    const std::int64_t groups = (n + kGroupSize - 1) / kGroupSize;
    acc[i] = 0.0f;
    maxima.assign(static_cast<std::size_t>(groups), 0.0f);
    float* top = maxima.data();
    for (std::int64_t start = 0; start < n; start += groups) {
        const std::int64_t width = std::min(groups, n - start);
        float* x = acc + start;
        const float* sc = scale + start;
        for (std::int64_t g = 0; g < width; ++g) {
            x[g] *= own * sc[g];
            top[g] = std::max(top[g], x[g]);
        }
    }
    // Invariant: at least k maxima reach as_float(low) (0 at first), fewer than k reach as_float(high).
    float bar = std::numeric_limits<float>::denorm_min();  // kept similarities are > 0
    if (groups >= k) {
        std::uint32_t highest = 0;  // as bits (ordered as the floats are: all >= 0), a vectorised max
        for (std::int64_t g = 0; g < groups; ++g) highest = std::max(highest, as_bits(top[g]));
        std::uint32_t low = 0, high = highest + 1;
        while (high - low > 1) {
            const std::uint32_t mid = low + (high - low) / 2;
            const std::int64_t count = count_at_least(top, groups, as_float(mid));
            (count >= k ? low : high) = mid;
            if (count >= k && count - k <= k / 4) break;  // close enough: a few more candidates cost less
        }
        bar = std::max(bar, as_float(low));
    }
    // Few entries reach the bar: test 16 at a time, look at single entries only in a block with one.
    std::int64_t count = 0, j = 0;
    for (; j + 16 <= n; j += 16) {
        if (count_at_least(acc + j, 16, bar) == 0) continue;
        for (std::int64_t x = j; x < j + 16; ++x) {
            ids[count] = static_cast<std::int32_t>(x);
            sims[count] = acc[x];
            count += acc[x] >= bar;
        }
    }
    for (; j < n; ++j) {
        ids[count] = static_cast<std::int32_t>(j);
        sims[count] = acc[j];
        count += acc[j] >= bar;
    }
    std::fill_n(acc, n, 0.0f);
    return count;
}

// Writes the best k positive entries of scores[0, t) (under `better`; the entry's id is ids[x]) to
// out_ids / out_scores (k + 1 slots) in their order in `scores`, and returns how many (<= k).
// Positive finite floats order as their bit patterns do, so the k-th best score is found by a
// binary search over bit patterns, each step one branch-free counting pass: cheaper than a
// selection algorithm's data-dependent branches, and done as soon as a bar leaves exactly k
// entries above it. Of entries equal to the k-th best, the lowest ids stay. `ties` and `flags` are scratch.
// Compiled per instruction set (the passes are wide compares; any set gives the same result).
RECFORGE_SIMD_CLONES(RECFORGE_ISA_V4)
std::int64_t keep_best_positive(const float* scores, const std::int32_t* ids, std::int64_t t, std::int64_t k,
                                std::int32_t* out_ids, float* out_scores, std::vector<std::int32_t>& ties,
                                std::vector<std::uint32_t>& flags) {
    if (k < 1) return 0;
    // One pass for the positive entries' count and range (branch-free; `lowest` stays +inf when none).
    std::uint32_t positive = 0;
    float lowest = std::numeric_limits<float>::infinity(), highest = 0.0f;
    for (std::int64_t x = 0; x < t; ++x) {
        const float score = scores[x];
        positive += score > 0.0f;
        lowest = std::min(lowest, score > 0.0f ? score : std::numeric_limits<float>::infinity());
        highest = std::max(highest, score);
    }
    // Invariant: count_at_least(as_float(low)) > k and count_at_least(as_float(high)) < k; `bar`
    // keeps exactly the entries that stay (every positive one when at most k are).
    float bar = std::numeric_limits<float>::denorm_min();
    std::int64_t last_tie = std::numeric_limits<std::int64_t>::max();
    if (positive > static_cast<std::uint64_t>(k)) {
        std::uint32_t low = as_bits(lowest), high = as_bits(highest) + 1;
        bool exact = false;
        while (high - low > 1) {
            const std::uint32_t mid = low + (high - low) / 2;
            const std::int64_t count = count_at_least(scores, t, as_float(mid));
            if (count == k) {
                bar = as_float(mid);
                exact = true;
                break;
            }
            (count > k ? low : high) = mid;
        }
        if (!exact) {  // as_float(low) is the k-th best score, held by more entries than fit
            bar = as_float(low);
            const std::int64_t above = count_at_least(scores, t, as_float(low + 1));
            ties.clear();
            for (std::int64_t x = 0; x < t; ++x)
                if (scores[x] == bar) ties.push_back(ids[x]);
            std::nth_element(ties.begin(), ties.begin() + (k - above - 1), ties.end());
            last_tie = ties[static_cast<std::size_t>(k - above - 1)];
        }
    }
    // Branch-free compaction (which entries stay is unpredictable): the flags in one vectorised
    // pass, then every entry is written at the next free slot, which only advances past kept ones,
    // so out_* hold k + 1 slots.
    flags.resize(static_cast<std::size_t>(t));
    std::uint32_t* keep = flags.data();
    for (std::int64_t x = 0; x < t; ++x) keep[x] = (scores[x] > bar) | ((scores[x] == bar) & (ids[x] <= last_tie));
    std::int64_t kept = 0;
    for (std::int64_t x = 0; x < t; ++x) {
        out_ids[kept] = ids[x];
        out_scores[kept] = scores[x];
        kept += keep[x];
    }
    return kept;
}

// The transpose (n_cols x n_rows) of `m` with its values, ids ascending within each row (a counting sort).
// With `column_squares`, also each column's sum of squared values, in float64, added in row order.
struct Transposed {
    std::vector<std::int64_t> indptr;
    std::vector<std::int32_t, UninitialisedAllocator<std::int32_t>> indices;  // every slot is written
    std::vector<float, UninitialisedAllocator<float>> data;
};

Transposed transpose(const CsrView& m, std::vector<double>* column_squares) {
    Transposed t;
    const std::int64_t nnz = m.nnz();
    t.indptr.assign(static_cast<std::size_t>(m.n_cols) + 1, 0);
    for (std::int64_t p = 0; p < nnz; ++p) ++t.indptr[static_cast<std::size_t>(m.indices[p]) + 1];
    for (std::int64_t c = 0; c < m.n_cols; ++c) t.indptr[c + 1] += t.indptr[c];
    t.indices.resize(static_cast<std::size_t>(nnz));
    t.data.resize(static_cast<std::size_t>(nnz));
    std::vector<std::int64_t> next(t.indptr.begin(), t.indptr.end() - 1);
    double* squares = nullptr;
    if (column_squares) {
        column_squares->assign(static_cast<std::size_t>(m.n_cols), 0.0);
        squares = column_squares->data();
    }
    for (std::int64_t r = 0; r < m.n_rows; ++r) {
        for (std::int64_t p = m.indptr[r]; p < m.indptr[r + 1]; ++p) {
            const std::int32_t c = m.indices[p];
            const std::int64_t at = next[c]++;
            t.indices[at] = static_cast<std::int32_t>(r);
            t.data[at] = m.data[p];
            // Sums over different columns interleave, so no addition waits for the previous one.
            if (squares) squares[c] += static_cast<double>(m.data[p]) * m.data[p];
        }
    }
    return t;
}

}  // namespace

Neighbours item_neighbours(const CsrView& users, bool cosine, std::int64_t k, int threads) {
    if (k < 1) throw std::invalid_argument("k must be >= 1, got " + std::to_string(k));
    const std::int64_t n = users.n_cols;
    if (users.nnz() > 0 && !users.data) throw std::invalid_argument("users must have values");
    if (users.n_rows > INT32_MAX) throw std::invalid_argument("users: more than 2^31 - 1 users");  // int32 ids
    // Cosine: every similarity is divided by both norms; an item without weight has no neighbour.
    std::vector<double> squares;  // each item's squared norm (cosine only), made by the transpose
    const Transposed item_rows = transpose(users, cosine ? &squares : nullptr);  // n_items x n_users, users ascending
    const CsrView items{item_rows.indptr.data(), item_rows.indices.data(), item_rows.data.data(), n, users.n_rows};
    std::vector<float> scale(static_cast<std::size_t>(n), 1.0f);
    for (std::int64_t i = 0; cosine && i < n; ++i)
        scale[i] = squares[i] > 0.0 ? static_cast<float>(1.0 / std::sqrt(squares[i])) : 0.0f;

    const std::int64_t width = std::min<std::int64_t>(k, std::max<std::int64_t>(n - 1, 0));
    // Item i's neighbours go to slots [i * width, i * width + count) of the result's own arrays,
    // packed to the front once every item is done: no second buffer, no copy.
    Neighbours out;
    out.indices.resize(static_cast<std::size_t>(n * width));
    out.data.resize(static_cast<std::size_t>(n * width));
    std::vector<std::int64_t> indptr(static_cast<std::size_t>(n) + 1, 0);

    struct Scratch {
        std::vector<float> acc;  // all zero between items
        std::vector<std::int32_t> touched, ties;  // candidates' ids, scratch
        std::vector<float> sims, maxima;  // candidates' similarities, scratch
        std::vector<std::int32_t> best_ids;  // the selection (width + 1 slots)
        std::vector<float> best_sims;
        std::vector<std::uint32_t> flags;
    };
    const int nt = resolve_threads(threads);
    std::vector<Scratch> scratch(static_cast<std::size_t>(nt));
    // Raw pointers: the compiler then knows the accumulator stores cannot move them.
    const std::int64_t* item_ptr = items.indptr;
    const std::int32_t* item_users = items.indices;
    const float* item_w = items.data;
    // The products read the users' rows at random: from copies of our own. Reading the caller's arrays
    // in place measured ~15% slower on ML-100K (the same loop; the placement of the arrays against the
    // accumulator decides, and copies made here, next to the other buffers, came out fast).
    const std::vector<std::int64_t> user_offsets(users.indptr, users.indptr + users.n_rows + 1);
    const std::vector<std::int32_t> user_ids(users.indices, users.indices + users.nnz());
    const std::vector<float> user_values(users.data, users.data + users.nnz());
    const std::int64_t* user_ptr = user_offsets.data();
    const std::int32_t* user_items = user_ids.data();
    const float* user_w = user_values.data();
    const float* norm_scale = scale.data();
    parallel_for(0, n, nt, 16, [&](std::int64_t i) {
        Scratch& s = scratch[static_cast<std::size_t>(thread_index())];
        if (s.acc.empty()) {
            s.acc.assign(static_cast<std::size_t>(n), 0.0f);
            // Room for every candidate of either path (the sparse one has fewer than n / 4 products).
            s.touched.resize(static_cast<std::size_t>(n) + 1);
            s.sims.resize(static_cast<std::size_t>(n) + 1);
            s.best_ids.resize(static_cast<std::size_t>(width) + 1);
            s.best_sims.resize(static_cast<std::size_t>(width) + 1);
        }
        float* acc = s.acc.data();
        const float own = norm_scale[i];
        // Products to add: when they outnumber the items a few times over, a dense pass over every
        // accumulator is cheaper than tracking which ones were touched.
        std::int64_t products = 0;
        for (std::int64_t p = item_ptr[i]; p < item_ptr[i + 1]; ++p)
            products += user_ptr[item_users[p] + 1] - user_ptr[item_users[p]];
        std::int64_t candidates = 0;  // in s.touched / s.sims
        if (products * 4 >= n) {
            for (std::int64_t p = item_ptr[i]; p < item_ptr[i + 1]; ++p) {
                const float w = item_w[p];
                const std::int32_t u = item_users[p];
                for (std::int64_t q = user_ptr[u]; q < user_ptr[u + 1]; ++q) acc[user_items[q]] += w * user_w[q];
            }
            candidates = dense_candidates(acc, norm_scale, n, i, own, width, s.maxima, s.touched.data(), s.sims.data());
        } else {
            // Every product writes its id and counts it only when the accumulator was still 0
            // (branch-free: whether an item was touched before is unpredictable). An accumulator
            // only grows (values are >= 0); an item counted twice after a zero product reads 0 the
            // second time below and is dropped.
            std::int32_t* touched = s.touched.data();
            std::int64_t count = 0;
            for (std::int64_t p = item_ptr[i]; p < item_ptr[i + 1]; ++p) {
                const float w = item_w[p];
                const std::int32_t u = item_users[p];
                for (std::int64_t q = user_ptr[u]; q < user_ptr[u + 1]; ++q) {
                    const std::int32_t j = user_items[q];
                    touched[count] = j;
                    count += acc[j] == 0.0f;
                    acc[j] += w * user_w[q];
                }
            }
            float* sims = s.sims.data();
            for (std::int64_t x = 0; x < count; ++x) {
                const std::int32_t j = touched[x];
                sims[x] = j != i ? acc[j] * own * norm_scale[j] : 0.0f;
                acc[j] = 0.0f;
            }
            candidates = count;
        }
        // The candidates, in id order (dense) or touched order (the data's): the same on any thread count.
        const std::int64_t kept = keep_best_positive(s.sims.data(), s.touched.data(), candidates, width,
                                                     s.best_ids.data(), s.best_sims.data(), s.ties, s.flags);
        std::copy_n(s.best_ids.begin(), kept, out.indices.begin() + i * width);
        std::copy_n(s.best_sims.begin(), kept, out.data.begin() + i * width);
        indptr[i + 1] = kept;
    });

    for (std::int64_t i = 0; i < n; ++i) {
        const std::int64_t c = indptr[i + 1];
        indptr[i + 1] += indptr[i];
        // Moves left (indptr[i] <= i * width), so a row never overwrites one still to move.
        if (indptr[i] == i * width) continue;
        std::copy_n(out.indices.begin() + i * width, c, out.indices.begin() + indptr[i]);
        std::copy_n(out.data.begin() + i * width, c, out.data.begin() + indptr[i]);
    }
    out.indices.resize(static_cast<std::size_t>(indptr[n]));
    out.data.resize(static_cast<std::size_t>(indptr[n]));
    if (2 * indptr[n] < n * width) {  // most items have fewer than K neighbours: do not hold the room
        out.indices.shrink_to_fit();
        out.data.shrink_to_fit();
    }
    out.indptr = std::move(indptr);
    return out;
}

void recommend(const CsrView& history, const CsrView& similarity, std::int64_t k, bool exclude_history,
               const std::uint8_t* allowed, std::int64_t* out_ids, float* out_scores, int threads) {
    const std::int64_t m = similarity.n_rows;
    struct Scratch {
        std::vector<float> acc;
        std::vector<Scored> best;
        std::vector<float> maxima, work;
    };
    constexpr float kNone = -std::numeric_limits<float>::infinity();
    const int nt = resolve_threads(threads);
    std::vector<Scratch> scratch(static_cast<std::size_t>(nt));
    parallel_for(0, history.n_rows, nt, 4, [&](std::int64_t r) {
        Scratch& s = scratch[static_cast<std::size_t>(thread_index())];
        s.acc.assign(static_cast<std::size_t>(m), 0.0f);
        float* acc = s.acc.data();
        const std::int64_t begin = history.indptr[r], end = history.indptr[r + 1];
        for (std::int64_t p = begin; p < end; ++p) {
            const float w = history.data[p];
            const std::int32_t i = history.indices[p];
            for (std::int64_t q = similarity.indptr[i]; q < similarity.indptr[i + 1]; ++q)
                acc[similarity.indices[q]] += w * similarity.data[q];
        }
        // Ineligible items (and a NaN, should one arise) become -inf, which is never chosen.
        for (std::int64_t j = 0; j < m; ++j)
            if (std::isnan(acc[j]) || (allowed && !allowed[j])) acc[j] = kNone;
        if (exclude_history)
            for (std::int64_t p = begin; p < end; ++p) acc[history.indices[p]] = kNone;
        // One comparison per item: ineligible ones (-inf) stay below even the lowest bar.
        const float bar = std::max(kth_best_bound(acc, m, k, s.maxima), std::numeric_limits<float>::lowest());
        s.best.clear();
        for (std::int64_t j = 0; j < m; ++j)
            if (acc[j] >= bar) s.best.push_back({acc[j], static_cast<std::int32_t>(j)});
        keep_best_in_order(s.best, static_cast<std::size_t>(k), s.work);
        std::sort(s.best.begin(), s.best.end(), better);
        for (std::int64_t t = 0; t < k; ++t) {
            const bool real = static_cast<std::size_t>(t) < s.best.size();
            out_ids[r * k + t] = real ? s.best[t].id : -1;
            out_scores[r * k + t] = real ? s.best[t].score : kNone;
        }
    });
}

}  // namespace recforge::knn
