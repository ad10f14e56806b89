// Bindings for the NCF scorer kernels (recforge/mlp.hpp). Shapes and dtypes are checked here;
// raw pointers are used only inside Nogil (GIL released). Parameter tables are used in place (updated
// by training, read without a copy by scoring), so their dtype and layout must match exactly: a
// mismatch is a TypeError / ValueError naming the array, never a silent copy.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "arrays.hpp"
#include "checked.hpp"
#include "nogil.hpp"
#include "recforge/csr.hpp"
#include "recforge/mlp.hpp"

namespace mlp = recforge::mlp;
using namespace recforge::bindings;

namespace {

mlp::Arch make_arch(mlp::Mode mode, int dim_gmf, int dim_mlp, const std::vector<int>& layers) {
    mlp::Arch a;
    a.mode = mode;
    a.dim_gmf = dim_gmf;
    a.dim_mlp = dim_mlp;
    a.layers = layers;
    a.validate();
    return a;
}

// The parameter tables of `a`: n_users / n_items come from the embedding tables, the dense vector
// must match the architecture. `write`: training updates them.
template <class T>
mlp::Params<T> params_of(const mlp::Arch& a, const py::array& user_emb, const py::array& item_emb,
                         const py::array& dense, bool write) {
    mlp::Params<T> p;
    p.user_emb = inplace<T>(user_emb, "user_emb", -1, a.emb_width(), write);
    p.item_emb = inplace<T>(item_emb, "item_emb", -1, a.emb_width(), write);
    p.dense = inplace<T>(dense, "dense", a.n_dense(), -1, write);
    p.n_users = user_emb.shape(0);
    p.n_items = item_emb.shape(0);
    return p;
}

// (users, items, labels): 1-D of one length, ids in range of the tables (ValueError naming them).
template <class T>
py::ssize_t check_samples(const mlp::Params<T>& p, const i64_in& users, const i64_in& items, const f32_in* labels) {
    check_shape(users, "users", -1);
    check_shape(items, "items", users.shape(0));
    if (labels) check_shape(*labels, "labels", users.shape(0));
    check_ids(users.data(), users.shape(0), p.user_rows(), "users");
    check_ids(items.data(), items.shape(0), p.item_rows(), "items");
    return users.shape(0);
}

// Attaches the optional feature matrices (None: identity) to `p`: finite values, one column per
// row of the side's table (ValueError naming them otherwise). The views live as long as the Csr.
template <class T>
void attach_features(mlp::Params<T>& p, const recforge::Csr* user_features, const recforge::Csr* item_features,
                     recforge::CsrView& user_view, recforge::CsrView& item_view) {
    for (const auto& [f, view, slot, name] :
         {std::tuple{user_features, &user_view, &p.user_features, "user_features"},
          std::tuple{item_features, &item_view, &p.item_features, "item_features"}}) {
        if (f == nullptr) continue;
        if (f->nnz() > 0) recforge::require_csr(f->traits(), recforge::kFiniteValues, name);
        *view = f->view();
        *slot = view;
    }
    p.validate_features();
}

template <class T>
py::tuple loss_grad(const mlp::Arch& a, const py::array& user_emb, const py::array& item_emb, const py::array& dense,
                    const i64_in& users, const i64_in& items, const f32_in& labels, double l2,
                    const recforge::Csr* user_features, const recforge::Csr* item_features) {
    auto p = params_of<T>(a, user_emb, item_emb, dense, false);
    recforge::CsrView user_view, item_view;
    attach_features(p, user_features, item_features, user_view, item_view);
    const py::ssize_t n = check_samples(p, users, items, &labels);
    py::array_t<T> gu({p.n_users, std::int64_t(a.emb_width())}), gi({p.n_items, std::int64_t(a.emb_width())});
    py::array_t<T> gd({a.n_dense()});
    double loss;
    T *gup = gu.mutable_data(), *gip = gi.mutable_data(), *gdp = gd.mutable_data();
    const std::int64_t *up = users.data(), *ip = items.data();
    const float* lp = labels.data();
    {
        Nogil nogil;
        loss = mlp::loss_and_grad<T>(a, p, up, ip, lp, n, l2, gup, gip, gdp);
    }
    return py::make_tuple(loss, gu, gi, gd);
}

}  // namespace

void bind_mlp(py::module_& m) {
    bind_enum<mlp::Mode>(m, "Mode", "NCF branch layout: gmf, mlp or neumf (both).",
                         {{"gmf", mlp::Mode::gmf}, {"mlp", mlp::Mode::mlp}, {"neumf", mlp::Mode::neumf}});
    bind_enum<mlp::Optimizer>(
        m, "Optimizer", "NCF optimiser: adam (dense), lazy_adam (sparse rows) or sgd.",
        {{"adam", mlp::Optimizer::adam}, {"sgd", mlp::Optimizer::sgd}, {"lazy_adam", mlp::Optimizer::lazy_adam}});

    // A per-layer accessor that refuses a layer index out of range (IndexError) before reading.
    const auto per_layer = [](auto get) {
        return [get](const mlp::Arch& a, int l) {
            if (l < 0 || l >= a.n_layers()) throw py::index_error("layer index out of range");
            return (a.*get)(l);
        };
    };
    py::class_<mlp::Arch> arch(m, "MLPArch",
                               "NCF architecture (mode, embedding dims, layers) and its dense-vector offsets.");
    init_checked(arch, &make_arch, py::arg("mode"), py::arg("dim_gmf"), py::arg("dim_mlp"), py::arg("layers"),
                 "Check and build an architecture (ValueError when the sizes do not fit the mode).");
    arch.def_property_readonly("emb_width", &mlp::Arch::emb_width, "Embedding row width: dim_gmf + dim_mlp.")
        .def_property_readonly("n_dense", &mlp::Arch::n_dense, "Length of the dense parameter vector.")
        .def_property_readonly("out_w_offset", &mlp::Arch::out_w_offset, "Offset of the output weights.")
        .def_property_readonly("out_b_offset", &mlp::Arch::out_b_offset, "Offset of the output bias.")
        .def_property_readonly("out_in", &mlp::Arch::out_in, "Width of the output layer's input.");
    def_checked(arch, "layer_in", per_layer(&mlp::Arch::layer_in), py::arg("l"),
                "Input width of MLP layer l (0-based).");
    def_checked(arch, "w_offset", per_layer(&mlp::Arch::w_offset), py::arg("l"),
                "Offset of W_l (in x out, input-major) in the dense vector.");
    def_checked(arch, "b_offset", per_layer(&mlp::Arch::b_offset), py::arg("l"), "Offset of b_l in the dense vector.");

    def_checked(
        m, "mlp_loss_grad",
        [](const mlp::Arch& a, const py::array& user_emb, const py::array& item_emb, const py::array& dense,
           const py::object& users_in, const py::object& items_in, const f32_in& labels, double l2,
           const recforge::Csr* user_features, const recforge::Csr* item_features) {
            const i64_in users = id_array<std::int64_t>(users_in, "users");
            const i64_in items = id_array<std::int64_t>(items_in, "items");
            // float64 parameters run the same code in double (finite-difference checks): user_emb decides.
            if (py::isinstance<py::array_t<double>>(user_emb)) {
                for (const auto& [table, name] : {std::pair<const py::array&, const char*>{item_emb, "item_emb"},
                                                  std::pair<const py::array&, const char*>{dense, "dense"}})
                    if (!py::isinstance<py::array_t<double>>(table))
                        throw py::type_error(std::string(name) + " must be float64 like user_emb (float64 user_emb " +
                                             "runs the float64 path), got dtype " +
                                             py::str(table.dtype()).cast<std::string>());
                return loss_grad<double>(a, user_emb, item_emb, dense, users, items, labels, l2, user_features,
                                         item_features);
            }
            return loss_grad<float>(a, user_emb, item_emb, dense, users, items, labels, l2, user_features,
                                    item_features);
        },
        py::arg("arch"), py::arg("user_emb"), py::arg("item_emb"), py::arg("dense"), py::arg("users"), py::arg("items"),
        py::arg("labels"), py::arg("l2"), py::arg("user_features") = py::none(), py::arg("item_features") = py::none(),
        "(loss, grad_user_emb, grad_item_emb, grad_dense): mean BCE + L2 loss of the samples and its exact gradient "
        "(float32 parameters, or float64 ones for finite-difference checks). With user_features / item_features "
        "(Csr, one row per user / item, one column per row of the table) a user's (item's) embedding is the "
        "feature-weighted sum of table rows and the table gradients are the features'.");

    def_checked(
        m, "mlp_train_epoch",
        [](const mlp::Arch& a, const py::array& user_emb, const py::array& item_emb, const py::array& dense,
           const py::array& m_user, const py::array& v_user, const py::array& m_item, const py::array& v_item,
           const py::array& m_dense, const py::array& v_dense, std::int64_t step, const py::object& users_in,
           const py::object& items_in, const f32_in& labels, mlp::Optimizer optimizer, float lr, float beta1,
           float beta2, float eps, float l2, int batch_size, Threads threads, const recforge::Csr* user_features,
           const recforge::Csr* item_features) {
            const i64_in users = id_array<std::int64_t>(users_in, "users");
            const i64_in items = id_array<std::int64_t>(items_in, "items");
            auto p = params_of<float>(a, user_emb, item_emb, dense, true);
            recforge::CsrView user_view, item_view;
            attach_features(p, user_features, item_features, user_view, item_view);
            const mlp::OptConfig cfg{optimizer, lr, beta1, beta2, eps, l2, batch_size, threads};  // declaration order
            if (!(beta1 >= 0.0f && beta1 < 1.0f) || !(beta2 >= 0.0f && beta2 < 1.0f) || !(eps > 0.0f))
                throw std::invalid_argument("beta1, beta2 must be in [0, 1) and eps > 0");
            if (step < 0) throw std::invalid_argument("step must be >= 0");
            mlp::OptState st;
            st.step = step;
            if (optimizer != mlp::Optimizer::sgd) {  // sgd keeps no moments: they are not read
                const int e = a.emb_width();
                st.m_user = inplace<float>(m_user, "m_user", p.n_users, e);
                st.v_user = inplace<float>(v_user, "v_user", p.n_users, e);
                st.m_item = inplace<float>(m_item, "m_item", p.n_items, e);
                st.v_item = inplace<float>(v_item, "v_item", p.n_items, e);
                st.m_dense = inplace<float>(m_dense, "m_dense", a.n_dense());
                st.v_dense = inplace<float>(v_dense, "v_dense", a.n_dense());
            }
            const py::ssize_t n = check_samples(p, users, items, &labels);
            const std::int64_t *up = users.data(), *ip = items.data();
            const float* lp = labels.data();
            double loss;
            {
                Nogil nogil;
                loss = mlp::train_epoch(a, p, st, cfg, up, ip, lp, n);
            }
            return py::make_tuple(loss, st.step);
        },
        py::arg("arch"), py::arg("user_emb"), py::arg("item_emb"), py::arg("dense"), py::arg("m_user"),
        py::arg("v_user"), py::arg("m_item"), py::arg("v_item"), py::arg("m_dense"), py::arg("v_dense"),
        py::arg("step"), py::arg("users"), py::arg("items"), py::arg("labels"), py::arg("optimizer"), py::arg("lr"),
        py::arg("beta1"), py::arg("beta2"), py::arg("eps"), py::arg("l2"), py::arg("batch_size"), py::arg("threads"),
        py::arg("user_features") = py::none(), py::arg("item_features") = py::none(),
        "One training epoch over the given samples, in place. Returns (mean loss, optimiser step count). "
        "user_features / item_features as in mlp_loss_grad (the tables then hold one row per feature).");

    def_checked(
        m, "mlp_sample_epoch",
        [](const recforge::Csr& interactions, int negatives, std::uint64_t seed, Threads threads) {
            // The sampler binary-searches each user's row: rows must be sorted and unique.
            recforge::require_csr(interactions.traits(), recforge::kUniqueRows, "interactions");
            if (negatives < 1) throw std::invalid_argument("negatives must be >= 1, got " + std::to_string(negatives));
            if (interactions.n_cols() < 1) throw std::invalid_argument("interactions must have at least one column");
            const recforge::CsrView v = interactions.view();
            const std::int64_t n = mlp::epoch_samples(v, negatives);
            check_output_memory(
                static_cast<double>(n) * (2 * sizeof(std::int64_t) + sizeof(float)),
                "negatives=" + std::to_string(negatives) + " (an epoch of " + std::to_string(n) + " samples)");
            py::array_t<std::int64_t> users(n), items(n);
            py::array_t<float> labels(n);
            std::int64_t *up = users.mutable_data(), *itp = items.mutable_data();
            float* lp = labels.mutable_data();
            {
                Nogil nogil;
                mlp::sample_epoch(v, negatives, seed, threads, up, itp, lp);
            }
            return py::make_tuple(users, items, labels);
        },
        py::arg("interactions"), py::arg("negatives"), py::arg("seed"), py::arg("threads"),
        "(users, items, labels) of one epoch: every stored entry plus `negatives` unseen items each, shuffled.");

    def_checked(
        m, "mlp_score_pairs",
        [](const mlp::Arch& a, const py::array& user_emb, const py::array& item_emb, const py::array& dense,
           const py::object& users_in, const py::object& items_in, Threads threads) {
            const i64_in users = id_array<std::int64_t>(users_in, "users");
            const i64_in items = id_array<std::int64_t>(items_in, "items");
            const auto p = params_of<float>(a, user_emb, item_emb, dense, false);
            const py::ssize_t n = check_samples(p, users, items, nullptr);
            py::array_t<float> out(n);
            float* op = out.mutable_data();
            const std::int64_t *up = users.data(), *ip = items.data();
            {
                Nogil nogil;
                mlp::score_pairs(a, p, up, ip, n, op, threads);
            }
            return out;
        },
        py::arg("arch"), py::arg("user_emb"), py::arg("item_emb"), py::arg("dense"), py::arg("users"), py::arg("items"),
        py::arg("threads"), "Logits (n,) float32 of the (users[j], items[j]) pairs.");

    def_checked(
        m, "mlp_score_all",
        [](const mlp::Arch& a, const py::array& user_emb, const py::array& item_emb, const py::array& dense,
           const py::object& users_in, Threads threads) {
            const i64_in users = id_array<std::int64_t>(users_in, "users");
            const auto p = params_of<float>(a, user_emb, item_emb, dense, false);
            check_shape(users, "users", -1);
            check_ids(users.data(), users.shape(0), p.n_users, "users");
            const py::ssize_t n = users.shape(0);
            py::array_t<float> out({std::int64_t(n), p.n_items});
            float* op = out.mutable_data();
            const std::int64_t* up = users.data();
            {
                Nogil nogil;
                mlp::score_all_items(a, p, up, n, op, threads);
            }
            return out;
        },
        py::arg("arch"), py::arg("user_emb"), py::arg("item_emb"), py::arg("dense"), py::arg("users"),
        py::arg("threads"), "Logits (n, n_items) float32 of each user against every item.");
}
