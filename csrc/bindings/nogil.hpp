// nogil.hpp — how every binding runs a kernel: GIL released, Ctrl-C honoured.
//
// `Nogil nogil;` (in place of py::gil_scoped_release) installs a recforge::StopToken for the call
// and releases the GIL. The kernel's calling thread polls the token between blocks of work (at
// most every 50 ms); the poll takes the GIL for a moment and runs Python's pending signal
// handlers (PyErr_CheckSignals, which does something only on the main thread). When a handler
// raises (KeyboardInterrupt from Ctrl-C), the exception is kept, the kernel stops at its next
// block and throws recforge::Interrupted, and the translator registered by
// register_interrupt_translator raises the kept exception in Python.
#pragma once

#include <pybind11/pybind11.h>

#include <exception>

#include "recforge/interrupt.hpp"

namespace recforge::bindings {

namespace py = pybind11;

namespace detail {

// The exception a signal handler raised during a kernel call on this thread (owned references).
struct PendingError {
    PyObject* type = nullptr;
    PyObject* value = nullptr;
    PyObject* traceback = nullptr;
};

inline PendingError& pending_error() {
    static thread_local PendingError pending;
    return pending;
}

inline bool poll_python_signals(void*) {
    py::gil_scoped_acquire gil;
    if (PyErr_CheckSignals() == 0) return false;
    PendingError& p = pending_error();
    if (p.type == nullptr) PyErr_Fetch(&p.type, &p.value, &p.traceback);
    PyErr_Clear();
    return true;
}

}  // namespace detail

// Raises (with the GIL held) the exception kept by the last poll, or KeyboardInterrupt.
inline void raise_pending_interrupt() {
    detail::PendingError& p = detail::pending_error();
    if (p.type != nullptr) {
        PyErr_Restore(p.type, p.value, p.traceback);
        p = detail::PendingError{};
    } else {
        PyErr_SetNone(PyExc_KeyboardInterrupt);
    }
}

// The id of the interpreter's main thread, the only one where Python runs signal handlers.
inline unsigned long& main_thread_id() {
    static unsigned long id = 0;
    return id;
}

class Nogil {
public:
    Nogil() = default;

private:
    // Drops what an earlier call kept but did not raise (it ended with another error); GIL held.
    struct DropStale {
        DropStale() {
            detail::PendingError& p = detail::pending_error();
            Py_XDECREF(p.type);
            Py_XDECREF(p.value);
            Py_XDECREF(p.traceback);
            p = detail::PendingError{};
        }
    };
    DropStale drop_stale_;
    // Polls only on the main thread: elsewhere PyErr_CheckSignals does nothing, and taking the GIL
    // for it would only slow the other threads down. Declared before release_: outlives the GIL release.
    recforge::StopToken stop_{PyThread_get_thread_ident() == main_thread_id() ? &detail::poll_python_signals : nullptr,
                              nullptr};
    py::gil_scoped_release release_;
};

// recforge::Interrupted -> the kept Python exception (KeyboardInterrupt); once, in PYBIND11_MODULE
// (which also notes the main thread).
inline void register_interrupt_translator() {
    main_thread_id() = py::module_::import("threading").attr("main_thread")().attr("ident").cast<unsigned long>();
    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const recforge::Interrupted&) {
            raise_pending_interrupt();
        }
    });
}

}  // namespace recforge::bindings
