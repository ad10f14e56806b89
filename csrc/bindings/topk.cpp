// Bindings for recforge/topk.hpp. Python (recforge/topk.py) validates and canonicalises first;
// shapes are re-checked here and the core re-checks values, so no input can read out of bounds.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "recforge/topk.hpp"

namespace py = pybind11;

namespace {

using f32_in = py::array_t<float, py::array::c_style | py::array::forcecast>;
using i64_in = py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>;

void expect(bool ok, const std::string& what) {
    if (!ok) throw std::invalid_argument(what);
}

py::tuple topk_f32(f32_in queries, f32_in items, std::int64_t k, py::object exclude_indptr,
                   py::object exclude_indices, py::object subset, py::object candidates, int threads,
                   std::int64_t block_queries, std::int64_t block_items, const std::string& kernel) {
    expect(queries.ndim() == 2, "queries must be 2-D, got ndim=" + std::to_string(queries.ndim()));
    expect(items.ndim() == 2, "items must be 2-D, got ndim=" + std::to_string(items.ndim()));
    const std::int64_t n = queries.shape(0), f = queries.shape(1), m = items.shape(0);
    expect(items.shape(1) == f, "queries and items must have the same number of factors");
    expect(k >= 1 && k <= m, "k must be in [1, " + std::to_string(m) + "], got " + std::to_string(k));

    recforge::TopkExclude ex;
    i64_in indptr, indices;
    if (!exclude_indptr.is_none()) {
        indptr = exclude_indptr.cast<i64_in>();
        indices = exclude_indices.cast<i64_in>();
        expect(indptr.ndim() == 1 && indptr.shape(0) == n + 1, "exclude indptr must have n + 1 entries");
        expect(indices.ndim() == 1, "exclude indices must be 1-D");
        ex.indptr = indptr.data();
        ex.indices = indices.data();
        ex.nnz = indices.shape(0);
    }
    i64_in sub, cand;
    if (!subset.is_none()) {
        sub = subset.cast<i64_in>();
        expect(sub.ndim() == 1, "subset must be 1-D");
    }
    if (!candidates.is_none()) {
        cand = candidates.cast<i64_in>();
        expect(cand.ndim() == 2 && cand.shape(0) == n, "candidates must be 2-D (n, c)");
        expect(subset.is_none(), "give either subset or candidates, not both");
    }

    recforge::TopkOptions options{block_queries, block_items, recforge::TopkKernel::automatic};
    if (kernel == "blas")
        options.kernel = recforge::TopkKernel::blas;
    else if (kernel == "fused")
        options.kernel = recforge::TopkKernel::fused;
    else
        expect(kernel == "auto", "kernel must be 'auto', 'blas' or 'fused', got '" + kernel + "'");

    py::array_t<std::int64_t> ids({n, k});
    py::array_t<float> scores({n, k});
    const float* q = queries.data();
    const float* it = items.data();
    std::int64_t* ip = ids.mutable_data();
    float* sp = scores.mutable_data();
    const std::int64_t* subp = subset.is_none() ? nullptr : sub.data();
    const std::int64_t n_sub = subset.is_none() ? 0 : sub.shape(0);
    const std::int64_t* candp = candidates.is_none() ? nullptr : cand.data();
    const std::int64_t c = candidates.is_none() ? 0 : cand.shape(1);
    {
        py::gil_scoped_release nogil;  // raw pointers only from here on
        if (candp)
            recforge::topk_candidates(q, n, it, m, f, k, candp, c, ex, ip, sp, threads);
        else
            recforge::topk_dense(q, n, it, m, f, k, subp, n_sub, ex, ip, sp, threads, options);
    }
    return py::make_tuple(ids, scores);
}

}  // namespace

void bind_topk(py::module_& m) {
    m.def("topk_f32", &topk_f32, py::arg("queries"), py::arg("items"), py::arg("k"),
          py::arg("exclude_indptr") = py::none(), py::arg("exclude_indices") = py::none(),
          py::arg("subset") = py::none(), py::arg("candidates") = py::none(), py::arg("threads") = 0,
          py::arg("block_queries") = 0, py::arg("block_items") = 0, py::arg("kernel") = "auto",
          "Exact top-k by inner product (use recforge.topk). Returns (ids int64 (n, k), scores float32 (n, k)).\n"
          "block_queries/block_items/kernel ('auto' | 'blas' | 'fused') are tuning knobs for tests and benchmarks.");
    m.def("topk_has_fused", [] { return recforge::topk_has_fused(); },
          "Whether the fused (AVX-512) dense kernel can run on this CPU.");
}
