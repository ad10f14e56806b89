// mlp.cpp — NCF model architecture, exact loss/gradient (for tests) and the training epoch.
// See recforge/mlp.hpp for the model, memory layout, optimiser variants and determinism contract.
#include "recforge/mlp.hpp"

#include <atomic>
#include <cmath>
#include <condition_variable>
#include <mutex>
#include <stdexcept>
#include <string>

#include "mlp_kernels.hpp"
#include "recforge/parallel.hpp"

namespace recforge::mlp {

using detail::Workspace;

void Arch::validate() const {
    // Widths up to 2^20 keep every derived width (2 dim_mlp, dim_gmf + dim_mlp, ...) inside an int.
    constexpr int kMaxWidth = 1 << 20;
    if (dim_gmf < 0 || dim_mlp < 0 || dim_gmf > kMaxWidth || dim_mlp > kMaxWidth)
        throw std::invalid_argument("embedding dimensions must be in [0, 2^20]");
    for (int w : layers)
        if (w <= 0 || w > kMaxWidth)
            throw std::invalid_argument("layer sizes must be in [1, 2^20], got " + std::to_string(w));
    switch (mode) {
        case Mode::gmf:
            if (dim_gmf <= 0 || dim_mlp != 0 || !layers.empty())
                throw std::invalid_argument("mode gmf needs dim_gmf >= 1, dim_mlp == 0 and no layers");
            break;
        case Mode::mlp:
            if (dim_mlp <= 0 || dim_gmf != 0 || layers.empty())
                throw std::invalid_argument("mode mlp needs dim_mlp >= 1, dim_gmf == 0 and >= 1 layer");
            break;
        case Mode::neumf:
            if (dim_gmf <= 0 || dim_mlp <= 0 || layers.empty())
                throw std::invalid_argument("mode neumf needs dim_gmf >= 1, dim_mlp >= 1 and >= 1 layer");
            break;
        default:
            throw std::invalid_argument("mode must be gmf (0), mlp (1) or neumf (2)");
    }
}

std::int64_t Arch::w_offset(int l) const {
    std::int64_t off = 0;
    for (int j = 0; j < l; ++j) off += std::int64_t(layer_in(j)) * layer_out(j) + layer_out(j);
    return off;
}

template <class T>
void Params<T>::validate_features() const {
    const auto check = [](const CsrView* f, std::int64_t table_rows, const char* side) {
        if (f == nullptr) return;
        if (f->data == nullptr && f->nnz() > 0)
            throw std::invalid_argument(std::string(side) + "_features must carry values");
        if (f->n_cols != table_rows)
            throw std::invalid_argument(std::string(side) + "_features has " + std::to_string(f->n_cols) +
                                        " columns but the " + side + " embedding table has " +
                                        std::to_string(table_rows) + " rows (one per feature)");
    };
    check(user_features, n_users, "user");
    check(item_features, n_items, "item");
}

template struct Params<float>;
template struct Params<double>;

int Arch::widest() const {
    int w = 2 * dim_mlp;
    for (int x : layers) w = std::max(w, x);
    return std::max(w, 1);
}

template <class T>
double loss_and_grad(const Arch& arch, const Params<T>& params, const std::int64_t* users, const std::int64_t* items,
                     const float* labels, std::int64_t n, double l2, T* grad_user, T* grad_item, T* grad_dense) {
    arch.validate();
    if (n <= 0) throw std::invalid_argument("loss_and_grad needs at least one sample");
    params.validate_features();
    const int E = arch.emb_width();
    for (std::int64_t s = 0; s < n; ++s) {
        if (users[s] < 0 || users[s] >= params.user_rows() || items[s] < 0 || items[s] >= params.item_rows())
            throw std::out_of_range("sample " + std::to_string(s) + " has a user or item id out of range");
    }
    std::fill(grad_user, grad_user + params.n_users * E, T(0));
    std::fill(grad_item, grad_item + params.n_items * E, T(0));
    std::fill(grad_dense, grad_dense + arch.n_dense(), T(0));
    std::vector<T> wt(detail::n_weights(arch));
    detail::transpose_weights(arch, params.dense, wt.data());

    Workspace<T> ws;
    ws.resize(arch, 1);
    std::vector<T> gu(E), gi(E), rep_u(E), rep_i(E);
    const T scale = T(1) / T(n);
    double loss = 0.0;
    for (std::int64_t s = 0; s < n; ++s) {
        const T* ur = detail::represent(params.user_features, users[s], params.user_emb, E, rep_u.data());
        const T* ir = detail::represent(params.item_features, items[s], params.item_emb, E, rep_i.data());
        detail::forward(arch, params.dense, &ur, &ir, 1, ws);
        const T z = ws.z[0], y = T(labels[s]);
        double sq = 0.0;
        for (int k = 0; k < E; ++k) sq += double(ur[k]) * ur[k] + double(ir[k]) * ir[k];
        loss += double(detail::softplus(z) - y * z) + l2 * sq;
        ws.dz[0] = (detail::sigmoid(z) - y) * scale;
        detail::backward(arch, params.dense, wt.data(), &ur, &ir, 1, T(l2) * scale, ws, grad_dense, gu.data(),
                         gi.data());
        detail::scatter_gradient(params.user_features, users[s], gu.data(), E, grad_user);
        detail::scatter_gradient(params.item_features, items[s], gi.data(), E, grad_item);
    }
    // The dense gradient was accumulated with the 1/n scale already inside dz.
    return loss / double(n);
}

template double loss_and_grad<float>(const Arch&, const Params<float>&, const std::int64_t*, const std::int64_t*,
                                     const float*, std::int64_t, double, float*, float*, float*);
template double loss_and_grad<double>(const Arch&, const Params<double>&, const std::int64_t*, const std::int64_t*,
                                      const float*, std::int64_t, double, double*, double*, double*);

namespace {

// Barrier for the training threads: spins briefly (a step's phases take tens to hundreds of
// microseconds), then blocks. OpenMP's own barriers spin much longer by default, and on a machine
// busier than its cores a spinning thread starves the one it waits for (measured: 8x slower with
// 2 threads at load 7 on 2 cores; passive waiting recovers it).
class Barrier {
public:
    void reset(int n) { n_ = n; }
    void wait() {
        if (n_ <= 1) return;
        const std::uint64_t gen = generation_.load(std::memory_order_acquire);
        if (arrived_.fetch_add(1, std::memory_order_acq_rel) == n_ - 1) {
            arrived_.store(0, std::memory_order_relaxed);
            {
                std::lock_guard<std::mutex> lock(mu_);
                generation_.fetch_add(1, std::memory_order_release);
            }
            cv_.notify_all();
            return;
        }
        for (int i = 0; i < 2000; ++i) {
            if (generation_.load(std::memory_order_acquire) != gen) return;
#if defined(__x86_64__) || defined(_M_X64)
            __builtin_ia32_pause();
#endif
        }
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != gen; });
    }

private:
    int n_ = 1;
    std::atomic<int> arrived_{0};
    std::atomic<std::uint64_t> generation_{0};
    std::mutex mu_;
    std::condition_variable cv_;
};

// Forward + backward of one training chunk (float; compiled per ISA). Returns the summed per-sample
// loss; adds the chunk's dense gradient into grad_dense and writes per-sample row gradients.
RECFORGE_SIMD_CLONES(RECFORGE_ISA_F)
double train_chunk(const Arch& arch, const float* dense, const float* wt, const Params<float>& params,
                   const std::int64_t* users, const std::int64_t* items, const float* labels, int n, float scale,
                   float l2, Workspace<float>& ws, const float** urows, const float** irows, float* rep_u, float* rep_i,
                   float* grad_dense, float* grad_u, float* grad_i) {
    const int E = arch.emb_width();
    for (int r = 0; r < n; ++r) {
        // rep_u / rep_i are null without features (no offset is taken from a null pointer).
        urows[r] = detail::represent(params.user_features, users[r], params.user_emb, E,
                                     params.user_features ? rep_u + std::size_t(r) * E : nullptr);
        irows[r] = detail::represent(params.item_features, items[r], params.item_emb, E,
                                     params.item_features ? rep_i + std::size_t(r) * E : nullptr);
    }
    detail::forward(arch, dense, urows, irows, n, ws);
    double loss = 0.0;
    for (int r = 0; r < n; ++r) {
        const float z = ws.z[r], y = labels[r];
        loss += double(detail::softplus(z) - y * z);
        if (l2 != 0.0f) {
            float sq = 0.0f;
            for (int k = 0; k < E; ++k) sq += urows[r][k] * urows[r][k] + irows[r][k] * irows[r][k];
            loss += double(l2) * sq;
        }
        ws.dz[r] = (detail::sigmoid(z) - y) * scale;
    }
    detail::backward(arch, dense, wt, urows, irows, n, l2 * scale, ws, grad_dense, grad_u, grad_i);
    return loss;
}

// torch.optim.Adam's update of n parameters with gradient g (inlined into each caller's clones).
RECFORGE_INLINE void adam_step(std::int64_t n, const float* __restrict g, float lr, float b1, float b2, float eps,
                               float bc1, float bc2, float* __restrict p, float* __restrict m, float* __restrict v) {
    const float step = lr / bc1, inv_sqrt_bc2 = 1.0f / std::sqrt(bc2);
    for (std::int64_t j = 0; j < n; ++j) {
        m[j] = b1 * m[j] + (1.0f - b1) * g[j];
        v[j] = b2 * v[j] + (1.0f - b2) * g[j] * g[j];
        p[j] -= step * m[j] / (std::sqrt(v[j]) * inv_sqrt_bc2 + eps);
    }
}

// Dense weights: gradient = sum of the chunk buffers in chunk order (accumulated into chunk 0's
// buffer, a vectorisable loop), then the optimiser step (torch.optim.Adam's formula for adam).
RECFORGE_SIMD_CLONES(RECFORGE_ISA_F)
void update_dense(float* __restrict grad_chunks, int nch, std::int64_t nd, bool adam, float lr, float b1, float b2,
                  float eps, float bc1, float bc2, float* __restrict p, float* __restrict m, float* __restrict v) {
    float* __restrict g = grad_chunks;
    for (int c = 1; c < nch; ++c) {
        const float* __restrict gc = grad_chunks + std::size_t(c) * nd;
        for (std::int64_t j = 0; j < nd; ++j) g[j] += gc[j];
    }
    if (!adam) {
        for (std::int64_t j = 0; j < nd; ++j) p[j] -= lr * g[j];
        return;
    }
    adam_step(nd, g, lr, b1, b2, eps, bc1, bc2, p, m, v);
}

// Embedding rows present in the batch (lazy Adam as torch.optim.SparseAdam, or SGD); resets
// their slots for the next batch.
RECFORGE_SIMD_CLONES(RECFORGE_ISA_F)
void update_rows(const std::int64_t* rows, int n_rows, const float* __restrict acc, int E, bool adam, float lr,
                 float b1, float b2, float eps, float bc1, float bc2, float* emb, float* m_all, float* v_all,
                 std::int32_t* slot) {
    const float step = lr * std::sqrt(bc2) / bc1;
    for (int q = 0; q < n_rows; ++q) {
        const std::int64_t row = rows[q];
        const float* __restrict g = acc + std::size_t(q) * E;
        float* __restrict p = emb + row * E;
        if (adam) {
            float* __restrict m = m_all + row * E;
            float* __restrict v = v_all + row * E;
            for (int k = 0; k < E; ++k) {
                m[k] = b1 * m[k] + (1.0f - b1) * g[k];
                v[k] = b2 * v[k] + (1.0f - b2) * g[k] * g[k];
                p[k] -= step * m[k] / (std::sqrt(v[k]) + eps);
            }
        } else {
            for (int k = 0; k < E; ++k) p[k] -= lr * g[k];
        }
        slot[row] = -1;
    }
}

// Dense Adam on embedding tables (torch.optim.Adam over the whole table, as the NCF reference
// code does): every row in [lo, hi) takes an Adam step, with gradient acc[slot[row]] for rows in
// the batch and zero for the others (their moments decay and momentum keeps moving them). Resets
// the slots of the batch's rows. Rows are independent, so any split of [lo, hi) over threads gives
// the same bits.
RECFORGE_SIMD_CLONES(RECFORGE_ISA_F)
void sweep_rows_dense(std::int64_t lo, std::int64_t hi, const float* __restrict acc, const float* __restrict zeros,
                      int E, float lr, float b1, float b2, float eps, float bc1, float bc2, float* emb, float* m_all,
                      float* v_all, std::int32_t* slot) {
    for (std::int64_t row = lo; row < hi; ++row) {
        const std::int32_t q = slot[row];
        const float* g = q >= 0 ? acc + std::size_t(q) * E : zeros;
        adam_step(E, g, lr, b1, b2, eps, bc1, bc2, emb + row * E, m_all + row * E, v_all + row * E);
        slot[row] = -1;
    }
}

}  // namespace

double train_epoch(const Arch& arch, Params<float>& params, OptState& state, const OptConfig& config,
                   const std::int64_t* users, const std::int64_t* items, const float* labels, std::int64_t n) {
    arch.validate();
    if (config.batch_size <= 0) throw std::invalid_argument("batch_size must be >= 1");
    if (!(config.lr > 0.0f) || !std::isfinite(config.lr)) throw std::invalid_argument("lr must be finite and > 0");
    if (!(config.l2 >= 0.0f) || !std::isfinite(config.l2)) throw std::invalid_argument("l2 must be finite and >= 0");
    const bool dense_adam = config.optimizer == Optimizer::adam;
    const bool adam = dense_adam || config.optimizer == Optimizer::lazy_adam;
    if (adam && (!state.m_user || !state.v_user || !state.m_item || !state.v_item || !state.m_dense || !state.v_dense))
        throw std::invalid_argument("adam needs its moment buffers");
    params.validate_features();
    for (std::int64_t s = 0; s < n; ++s) {
        if (users[s] < 0 || users[s] >= params.user_rows() || items[s] < 0 || items[s] >= params.item_rows())
            throw std::out_of_range("sample " + std::to_string(s) + " has a user or item id out of range");
    }
    if (n == 0) return 0.0;

    const int E = arch.emb_width();
    const std::int64_t nd = arch.n_dense();
    const int B = config.batch_size;
    // Chunk size depends on the batch size only, so the summation order (hence every result bit)
    // does not depend on the thread count. At most 64 chunk buffers for large batches.
    const int chunk = B <= 2048 ? 32 : static_cast<int>((std::int64_t{B} + 63) / 64);  // B + 63 may pass INT_MAX
    const int max_chunks = static_cast<int>((std::int64_t{B} + chunk - 1) / chunk);
    const int nt = std::max(1, std::min(resolve_threads(config.threads), max_chunks));

    // Buffers hold what a batch / chunk can have, no more than the n samples there are: a batch_size
    // past the epoch (up to 2^31 - 1) changes nothing but must not size them.
    const auto batch_rows = static_cast<std::size_t>(std::min<std::int64_t>(B, n));
    const auto chunk_rows = static_cast<int>(std::min<std::int64_t>(chunk, n));
    std::vector<float> grad_chunks(std::size_t(max_chunks) * nd);
    std::vector<double> chunk_loss(max_chunks);
    std::vector<float> grad_u(batch_rows * E), grad_i(batch_rows * E);
    // Distinct table rows one batch can touch: a sample's row, or its features (capped by the table).
    const auto touched_rows = [batch_rows](const CsrView* f, std::int64_t table_rows) {
        if (f == nullptr) return batch_rows;
        std::int64_t widest = 0;
        for (std::int64_t r = 0; r < f->n_rows; ++r) widest = std::max(widest, f->row_nnz(r));
        return static_cast<std::size_t>(std::min<std::int64_t>(std::int64_t(batch_rows) * widest, table_rows));
    };
    const std::size_t cap_u = touched_rows(params.user_features, params.n_users);
    const std::size_t cap_i = touched_rows(params.item_features, params.n_items);
    std::vector<float> acc_u(cap_u * E), acc_i(cap_i * E);
    std::vector<std::int64_t> rows_u(cap_u), rows_i(cap_i);
    std::vector<std::int32_t> slot_u(params.n_users, -1), slot_i(params.n_items, -1);
    const std::vector<float> zeros(E, 0.0f);  // the gradient of rows outside the batch (dense adam)
    std::vector<float> wt(detail::n_weights(arch));
    std::vector<Workspace<float>> wss(nt);
    std::vector<std::vector<const float*>> ptrs(nt, std::vector<const float*>(2 * std::size_t(chunk_rows)));
    // Per-thread representations of the chunk's samples (only the sides with features use them).
    std::vector<std::vector<float>> reps(
        nt, std::vector<float>((params.user_features || params.item_features) ? 2 * std::size_t(chunk_rows) * E : 0));
    for (auto& ws : wss) ws.resize(arch, chunk_rows);
    detail::transpose_weights(arch, params.dense, wt.data());

    const std::int64_t n_batches = (n + B - 1) / B;
    const float lr = config.lr, b1 = config.beta1, b2 = config.beta2, eps = config.eps;
    double total_loss = 0.0;

    // Sums the per-sample row gradients of one batch into one gradient per distinct table row, in
    // sample order (deterministic); with features, each sample's gradient goes to its feature rows,
    // weighted, in the row's column order. `slot` maps row -> position in `rows`/`acc` and is reset
    // after the update.
    auto accumulate = [E](const CsrView* features, const std::int64_t* ids, int bs, const float* g, std::int32_t* slot,
                          std::int64_t* rows, float* acc) {
        int m = 0;
        for (int s = 0; s < bs; ++s) {
            const float* gs = g + std::size_t(s) * E;
            if (features == nullptr) {
                const std::int64_t r = ids[s];
                if (slot[r] < 0) {
                    slot[r] = m;
                    rows[m] = r;
                    std::memcpy(acc + std::size_t(m) * E, gs, sizeof(float) * E);
                    ++m;
                } else {
                    float* a = acc + std::size_t(slot[r]) * E;
                    for (int k = 0; k < E; ++k) a[k] += gs[k];
                }
                continue;
            }
            for (std::int64_t j = features->indptr[ids[s]]; j < features->indptr[ids[s] + 1]; ++j) {
                const std::int64_t r = features->indices[j];
                const float x = features->data[j];
                if (slot[r] < 0) {
                    slot[r] = m;
                    rows[m] = r;
                    float* a = acc + std::size_t(m) * E;
                    for (int k = 0; k < E; ++k) a[k] = x * gs[k];
                    ++m;
                } else {
                    float* a = acc + std::size_t(slot[r]) * E;
                    for (int k = 0; k < E; ++k) a[k] += x * gs[k];
                }
            }
        }
        return m;
    };

    // One parallel region per epoch; work is split statically by thread index (chunk c on thread
    // c % team, update task k on thread k % team) with two barriers per step.
    // Ctrl-C: the calling thread (team thread 0) polls between the two barriers of a batch; every
    // thread reads the answer after the second one, so the whole team leaves at the same batch.
    StopToken* const stop = StopToken::current();
    Barrier barrier;
#ifdef RECFORGE_OPENMP
#pragma omp parallel num_threads(nt)
#endif
    {
        const int tid = thread_index();
        int team = 1;
#ifdef RECFORGE_OPENMP
        team = omp_get_num_threads();
#pragma omp single
        barrier.reset(team);
#endif
        Workspace<float>& ws = wss[tid];
        const float** urows = ptrs[tid].data();
        const float** irows = urows + chunk_rows;
        float* rep_u = reps[tid].empty() ? nullptr : reps[tid].data();
        float* rep_i = reps[tid].empty() ? nullptr : rep_u + std::size_t(chunk_rows) * E;
        for (std::int64_t b = 0; b < n_batches; ++b) {
            const std::int64_t start = b * B;
            const int bs = int(std::min<std::int64_t>(B, n - start));
            const int nch = static_cast<int>((std::int64_t{bs} + chunk - 1) / chunk);
            const float scale = 1.0f / float(bs);
            for (int c = tid; c < nch; c += team) {
                const int r0 = c * chunk, nr = std::min(chunk, bs - r0);
                float* gd = grad_chunks.data() + std::size_t(c) * nd;
                std::fill(gd, gd + nd, 0.0f);
                chunk_loss[c] = train_chunk(arch, params.dense, wt.data(), params, users + start + r0,
                                            items + start + r0, labels + start + r0, nr, scale, config.l2, ws, urows,
                                            irows, rep_u, rep_i, gd, grad_u.data() + std::size_t(r0) * E,
                                            grad_i.data() + std::size_t(r0) * E);
            }
            barrier.wait();
            // Bias corrections for this step (t counts from 1).
            const double t = double(state.step + b + 1);
            const float bc1 = float(1.0 - std::pow(double(b1), t));
            const float bc2 = float(1.0 - std::pow(double(b2), t));
            // The three updates touch disjoint parameters, so they run side by side.
            for (int task = tid; task < 3; task += team) {
                if (task == 0) {
                    update_dense(grad_chunks.data(), nch, nd, adam, lr, b1, b2, eps, bc1, bc2, params.dense,
                                 state.m_dense, state.v_dense);
                    detail::transpose_weights(arch, params.dense, wt.data());
                    for (int c = 0; c < nch; ++c) total_loss += chunk_loss[c];
                } else if (task == 1) {
                    const int nu = accumulate(params.user_features, users + start, bs, grad_u.data(), slot_u.data(),
                                              rows_u.data(), acc_u.data());
                    if (!dense_adam)
                        update_rows(rows_u.data(), nu, acc_u.data(), E, adam, lr, b1, b2, eps, bc1, bc2,
                                    params.user_emb, state.m_user, state.v_user, slot_u.data());
                } else {
                    const int ni = accumulate(params.item_features, items + start, bs, grad_i.data(), slot_i.data(),
                                              rows_i.data(), acc_i.data());
                    if (!dense_adam)
                        update_rows(rows_i.data(), ni, acc_i.data(), E, adam, lr, b1, b2, eps, bc1, bc2,
                                    params.item_emb, state.m_item, state.v_item, slot_i.data());
                }
            }
            if (tid == 0) stop_requested(stop);
            barrier.wait();
            if (stop != nullptr && stop->stopped()) break;
            if (dense_adam) {
                // Every row of both tables steps; the rows (users first, then items) are split into
                // one contiguous range per thread.
                const std::int64_t total = params.n_users + params.n_items;
                const std::int64_t lo = total * tid / team, hi = total * (tid + 1) / team;
                const std::int64_t ulo = std::min(lo, params.n_users), uhi = std::min(hi, params.n_users);
                if (ulo < uhi)
                    sweep_rows_dense(ulo, uhi, acc_u.data(), zeros.data(), E, lr, b1, b2, eps, bc1, bc2,
                                     params.user_emb, state.m_user, state.v_user, slot_u.data());
                const std::int64_t ilo = std::max(lo, params.n_users) - params.n_users;
                const std::int64_t ihi = std::max(hi, params.n_users) - params.n_users;
                if (ilo < ihi)
                    sweep_rows_dense(ilo, ihi, acc_i.data(), zeros.data(), E, lr, b1, b2, eps, bc1, bc2,
                                     params.item_emb, state.m_item, state.v_item, slot_i.data());
                barrier.wait();
            }
        }
    }
    if (stop != nullptr && stop->stopped()) throw Interrupted();  // the parameters are half-updated
    state.step += n_batches;
    return total_loss / double(n);
}

}  // namespace recforge::mlp
