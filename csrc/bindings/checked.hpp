// checked.hpp — how every _core function and constructor is bound: def_checked / init_checked in
// place of m.def / cls.def(py::init(...)), with the same py::arg list.
//
// pybind11 converts all arguments before the call and, when one does not convert, raises
// "incompatible function arguments" listing the whole signature, naming nothing. Here pybind11
// hands each argument over untouched (Arg<T> accepts any object), and the wrapper converts them
// in order, each with the name from its py::arg: a TypeError ("lr must be a real number, got
// str") or ValueError ("negatives must be an int in [-2147483648, 2147483647], got 2147483648") names the
// argument. The conversions are stricter than pybind11's where its own would pass garbage on:
// ints take only integers (no bool, no float scalar truncated), reals only finite real numbers
// that fit the C++ type (no bool, no NaN/inf, no double overflowing a float), bools only bool or
// numpy.bool_ (not None or 2). Arg<T> spells itself as T in signatures, so docstrings and the
// generated _core.pyi are unchanged. The cost is one conversion per argument, as before.
#pragma once

#include <pybind11/pybind11.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

namespace recforge::bindings {

namespace py = pybind11;

// A parameter pybind11 passes through unconverted (the wrapper converts it, by name).
template <class T>
struct Arg {
    py::handle handle;
};

namespace checked_detail {

inline std::string type_name(py::handle h) { return py::str(py::type::handle_of(h).attr("__name__")); }

// str(h), shortened (an int of a thousand digits is not worth printing whole).
inline std::string shown(py::handle h) {
    std::string s = py::str(h);
    return s.size() <= 40 ? s : s.substr(0, 20) + "... (" + std::to_string(s.size()) + " characters)";
}

// bool or numpy.bool_ (both convert to an int or a real without complaint in Python).
inline bool is_bool(py::handle h) { return py::detail::make_caster<bool>().load(h, false); }

// `h` as a Python int, or a TypeError: integers only (ints, NumPy integers), not bool.
inline py::int_ python_int(py::handle h, const char* name) {
    if (!PyIndex_Check(h.ptr()) || is_bool(h))
        throw py::type_error(std::string(name) + " must be an int, got " + type_name(h));
    const auto v = py::reinterpret_steal<py::int_>(PyNumber_Index(h.ptr()));
    if (!v) throw py::error_already_set();
    return v;
}

template <class T>
T to_integer(py::handle h, const char* name) {
    const py::int_ v = python_int(h, name);
    int overflow = 0;
    const long long x = PyLong_AsLongLongAndOverflow(v.ptr(), &overflow);
    using Limits = std::numeric_limits<T>;
    if (overflow == 0 && x >= static_cast<long long>(Limits::min()) &&
        (x < 0 || static_cast<unsigned long long>(x) <= static_cast<unsigned long long>(Limits::max())))
        return static_cast<T>(x);
    if (std::is_same<T, std::uint64_t>::value && overflow > 0) {  // above INT64_MAX: fits a uint64 or not
        const unsigned long long u = PyLong_AsUnsignedLongLong(v.ptr());
        if (!PyErr_Occurred()) return static_cast<T>(u);
        PyErr_Clear();
    }
    throw std::invalid_argument(std::string(name) + " must be an int in [" + std::to_string(Limits::min()) + ", " +
                                std::to_string(Limits::max()) + "], got " + shown(v));
}

// A real number (numbers.Real: ints, floats, NumPy scalars; not bool), finite and within T.
template <class T>
T to_real(py::handle h, const char* name) {
    const bool plain = PyFloat_Check(h.ptr()) || (PyLong_Check(h.ptr()) && !PyBool_Check(h.ptr()));
    if (!plain) {
        static const py::handle real = py::object(py::module_::import("numbers").attr("Real")).release();  // kept
        if (is_bool(h) || !py::isinstance(h, real))
            throw py::type_error(std::string(name) + " must be a real number, got " + type_name(h));
    }
    const double x = PyFloat_AsDouble(h.ptr());  // an int too large for a double: OverflowError
    if (x == -1.0 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError)) throw py::error_already_set();
        PyErr_Clear();
    } else if (std::isfinite(x) && std::fabs(x) <= static_cast<double>(std::numeric_limits<T>::max())) {
        return static_cast<T>(x);
    }
    throw std::invalid_argument(std::string(name) + " must be a finite number" +
                                (std::is_same<T, float>::value ? " within float32 (|x| <= 3.4e38)" : "") + ", got " +
                                shown(h));
}

// The Python type bound to the C++ type T (a class or enum of this module), or null.
template <class T>
PyTypeObject* bound_type() {
    const py::detail::type_info* info = py::detail::get_type_info(typeid(T));
    return info ? info->type : nullptr;
}

// The conversion of one argument: pybind11's caster, with a message naming the argument when it
// fails (and None refused for a bound class or enum passed by value or reference, which pybind11
// would load as a null pointer).
template <class T, class = void>
struct Loader {
    py::detail::make_caster<T> caster;
    void load(py::handle h, const char* name) {
        using Plain = py::detail::intrinsic_t<T>;
        const bool null_object = !std::is_pointer<T>::value && h.is_none() && bound_type<Plain>() != nullptr;
        if (null_object || !caster.load(h, true)) {
            PyErr_Clear();
            throw py::type_error(std::string(name) + " must be " + expected() + ", got " + type_name(h));
        }
    }
    decltype(auto) get() { return py::detail::cast_op<T>(std::move(caster)); }

    static std::string expected() {
        using Plain = py::detail::intrinsic_t<T>;
        if (PyTypeObject* type = bound_type<Plain>()) {
            const auto t = py::reinterpret_borrow<py::object>(reinterpret_cast<PyObject*>(type));
            return "a " + std::string(py::str(t.attr("__module__"))) + "." +
                   std::string(py::str(t.attr("__qualname__"))) + (std::is_pointer<T>::value ? " or None" : "");
        }
        if constexpr (std::is_base_of<py::array, Plain>::value && !std::is_same<Plain, py::array>::value)
            return "a numpy array (or a nested list) of numbers";  // array_t: converted
        return "a " + std::string(py::detail::make_caster<T>::name.text);  // numpy.ndarray, str, ...
    }
};

template <class T>
struct Loader<T, std::enable_if_t<std::is_integral<T>::value && !std::is_same<T, bool>::value>> {
    T value{};
    void load(py::handle h, const char* name) { value = to_integer<T>(h, name); }
    T get() { return value; }
};

template <class T>
struct Loader<T, std::enable_if_t<std::is_floating_point<T>::value>> {
    T value{};
    void load(py::handle h, const char* name) { value = to_real<T>(h, name); }
    T get() { return value; }
};

template <>
struct Loader<bool> {
    bool value = false;
    void load(py::handle h, const char* name) {
        if (!is_bool(h)) throw py::type_error(std::string(name) + " must be a bool, got " + type_name(h));
        value = PyObject_IsTrue(h.ptr()) == 1;
    }
    bool get() { return value; }
};

template <class T>
struct Loader<std::vector<T>, std::enable_if_t<std::is_integral<T>::value && !std::is_same<T, bool>::value>> {
    std::vector<T> value;
    void load(py::handle h, const char* name) {
        if (!PyList_Check(h.ptr()) && !PyTuple_Check(h.ptr()))
            throw py::type_error(std::string(name) + " must be a list of ints, got " + type_name(h));
        for (const py::handle v : py::reinterpret_borrow<py::sequence>(h)) {
            const std::string item = std::string(name) + "[" + std::to_string(value.size()) + "]";
            value.push_back(to_integer<T>(v, item.c_str()));
        }
    }
    std::vector<T> get() { return std::move(value); }
};
template <class T>
struct Loader<const std::vector<T>&> : Loader<std::vector<T>> {};

template <class T>
struct Signature;
template <class R, class... Args>
struct Signature<R(Args...)> {
    static constexpr std::size_t arity = sizeof...(Args);
    // `f` taking Arg<Args>...: converts each argument with its name, then calls f.
    template <class F, std::size_t... I>
    static auto wrap(F f, std::vector<const char*> names, std::index_sequence<I...> /*unused*/) {
        return [f = std::move(f), names = std::move(names)](Arg<Args>... args) -> R {
            std::tuple<Loader<Args>...> loaders;
            (std::get<I>(loaders).load(args.handle, names[I]), ...);  // in order: the first bad one is named
            return f(std::get<I>(loaders).get()...);
        };
    }
};

template <class Extra>
void add_name(std::vector<const char*>& names, const Extra& extra) {
    if constexpr (std::is_base_of<py::arg, Extra>::value) names.push_back(extra.name);
}

// `f` with its arguments converted by name: the names of the py::arg extras, in order, after
// "self" for a method (one argument more than names).
template <class F, class... Extra>
auto checked(F f, const Extra&... extra) {
    using Sig = Signature<py::detail::function_signature_t<F>>;
    constexpr std::size_t named = (std::size_t{std::is_base_of<py::arg, Extra>::value} + ... + 0);
    static_assert(named == Sig::arity || named + 1 == Sig::arity, "name every argument with py::arg");
    std::vector<const char*> names;
    if (named < Sig::arity) names.push_back("self");
    (add_name(names, extra), ...);
    return Sig::wrap(std::move(f), std::move(names), std::make_index_sequence<Sig::arity>{});
}

}  // namespace checked_detail

// scope.def(name, f, extra...) (a module's function or a class's method) with every argument
// converted by name; extra names each argument with py::arg, in order.
template <class Scope, class F, class... Extra>
void def_checked(Scope& scope, const char* name, F f, const Extra&... extra) {
    scope.def(name, checked_detail::checked(std::move(f), extra...), extra...);
}

// cls.def(py::init(factory), extra...) likewise.
template <class Class, class F, class... Extra>
void init_checked(Class& cls, F factory, const Extra&... extra) {
    cls.def(py::init(checked_detail::checked(std::move(factory), extra...)), extra...);
}

}  // namespace recforge::bindings

namespace pybind11::detail {

// Arg<T> takes any object (the wrapper converts it) and is spelled as T in signatures.
template <class T>
struct type_caster<recforge::bindings::Arg<T>> {
    PYBIND11_TYPE_CASTER(recforge::bindings::Arg<T>, make_caster<T>::name);
    bool load(handle src, bool) {
        value.handle = src;
        return true;
    }
};

}  // namespace pybind11::detail
