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

// p . q over f floats. The 16 partial sums are combined as a tree: a plain `omp simd`
// reduction makes GCC (without -ffast-math) add the lanes one after another, and that serial
// chain sat on the critical path of every SGD step (dot -> error -> update).
inline float dot(const float* __restrict p, const float* __restrict q, int f) {
    constexpr int W = 16;
    float acc[W] = {};
    int c = 0;
    for (; c + W <= f; c += W)
        for (int l = 0; l < W; ++l) acc[l] += p[c + l] * q[c + l];
    for (int l = 0; c + l < f; ++l) acc[l] += p[c + l] * q[c + l];
    for (int l = 0; l < 8; ++l) acc[l] += acc[l + 8];
    for (int l = 0; l < 4; ++l) acc[l] += acc[l + 4];
    return (acc[0] + acc[2]) + (acc[1] + acc[3]);
}

// Runs body(t, n_threads) once on each of `threads` threads (t = 0..n_threads-1) and returns
// per-thread results in thread order, so reductions are deterministic for a fixed thread count.
template <class T, class Body>
std::vector<T> per_thread(int threads, Body&& body) {
    const int nt = resolve_threads(threads);
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
