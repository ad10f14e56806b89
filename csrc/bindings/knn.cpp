// Bindings for recforge/knn.hpp (ItemKNN). Matrices arrive as validated Csr objects (their traits
// are checked here in O(1)), shapes and ids are checked, then the kernels run with the GIL released.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "arrays.hpp"
#include "checked.hpp"
#include "nogil.hpp"
#include "recforge/csr.hpp"
#include "recforge/knn.hpp"

namespace knn = recforge::knn;
using namespace recforge::bindings;

namespace {

// The vector's buffer becomes the array's (no copy); the array owns it through a capsule.
template <class T, class Allocator>
py::array_t<T> to_numpy(std::vector<T, Allocator>&& v) {
    using Vector = std::vector<T, Allocator>;
    auto owned = std::make_unique<Vector>(std::move(v));
    const T* data = owned->data();
    const auto size = static_cast<py::ssize_t>(owned->size());
    py::capsule owner(owned.get(), [](void* p) { delete static_cast<Vector*>(p); });
    owned.release();  // the capsule owns it now
    return py::array_t<T>(size, data, owner);
}

// A matrix with entries must carry the values `need` asks for; an empty one has nothing to check.
void require_values(const recforge::Csr& m, const recforge::CsrTraits& need, const char* name) {
    if (m.nnz() > 0) recforge::require_csr(m.traits(), need, name);
}

py::tuple item_neighbours(const recforge::Csr& users, bool cosine, std::int64_t k, Threads threads) {
    require_values(users, recforge::kConfidences, "users");  // finite, >= 0: the accumulator relies on it
    if (k < 1) throw std::invalid_argument("k must be >= 1, got " + std::to_string(k));
    knn::Neighbours nb;
    {
        Nogil nogil;
        nb = knn::item_neighbours(users.view(), cosine, k, threads);
    }
    return py::make_tuple(to_numpy(std::move(nb.indptr)), to_numpy(std::move(nb.indices)),
                          to_numpy(std::move(nb.data)));
}

py::tuple recommend(const recforge::Csr& history, const recforge::Csr& similarity, std::int64_t k, bool exclude_history,
                    const std::optional<i64_in>& subset, Threads threads) {
    require_values(history, recforge::kFiniteValues, "history");
    require_values(similarity, recforge::kFiniteValues, "similarity");
    const std::int64_t m = similarity.n_rows();
    if (similarity.n_cols() != m)
        throw std::invalid_argument("similarity must be square, got " + std::to_string(m) + " x " +
                                    std::to_string(similarity.n_cols()));
    if (history.n_cols() != m)
        throw std::invalid_argument("history must have " + std::to_string(m) + " columns (the items), got " +
                                    std::to_string(history.n_cols()));
    if (k < 1) throw std::invalid_argument("k must be >= 1, got " + std::to_string(k));
    std::vector<std::uint8_t> allowed;
    if (subset) {
        check_shape(*subset, "subset", -1);
        check_ids(subset->data(), subset->shape(0), m, "subset");
        allowed.assign(static_cast<std::size_t>(m), 0);
        for (py::ssize_t t = 0; t < subset->shape(0); ++t) allowed[subset->data()[t]] = 1;
    }
    const std::int64_t n = history.n_rows();
    check_output_memory(static_cast<double>(n) * static_cast<double>(k) * (sizeof(std::int64_t) + sizeof(float)),
                        "k=" + std::to_string(k) + " for " + std::to_string(n) + " rows");
    py::array_t<std::int64_t> ids({n, k});
    py::array_t<float> scores({n, k});
    std::int64_t* ip = ids.mutable_data();
    float* sp = scores.mutable_data();
    {
        Nogil nogil;
        knn::recommend(history.view(), similarity.view(), k, exclude_history, subset ? allowed.data() : nullptr, ip, sp,
                       threads);
    }
    return py::make_tuple(ids, scores);
}

}  // namespace

void bind_knn(py::module_& m) {
    def_checked(m, "knn_item_neighbours", &item_neighbours, py::arg("users"), py::arg("cosine"), py::arg("k"),
                py::arg("threads") = 0,
                "The k most similar items of every item by the inner product of the columns of `users` (users x "
                "items, finite values >= 0; divided by both norms when `cosine`): (indptr int64, indices int32, data "
                "float32) of an n_items x n_items CSR (ids within a row not sorted).");
    def_checked(
        m, "knn_recommend", &recommend, py::arg("history"), py::arg("similarity"), py::arg("k"),
        py::arg("exclude_history"), py::arg("subset") = py::none(), py::arg("threads") = 0,
        "Top-k items per history row by sum of r * similarity(i, j): (ids int64 (n, k), scores float32 (n, k)), "
        "-1 / -inf padding; `subset` restricts the ranking to those item ids.");
}
