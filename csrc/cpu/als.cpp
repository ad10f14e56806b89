// ALS half-steps on the CPU: implicit (CG and Cholesky) and explicit with biases. See als.hpp for
// the model and the contract.
//
// Layout of the work: rows are processed in blocks of kRowBlock on `threads` OpenMP threads
// (dynamic schedule: row lengths follow a power law). Each thread owns its scratch buffers, so
// the only shared writes are each row's own output.
//
// Speed notes (history and measurements: bench/NOTES-als.md):
// - CG: the hot loop is, per stored entry, one dot product and one axpy over a factor row, fused,
//   compiled for fixed f (32/64/128) with the accumulator in registers, entries in groups of 4 so
//   their reductions overlap, and the factor rows prefetched on the first pass. GCC function
//   multiversioning picks AVX-512/AVX2/baseline code at run time (no -march=native).
// - Cholesky: a row's rank updates are batched: its factor rows are gathered into a contiguous
//   block and added with one register-tiled product (our kernel for f % 32 == 0, BLAS otherwise),
//   then a blocked Cholesky whose trailing updates use the same tile kernel. Small-matrix BLAS
//   (SYRK + POTRF per row) spent most of its time packing and blocking for big matrices.
#include "recforge/als.hpp"

#include <algorithm>
#include <atomic>
#include <climits>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "recforge/blas.hpp"
#include "recforge/parallel.hpp"
#include "recforge/simd.hpp"

namespace recforge::als {
namespace {

constexpr std::int64_t kRowBlock = 32;   // rows per scheduling unit
constexpr std::int64_t kGatherRows = 64;  // Cholesky: entries per gathered block (Z, W stay in L1)

// ---- small vector kernels, F = compile-time length (0: runtime fr) -----------------------------
// a . b over F (or fr) floats, F > 0 a compile-time length. The `omp simd` order, not simd::dot's:
// ALS results are pinned to it (tests/golden).
template <int F>
RECFORGE_INLINE float dot(const float* __restrict a, const float* __restrict b, int fr) {
    return simd::dot_any_order(a, b, F ? F : fr);
}

template <int F>
RECFORGE_INLINE void axpy(float a, const float* __restrict x, float* __restrict y, int fr) {
    const int f = F ? F : fr;
#pragma omp simd
    for (int k = 0; k < f; ++k) y[k] += a * x[k];
}

// out = scale * G x + lam * x for symmetric G (f x f, row-major): summed as columns (axpy form) so
// the inner loop is a contiguous vector update rather than a horizontal reduction.
template <int F>
RECFORGE_INLINE void symv(const float* __restrict G, const float* __restrict x, float scale, float lam,
                          float* __restrict out, int fr) {
    const int f = F ? F : fr;
#pragma omp simd
    for (int k = 0; k < f; ++k) out[k] = lam * x[k];
    for (int j = 0; j < f; ++j) axpy<F>(scale * x[j], G + static_cast<std::int64_t>(j) * f, out, f);
}

constexpr std::int64_t kPrefetch = 6;  // entries ahead

using simd::hsum;
using simd::v16f;

RECFORGE_INLINE void prefetch_row(const float* y, int f) {
    for (int k = 0; k < f; k += 16) __builtin_prefetch(y + k);
}

float row_lambda(const ImplicitOptions& o, std::int64_t n, std::int64_t cols) {
    if (o.nu == 0.0f) return o.reg;
    const double count = o.scaling == RegScaling::observed
                             ? static_cast<double>(n)
                             : static_cast<double>(n) + o.alpha0 * static_cast<double>(cols);
    return static_cast<float>(o.reg * std::pow(count, static_cast<double>(o.nu)));
}

struct ImplicitCtx {
    CsrView m;
    const float* Y;
    const float* G;  // YᵀY (f x f)
    int f;
    ImplicitOptions opt;
    float* X;
    StopToken* stop;  // the caller's (or null); exact solves poll it per row: a row can take a second
    const float* prior = nullptr;  // per-row prior means (m.n_rows x f) or null (implicit_solve)
    float prior_weight = 0.0f;
};

// One pass over a row's entries: out += sum_j coef_j y_j with
//   RESIDUAL: coef_j = c_j - (c_j - alpha0) y_j.v    (r = b - A x, less the alpha0 G x + lambda x part)
//   else:     coef_j = (c_j - alpha0) y_j.v          (A p, less the same part)
// For F % 16 == 0 the accumulator stays in registers (v16f x F/16) across the entries; otherwise it
// would make a store/load chain through memory per entry.
template <int F, bool RESIDUAL>
RECFORGE_INLINE void row_pass(const ImplicitCtx& c, std::int64_t lo, std::int64_t hi, const float* __restrict v,
                              float* __restrict out) {
    const int f = F ? F : c.f;
    const float alpha = c.opt.alpha, alpha0 = c.opt.alpha0;
    if constexpr (F > 0 && F % 16 == 0) {
        constexpr int T = F / 16;
        v16f acc[T];
        for (int t = 0; t < T; ++t) acc[t] = *reinterpret_cast<const v16f*>(out + 16 * t);
        v16f vv[T];
        for (int t = 0; t < T; ++t) vv[t] = *reinterpret_cast<const v16f*>(v + 16 * t);
        // Entries in groups of G: their G dot products are independent, so their horizontal
        // reductions overlap instead of each one stalling the accumulation that depends on it.
        constexpr int G = 4;
        std::int64_t j = lo;
        for (; j + G <= hi; j += G) {
            if (RESIDUAL)
                for (int g = 0; g < G && j + kPrefetch + g < hi; ++g)
                    prefetch_row(c.Y + static_cast<std::int64_t>(c.m.indices[j + kPrefetch + g]) * F, F);
            const float* y[G];
            float coef[G];
            for (int g = 0; g < G; ++g) {
                y[g] = c.Y + static_cast<std::int64_t>(c.m.indices[j + g]) * F;
                v16f s = vv[0] * *reinterpret_cast<const v16f*>(y[g]);
                for (int t = 1; t < T; ++t) s += vv[t] * *reinterpret_cast<const v16f*>(y[g] + 16 * t);
                const float yv = hsum(s);
                const float conf = 1.0f + alpha * c.m.data[j + g];
                coef[g] = RESIDUAL ? conf - (conf - alpha0) * yv : (conf - alpha0) * yv;
            }
            for (int g = 0; g < G; ++g)
                for (int t = 0; t < T; ++t) acc[t] += coef[g] * *reinterpret_cast<const v16f*>(y[g] + 16 * t);
        }
        for (; j < hi; ++j) {
            const float* y = c.Y + static_cast<std::int64_t>(c.m.indices[j]) * F;
            const float conf = 1.0f + alpha * c.m.data[j];
            const float yv = dot<F>(y, v, F);
            const float coef = RESIDUAL ? conf - (conf - alpha0) * yv : (conf - alpha0) * yv;
            for (int t = 0; t < T; ++t) acc[t] += coef * *reinterpret_cast<const v16f*>(y + 16 * t);
        }
        for (int t = 0; t < T; ++t) *reinterpret_cast<v16f*>(out + 16 * t) = acc[t];
    } else {
        for (std::int64_t j = lo; j < hi; ++j) {
            if (RESIDUAL && j + kPrefetch < hi)
                prefetch_row(c.Y + static_cast<std::int64_t>(c.m.indices[j + kPrefetch]) * f, f);
            const float* y = c.Y + static_cast<std::int64_t>(c.m.indices[j]) * f;
            const float conf = 1.0f + alpha * c.m.data[j];
            const float yv = dot<F>(y, v, f);
            axpy<F>(RESIDUAL ? conf - (conf - alpha0) * yv : (conf - alpha0) * yv, y, out, f);
        }
    }
}

// ---- implicit, conjugate gradient ---------------------------------------------------------
// Matrix-free CG on A x = b with A = alpha0 G + sum (c_i - alpha0) y_i y_iᵀ + lambda I, warm-started
// from the current x; each step costs one pass over the row's factor rows plus one f x f matvec.
template <int F>
RECFORGE_INLINE void cg_rows(const ImplicitCtx& c, std::int64_t begin, std::int64_t end, float* scratch) {
    const int f = F ? F : c.f;
    const float alpha0 = c.opt.alpha0;
    float* __restrict r = scratch;
    float* __restrict p = scratch + f;
    float* __restrict ap = scratch + 2 * f;
    for (std::int64_t u = begin; u < end; ++u) {
        const std::int64_t lo = c.m.indptr[u], hi = c.m.indptr[u + 1];
        float* __restrict x = c.X + u * f;
        if (hi == lo && !c.prior) {  // no entries: b = 0, so x = 0 exactly
            std::fill(x, x + f, 0.0f);
            continue;
        }
        const float lam = row_lambda(c.opt, hi - lo, c.m.n_cols) + c.prior_weight;
        // r = b - A x, accumulated per entry as (c_i - (c_i - alpha0) y_i.x) y_i
        symv<F>(c.G, x, alpha0, lam, ap, f);
        if (c.prior) {
            const float* __restrict mean = c.prior + u * f;
            for (int k = 0; k < f; ++k) r[k] = c.prior_weight * mean[k] - ap[k];
        } else {
            for (int k = 0; k < f; ++k) r[k] = -ap[k];
        }
        row_pass<F, true>(c, lo, hi, x, r);
        std::memcpy(p, r, sizeof(float) * f);
        float rs = dot<F>(r, r, f);
        for (int step = 0; step < c.opt.cg_steps; ++step) {
            if (rs < 1e-20f) break;  // converged (also avoids 0/0 below)
            symv<F>(c.G, p, alpha0, lam, ap, f);
            row_pass<F, false>(c, lo, hi, p, ap);
            const float pap = dot<F>(p, ap, f);
            if (!(pap > 0.0f)) break;  // numerically flat direction: keep the current x
            const float a = rs / pap;
            axpy<F>(a, p, x, f);
            axpy<F>(-a, ap, r, f);
            const float rs_new = dot<F>(r, r, f);
            const float beta = rs_new / rs;
#pragma omp simd
            for (int k = 0; k < f; ++k) p[k] = r[k] + beta * p[k];
            rs = rs_new;
        }
    }
}

RECFORGE_SIMD_CLONES(RECFORGE_ISA_V4)
void cg_block(const ImplicitCtx& c, std::int64_t begin, std::int64_t end, float* scratch) {
    switch (c.f) {
        case 32:
            cg_rows<32>(c, begin, end, scratch);
            break;
        case 64:
            cg_rows<64>(c, begin, end, scratch);
            break;
        case 128:
            cg_rows<128>(c, begin, end, scratch);
            break;
        default:
            cg_rows<0>(c, begin, end, scratch);
            break;
    }
}

// ---- implicit, exact (Cholesky) -------------------------------------------------------------
// A row whose system is singular is reported, not thrown, from inside the parallel region: the
// solvers return it (kNoFailure when every row solved) and the caller throws once the region is
// over, for the smallest failing row, so the message does not depend on the thread count.
constexpr std::int64_t kNoFailure = INT64_MAX;

[[noreturn]] void not_positive_definite(std::int64_t row) {
    throw std::domain_error("ALS: the normal equations of row " + std::to_string(row) +
                            " are not positive definite in float32: regularization must be > 0, and the row's "
                            "values must not span more orders of magnitude than float32 resolves");
}

// Lowers `first` to `row` (the smallest failing row over all threads).
void record_failure(std::atomic<std::int64_t>& first, std::int64_t row) {
    std::int64_t seen = first.load(std::memory_order_relaxed);
    while (row < seen && !first.compare_exchange_weak(seen, row, std::memory_order_relaxed)) {
    }
}

struct CholeskyScratch {
    std::vector<float> A, b, Z, W;
};

// Upper triangle, rows and columns from o (a multiple of 16), of
//     A (F x F, row-major) +=/-= sum_j W[j] Z[j]ᵀ   (A[a][c] +=/-= W[j][a] Z[j][c]; W, Z: nb x F row-major)
// by 16-column tiles, so diagonal tiles are updated whole (their part left of the diagonal is the
// lower triangle, which nothing reads). Four rows x two tiles of accumulators stay in registers
// while j runs over the block. W and Z may point into A (rows above o): those rows are not written.
template <int F, bool SUB>
RECFORGE_INLINE void update_upper(float* A, const float* W, const float* Z, int nb, int o) {
    static_assert(F % 16 == 0, "tile kernel needs F % 16 == 0");
    int t = o;
    for (; t + 32 <= F; t += 32) {
        for (int a = o; a < t + 32; a += 4) {  // rows with a part on or above the diagonal in the tiles
            v16f acc[4][2];
            for (int r = 0; r < 4; ++r) {
                acc[r][0] = *reinterpret_cast<const v16f*>(A + (a + r) * F + t);
                acc[r][1] = *reinterpret_cast<const v16f*>(A + (a + r) * F + t + 16);
            }
            for (int j = 0; j < nb; ++j) {
                const float* z = Z + static_cast<std::int64_t>(j) * F + t;
                const float* w = W + static_cast<std::int64_t>(j) * F + a;
                const v16f z0 = *reinterpret_cast<const v16f*>(z);
                const v16f z1 = *reinterpret_cast<const v16f*>(z + 16);
                for (int r = 0; r < 4; ++r) {
                    if constexpr (SUB) {
                        acc[r][0] -= w[r] * z0;
                        acc[r][1] -= w[r] * z1;
                    } else {
                        acc[r][0] += w[r] * z0;
                        acc[r][1] += w[r] * z1;
                    }
                }
            }
            for (int r = 0; r < 4; ++r) {
                *reinterpret_cast<v16f*>(A + (a + r) * F + t) = acc[r][0];
                *reinterpret_cast<v16f*>(A + (a + r) * F + t + 16) = acc[r][1];
            }
        }
    }
    if (t < F) {  // one 16-wide tile left
        for (int a = o; a < t + 16; a += 4) {
            v16f acc[4];
            for (int r = 0; r < 4; ++r) acc[r] = *reinterpret_cast<const v16f*>(A + (a + r) * F + t);
            for (int j = 0; j < nb; ++j) {
                const v16f z0 = *reinterpret_cast<const v16f*>(Z + static_cast<std::int64_t>(j) * F + t);
                const float* w = W + static_cast<std::int64_t>(j) * F + a;
                for (int r = 0; r < 4; ++r) {
                    if constexpr (SUB) acc[r] -= w[r] * z0;
                    else acc[r] += w[r] * z0;
                }
            }
            for (int r = 0; r < 4; ++r) *reinterpret_cast<v16f*>(A + (a + r) * F + t) = acc[r];
        }
    }
}

// Solves A x = b in place (x in b) from the upper triangle of the SPD A (F x F, row-major),
// overwriting it with U, A = UᵀU. Blocked right-looking: a panel of 16 rows is factored with
// contiguous row-tail updates, then the trailing matrix gets one rank-16 update through the tile
// kernel above (where the flops are). Rows are updated in whole 16-float tiles, touching a few
// lower-triangle entries that are never read. False when A is not positive definite.
template <int F>
RECFORGE_INLINE bool cholesky_solve_upper(float* __restrict A, float* __restrict b) {
    static_assert(F % 16 == 0, "tile kernel needs F % 16 == 0");
    for (int kb = 0; kb < F; kb += 16) {
        for (int k = kb; k < kb + 16; ++k) {
            float* Uk = A + k * F;
            const float d = Uk[k];
            if (!(d > 0.0f) || !std::isfinite(d)) return false;
            const float ukk = std::sqrt(d), inv = 1.0f / ukk;
            for (int t = kb; t < F; t += 16) *reinterpret_cast<v16f*>(Uk + t) *= inv;
            Uk[k] = ukk;
            for (int i = k + 1; i < kb + 16; ++i) {
                float* Ai = A + i * F;
                const float uki = Uk[i];
                for (int t = kb; t < F; t += 16)
                    *reinterpret_cast<v16f*>(Ai + t) -= uki * *reinterpret_cast<const v16f*>(Uk + t);
            }
        }
        if (kb + 16 < F) update_upper<F, true>(A, A + kb * F, A + kb * F, 16, kb + 16);
    }
    for (int k = 0; k < F; ++k) {  // Uᵀ y = b, by columns of Uᵀ (rows of U)
        b[k] /= A[k * F + k];
        axpy<0>(-b[k], A + k * F + k + 1, b + k + 1, F - k - 1);
    }
    for (int i = F - 1; i >= 0; --i)  // U x = y
        b[i] = (b[i] - dot<0>(A + i * F + i + 1, b + i + 1, F - i - 1)) / A[i * F + i];
    return true;
}

// F > 0: the register-tiled kernels above (F % 32 == 0); F == 0: any f, through BLAS.
// Returns the first row whose system is not positive definite, or kNoFailure.
template <int F>
RECFORGE_INLINE std::int64_t cholesky_rows(const ImplicitCtx& c, std::int64_t begin, std::int64_t end,
                                           CholeskyScratch& s) {
    const int f = F ? F : c.f;
    const float alpha = c.opt.alpha, alpha0 = c.opt.alpha0;
    float* __restrict A = s.A.data();
    float* __restrict b = s.b.data();
    float* __restrict Z = s.Z.data();
    float* __restrict W = s.W.data();
    for (std::int64_t u = begin; u < end; ++u) {
        if (stop_requested(c.stop)) return kNoFailure;  // parallel_for throws Interrupted
        const std::int64_t lo = c.m.indptr[u], hi = c.m.indptr[u + 1];
        float* x = c.X + u * f;
        if (hi == lo && !c.prior) {
            std::fill(x, x + f, 0.0f);
            continue;
        }
        const float lam = row_lambda(c.opt, hi - lo, c.m.n_cols) + c.prior_weight;
        for (std::int64_t k = 0; k < static_cast<std::int64_t>(f) * f; ++k) A[k] = alpha0 * c.G[k];
        for (int k = 0; k < f; ++k) A[static_cast<std::int64_t>(k) * f + k] += lam;
        if (c.prior) {
            for (int k = 0; k < f; ++k) b[k] = c.prior_weight * c.prior[u * f + k];
        } else {
            std::fill(b, b + f, 0.0f);
        }
        for (std::int64_t start = lo; start < hi; start += kGatherRows) {
            const int nb = static_cast<int>(std::min<std::int64_t>(kGatherRows, hi - start));
            // Gather the block's factor rows (Z) and the same scaled by c_i - alpha0 (W): the
            // rank-nb update A += Wᵀ Z is then one small matrix product over contiguous memory.
            for (int j = 0; j < nb; ++j) {
                if (start + j + kPrefetch < hi)
                    prefetch_row(c.Y + static_cast<std::int64_t>(c.m.indices[start + j + kPrefetch]) * f, f);
                const float* y = c.Y + static_cast<std::int64_t>(c.m.indices[start + j]) * f;
                const float conf = 1.0f + alpha * c.m.data[start + j];
                const float w = conf - alpha0;
                float* __restrict zj = Z + static_cast<std::int64_t>(j) * f;
                float* __restrict wj = W + static_cast<std::int64_t>(j) * f;
#pragma omp simd
                for (int k = 0; k < f; ++k) {
                    zj[k] = y[k];
                    wj[k] = w * y[k];
                    b[k] += conf * y[k];
                }
            }
            if constexpr (F > 0) update_upper<F, false>(A, W, Z, nb, 0);
            else blas::gemm(true, false, f, f, nb, 1.0f, W, f, Z, f, 1.0f, A, f);
        }
        bool ok;
        if constexpr (F > 0) ok = cholesky_solve_upper<F>(A, b);
        else ok = blas::cholesky_solve(f, A, f, b);
        if (!ok) return u;
        std::memcpy(x, b, sizeof(float) * f);
    }
    return kNoFailure;
}

RECFORGE_SIMD_CLONES(RECFORGE_ISA_V4)
std::int64_t cholesky_block(const ImplicitCtx& c, std::int64_t begin, std::int64_t end, CholeskyScratch& s) {
    switch (c.f) {
        case 32:
            return cholesky_rows<32>(c, begin, end, s);
        case 64:
            return cholesky_rows<64>(c, begin, end, s);
        case 128:
            return cholesky_rows<128>(c, begin, end, s);
        default:
            return cholesky_rows<0>(c, begin, end, s);
    }
}

std::int64_t block_count(std::int64_t rows) { return (rows + kRowBlock - 1) / kRowBlock; }

void check_factors(int f) {
    if (f <= 0) throw std::invalid_argument("factors must be >= 1, got " + std::to_string(f));
}

}  // namespace

void gram(const float* Y, std::int64_t n, int f, float* G, int threads) {
    check_factors(f);
    if (n > INT32_MAX) throw std::invalid_argument("gram: more than 2^31 - 1 rows");
    std::fill(G, G + static_cast<std::int64_t>(f) * f, 0.0f);
    if (n == 0) return;
    if (blas::routines().ssyrk) {
        blas::gram(f, static_cast<int>(n), 1.0f, Y, f, 0.0f, G, f);
        return;
    }
    // Reference product by blocks of G's rows: each entry's sum runs in the same order as one
    // whole call, so the split (and the thread count) cannot change a bit.
    constexpr int kRows = 8;
    parallel_for(0, (f + kRows - 1) / kRows, threads, 1, [&](std::int64_t b) {
        const int i0 = static_cast<int>(b) * kRows, rows = std::min(kRows, f - i0);
        blas::gemm(true, false, rows, f, static_cast<int>(n), 1.0f, Y + i0, f, Y, f, 0.0f,
                   G + static_cast<std::int64_t>(i0) * f, f);
    });
}

void implicit_solve(const CsrView& m, const float* Y, const float* G, int f, float* X, const ImplicitOptions& opt,
                    const float* prior, float prior_weight) {
    check_factors(f);
    if (opt.cg_steps < 1 && opt.solver == Solver::cg) throw std::invalid_argument("cg_steps must be >= 1");
    if (!(prior_weight >= 0.0f) || !std::isfinite(prior_weight))
        throw std::invalid_argument("prior_weight must be finite and >= 0");
    const ImplicitCtx ctx{m, Y, G, f, opt, X, StopToken::current(), prior, prior ? prior_weight : 0.0f};
    const int nt = resolve_threads(opt.threads);
    if (opt.solver == Solver::cg) {
        std::vector<std::vector<float>> scratch(nt, std::vector<float>(3 * static_cast<std::size_t>(f)));
        parallel_for(0, block_count(m.n_rows), opt.threads, 1, [&](std::int64_t blk) {
            const std::int64_t begin = blk * kRowBlock, end = std::min(m.n_rows, begin + kRowBlock);
            cg_block(ctx, begin, end, scratch[thread_index()].data());
        });
    } else {
        std::vector<CholeskyScratch> scratch(nt);
        for (auto& s : scratch) {
            s.A.resize(static_cast<std::size_t>(f) * f);
            s.b.resize(f);
            s.Z.resize(static_cast<std::size_t>(kGatherRows) * f);
            s.W.resize(static_cast<std::size_t>(kGatherRows) * f);
        }
        std::atomic<std::int64_t> failed_row{kNoFailure};
        parallel_for(0, block_count(m.n_rows), opt.threads, 1, [&](std::int64_t blk) {
            const std::int64_t begin = blk * kRowBlock, end = std::min(m.n_rows, begin + kRowBlock);
            const std::int64_t bad = cholesky_block(ctx, begin, end, scratch[thread_index()]);
            if (bad != kNoFailure) record_failure(failed_row, bad);
        });
        if (failed_row.load() != kNoFailure) not_positive_definite(failed_row.load());
    }
}

void explicit_solve(const CsrView& m, const float* Y, const float* other_bias, int f, float* X, float* own_bias,
                    const ExplicitOptions& opt) {
    check_factors(f);
    const int d = f + 1;  // [factors, bias]
    const int nt = resolve_threads(opt.threads);
    std::vector<CholeskyScratch> scratch(nt);
    for (auto& s : scratch) {
        s.A.resize(static_cast<std::size_t>(d) * d);
        s.b.resize(d);
        s.Z.resize(static_cast<std::size_t>(kGatherRows) * d);
    }
    std::atomic<std::int64_t> failed_row{kNoFailure};
    StopToken* const stop = StopToken::current();
    parallel_for(0, block_count(m.n_rows), opt.threads, 1, [&](std::int64_t blk) {
        const std::int64_t begin = blk * kRowBlock, end = std::min(m.n_rows, begin + kRowBlock);
        CholeskyScratch& s = scratch[thread_index()];
        float* A = s.A.data();
        float* b = s.b.data();
        float* Z = s.Z.data();
        for (std::int64_t u = begin; u < end; ++u) {
            if (stop_requested(stop)) return;  // parallel_for throws Interrupted
            const std::int64_t lo = m.indptr[u], hi = m.indptr[u + 1];
            float* x = X + u * f;
            if (hi == lo) {  // no ratings: the prediction falls back to mu + b_i
                std::fill(x, x + f, 0.0f);
                own_bias[u] = 0.0f;
                continue;
            }
            // ALS-WR: lambda n_u on the factors and the bias alike.
            const float lam = opt.reg * static_cast<float>(hi - lo);
            std::fill(A, A + static_cast<std::int64_t>(d) * d, 0.0f);
            for (int k = 0; k < d; ++k) A[static_cast<std::int64_t>(k) * d + k] = lam;
            std::fill(b, b + d, 0.0f);
            for (std::int64_t start = lo; start < hi; start += kGatherRows) {
                const int nb = static_cast<int>(std::min<std::int64_t>(kGatherRows, hi - start));
                for (int j = 0; j < nb; ++j) {
                    const std::int64_t i = m.indices[start + j];
                    const float* y = Y + i * f;
                    float* zj = Z + static_cast<std::int64_t>(j) * d;
                    std::memcpy(zj, y, sizeof(float) * f);
                    zj[f] = 1.0f;
                    const float t = m.data[start + j] - opt.global_mean - other_bias[i];
                    for (int k = 0; k < d; ++k) b[k] += t * zj[k];
                }
                blas::gram(d, nb, 1.0f, Z, d, 1.0f, A, d);
            }
            if (!blas::cholesky_solve(d, A, d, b)) {
                record_failure(failed_row, u);
                return;
            }
            std::memcpy(x, b, sizeof(float) * f);
            own_bias[u] = b[f];
        }
    });
    if (failed_row.load() != kNoFailure) not_positive_definite(failed_row.load());
}

double implicit_loss(const CsrView& m, const float* X, const float* Y, const float* G, int f,
                     const ImplicitOptions& opt) {
    check_factors(f);
    std::vector<double> per_row(m.n_rows, 0.0);
    parallel_for(0, m.n_rows, opt.threads, 256, [&](std::int64_t u) {
        const float* x = X + u * f;
        double v = 0.0;
        for (std::int64_t j = m.indptr[u]; j < m.indptr[u + 1]; ++j) {
            const float* y = Y + static_cast<std::int64_t>(m.indices[j]) * f;
            double yx = 0.0;
            for (int k = 0; k < f; ++k) yx += static_cast<double>(x[k]) * y[k];
            const double conf = 1.0 + static_cast<double>(opt.alpha) * m.data[j];
            v += conf * (1.0 - yx) * (1.0 - yx) - opt.alpha0 * yx * yx;
        }
        double xgx = 0.0, xx = 0.0;
        for (int a = 0; a < f; ++a) {
            double row = 0.0;
            for (int k = 0; k < f; ++k) row += static_cast<double>(G[static_cast<std::size_t>(a) * f + k]) * x[k];
            xgx += row * x[a];
            xx += static_cast<double>(x[a]) * x[a];
        }
        per_row[u] = v + opt.alpha0 * xgx + row_lambda(opt, m.indptr[u + 1] - m.indptr[u], m.n_cols) * xx;
    });
    double total = 0.0;
    for (double v : per_row) total += v;
    return total;
}

double explicit_sse(const CsrView& m, const float* X, const float* own_bias, const float* Y, const float* other_bias,
                    int f, float global_mean, int threads) {
    check_factors(f);
    std::vector<double> per_row(m.n_rows, 0.0);
    parallel_for(0, m.n_rows, threads, 256, [&](std::int64_t u) {
        const float* x = X + u * f;
        double v = 0.0;
        for (std::int64_t j = m.indptr[u]; j < m.indptr[u + 1]; ++j) {
            const std::int64_t i = m.indices[j];
            const float* y = Y + i * f;
            double pred = static_cast<double>(global_mean) + own_bias[u] + other_bias[i];
            for (int k = 0; k < f; ++k) pred += static_cast<double>(x[k]) * y[k];
            const double e = m.data[j] - pred;
            v += e * e;
        }
        per_row[u] = v;
    });
    double total = 0.0;
    for (double v : per_row) total += v;
    return total;
}

}  // namespace recforge::als
