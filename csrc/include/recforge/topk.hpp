// recforge/topk.hpp — exact top-K by inner product: the best k items for each query.
//
// Contract (every entry point):
//   queries  (n, f) float32, row-major;  items (m, f) float32, row-major; 1 <= k <= m.
//   out_ids  (n, k) int64 and out_scores (n, k) float32, written best first: higher score first,
//            equal scores by lower item id. A row with fewer than k valid items ends in id -1 /
//            score -inf padding.
//   exclude  optional CSR (n x m, csr.hpp, values unused) of item ids that never appear in a row's
//            result: validated with traits {sorted} (duplicates allowed); nullptr: none.
// Scores must be finite (the Python layer rejects factors large enough to overflow float32); a NaN
// score, should one arise anyway, never enters a result.
//
// Threading: OpenMP over blocks of queries (`threads` <= 0: all cores). BLAS is called from inside
// the worker threads, so it must be single-threaded (the Python layer arranges that). Every entry
// point checks its arguments (the exclusion CSR: its shape; its content was validated where it was
// built) and throws std::invalid_argument before touching memory; no Python here.
#pragma once

#include <cstdint>

#include "recforge/csr.hpp"

namespace recforge {

// Dense-path kernel: `fused` (AVX-512 register-tiled scoring + selection; x86-64 CPUs that have
// it) or `blas` (SGEMM into an L2 buffer, then selection). `automatic` picks fused when it can run.
enum class TopkKernel : int { automatic = 0, blas = 1, fused = 2 };

// Tuning knobs of the dense path; 0 picks the default (tuned for 1-2 MB of L2 per core).
struct TopkOptions {
    std::int64_t block_queries = 0;
    std::int64_t block_items = 0;  // blas: items per SGEMM; fused: items per panel chunk
    TopkKernel kernel = TopkKernel::automatic;
};

// Scores every query against every item (`subset` == nullptr) or against the `n_subset` items
// listed in `subset` (any order, duplicates allowed; ids in [0, m)), with blocked SGEMM and an
// in-cache selection per row.
void topk_dense(const float* queries, std::int64_t n, const float* items, std::int64_t m, std::int64_t f,
                std::int64_t k, const std::int64_t* subset, std::int64_t n_subset, const CsrView* exclude,
                std::int64_t* out_ids, float* out_scores, int threads, TopkOptions options = {});

// Whether the fused dense kernel can run here (built for x86-64 and the CPU has AVX-512).
bool topk_has_fused();

// Scores each query only against its own candidates: `candidates` is (n, c) int64 of item ids in
// [0, m) or -1 (padding); duplicates count once. Gather + dot product, no full GEMM.
void topk_candidates(const float* queries, std::int64_t n, const float* items, std::int64_t m, std::int64_t f,
                     std::int64_t k, const std::int64_t* candidates, std::int64_t c, const CsrView* exclude,
                     std::int64_t* out_ids, float* out_scores, int threads);

}  // namespace recforge
