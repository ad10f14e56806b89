// recforge/als.hpp — alternating least squares half-steps on the CPU (no Python).
//
// One call solves every row of `m` (rows x cols, CSR) for its factors X (rows x f) against the
// fixed other side Y (cols x f). An ALS iteration is two calls: users against items with the
// user x item matrix, then items against users with its transpose.
//
// Implicit feedback (Hu, Koren, Volinsky 2008, with the alpha0 / nu options of Rendle et al.,
// "Revisiting the Performance of iALS on Item Recommendation Benchmarks", 2022). Every stored
// entry r_ui (>= 0 required) is a positive with preference 1 and confidence c_ui = 1 + alpha r_ui;
// every pair contributes alpha0 * yhat^2 (the unobserved weight; 1 = classic). Row u minimises
//     sum_{i in row} c_i (1 - x.y_i)^2 + alpha0 sum_{i not in row} (x.y_i)^2 + lambda_u |x|^2,
//     lambda_u = reg * (n_u + alpha0 * cols)^nu          (RegScaling::all_pairs, the default;
//                                                         nu = 0: the classic constant reg), or
//     lambda_u = reg * n_u^nu                            (RegScaling::observed: nu = 1 is ALS-WR,
//                                                         Spark MLlib's implicit ALS, independent of alpha0),
// whose normal equations are
//     (alpha0 YᵀY + sum_i (c_i - alpha0) y_i y_iᵀ + lambda_u I) x = sum_i c_i y_i.
// Rows with no entries get x = 0 (the exact solution: b = 0).
//
// Explicit feedback (weighted ALS on observed ratings, ALS-WR regularisation, biases). The model
// is r_ui ~ mu + b_u + b_i + x_u.y_i; row u solves for [x_u, b_u] jointly with the other side's
// bias subtracted from its targets:
//     min sum_{i in row} (r_ui - mu - b_i - [y_i, 1].[x_u, b_u])^2 + reg n_u (|x_u|^2 + b_u^2).
// Rows with no ratings get x = 0, b = 0.
//
// Threads: rows are independent, so the result does not depend on the thread count (each row's
// arithmetic is the same whichever thread runs it). BLAS calls (YᵀY, the Cholesky path) must be
// single-threaded underneath our threads: the caller arranges that. Offsets are int64.
#pragma once

#include <cstdint>

#include "recforge/csr.hpp"

namespace recforge::als {

enum class Solver { cg, cholesky };

// What the regularisation exponent nu scales: the row's weighted count of all pairs it is fitted on
// (n_u + alpha0 * cols, Rendle et al.) or its count of stored entries alone (n_u, ALS-WR).
enum class RegScaling { all_pairs, observed };

struct ImplicitOptions {
    float alpha = 1.0f;   // confidence c = 1 + alpha * r
    float reg = 0.05f;    // lambda (before the nu scaling)
    float alpha0 = 1.0f;  // weight of the unobserved (all-pairs) term
    float nu = 0.0f;      // frequency scaling exponent of the regularisation
    RegScaling scaling = RegScaling::all_pairs;  // what nu scales (see above)
    Solver solver = Solver::cg;
    int cg_steps = 3;     // CG iterations per row, warm-started from X
    int threads = 0;      // <= 0: all cores
};

struct ExplicitOptions {
    float reg = 0.05f;          // lambda; row u is regularised by reg * n_u
    float global_mean = 0.0f;   // mu
    int threads = 0;
};

// Every entry point takes a validated CSR (csr.hpp) and trusts it: the implicit functions need
// the traits {finite, nonnegative}, the explicit ones {finite} (require_csr; the binding checks).

// YᵀY (f x f, row-major, both triangles) of Y (n x f): the Gram matrix of the implicit functions,
// computed once per half-step by the driver and shared by every row partition. With BLAS
// installed it is one SYRK (single-threaded BLAS underneath: the caller arranges that); otherwise
// the reference product runs on `threads` threads, bitwise the same for any count.
void gram(const float* Y, std::int64_t n, int f, float* G, int threads);

// Implicit half-step: X (m.n_rows x f, in/out: CG warm-starts from it) against Y (m.n_cols x f)
// and G = gram(Y). A free function of its arguments, so a driver can call it per partition of
// the rows (each partition its own CSR and X rows, the same Y and G).
// With `prior` (m.n_rows x f, row-major) each row u is pulled toward prior[u] instead of 0 by a
// further prior_weight: A_u += prior_weight I, b_u += prior_weight prior[u] (side information:
// the prior is a linear map of the row's features). A row without entries is then solved too
// (x = (alpha0 G + (lambda + prior_weight) I)^-1 prior_weight prior[u]); without `prior` it is 0.
void implicit_solve(const CsrView& m, const float* Y, const float* G, int f, float* X, const ImplicitOptions& opt,
                    const float* prior = nullptr, float prior_weight = 0.0f);

// Explicit half-step: X (m.n_rows x f) and own_bias (m.n_rows) out, against Y (m.n_cols x f) and
// other_bias (m.n_cols).
void explicit_solve(const CsrView& m, const float* Y, const float* other_bias, int f, float* X, float* own_bias,
                    const ExplicitOptions& opt);

// The rows' share of the implicit objective: sum over rows u of
//   sum_{i in row} [c_i (1 - x.y_i)^2 - alpha0 (x.y_i)^2] + alpha0 xᵀ(YᵀY)x + lambda_u |x|^2.
// (The other side's regularisation is the caller's: it is the same formula with m transposed
// and no data term.) Summed in row order, so it does not depend on the thread count.
// G = gram(Y).
double implicit_loss(const CsrView& m, const float* X, const float* Y, const float* G, int f,
                     const ImplicitOptions& opt);

// Sum of squared errors of the explicit model over the stored ratings (row order, deterministic).
double explicit_sse(const CsrView& m, const float* X, const float* own_bias, const float* Y, const float* other_bias,
                    int f, float global_mean, int threads);

}  // namespace recforge::als
