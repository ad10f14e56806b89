// mlp_kernels.hpp — internal to csrc/cpu/mlp*.cpp: the per-chunk forward and backward passes of
// the NCF model (see recforge/mlp.hpp for the model, layouts and loss).
//
// A chunk is a handful of samples (32 in training) processed layer by layer with small GEMMs whose
// inner loops run over contiguous output columns (register-blocked for widths that are multiples
// of 16 floats; the float entry points are compiled per ISA: RECFORGE_SIMD_CLONES).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "recforge/mlp.hpp"
#include "recforge/simd.hpp"

namespace recforge::mlp::detail {

// Row `row` of one side's representation (recforge/mlp.hpp, "Side features"): the table's row
// itself without features, else the feature-weighted sum of table rows written to `out` (E wide).
template <class T>
RECFORGE_INLINE const T* represent(const CsrView* features, std::int64_t row, const T* table, int E, T* out) {
    if (features == nullptr) return table + row * E;
    std::fill(out, out + E, T(0));
    for (std::int64_t j = features->indptr[row]; j < features->indptr[row + 1]; ++j) {
        const T x = T(features->data[j]);
        const T* __restrict e = table + std::int64_t(features->indices[j]) * E;
        for (int k = 0; k < E; ++k) out[k] += x * e[k];
    }
    return out;
}

// grad_table[rows of `row`'s representation] += weight * g (the chain rule of `represent`).
template <class T>
RECFORGE_INLINE void scatter_gradient(const CsrView* features, std::int64_t row, const T* g, int E, T* grad_table) {
    if (features == nullptr) {
        T* __restrict d = grad_table + row * E;
        for (int k = 0; k < E; ++k) d[k] += g[k];
        return;
    }
    for (std::int64_t j = features->indptr[row]; j < features->indptr[row + 1]; ++j) {
        const T x = T(features->data[j]);
        T* __restrict d = grad_table + std::int64_t(features->indices[j]) * E;
        for (int k = 0; k < E; ++k) d[k] += x * g[k];
    }
}

// Per-thread scratch for one chunk of at most `rows` samples.
template <class T>
struct Workspace {
    int rows = 0;
    std::vector<T> x0;               // rows x 2 dim_mlp: the concatenated MLP embeddings
    std::vector<std::vector<T>> h;   // per layer: rows x out_l, after ReLU
    std::vector<T> z;                // rows: logits
    std::vector<T> dz;               // rows: dLoss/dlogit
    std::vector<T> da, db;           // rows x widest: back-propagated activations (ping-pong)

    void resize(const Arch& arch, int n_rows) {
        rows = n_rows;
        x0.assign(std::size_t(n_rows) * 2 * arch.dim_mlp, T(0));
        h.resize(arch.n_layers());
        for (int l = 0; l < arch.n_layers(); ++l) h[l].assign(std::size_t(n_rows) * arch.layer_out(l), T(0));
        z.assign(n_rows, T(0));
        dz.assign(n_rows, T(0));
        da.assign(std::size_t(n_rows) * arch.widest(), T(0));
        db.assign(std::size_t(n_rows) * arch.widest(), T(0));
    }
};

// ---- small GEMMs ------------------------------------------------------------------------------
// Output widths that are a multiple of one 64-byte vector (16 floats) take register-blocked paths
// written with GCC vector extensions (one source for every ISA clone: AVX-512 gets one register
// per vector, SSE2 four); other widths take the plain loops. Measured on NeuMF (64, 32, 16): the
// blocked paths train 2.1x faster than the plain loops with ReLU-zero skipping (the skip branch
// mispredicts on random sparsity patterns).
#if defined(__GNUC__)
#define RF_VECTOR_EXT 1
// The vector helpers are always inlined, so no vector crosses a call boundary whose ABI could differ.
#pragma GCC diagnostic ignored "-Wpsabi"
template <class T>
struct Vec {
    typedef T type __attribute__((vector_size(64)));
    static constexpr int lanes = int(64 / sizeof(T));
};
template <class T>
RECFORGE_INLINE typename Vec<T>::type vload(const T* p) {
    typename Vec<T>::type v;
    std::memcpy(&v, p, sizeof v);
    return v;
}
template <class T>
RECFORGE_INLINE void vstore(T* p, const typename Vec<T>::type& v) {
    std::memcpy(p, &v, sizeof v);
}

// Rows of C kept in registers per block: about 16 vector accumulators (AVX-512 has 32 registers;
// FMA latency x 2 ports needs >= 8 independent accumulators).
template <int NV>
constexpr int block_rows() {
    return NV >= 8 ? 2 : (NV >= 3 ? 4 : (NV == 2 ? 6 : 8));
}

// R rows of C (n x O) += A (n x k, lda) B (k x O), O = NV vectors, accumulated in registers.
template <class T, int NV, int R>
RECFORGE_INLINE void gemm_nn_rows(int k, const T* __restrict a, int lda, const T* __restrict b, T* __restrict c) {
    using V = typename Vec<T>::type;
    constexpr int L = Vec<T>::lanes, O = NV * L;
    V acc[R][NV];
    for (int r = 0; r < R; ++r)
        for (int v = 0; v < NV; ++v) acc[r][v] = vload(c + std::size_t(r) * O + v * L);
    for (int kk = 0; kk < k; ++kk) {
        const T* bk = b + std::size_t(kk) * O;
        V bv[NV];
        for (int v = 0; v < NV; ++v) bv[v] = vload(bk + v * L);
        for (int r = 0; r < R; ++r) {
            const T x = a[std::size_t(r) * lda + kk];
            for (int v = 0; v < NV; ++v) acc[r][v] += x * bv[v];
        }
    }
    for (int r = 0; r < R; ++r)
        for (int v = 0; v < NV; ++v) vstore(c + std::size_t(r) * O + v * L, acc[r][v]);
}

template <class T, int NV>
RECFORGE_INLINE void gemm_nn_blocked(int n, int k, const T* __restrict a, int lda, const T* __restrict b,
                                     T* __restrict c) {
    constexpr int R = block_rows<NV>(), O = NV * Vec<T>::lanes;
    int r = 0;
    for (; r + R <= n; r += R) gemm_nn_rows<T, NV, R>(k, a + std::size_t(r) * lda, lda, b, c + std::size_t(r) * O);
    for (; r < n; ++r) gemm_nn_rows<T, NV, 1>(k, a + std::size_t(r) * lda, lda, b, c + std::size_t(r) * O);
}

// R rows kk0.. of C (k x O) += A^T D, A (n x k, lda), D (n x O), accumulated in registers.
template <class T, int NV, int R>
RECFORGE_INLINE void gemm_tn_rows(int n, int kk0, const T* __restrict a, int lda, const T* __restrict d,
                                  T* __restrict c) {
    using V = typename Vec<T>::type;
    constexpr int L = Vec<T>::lanes, O = NV * L;
    V acc[R][NV];
    for (int q = 0; q < R; ++q)
        for (int v = 0; v < NV; ++v) acc[q][v] = vload(c + std::size_t(kk0 + q) * O + v * L);
    for (int r = 0; r < n; ++r) {
        const T* dr = d + std::size_t(r) * O;
        V dv[NV];
        for (int v = 0; v < NV; ++v) dv[v] = vload(dr + v * L);
        const T* ar = a + std::size_t(r) * lda + kk0;
        for (int q = 0; q < R; ++q)
            for (int v = 0; v < NV; ++v) acc[q][v] += ar[q] * dv[v];
    }
    for (int q = 0; q < R; ++q)
        for (int v = 0; v < NV; ++v) vstore(c + std::size_t(kk0 + q) * O + v * L, acc[q][v]);
}

template <class T, int NV>
RECFORGE_INLINE void gemm_tn_blocked(int n, int k, const T* __restrict a, int lda, const T* __restrict d,
                                     T* __restrict c) {
    constexpr int R = block_rows<NV>();
    int kk = 0;
    for (; kk + R <= k; kk += R) gemm_tn_rows<T, NV, R>(n, kk, a, lda, d, c);
    for (; kk < k; ++kk) gemm_tn_rows<T, NV, 1>(n, kk, a, lda, d, c);
}
#endif

#ifdef RF_VECTOR_EXT
// Calls f(std::integral_constant<int, NV>) when o is NV whole vectors for an NV with a register-
// blocked kernel (1, 2, 3, 4 or 8); returns false (f not called) otherwise.
template <class T, class F>
RECFORGE_INLINE bool with_vector_width(int o, F&& f) {
    constexpr int L = Vec<T>::lanes;
    if (o % L != 0) return false;
    switch (o / L) {
        case 1:
            f(std::integral_constant<int, 1>{});
            return true;
        case 2:
            f(std::integral_constant<int, 2>{});
            return true;
        case 3:
            f(std::integral_constant<int, 3>{});
            return true;
        case 4:
            f(std::integral_constant<int, 4>{});
            return true;
        case 8:
            f(std::integral_constant<int, 8>{});
            return true;
        default:
            return false;
    }
}
#endif

// C (n x o) += A (n x k, leading dim lda) * B (k x o).
template <class T>
RECFORGE_INLINE void gemm_nn_acc(int n, int k, int o, const T* __restrict a, int lda, const T* __restrict b,
                                 T* __restrict c) {
#ifdef RF_VECTOR_EXT
    auto blocked = [&](auto nv) RECFORGE_INLINE_LAMBDA { gemm_nn_blocked<T, decltype(nv)::value>(n, k, a, lda, b, c); };
    if (with_vector_width<T>(o, blocked)) return;
#endif
    for (int r = 0; r < n; ++r) {
        T* cr = c + std::size_t(r) * o;
        const T* ar = a + std::size_t(r) * lda;
        for (int kk = 0; kk < k; ++kk) {
            const T av = ar[kk];
            const T* bk = b + std::size_t(kk) * o;
            for (int j = 0; j < o; ++j) cr[j] += av * bk[j];
        }
    }
}

// C (k x o) += A^T D with A (n x k, leading dim lda) and D (n x o).
template <class T>
RECFORGE_INLINE void gemm_tn_acc(int n, int k, int o, const T* __restrict a, int lda, const T* __restrict d,
                                 T* __restrict c) {
#ifdef RF_VECTOR_EXT
    auto blocked = [&](auto nv) RECFORGE_INLINE_LAMBDA { gemm_tn_blocked<T, decltype(nv)::value>(n, k, a, lda, d, c); };
    if (with_vector_width<T>(o, blocked)) return;
#endif
    for (int r = 0; r < n; ++r) {
        const T* ar = a + std::size_t(r) * lda;
        const T* dr = d + std::size_t(r) * o;
        for (int kk = 0; kk < k; ++kk) {
            const T av = ar[kk];
            T* ck = c + std::size_t(kk) * o;
            for (int j = 0; j < o; ++j) ck[j] += av * dr[j];
        }
    }
}

template <class T>
RECFORGE_INLINE T sigmoid(T z) {
    if (z >= T(0)) return T(1) / (T(1) + std::exp(-z));
    const T e = std::exp(z);
    return e / (T(1) + e);
}

// log(1 + exp(z)) without overflow.
template <class T>
RECFORGE_INLINE T softplus(T z) {
    return std::max(z, T(0)) + std::log1p(std::exp(-std::abs(z)));
}

// MLP layers 1..L-1 (0-based l >= first) from ws.h[first-1] (or ws.x0 when first == 0), then the
// logits. ws.h[first - 1] must already hold that layer's output.
template <class T>
RECFORGE_INLINE void forward_from(const Arch& arch, const T* dense, const T* const* user_rows,
                                  const T* const* item_rows, int n, int first, Workspace<T>& ws) {
    const int L = arch.n_layers();
    for (int l = first; l < L; ++l) {
        const int in = arch.layer_in(l), out = arch.layer_out(l);
        const T* w = dense + arch.w_offset(l);
        const T* bias = dense + arch.b_offset(l);
        T* hl = ws.h[l].data();
        for (int r = 0; r < n; ++r) std::memcpy(hl + std::size_t(r) * out, bias, sizeof(T) * out);
        const T* src = l == 0 ? ws.x0.data() : ws.h[l - 1].data();
        gemm_nn_acc(n, in, out, src, in, w, hl);
        for (std::size_t q = 0, e = std::size_t(n) * out; q < e; ++q) hl[q] = hl[q] > T(0) ? hl[q] : T(0);
    }
    const int dg = arch.dim_gmf;
    const T* w_out = dense + arch.out_w_offset();
    const T b_out = dense[arch.out_b_offset()];
    const int hw = L ? arch.layer_out(L - 1) : 0;
    for (int r = 0; r < n; ++r) {
        T s = b_out;
        const T* gu = user_rows[r];
        const T* gi = item_rows[r];
        for (int k = 0; k < dg; ++k) s += w_out[k] * gu[k] * gi[k];
        if (L) {
            const T* hr = ws.h[L - 1].data() + std::size_t(r) * hw;
            for (int k = 0; k < hw; ++k) s += w_out[dg + k] * hr[k];
        }
        ws.z[r] = s;
    }
}

// Forward pass for n samples given pointers to their embedding rows: fills ws.x0, ws.h, ws.z.
template <class T>
RECFORGE_INLINE void forward(const Arch& arch, const T* dense, const T* const* user_rows, const T* const* item_rows,
                             int n, Workspace<T>& ws) {
    const int dg = arch.dim_gmf, dm = arch.dim_mlp;
    if (arch.n_layers()) {
        for (int r = 0; r < n; ++r) {
            T* x = ws.x0.data() + std::size_t(r) * 2 * dm;
            std::memcpy(x, user_rows[r] + dg, sizeof(T) * dm);
            std::memcpy(x + dm, item_rows[r] + dg, sizeof(T) * dm);
        }
    }
    forward_from(arch, dense, user_rows, item_rows, n, 0, ws);
}

// Backward pass after forward(): ws.dz must hold dLoss/dlogit per sample. Adds the dense gradient
// into grad_dense (n_dense) and writes each sample's embedding-row gradients (E wide) into
// grad_u / grad_i row r (overwritten), including the L2 term l2_scale * 2 * row.
// wt holds every W_l transposed (out x in), concatenated layer after layer.
template <class T>
RECFORGE_INLINE void backward(const Arch& arch, const T* dense, const T* wt, const T* const* user_rows,
                              const T* const* item_rows, int n, T l2_scale, Workspace<T>& ws, T* grad_dense, T* grad_u,
                              T* grad_i) {
    const int L = arch.n_layers();
    const int dg = arch.dim_gmf, dm = arch.dim_mlp, E = arch.emb_width();
    const T* w_out = dense + arch.out_w_offset();
    T* gw_out = grad_dense + arch.out_w_offset();
    T& gb_out = grad_dense[arch.out_b_offset()];
    for (int r = 0; r < n; ++r) {
        const T dz = ws.dz[r];
        gb_out += dz;
        const T* eu = user_rows[r];
        const T* ei = item_rows[r];
        T* gu = grad_u + std::size_t(r) * E;
        T* gi = grad_i + std::size_t(r) * E;
        for (int k = 0; k < dg; ++k) {
            gw_out[k] += dz * eu[k] * ei[k];
            gu[k] = dz * w_out[k] * ei[k];
            gi[k] = dz * w_out[k] * eu[k];
        }
    }
    if (L) {
        // dLoss/d(pre-activation of the last layer) = dz * w_out[dg:] where the ReLU was active.
        const int hw = arch.layer_out(L - 1);
        T* d = ws.da.data();
        const T* hL = ws.h[L - 1].data();
        for (int r = 0; r < n; ++r) {
            const T dz = ws.dz[r];
            const T* hr = hL + std::size_t(r) * hw;
            T* dr = d + std::size_t(r) * hw;
            for (int k = 0; k < hw; ++k) {
                gw_out[dg + k] += dz * hr[k];
                dr[k] = hr[k] > T(0) ? dz * w_out[dg + k] : T(0);
            }
        }
        std::int64_t wt_off = 0;
        for (int l = 0; l < L - 1; ++l) wt_off += std::int64_t(arch.layer_in(l)) * arch.layer_out(l);
        T* cur = ws.da.data();
        T* nxt = ws.db.data();
        for (int l = L - 1; l >= 0; --l) {
            const int in = arch.layer_in(l), out = arch.layer_out(l);
            const T* src = l == 0 ? ws.x0.data() : ws.h[l - 1].data();
            gemm_tn_acc(n, in, out, src, in, cur, grad_dense + arch.w_offset(l));
            T* gb = grad_dense + arch.b_offset(l);
            for (int r = 0; r < n; ++r) {
                const T* dr = cur + std::size_t(r) * out;
                for (int j = 0; j < out; ++j) gb[j] += dr[j];
            }
            // Gradient w.r.t. this layer's input: cur (n x out) * W^T, with W^T stored (out x in).
            std::fill(nxt, nxt + std::size_t(n) * in, T(0));
            gemm_nn_acc(n, out, in, cur, out, wt + wt_off, nxt);
            if (l > 0) {
                const T* hp = ws.h[l - 1].data();
                for (std::size_t q = 0, e = std::size_t(n) * in; q < e; ++q)
                    if (!(hp[q] > T(0))) nxt[q] = T(0);
                wt_off -= std::int64_t(arch.layer_in(l - 1)) * arch.layer_out(l - 1);
            }
            std::swap(cur, nxt);
        }
        // cur now holds dLoss/dx0 = [dm_u, dm_i].
        for (int r = 0; r < n; ++r) {
            const T* dx = cur + std::size_t(r) * 2 * dm;
            std::memcpy(grad_u + std::size_t(r) * E + dg, dx, sizeof(T) * dm);
            std::memcpy(grad_i + std::size_t(r) * E + dg, dx + dm, sizeof(T) * dm);
        }
    }
    if (l2_scale != T(0)) {
        const T c = T(2) * l2_scale;
        for (int r = 0; r < n; ++r) {
            const T* eu = user_rows[r];
            const T* ei = item_rows[r];
            T* gu = grad_u + std::size_t(r) * E;
            T* gi = grad_i + std::size_t(r) * E;
            for (int k = 0; k < E; ++k) {
                gu[k] += c * eu[k];
                gi[k] += c * ei[k];
            }
        }
    }
}

// W^T of every layer (out x in each, concatenated) from the dense vector.
template <class T>
inline void transpose_weights(const Arch& arch, const T* dense, T* wt) {
    std::int64_t off = 0;
    for (int l = 0; l < arch.n_layers(); ++l) {
        const int in = arch.layer_in(l), out = arch.layer_out(l);
        const T* w = dense + arch.w_offset(l);
        for (int j = 0; j < out; ++j)
            for (int k = 0; k < in; ++k) wt[off + std::int64_t(j) * in + k] = w[std::int64_t(k) * out + j];
        off += std::int64_t(in) * out;
    }
}

inline std::int64_t n_weights(const Arch& arch) {
    std::int64_t s = 0;
    for (int l = 0; l < arch.n_layers(); ++l) s += std::int64_t(arch.layer_in(l)) * arch.layer_out(l);
    return s;
}

}  // namespace recforge::mlp::detail
