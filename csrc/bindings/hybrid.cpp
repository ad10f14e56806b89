// Bindings for recforge/hybrid.hpp. The matrices arrive as validated Csr objects (traits checked in
// O(1)), the trained arrays are checked for dtype, layout and shape, the negatives for range; then
// the epoch runs with the GIL released.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "arrays.hpp"
#include "checked.hpp"
#include "nogil.hpp"
#include "recforge/csr.hpp"
#include "recforge/hybrid.hpp"

namespace hybrid = recforge::hybrid;
using namespace recforge::bindings;

namespace {

py::dict epoch(const recforge::Csr& positives, const recforge::Csr& user_features, const recforge::Csr& item_features,
               const i32_in& negatives, const py::array& user_emb, const py::array& item_emb,
               const py::array& item_bias, const py::array& user_emb_g2, const py::array& item_emb_g2,
               const py::array& item_bias_g2, float lr, float user_reg, float item_reg, hybrid::Loss loss,
               int max_sampled, Threads threads, std::uint64_t seed, std::uint64_t epoch_index, float user_power) {
    recforge::require_csr(positives.traits(), recforge::kUniqueRows, "positives");  // binary search per row
    if (user_features.nnz() > 0)
        recforge::require_csr(user_features.traits(), recforge::kFiniteValues, "user_features");
    if (item_features.nnz() > 0)
        recforge::require_csr(item_features.traits(), recforge::kFiniteValues, "item_features");
    if (user_features.n_rows() != positives.n_rows())
        throw std::invalid_argument("user_features must have one row per user (" + std::to_string(positives.n_rows()) +
                                    "), got " + std::to_string(user_features.n_rows()));
    if (item_features.n_rows() != positives.n_cols())
        throw std::invalid_argument("item_features must have one row per item (" + std::to_string(positives.n_cols()) +
                                    "), got " + std::to_string(item_features.n_rows()));
    if (max_sampled < 1) throw std::invalid_argument("max_sampled must be >= 1");
    if (!(user_power >= 0.0f && user_power <= 1.0f))  // NaN fails too
        throw std::invalid_argument("user_power must be in [0, 1], got " + std::to_string(user_power));
    const py::ssize_t f = user_emb.ndim() == 2 ? user_emb.shape(1) : 0;
    if (f < 1 || f > 1 << 20) throw std::invalid_argument("user_emb must be 2-D with 1 to 2^20 columns");
    hybrid::Params params;
    params.factors = static_cast<int>(f);
    // An embedding table and its accumulators may be views into one array (rows side by side): the
    // same row spacing for both.
    const auto table = [&](const py::array& emb, const py::array& g2, const char* emb_name, const char* g2_name,
                           std::int64_t rows, float*& emb_out, float*& g2_out) {
        py::ssize_t stride = 0, g2_stride = 0;
        emb_out = inplace_rows<float>(emb, emb_name, rows, f, stride);
        g2_out = inplace_rows<float>(g2, g2_name, rows, f, g2_stride);
        if (rows > 1 && g2_stride != stride)
            throw std::invalid_argument(std::string(g2_name) + " must have the row spacing of " + emb_name + " (" +
                                        std::to_string(stride) + " floats), got " + std::to_string(g2_stride));
        return static_cast<std::int64_t>(stride);
    };
    params.user_stride = table(user_emb, user_emb_g2, "user_emb", "user_emb_g2", user_features.n_cols(),
                               params.user_emb, params.user_emb_g2);
    params.item_stride = table(item_emb, item_emb_g2, "item_emb", "item_emb_g2", item_features.n_cols(),
                               params.item_emb, params.item_emb_g2);
    params.item_bias = inplace<float>(item_bias, "item_bias", item_features.n_cols());
    params.item_bias_g2 = inplace<float>(item_bias_g2, "item_bias_g2", item_features.n_cols());
    check_shape(negatives, "negatives", -1);
    check_ids(negatives.data(), negatives.shape(0), positives.n_cols(), "negatives");
    const hybrid::Step step{lr, user_reg, item_reg, loss, max_sampled, threads, seed, epoch_index, user_power};
    hybrid::EpochStats stats;
    {
        Nogil nogil;
        stats = hybrid::epoch(positives.view(), user_features.view(), item_features.view(), negatives.data(),
                              negatives.shape(0), params, step);
    }
    py::dict out;
    out["loss"] = stats.loss;
    out["samples"] = stats.samples;
    return out;
}

}  // namespace

void bind_hybrid(py::module_& m) {
    bind_enum<hybrid::Loss>(
        m, "HybridLoss", "Loss of the hybrid model: bpr, warp or logistic.",
        {{"bpr", hybrid::Loss::bpr}, {"warp", hybrid::Loss::warp}, {"logistic", hybrid::Loss::logistic}});
    def_checked(
        m, "hybrid_epoch", &epoch, py::arg("positives"), py::arg("user_features"), py::arg("item_features"),
        py::arg("negatives"), py::arg("user_emb"), py::arg("item_emb"), py::arg("item_bias"), py::arg("user_emb_g2"),
        py::arg("item_emb_g2"), py::arg("item_bias_g2"), py::arg("lr"), py::arg("user_reg"), py::arg("item_reg"),
        py::arg("loss"), py::arg("max_sampled"), py::arg("threads"), py::arg("seed"), py::arg("epoch"),
        py::arg("user_power") = 1.0f,
        "One Hogwild Adagrad epoch of the hybrid (feature-embedding) model, in place; returns {loss, samples}.");
}
