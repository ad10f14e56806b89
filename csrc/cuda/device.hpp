// recforge CUDA device plumbing, declared in plain C++ (no CUDA headers) so the pybind11 layer is
// compiled by the host compiler. Implemented in device.cu.
//
// info() never fails for a machine without a driver or a GPU (it reports 0 devices); ping() runs one
// GPU thread and is the smallest proof that the compiled machine code (or PTX) loads on a device.
#pragma once

#include <string>

namespace recforge::cuda {

struct BuildInfo {
    std::string architectures;  // CMAKE_CUDA_ARCHITECTURES of the build, comma-separated
    int cuda_version = 0;       // CUDART_VERSION the module was compiled against (13000 = 13.0)
    int runtime_version = 0;    // cudaRuntimeGetVersion (the runtime is linked statically)
    int driver_version = 0;     // cudaDriverGetVersion; 0 without a driver
    int device_count = 0;       // visible devices; 0 without a driver or a GPU
};

BuildInfo info();

// Launch one thread on `device` and return the __CUDA_ARCH__ it ran (e.g. 900 on an H100/H200).
// Throws std::invalid_argument for a device index out of range, std::runtime_error on CUDA errors.
int ping(int device);

}  // namespace recforge::cuda
