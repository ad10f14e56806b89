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
// - Data is prepared once per fit by prepare_ratings / PositiveData (below) from a validated CSR
//   (csr.hpp): they check what the epochs rely on, so the epochs trust their input.
#pragma once

#include <cstdint>
#include <vector>

#include "recforge/csr.hpp"

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

// The stored entries of `m` (users x items; a validated CSR with traits {finite}), packed as
// triplets in storage order (row by row). Throws std::invalid_argument unless 1 <= n_rows, n_cols
// < 2^31.
struct RatingData {
    std::vector<Rating> ratings;
    std::int32_t n_users = 0;
    std::int32_t n_items = 0;
};
RatingData prepare_ratings(const CsrView& m);

// One epoch of SGD: shuffles `ratings` (n of them) in place from (seed, epoch), then visits them
// in that order, each thread a contiguous share. Each update uses the pre-update values of both
// factor rows (simultaneous step). Returns the mean squared error of the predictions made before
// each update (the training loss). The visiting order depends on every earlier epoch's shuffle,
// so a fit is repeatable only from the same initial order (as the Python layer guarantees).
double mf_epoch(Rating* ratings, std::int64_t n, const MFModel& model, const MFStep& step);

// Predictions mu + b_u + b_i + p_u . q_i for n (user, item) pairs into out. An id outside
// [0, n_users) / [0, n_items) is an unknown user / item: its factors and bias count as zero
// (the prediction falls back to the global mean plus the known side's bias).
void mf_predict(const MFModel& model, std::int32_t n_users, std::int32_t n_items, const std::int64_t* users,
                const std::int64_t* items, std::int64_t n, int threads, float* out);

// ---- pairwise ranking (implicit feedback) -------------------------------------------------

enum class Sampling : int { uniform = 0, popularity = 1 };
enum class Loss : int { bpr = 0, warp = 1 };

// Positives as the ranking epochs read them: a CSR users x items whose rows hold sorted, unique
// item ids, and the row (user) of every stored entry.
struct Positives {
    CsrView csr;                           // values unused (null)
    const std::int32_t* row_of = nullptr;  // csr.nnz() entries
};

// The positives (stored values > 0; every entry when `m` has no values) of `m`, a validated CSR
// users x items with traits {unique}, copied with their row_of. Throws std::invalid_argument
// unless 1 <= n_items < 2^31 and n_users < 2^31.
class PositiveData {
public:
    explicit PositiveData(const CsrView& m);
    Positives view() const {
        return {CsrView{indptr_.data(), indices_.data(), nullptr, n_users_, n_items_}, row_of_.data()};
    }
    std::int32_t n_users() const { return static_cast<std::int32_t>(n_users_); }
    std::int32_t n_items() const { return static_cast<std::int32_t>(n_items_); }
    std::int64_t nnz() const { return static_cast<std::int64_t>(indices_.size()); }

private:
    std::vector<std::int64_t> indptr_;
    std::vector<std::int32_t> indices_, row_of_;
    std::int64_t n_users_ = 0, n_items_ = 0;
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

// Exposes the negative sampler the epochs use (for tests): out[k] is a negative for users[k]
// (ids in [0, n_users), checked by the caller), drawn from the stream seeded by `seed`, or -1 when
// none was found within the try budget. Popularity sampling needs at least one stored entry.
void sample_negatives(const Positives& data, const std::int32_t* users, std::int64_t n, Sampling sampling,
                      std::uint64_t seed, std::int32_t* out);

}  // namespace recforge::sgd
