// Exact top-K by inner product (see recforge/topk.hpp for the contract).
//
// Dense path, two kernels with the same results:
// - "fused" (x86-64 CPUs with AVX-512, picked at run time): items are packed once into panels of
//   32; a register-tiled micro-kernel computes 8 queries x 32 items and compares the tile against
//   each row's current k-th best score while it is still in registers. No score matrix is ever
//   written, nothing is re-packed per block, and only the rare score that beats the threshold
//   leaves the registers.
// - "blas" (everywhere else): for a block of queries x a block of items, one single-threaded SGEMM
//   writes the scores into a per-thread buffer that stays in L2; each row of it is then scanned
//   against the row's threshold (vectorised compare, 64 scores at a time).
// Either way the few scores that beat the threshold go into a bounded heap per row. Items are
// visited in increasing id order, so a score equal to the current k-th best always loses the tie
// (its id is higher) and a strict `>` suffices. Threads own whole query blocks: no sharing, no
// locks, results independent of the thread count. bench/NOTES-topk.md has the measurements.
#include "recforge/topk.hpp"

#include <algorithm>
#include <climits>
#include <cmath>
#include <limits>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "recforge/blas.hpp"
#include "recforge/parallel.hpp"
#include "recforge/simd.hpp"

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#define RECFORGE_FUSED_AVX512 1
#include <immintrin.h>
#else
#define RECFORGE_FUSED_AVX512 0
#endif

namespace recforge {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

struct Entry {
    float score;
    std::int64_t id;
};

// The result order: higher score first, then lower id.
inline bool better(const Entry& a, const Entry& b) { return a.score > b.score || (a.score == b.score && a.id < b.id); }

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
RECFORGE_SIMD_CLONES(RECFORGE_ISA_F)
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

// The candidates path's scoring: the shared dot product, compiled per SIMD level.
RECFORGE_SIMD_CLONES(RECFORGE_ISA_F)
float score(const float* q, const float* item, std::int64_t f) { return simd::dot(q, item, f); }

// Validation helpers; messages are only built on failure (some checks run once per stored id).
void check(bool ok, const char* what) {
    if (!ok) throw std::invalid_argument(what);
}

// An item id out of range in the argument `name` (subset or candidates).
[[noreturn]] void fail_id(const char* name, std::int64_t id, std::int64_t m, const char* tail = ")") {
    throw std::invalid_argument(std::string("topk: ") + name + " holds item id " + std::to_string(id) +
                                ", outside [0, " + std::to_string(m) + tail);
}

void check_common(const float* queries, std::int64_t n, const float* items, std::int64_t m, std::int64_t f,
                  std::int64_t k, std::int64_t* out_ids, float* out_scores) {
    check(n >= 0, "topk: n must be >= 0");
    check(m >= 1, "topk: items must not be empty");
    check(f >= 1 && f <= INT_MAX, "topk: factors must be in [1, 2^31)");
    if (k < 1 || k > m)
        throw std::invalid_argument("topk: k must be in [1, " + std::to_string(m) + "], got " + std::to_string(k));
    check(items != nullptr && (n == 0 || (queries && out_ids && out_scores)), "topk: null array");
}

void check_exclude(const CsrView* ex, std::int64_t n, std::int64_t m) {
    if (ex && (ex->n_rows != n || ex->n_cols != m))
        throw std::invalid_argument("topk: exclude must have shape (" + std::to_string(n) + ", " + std::to_string(m) +
                                    "), got (" + std::to_string(ex->n_rows) + ", " + std::to_string(ex->n_cols) + ")");
}

void pad_all(std::int64_t n, std::int64_t k, std::int64_t* out_ids, float* out_scores) {
    std::fill(out_ids, out_ids + n * k, std::int64_t{-1});
    std::fill(out_scores, out_scores + n * k, kNegInf);
}

// Defaults: a 256 x 1024 float block of scores is 1 MB, half the 2 MB L2 of the cores this was
// tuned on, leaving room for the query block and OpenBLAS's packed panels (see bench/NOTES-topk.md).
constexpr std::int64_t kBlockQueries = 256;
constexpr std::int64_t kBlockItems = 1024;
// Fused kernel: queries per block. Each block streams every item panel once, so bigger blocks
// amortise that (256 -> 512 -> 1024 queries: 113 -> 105 -> 103 ms for 4,000 x 27,000, f=64, one
// thread); the packed queries (512 x f floats) and heaps still fit L2.
constexpr std::int64_t kFusedBlockQueries = 512;
// Fused kernel: below this many queries, packing the items (~1 ns per float) costs more than the
// fused scoring saves, and the BLAS kernel is used instead (crossover measured near 200 queries).
constexpr std::int64_t kFusedMinQueries = 256;
// Fused kernel: bytes of item panels that every query group of a block passes over in turn.
constexpr std::int64_t kFusedChunkBytes = std::int64_t{32} << 10;
// Heaps per thread are capped at about this many bytes: large k shrinks the query block.
constexpr std::int64_t kHeapBudget = std::int64_t{8} << 20;

// What the per-row selection needs; shared by both kernels.
struct Rows {
    std::int64_t k;
    const std::int64_t* ids;  // position -> item id (subset), or nullptr: position == id
    const CsrView* exclude;  // or nullptr
};

// Per-row state while a query block is scanned.
struct RowState {
    Entry* heap;
    float thr;             // the heap's worst score: only a strictly greater one can enter
    std::int64_t ex_next;  // next exclude entry (ids are visited in increasing order)
    std::int64_t ex_end;
};

// Offers the score at position `pos` to a row (the rare path: it already beat the threshold).
inline void offer(RowState& st, const Rows& rows, std::int64_t pos, float s) {
    if (!(s > st.thr)) return;
    const std::int64_t id = rows.ids ? rows.ids[pos] : pos;
    if (st.ex_next < st.ex_end) {
        const std::int32_t* ex = rows.exclude->indices;
        while (st.ex_next < st.ex_end && ex[st.ex_next] < id) ++st.ex_next;
        if (st.ex_next < st.ex_end && ex[st.ex_next] == id) return;
    }
    heap_replace_top(st.heap, rows.k, Entry{s, id});
    st.thr = st.heap[0].score;
}

void start_rows(RowState* st, Entry* heaps, std::int64_t q0, std::int64_t count, const Rows& rows) {
    for (std::int64_t r = 0; r < count; ++r) {
        st[r].heap = heaps + r * rows.k;
        heap_init(st[r].heap, rows.k);
        st[r].thr = kNegInf;
        st[r].ex_next = rows.exclude ? rows.exclude->indptr[q0 + r] : 0;
        st[r].ex_end = rows.exclude ? rows.exclude->indptr[q0 + r + 1] : 0;
    }
}

void finish_rows(RowState* st, std::int64_t q0, std::int64_t count, std::int64_t k, std::int64_t* out_ids,
                 float* out_scores) {
    for (std::int64_t r = 0; r < count; ++r)
        heap_finish(st[r].heap, k, out_ids + (q0 + r) * k, out_scores + (q0 + r) * k);
}

void dense_blas(const float* queries, std::int64_t n, const float* it, std::int64_t mm, std::int64_t f,
                const Rows& rows, std::int64_t bq, std::int64_t bi, std::int64_t* out_ids, float* out_scores,
                int threads) {
    const std::int64_t k = rows.k;
    bq = std::min(bq, n);
    bi = std::min(bi, mm);
    check(bq * bi <= INT_MAX / 2, "topk: block sizes too large");
    const std::int64_t n_blocks = (n + bq - 1) / bq;
    const int nt = static_cast<int>(std::min<std::int64_t>(resolve_threads(threads), n_blocks));
    struct Workspace {
        std::vector<float> scores;
        std::vector<Entry> heaps;
        std::vector<RowState> state;
    };
    std::vector<Workspace> work(static_cast<std::size_t>(nt));
    StopToken* const stop = StopToken::current();
    parallel_for(0, n_blocks, nt, 1, [&](std::int64_t b) {
        Workspace& w = work[static_cast<std::size_t>(thread_index())];
        if (w.scores.empty()) {
            w.scores.resize(static_cast<std::size_t>(bq * bi));
            w.heaps.resize(static_cast<std::size_t>(bq * k));
            w.state.resize(static_cast<std::size_t>(bq));
        }
        const std::int64_t q0 = b * bq;
        const std::int64_t count = std::min(bq, n - q0);
        start_rows(w.state.data(), w.heaps.data(), q0, count, rows);
        for (std::int64_t j0 = 0; j0 < mm; j0 += bi) {
            if (stop_requested(stop)) return;  // a huge catalogue: poll between item blocks too
            const std::int64_t cols = std::min(bi, mm - j0);
            blas::gemm(false, true, static_cast<int>(count), static_cast<int>(cols), static_cast<int>(f), 1.0f,
                       queries + q0 * f, static_cast<int>(f), it + j0 * f, static_cast<int>(f), 0.0f, w.scores.data(),
                       static_cast<int>(cols));
            for (std::int64_t r = 0; r < count; ++r) {
                const float* s = &w.scores[r * cols];
                RowState& st = w.state[r];
                for (std::int64_t j = next_above(s, 0, cols, st.thr); j < cols; j = next_above(s, j + 1, cols, st.thr))
                    offer(st, rows, j0 + j, s[j]);
            }
        }
        finish_rows(w.state.data(), q0, count, k, out_ids, out_scores);
    });
}

#if RECFORGE_FUSED_AVX512
constexpr int kTileRows = 8;    // queries per micro-tile: 8 x 2 accumulators + 2 item vectors
constexpr int kPanel = 32;      // items per panel: two 16-float vectors
constexpr std::int64_t kAlign = 64;

struct AlignedFree {
    void operator()(float* p) const { _mm_free(p); }
};
using AlignedFloats = std::unique_ptr<float[], AlignedFree>;

AlignedFloats aligned_floats(std::int64_t count) {
    float* p = static_cast<float*>(_mm_malloc(static_cast<std::size_t>(std::max<std::int64_t>(count, 1)) * 4, kAlign));
    if (!p) throw std::bad_alloc();
    return AlignedFloats(p);
}

// Scores 8 packed queries (qp: f x 8) against every panel of `ipack` (each f x 32) and offers what
// beats a row's threshold. Compiled for AVX-512 only; called after a CPU check.
__attribute__((target("avx512f,fma"))) void fused_group(const float* qp, const float* ipack, std::int64_t p_begin,
                                                        std::int64_t p_end, std::int64_t f, std::int64_t mm,
                                                        RowState* st, int live, const Rows& rows) {
    for (std::int64_t p = p_begin; p < p_end; ++p) {
        const float* b = ipack + p * f * kPanel;
        const float* a = qp;
        __m512 c[kTileRows][2];
        for (int r = 0; r < kTileRows; ++r) c[r][0] = c[r][1] = _mm512_setzero_ps();
        for (std::int64_t t = 0; t < f; ++t, a += kTileRows, b += kPanel) {
            const __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
            for (int r = 0; r < kTileRows; ++r) {
                const __m512 ar = _mm512_set1_ps(a[r]);
                c[r][0] = _mm512_fmadd_ps(ar, b0, c[r][0]);
                c[r][1] = _mm512_fmadd_ps(ar, b1, c[r][1]);
            }
        }
        for (int r = 0; r < live; ++r) {
            const __m512 thr = _mm512_set1_ps(st[r].thr);
            std::uint32_t mask = _mm512_cmp_ps_mask(c[r][0], thr, _CMP_GT_OQ) |
                                 (static_cast<std::uint32_t>(_mm512_cmp_ps_mask(c[r][1], thr, _CMP_GT_OQ)) << 16);
            if (!mask) continue;  // the common case once the heap has filled
            alignas(64) float tile[kPanel];
            _mm512_store_ps(tile, c[r][0]);
            _mm512_store_ps(tile + 16, c[r][1]);
            const std::int64_t base = p * kPanel;
            while (mask) {
                const int j = __builtin_ctz(mask);
                mask &= mask - 1;
                if (base + j >= mm) break;  // zero padding past the last item
                offer(st[r], rows, base + j, tile[j]);
            }
        }
    }
}

bool cpu_has_avx512() {
    static const bool has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma");
    return has;
}

void dense_fused(const float* queries, std::int64_t n, const float* items, std::int64_t mm, std::int64_t f,
                 const Rows& rows, std::int64_t bq, std::int64_t chunk_items, std::int64_t* out_ids, float* out_scores,
                 int threads) {
    const std::int64_t k = rows.k;
    const std::int64_t n_panels = (mm + kPanel - 1) / kPanel;
    const int nt_max = resolve_threads(threads);
    // Panel p, factor t holds items p*32 .. p*32+31 (through `ids` for a subset), zero past the end.
    AlignedFloats ipack = aligned_floats(n_panels * kPanel * f);
    parallel_for(0, n_panels, nt_max, 16, [&](std::int64_t p) {
        float* dst = ipack.get() + p * f * kPanel;
        for (int j = 0; j < kPanel; ++j) {
            const std::int64_t pos = p * kPanel + j;
            if (pos < mm) {
                const float* src = items + (rows.ids ? rows.ids[pos] : pos) * f;
                for (std::int64_t t = 0; t < f; ++t) dst[t * kPanel + j] = src[t];
            } else {
                for (std::int64_t t = 0; t < f; ++t) dst[t * kPanel + j] = 0.0f;
            }
        }
    });
    // At least 4 blocks per thread when n allows, so dynamic scheduling can balance the threads.
    bq = std::min(bq, (n + 4 * nt_max - 1) / (4 * nt_max));
    bq = std::max<std::int64_t>(kTileRows, (bq + kTileRows - 1) / kTileRows * kTileRows);
    const std::int64_t n_blocks = (n + bq - 1) / bq;
    const int nt = static_cast<int>(std::min<std::int64_t>(nt_max, n_blocks));
    struct Workspace {
        AlignedFloats qpack;
        std::vector<Entry> heaps;
        std::vector<RowState> state;
    };
    std::vector<Workspace> work(static_cast<std::size_t>(nt));
    StopToken* const stop = StopToken::current();
    parallel_for(0, n_blocks, nt, 1, [&](std::int64_t b) {
        Workspace& w = work[static_cast<std::size_t>(thread_index())];
        if (!w.qpack) {
            w.qpack = aligned_floats(bq * f);
            w.heaps.resize(static_cast<std::size_t>(bq * k));
            w.state.resize(static_cast<std::size_t>(bq));
        }
        const std::int64_t q0 = b * bq;
        const std::int64_t count = std::min(bq, n - q0);
        const std::int64_t groups = (count + kTileRows - 1) / kTileRows;
        // Group g, factor t holds queries q0+8g .. q0+8g+7: one broadcast per query and factor.
        for (std::int64_t g = 0; g < groups; ++g)
            for (int r = 0; r < kTileRows; ++r) {
                const std::int64_t row = g * kTileRows + r;
                float* dst = w.qpack.get() + g * f * kTileRows + r;
                for (std::int64_t t = 0; t < f; ++t)
                    dst[t * kTileRows] = row < count ? queries[(q0 + row) * f + t] : 0.0f;
            }
        start_rows(w.state.data(), w.heaps.data(), q0, count, rows);
        // Panel chunks outside, query groups inside: a chunk of panels stays in L1/L2 while every
        // group of the block passes over it.
        const std::int64_t chunk = std::max<std::int64_t>(
            1, chunk_items > 0 ? chunk_items / kPanel : kFusedChunkBytes / (f * kPanel * 4));
        for (std::int64_t p0 = 0; p0 < n_panels; p0 += chunk) {
            if (stop_requested(stop)) return;  // a huge catalogue: poll between item chunks too
            const std::int64_t p1 = std::min(n_panels, p0 + chunk);
            for (std::int64_t g = 0; g < groups; ++g) {
                const int live = static_cast<int>(std::min<std::int64_t>(kTileRows, count - g * kTileRows));
                fused_group(w.qpack.get() + g * f * kTileRows, ipack.get(), p0, p1, f, mm, &w.state[g * kTileRows],
                            live, rows);
            }
        }
        finish_rows(w.state.data(), q0, count, k, out_ids, out_scores);
    });
}
#endif

}  // namespace

bool topk_has_fused() {
#if RECFORGE_FUSED_AVX512
    return cpu_has_avx512();
#else
    return false;
#endif
}

void topk_dense(const float* queries, std::int64_t n, const float* items, std::int64_t m, std::int64_t f,
                std::int64_t k, const std::int64_t* subset, std::int64_t n_subset, const CsrView* exclude,
                std::int64_t* out_ids, float* out_scores, int threads, TopkOptions options) {
    check_common(queries, n, items, m, f, k, out_ids, out_scores);
    check_exclude(exclude, n, m);
    check(options.block_queries >= 0 && options.block_items >= 0, "topk: block sizes must be >= 0");
    check(options.kernel == TopkKernel::automatic || options.kernel == TopkKernel::blas ||
              options.kernel == TopkKernel::fused,
          "topk: unknown kernel");
    if (n == 0) return;

    // A subset is scored as a dense item matrix whose positions map back to sorted, unique ids.
    std::vector<std::int64_t> ids;
    std::int64_t mm = m;
    if (subset) {
        check(n_subset >= 0, "topk: subset size must be >= 0");
        ids.assign(subset, subset + n_subset);
        for (std::int64_t id : ids)
            if (id < 0 || id >= m) fail_id("subset", id, m);
        std::sort(ids.begin(), ids.end());
        ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
        mm = static_cast<std::int64_t>(ids.size());
    }
    if (mm == 0) {
        pad_all(n, k, out_ids, out_scores);
        return;
    }
    const Rows rows{k, subset ? ids.data() : nullptr, exclude};
    const std::int64_t heap_rows = std::max<std::int64_t>(1,
                                                          kHeapBudget / (k * static_cast<std::int64_t>(sizeof(Entry))));

    const bool fused = topk_has_fused() && (options.kernel == TopkKernel::fused ||
                                            (options.kernel == TopkKernel::automatic && n >= kFusedMinQueries));
    check(fused || options.kernel != TopkKernel::fused, "topk: the fused kernel needs an x86-64 CPU with AVX-512");
#if RECFORGE_FUSED_AVX512
    if (fused) {
        const std::int64_t bq = std::min(options.block_queries > 0 ? options.block_queries : kFusedBlockQueries,
                                         heap_rows);
        dense_fused(queries, n, items, mm, f, rows, bq, options.block_items, out_ids, out_scores, threads);
        return;
    }
#endif
    std::vector<float> gathered;
    const float* it = items;
    if (subset) {
        gathered.resize(static_cast<std::size_t>(mm * f));
        for (std::int64_t j = 0; j < mm; ++j)
            std::copy(items + ids[j] * f, items + (ids[j] + 1) * f, gathered.begin() + j * f);
        it = gathered.data();
    }
    dense_blas(queries, n, it, mm, f, rows,
               std::min(options.block_queries > 0 ? options.block_queries : kBlockQueries, heap_rows),
               options.block_items > 0 ? options.block_items : kBlockItems, out_ids, out_scores, threads);
}

void topk_candidates(const float* queries, std::int64_t n, const float* items, std::int64_t m, std::int64_t f,
                     std::int64_t k, const std::int64_t* candidates, std::int64_t c, const CsrView* exclude,
                     std::int64_t* out_ids, float* out_scores, int threads) {
    check_common(queries, n, items, m, f, k, out_ids, out_scores);
    check_exclude(exclude, n, m);
    check(c >= 0 && (c == 0 || n == 0 || candidates), "topk: candidates missing");
    for (std::int64_t p = 0; p < n * c; ++p)
        if (candidates[p] < -1 || candidates[p] >= m) fail_id("candidates", candidates[p], m, ") or -1");
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
        std::int64_t p = exclude ? exclude->indptr[i] : 0;
        const std::int64_t end = exclude ? exclude->indptr[i + 1] : 0;
        const float* q = queries + i * f;
        for (std::int64_t id : w.ids) {
            if (id < 0) continue;  // padding
            while (p < end && exclude->indices[p] < id) ++p;
            if (p < end && exclude->indices[p] == id) continue;
            const float s = score(q, items + id * f, f);
            if (s > h[0].score) heap_replace_top(h, k, Entry{s, id});
        }
        heap_finish(h, k, out_ids + i * k, out_scores + i * k);
    });
}

}  // namespace recforge
