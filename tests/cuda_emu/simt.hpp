// Just enough of CUDA to run recforge's kernel sources on the CPU (tests/test_cuda_emulation.py,
// tests/test_cuda_als_emulation.py, the fake GPU).
//
// A launch runs its blocks one after another; each block runs blockDim.x CUDA threads as fibers
// (ucontext) on the calling OS thread, and __syncthreads switches to the next fiber: a thread runs
// until it reaches a barrier (or returns), and once every live thread of the block has arrived the
// next phase starts. The threads of each phase run in a fresh pseudo-random order (seeded per launch),
// so a kernel that reads what another thread writes in the same phase (a missing __syncthreads)
// sees a different order from phase to phase and its results change. __shared__ variables become
// function statics (shared by the block's threads, as on a GPU), dynamic shared memory is one buffer
// filled with garbage per block. A thread that returns drops out of the barrier, as an exited GPU
// thread does. Enough to check the kernels' indexing, their synchronisation and their results, not
// their speed. (Fibers, not OS threads: a barrier costs a context switch of ~100 ns instead of a
// wake-up of every thread, which makes kernels that synchronise per column, like the Cholesky
// solve, practical to emulate.)
#pragma once

#include <ucontext.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <numeric>
#include <random>
#include <vector>

struct rf_dim3 {
    unsigned x = 0, y = 1, z = 1;
};
inline thread_local rf_dim3 threadIdx, blockIdx;
inline rf_dim3 blockDim, gridDim;
inline unsigned char* rf_dynamic_shared_memory = nullptr;

#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
#define __syncthreads() rf_emu::sync_threads()
#define RF_DYNAMIC_SHARED(type, name) type* name = reinterpret_cast<type*>(rf_dynamic_shared_memory)

inline float __uint_as_float(unsigned x) {
    float f;
    std::memcpy(&f, &x, sizeof f);
    return f;
}
inline float __int_as_float(unsigned x) { return __uint_as_float(x); }
inline unsigned __float_as_uint(float f) {
    unsigned x;
    std::memcpy(&x, &f, sizeof x);
    return x;
}
template <class T>
T atomicAdd(T* p, T v) {
    return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST);
}

namespace rf_emu {

struct Fiber {
    ucontext_t context{};
    std::unique_ptr<char[]> stack;
    bool done = false;
};

inline ucontext_t scheduler_context;
inline Fiber* current_fiber = nullptr;
inline void (*fiber_body)(void*) = nullptr;
inline void* fiber_argument = nullptr;

// A thread at a barrier: back to the scheduler, which resumes it in the next phase.
inline void sync_threads() { swapcontext(&current_fiber->context, &scheduler_context); }

inline void fiber_entry() {
    fiber_body(fiber_argument);
    current_fiber->done = true;  // returns to uc_link: the scheduler
}

// A fresh context for `fiber` that runs fiber_entry (apart from launch: getcontext returns twice, which
// would make the compiler distrust launch's locals).
[[gnu::noinline]] inline void prepare(Fiber& fiber, std::size_t stack_size) {
    fiber.done = false;
    getcontext(&fiber.context);
    fiber.context.uc_stack.ss_sp = fiber.stack.get();
    fiber.context.uc_stack.ss_size = stack_size;
    fiber.context.uc_link = &scheduler_context;
    makecontext(&fiber.context, fiber_entry, 0);
}

template <class Body>
void launch(unsigned grid, unsigned block, std::size_t shared, Body body) {
    constexpr std::size_t kStack = 256 * 1024;
    gridDim = {grid, 1, 1};
    blockDim = {block, 1, 1};
    std::vector<unsigned char> smem(shared + 8);
    rf_dynamic_shared_memory = smem.data();
    fiber_body = [](void* b) { (*static_cast<Body*>(b))(); };
    fiber_argument = &body;
    std::mt19937 order_rng(grid * 7919u + block * 31u + static_cast<unsigned>(shared));
    std::vector<Fiber> fibers(block);
    for (auto& fiber : fibers) fiber.stack.reset(new char[kStack]);  // (not zeroed: a stack needs no init)
    std::vector<unsigned> order(block);
    for (unsigned b = 0; b < grid; ++b) {
        std::memset(smem.data(), 0xA5, smem.size());  // whatever the previous block left: garbage
        blockIdx = {b, 1, 1};
        for (auto& fiber : fibers) prepare(fiber, kStack);
        std::iota(order.begin(), order.end(), 0u);
        for (bool live = true; live;) {  // one phase: every live thread up to its next barrier
            std::shuffle(order.begin(), order.end(), order_rng);
            live = false;
            for (unsigned t : order) {
                if (fibers[t].done) continue;
                threadIdx = {t, 1, 1};
                current_fiber = &fibers[t];
                swapcontext(&scheduler_context, &fibers[t].context);
                live = live || !fibers[t].done;
            }
        }
    }
}

}  // namespace rf_emu
