// Just enough of CUDA to run recforge's kernel sources on the CPU (tests/test_cuda_emulation.py).
//
// A launch runs its blocks one after another; each block runs blockDim.x std::threads, and
// __syncthreads is a std::barrier. __shared__ variables become function statics (shared by the
// threads of the block, as on a GPU), dynamic shared memory is one buffer filled with garbage per
// block. A thread that returns drops out of the barrier, as an exited GPU thread does. Enough to
// check the kernels' indexing, their synchronisation and their results, not their speed.
#pragma once

#include <barrier>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <thread>
#include <vector>

struct rf_dim3 {
    unsigned x = 0, y = 1, z = 1;
};
inline thread_local rf_dim3 threadIdx, blockIdx;
inline rf_dim3 blockDim, gridDim;
inline std::barrier<>* rf_block_barrier = nullptr;
inline unsigned char* rf_dynamic_shared_memory = nullptr;

#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
#define __syncthreads() rf_block_barrier->arrive_and_wait()
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

template <class Body>
void launch(unsigned grid, unsigned block, std::size_t shared, Body body) {
    gridDim = {grid, 1, 1};
    blockDim = {block, 1, 1};
    std::vector<unsigned char> smem(shared + 8);
    rf_dynamic_shared_memory = smem.data();
    for (unsigned b = 0; b < grid; ++b) {
        std::memset(smem.data(), 0xA5, smem.size());  // whatever the previous block left: garbage
        std::barrier<> barrier(block);
        rf_block_barrier = &barrier;
        std::vector<std::thread> threads;
        threads.reserve(block);
        for (unsigned t = 0; t < block; ++t) {
            threads.emplace_back([&, b, t] {
                blockIdx = {b, 1, 1};
                threadIdx = {t, 1, 1};
                body();
                barrier.arrive_and_drop();
            });
        }
        for (auto& th : threads) th.join();
    }
}

}  // namespace rf_emu
