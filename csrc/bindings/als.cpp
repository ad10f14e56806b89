// pybind11 layer over recforge/als.hpp: shape checks, then the kernel with the GIL released.
// The Python facade (recforge.models.als) validates arguments first; these checks are the last
// line of defence so that no input can make a kernel read or write out of bounds.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "recforge/als.hpp"

namespace py = pybind11;
namespace als = recforge::als;

namespace {

using f32_in = py::array_t<float, py::array::c_style | py::array::forcecast>;
using i64_in = py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>;
using i32_in = py::array_t<std::int32_t, py::array::c_style | py::array::forcecast>;
// Outputs are written in place: no conversion allowed (a converted copy would be lost).
using f32_out = py::array_t<float, py::array::c_style>;

struct Csr {
    i64_in indptr;
    i32_in indices;
    f32_in data;
    std::int64_t rows, cols;

    als::CsrView view() const { return {indptr.data(), indices.data(), data.data(), rows, cols}; }
    std::int64_t nnz() const { return data.size(); }
};

Csr make_csr(i64_in indptr, i32_in indices, f32_in data, std::int64_t cols) {
    if (indptr.ndim() != 1 || indices.ndim() != 1 || data.ndim() != 1)
        throw std::invalid_argument("indptr, indices and data must be 1-D");
    if (indptr.size() < 1) throw std::invalid_argument("indptr must have rows + 1 >= 1 entries");
    if (indices.size() != data.size()) throw std::invalid_argument("indices and data must have the same length");
    if (cols < 0) throw std::invalid_argument("cols must be >= 0");
    return {indptr, indices, data, static_cast<std::int64_t>(indptr.size()) - 1, cols};
}

void check_matrix(const py::array& a, std::int64_t rows, std::int64_t cols, const char* name) {
    if (a.ndim() != 2 || a.shape(0) != rows || a.shape(1) != cols)
        throw std::invalid_argument(std::string(name) + " must have shape (" + std::to_string(rows) + ", " +
                                    std::to_string(cols) + ")");
}

void check_vector(const py::array& a, std::int64_t n, const char* name) {
    if (a.ndim() != 1 || a.shape(0) != n)
        throw std::invalid_argument(std::string(name) + " must have shape (" + std::to_string(n) + ",)");
}

void check_writable(const py::array& a, const char* name) {
    if (!a.writeable()) throw std::invalid_argument(std::string(name) + " must be writable");
}

als::ImplicitOptions implicit_options(float alpha, float reg, float alpha0, float nu, const std::string& solver,
                                      int cg_steps, int threads) {
    als::ImplicitOptions o;
    o.alpha = alpha;
    o.reg = reg;
    o.alpha0 = alpha0;
    o.nu = nu;
    if (solver == "cg") o.solver = als::Solver::cg;
    else if (solver == "cholesky") o.solver = als::Solver::cholesky;
    else throw std::invalid_argument("solver must be 'cg' or 'cholesky', got '" + solver + "'");
    o.cg_steps = cg_steps;
    o.threads = threads;
    return o;
}

}  // namespace

void bind_als(py::module_& m) {
    m.def(
        "als_implicit_solve",
        [](i64_in indptr, i32_in indices, f32_in data, f32_in Y, f32_out X, float alpha, float reg, float alpha0,
           float nu, const std::string& solver, int cg_steps, int threads) {
            if (Y.ndim() != 2) throw std::invalid_argument("Y must be 2-D (cols, factors)");
            const Csr c = make_csr(indptr, indices, data, Y.shape(0));
            const std::int64_t f = Y.shape(1);
            check_matrix(X, c.rows, f, "X");
            check_writable(X, "X");
            const als::ImplicitOptions o = implicit_options(alpha, reg, alpha0, nu, solver, cg_steps, threads);
            const float* y = Y.data();
            float* x = X.mutable_data();
            py::gil_scoped_release nogil;
            als::implicit_solve(c.view(), c.nnz(), y, static_cast<int>(f), x, o);
        },
        py::arg("indptr"), py::arg("indices"), py::arg("data"), py::arg("Y"), py::arg("X"), py::arg("alpha"),
        py::arg("reg"), py::arg("alpha0"), py::arg("nu"), py::arg("solver"), py::arg("cg_steps"), py::arg("threads"),
        "Implicit ALS half-step: solve X (rows x f, in place) against Y (cols x f).");

    m.def(
        "als_explicit_solve",
        [](i64_in indptr, i32_in indices, f32_in data, f32_in Y, f32_in other_bias, f32_out X, f32_out own_bias,
           float reg, float global_mean, int threads) {
            if (Y.ndim() != 2) throw std::invalid_argument("Y must be 2-D (cols, factors)");
            const Csr c = make_csr(indptr, indices, data, Y.shape(0));
            const std::int64_t f = Y.shape(1);
            check_vector(other_bias, c.cols, "other_bias");
            check_matrix(X, c.rows, f, "X");
            check_vector(own_bias, c.rows, "own_bias");
            check_writable(X, "X");
            check_writable(own_bias, "own_bias");
            als::ExplicitOptions o;
            o.reg = reg;
            o.global_mean = global_mean;
            o.threads = threads;
            const float *y = Y.data(), *ob = other_bias.data();
            float *x = X.mutable_data(), *b = own_bias.mutable_data();
            py::gil_scoped_release nogil;
            als::explicit_solve(c.view(), c.nnz(), y, ob, static_cast<int>(f), x, b, o);
        },
        py::arg("indptr"), py::arg("indices"), py::arg("data"), py::arg("Y"), py::arg("other_bias"), py::arg("X"),
        py::arg("own_bias"), py::arg("reg"), py::arg("global_mean"), py::arg("threads"),
        "Explicit ALS half-step with biases: solve X (rows x f) and own_bias (rows) in place.");

    m.def(
        "als_implicit_loss",
        [](i64_in indptr, i32_in indices, f32_in data, f32_in X, f32_in Y, float alpha, float reg, float alpha0,
           float nu, int threads) {
            if (Y.ndim() != 2) throw std::invalid_argument("Y must be 2-D (cols, factors)");
            const Csr c = make_csr(indptr, indices, data, Y.shape(0));
            const std::int64_t f = Y.shape(1);
            check_matrix(X, c.rows, f, "X");
            const als::ImplicitOptions o = implicit_options(alpha, reg, alpha0, nu, "cg", 1, threads);
            const float *x = X.data(), *y = Y.data();
            py::gil_scoped_release nogil;
            return als::implicit_loss(c.view(), c.nnz(), x, y, static_cast<int>(f), o);
        },
        py::arg("indptr"), py::arg("indices"), py::arg("data"), py::arg("X"), py::arg("Y"), py::arg("alpha"),
        py::arg("reg"), py::arg("alpha0"), py::arg("nu"), py::arg("threads"),
        "The rows' share of the implicit ALS objective (data term and their regularisation).");

    m.def(
        "als_explicit_sse",
        [](i64_in indptr, i32_in indices, f32_in data, f32_in X, f32_in own_bias, f32_in Y, f32_in other_bias,
           float global_mean, int threads) {
            if (Y.ndim() != 2) throw std::invalid_argument("Y must be 2-D (cols, factors)");
            const Csr c = make_csr(indptr, indices, data, Y.shape(0));
            const std::int64_t f = Y.shape(1);
            check_matrix(X, c.rows, f, "X");
            check_vector(own_bias, c.rows, "own_bias");
            check_vector(other_bias, c.cols, "other_bias");
            const float *x = X.data(), *ub = own_bias.data(), *y = Y.data(), *ib = other_bias.data();
            py::gil_scoped_release nogil;
            return als::explicit_sse(c.view(), c.nnz(), x, ub, y, ib, static_cast<int>(f), global_mean, threads);
        },
        py::arg("indptr"), py::arg("indices"), py::arg("data"), py::arg("X"), py::arg("own_bias"), py::arg("Y"),
        py::arg("other_bias"), py::arg("global_mean"), py::arg("threads"),
        "Sum of squared errors of the explicit model over the stored ratings.");
}
