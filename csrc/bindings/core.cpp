// recforge._core — the thin pybind11 layer over the C++ core. Each kernel family binds itself in
// its own file (als.cpp, sgd.cpp, mlp.cpp, topk.cpp, knn.cpp, hybrid.cpp); this file owns the
// module, build information, BLAS installation and the Csr class every kernel taking a sparse
// matrix accepts.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cctype>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "arrays.hpp"
#include "checked.hpp"
#include "nogil.hpp"
#include "recforge/blas.hpp"
#include "recforge/csr.hpp"
#include "recforge/parallel.hpp"

namespace py = pybind11;
using namespace recforge::bindings;

void bind_als(py::module_& m);
void bind_sgd(py::module_& m);
void bind_mlp(py::module_& m);
void bind_topk(py::module_& m);
void bind_knn(py::module_& m);
void bind_hybrid(py::module_& m);

#ifndef RECFORGE_VERSION
#define RECFORGE_VERSION "dev"
#endif

namespace {

// A capsule's name with Cython's typedef names (`__pyx_t_..._s`, the single-precision type of
// scipy.linalg.cython_blas/cython_lapack) spelled `float`, so it compares with a C signature.
std::string plain_signature(const char* name) {
    std::string in(name), out;
    const std::string prefix = "__pyx_t_";
    std::size_t pos = 0;
    while (pos < in.size()) {
        const std::size_t at = in.find(prefix, pos);
        if (at == std::string::npos) {
            out += in.substr(pos);
            break;
        }
        out += in.substr(pos, at - pos);
        std::size_t end = at;
        while (end < in.size() && (std::isalnum(static_cast<unsigned char>(in[end])) || in[end] == '_')) ++end;
        const std::string ident = in.substr(at, end - at);
        out += ident.size() > 2 && ident.compare(ident.size() - 2, 2, "_s") == 0 ? "float" : ident;
        pos = end;
    }
    return out;
}

// Function pointer out of a SciPy cython_blas/cython_lapack capsule (None -> nullptr). The
// capsule's name is its C signature: one that is not `signature` would be called with the wrong
// arguments, so it is refused.
void* capsule_pointer(const py::object& obj, const char* what, const char* signature) {
    if (obj.is_none()) return nullptr;
    if (!PyCapsule_CheckExact(obj.ptr()))
        throw py::type_error(std::string(what) + " must be a PyCapsule holding a Fortran routine");
    const char* name = PyCapsule_GetName(obj.ptr());
    if (name == nullptr || plain_signature(name) != signature)
        throw std::invalid_argument(std::string(what) + " must be the capsule of a routine with signature '" +
                                    signature + "' (scipy.linalg.cython_blas / cython_lapack), got a capsule named " +
                                    (name ? "'" + std::string(name) + "'" : std::string("NULL")));
    void* p = PyCapsule_GetPointer(obj.ptr(), name);
    if (!p) throw py::error_already_set();
    return p;
}

// A Csr from NumPy arrays: copied (so later writes to them cannot invalidate it) and validated
// once, here; every kernel binding then trusts it. Indices of any integer dtype are range-checked
// before they are narrowed to int32, so an id >= 2^31 is an error, not a wrapped value.
// An integer array (or an empty one of any dtype, as numpy makes them by default).
void check_integer(const py::array& a, const std::string& name) {
    const char kind = a.dtype().kind();
    if (kind != 'i' && kind != 'u' && a.size() != 0)
        throw py::type_error(name + " must be an integer array, got dtype " + py::str(a.dtype()).cast<std::string>());
}

// `obj` as an array (lists too, as NumPy reads them), or a TypeError naming `what`.
py::array as_array(const py::object& obj, const std::string& what) {
    py::array a = py::array::ensure(obj);
    if (!a) {
        PyErr_Clear();
        throw py::type_error(what + " must be an integer array, got " +
                             py::str(obj.get_type().attr("__name__")).cast<std::string>());
    }
    return a;
}

// (n_rows, n_cols) from any pair of Python ints, or a TypeError / ValueError naming `name`.shape.
std::pair<std::int64_t, std::int64_t> shape_of(const py::object& shape, const std::string& name) {
    const auto bad = [&]() {
        return py::type_error(name + ".shape must be an (n_rows, n_cols) pair of ints, got " +
                              py::repr(shape).cast<std::string>());
    };
    if (!py::isinstance<py::sequence>(shape) || py::len(shape) != 2) throw bad();
    std::int64_t out[2];
    for (int d = 0; d < 2; ++d) {
        const py::object v = shape[py::int_(d)];
        if (PyBool_Check(v.ptr()) || !PyIndex_Check(v.ptr())) throw bad();
        int overflow = 0;
        const py::object index = py::reinterpret_steal<py::object>(PyNumber_Index(v.ptr()));
        if (!index) throw py::error_already_set();
        out[d] = PyLong_AsLongLongAndOverflow(index.ptr(), &overflow);
        if (overflow != 0)
            throw std::invalid_argument(name + ".shape must be >= 0 and < 2^63, got " +
                                        py::repr(shape).cast<std::string>());
    }
    return {out[0], out[1]};
}

recforge::Csr make_csr(const py::object& indptr_obj, const py::object& indices_obj, const py::object& data,
                       const py::object& shape_obj, const std::string& name) {
    const py::array indptr_in = as_array(indptr_obj, name + ".indptr");
    const py::array indices = as_array(indices_obj, name + ".indices");
    const auto [n_rows, n_cols] = shape_of(shape_obj, name);
    if (n_rows < 0 || n_cols < 0 || n_rows == INT64_MAX)
        throw std::invalid_argument(name + ": shape must be >= 0, got (" + std::to_string(n_rows) + ", " +
                                    std::to_string(n_cols) + ")");
    check_integer(indptr_in, name + ".indptr");
    check_integer(indices, name + ".indices");
    const i64_in indptr = i64_in::ensure(indptr_in);
    if (!indptr) throw py::type_error(name + ".indptr cannot be read as int64");
    check_shape(indptr, (name + ".indptr").c_str(), n_rows + 1);
    check_shape(indices, (name + ".indices").c_str(), -1);
    // Contiguous int32 ids are read in place; any other integer array through an int64 copy.
    const bool is32 = py::isinstance<py::array_t<std::int32_t>>(indices);
    const py::object ids_in = is32 ? py::object(i32_in::ensure(indices)) : py::object(i64_in::ensure(indices));
    if (!ids_in) throw py::type_error(name + ".indices cannot be read as integers");
    const py::array ids_arr = py::reinterpret_borrow<py::array>(ids_in);
    f32_in values;
    const bool has_data = !data.is_none();
    if (has_data) {
        const py::array raw = py::array::ensure(data);
        if (raw && raw.size() != 0 && std::string("biuf").find(raw.dtype().kind()) == std::string::npos)
            throw py::type_error(name + ".data must hold real numbers, got dtype " +
                                 py::str(raw.dtype()).cast<std::string>());  // complex would lose its imaginary part
        values = f32_in::ensure(data);
        if (!values) throw py::type_error(name + ".data must be None or numbers readable as float32");
        check_shape(values, (name + ".data").c_str(), indices.shape(0));
    }
    const py::ssize_t nnz = indices.shape(0);
    const std::int64_t* ip = indptr.data();
    const std::int32_t* i32 = is32 ? static_cast<const std::int32_t*>(ids_arr.data()) : nullptr;
    const std::int64_t* i64 = is32 ? nullptr : static_cast<const std::int64_t*>(ids_arr.data());
    const float* dp = has_data ? values.data() : nullptr;
    Nogil nogil;
    std::vector<std::int32_t> ids;
    if (i32) {
        ids.assign(i32, i32 + nnz);  // the validator checks their range
    } else {
        ids.resize(static_cast<std::size_t>(nnz));
        for (py::ssize_t p = 0; p < nnz; ++p) {
            const std::int64_t c = i64[p];
            if (c < 0 || c >= n_cols)  // before narrowing; the validator re-checks the narrowed ids
                throw std::invalid_argument(name + ": column index " + std::to_string(c) + " at position " +
                                            std::to_string(p) + " out of range [0, " + std::to_string(n_cols) + ")");
            ids[p] = static_cast<std::int32_t>(c);
        }
    }
    return recforge::Csr(std::vector<std::int64_t>(ip, ip + n_rows + 1), std::move(ids),
                         dp ? std::vector<float>(dp, dp + nnz) : std::vector<float>(), n_cols, name.c_str());
}

// A read-only NumPy view of one of the Csr's arrays; its base is the Csr object, which keeps the
// memory alive and, exposing no buffer, stops numpy from making the view writeable again.
template <class T>
py::array view_of(const std::vector<T>& v, const py::object& owner) {
    // An empty vector gets its own empty array (array_t: py::array(dtype, {0}) mishandles the
    // dtype's reference count and yields a dtype, not an array).
    py::array a = v.empty() ? py::array(py::array_t<T>(py::ssize_t{0}))
                            : py::array(py::dtype::of<T>(), {static_cast<py::ssize_t>(v.size())},
                                        {static_cast<py::ssize_t>(sizeof(T))}, v.data(), owner);
    a.attr("setflags")(py::arg("write") = false);
    return a;
}

void bind_csr(py::module_& m) {
    py::class_<recforge::Csr> csr(m, "Csr",
                                  "A sparse matrix as every kernel takes it: int64 indptr, int32 indices, float32 data "
                                  "(or none), validated once when built; immutable.");
    init_checked(csr, &make_csr, py::arg("indptr"), py::arg("indices"), py::arg("data"), py::arg("shape"),
                 py::arg("name") = "csr",
                 "Copy and validate a CSR matrix (data may be None: pattern only); errors start with `name`.");
    csr.def_property_readonly(
           "shape", [](const recforge::Csr& c) { return py::make_tuple(c.n_rows(), c.n_cols()); }, "(n_rows, n_cols)")
        .def_property_readonly("nnz", &recforge::Csr::nnz, "Number of stored entries.")
        .def_property_readonly(
            "indptr", [](const py::object& self) { return view_of(self.cast<const recforge::Csr&>().indptr(), self); },
            "(n_rows + 1,) int64, read-only.")
        .def_property_readonly(
            "indices",
            [](const py::object& self) { return view_of(self.cast<const recforge::Csr&>().indices(), self); },
            "(nnz,) int32, read-only.")
        .def_property_readonly(
            "data",
            [](const py::object& self) -> py::object {
                const auto& c = self.cast<const recforge::Csr&>();
                return c.traits().values ? py::object(view_of(c.data(), self)) : py::none();
            },
            "(nnz,) float32, read-only; None for a pattern.")
        .def_property_readonly(
            "sorted", [](const recforge::Csr& c) { return c.traits().sorted; },
            "Column indices non-decreasing within each row.")
        .def_property_readonly(
            "unique", [](const recforge::Csr& c) { return c.traits().unique; },
            "Column indices strictly increasing within each row.")
        .def_property_readonly(
            "finite", [](const recforge::Csr& c) { return c.traits().finite; }, "Has values, all finite.")
        .def_property_readonly(
            "nonnegative", [](const recforge::Csr& c) { return c.traits().nonnegative; },
            "Has values, all finite and >= 0.")
        .def("__repr__", [](const recforge::Csr& c) {
            return "<recforge._core.Csr " + std::to_string(c.n_rows()) + " x " + std::to_string(c.n_cols()) +
                   ", nnz=" + std::to_string(c.nnz()) + (c.traits().values ? "" : ", pattern") + ">";
        });
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
    register_interrupt_translator();
    def_checked(
        m, "max_threads",
        [](const py::object& threads) {
            // Any Python int: one too large for int64 is out of range, not a pybind11 type error.
            if (PyBool_Check(threads.ptr()) || !PyLong_Check(threads.ptr()))
                throw py::type_error("threads must be an int (0 = all cores), got " +
                                     py::str(threads.get_type().attr("__name__")).cast<std::string>());
            int overflow = 0;
            const long long value = PyLong_AsLongLongAndOverflow(threads.ptr(), &overflow);
            if (overflow != 0 || value < 0)
                throw std::invalid_argument("threads must be in [0, " + std::to_string(recforge::thread_limit()) +
                                            "] (0 = all cores), got " + py::str(threads).cast<std::string>());
            return recforge::resolve_threads(value);
        },
        py::arg("threads") = 0,
        "Threads a kernel uses for `threads` in [0, thread_limit()] (0: all cores); ValueError otherwise.");
    m.def("thread_limit", &recforge::thread_limit, "The largest `threads` a kernel accepts: max(256, cores).");
    def_checked(
        m, "set_blas",
        [](py::object sgemm, py::object ssyrk, py::object spotrf, py::object spotrs) {
            recforge::blas::Routines r;
            r.sgemm = reinterpret_cast<recforge::blas::sgemm_fn>(capsule_pointer(
                sgemm, "sgemm",
                "void (char *, char *, int *, int *, int *, float *, float *, int *, float *, int *, float *, "
                "float *, int *)"));
            r.ssyrk = reinterpret_cast<recforge::blas::ssyrk_fn>(capsule_pointer(
                ssyrk, "ssyrk",
                "void (char *, char *, int *, int *, float *, float *, int *, float *, float *, int *)"));
            r.spotrf = reinterpret_cast<recforge::blas::spotrf_fn>(
                capsule_pointer(spotrf, "spotrf", "void (char *, int *, float *, int *, int *)"));
            r.spotrs = reinterpret_cast<recforge::blas::spotrs_fn>(capsule_pointer(
                spotrs, "spotrs", "void (char *, int *, int *, float *, int *, float *, int *, int *)"));
            recforge::blas::set_blas(r);
        },
        py::arg("sgemm"), py::arg("ssyrk"), py::arg("spotrf"), py::arg("spotrs"),
        "Install Fortran BLAS/LAPACK routines (PyCapsules from scipy.linalg.cython_*).");
    bind_csr(m);
    bind_als(m);
    bind_sgd(m);
    bind_mlp(m);
    bind_topk(m);
    bind_knn(m);
    bind_hybrid(m);
}
