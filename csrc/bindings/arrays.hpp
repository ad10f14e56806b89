// arrays.hpp — shared by every binding file: NumPy array aliases and the checks that keep a kernel
// inside its buffers. Each error names the argument: TypeError for a wrong dtype, ValueError
// (std::invalid_argument) for a wrong shape, layout or value. Raw pointers leave these helpers
// only to be used inside py::gil_scoped_release, while the arrays they came from stay referenced.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <cstdio>
#include <initializer_list>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>

#include "recforge/parallel.hpp"

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>  // sysconf
#endif

namespace recforge::bindings {

namespace py = pybind11;

// A kernel's `threads` argument: any Python int in [0, thread_limit()] (0 = all cores). Its caster
// (below) raises a TypeError / ValueError naming `threads` for anything else, where pybind11's own
// int caster would answer "incompatible function arguments". Converts to the int kernels take.
struct Threads {
    int value = 0;
    operator int() const { return value; }  // NOLINT(google-explicit-constructor): used as the int it is
};

// NumPy's "aligned" flag: each element at an address that is a multiple of its size. Buffers taken
// from a serialised message (a Dask worker's unpickled arrays) can be misaligned, and a kernel's
// float loads from them are undefined behaviour (UBSan stops on them).
constexpr int kAligned = py::detail::npy_api::NPY_ARRAY_ALIGNED_;

// Inputs a kernel only reads: C-contiguous and aligned, converted (a copy) from any other dtype or
// layout.
template <class T>
using in_arr = py::array_t<T, py::array::c_style | py::array::forcecast | kAligned>;
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
    if (!(a.flags() & kAligned))
        throw std::invalid_argument(std::string(name) + " must be aligned (numpy flags.aligned; np.require(a, " +
                                    "requirements='CA') makes an aligned copy)");
    if (write && !a.writeable()) throw std::invalid_argument(std::string(name) + " must be writeable");
    check_shape(a, name, rows, cols);
    return static_cast<T*>(const_cast<void*>(a.data()));
}

// inplace() for a 2-D table (rows, cols) whose rows may lie further apart than `cols` (a view of
// some columns of a wider C-contiguous array): each row contiguous, consecutive rows `stride`
// elements apart (set on return; cols for a C-contiguous table).
template <class T>
T* inplace_rows(const py::array& a, const char* name, py::ssize_t rows, py::ssize_t cols, py::ssize_t& stride) {
    if (!py::isinstance<py::array_t<T>>(a))
        throw py::type_error(std::string(name) + " must be a " + py::str(py::dtype::of<T>()).cast<std::string>() +
                             " numpy array, got dtype " + py::str(a.dtype()).cast<std::string>());
    check_shape(a, name, rows, cols);
    const auto size = static_cast<py::ssize_t>(sizeof(T));
    const bool rows_contiguous = cols <= 1 || a.strides(1) == size;
    stride = rows <= 1 ? cols : a.strides(0) / size;
    if (!rows_contiguous || (rows > 1 && (a.strides(0) % size != 0 || stride < cols)))
        throw std::invalid_argument(std::string(name) +
                                    " must have contiguous rows in increasing order (C-contiguous, or a view of the "
                                    "first or last columns of a C-contiguous array)");
    if (!(a.flags() & kAligned))
        throw std::invalid_argument(std::string(name) + " must be aligned (numpy flags.aligned; np.require(a, " +
                                    "requirements='CA') makes an aligned copy)");
    if (!a.writeable()) throw std::invalid_argument(std::string(name) + " must be writeable");
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

// Ids as a C-contiguous array of T (int32 or int64): `ids` must hold integers (any integer dtype; an
// empty array may have any dtype), each representable in T. A float array is a TypeError (1.5 is
// no id) and a value that would wrap in T a ValueError (2^32 + 1 is not 1), instead of a silent
// conversion.
template <class T>
in_arr<T> id_array(const py::object& ids, const std::string& name) {
    const py::array a = py::array::ensure(ids);  // lists too, as NumPy reads them
    if (!a) throw py::type_error(name + " must be an integer array");
    const char kind = a.dtype().kind();
    if (a.size() != 0 && kind != 'i' && kind != 'u')
        throw py::type_error(name + " must be an integer array, got dtype " + py::str(a.dtype()).cast<std::string>());
    const auto out_of_range = [&](const std::string& value, py::ssize_t k) {
        return std::invalid_argument(name + ": id " + value + " at position " + std::to_string(k) + " does not fit " +
                                     (sizeof(T) == 4 ? "int32" : "int64"));
    };
    if (kind == 'u' && a.itemsize() == 8) {  // uint64 above INT64_MAX would wrap to a negative id
        const auto u = in_arr<std::uint64_t>::ensure(a);
        for (py::ssize_t k = 0; k < u.size(); ++k)
            if (u.data()[k] > static_cast<std::uint64_t>(INT64_MAX)) throw out_of_range(std::to_string(u.data()[k]), k);
    }
    const auto width = static_cast<py::ssize_t>(sizeof(T));
    const bool may_wrap = sizeof(T) < 8 && (a.itemsize() > width || (kind == 'u' && a.itemsize() == width));
    if (may_wrap) {
        const auto wide = in_arr<std::int64_t>::ensure(a);
        for (py::ssize_t k = 0; k < wide.size(); ++k) {
            const std::int64_t v = wide.data()[k];
            if (v < std::numeric_limits<T>::min() || v > std::numeric_limits<T>::max())
                throw out_of_range(std::to_string(v), k);
        }
    }
    auto out = in_arr<T>::ensure(a);
    if (!out) throw py::type_error(name + " cannot be read as integers");
    return out;
}

// Refuses up front an output of `bytes` bytes larger than this machine's memory: a ValueError
// saying what asks for it (`what`, e.g. "negatives=1000000000 (an epoch of 1.6e11 samples)"), where
// the allocation would raise a MemoryError naming nothing. The limit is the physical memory (1 TiB
// where the platform does not say), as recforge._validation.check_memory has it.
inline void check_output_memory(double bytes, const std::string& what) {
    double limit = 1099511627776.0;
#if defined(_SC_PHYS_PAGES) && defined(_SC_PAGE_SIZE)
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
    if (pages > 0 && page > 0) limit = static_cast<double>(pages) * static_cast<double>(page);
#endif
    if (bytes <= limit) return;
    const auto gib = [](double b) {
        char text[32];
        std::snprintf(text, sizeof text, "%.3g GiB", b / 1073741824.0);
        return std::string(text);
    };
    throw std::invalid_argument(what + " needs " + gib(bytes) + " of memory, more than this machine has (" +
                                gib(limit) + ")");
}

// Binds the C++ enum E once as _core.<name>; kernels take it typed (a string is a TypeError).
template <class E>
void bind_enum(py::module_& m, const char* name, const char* doc,
               std::initializer_list<std::pair<const char*, E>> values) {
    py::enum_<E> e(m, name, doc);
    for (const auto& [value_name, value] : values) e.value(value_name, value);
}

}  // namespace recforge::bindings

namespace pybind11::detail {

template <>
struct type_caster<recforge::bindings::Threads> {
    PYBIND11_TYPE_CASTER(recforge::bindings::Threads, const_name("int"));

    bool load(handle src, bool) {
        if (PyBool_Check(src.ptr()) || !PyIndex_Check(src.ptr()))  // ints and NumPy integers
            throw type_error("threads must be an int (0 = all cores), got " +
                             str(src.get_type().attr("__name__")).cast<std::string>());
        const object index = reinterpret_steal<object>(PyNumber_Index(src.ptr()));
        if (!index) throw error_already_set();
        int overflow = 0;
        const long long v = PyLong_AsLongLongAndOverflow(index.ptr(), &overflow);
        const int limit = recforge::thread_limit();
        if (overflow != 0 || v < 0 || v > limit)
            throw std::invalid_argument("threads must be in [0, " + std::to_string(limit) + "] (0 = all cores), got " +
                                        str(src).cast<std::string>());
        value.value = static_cast<int>(v);
        return true;
    }

    static handle cast(const recforge::bindings::Threads& t, return_value_policy, handle) {
        return PyLong_FromLong(t.value);
    }
};

}  // namespace pybind11::detail
