// recforge/hybrid.hpp — the hybrid (LightFM-style) factor model's training epoch. No Python.
//
// A user's representation is the weighted sum of their features' embeddings, u = sum_k F_u[u,k] E_u[k]
// (f floats), and an item's is i = sum_k F_i[i,k] E_i[k] with the bias b_i = sum_k F_i[i,k] b[k];
// the score is u . i + b_i. With identity features only this is plain matrix factorisation; with
// shared features (genres, demographics) an entity unseen in training still has a representation.
//
// An epoch draws nnz(positives) training positives (u, i) with replacement: a user with probability
// proportional to row_nnz(u)^user_power, then one of their positives uniformly. user_power 1 is a
// uniform draw over all positives; 0 every user with a positive alike (as per-user metrics average
// them); in between, heavy users count more than a light one but less than their history. Then a
// negative j
// for each among `negatives` (items with a training interaction, not in u's row), and takes one
// Adagrad step on the features of u, i and j:
//   bpr:      maximise log sigmoid(s_ui - s_uj);
//   warp:     draw up to max_sampled negatives until s_uj > s_ui - 1, then a hinge step weighted by
//             log(floor((n_negatives - 1) / draws)) (Weston et al. 2011); no violator: no step. A
//             draw is first screened against a table of item representations (computed at the
//             epoch's start, a step's items refreshed after it) and scored exactly only when it
//             violates there;
//   logistic: log-likelihood of label 1 for (u, i) and 0 for (u, j).
// L2 regularisation (user_reg, item_reg) applies to the embeddings a step touches.
//
// Samples are split into fixed blocks, each with its own random stream (seed, epoch, block), so a
// one-thread epoch is reproducible; several threads update the shared arrays without locks
// (Hogwild), as every SGD kernel here, except the rows of features many entities share (genres,
// demographics): each thread steps on its own copies of those, taken when a block starts, and adds
// the block's changes to the shared rows when it ends (one lock per block).
#pragma once

#include <cstdint>

#include "recforge/csr.hpp"

namespace recforge::hybrid {

enum class Loss : int { bpr = 0, warp = 1, logistic = 2 };

// The trained arrays, updated in place: embeddings (n_features x factors, row-major), item feature
// biases (n_item_features), and their Adagrad accumulators of the same shapes. A side's embedding
// and accumulator rows lie `stride` floats apart (>= factors; factors when 0): both may be views of
// one array whose rows hold a feature's embedding and accumulators side by side.
struct Params {
    float* user_emb = nullptr;
    float* item_emb = nullptr;
    float* item_bias = nullptr;
    float* user_emb_g2 = nullptr;
    float* item_emb_g2 = nullptr;
    float* item_bias_g2 = nullptr;
    int factors = 0;
    std::int64_t user_stride = 0;
    std::int64_t item_stride = 0;
};

struct Step {
    float lr;
    float user_reg;
    float item_reg;
    Loss loss;
    int max_sampled;
    int threads;
    std::uint64_t seed;
    std::uint64_t epoch;
    float user_power = 1.0f;  // positives drawn via a user with probability ~ row_nnz^user_power
};

struct EpochStats {
    double loss = 0.0;         // mean loss over the samples that had a negative
    std::int64_t samples = 0;  // samples that took a step
};

// positives: users x items (unique sorted rows); user_features: users x n_user_features and
// item_features: items x n_item_features (finite values); negatives: `n_negatives` item ids in
// [0, n_items). Trusted (the binding checks shapes and traits).
EpochStats epoch(const CsrView& positives, const CsrView& user_features, const CsrView& item_features,
                 const std::int32_t* negatives, std::int64_t n_negatives, const Params& params, const Step& step);

}  // namespace recforge::hybrid
