// Bindings for the SGD kernels (recforge/sgd.hpp). The training data is validated and copied once
// per fit into a C++ object (RatingData / PositiveData); each epoch call then checks only the
// factor buffers (dtype, contiguity, shape: O(1)) and runs with the GIL released.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "recforge/sgd.hpp"

namespace py = pybind11;
namespace sgd = recforge::sgd;

namespace {

template <class T>
using in_arr = py::array_t<T, py::array::c_style | py::array::forcecast>;

std::string shape_str(const py::array& a) {
    std::string s = "(";
    for (py::ssize_t d = 0; d < a.ndim(); ++d) s += (d ? ", " : "") + std::to_string(a.shape(d));
    return s + (a.ndim() == 1 ? ",)" : ")");
}

// A buffer the kernel writes into: must already be float32, C-contiguous, writeable and of the
// expected shape (a converted copy would silently drop the updates).
float* out_f32(py::array& a, const char* name, py::ssize_t rows, py::ssize_t cols = -1) {
    if (!py::isinstance<py::array_t<float>>(a))
        throw py::type_error(std::string(name) + " must be a float32 numpy array");
    if (!(a.flags() & py::array::c_style) || !a.writeable())
        throw std::invalid_argument(std::string(name) + " must be C-contiguous and writeable");
    const bool ok = cols < 0 ? (a.ndim() == 1 && a.shape(0) == rows)
                             : (a.ndim() == 2 && a.shape(0) == rows && a.shape(1) == cols);
    if (!ok)
        throw std::invalid_argument(std::string(name) + " must have shape (" + std::to_string(rows) +
                                    (cols < 0 ? ",)" : ", " + std::to_string(cols) + ")") + ", got " +
                                    shape_str(a));
    return static_cast<float*>(a.mutable_data());
}

template <class T>
std::vector<T> copy_1d(const in_arr<T>& a, const char* name) {
    if (a.ndim() != 1) throw std::invalid_argument(std::string(name) + " must be 1-D, got " + shape_str(a));
    return std::vector<T>(a.data(), a.data() + a.shape(0));
}

// Explicit ratings as validated, packed triplets; the epochs shuffle them in place.
struct RatingData {
    std::vector<sgd::Rating> ratings;
    std::int32_t n_users = 0, n_items = 0;

    RatingData(const in_arr<std::int32_t>& u, const in_arr<std::int32_t>& i, const in_arr<float>& r,
               std::int64_t nu, std::int64_t ni) {
        if (nu < 1 || ni < 1 || nu > INT32_MAX || ni > INT32_MAX)
            throw std::invalid_argument("n_users and n_items must be in [1, 2^31)");
        n_users = static_cast<std::int32_t>(nu);
        n_items = static_cast<std::int32_t>(ni);
        if (u.ndim() != 1 || i.ndim() != 1 || r.ndim() != 1 || i.shape(0) != u.shape(0) || r.shape(0) != u.shape(0))
            throw std::invalid_argument("users, items and ratings must be 1-D of the same length");
        const std::int32_t* up = u.data();
        const std::int32_t* ip = i.data();
        const float* rp = r.data();
        ratings.resize(static_cast<std::size_t>(u.shape(0)));
        for (std::size_t k = 0; k < ratings.size(); ++k) {
            if (up[k] < 0 || up[k] >= n_users) throw std::invalid_argument("user id out of range");
            if (ip[k] < 0 || ip[k] >= n_items) throw std::invalid_argument("item id out of range");
            if (!std::isfinite(rp[k])) throw std::invalid_argument("ratings contain NaN or inf");
            ratings[k] = sgd::Rating{up[k], ip[k], rp[k]};
        }
    }
};

// Implicit positives as a CSR with sorted unique rows; row_of[k] = user of entry k.
struct PositiveData {
    std::vector<std::int64_t> indptr;
    std::vector<std::int32_t> indices, row_of;
    std::int32_t n_items = 0;

    PositiveData(const in_arr<std::int64_t>& ip, const in_arr<std::int32_t>& ix, std::int64_t ni)
        : indptr(copy_1d(ip, "indptr")), indices(copy_1d(ix, "indices")) {
        if (ni < 1 || ni > INT32_MAX) throw std::invalid_argument("n_items must be in [1, 2^31)");
        n_items = static_cast<std::int32_t>(ni);
        if (indptr.empty() || indptr.size() - 1 > static_cast<std::size_t>(INT32_MAX))
            throw std::invalid_argument("indptr must have n_users + 1 entries, n_users < 2^31");
        const auto nnz = static_cast<std::int64_t>(indices.size());
        if (indptr.front() != 0 || indptr.back() != nnz)
            throw std::invalid_argument("indptr must start at 0 and end at len(indices)");
        row_of.resize(indices.size());
        for (std::size_t u = 0; u + 1 < indptr.size(); ++u) {
            if (indptr[u + 1] < indptr[u]) throw std::invalid_argument("indptr must be non-decreasing");
            for (std::int64_t k = indptr[u]; k < indptr[u + 1]; ++k) {
                if (indices[k] < 0 || indices[k] >= n_items) throw std::invalid_argument("item index out of range");
                // The negative check is a binary search: rows must be strictly increasing.
                if (k > indptr[u] && indices[k] <= indices[k - 1])
                    throw std::invalid_argument("each row's indices must be sorted and unique");
                row_of[k] = static_cast<std::int32_t>(u);
            }
        }
    }
    std::int32_t n_users() const { return static_cast<std::int32_t>(indptr.size() - 1); }
    sgd::Positives view() const {
        sgd::Positives p;
        p.indptr = indptr.data();
        p.indices = indices.data();
        p.row_of = row_of.data();
        p.nnz = static_cast<std::int64_t>(indices.size());
        p.n_users = n_users();
        p.n_items = n_items;
        return p;
    }
};

sgd::Sampling parse_sampling(const std::string& s) {
    if (s == "uniform") return sgd::Sampling::uniform;
    if (s == "popularity") return sgd::Sampling::popularity;
    throw std::invalid_argument("sampling must be 'uniform' or 'popularity', got '" + s + "'");
}

}  // namespace

void bind_sgd(py::module_& m) {
    py::class_<RatingData>(m, "SGDRatingData", "Validated (user, item, rating) triplets for sgd_mf_epoch.")
        .def(py::init<const in_arr<std::int32_t>&, const in_arr<std::int32_t>&, const in_arr<float>&,
                      std::int64_t, std::int64_t>(),
             py::arg("users"), py::arg("items"), py::arg("ratings"), py::arg("n_users"), py::arg("n_items"))
        .def_property_readonly("n", [](const RatingData& d) { return d.ratings.size(); });

    py::class_<PositiveData>(m, "SGDPositiveData", "Validated implicit CSR (sorted rows) for sgd_rank_epoch.")
        .def(py::init<const in_arr<std::int64_t>&, const in_arr<std::int32_t>&, std::int64_t>(),
             py::arg("indptr"), py::arg("indices"), py::arg("n_items"))
        .def_property_readonly("nnz", [](const PositiveData& d) { return d.indices.size(); });

    m.def(
        "sgd_mf_epoch",
        [](RatingData& d, py::array user_factors, py::array item_factors, py::object user_bias,
           py::object item_bias, float global_mean, float lr, float reg, float bias_reg, int threads,
           std::uint64_t seed, std::uint64_t epoch, bool freeze_items) {
            const py::ssize_t f = user_factors.ndim() == 2 ? user_factors.shape(1) : 0;
            if (f < 1) throw std::invalid_argument("user_factors must be 2-D with at least one column");
            sgd::MFModel model;
            model.user_factors = out_f32(user_factors, "user_factors", d.n_users, f);
            model.item_factors = out_f32(item_factors, "item_factors", d.n_items, f);
            if (user_bias.is_none() != item_bias.is_none())
                throw std::invalid_argument("user_bias and item_bias must both be given or both be None");
            if (!user_bias.is_none()) {
                py::array ub = user_bias, ib = item_bias;
                model.user_bias = out_f32(ub, "user_bias", d.n_users);
                model.item_bias = out_f32(ib, "item_bias", d.n_items);
            }
            model.factors = static_cast<int>(f);
            model.global_mean = global_mean;
            sgd::MFStep step;
            step.lr = lr;
            step.reg = reg;
            step.bias_reg = bias_reg;
            step.freeze_items = freeze_items;
            step.threads = threads;
            step.seed = seed;
            step.epoch = epoch;
            py::gil_scoped_release nogil;
            return sgd::mf_epoch(d.ratings.data(), static_cast<std::int64_t>(d.ratings.size()), model, step);
        },
        py::arg("data"), py::arg("user_factors"), py::arg("item_factors"), py::arg("user_bias"),
        py::arg("item_bias"), py::arg("global_mean"), py::arg("lr"), py::arg("reg"), py::arg("bias_reg"),
        py::arg("threads"), py::arg("seed"), py::arg("epoch"), py::arg("freeze_items") = false,
        "One Hogwild SGD epoch of biased MF (updates the arrays in place); returns the training MSE.");

    m.def(
        "sgd_mf_predict",
        [](const in_arr<std::int64_t>& users, const in_arr<std::int64_t>& items, py::array user_factors,
           py::array item_factors, py::object user_bias, py::object item_bias, float global_mean, int threads) {
            if (users.ndim() != 1 || items.ndim() != 1 || users.shape(0) != items.shape(0))
                throw std::invalid_argument("users and items must be 1-D of the same length");
            if (user_factors.ndim() != 2 || item_factors.ndim() != 2 || user_factors.shape(1) != item_factors.shape(1))
                throw std::invalid_argument("user_factors and item_factors must be 2-D with the same width");
            const py::ssize_t nu = user_factors.shape(0), ni = item_factors.shape(0), f = user_factors.shape(1);
            if (nu > INT32_MAX || ni > INT32_MAX) throw std::invalid_argument("too many users or items");
            sgd::MFModel model;
            // Read-only here, but the same checks as the training buffers (no silent copies).
            model.user_factors = out_f32(user_factors, "user_factors", nu, f);
            model.item_factors = out_f32(item_factors, "item_factors", ni, f);
            if (!user_bias.is_none()) {
                py::array ub = user_bias;
                model.user_bias = out_f32(ub, "user_bias", nu);
            }
            if (!item_bias.is_none()) {
                py::array ib = item_bias;
                model.item_bias = out_f32(ib, "item_bias", ni);
            }
            model.factors = static_cast<int>(f);
            model.global_mean = global_mean;
            const py::ssize_t n = users.shape(0);
            py::array_t<float> out(n);
            float* o = out.mutable_data();
            const std::int64_t* up = users.data();
            const std::int64_t* ip = items.data();
            {
                py::gil_scoped_release nogil;
                sgd::mf_predict(model, static_cast<std::int32_t>(nu), static_cast<std::int32_t>(ni), up, ip, n,
                                threads, o);
            }
            return out;
        },
        py::arg("users"), py::arg("items"), py::arg("user_factors"), py::arg("item_factors"), py::arg("user_bias"),
        py::arg("item_bias"), py::arg("global_mean"), py::arg("threads"),
        "Biased-MF predictions for (user, item) pairs; ids out of range count as unknown (bias fallback).");

    m.def(
        "sgd_rank_epoch",
        [](const PositiveData& d, py::array user_factors, py::array item_factors, py::object item_bias,
           float lr, float reg, int negatives, const std::string& sampling, const std::string& loss,
           int max_sampled, int threads, std::uint64_t seed, std::uint64_t epoch, bool freeze_items) {
            const py::ssize_t f = user_factors.ndim() == 2 ? user_factors.shape(1) : 0;
            if (f < 1) throw std::invalid_argument("user_factors must be 2-D with at least one column");
            if (negatives < 1) throw std::invalid_argument("negatives must be >= 1");
            if (max_sampled < 1) throw std::invalid_argument("max_sampled must be >= 1");
            sgd::RankModel model;
            model.user_factors = out_f32(user_factors, "user_factors", d.n_users(), f);
            model.item_factors = out_f32(item_factors, "item_factors", d.n_items, f);
            if (!item_bias.is_none()) {
                py::array ib = item_bias;
                model.item_bias = out_f32(ib, "item_bias", d.n_items);
            }
            model.factors = static_cast<int>(f);
            sgd::RankStep step;
            step.lr = lr;
            step.reg = reg;
            step.negatives = negatives;
            step.sampling = parse_sampling(sampling);
            if (loss == "bpr") step.loss = sgd::Loss::bpr;
            else if (loss == "warp") step.loss = sgd::Loss::warp;
            else throw std::invalid_argument("loss must be 'bpr' or 'warp', got '" + loss + "'");
            step.max_sampled = max_sampled;
            step.freeze_items = freeze_items;
            step.threads = threads;
            step.seed = seed;
            step.epoch = epoch;
            const sgd::Positives view = d.view();
            sgd::RankStats st;
            {
                py::gil_scoped_release nogil;
                st = sgd::rank_epoch(view, model, step);
            }
            py::dict out;
            out["loss"] = st.loss;
            out["pairs"] = st.pairs;
            out["updates"] = st.updates;
            out["skipped"] = st.skipped;
            return out;
        },
        py::arg("data"), py::arg("user_factors"), py::arg("item_factors"), py::arg("item_bias"),
        py::arg("lr"), py::arg("reg"), py::arg("negatives"), py::arg("sampling"), py::arg("loss"),
        py::arg("max_sampled"), py::arg("threads"), py::arg("seed"), py::arg("epoch"), py::arg("freeze_items") = false,
        "One Hogwild epoch of BPR/WARP (updates the arrays in place); returns a dict of epoch stats.");

    m.def(
        "sgd_sample_negatives",
        [](const PositiveData& d, const in_arr<std::int32_t>& users, const std::string& sampling,
           std::uint64_t seed) {
            if (users.ndim() != 1) throw std::invalid_argument("users must be 1-D");
            const std::int32_t* u = users.data();
            const py::ssize_t n = users.shape(0);
            for (py::ssize_t k = 0; k < n; ++k)
                if (u[k] < 0 || u[k] >= d.n_users()) throw std::invalid_argument("user id out of range");
            const sgd::Sampling s = parse_sampling(sampling);
            py::array_t<std::int32_t> out(n);
            std::int32_t* o = out.mutable_data();
            const sgd::Positives view = d.view();
            if (s == sgd::Sampling::popularity && view.nnz == 0)
                throw std::invalid_argument("popularity sampling needs at least one stored entry");
            {
                py::gil_scoped_release nogil;
                sgd::sample_negatives(view, u, n, s, seed, o);
            }
            return out;
        },
        py::arg("data"), py::arg("users"), py::arg("sampling"), py::arg("seed"),
        "The negatives the rank epochs would draw for `users` (-1: none found); for tests.");
}
