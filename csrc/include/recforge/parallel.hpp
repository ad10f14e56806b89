// recforge/parallel.hpp — threading helpers shared by every CPU kernel.
//
// Contract: `threads <= 0` means "OpenMP default" (all cores, honours OMP_NUM_THREADS, at most
// thread_limit()); an explicit count above thread_limit() is refused (std::invalid_argument), so no
// caller can make OpenMP try to start 10^6 threads. Exceptions thrown inside a parallel body are
// caught per thread and the first one is rethrown on the calling thread once the loop ends, so an
// exception never crosses the OpenMP region. parallel_for also stops early when the caller's
// StopToken asks (interrupt.hpp). No Python in here.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <exception>
#include <stdexcept>
#include <string>
#include <vector>

#include "recforge/interrupt.hpp"

#ifdef RECFORGE_OPENMP
#include <omp.h>
#endif

namespace recforge {

// The most threads a kernel may be asked for: 256, or the number of processors when larger.
inline int thread_limit() {
#ifdef RECFORGE_OPENMP
    return std::max(256, omp_get_num_procs());
#else
    return 256;
#endif
}

// Number of threads a kernel will use for `threads` (<= 0: all available); throws
// std::invalid_argument for threads > thread_limit().
inline int resolve_threads(std::int64_t threads) {
    const int limit = thread_limit();
    if (threads > limit)
        throw std::invalid_argument("threads must be in [0, " + std::to_string(limit) + "] (0 = all cores), got " +
                                    std::to_string(threads));
#ifdef RECFORGE_OPENMP
    return threads > 0 ? static_cast<int>(threads) : std::min(omp_get_max_threads(), limit);
#else
    return 1;
#endif
}

// Runs body(i) for i in [begin, end) on `threads` threads with dynamic scheduling in chunks of
// `chunk`; rethrows the first exception raised by any body. When the calling thread's StopToken
// asks to stop, the remaining iterations are skipped and Interrupted is thrown after the loop.
template <class Body>
void parallel_for(std::int64_t begin, std::int64_t end, int threads, std::int64_t chunk, Body&& body) {
    if (end <= begin) return;
    const int nt = resolve_threads(threads);
    StopToken* const stop = StopToken::current();
    std::exception_ptr first = nullptr;
    std::atomic<bool> failed{false};
#ifdef RECFORGE_OPENMP
#pragma omp parallel for schedule(dynamic, chunk) num_threads(nt)
#endif
    for (std::int64_t i = begin; i < end; ++i) {
        if (failed.load(std::memory_order_relaxed) || stop_requested(stop)) continue;
        try {
            body(i);
        } catch (...) {
#ifdef RECFORGE_OPENMP
#pragma omp critical(recforge_parallel_error)
#endif
            if (!first) first = std::current_exception();
            failed.store(true, std::memory_order_relaxed);
        }
    }
    (void)nt;
    (void)chunk;
    if (first) std::rethrow_exception(first);
    if (stop != nullptr && stop->stopped()) throw Interrupted();
}

// Index of the calling thread inside a parallel region (0 outside one).
inline int thread_index() {
#ifdef RECFORGE_OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

// Runs body(t, nt) once for each t = 0..nt-1 (on nt threads) and returns the results in thread
// order, so a reduction over them is deterministic for a fixed thread count.
template <class T, class Body>
std::vector<T> per_thread(int nt, Body&& body) {
    std::vector<T> out(static_cast<std::size_t>(nt));
    if (nt > 1) {
        parallel_for(0, nt, nt, 1, [&](std::int64_t t) { out[t] = body(static_cast<int>(t), nt); });
    } else {
        for (int t = 0; t < nt; ++t) out[t] = body(t, nt);
    }
    return out;
}

// First index of share t when n items are split evenly over nt shares (share t is
// [share_begin(n, t, nt), share_begin(n, t + 1, nt))).
inline std::int64_t share_begin(std::int64_t n, int t, int nt) {
    return n / nt * t + std::min<std::int64_t>(t, n % nt);
}

}  // namespace recforge
