// recforge CUDA device plumbing (see device.hpp): build information and a one-thread ping kernel.
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "check.cuh"
#include "device.hpp"

#ifndef RECFORGE_CUDA_ARCHITECTURES
#define RECFORGE_CUDA_ARCHITECTURES "unknown"
#endif

namespace recforge::cuda {
namespace {

// Writes the architecture this code was compiled for: the real sm_XX it ran, or the PTX target a
// newer GPU just-in-time compiled.
__global__ void arch_kernel(int* out) {
#ifdef __CUDA_ARCH__
    *out = __CUDA_ARCH__;
#endif
}

// Device memory freed on every path out of ping().
struct DeviceInt {
    int* ptr = nullptr;
    DeviceInt() { RECFORGE_CUDA_CHECK(cudaMalloc(&ptr, sizeof(int))); }
    ~DeviceInt() { cudaFree(ptr); }
    DeviceInt(const DeviceInt&) = delete;
    DeviceInt& operator=(const DeviceInt&) = delete;
};

}  // namespace

BuildInfo info() {
    BuildInfo r;
    r.architectures = RECFORGE_CUDA_ARCHITECTURES;
    r.cuda_version = CUDART_VERSION;
    RECFORGE_CUDA_CHECK(cudaRuntimeGetVersion(&r.runtime_version));
    if (cudaDriverGetVersion(&r.driver_version) != cudaSuccess) r.driver_version = 0;
    // No driver or no GPU is an answer here, not an error; clear it so later calls start clean.
    if (cudaGetDeviceCount(&r.device_count) != cudaSuccess) {
        r.device_count = 0;
        cudaGetLastError();
    }
    return r;
}

int ping(int device) {
    const int count = info().device_count;
    if (device < 0 || device >= count)
        throw std::invalid_argument("device must be in [0, " + std::to_string(count) + "), got " +
                                    std::to_string(device));
    RECFORGE_CUDA_CHECK(cudaSetDevice(device));
    DeviceInt out;
    RECFORGE_CUDA_CHECK(cudaMemset(out.ptr, 0, sizeof(int)));
    arch_kernel<<<1, 1>>>(out.ptr);
    RECFORGE_CUDA_CHECK(cudaGetLastError());
    int arch = 0;
    RECFORGE_CUDA_CHECK(cudaMemcpy(&arch, out.ptr, sizeof(int), cudaMemcpyDeviceToHost));
    return arch;
}

}  // namespace recforge::cuda
