// recforge GPU ALS: the sparse parts of the implicit and explicit half-steps, and a batched Cholesky solve.
//
// Compiled at first use by CuPy's NVRTC (python/recforge/_ops/kernels.py) and in CI by nvcc
// (tools/check_cuda_kernels.py); also compiled as plain C++ by the CPU emulation test
// (tests/test_cuda_emulation.py). So: no #include, extern "C" kernels, only __syncthreads as intrinsic.
//
// The orchestration is python/recforge/_ops/cuda.py. A half-step works on a batch of rows at a time
// (rows r0..r1 of the CSR; `indptr` holds the batch's rows + 1 pointers rebased to 0, `indices` and
// `data` the batch's nonzeros, `X` / `A` / `b` the batch's rows). The dense part of each row's normal
// equations (alpha0 YᵀY + lambda I) is one GEMM for the whole batch, done by cuBLAS through CuPy; these
// kernels do the part that runs over the nonzeros:
//
//   rf_als_row_dots         out[k] = x_row(k) . y_col(k)           (one thread per nonzero)
//   rf_als_spmm             out[u] += sum_k coef[k] y_col(k)       (one thread per row and factor)
//   rf_als_normal_equations A[u] += sum_k w_k z z', b[u] += sum_k t_k z   (one thread per entry of A, b)
//   rf_cholesky_solve       A[u] x = b[u] in place, one thread block per system
//
// cuda.py checks every shape and dtype before a launch; the kernels still keep every index inside
// the sizes they are given (a column id out of range contributes nothing), since device code cannot
// raise. Counts and offsets are 64-bit (rf_i64): a batch may hold more than 2^31 nonzeros.

typedef long long rf_i64;

#ifndef RF_DYNAMIC_SHARED  // the CPU emulation defines its own
#define RF_DYNAMIC_SHARED(type, name) extern __shared__ type name[]
#endif

// The row of nonzero k: the last u with indptr[u] <= k (rows with no entries are skipped over).
__device__ __forceinline__ rf_i64 rf_row_of(const rf_i64* indptr, rf_i64 rows, rf_i64 k) {
    rf_i64 lo = 0, hi = rows;  // indptr[lo] <= k < indptr[hi]
    while (hi - lo > 1) {
        const rf_i64 mid = lo + (hi - lo) / 2;
        if (indptr[mid] <= k) lo = mid;
        else hi = mid;
    }
    return lo;
}

__device__ __forceinline__ rf_i64 rf_thread_index() { return (rf_i64)blockIdx.x * blockDim.x + threadIdx.x; }
__device__ __forceinline__ rf_i64 rf_thread_count() { return (rf_i64)gridDim.x * blockDim.x; }

// out[k] = X[row(k)] . Y[indices[k]] for every nonzero k of the batch (0 for a column out of range).
extern "C" __global__ void rf_als_row_dots(const rf_i64* indptr, rf_i64 rows, const int* indices, const float* X,
                                           const float* Y, rf_i64 n_cols, int f, float* out) {
    const rf_i64 nnz = indptr[rows];
    for (rf_i64 k = rf_thread_index(); k < nnz; k += rf_thread_count()) {
        const rf_i64 col = indices[k];
        float s = 0.0f;
        if (col >= 0 && col < n_cols) {
            const float* x = X + rf_row_of(indptr, rows, k) * f;
            const float* y = Y + col * f;
            for (int j = 0; j < f; ++j) s += x[j] * y[j];
        }
        out[k] = s;
    }
}

// out[u, j] += sum over the nonzeros k of row u of coef[k] * Y[indices[k], j]. Thread (u, j): the
// threads of a warp read consecutive floats of the same factor row.
extern "C" __global__ void rf_als_spmm(const rf_i64* indptr, rf_i64 rows, const int* indices, const float* coef,
                                       const float* Y, rf_i64 n_cols, int f, float* out) {
    const rf_i64 total = rows * f;
    for (rf_i64 e = rf_thread_index(); e < total; e += rf_thread_count()) {
        const rf_i64 u = e / f;
        const int j = (int)(e - u * f);
        float acc = 0.0f;
        for (rf_i64 k = indptr[u]; k < indptr[u + 1]; ++k) {
            const rf_i64 col = indices[k];
            if (col >= 0 && col < n_cols) acc += coef[k] * Y[col * f + j];
        }
        out[e] += acc;
    }
}

// The per-row normal equations of dimension d (d = f: implicit; d = f + 1: explicit, the last feature
// is the constant 1 of the bias), added to what A (rows x d x d) and b (rows x d) hold:
//   implicit (explicit == 0): c = 1 + alpha r, A += (c - alpha0) y y', b += c y
//   explicit (explicit == 1): z = [y, 1], A += z z', b += (r - global_mean - other_bias[col]) z
// A row with no entries gets A = I, b = 0 (its solution is 0, as on the CPU). Thread (u, a, c) for
// c <= d: c < d computes A[u, a, c] (a <= c, mirrored), c == d computes b[u, a].
extern "C" __global__ void rf_als_normal_equations(const rf_i64* indptr, rf_i64 rows, const int* indices,
                                                   const float* data, const float* Y, rf_i64 n_cols, int f, int d,
                                                   int explicit_feedback, float alpha, float alpha0, float global_mean,
                                                   const float* other_bias, float* A, float* b) {
    const rf_i64 per_row = (rf_i64)d * (d + 1);
    const rf_i64 total = rows * per_row;
    for (rf_i64 e = rf_thread_index(); e < total; e += rf_thread_count()) {
        const rf_i64 u = e / per_row;
        const int a = (int)((e - u * per_row) / (d + 1));
        const int c = (int)(e - u * per_row - (rf_i64)a * (d + 1));
        if (c < d && a > c) continue;  // the lower triangle is written by its mirror thread
        float* Au = A + u * d * d;
        const rf_i64 lo = indptr[u], hi = indptr[u + 1];
        if (lo == hi) {
            if (c == d) b[u * d + a] = 0.0f;
            else Au[(rf_i64)a * d + c] = Au[(rf_i64)c * d + a] = (a == c) ? 1.0f : 0.0f;
            continue;
        }
        float acc = 0.0f;
        for (rf_i64 k = lo; k < hi; ++k) {
            const rf_i64 col = indices[k];
            if (col < 0 || col >= n_cols) continue;
            const float* y = Y + col * f;
            const float za = a < f ? y[a] : 1.0f;
            if (c == d) {
                const float t = explicit_feedback ? data[k] - global_mean - other_bias[col] : 1.0f + alpha * data[k];
                acc += t * za;
            } else {
                const float w = explicit_feedback ? 1.0f : 1.0f + alpha * data[k] - alpha0;
                acc += w * za * (c < f ? y[c] : 1.0f);
            }
        }
        if (c == d) {
            b[u * d + a] += acc;
        } else {
            Au[(rf_i64)a * d + c] += acc;
            if (a != c) Au[(rf_i64)c * d + a] += acc;
        }
    }
}

// Solves A[s] x = b[s] for every system s < count (A: count x d x d symmetric, row-major; b: count x d),
// x written into b (A is scratch). One block per system; the matrix is worked in dynamic shared memory
// when the launch gives d * d floats of it (cuda.py opts in above the default 48 KiB: f = 128 needs
// 64 KiB), otherwise in place in global memory (cached). info[s] = 0 when solved, 1 when A[s] is not
// positive definite (b[s] then holds garbage; cuda.py raises).
extern "C" __global__ void rf_cholesky_solve(float* A, float* b, rf_i64 count, int d, int use_shared, int* info) {
    RF_DYNAMIC_SHARED(float, shared_matrix);
    const rf_i64 dd = (rf_i64)d * d;
    for (rf_i64 s = blockIdx.x; s < count; s += gridDim.x) {
        float* M = A + s * dd;
        float* x = b + s * d;
        if (use_shared) {
            for (rf_i64 e = threadIdx.x; e < dd; e += blockDim.x) shared_matrix[e] = M[e];
            M = shared_matrix;
        }
        __syncthreads();
        // Right-looking factorisation, one column per two barriers. Every thread reads the pivot and
        // decides alike (no shared flag); the diagonal is written in the second phase, where nobody
        // reads it, and the trailing lower triangle is updated from the scaled column.
        int failed = 0;
        for (int k = 0; k < d; ++k) {
            const float pivot = M[(rf_i64)k * d + k];
            if (!(pivot > 0.0f) || pivot > 3.0e38f) {  // also NaN and inf; the same for every thread
                failed = 1;
                break;
            }
            const float diag = sqrtf(pivot);
            for (int i = k + 1 + (int)threadIdx.x; i < d; i += (int)blockDim.x) M[(rf_i64)i * d + k] /= diag;
            __syncthreads();
            if (threadIdx.x == 0) M[(rf_i64)k * d + k] = diag;
            const rf_i64 n = d - k - 1;
            for (rf_i64 e = threadIdx.x; e < n * n; e += blockDim.x) {
                const int i = k + 1 + (int)(e / n), j = k + 1 + (int)(e % n);
                if (j <= i) M[(rf_i64)i * d + j] -= M[(rf_i64)i * d + k] * M[(rf_i64)j * d + k];
            }
            __syncthreads();
        }
        if (!failed) {
            // L y = b, then Lᵀ x = y, one barrier per column: every thread computes the column's solved
            // value itself and updates its own entries; thread 0 stores the value one phase later, when
            // nobody reads that entry any more.
            float solved = 0.0f;
            for (int k = 0; k < d; ++k) {
                if (threadIdx.x == 0 && k > 0) x[k - 1] = solved;
                solved = x[k] / M[(rf_i64)k * d + k];
                for (int i = k + 1 + (int)threadIdx.x; i < d; i += (int)blockDim.x)
                    x[i] -= M[(rf_i64)i * d + k] * solved;
                __syncthreads();
            }
            if (threadIdx.x == 0) x[d - 1] = solved;
            __syncthreads();
            for (int k = d - 1; k >= 0; --k) {
                if (threadIdx.x == 0 && k < d - 1) x[k + 1] = solved;
                solved = x[k] / M[(rf_i64)k * d + k];
                for (int i = (int)threadIdx.x; i < k; i += (int)blockDim.x) x[i] -= M[(rf_i64)k * d + i] * solved;
                __syncthreads();
            }
            if (threadIdx.x == 0) x[0] = solved;
        }
        if (threadIdx.x == 0) info[s] = failed;
        __syncthreads();  // the shared matrix is reused by the next system
    }
}
