// recforge/blas.hpp — the BLAS/LAPACK routines the kernels use, reached through function pointers.
//
// Why pointers: the core must not link a particular BLAS. The Python layer installs the routines
// of SciPy's bundled OpenBLAS (scipy.linalg.cython_blas/cython_lapack capsules, Fortran ABI,
// 32-bit ints); a C++ program installs its own with set_blas(). When a routine is not installed
// the plain C++ reference below runs instead (correct, slower). Matrices are row-major here; the
// wrappers translate to the column-major Fortran calls.
#pragma once

#include <cstdint>

namespace recforge::blas {

// Fortran signatures (all arguments by pointer).
using sgemm_fn = void (*)(const char* transa, const char* transb, const int* m, const int* n, const int* k,
                          const float* alpha, const float* a, const int* lda, const float* b, const int* ldb,
                          const float* beta, float* c, const int* ldc);
using ssyrk_fn = void (*)(const char* uplo, const char* trans, const int* n, const int* k, const float* alpha,
                          const float* a, const int* lda, const float* beta, float* c, const int* ldc);
using spotrf_fn = void (*)(const char* uplo, const int* n, float* a, const int* lda, int* info);
using spotrs_fn = void (*)(const char* uplo, const int* n, const int* nrhs, const float* a, const int* lda, float* b,
                           const int* ldb, int* info);

struct Routines {
    sgemm_fn sgemm = nullptr;
    ssyrk_fn ssyrk = nullptr;
    spotrf_fn spotrf = nullptr;
    spotrs_fn spotrs = nullptr;
};

// Installs the routines (not thread-safe against concurrent kernels; call once at start-up).
void set_blas(const Routines& routines);
const Routines& routines();

// C (m x n) = alpha * op(A) * op(B) + beta * C, all row-major with leading dimensions lda/ldb/ldc.
// op(A) is m x k (A is k x m when trans_a), op(B) is k x n (B is n x k when trans_b).
void gemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a, int lda, const float* b,
          int ldb, float beta, float* c, int ldc);

// C (n x n, row-major, full symmetric result) = alpha * A^T A + beta * C, A is k x n row-major.
void gram(int n, int k, float alpha, const float* a, int lda, float beta, float* c, int ldc);

// Solves A x = b in place for symmetric positive definite A (n x n, row-major, overwritten by its
// Cholesky factor). Returns false when A is not positive definite.
bool cholesky_solve(int n, float* a, int lda, float* b);

}  // namespace recforge::blas
