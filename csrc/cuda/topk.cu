// recforge GPU top-K: exclusion masking, candidate scoring and per-row selection over score tiles.
//
// Compiled at first use by CuPy's NVRTC (python/recforge/_ops/kernels.py) and in CI by nvcc
// (tools/check_cuda_kernels.py); also compiled as plain C++ by the CPU emulation test
// (tests/test_cuda_emulation.py), which runs these kernels with one std::thread per CUDA thread.
// So: no #include, extern "C" kernels, only __syncthreads / atomicAdd / bit casts as intrinsics.
//
// The orchestration is python/recforge/_ops/cuda.py: cuBLAS (through CuPy) writes a tile of scores
// (rows x width, row stride ld), rf_mask_excluded sets the excluded entries to -inf, and one
// selection kernel picks each row's best k. Every launch configuration is computed and checked
// there; the kernels still check every index against the sizes they are given, since device code
// cannot raise.
//
// Order: best first by score, equal scores by lower item id, as on the CPU. Both are packed into one
// 64-bit key, larger = better: the high 32 bits map the float's order onto unsigned integers, the
// low 32 bits are 0xFFFFFFFF - id. Keys are unique per row (ids are), so "the k largest keys" is
// exactly the CPU's result and ties need no separate pass. Key 0 means "nothing" (padding: id -1,
// score -inf); -inf scores (excluded items, padding candidates) never enter the selection.

typedef unsigned long long rf_u64;
typedef long long rf_i64;
typedef unsigned int rf_u32;

#ifndef RF_DYNAMIC_SHARED  // the CPU emulation defines its own
#define RF_DYNAMIC_SHARED(type, name) extern __shared__ type name[]
#endif

#define RF_NEG_INF __int_as_float(0xff800000)
#define RF_MAX_ID 0x7FFFFFFFLL  // ids must fit the key's low 32 bits (checked in cuda.py)
#define RF_SMALL_ITEMS 4        // elements per thread per chunk in rf_select_small (cuda.py mirrors it)

// Larger float -> larger key; +0 and -0 map alike (they compare equal on the CPU).
__device__ __forceinline__ rf_u32 rf_order_key(float s) {
    if (s == 0.0f) s = 0.0f;
    const rf_u32 u = __float_as_uint(s);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

__device__ __forceinline__ float rf_from_order_key(rf_u32 k) {
    return __uint_as_float((k & 0x80000000u) ? (k & 0x7FFFFFFFu) : ~k);
}

__device__ __forceinline__ rf_u64 rf_pack(float s, rf_i64 id) {
    return ((rf_u64)rf_order_key(s) << 32) | (rf_u64)(0xFFFFFFFFu - (rf_u32)id);
}

// The key of element j of a score row, 0 when it takes no part (-inf score, id out of range).
__device__ __forceinline__ rf_u64 rf_key_at(const float* row, const rf_i64* ids, rf_i64 id_offset, rf_i64 j) {
    const float v = row[j];
    const rf_i64 id = ids ? ids[j] : j + id_offset;
    if (!(v > RF_NEG_INF) || id < 0 || id > RF_MAX_ID) return 0;  // !(v > -inf) also drops NaN
    return rf_pack(v, id);
}

// Decode key -> (id, score); key 0 -> (-1, -inf).
__device__ __forceinline__ void rf_unpack(rf_u64 key, rf_i64* id, float* score) {
    if (key == 0) {
        *id = -1;
        *score = RF_NEG_INF;
    } else {
        *id = (rf_i64)(0xFFFFFFFFu - (rf_u32)(key & 0xFFFFFFFFull));
        *score = rf_from_order_key((rf_u32)(key >> 32));
    }
}

// Index of `value` in the sorted array a[0..n), or -1.
__device__ __forceinline__ rf_i64 rf_find(const rf_i64* a, rf_i64 n, rf_i64 value) {
    rf_i64 lo = 0, hi = n;
    while (lo < hi) {
        const rf_i64 mid = lo + (hi - lo) / 2;
        if (a[mid] < value) lo = mid + 1;
        else hi = mid;
    }
    return (lo < n && a[lo] == value) ? lo : -1;
}

// Same for int32 column ids (the exclusion CSR's indices).
__device__ __forceinline__ bool rf_contains(const int* a, rf_i64 n, rf_i64 value) {
    rf_i64 lo = 0, hi = n;
    while (lo < hi) {
        const rf_i64 mid = lo + (hi - lo) / 2;
        if (a[mid] < value) lo = mid + 1;
        else hi = mid;
    }
    return lo < n && a[lo] == value;
}

// Block-wide bitonic sort of buf[0..n) into descending order; p = n rounded up to a power of two
// must be <= cap (the buffer's size, a power of two). Pads buf[n..p) with 0. Every thread of the
// block must call it (it synchronises).
__device__ void rf_sort_desc(rf_u64* buf, int n, int cap) {
    int p = 1;
    while (p < n) p <<= 1;
    if (p > cap) p = cap;
    for (int i = n + (int)threadIdx.x; i < p; i += (int)blockDim.x) buf[i] = 0;
    __syncthreads();
    for (int size = 2; size <= p; size <<= 1) {
        for (int stride = size >> 1; stride > 0; stride >>= 1) {
            for (int i = (int)threadIdx.x; i < p / 2; i += (int)blockDim.x) {
                const int lo = 2 * i - (i & (stride - 1));  // the pair (lo, lo + stride)
                const int hi = lo + stride;
                const bool descending = (lo & size) == 0;
                const rf_u64 a = buf[lo], b = buf[hi];
                if (descending ? (a < b) : (a > b)) {
                    buf[lo] = b;
                    buf[hi] = a;
                }
            }
            __syncthreads();
        }
    }
}

// scores[r * ld + col] = -inf for each item excluded from row r (r < n_rows): the item ids
// indices[indptr[r] .. indptr[r + 1]) (indptr has n_rows + 1 entries, all within [0, nnz]). With
// n_cols > 0 the tile's columns are the sorted item ids cols[0 .. n_cols) (a candidate subset) and
// each excluded id is looked up there; otherwise column = item id - col_offset (a shard of the
// catalogue starting at item col_offset). Ids outside the tile are skipped. Grid: any; block: any.
extern "C" __global__ void rf_mask_excluded(float* scores, rf_i64 ld, rf_i64 n_rows, rf_i64 width, const rf_i64* indptr,
                                            const int* indices, rf_i64 nnz, const rf_i64* cols, rf_i64 n_cols,
                                            rf_i64 col_offset) {
    for (rf_i64 r = blockIdx.x; r < n_rows; r += gridDim.x) {
        rf_i64 begin = indptr[r], end = indptr[r + 1];
        if (begin < 0) begin = 0;
        if (end > nnz) end = nnz;
        for (rf_i64 j = begin + threadIdx.x; j < end; j += blockDim.x) {
            const rf_i64 item = indices[j];
            const rf_i64 col = n_cols > 0 ? rf_find(cols, n_cols, item) : item - col_offset;
            if (col >= 0 && col < width) scores[r * ld + col] = RF_NEG_INF;
        }
    }
}

// Exact fp32 scores of per-row candidates: out[r * c + j] = queries[r] . items[cand[r * c + j]], or
// -inf when the candidate is padding (< 0), out of range, a repeat of cand[r * c + j - 1] (each row
// of cand is sorted, so repeats are neighbours) or, with has_exclude, stored in the row's
// exclusion list (sorted column ids ex_indices[ex_indptr[r] .. ex_indptr[r + 1])). One thread per
// (row, candidate); grid * block >= n_rows * c is not required (grid-stride loop).
extern "C" __global__ void rf_score_candidates(const float* queries, const float* items, rf_i64 n_rows, rf_i64 n_items,
                                               rf_i64 f, const rf_i64* cand, rf_i64 c, int has_exclude,
                                               const rf_i64* ex_indptr, const int* ex_indices, rf_i64 ex_nnz,
                                               float* out) {
    const rf_i64 total = n_rows * c;
    for (rf_i64 t = (rf_i64)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += (rf_i64)gridDim.x * blockDim.x) {
        const rf_i64 r = t / c, j = t % c;
        const rf_i64 id = cand[t];
        bool valid = id >= 0 && id < n_items && !(j > 0 && cand[t - 1] == id);
        if (valid && has_exclude) {
            rf_i64 begin = ex_indptr[r], end = ex_indptr[r + 1];
            if (begin < 0) begin = 0;
            if (end > ex_nnz) end = ex_nnz;
            if (begin < end) valid = !rf_contains(ex_indices + begin, end - begin, id);
        }
        float s = RF_NEG_INF;
        if (valid) {
            const float* q = queries + r * f;
            const float* x = items + id * f;
            s = 0.0f;
            for (rf_i64 d = 0; d < f; ++d) s += q[d] * x[d];
        }
        out[t] = s;
    }
}

// Best k of each score row, for small k: one block per row (grid-stride over rows). The block
// scans its row in chunks of blockDim.x * RF_SMALL_ITEMS elements; an element enters the shared
// buffer (cap keys, dynamic shared memory) when its key beats the running threshold (the k-th best
// key kept so far). When the buffer could overflow on the next chunk, it is sorted and cut to its
// best k, which raises the threshold, so most elements of a long row are read once and dropped.
// Needs cap a power of two >= k + blockDim.x * RF_SMALL_ITEMS (cuda.py checks it).
//
// scores: rows x width (stride ld). Item ids: ids[r * ids_ld + j] when has_ids (ids_ld 0: one list
// for every row), else j + id_offset. Output: out_ids / out_scores rows of k (stride out_ld), best
// first, padded with -1 / -inf.
extern "C" __global__ void rf_select_small(const float* scores, rf_i64 ld, rf_i64 n_rows, rf_i64 width,
                                           const rf_i64* ids, rf_i64 ids_ld, int has_ids, rf_i64 id_offset, int k,
                                           int cap, rf_i64* out_ids, float* out_scores, rf_i64 out_ld) {
    RF_DYNAMIC_SHARED(rf_u64, buf);
    __shared__ int count;
    __shared__ rf_u64 threshold;
    const rf_i64 chunk = (rf_i64)blockDim.x * RF_SMALL_ITEMS;
    if (k < 1 || cap < k + chunk) return;  // a launch cuda.py never makes; the output stays as allocated
    for (rf_i64 r = blockIdx.x; r < n_rows; r += gridDim.x) {
        if (threadIdx.x == 0) {
            count = 0;
            threshold = 0;
        }
        __syncthreads();
        const float* row = scores + r * ld;
        const rf_i64* row_ids = has_ids ? ids + r * ids_ld : 0;
        for (rf_i64 base = 0; base < width; base += chunk) {
            const rf_u64 t = threshold;
            for (int i = 0; i < RF_SMALL_ITEMS; ++i) {
                const rf_i64 j = base + (rf_i64)i * blockDim.x + threadIdx.x;
                if (j < width) {
                    const rf_u64 key = rf_key_at(row, row_ids, id_offset, j);
                    if (key > t) {
                        const int pos = atomicAdd(&count, 1);
                        if (pos < cap) buf[pos] = key;  // always true: count <= cap - chunk before the chunk
                    }
                }
            }
            __syncthreads();
            const int n = count < cap ? count : cap;  // every thread reads it before anyone changes it
            if (n > cap - chunk) {                  // the next chunk might not fit: keep the best k
                rf_sort_desc(buf, n, cap);
                if (threadIdx.x == 0) {
                    count = n < k ? n : k;
                    if (n >= k) threshold = buf[k - 1];
                }
            }
            __syncthreads();
        }
        const int n = count < cap ? count : cap;
        rf_sort_desc(buf, n, cap);
        for (int i = (int)threadIdx.x; i < k; i += (int)blockDim.x) {
            rf_i64 id;
            float s;
            rf_unpack(i < n ? buf[i] : 0, &id, &s);
            out_ids[r * out_ld + i] = id;
            out_scores[r * out_ld + i] = s;
        }
        __syncthreads();  // before the next row resets count and reuses buf
    }
}

// Best k of each score row, for any k up to the row's width: an exact radix select on the keys,
// one block per row (grid-stride over rows), 8 bits per pass from the top (at most 8 passes over
// the row; usually 3 or 4). Each pass counts, among the elements that agree with the digits chosen
// so far, how many fall in each bin of the next digit, and keeps the bin holding the k-th best.
// It stops when that bin holds exactly the elements still needed: then every element whose key is
// >= the chosen prefix is in the result, and no other. Those k keys are written to
// out_keys[r * k ..] unordered (the row's other slots keep the 0 they were allocated with when it
// has fewer than k eligible elements); cuda.py sorts the rows and rf_decode_keys unpacks them.
// Arguments as in rf_select_small. Block: a multiple of 32, any size.
extern "C" __global__ void rf_select_radix(const float* scores, rf_i64 ld, rf_i64 n_rows, rf_i64 width,
                                           const rf_i64* ids, rf_i64 ids_ld, int has_ids, rf_i64 id_offset, rf_i64 k,
                                           rf_u64* out_keys) {
    __shared__ unsigned int hist[256];
    __shared__ rf_u64 prefix;     // the digits chosen so far
    __shared__ rf_u64 lowest;     // the result: every key >= lowest, once found
    __shared__ int found;
    __shared__ rf_i64 need;       // how many of the best are still to be found within `prefix`
    __shared__ rf_u64 written;    // slots of the row's output used so far
    if (k < 1) return;
    for (rf_i64 r = blockIdx.x; r < n_rows; r += gridDim.x) {
        const float* row = scores + r * ld;
        const rf_i64* row_ids = has_ids ? ids + r * ids_ld : 0;
        if (threadIdx.x == 0) {
            prefix = 0;
            lowest = 0;
            found = 0;
            need = k;
            written = 0;
        }
        for (int shift = 56; shift >= 0; shift -= 8) {
            for (int b = (int)threadIdx.x; b < 256; b += (int)blockDim.x) hist[b] = 0;
            __syncthreads();
            const rf_u64 p = prefix;
            for (rf_i64 j = threadIdx.x; j < width; j += blockDim.x) {
                const rf_u64 key = rf_key_at(row, row_ids, id_offset, j);
                if (key != 0 && (shift == 56 || (key >> (shift + 8)) == p)) atomicAdd(&hist[(key >> shift) & 255u], 1u);
            }
            __syncthreads();
            if (threadIdx.x == 0) {
                if (shift == 56) {  // fewer eligible elements than k: take them all
                    rf_u64 eligible = 0;
                    for (int b = 0; b < 256; ++b) eligible += hist[b];
                    if (eligible <= (rf_u64)need) {
                        lowest = 1;  // every eligible key is >= 1
                        found = 1;
                    }
                }
                for (int b = 255; b >= 0 && !found; --b) {
                    const rf_i64 c = hist[b];
                    if (c < need) {
                        need -= c;  // the whole bin is among the best
                        continue;
                    }
                    prefix = (prefix << 8) | (rf_u64)b;  // the k-th best is in this bin
                    if (c == need || shift == 0) {  // keys are unique: at shift 0, c == need == 1
                        lowest = prefix << shift;
                        found = 1;
                    }
                    break;
                }
            }
            __syncthreads();
            if (found) break;  // read by every thread after the barrier: a uniform branch
        }
        const rf_u64 lo = lowest;
        for (rf_i64 j = threadIdx.x; j < width && found; j += blockDim.x) {
            const rf_u64 key = rf_key_at(row, row_ids, id_offset, j);
            if (key != 0 && key >= lo) {
                const rf_u64 pos = atomicAdd(&written, 1ull);
                if (pos < (rf_u64)k) out_keys[r * k + (rf_i64)pos] = key;
            }
        }
        __syncthreads();  // before the next row resets the shared state
    }
}

// out_ids / out_scores[r * k + i] from keys[r * k + k - 1 - i]: rows of keys sorted ascending
// become best-first results. Grid-stride over the n_rows * k entries.
extern "C" __global__ void rf_decode_keys(const rf_u64* keys, rf_i64 n_rows, rf_i64 k, rf_i64* out_ids,
                                          float* out_scores) {
    const rf_i64 total = n_rows * k;
    for (rf_i64 t = (rf_i64)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += (rf_i64)gridDim.x * blockDim.x) {
        const rf_i64 r = t / k, i = t % k;
        rf_unpack(keys[r * k + (k - 1 - i)], out_ids + t, out_scores + t);
    }
}
