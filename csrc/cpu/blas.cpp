// Row-major wrappers over the installed Fortran BLAS/LAPACK, with plain C++ fallbacks.
#include "recforge/blas.hpp"

#include <cmath>
#include <vector>

namespace recforge::blas {
namespace {
Routines g_routines;
}

void set_blas(const Routines& r) { g_routines = r; }
const Routines& routines() { return g_routines; }

void gemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a, int lda, const float* b,
          int ldb, float beta, float* c, int ldc) {
    if (m <= 0 || n <= 0) return;
    if (g_routines.sgemm) {
        // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: swap the operands.
        const char ta = trans_b ? 'T' : 'N', tb = trans_a ? 'T' : 'N';
        g_routines.sgemm(&ta, &tb, &n, &m, &k, &alpha, b, &ldb, a, &lda, &beta, c, &ldc);
        return;
    }
    for (int i = 0; i < m; ++i) {
        float* crow = c + static_cast<std::int64_t>(i) * ldc;
        for (int j = 0; j < n; ++j) crow[j] = beta == 0.0f ? 0.0f : beta * crow[j];
        for (int p = 0; p < k; ++p) {
            const float av = alpha * (trans_a ? a[static_cast<std::int64_t>(p) * lda + i]
                                              : a[static_cast<std::int64_t>(i) * lda + p]);
            if (av == 0.0f) continue;
            if (!trans_b) {
                const float* brow = b + static_cast<std::int64_t>(p) * ldb;
                for (int j = 0; j < n; ++j) crow[j] += av * brow[j];
            } else {
                for (int j = 0; j < n; ++j) crow[j] += av * b[static_cast<std::int64_t>(j) * ldb + p];
            }
        }
    }
}

void gram(int n, int k, float alpha, const float* a, int lda, float beta, float* c, int ldc) {
    if (n <= 0) return;
    if (g_routines.ssyrk) {
        // Row-major A (k x n) is column-major A^T (n x k); column-major C = A^T A needs 'N' on it.
        // The routine fills one triangle ('U' column-major = lower row-major); mirror it.
        const char uplo = 'U', trans = 'N';
        g_routines.ssyrk(&uplo, &trans, &n, &k, &alpha, a, &lda, &beta, c, &ldc);
        for (int i = 0; i < n; ++i)
            for (int j = i + 1; j < n; ++j)
                c[static_cast<std::int64_t>(i) * ldc + j] = c[static_cast<std::int64_t>(j) * ldc + i];
        return;
    }
    gemm(true, false, n, n, k, alpha, a, lda, a, lda, beta, c, ldc);
}

bool cholesky_solve(int n, float* a, int lda, float* b) {
    if (n <= 0) return true;
    if (g_routines.spotrf && g_routines.spotrs) {
        // Symmetric, so row-major == column-major; factor the 'L' triangle.
        const char uplo = 'L';
        const int nrhs = 1;
        int info = 0;
        g_routines.spotrf(&uplo, &n, a, &lda, &info);
        if (info != 0) return false;
        g_routines.spotrs(&uplo, &n, &nrhs, a, &lda, b, &n, &info);
        return info == 0;
    }
    // Reference: in-place lower Cholesky (row-major), then forward and back substitution.
    for (int j = 0; j < n; ++j) {
        float* rj = a + static_cast<std::int64_t>(j) * lda;
        double d = rj[j];
        for (int p = 0; p < j; ++p) d -= static_cast<double>(rj[p]) * rj[p];
        if (!(d > 0.0)) return false;
        const float ljj = static_cast<float>(std::sqrt(d));
        rj[j] = ljj;
        for (int i = j + 1; i < n; ++i) {
            float* ri = a + static_cast<std::int64_t>(i) * lda;
            double s = ri[j];
            for (int p = 0; p < j; ++p) s -= static_cast<double>(ri[p]) * rj[p];
            ri[j] = static_cast<float>(s / ljj);
        }
    }
    for (int i = 0; i < n; ++i) {
        const float* ri = a + static_cast<std::int64_t>(i) * lda;
        double s = b[i];
        for (int p = 0; p < i; ++p) s -= static_cast<double>(ri[p]) * b[p];
        b[i] = static_cast<float>(s / ri[i]);
    }
    for (int i = n - 1; i >= 0; --i) {
        double s = b[i];
        for (int p = i + 1; p < n; ++p) s -= static_cast<double>(a[static_cast<std::int64_t>(p) * lda + i]) * b[p];
        b[i] = static_cast<float>(s / a[static_cast<std::int64_t>(i) * lda + i]);
    }
    return true;
}

}  // namespace recforge::blas
