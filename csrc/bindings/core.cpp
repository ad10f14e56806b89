// recforge._core — the thin pybind11 layer over the C++ core. Each kernel family binds itself in
// its own file (bind_*.cpp); this file owns the module, build information and BLAS installation.
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>

#include "recforge/blas.hpp"
#include "recforge/parallel.hpp"

namespace py = pybind11;

void bind_als(py::module_& m);
void bind_sgd(py::module_& m);
void bind_mlp(py::module_& m);
void bind_topk(py::module_& m);

#ifndef RECFORGE_VERSION
#define RECFORGE_VERSION "dev"
#endif

namespace {

// Function pointer out of a SciPy cython_blas/cython_lapack capsule (None -> nullptr).
void* capsule_pointer(const py::object& obj, const char* what) {
    if (obj.is_none()) return nullptr;
    if (!PyCapsule_CheckExact(obj.ptr()))
        throw py::type_error(std::string(what) + " must be a PyCapsule holding a Fortran routine");
    void* p = PyCapsule_GetPointer(obj.ptr(), PyCapsule_GetName(obj.ptr()));
    if (!p) throw py::error_already_set();
    return p;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
    m.doc() = "recforge C++ kernels (internal; use the recforge package)";
    m.attr("__version__") = RECFORGE_VERSION;
#ifdef RECFORGE_OPENMP
    m.attr("with_openmp") = true;
#else
    m.attr("with_openmp") = false;
#endif
    m.def("max_threads", [](int threads) { return recforge::resolve_threads(threads); },
          py::arg("threads") = 0, "Threads a kernel uses for `threads` (<= 0: all cores).");
    m.def(
        "set_blas",
        [](py::object sgemm, py::object ssyrk, py::object spotrf, py::object spotrs) {
            recforge::blas::Routines r;
            r.sgemm = reinterpret_cast<recforge::blas::sgemm_fn>(capsule_pointer(sgemm, "sgemm"));
            r.ssyrk = reinterpret_cast<recforge::blas::ssyrk_fn>(capsule_pointer(ssyrk, "ssyrk"));
            r.spotrf = reinterpret_cast<recforge::blas::spotrf_fn>(capsule_pointer(spotrf, "spotrf"));
            r.spotrs = reinterpret_cast<recforge::blas::spotrs_fn>(capsule_pointer(spotrs, "spotrs"));
            recforge::blas::set_blas(r);
        },
        py::arg("sgemm"), py::arg("ssyrk"), py::arg("spotrf"), py::arg("spotrs"),
        "Install Fortran BLAS/LAPACK routines (PyCapsules from scipy.linalg.cython_*).");
    bind_als(m);
    bind_sgd(m);
    bind_mlp(m);
    bind_topk(m);
}
