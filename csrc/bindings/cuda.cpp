// recforge._cuda — the pybind11 layer over the CUDA kernels (csrc/cuda/). Built when nvcc is found
// (RECFORGE_CUDA=AUTO) or asked for (ON); `recforge._backend.with_cuda` is "this module imports".
// The CUDA runtime is linked statically, so the module imports on a machine without a driver or GPU.
#include <pybind11/pybind11.h>

#include "device.hpp"

namespace py = pybind11;

#ifndef RECFORGE_VERSION
#define RECFORGE_VERSION "dev"
#endif

PYBIND11_MODULE(_cuda, m) {
    m.doc() = "recforge CUDA kernels (internal; use the recforge package)";
    m.attr("__version__") = RECFORGE_VERSION;
    m.def(
        "info",
        [] {
            const recforge::cuda::BuildInfo i = recforge::cuda::info();
            py::dict d;
            d["architectures"] = i.architectures;
            d["cuda_version"] = i.cuda_version;
            d["runtime_version"] = i.runtime_version;
            d["driver_version"] = i.driver_version;
            d["device_count"] = i.device_count;
            return d;
        },
        "Build and runtime information: dict with architectures (str, CMAKE_CUDA_ARCHITECTURES), "
        "cuda_version, runtime_version, driver_version (0 without a driver) and device_count (int).");
    m.def("ping", &recforge::cuda::ping, py::arg("device") = 0, py::call_guard<py::gil_scoped_release>(),
          "Run one thread on GPU `device`; return the __CUDA_ARCH__ it ran (e.g. 900). "
          "ValueError for a device out of range, RuntimeError on CUDA errors.");
}
