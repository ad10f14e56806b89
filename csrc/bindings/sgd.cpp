// Bindings for the SGD kernels (recforge/sgd.hpp). The training data is prepared once per fit by
// the core (prepare_ratings / PositiveData) from a validated Csr; each epoch call then checks only
// the factor buffers (dtype, contiguity, shape: O(1)) and runs with the GIL released.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>

#include "arrays.hpp"
#include "checked.hpp"
#include "nogil.hpp"
#include "recforge/csr.hpp"
#include "recforge/sgd.hpp"

namespace sgd = recforge::sgd;
using namespace recforge::bindings;

namespace {

// Factors (rows x f) updated in place: f from the first one, checked >= 1.
py::ssize_t factors_of(const py::array& user_factors) {
    const py::ssize_t f = user_factors.ndim() == 2 ? user_factors.shape(1) : 0;
    if (f < 1 || f > 1 << 20) throw std::invalid_argument("user_factors must be 2-D with 1 to 2^20 columns");
    return f;
}

// The epochs' data, prepared once a fit (GIL released) from a Csr that has the traits they rely on.
template <class Make>
auto prepared(const recforge::Csr& m, const recforge::CsrTraits& need, const char* name, Make make) {
    recforge::require_csr(m.traits(), need, name);
    Nogil nogil;
    return make(m.view());
}

}  // namespace

void bind_sgd(py::module_& m) {
    bind_enum<sgd::Sampling>(m, "Sampling", "How ranking epochs draw negatives: uniform, or popularity (by entries).",
                             {{"uniform", sgd::Sampling::uniform}, {"popularity", sgd::Sampling::popularity}});
    bind_enum<sgd::Loss>(m, "Loss", "Pairwise ranking loss: bpr or warp.",
                         {{"bpr", sgd::Loss::bpr}, {"warp", sgd::Loss::warp}});

    py::class_<sgd::RatingData> rating_data(m, "SGDRatingData",
                                            "Explicit ratings packed for sgd_mf_epoch (prepared once a fit).");
    init_checked(
        rating_data,
        [](const recforge::Csr& ratings) {
            return prepared(ratings, recforge::kFiniteValues, "ratings", sgd::prepare_ratings);
        },
        py::arg("ratings"), "Pack the stored entries of `ratings` (users x items, finite values) as triplets.");
    rating_data.def_property_readonly(
        "n", [](const sgd::RatingData& d) { return d.ratings.size(); }, "Number of ratings.");

    py::class_<sgd::PositiveData> positive_data(m, "SGDPositiveData",
                                                "Implicit positives prepared for sgd_rank_epoch (once a fit).");
    init_checked(
        positive_data,
        [](const recforge::Csr& interactions) {
            // Negatives are verified by binary search in the user's row: rows must be sorted, unique.
            return prepared(interactions, recforge::kUniqueRows, "interactions",
                            [](const recforge::CsrView& v) { return sgd::PositiveData(v); });
        },
        py::arg("interactions"), "The positives (stored values > 0) of `interactions` (users x items).");
    positive_data.def_property_readonly("nnz", &sgd::PositiveData::nnz, "Number of positives.");

    def_checked(
        m, "sgd_mf_epoch",
        [](sgd::RatingData& d, const py::array& user_factors, const py::array& item_factors,
           const py::object& user_bias, const py::object& item_bias, float global_mean, float lr, float regularization,
           float bias_regularization, Threads threads, std::uint64_t seed, std::uint64_t epoch, bool freeze_items) {
            const py::ssize_t f = factors_of(user_factors);
            sgd::MFModel model;
            model.user_factors = inplace<float>(user_factors, "user_factors", d.n_users, f);
            model.item_factors = inplace<float>(item_factors, "item_factors", d.n_items, f);
            if (user_bias.is_none() != item_bias.is_none())
                throw std::invalid_argument("user_bias and item_bias must both be given or both be None");
            model.user_bias = inplace_or_null<float>(user_bias, "user_bias", d.n_users);
            model.item_bias = inplace_or_null<float>(item_bias, "item_bias", d.n_items);
            model.factors = static_cast<int>(f);
            model.global_mean = global_mean;
            // Fields in declaration order.
            const sgd::MFStep step{lr, regularization, bias_regularization, freeze_items, threads, seed, epoch};
            Nogil nogil;
            return sgd::mf_epoch(d.ratings.data(), static_cast<std::int64_t>(d.ratings.size()), model, step);
        },
        py::arg("data"), py::arg("user_factors"), py::arg("item_factors"), py::arg("user_bias"), py::arg("item_bias"),
        py::arg("global_mean"), py::arg("lr"), py::arg("regularization"), py::arg("bias_regularization"),
        py::arg("threads"), py::arg("seed"), py::arg("epoch"), py::arg("freeze_items") = false,
        "One Hogwild SGD epoch of biased MF (updates the arrays in place); returns the training MSE.");

    def_checked(
        m, "sgd_mf_predict",
        [](const py::object& users_in, const py::object& items_in, const py::array& user_factors,
           const py::array& item_factors, const py::object& user_bias, const py::object& item_bias, float global_mean,
           Threads threads) {
            const i64_in users = id_array<std::int64_t>(users_in, "users");
            const i64_in items = id_array<std::int64_t>(items_in, "items");
            check_shape(users, "users", -1);
            check_shape(items, "items", users.shape(0));
            const py::ssize_t f = factors_of(user_factors);
            const py::ssize_t nu = user_factors.shape(0), ni = item_factors.ndim() == 2 ? item_factors.shape(0) : 0;
            if (nu > INT32_MAX || ni > INT32_MAX) throw std::invalid_argument("too many users or items");
            sgd::MFModel model;
            // Read only, but not copied: the same exact-dtype checks as the training buffers.
            model.user_factors = inplace<float>(user_factors, "user_factors", nu, f, false);
            model.item_factors = inplace<float>(item_factors, "item_factors", ni, f, false);
            model.user_bias = inplace_or_null<float>(user_bias, "user_bias", nu);
            model.item_bias = inplace_or_null<float>(item_bias, "item_bias", ni);
            model.factors = static_cast<int>(f);
            model.global_mean = global_mean;
            const py::ssize_t n = users.shape(0);
            py::array_t<float> out(n);
            float* o = out.mutable_data();
            const std::int64_t *up = users.data(), *ip = items.data();
            {
                Nogil nogil;
                sgd::mf_predict(model, static_cast<std::int32_t>(nu), static_cast<std::int32_t>(ni), up, ip, n, threads,
                                o);
            }
            return out;
        },
        py::arg("users"), py::arg("items"), py::arg("user_factors"), py::arg("item_factors"), py::arg("user_bias"),
        py::arg("item_bias"), py::arg("global_mean"), py::arg("threads"),
        "Biased-MF predictions (n,) for (user, item) pairs; ids out of range count as unknown (bias fallback).");

    def_checked(
        m, "sgd_rank_epoch",
        [](const sgd::PositiveData& d, const py::array& user_factors, const py::array& item_factors,
           const py::object& item_bias, float lr, float regularization, int negatives, sgd::Sampling sampling,
           sgd::Loss loss, int max_sampled, Threads threads, std::uint64_t seed, std::uint64_t epoch,
           bool freeze_items) {
            const py::ssize_t f = factors_of(user_factors);
            if (negatives < 1) throw std::invalid_argument("negatives must be >= 1");
            if (max_sampled < 1) throw std::invalid_argument("max_sampled must be >= 1");
            sgd::RankModel model;
            model.user_factors = inplace<float>(user_factors, "user_factors", d.n_users(), f);
            model.item_factors = inplace<float>(item_factors, "item_factors", d.n_items(), f);
            model.item_bias = inplace_or_null<float>(item_bias, "item_bias", d.n_items());
            model.factors = static_cast<int>(f);
            // Fields in declaration order.
            const sgd::RankStep step{lr,          regularization, negatives, sampling, loss,
                                     max_sampled, freeze_items,   threads,   seed,     epoch};
            sgd::RankStats st;
            {
                Nogil nogil;
                st = sgd::rank_epoch(d.view(), model, step);
            }
            py::dict out;
            out["loss"] = st.loss;
            out["pairs"] = st.pairs;
            out["updates"] = st.updates;
            out["skipped"] = st.skipped;
            return out;
        },
        py::arg("data"), py::arg("user_factors"), py::arg("item_factors"), py::arg("item_bias"), py::arg("lr"),
        py::arg("regularization"), py::arg("negatives"), py::arg("sampling"), py::arg("loss"), py::arg("max_sampled"),
        py::arg("threads"), py::arg("seed"), py::arg("epoch"), py::arg("freeze_items") = false,
        "One Hogwild epoch of BPR/WARP (updates the arrays in place); returns a dict of epoch stats.");

    def_checked(
        m, "sgd_sample_negatives",
        [](const sgd::PositiveData& d, const py::object& users_in, sgd::Sampling sampling, std::uint64_t seed) {
            const i32_in users = id_array<std::int32_t>(users_in, "users");
            check_shape(users, "users", -1);
            const std::int32_t* u = users.data();
            const py::ssize_t n = users.shape(0);
            check_ids(u, n, d.n_users(), "users");
            if (sampling == sgd::Sampling::popularity && d.nnz() == 0)
                throw std::invalid_argument("popularity sampling needs at least one stored entry");
            py::array_t<std::int32_t> out(n);
            std::int32_t* o = out.mutable_data();
            {
                Nogil nogil;
                sgd::sample_negatives(d.view(), u, n, sampling, seed, o);
            }
            return out;
        },
        py::arg("data"), py::arg("users"), py::arg("sampling"), py::arg("seed"),
        "The negatives (n,) int32 the rank epochs would draw for `users` (-1: none found); for tests.");
}
