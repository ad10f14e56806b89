// sgd_internal.hpp — pieces shared by the SGD kernels (sgd_mf.cpp, sgd_rank.cpp): a small seeded
// random generator, unbiased bounded draws, the SIMD dispatch attribute and a thread-team helper.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#ifdef RECFORGE_OPENMP
#include <omp.h>
#endif

#include "recforge/parallel.hpp"

// Hot loops are compiled for AVX-512, AVX2 and baseline x86-64 and picked at load time (GCC
// function multiversioning), so a portable build still runs wide vectors on this CPU.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define RECFORGE_SIMD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define RECFORGE_SIMD_CLONES
#endif

namespace recforge::sgd::detail {

inline std::uint64_t mix64(std::uint64_t z) {  // splitmix64 finaliser
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

// splitmix64 (Steele, Lea & Flood 2014): one add and a mix per draw, passes BigCrush; plenty
// for sampling, and its state is a single word so per-thread streams are cheap.
struct Rng {
    std::uint64_t state;
    // Stream for (seed, epoch, thread): distinct inputs give unrelated starting points.
    Rng(std::uint64_t seed, std::uint64_t epoch, std::uint64_t thread)
        : state(mix64(mix64(seed ^ 0x6a09e667f3bcc909ULL) + mix64(epoch + 0x3c6ef372fe94f82bULL)) ^
                mix64(thread * 0x9e3779b97f4a7c15ULL + 0xa54ff53a5f1d36f1ULL)) {}
    std::uint64_t next() {
        state += 0x9e3779b97f4a7c15ULL;
        return mix64(state);
    }
    // Uniform in [0, n), n >= 1, without modulo bias (Lemire 2019, multiply + rare rejection).
    std::uint64_t below(std::uint64_t n) {
#if defined(__SIZEOF_INT128__)
        unsigned __int128 m = static_cast<unsigned __int128>(next()) * n;
        std::uint64_t low = static_cast<std::uint64_t>(m);
        if (low < n) {
            const std::uint64_t threshold = (0 - n) % n;
            while (low < threshold) {
                m = static_cast<unsigned __int128>(next()) * n;
                low = static_cast<std::uint64_t>(m);
            }
        }
        return static_cast<std::uint64_t>(m >> 64);
#else
        const std::uint64_t limit = UINT64_MAX - UINT64_MAX % n;  // rejection keeps it unbiased
        std::uint64_t x;
        do x = next(); while (x >= limit);
        return x % n;
#endif
    }
};

// p . q over f floats. Sixteen partial sums combined as a tree (halving), written with GCC/Clang
// vector types: a plain `omp simd` reduction made GCC (without -ffast-math) add the 16 lanes one
// after another, and that serial chain sat on the critical path of every SGD step
// (dot -> error -> update).
#if defined(__GNUC__)
typedef float v16sf __attribute__((vector_size(64)));
typedef float v8sf __attribute__((vector_size(32)));
typedef float v4sf __attribute__((vector_size(16)));

inline float dot(const float* __restrict p, const float* __restrict q, int f) {
    v16sf acc = {};
    int c = 0;
    for (; c + 16 <= f; c += 16) {
        v16sf a, b;
        __builtin_memcpy(&a, p + c, sizeof a);  // unaligned loads
        __builtin_memcpy(&b, q + c, sizeof b);
        acc += a * b;
    }
    const v8sf s8 = __builtin_shufflevector(acc, acc, 0, 1, 2, 3, 4, 5, 6, 7) +
                    __builtin_shufflevector(acc, acc, 8, 9, 10, 11, 12, 13, 14, 15);
    const v4sf s4 = __builtin_shufflevector(s8, s8, 0, 1, 2, 3) + __builtin_shufflevector(s8, s8, 4, 5, 6, 7);
    float tail = 0.f;
    for (; c < f; ++c) tail += p[c] * q[c];
    return ((s4[0] + s4[2]) + (s4[1] + s4[3])) + tail;
}
#else
inline float dot(const float* __restrict p, const float* __restrict q, int f) {
    float acc[16] = {};
    int c = 0;
    for (; c + 16 <= f; c += 16)
        for (int l = 0; l < 16; ++l) acc[l] += p[c + l] * q[c + l];
    for (int l = 0; l < 8; ++l) acc[l] += acc[l + 8];
    for (int l = 0; l < 4; ++l) acc[l] += acc[l + 4];
    float tail = 0.f;
    for (; c < f; ++c) tail += p[c] * q[c];
    return ((acc[0] + acc[2]) + (acc[1] + acc[3])) + tail;
}
#endif

// Fewest samples per thread per epoch worth a thread: below it the fork/join costs more than it
// saves, and on a small catalogue the threads' lock-free writes keep stealing the same cache lines
// from each other (measured on MovieLens-100K: 2 threads were no faster than 1).
constexpr std::int64_t kMinSamplesPerThread = 1 << 16;

// Threads worth using for n samples (or pairs) when `threads` are allowed (<= 0: all cores).
inline int useful_threads(int threads, std::int64_t n) {
    const std::int64_t useful = std::max<std::int64_t>(1, n / kMinSamplesPerThread);
    return static_cast<int>(std::min<std::int64_t>(resolve_threads(threads), useful));
}

// Runs body(t, n_threads) once for each t = 0..nt-1 (on nt threads) and returns the results in
// thread order, so reductions are deterministic for a fixed thread count.
template <class T, class Body>
std::vector<T> per_thread(int nt, Body&& body) {
    std::vector<T> out(static_cast<std::size_t>(nt));
#ifdef RECFORGE_OPENMP
    if (nt > 1) {
        parallel_for(0, nt, nt, 1, [&](std::int64_t t) { out[t] = body(static_cast<int>(t), nt); });
        return out;
    }
#endif
    for (int t = 0; t < nt; ++t) out[t] = body(t, nt);
    return out;
}

// [begin, end) of thread t's share of n items split evenly over nt threads.
inline std::int64_t share_begin(std::int64_t n, int t, int nt) { return n / nt * t + std::min<std::int64_t>(t, n % nt); }

}  // namespace recforge::sgd::detail
