// mlp_sample.cpp — negative sampling for the NCF model's training epochs (see recforge/mlp.hpp).
//
// Each user's samples come from its own counter-based random stream (seed, user), so users can be
// sampled in parallel with the same result for any thread count; one serial stream then shuffles.
#include <algorithm>
#include <stdexcept>
#include <vector>

#include "recforge/mlp.hpp"
#include "recforge/parallel.hpp"
#include "recforge/rng.hpp"

namespace recforge::mlp {

std::int64_t epoch_samples(const CsrView& m, int negatives) {
    std::int64_t total = 0;
    for (std::int64_t u = 0; u < m.n_rows; ++u) {
        const std::int64_t nnz = m.row_nnz(u);
        total += nnz * (1 + (nnz < m.n_cols ? std::int64_t{negatives} : 0));  // 1 + INT_MAX must not wrap
    }
    return total;
}

void sample_epoch(const CsrView& m, int negatives, std::uint64_t seed, int threads, std::int64_t* users,
                  std::int64_t* items, float* labels) {
    if (negatives < 1) throw std::invalid_argument("negatives must be >= 1");
    if (m.n_cols <= 0) throw std::invalid_argument("n_items must be >= 1");
    const std::int64_t n_users = m.n_rows, n_items = m.n_cols;
    const std::int64_t* indptr = m.indptr;
    const std::int32_t* indices = m.indices;
    std::vector<std::int64_t> offset(n_users + 1, 0);
    for (std::int64_t u = 0; u < n_users; ++u) {
        const std::int64_t nnz = indptr[u + 1] - indptr[u];
        offset[u + 1] = offset[u] + nnz * (1 + (nnz < n_items ? negatives : 0));
    }

    parallel_for(0, n_users, threads, 64, [&](std::int64_t u) {
        const std::int32_t* row = indices + indptr[u];
        const std::int64_t nnz = indptr[u + 1] - indptr[u];
        if (nnz == 0) return;
        std::int64_t out = offset[u];
        const bool neg = nnz < n_items;
        SplitMix64 rng(keyed_seed(seed, std::uint64_t(u)));
        // Dense rows: draw from the explicit complement instead of rejecting most draws.
        std::vector<std::int32_t> complement;
        if (neg && nnz * 2 > n_items) {
            complement.reserve(n_items - nnz);
            std::int64_t p = 0;
            for (std::int32_t j = 0; j < n_items; ++j) {
                if (p < nnz && row[p] == j) {
                    ++p;
                    continue;
                }
                complement.push_back(j);
            }
        }
        for (std::int64_t q = 0; q < nnz; ++q) {
            users[out] = u;
            items[out] = row[q];
            labels[out] = 1.0f;
            ++out;
            if (!neg) continue;
            for (int k = 0; k < negatives; ++k) {
                std::int64_t j;
                if (!complement.empty()) {
                    j = complement[rng.below(complement.size())];
                } else {
                    do j = std::int64_t(rng.below(std::uint64_t(n_items)));
                    while (std::binary_search(row, row + nnz, std::int32_t(j)));
                }
                users[out] = u;
                items[out] = j;
                labels[out] = 0.0f;
                ++out;
            }
        }
    });

    // Fisher-Yates over the three arrays together.
    SplitMix64 rng(keyed_seed(seed, 0xA5A5A5A5ULL));
    for (std::int64_t q = offset[n_users] - 1; q > 0; --q) {
        const auto j = std::int64_t(rng.below(std::uint64_t(q) + 1));
        std::swap(users[q], users[j]);
        std::swap(items[q], items[j]);
        std::swap(labels[q], labels[j]);
    }
}

}  // namespace recforge::mlp
