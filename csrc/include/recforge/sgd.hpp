// recforge/sgd.hpp — stochastic-gradient factorisation kernels: biased MF for explicit ratings
// (SGDMF) and pairwise ranking for implicit feedback (BPR, WARP). No Python in here.
//
// Contract shared by every kernel below:
// - Factors are row-major float32: P (n_users x f) and Q (n_items x f); biases float32. The caller
//   owns every buffer; the kernels update P, Q and the biases in place and allocate only scratch.
// - Counts of interactions are int64 (a data set may pass 2^31); user/item ids are int32.
// - One call runs one epoch. Threads update the shared factors without locks (Hogwild, Niu et
//   al. 2011): with threads > 1 the interleaving of updates, hence the result, varies from run
//   to run. With threads == 1 an epoch is a pure function of (inputs, seed, epoch): bitwise
//   repeatable on the same build and CPU.
// - An epoch uses at most one thread per 2^16 samples (small epochs run on fewer threads than
//   asked: see useful_threads in sgd_internal.hpp).
// - Random streams: thread t of epoch e draws from a stream seeded from (seed, e, t), so a run
//   never depends on which thread happens to start first.
// - Ids are checked at the boundary (binding + Python facade); the kernels trust them.
#pragma once

#include <cstdint>

namespace recforge::sgd {

// ---- biased matrix factorisation (explicit ratings) ---------------------------------------

struct Rating {                  // one (user, item, rating) triplet, packed so a visit is one load
    std::int32_t user;
    std::int32_t item;
    float value;
};

struct MFModel {                 // updated in place; user_bias/item_bias may be null (no biases)
    float* user_factors = nullptr;   // n_users x factors
    float* item_factors = nullptr;   // n_items x factors
    float* user_bias = nullptr;      // n_users
    float* item_bias = nullptr;      // n_items
    int factors = 0;
    float global_mean = 0.f;
};

struct MFStep {
    float lr = 0.005f;           // learning rate of this epoch (the schedule lives in Python)
    float reg = 0.02f;           // L2 on factors
    float bias_reg = 0.02f;      // L2 on biases
    bool freeze_items = false;   // fold-in: item factors and biases stay as they are
    int threads = 0;             // <= 0: all cores
    std::uint64_t seed = 42;
    std::uint64_t epoch = 0;
};

// One epoch of SGD: shuffles `ratings` (n of them) in place from (seed, epoch), then visits them
// in that order, each thread a contiguous share. Each update uses the pre-update values of both
// factor rows (simultaneous step). Returns the mean squared error of the predictions made before
// each update (the training loss). The visiting order depends on every earlier epoch's shuffle,
// so a fit is repeatable only from the same initial order (as the Python layer guarantees).
double mf_epoch(Rating* ratings, std::int64_t n, const MFModel& model, const MFStep& step);

// Predictions mu + b_u + b_i + p_u . q_i for n (user, item) pairs into out. An id outside
// [0, n_users) / [0, n_items) is an unknown user / item: its factors and bias count as zero
// (the prediction falls back to the global mean plus the known side's bias).
void mf_predict(const MFModel& model, std::int32_t n_users, std::int32_t n_items,
                const std::int64_t* users, const std::int64_t* items, std::int64_t n, int threads,
                float* out);

// ---- pairwise ranking (implicit feedback) -------------------------------------------------

enum class Sampling : int { uniform = 0, popularity = 1 };
enum class Loss : int { bpr = 0, warp = 1 };

struct Positives {               // CSR users x items with sorted, unique column indices per row
    const std::int64_t* indptr = nullptr;   // n_users + 1
    const std::int32_t* indices = nullptr;  // nnz
    const std::int32_t* row_of = nullptr;   // nnz: the user (row) of each stored entry
    std::int64_t nnz = 0;
    std::int32_t n_users = 0;
    std::int32_t n_items = 0;
};

struct RankModel {
    float* user_factors = nullptr;  // n_users x factors
    float* item_factors = nullptr;  // n_items x factors
    float* item_bias = nullptr;     // n_items, or null
    int factors = 0;
};

struct RankStep {
    float lr = 0.05f;
    float reg = 0.01f;              // L2 on the factors (and biases) touched by an update
    int negatives = 1;              // BPR: negatives (pairs) per sampled positive
    Sampling sampling = Sampling::uniform;
    Loss loss = Loss::bpr;
    int max_sampled = 100;          // WARP: negatives tried per positive before giving up
    bool freeze_items = false;      // fold-in: item factors and biases stay as they are
    int threads = 0;
    std::uint64_t seed = 42;
    std::uint64_t epoch = 0;
};

struct RankStats {
    double loss = 0.0;              // BPR: mean -log sigmoid(x_uij); WARP: mean weighted hinge
    std::int64_t pairs = 0;         // (u, i, j) triples that were scored
    std::int64_t updates = 0;       // of which led to a parameter update
    std::int64_t skipped = 0;       // positives with no valid negative found (user rated ~everything)
};

// One epoch: nnz positives drawn uniformly (with replacement) from the stored entries, each
// paired with negatives drawn by `sampling` and verified against the user's row.
RankStats rank_epoch(const Positives& data, const RankModel& model, const RankStep& step);

// Exposes the negative sampler the epochs use (for tests): out[k] is a negative for users[k],
// drawn from the stream seeded by `seed`, or -1 when none was found within the try budget.
void sample_negatives(const Positives& data, const std::int32_t* users, std::int64_t n,
                      Sampling sampling, std::uint64_t seed, std::int32_t* out);

}  // namespace recforge::sgd
