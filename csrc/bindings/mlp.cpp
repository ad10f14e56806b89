// Bindings for the NCF scorer kernels (recforge/mlp.hpp). Shapes and dtypes are checked here;
// raw pointers are used only inside gil_scoped_release. Parameter arrays are updated in place, so
// they are taken with noconvert(): a wrong dtype or layout is a TypeError instead of a silent copy.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "recforge/mlp.hpp"

namespace py = pybind11;
namespace mlp = recforge::mlp;

namespace {

template <class T>
using arr = py::array_t<T, py::array::c_style>;
using i64_in = py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>;
using i32_in = py::array_t<std::int32_t, py::array::c_style | py::array::forcecast>;
using f32_in = py::array_t<float, py::array::c_style | py::array::forcecast>;

mlp::Arch make_arch(int mode, int dim_gmf, int dim_mlp, const std::vector<int>& layers) {
    mlp::Arch a;
    if (mode < 0 || mode > 2) throw std::invalid_argument("mode must be 0 (gmf), 1 (mlp) or 2 (neumf)");
    a.mode = static_cast<mlp::Mode>(mode);
    a.dim_gmf = dim_gmf;
    a.dim_mlp = dim_mlp;
    a.layers = layers;
    a.validate();
    return a;
}

void check_shape(const py::array& a, std::initializer_list<py::ssize_t> shape, const char* name) {
    bool ok = a.ndim() == py::ssize_t(shape.size());
    std::string want = "(";
    int d = 0;
    for (auto s : shape) {
        if (ok && a.shape(d) != s) ok = false;
        want += std::to_string(s) + (d + 1 < int(shape.size()) ? ", " : "");
        ++d;
    }
    want += ")";
    if (!ok) {
        std::string got = "(";
        for (int q = 0; q < a.ndim(); ++q) got += std::to_string(a.shape(q)) + (q + 1 < a.ndim() ? ", " : "");
        throw std::invalid_argument(std::string(name) + " must have shape " + want + ", got " + got + ")");
    }
}

// The embedding tables fix n_users / n_items; the dense vector must match the architecture.
template <class T>
mlp::Params<T> params_of(const mlp::Arch& a, arr<T>& user_emb, arr<T>& item_emb, arr<T>& dense) {
    if (user_emb.ndim() != 2 || item_emb.ndim() != 2)
        throw std::invalid_argument("user_emb and item_emb must be 2-D");
    check_shape(user_emb, {user_emb.shape(0), a.emb_width()}, "user_emb");
    check_shape(item_emb, {item_emb.shape(0), a.emb_width()}, "item_emb");
    check_shape(dense, {py::ssize_t(a.n_dense())}, "dense");
    mlp::Params<T> p;
    p.user_emb = const_cast<T*>(user_emb.data());
    p.item_emb = const_cast<T*>(item_emb.data());
    p.dense = const_cast<T*>(dense.data());
    p.n_users = user_emb.shape(0);
    p.n_items = item_emb.shape(0);
    return p;
}

template <class T>
py::tuple loss_grad(const mlp::Arch& a, arr<T> user_emb, arr<T> item_emb, arr<T> dense, i64_in users,
                    i64_in items, f32_in labels, double l2) {
    auto p = params_of<T>(a, user_emb, item_emb, dense);
    const py::ssize_t n = users.size();
    check_shape(users, {n}, "users");
    check_shape(items, {n}, "items");
    check_shape(labels, {n}, "labels");
    arr<T> gu({p.n_users, std::int64_t(a.emb_width())}), gi({p.n_items, std::int64_t(a.emb_width())});
    arr<T> gd({a.n_dense()});
    double loss;
    T *gup = gu.mutable_data(), *gip = gi.mutable_data(), *gdp = gd.mutable_data();
    const std::int64_t *up = users.data(), *ip = items.data();
    const float* lp = labels.data();
    {
        py::gil_scoped_release nogil;
        loss = mlp::loss_and_grad<T>(a, p, up, ip, lp, n, l2, gup, gip, gdp);
    }
    return py::make_tuple(loss, gu, gi, gd);
}

}  // namespace

void bind_mlp(py::module_& m) {
    py::class_<mlp::Arch>(m, "MLPArch", "NCF architecture: mode (0 gmf, 1 mlp, 2 neumf), embedding dims, layers.")
        .def(py::init(&make_arch), py::arg("mode"), py::arg("dim_gmf"), py::arg("dim_mlp"), py::arg("layers"))
        .def_property_readonly("emb_width", &mlp::Arch::emb_width)
        .def_property_readonly("n_dense", &mlp::Arch::n_dense)
        .def_property_readonly("out_w_offset", &mlp::Arch::out_w_offset)
        .def_property_readonly("out_b_offset", &mlp::Arch::out_b_offset)
        .def_property_readonly("out_in", &mlp::Arch::out_in)
        .def("layer_in", [](const mlp::Arch& a, int l) {
            if (l < 0 || l >= a.n_layers()) throw py::index_error("layer index out of range");
            return a.layer_in(l);
        })
        .def("w_offset", [](const mlp::Arch& a, int l) {
            if (l < 0 || l >= a.n_layers()) throw py::index_error("layer index out of range");
            return a.w_offset(l);
        })
        .def("b_offset", [](const mlp::Arch& a, int l) {
            if (l < 0 || l >= a.n_layers()) throw py::index_error("layer index out of range");
            return a.b_offset(l);
        });

    m.def("mlp_loss_grad", &loss_grad<float>, py::arg("arch"), py::arg("user_emb").noconvert(),
          py::arg("item_emb").noconvert(), py::arg("dense").noconvert(), py::arg("users"), py::arg("items"),
          py::arg("labels"), py::arg("l2"),
          "(loss, grad_user_emb, grad_item_emb, grad_dense): mean BCE + L2 loss of the samples and its "
          "exact gradient (float32 parameters).");
    m.def("mlp_loss_grad", &loss_grad<double>, py::arg("arch"), py::arg("user_emb").noconvert(),
          py::arg("item_emb").noconvert(), py::arg("dense").noconvert(), py::arg("users"), py::arg("items"),
          py::arg("labels"), py::arg("l2"), "Same in float64 (for finite-difference checks).");

    m.def(
        "mlp_train_epoch",
        [](const mlp::Arch& a, arr<float> user_emb, arr<float> item_emb, arr<float> dense, arr<float> m_user,
           arr<float> v_user, arr<float> m_item, arr<float> v_item, arr<float> m_dense, arr<float> v_dense,
           std::int64_t step, i64_in users, i64_in items, f32_in labels, const std::string& optimizer, float lr,
           float beta1, float beta2, float eps, float l2, int batch_size, int threads) {
            auto p = params_of<float>(a, user_emb, item_emb, dense);
            for (auto* x : {&user_emb, &item_emb, &dense})
                if (!x->writeable()) throw std::invalid_argument("parameter arrays must be writeable");
            mlp::OptConfig cfg;
            if (optimizer == "adam") cfg.optimizer = mlp::Optimizer::adam;
            else if (optimizer == "lazy_adam") cfg.optimizer = mlp::Optimizer::lazy_adam;
            else if (optimizer == "sgd") cfg.optimizer = mlp::Optimizer::sgd;
            else throw std::invalid_argument("optimizer must be 'adam', 'lazy_adam' or 'sgd', got '" + optimizer + "'");
            cfg.lr = lr; cfg.beta1 = beta1; cfg.beta2 = beta2; cfg.eps = eps; cfg.l2 = l2;
            cfg.batch_size = batch_size; cfg.threads = threads;
            if (!(beta1 >= 0.0f && beta1 < 1.0f) || !(beta2 >= 0.0f && beta2 < 1.0f) || !(eps > 0.0f))
                throw std::invalid_argument("beta1, beta2 must be in [0, 1) and eps > 0");
            mlp::OptState st;
            st.step = step;
            if (step < 0) throw std::invalid_argument("step must be >= 0");
            if (cfg.optimizer != mlp::Optimizer::sgd) {
                check_shape(m_user, {p.n_users, a.emb_width()}, "m_user");
                check_shape(v_user, {p.n_users, a.emb_width()}, "v_user");
                check_shape(m_item, {p.n_items, a.emb_width()}, "m_item");
                check_shape(v_item, {p.n_items, a.emb_width()}, "v_item");
                check_shape(m_dense, {py::ssize_t(a.n_dense())}, "m_dense");
                check_shape(v_dense, {py::ssize_t(a.n_dense())}, "v_dense");
                st.m_user = m_user.mutable_data(); st.v_user = v_user.mutable_data();
                st.m_item = m_item.mutable_data(); st.v_item = v_item.mutable_data();
                st.m_dense = m_dense.mutable_data(); st.v_dense = v_dense.mutable_data();
            }
            const py::ssize_t n = users.size();
            check_shape(users, {n}, "users");
            check_shape(items, {n}, "items");
            check_shape(labels, {n}, "labels");
            const std::int64_t *up = users.data(), *ip = items.data();
            const float* lp = labels.data();
            double loss;
            {
                py::gil_scoped_release nogil;
                loss = mlp::train_epoch(a, p, st, cfg, up, ip, lp, n);
            }
            return py::make_tuple(loss, st.step);
        },
        py::arg("arch"), py::arg("user_emb").noconvert(), py::arg("item_emb").noconvert(),
        py::arg("dense").noconvert(), py::arg("m_user").noconvert(), py::arg("v_user").noconvert(),
        py::arg("m_item").noconvert(), py::arg("v_item").noconvert(), py::arg("m_dense").noconvert(),
        py::arg("v_dense").noconvert(), py::arg("step"), py::arg("users"), py::arg("items"), py::arg("labels"),
        py::arg("optimizer"), py::arg("lr"), py::arg("beta1"), py::arg("beta2"), py::arg("eps"), py::arg("l2"),
        py::arg("batch_size"), py::arg("threads"),
        "One training epoch over the given samples, in place. Returns (mean loss, optimiser step count).");

    m.def(
        "mlp_sample_epoch",
        [](i64_in indptr, i32_in indices, std::int64_t n_items, int negatives, std::uint64_t seed, int threads) {
            if (indptr.ndim() != 1 || indptr.size() < 1) throw std::invalid_argument("indptr must be 1-D, non-empty");
            if (indices.ndim() != 1) throw std::invalid_argument("indices must be 1-D");
            const std::int64_t n_users = indptr.size() - 1;
            const std::int64_t* ip = indptr.data();
            if (ip[0] != 0 || ip[n_users] != std::int64_t(indices.size()))
                throw std::invalid_argument("indptr must start at 0 and end at len(indices)");
            for (std::int64_t u = 0; u < n_users; ++u)
                if (ip[u + 1] < ip[u]) throw std::invalid_argument("indptr must be non-decreasing");
            if (negatives < 1) throw std::invalid_argument("negatives must be >= 1, got " + std::to_string(negatives));
            const std::int64_t n = mlp::epoch_samples(ip, n_users, n_items, negatives);
            arr<std::int64_t> users(n), items(n);
            arr<float> labels(n);
            std::int64_t *up = users.mutable_data(), *itp = items.mutable_data();
            float* lp = labels.mutable_data();
            const std::int32_t* idx = indices.data();
            {
                py::gil_scoped_release nogil;
                mlp::sample_epoch(ip, idx, n_users, n_items, negatives, seed, threads, up, itp, lp);
            }
            return py::make_tuple(users, items, labels);
        },
        py::arg("indptr"), py::arg("indices"), py::arg("n_items"), py::arg("negatives"), py::arg("seed"),
        py::arg("threads"),
        "(users, items, labels) of one epoch: every positive plus `negatives` unseen items each, shuffled.");

    m.def(
        "mlp_score_pairs",
        [](const mlp::Arch& a, arr<float> user_emb, arr<float> item_emb, arr<float> dense, i64_in users,
           i64_in items, int threads) {
            auto p = params_of<float>(a, user_emb, item_emb, dense);
            const py::ssize_t n = users.size();
            check_shape(users, {n}, "users");
            check_shape(items, {n}, "items");
            arr<float> out(n);
            float* op = out.mutable_data();
            const std::int64_t *up = users.data(), *ip = items.data();
            {
                py::gil_scoped_release nogil;
                mlp::score_pairs(a, p, up, ip, n, op, threads);
            }
            return out;
        },
        py::arg("arch"), py::arg("user_emb").noconvert(), py::arg("item_emb").noconvert(),
        py::arg("dense").noconvert(), py::arg("users"), py::arg("items"), py::arg("threads"),
        "Logits (n,) float32 of the (users[j], items[j]) pairs.");

    m.def(
        "mlp_score_all",
        [](const mlp::Arch& a, arr<float> user_emb, arr<float> item_emb, arr<float> dense, i64_in users,
           int threads) {
            auto p = params_of<float>(a, user_emb, item_emb, dense);
            const py::ssize_t n = users.size();
            check_shape(users, {n}, "users");
            arr<float> out({std::int64_t(n), p.n_items});
            float* op = out.mutable_data();
            const std::int64_t* up = users.data();
            {
                py::gil_scoped_release nogil;
                mlp::score_all_items(a, p, up, n, op, threads);
            }
            return out;
        },
        py::arg("arch"), py::arg("user_emb").noconvert(), py::arg("item_emb").noconvert(),
        py::arg("dense").noconvert(), py::arg("users"), py::arg("threads"),
        "Logits (n, n_items) float32 of each user against every item.");
}
