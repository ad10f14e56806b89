// Exact top-K by inner product (see recforge/topk.hpp for the contract).
//
// Dense path: for a block of queries x a block of items, one single-threaded SGEMM writes the
// scores into a per-thread buffer that stays in L2; each row of it is then scanned against the
// row's current k-th best score (vectorised compare, 64 scores at a time) and the few scores that
// beat it go into a bounded heap. Items are visited in increasing id order, so a score equal to the
// current k-th best always loses the tie (its id is higher) and a strict `>` suffices in the scan.
// Threads own whole query blocks: no sharing, no locks, results independent of the thread count.
#include "recforge/topk.hpp"

#include <algorithm>
#include <climits>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "recforge/blas.hpp"
#include "recforge/parallel.hpp"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
// One build for every x86-64: the loader picks the widest vector unit the CPU has.
#define RECFORGE_SIMD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define RECFORGE_SIMD_CLONES
#endif

namespace recforge {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

struct Entry {
    float score;
    std::int64_t id;
};

// The result order: higher score first, then lower id.
inline bool better(const Entry& a, const Entry& b) {
    return a.score > b.score || (a.score == b.score && a.id < b.id);
}

// Bounded heap of the best k entries seen, the worst one on top (h[0]).
inline void heap_init(Entry* h, std::int64_t k) { std::fill(h, h + k, Entry{kNegInf, -1}); }

inline void heap_replace_top(Entry* h, std::int64_t k, Entry e) {
    std::int64_t i = 0;
    for (;;) {
        std::int64_t c = 2 * i + 1;
        if (c >= k) break;
        if (c + 1 < k && better(h[c], h[c + 1])) ++c;  // the worse child moves up
        if (!better(e, h[c])) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = e;
}

// Sorts the heap best first and writes one output row; -inf entries become id -1 padding.
void heap_finish(Entry* h, std::int64_t k, std::int64_t* ids, float* scores) {
    std::sort(h, h + k, better);
    for (std::int64_t j = 0; j < k; ++j) {
        scores[j] = h[j].score;
        ids[j] = h[j].score == kNegInf ? -1 : h[j].id;
    }
}

// Index of the first s[j] > thr with begin <= j < len, or len. The hot loop of the dense path:
// a branch-free count over 64 scores compiles to a few vector compares, and only a block that
// holds a candidate is looked at one score at a time. NaN compares false, so it never enters.
RECFORGE_SIMD_CLONES
std::int64_t next_above(const float* s, std::int64_t begin, std::int64_t len, float thr) {
    std::int64_t j = begin;
    for (; j + 64 <= len; j += 64) {
        int hits = 0;
        for (int t = 0; t < 64; ++t) hits += s[j + t] > thr;
        if (hits) break;
    }
    for (; j < len; ++j)
        if (s[j] > thr) return j;
    return len;
}

// Dot product with 16 independent partial sums, so it vectorises without -ffast-math.
RECFORGE_SIMD_CLONES
float dot(const float* a, const float* b, std::int64_t f) {
    float acc[16] = {};
    std::int64_t t = 0;
    for (; t + 16 <= f; t += 16)
        for (int l = 0; l < 16; ++l) acc[l] += a[t + l] * b[t + l];
    float total = 0.0f;
    for (int l = 0; l < 16; ++l) total += acc[l];
    for (; t < f; ++t) total += a[t] * b[t];
    return total;
}

void check(bool ok, const std::string& what) {
    if (!ok) throw std::invalid_argument(what);
}

void check_common(const float* queries, std::int64_t n, const float* items, std::int64_t m,
                  std::int64_t f, std::int64_t k, std::int64_t* out_ids, float* out_scores) {
    check(n >= 0, "topk: n must be >= 0, got " + std::to_string(n));
    check(m >= 1, "topk: items must not be empty");
    check(f >= 1 && f <= INT_MAX, "topk: factors must be in [1, 2^31), got " + std::to_string(f));
    check(k >= 1 && k <= m, "topk: k must be in [1, " + std::to_string(m) + "], got " + std::to_string(k));
    check(items != nullptr && (n == 0 || (queries && out_ids && out_scores)), "topk: null array");
}

void check_exclude(const TopkExclude& ex, std::int64_t n, std::int64_t m) {
    if (!ex.indptr) return;
    check(ex.nnz >= 0 && (ex.nnz == 0 || ex.indices), "topk: exclude indices missing");
    check(ex.indptr[0] == 0, "topk: exclude indptr must start at 0");
    for (std::int64_t i = 0; i < n; ++i) {
        const std::int64_t b = ex.indptr[i], e = ex.indptr[i + 1];
        check(b <= e && e <= ex.nnz, "topk: exclude indptr must be non-decreasing and within the indices");
        for (std::int64_t p = b; p < e; ++p) {
            check(ex.indices[p] >= 0 && ex.indices[p] < m,
                  "topk: exclude holds item id " + std::to_string(ex.indices[p]) + " outside [0, " +
                      std::to_string(m) + ")");
            check(p == b || ex.indices[p - 1] <= ex.indices[p], "topk: exclude indices must be sorted within rows");
        }
    }
    check(ex.indptr[n] == ex.nnz, "topk: exclude indptr[n] must equal the number of indices");
}

void pad_all(std::int64_t n, std::int64_t k, std::int64_t* out_ids, float* out_scores) {
    std::fill(out_ids, out_ids + n * k, std::int64_t{-1});
    std::fill(out_scores, out_scores + n * k, kNegInf);
}

// Defaults: a 256 x 1024 float block of scores is 1 MB, half the 2 MB L2 of the cores this was
// tuned on, leaving room for the query block and OpenBLAS's packed panels (see bench/NOTES-topk.md).
constexpr std::int64_t kBlockQueries = 256;
constexpr std::int64_t kBlockItems = 1024;
// Heaps per thread are capped at about this many bytes: large k shrinks the query block.
constexpr std::int64_t kHeapBudget = std::int64_t{8} << 20;

}  // namespace

void topk_dense(const float* queries, std::int64_t n, const float* items, std::int64_t m,
                std::int64_t f, std::int64_t k, const std::int64_t* subset, std::int64_t n_subset,
                const TopkExclude& exclude, std::int64_t* out_ids, float* out_scores, int threads,
                TopkBlocks blocks) {
    check_common(queries, n, items, m, f, k, out_ids, out_scores);
    check_exclude(exclude, n, m);
    check(blocks.queries >= 0 && blocks.items >= 0, "topk: block sizes must be >= 0");
    if (n == 0) return;

    // A subset is scored as a dense, gathered item matrix whose rows map back to sorted ids.
    std::vector<std::int64_t> ids;
    std::vector<float> gathered;
    const float* it = items;
    std::int64_t mm = m;
    if (subset) {
        check(n_subset >= 0, "topk: subset size must be >= 0");
        ids.assign(subset, subset + n_subset);
        for (std::int64_t id : ids)
            check(id >= 0 && id < m, "topk: candidate id " + std::to_string(id) + " outside [0, " + std::to_string(m) + ")");
        std::sort(ids.begin(), ids.end());
        ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
        mm = static_cast<std::int64_t>(ids.size());
        gathered.resize(static_cast<std::size_t>(mm * f));
        for (std::int64_t j = 0; j < mm; ++j)
            std::copy(items + ids[j] * f, items + (ids[j] + 1) * f, gathered.begin() + j * f);
        it = gathered.data();
    }
    if (mm == 0) {
        pad_all(n, k, out_ids, out_scores);
        return;
    }

    const std::int64_t heap_rows = std::max<std::int64_t>(1, kHeapBudget / (k * static_cast<std::int64_t>(sizeof(Entry))));
    const std::int64_t bq = std::min({blocks.queries > 0 ? blocks.queries : kBlockQueries, n, heap_rows});
    const std::int64_t bi = std::min(blocks.items > 0 ? blocks.items : kBlockItems, mm);
    check(bq * bi <= INT_MAX / 2 && bi <= INT_MAX, "topk: block sizes too large");
    const std::int64_t n_blocks = (n + bq - 1) / bq;
    const int nt = static_cast<int>(std::min<std::int64_t>(resolve_threads(threads), n_blocks));

    struct Workspace {
        std::vector<float> scores;
        std::vector<Entry> heaps;
        std::vector<std::int64_t> cursor;  // next exclude entry per row
    };
    std::vector<Workspace> work(static_cast<std::size_t>(nt));

    parallel_for(0, n_blocks, nt, 1, [&](std::int64_t b) {
        Workspace& w = work[static_cast<std::size_t>(thread_index())];
        if (w.scores.empty()) {
            w.scores.resize(static_cast<std::size_t>(bq * bi));
            w.heaps.resize(static_cast<std::size_t>(bq * k));
            w.cursor.resize(static_cast<std::size_t>(bq));
        }
        const std::int64_t q0 = b * bq;
        const std::int64_t rows = std::min(bq, n - q0);
        for (std::int64_t r = 0; r < rows; ++r) {
            heap_init(&w.heaps[r * k], k);
            if (exclude.indptr) w.cursor[r] = exclude.indptr[q0 + r];
        }
        for (std::int64_t j0 = 0; j0 < mm; j0 += bi) {
            const std::int64_t cols = std::min(bi, mm - j0);
            blas::gemm(false, true, static_cast<int>(rows), static_cast<int>(cols), static_cast<int>(f), 1.0f,
                       queries + q0 * f, static_cast<int>(f), it + j0 * f, static_cast<int>(f), 0.0f,
                       w.scores.data(), static_cast<int>(cols));
            for (std::int64_t r = 0; r < rows; ++r) {
                float* s = &w.scores[r * cols];
                if (exclude.indptr) {
                    // Both lists are sorted: advance this row's cursor through the block.
                    std::int64_t& p = w.cursor[r];
                    const std::int64_t end = exclude.indptr[q0 + r + 1];
                    for (; p < end; ++p) {
                        const std::int64_t id = exclude.indices[p];
                        std::int64_t pos = id;
                        if (subset) {
                            pos = std::lower_bound(ids.begin(), ids.end(), id) - ids.begin();
                            if (pos >= j0 + cols) break;
                            if (ids[pos] != id) continue;  // not a candidate: nothing to hide
                        } else if (pos >= j0 + cols) {
                            break;
                        }
                        s[pos - j0] = kNegInf;  // -inf never beats the heap's floor
                    }
                }
                Entry* h = &w.heaps[r * k];
                std::int64_t j = next_above(s, 0, cols, h[0].score);
                while (j < cols) {
                    heap_replace_top(h, k, Entry{s[j], subset ? ids[j0 + j] : j0 + j});
                    j = next_above(s, j + 1, cols, h[0].score);
                }
            }
        }
        for (std::int64_t r = 0; r < rows; ++r)
            heap_finish(&w.heaps[r * k], k, out_ids + (q0 + r) * k, out_scores + (q0 + r) * k);
    });
}

void topk_candidates(const float* queries, std::int64_t n, const float* items, std::int64_t m,
                     std::int64_t f, std::int64_t k, const std::int64_t* candidates, std::int64_t c,
                     const TopkExclude& exclude, std::int64_t* out_ids, float* out_scores,
                     int threads) {
    check_common(queries, n, items, m, f, k, out_ids, out_scores);
    check_exclude(exclude, n, m);
    check(c >= 0 && (c == 0 || n == 0 || candidates), "topk: candidates missing");
    for (std::int64_t p = 0; p < n * c; ++p)
        check(candidates[p] >= -1 && candidates[p] < m,
              "topk: candidate id " + std::to_string(candidates[p]) + " outside [0, " + std::to_string(m) + ") or -1");
    if (n == 0) return;

    const int nt = static_cast<int>(std::min<std::int64_t>(resolve_threads(threads), (n + 63) / 64));
    struct Workspace {
        std::vector<std::int64_t> ids;
        std::vector<Entry> heap;
    };
    std::vector<Workspace> work(static_cast<std::size_t>(nt));
    parallel_for(0, n, nt, 64, [&](std::int64_t i) {
        Workspace& w = work[static_cast<std::size_t>(thread_index())];
        w.ids.assign(candidates + i * c, candidates + (i + 1) * c);
        // Sorted unique ids: duplicates count once, exclusion is a merge, and ties need only `>`.
        std::sort(w.ids.begin(), w.ids.end());
        w.ids.erase(std::unique(w.ids.begin(), w.ids.end()), w.ids.end());
        w.heap.resize(static_cast<std::size_t>(k));
        Entry* h = w.heap.data();
        heap_init(h, k);
        std::int64_t p = exclude.indptr ? exclude.indptr[i] : 0;
        const std::int64_t end = exclude.indptr ? exclude.indptr[i + 1] : 0;
        const float* q = queries + i * f;
        for (std::int64_t id : w.ids) {
            if (id < 0) continue;  // padding
            while (p < end && exclude.indices[p] < id) ++p;
            if (p < end && exclude.indices[p] == id) continue;
            const float s = dot(q, items + id * f, f);
            if (s > h[0].score) heap_replace_top(h, k, Entry{s, id});
        }
        heap_finish(h, k, out_ids + i * k, out_scores + i * k);
    });
}

}  // namespace recforge
