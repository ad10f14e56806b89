// recforge/simd.hpp — run-time SIMD dispatch and the one float dot product of the CPU kernels.
//
// Dispatch: a function marked RECFORGE_SIMD_CLONES(list) is compiled once per instruction set of
// the list and the loader picks the widest the CPU has (GCC function multiversioning), so a
// portable build (no -march=native) still runs wide vectors. Define RECFORGE_NO_CLONES to build
// one baseline version.
//
// Two lists, because results are bitwise per compiled instruction set (FMA contraction and vector
// widths differ between them) and each kernel family's results are pinned (tests/golden):
//   RECFORGE_ISA_V4: x86-64-v4 / x86-64-v3 / baseline — AVX-512 with VL, and FMA on AVX2 CPUs (ALS);
//   RECFORGE_ISA_F:  avx512f / avx2 / baseline (SGD, MLP, top-K). Moving these to RECFORGE_ISA_V4
//   gains FMA on AVX2-only CPUs but changes their last bits: a deliberate re-baseline, not a refactor.
//
// Vectors: v16f is 16 floats as one GCC/Clang vector (one zmm with AVX-512, two ymm / four xmm
// otherwise), for loops whose accumulators must stay in registers; aligned(4) lets it load from
// any float address. No Python in here.
#pragma once

#include <cstdint>

#define RECFORGE_ISA_V4 "arch=x86-64-v4", "arch=x86-64-v3", "default"
#define RECFORGE_ISA_F "avx512f", "avx2", "default"
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && \
    !defined(RECFORGE_NO_CLONES)
#define RECFORGE_SIMD_CLONES(isa_list) __attribute__((target_clones(isa_list)))
#else
#define RECFORGE_SIMD_CLONES(isa_list)
#endif

// Helpers called from a clone must be inlined into it to run with its instruction set.
#if defined(__GNUC__)
#define RECFORGE_INLINE inline __attribute__((always_inline))
#define RECFORGE_INLINE_LAMBDA __attribute__((always_inline))
#else
#define RECFORGE_INLINE inline
#define RECFORGE_INLINE_LAMBDA
#endif

namespace recforge::simd {

#if defined(__GNUC__)
typedef float v16f __attribute__((vector_size(64), aligned(4)));
typedef float v8f __attribute__((vector_size(32), aligned(4)));
typedef float v4f __attribute__((vector_size(16), aligned(4)));

// Sum of the 16 lanes as a halving tree, ((s0 + s2) + (s1 + s3)) at the end: a loop over the
// lanes would be a chain of 15 dependent adds (and a different rounding).
RECFORGE_INLINE float hsum(v16f s) {
    const v8f s8 = __builtin_shufflevector(s, s, 0, 1, 2, 3, 4, 5, 6, 7) +
                   __builtin_shufflevector(s, s, 8, 9, 10, 11, 12, 13, 14, 15);
    const v4f s4 = __builtin_shufflevector(s8, s8, 0, 1, 2, 3) + __builtin_shufflevector(s8, s8, 4, 5, 6, 7);
    return (s4[0] + s4[2]) + (s4[1] + s4[3]);
}

// a . b over n floats: 16 partial sums (one vector), combined by hsum, then the n % 16 tail in
// order. Written with vector types because a plain `omp simd` reduction made GCC (without
// -ffast-math) add the lanes one after another, a serial chain on the critical path of every SGD
// step. The summation order is fixed, so the result does not depend on the SIMD level's width.
RECFORGE_INLINE float dot(const float* __restrict a, const float* __restrict b, std::int64_t n) {
    v16f acc = {};
    std::int64_t c = 0;
    for (; c + 16 <= n; c += 16) acc += *reinterpret_cast<const v16f*>(a + c) * *reinterpret_cast<const v16f*>(b + c);
    float tail = 0.f;
    for (; c < n; ++c) tail += a[c] * b[c];
    return hsum(acc) + tail;
}
#else
inline float dot(const float* a, const float* b, std::int64_t n) {  // same order, scalar code
    float acc[16] = {};
    std::int64_t c = 0;
    for (; c + 16 <= n; c += 16)
        for (int l = 0; l < 16; ++l) acc[l] += a[c + l] * b[c + l];
    for (int l = 0; l < 8; ++l) acc[l] += acc[l + 8];
    for (int l = 0; l < 4; ++l) acc[l] += acc[l + 4];
    float tail = 0.f;
    for (; c < n; ++c) tail += a[c] * b[c];
    return ((acc[0] + acc[2]) + (acc[1] + acc[3])) + tail;
}
#endif

// a . b summed in whatever lane order the compiler vectorises `omp simd` with for the caller's
// instruction set (inline it into a clone). Fastest for short fixed lengths, but its bits depend
// on the compiler and SIMD level; ALS's results are pinned to it (merging it into dot() changes
// them). Prefer dot() in new code.
RECFORGE_INLINE float dot_any_order(const float* __restrict a, const float* __restrict b, int n) {
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int k = 0; k < n; ++k) s += a[k] * b[k];
    return s;
}

}  // namespace recforge::simd
