// recforge/parallel.hpp — threading helpers shared by every CPU kernel.
//
// Contract: `threads <= 0` means "OpenMP default" (all cores, honours OMP_NUM_THREADS). Exceptions
// thrown inside a parallel body are caught per thread and the first one is rethrown on the calling
// thread once the loop ends, so a worker can never terminate the process. No Python in here.
#pragma once

#include <algorithm>
#include <cstdint>
#include <exception>
#include <vector>

#ifdef RECFORGE_OPENMP
#include <omp.h>
#endif

namespace recforge {

// Number of threads a kernel will use for `threads` (<= 0: all available).
inline int resolve_threads(int threads) {
#ifdef RECFORGE_OPENMP
    return threads > 0 ? threads : omp_get_max_threads();
#else
    (void)threads;
    return 1;
#endif
}

// Runs body(i) for i in [begin, end) on `threads` threads with dynamic scheduling in chunks of
// `chunk`; rethrows the first exception raised by any body.
template <class Body>
void parallel_for(std::int64_t begin, std::int64_t end, int threads, std::int64_t chunk, Body&& body) {
    if (end <= begin) return;
    const int nt = resolve_threads(threads);
    std::exception_ptr first = nullptr;
#ifdef RECFORGE_OPENMP
#pragma omp parallel for schedule(dynamic, chunk) num_threads(nt)
#endif
    for (std::int64_t i = begin; i < end; ++i) {
        try {
            body(i);
        } catch (...) {
#ifdef RECFORGE_OPENMP
#pragma omp critical(recforge_parallel_error)
#endif
            if (!first) first = std::current_exception();
        }
    }
    (void)nt;
    (void)chunk;
    if (first) std::rethrow_exception(first);
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
