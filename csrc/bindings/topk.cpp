// Bindings for recforge/topk.hpp. Python (recforge.topk, the validating entry) checks and
// canonicalises first; shapes are re-checked here, the exclusion list arrives as a validated Csr,
// and the core re-checks ids, so no input can read out of bounds.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>

#include "arrays.hpp"
#include "checked.hpp"
#include "nogil.hpp"
#include "recforge/csr.hpp"
#include "recforge/topk.hpp"

using namespace recforge::bindings;

namespace {

py::tuple topk_f32(const f32_in& queries, const f32_in& items, std::int64_t k, const recforge::Csr* exclude,
                   const std::optional<py::object>& subset_in, const std::optional<py::object>& candidates_in,
                   Threads threads, std::int64_t block_queries, std::int64_t block_items, recforge::TopkKernel kernel) {
    std::optional<i64_in> subset, candidates;
    if (subset_in) subset = id_array<std::int64_t>(*subset_in, "subset");
    if (candidates_in) candidates = id_array<std::int64_t>(*candidates_in, "candidates");
    check_shape(queries, "queries", -1, kAny);
    const std::int64_t n = queries.shape(0), f = queries.shape(1);
    check_shape(items, "items", -1, f);
    const std::int64_t m = items.shape(0);
    if (k < 1 || k > m)
        throw std::invalid_argument("k must be in [1, " + std::to_string(m) + "], got " + std::to_string(k));
    recforge::CsrView ex;
    if (exclude) {
        // Exclusion is a merge with each row's ids, which must be ascending (duplicates are fine).
        recforge::require_csr(exclude->traits(), recforge::kSortedRows, "exclude");
        ex = exclude->view();
    }
    if (subset) check_shape(*subset, "subset", -1);
    if (candidates) {
        check_shape(*candidates, "candidates", n, kAny);
        if (subset) throw std::invalid_argument("give either subset or candidates, not both");
    }
    const recforge::TopkOptions options{block_queries, block_items, kernel};

    py::array_t<std::int64_t> ids({n, k});
    py::array_t<float> scores({n, k});
    const float* q = queries.data();
    const float* it = items.data();
    std::int64_t* ip = ids.mutable_data();
    float* sp = scores.mutable_data();
    const std::int64_t* subp = subset ? subset->data() : nullptr;
    const std::int64_t n_sub = subset ? subset->shape(0) : 0;
    const std::int64_t* candp = candidates ? candidates->data() : nullptr;
    const std::int64_t c = candidates ? candidates->shape(1) : 0;
    const recforge::CsrView* exp = exclude ? &ex : nullptr;
    {
        Nogil nogil;  // raw pointers only from here on
        if (candp) recforge::topk_candidates(q, n, it, m, f, k, candp, c, exp, ip, sp, threads);
        else recforge::topk_dense(q, n, it, m, f, k, subp, n_sub, exp, ip, sp, threads, options);
    }
    return py::make_tuple(ids, scores);
}

}  // namespace

void bind_topk(py::module_& m) {
    bind_enum<recforge::TopkKernel>(m, "TopkKernel", "Dense top-K kernel: auto, blas or fused (AVX-512).",
                                    {{"auto", recforge::TopkKernel::automatic},
                                     {"blas", recforge::TopkKernel::blas},
                                     {"fused", recforge::TopkKernel::fused}});

    def_checked(
        m, "topk_f32", &topk_f32, py::arg("queries"), py::arg("items"), py::arg("k"), py::arg("exclude") = nullptr,
        py::arg("subset") = py::none(), py::arg("candidates") = py::none(), py::arg("threads") = 0,
        py::arg("block_queries") = 0, py::arg("block_items") = 0, py::arg("kernel") = recforge::TopkKernel::automatic,
        "Exact top-k by inner product (use recforge.topk): (ids int64 (n, k), scores float32 (n, k)); exclude is "
        "a Csr (n, m); block_queries/block_items/kernel are tuning knobs for tests and benchmarks.");
    m.def(
        "topk_has_fused", [] { return recforge::topk_has_fused(); },
        "Whether the fused (AVX-512) dense kernel can run on this CPU.");
}
