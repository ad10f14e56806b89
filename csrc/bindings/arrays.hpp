// arrays.hpp — shared by every binding file: NumPy array aliases and the checks that keep a kernel
// inside its buffers. Each error names the argument: TypeError for a wrong dtype, ValueError
// (std::invalid_argument) for a wrong shape, layout or value. Raw pointers leave these helpers
// only to be used inside py::gil_scoped_release, while the arrays they came from stay referenced.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <utility>

namespace recforge::bindings {

namespace py = pybind11;

// Inputs a kernel only reads: C-contiguous, converted (a copy) from any other dtype or layout.
template <class T>
using in_arr = py::array_t<T, py::array::c_style | py::array::forcecast>;
using f32_in = in_arr<float>;
using i32_in = in_arr<std::int32_t>;
using i64_in = in_arr<std::int64_t>;

inline std::string shape_str(const py::array& a) {
    std::string s = "(";
    for (py::ssize_t d = 0; d < a.ndim(); ++d) s += (d ? ", " : "") + std::to_string(a.shape(d));
    return s + (a.ndim() == 1 ? ",)" : ")");
}

// `a` must have ndim == (cols < 0 ? 1 : 2) and shape (rows,) or (rows, cols); rows < 0 (or
// cols == kAny) accepts any length in that dimension.
constexpr py::ssize_t kAny = -2;
inline void check_shape(const py::array& a, const char* name, py::ssize_t rows, py::ssize_t cols = -1) {
    const int ndim = cols == -1 ? 1 : 2;
    bool ok = a.ndim() == ndim && (rows < 0 || a.shape(0) == rows);
    if (ok && ndim == 2) ok = cols == kAny || a.shape(1) == cols;
    if (ok) return;
    const auto dim = [](py::ssize_t d) { return d < 0 ? std::string("*") : std::to_string(d); };
    throw std::invalid_argument(std::string(name) + " must have shape (" + dim(rows) +
                                (ndim == 1 ? ",)" : ", " + dim(cols) + ")") + ", got " + shape_str(a));
}

// A buffer used in place (a kernel writes it, or reads a large table without a copy): exactly
// dtype T, C-contiguous, of the checked shape, and writeable when `write`. A converted copy would
// silently drop the updates, so nothing is converted.
template <class T>
T* inplace(const py::array& a, const char* name, py::ssize_t rows, py::ssize_t cols = -1, bool write = true) {
    if (!py::isinstance<py::array_t<T>>(a))
        throw py::type_error(std::string(name) + " must be a " + py::str(py::dtype::of<T>()).cast<std::string>() +
                             " numpy array, got dtype " + py::str(a.dtype()).cast<std::string>());
    if (!(a.flags() & py::array::c_style)) throw std::invalid_argument(std::string(name) + " must be C-contiguous");
    if (write && !a.writeable()) throw std::invalid_argument(std::string(name) + " must be writeable");
    check_shape(a, name, rows, cols);
    return static_cast<T*>(const_cast<void*>(a.data()));
}

// inplace() for an optional argument: None gives nullptr.
template <class T>
T* inplace_or_null(const py::object& a, const char* name, py::ssize_t rows) {
    if (a.is_none()) return nullptr;
    if (!py::isinstance<py::array>(a)) throw py::type_error(std::string(name) + " must be a numpy array or None");
    return inplace<T>(py::reinterpret_borrow<py::array>(a), name, rows);
}

// Every id in [0, limit) (ids of a kernel that indexes with them).
template <class T>
void check_ids(const T* ids, py::ssize_t n, std::int64_t limit, const char* name) {
    for (py::ssize_t k = 0; k < n; ++k)
        if (ids[k] < 0 || ids[k] >= limit)
            throw std::invalid_argument(std::string(name) + ": id " + std::to_string(ids[k]) + " at position " +
                                        std::to_string(k) + " outside [0, " + std::to_string(limit) + ")");
}

// Binds the C++ enum E once as _core.<name>; kernels take it typed (a string is a TypeError).
template <class E>
void bind_enum(py::module_& m, const char* name, const char* doc,
               std::initializer_list<std::pair<const char*, E>> values) {
    py::enum_<E> e(m, name, doc);
    for (const auto& [value_name, value] : values) e.value(value_name, value);
}

}  // namespace recforge::bindings
