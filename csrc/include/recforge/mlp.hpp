// recforge/mlp.hpp — NCF-style scorer (He et al. 2017): GMF, MLP and NeuMF forward, backward,
// optimisers, negative sampling and batched scoring. No Python in here.
//
// Model (one logit per (user, item) pair; the probability is sigmoid(logit)):
//   e_u = user_emb[u] = [g_u (dim_gmf) | m_u (dim_mlp)],  e_i = item_emb[i] = [g_i | m_i]
//   GMF branch:  g = g_u * g_i                                           (dim_gmf)
//   MLP branch:  h_0 = [m_u, m_i] (2 dim_mlp);  h_l = relu(h_{l-1} W_l + b_l)   (layers[l-1])
//   logit = [g, h_L] . w_out + b_out
// mode gmf has dim_mlp = 0 and no layers; mode mlp has dim_gmf = 0.
//
// Memory layout (all row-major, float32 for training; the loss/gradient function is templated so
// tests can run it in float64):
//   user_emb (n_users x E), item_emb (n_items x E), E = dim_gmf + dim_mlp;
//   dense: one flat vector [W_1 (in_1 x out_1), b_1, ..., W_L, b_L, w_out (out_in), b_out (1)],
//   W_l stored input-major (in x out) so the forward inner loop runs over contiguous outputs.
//
// Side features (optional, per side): with a feature matrix X_u (users x n_user_features, CSR with
// values) the user embedding table holds one row per *feature* and a user's row is
//   e_u = sum_j X_u[u, j] * user_emb[j]      (LightFM's representation; identity features make it
// plain NCF), and likewise for items. The gradient of a feature row is the X-weighted sum of the
// gradients of the representations that use it; the L2 term below applies to the representation
// e_u. Without a feature matrix (null) row u of the table is e_u itself (the default, unchanged).
// The accumulation order of feature-row gradients is sample order, then the row's column order,
// so the determinism contract below holds with features too.
//
// Training loss of a mini-batch B of (u, i, y) samples, y in {0, 1}:
//   mean over B of  BCE(sigmoid(logit), y) + l2 * (|e_u|^2 + |e_i|^2)
// i.e. L2 on the embedding rows a sample touches (the usual PyTorch NCF formulation).
//
// Optimisers (documented precisely because the PyTorch comparison depends on it), with
// bc1 = 1 - beta1^t, bc2 = 1 - beta2^t and t the global step count:
//   adam: torch.optim.Adam over every parameter (the NCF reference implementations):
//           p -= lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps)
//         for the dense weights and for *every* embedding row each step; rows absent from the
//         batch have gradient 0 (their moments decay, momentum keeps moving them). Costs
//         (n_users + n_items) x E per step, split over the threads.
//   lazy_adam: the dense weights as adam; embedding rows as torch.optim.SparseAdam: only the
//         rows present in the batch (gradients of repeated rows summed first) update,
//           p -= lr * sqrt(bc2) / bc1 * m / (sqrt(v) + eps);
//         per-step cost independent of the catalogue size.
//   sgd:  p -= lr * g for dense weights and the rows in the batch (identical to dense SGD).
//
// Threading and determinism: a batch is cut into fixed chunks (size depends only on batch_size),
// chunks run on `threads` threads, each chunk writes its own dense-gradient buffer, and the
// buffers are summed in chunk order; repeated embedding rows are summed in sample order. The
// result is therefore bit-identical for a given seed whatever the thread count.
#pragma once

#include <cstdint>
#include <vector>

#include "recforge/csr.hpp"

namespace recforge::mlp {

enum class Mode : int { gmf = 0, mlp = 1, neumf = 2 };
enum class Optimizer : int { adam = 0, sgd = 1, lazy_adam = 2 };

struct Arch {
    Mode mode = Mode::neumf;
    int dim_gmf = 0;
    int dim_mlp = 0;
    std::vector<int> layers;  // hidden ReLU widths of the MLP branch

    // Throws std::invalid_argument when the sizes are inconsistent with the mode.
    void validate() const;
    int emb_width() const { return dim_gmf + dim_mlp; }
    int n_layers() const { return static_cast<int>(layers.size()); }
    int layer_in(int l) const { return l == 0 ? 2 * dim_mlp : layers[l - 1]; }
    int layer_out(int l) const { return layers[l]; }
    int out_in() const { return dim_gmf + (layers.empty() ? 0 : layers.back()); }
    std::int64_t w_offset(int l) const;  // offset of W_l (0-based l) in the dense vector
    std::int64_t b_offset(int l) const { return w_offset(l) + std::int64_t(layer_in(l)) * layer_out(l); }
    std::int64_t out_w_offset() const { return w_offset(n_layers()); }
    std::int64_t out_b_offset() const { return out_w_offset() + out_in(); }
    std::int64_t n_dense() const { return out_b_offset() + 1; }
    int widest() const;  // widest activation (for workspaces)
};

template <class T>
struct Params {
    T* user_emb = nullptr;  // n_users x E (rows: users, or user features when user_features is set)
    T* item_emb = nullptr;  // n_items x E (rows: items, or item features)
    T* dense = nullptr;     // n_dense
    std::int64_t n_users = 0;  // rows of user_emb
    std::int64_t n_items = 0;  // rows of item_emb
    // Optional feature matrices (validated CSR with finite values, n_cols = rows of the table; see
    // "Side features"); null: identity. Used by loss_and_grad and train_epoch; scoring takes the
    // materialised representations (X @ table) instead.
    const CsrView* user_features = nullptr;
    const CsrView* item_features = nullptr;

    // Number of users / items the sample ids index.
    std::int64_t user_rows() const { return user_features ? user_features->n_rows : n_users; }
    std::int64_t item_rows() const { return item_features ? item_features->n_rows : n_items; }
    // Throws std::invalid_argument when a feature matrix does not fit its table.
    void validate_features() const;
};

struct OptConfig {
    Optimizer optimizer = Optimizer::adam;
    float lr = 1e-3f;
    float beta1 = 0.9f;
    float beta2 = 0.999f;
    float eps = 1e-8f;
    float l2 = 0.0f;
    int batch_size = 256;
    int threads = 0;
};

// Adam moments (unused by sgd; may be null then). `step` counts optimiser steps taken so far.
struct OptState {
    float* m_user = nullptr;
    float* v_user = nullptr;
    float* m_item = nullptr;
    float* v_item = nullptr;
    float* m_dense = nullptr;
    float* v_dense = nullptr;
    std::int64_t step = 0;
};

// Loss (as defined above, mean over the n samples) and its exact gradient for every parameter,
// single-threaded. grad_user / grad_item are dense (n_users x E / n_items x E: the tables' shapes) and grad_dense has
// n_dense entries; all three are overwritten. Used by the finite-difference tests.
template <class T>
double loss_and_grad(const Arch& arch, const Params<T>& params, const std::int64_t* users, const std::int64_t* items,
                     const float* labels, std::int64_t n, double l2, T* grad_user, T* grad_item, T* grad_dense);

// One pass over the given samples in order, in mini-batches of config.batch_size, updating params
// and state in place. Returns the mean training loss over the samples.
double train_epoch(const Arch& arch, Params<float>& params, OptState& state, const OptConfig& config,
                   const std::int64_t* users, const std::int64_t* items, const float* labels, std::int64_t n);

// Number of samples sample_epoch writes for the positives `m` (users x items): every stored entry
// plus `negatives` per entry for users that have at least one unseen item.
std::int64_t epoch_samples(const CsrView& m, int negatives);

// Training samples for one epoch from the positives `m` (a validated CSR users x items with traits
// {unique}; values unused): each positive (u, i, 1) followed by `negatives` samples (u, j, 0) with
// j drawn uniformly from the items u has not interacted with, then shuffled. Writes
// epoch_samples(m, negatives) entries. Deterministic for (seed) whatever `threads`.
void sample_epoch(const CsrView& m, int negatives, std::uint64_t seed, int threads, std::int64_t* users,
                  std::int64_t* items, float* labels);

// Logits of n (user, item) pairs.
void score_pairs(const Arch& arch, const Params<float>& params, const std::int64_t* users, const std::int64_t* items,
                 std::int64_t n, float* out, int threads);

// Logits of every item for each of n_query users: out is n_query x n_items. The first MLP layer is
// split into a user part and an item part computed once per call (h_1 = relu(a_u + c_i)), which
// removes the largest GEMM from the per-pair work.
void score_all_items(const Arch& arch, const Params<float>& params, const std::int64_t* users, std::int64_t n_query,
                     float* out, int threads);

}  // namespace recforge::mlp
