// sgd_internal.hpp — internal to sgd_mf.cpp / sgd_rank.cpp: how many threads an epoch is worth.
// The generator (rng.hpp), dot product and SIMD dispatch (simd.hpp) and per_thread
// (parallel.hpp) are the shared ones.
#pragma once

#include <algorithm>
#include <cstdint>

#include "recforge/parallel.hpp"
#include "recforge/rng.hpp"

namespace recforge::sgd::detail {

// Samples (or drawn negatives) between two checks of the caller's StopToken (a power of two).
constexpr std::int64_t kPollEvery = 4096;

// Fewest samples per thread per epoch worth a thread: below it the fork/join costs more than it
// saves, and on a small catalogue the threads' lock-free writes keep stealing the same cache lines
// from each other (measured on MovieLens-100K: 2 threads were no faster than 1).
constexpr std::int64_t kMinSamplesPerThread = 1 << 16;

// Threads worth using for n samples (or pairs) when `threads` are allowed (<= 0: all cores).
inline int useful_threads(int threads, std::int64_t n) {
    const std::int64_t useful = std::max<std::int64_t>(1, n / kMinSamplesPerThread);
    return static_cast<int>(std::min<std::int64_t>(resolve_threads(threads), useful));
}

// The random stream of (seed, epoch, thread).
inline SplitMix64 stream(std::uint64_t seed, std::uint64_t epoch, std::uint64_t thread) {
    return SplitMix64(epoch_thread_seed(seed, epoch, thread));
}

}  // namespace recforge::sgd::detail
