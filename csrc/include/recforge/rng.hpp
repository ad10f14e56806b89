// recforge/rng.hpp — the one random generator of the kernels: splitmix64 (Steele, Lea & Flood 2014),
// on the host and, compiled by nvcc, on the device (so GPU sampling can be tested draw for draw
// against CPU sampling).
//
// One add and one mix per draw, passes BigCrush: plenty for sampling, and the state is one word,
// so a stream per thread, user or epoch costs nothing. Streams are derived from the caller's seed
// by the seed functions below, never by sharing a generator across threads. Header-only, no
// allocation, no Python.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define RECFORGE_HOST_DEVICE __host__ __device__
#else
#define RECFORGE_HOST_DEVICE
#endif

namespace recforge {

// The splitmix64 finaliser: a bijective mix of 64 bits.
RECFORGE_HOST_DEVICE inline std::uint64_t mix64(std::uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

// High 64 bits of the 128-bit product a * b (the same value on every platform).
RECFORGE_HOST_DEVICE inline std::uint64_t mulhi64(std::uint64_t a, std::uint64_t b) {
#if defined(__CUDA_ARCH__)
    return __umul64hi(a, b);
#elif defined(__SIZEOF_INT128__)
    return static_cast<std::uint64_t>((static_cast<unsigned __int128>(a) * b) >> 64);
#else
    const std::uint64_t a_lo = a & 0xffffffffULL, a_hi = a >> 32, b_lo = b & 0xffffffffULL, b_hi = b >> 32;
    const std::uint64_t lo_lo = a_lo * b_lo, hi_lo = a_hi * b_lo, lo_hi = a_lo * b_hi, hi_hi = a_hi * b_hi;
    const std::uint64_t mid = (lo_lo >> 32) + (hi_lo & 0xffffffffULL) + lo_hi;
    return hi_hi + (hi_lo >> 32) + (mid >> 32);
#endif
}

struct SplitMix64 {
    std::uint64_t state;

    RECFORGE_HOST_DEVICE explicit SplitMix64(std::uint64_t seed) : state(seed) {}

    RECFORGE_HOST_DEVICE std::uint64_t next() {
        state += 0x9e3779b97f4a7c15ULL;
        return mix64(state);
    }

    // Uniform in [0, n), n >= 1, without modulo bias (Lemire 2019: multiply, and a rejection that
    // happens with probability below n / 2^64).
    RECFORGE_HOST_DEVICE std::uint64_t below(std::uint64_t n) {
        std::uint64_t x = next();
        std::uint64_t low = x * n;
        if (low < n) {
            const std::uint64_t threshold = (0 - n) % n;
            while (low < threshold) {
                x = next();
                low = x * n;
            }
        }
        return mulhi64(x, n);
    }
};

// Seed of the stream (seed, epoch, thread) of the SGD epochs: distinct inputs give unrelated
// starting points, so a run never depends on which thread starts first.
RECFORGE_HOST_DEVICE inline std::uint64_t epoch_thread_seed(std::uint64_t seed, std::uint64_t epoch,
                                                            std::uint64_t thread) {
    return mix64(mix64(seed ^ 0x6a09e667f3bcc909ULL) + mix64(epoch + 0x3c6ef372fe94f82bULL)) ^
           mix64(thread * 0x9e3779b97f4a7c15ULL + 0xa54ff53a5f1d36f1ULL);
}

// Seed of the stream `key` (a user, or a fixed tag) under `seed`: the MLP sampler's streams.
RECFORGE_HOST_DEVICE inline std::uint64_t keyed_seed(std::uint64_t seed, std::uint64_t key) {
    return SplitMix64(seed ^ (key * 0xd1b54a32d192ed03ULL)).next();
}

}  // namespace recforge
