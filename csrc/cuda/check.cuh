// recforge CUDA error checks. Every CUDA runtime call goes through RECFORGE_CUDA_CHECK, which turns a
// failing cudaError_t into std::runtime_error naming the call, the error and file:line (pybind11 maps
// it to RuntimeError). Host code only; include from .cu files.
#pragma once

#include <cuda_runtime_api.h>

#include <stdexcept>
#include <string>

namespace recforge::cuda {

inline void check(cudaError_t err, const char* expr, const char* file, int line) {
    if (err == cudaSuccess) return;
    throw std::runtime_error(std::string("CUDA error ") + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) +
                             ") in " + expr + " at " + file + ":" + std::to_string(line));
}

}  // namespace recforge::cuda

#define RECFORGE_CUDA_CHECK(expr) ::recforge::cuda::check((expr), #expr, __FILE__, __LINE__)
