// mlp_score.cpp — inference for the NCF model: logits of (user, item) pairs and of a user against
// the whole catalogue. Multithreaded over blocks; one workspace per thread; no allocation inside
// the parallel loops.
#include <stdexcept>
#include <string>
#include <vector>

#include "mlp_kernels.hpp"
#include "recforge/mlp.hpp"
#include "recforge/parallel.hpp"

namespace recforge::mlp {

using detail::Workspace;

namespace {

constexpr int kPairBlock = 64;
constexpr int kItemBlock = 128;

RECFORGE_SIMD_CLONES(RECFORGE_ISA_F)
void pair_block(const Arch& arch, const float* dense, const float** urows, const float** irows, int n,
                Workspace<float>& ws, float* out) {
    detail::forward(arch, dense, urows, irows, n, ws);
    for (int r = 0; r < n; ++r) out[r] = ws.z[r];
}

// Logits of one user against items [i0, i0 + n): the first MLP layer is a_u + c_i (precomputed).
RECFORGE_SIMD_CLONES(RECFORGE_ISA_F)
void item_block(const Arch& arch, const float* dense, const float* user_row, const float* a_u, const float* item_emb,
                const float* c_items, std::int64_t i0, int n, Workspace<float>& ws, const float** urows,
                const float** irows, float* out) {
    const int E = arch.emb_width();
    for (int r = 0; r < n; ++r) {
        urows[r] = user_row;
        irows[r] = item_emb + (i0 + r) * E;
    }
    if (arch.n_layers()) {
        const int l1 = arch.layer_out(0);
        float* h = ws.h[0].data();
        for (int r = 0; r < n; ++r) {
            const float* c = c_items + (i0 + r) * l1;
            float* hr = h + std::size_t(r) * l1;
            for (int j = 0; j < l1; ++j) {
                const float x = a_u[j] + c[j];
                hr[j] = x > 0.0f ? x : 0.0f;
            }
        }
    }
    detail::forward_from(arch, dense, urows, irows, n, 1, ws);
    for (int r = 0; r < n; ++r) out[r] = ws.z[r];
}

// rows (n x l1) = emb[:, dg + half*dm : ...] W_1[half*dm : (half+1)*dm, :] (+ b_1 when with_bias).
RECFORGE_SIMD_CLONES(RECFORGE_ISA_F)
void first_layer_part(const Arch& arch, const float* dense, const float* emb, std::int64_t first, int n, int half,
                      bool with_bias, float* rows) {
    const int E = arch.emb_width(), dm = arch.dim_mlp, l1 = arch.layer_out(0);
    const float* w = dense + arch.w_offset(0) + std::int64_t(half) * dm * l1;
    const float* b = dense + arch.b_offset(0);
    for (int r = 0; r < n; ++r)
        for (int j = 0; j < l1; ++j) rows[std::size_t(r) * l1 + j] = with_bias ? b[j] : 0.0f;
    detail::gemm_nn_acc(n, dm, l1, emb + first * E + arch.dim_gmf, E, w, rows);
}

void check_ids(const std::int64_t* ids, std::int64_t n, std::int64_t limit, const char* what) {
    for (std::int64_t q = 0; q < n; ++q)
        if (ids[q] < 0 || ids[q] >= limit)
            throw std::out_of_range(std::string(what) + " id " + std::to_string(ids[q]) + " at position " +
                                    std::to_string(q) + " is out of range [0, " + std::to_string(limit) + ")");
}

}  // namespace

void score_pairs(const Arch& arch, const Params<float>& params, const std::int64_t* users, const std::int64_t* items,
                 std::int64_t n, float* out, int threads) {
    arch.validate();
    check_ids(users, n, params.n_users, "user");
    check_ids(items, n, params.n_items, "item");
    const std::int64_t n_blocks = (n + kPairBlock - 1) / kPairBlock;
    const int nt = std::max(1, int(std::min<std::int64_t>(resolve_threads(threads), n_blocks)));
    std::vector<Workspace<float>> wss(nt);
    for (auto& ws : wss) ws.resize(arch, kPairBlock);
    std::vector<const float*> ptrs(std::size_t(nt) * 2 * kPairBlock);
    const int E = arch.emb_width();
    parallel_for(0, n_blocks, nt, 1, [&](std::int64_t blk) {
        const int tid = thread_index();
        const float** ur = ptrs.data() + std::size_t(tid) * 2 * kPairBlock;
        const float** ir = ur + kPairBlock;
        const std::int64_t s0 = blk * kPairBlock;
        const int nr = int(std::min<std::int64_t>(kPairBlock, n - s0));
        for (int r = 0; r < nr; ++r) {
            ur[r] = params.user_emb + users[s0 + r] * E;
            ir[r] = params.item_emb + items[s0 + r] * E;
        }
        pair_block(arch, params.dense, ur, ir, nr, wss[tid], out + s0);
    });
}

void score_all_items(const Arch& arch, const Params<float>& params, const std::int64_t* users, std::int64_t n_query,
                     float* out, int threads) {
    arch.validate();
    check_ids(users, n_query, params.n_users, "user");
    const std::int64_t n_items = params.n_items;
    const int l1 = arch.n_layers() ? arch.layer_out(0) : 0;
    const int nt0 = resolve_threads(threads);
    // Item and user halves of the first layer, once per call.
    std::vector<float> c_items(std::size_t(n_items) * l1), a_users(std::size_t(n_query) * l1);
    if (l1) {
        const std::int64_t nib = (n_items + kItemBlock - 1) / kItemBlock;
        parallel_for(0, nib, nt0, 1, [&](std::int64_t blk) {
            const std::int64_t i0 = blk * kItemBlock;
            const int nr = int(std::min<std::int64_t>(kItemBlock, n_items - i0));
            first_layer_part(arch, params.dense, params.item_emb, i0, nr, 1, true, c_items.data() + i0 * l1);
        });
        parallel_for(0, n_query, nt0, 16, [&](std::int64_t q) {
            first_layer_part(arch, params.dense, params.user_emb, users[q], 1, 0, false, a_users.data() + q * l1);
        });
    }
    const std::int64_t blocks_per_user = (n_items + kItemBlock - 1) / kItemBlock;
    const std::int64_t n_tasks = n_query * blocks_per_user;
    const int nt = std::max(1, int(std::min<std::int64_t>(nt0, n_tasks)));
    std::vector<Workspace<float>> wss(nt);
    for (auto& ws : wss) ws.resize(arch, kItemBlock);
    std::vector<const float*> ptrs(std::size_t(nt) * 2 * kItemBlock);
    const int E = arch.emb_width();
    parallel_for(0, n_tasks, nt, 4, [&](std::int64_t task) {
        const int tid = thread_index();
        const std::int64_t q = task / blocks_per_user;
        const std::int64_t i0 = (task % blocks_per_user) * kItemBlock;
        const int nr = int(std::min<std::int64_t>(kItemBlock, n_items - i0));
        const float** ur = ptrs.data() + std::size_t(tid) * 2 * kItemBlock;
        item_block(arch, params.dense, params.user_emb + users[q] * E, a_users.data() + q * l1, params.item_emb,
                   c_items.data(), i0, nr, wss[tid], ur, ur + kItemBlock, out + q * n_items + i0);
    });
}

}  // namespace recforge::mlp
