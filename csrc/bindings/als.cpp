// pybind11 layer over recforge/als.hpp. The matrix arrives as a validated Csr (its traits are
// checked here in O(1)); factor shapes and dtypes are checked, then the kernel runs with the GIL
// released. The Python layer (recforge._ops.cpu) has validated everything before; these checks
// keep any input from making a kernel read or write out of bounds.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <cstdint>
#include <optional>

#include "arrays.hpp"
#include "checked.hpp"
#include "nogil.hpp"
#include "recforge/als.hpp"
#include "recforge/csr.hpp"

namespace als = recforge::als;
using namespace recforge::bindings;

namespace {

// The factor count of Y (m.n_cols x f), checked.
int factors_of(const f32_in& Y, const recforge::Csr& m) {
    check_shape(Y, "Y", m.n_cols(), kAny);
    if (Y.shape(1) < 1 || Y.shape(1) > 1 << 20) throw std::invalid_argument("Y must have 1 to 2^20 columns");
    return static_cast<int>(Y.shape(1));
}

als::ImplicitOptions implicit_options(float alpha, float reg, float alpha0, float nu, als::RegScaling scaling,
                                      als::Solver solver, int cg_steps, Threads threads) {
    if (solver == als::Solver::cg && cg_steps < 1) throw std::invalid_argument("cg_steps must be >= 1");
    return als::ImplicitOptions{alpha, reg, alpha0, nu, scaling, solver, cg_steps, threads};  // declaration order
}

}  // namespace

void bind_als(py::module_& m) {
    bind_enum<als::Solver>(m, "Solver", "Implicit ALS row solver: cg (warm-started CG steps) or cholesky (exact).",
                           {{"cg", als::Solver::cg}, {"cholesky", als::Solver::cholesky}});
    bind_enum<als::RegScaling>(
        m, "RegScaling",
        "What the implicit regularisation exponent nu scales: all_pairs (n_u + alpha0 * n_cols) or observed (n_u).",
        {{"all_pairs", als::RegScaling::all_pairs}, {"observed", als::RegScaling::observed}});

    def_checked(
        m, "als_gram",
        [](const f32_in& Y, Threads threads) {
            check_shape(Y, "Y", -1, kAny);
            if (Y.shape(1) < 1 || Y.shape(1) > 1 << 20) throw std::invalid_argument("Y must have 1 to 2^20 columns");
            const int f = static_cast<int>(Y.shape(1));
            py::array_t<float> G({py::ssize_t{f}, py::ssize_t{f}});
            const float* y = Y.data();
            float* g = G.mutable_data();
            const std::int64_t n = Y.shape(0);
            {
                Nogil nogil;
                als::gram(y, n, f, g, threads);
            }
            return G;
        },
        py::arg("Y"), py::arg("threads"),
        "YᵀY (f, f) float32 of Y (n, f): the Gram matrix the implicit half-step takes.");

    def_checked(
        m, "als_implicit_solve",
        [](const recforge::Csr& mat, const f32_in& Y, const f32_in& YtY, const py::array& X, float alpha,
           float regularization, float alpha0, float nu, als::RegScaling scaling, als::Solver solver, int cg_steps,
           Threads threads, const std::optional<f32_in>& prior, float prior_weight) {
            recforge::require_csr(mat.traits(), recforge::kConfidences, "m");
            const int f = factors_of(Y, mat);
            check_shape(YtY, "YtY", f, f);
            float* x = inplace<float>(X, "X", mat.n_rows(), f);
            const als::ImplicitOptions o = implicit_options(alpha, regularization, alpha0, nu, scaling, solver,
                                                            cg_steps, threads);
            if (!(prior_weight >= 0.0f) || !std::isfinite(prior_weight))
                throw std::invalid_argument("prior_weight must be finite and >= 0");
            const float* p = nullptr;
            if (prior) {
                check_shape(*prior, "prior", mat.n_rows(), f);
                p = prior->data();
                for (std::int64_t k = 0; k < mat.n_rows() * f; ++k)
                    if (!std::isfinite(p[k])) throw std::invalid_argument("prior must hold finite values");
            }
            const float *y = Y.data(), *g = YtY.data();
            Nogil nogil;
            als::implicit_solve(mat.view(), y, g, f, x, o, p, prior_weight);
        },
        py::arg("m"), py::arg("Y"), py::arg("YtY"), py::arg("X"), py::arg("alpha"), py::arg("regularization"),
        py::arg("alpha0"), py::arg("nu"), py::arg("scaling"), py::arg("solver"), py::arg("cg_steps"),
        py::arg("threads"), py::arg("prior") = py::none(), py::arg("prior_weight") = 0.0f,
        "Implicit ALS half-step: solve X (rows of m, f) in place against Y (columns of m, f) and YtY = als_gram(Y); "
        "with prior (rows of m, f) each row is pulled toward its prior row by prior_weight instead of toward 0.");

    def_checked(
        m, "als_explicit_solve",
        [](const recforge::Csr& mat, const f32_in& Y, const f32_in& other_bias, const py::array& X,
           const py::array& own_bias, float regularization, float global_mean, Threads threads) {
            recforge::require_csr(mat.traits(), recforge::kFiniteValues, "m");
            const int f = factors_of(Y, mat);
            check_shape(other_bias, "other_bias", mat.n_cols());
            float* x = inplace<float>(X, "X", mat.n_rows(), f);
            float* b = inplace<float>(own_bias, "own_bias", mat.n_rows());
            const als::ExplicitOptions o{regularization, global_mean, threads};
            const float *y = Y.data(), *ob = other_bias.data();
            Nogil nogil;
            als::explicit_solve(mat.view(), y, ob, f, x, b, o);
        },
        py::arg("m"), py::arg("Y"), py::arg("other_bias"), py::arg("X"), py::arg("own_bias"), py::arg("regularization"),
        py::arg("global_mean"), py::arg("threads"),
        "Explicit ALS half-step with biases: solve X (rows of m, f) and own_bias (rows of m) in place.");

    def_checked(
        m, "als_implicit_loss",
        [](const recforge::Csr& mat, const f32_in& X, const f32_in& Y, const f32_in& YtY, float alpha,
           float regularization, float alpha0, float nu, als::RegScaling scaling, Threads threads) {
            recforge::require_csr(mat.traits(), recforge::kConfidences, "m");
            const int f = factors_of(Y, mat);
            check_shape(YtY, "YtY", f, f);
            check_shape(X, "X", mat.n_rows(), f);
            const als::ImplicitOptions o = implicit_options(alpha, regularization, alpha0, nu, scaling, als::Solver::cg,
                                                            1, threads);
            const float *x = X.data(), *y = Y.data(), *g = YtY.data();
            Nogil nogil;
            return als::implicit_loss(mat.view(), x, y, g, f, o);
        },
        py::arg("m"), py::arg("X"), py::arg("Y"), py::arg("YtY"), py::arg("alpha"), py::arg("regularization"),
        py::arg("alpha0"), py::arg("nu"), py::arg("scaling"), py::arg("threads"),
        "The rows' share of the implicit ALS objective (data term and their regularisation).");

    def_checked(
        m, "als_explicit_sse",
        [](const recforge::Csr& mat, const f32_in& X, const f32_in& own_bias, const f32_in& Y, const f32_in& other_bias,
           float global_mean, Threads threads) {
            recforge::require_csr(mat.traits(), recforge::kFiniteValues, "m");
            const int f = factors_of(Y, mat);
            check_shape(X, "X", mat.n_rows(), f);
            check_shape(own_bias, "own_bias", mat.n_rows());
            check_shape(other_bias, "other_bias", mat.n_cols());
            const float *x = X.data(), *ub = own_bias.data(), *y = Y.data(), *ib = other_bias.data();
            Nogil nogil;
            return als::explicit_sse(mat.view(), x, ub, y, ib, f, global_mean, threads);
        },
        py::arg("m"), py::arg("X"), py::arg("own_bias"), py::arg("Y"), py::arg("other_bias"), py::arg("global_mean"),
        py::arg("threads"), "Sum of squared errors of the explicit model over the stored ratings of m.");
}
