// recforge/knn.hpp — item-item nearest neighbours (ItemKNN): the K most similar items of every item,
// and top-k recommendation from a user's history through them. No Python.
//
// Similarity: the inner product of two items' columns in `users` (users x items, weighted as the caller
// chose: raw, BM25, TF-IDF), divided by both columns' L2 norms when `cosine`. Computed as sparse row
// products (for item i: every user u of i, every item j of u) into a per-thread dense accumulator,
// then a per-item selection of the best K. An item is never its own neighbour, only positive
// similarities are kept, and equal similarities go to the lower item id, so the result does not
// depend on the thread count.
#pragma once

#include <cstdint>
#include <memory>
#include <new>
#include <utility>
#include <vector>

#include "recforge/csr.hpp"

namespace recforge::knn {

// std::allocator whose resize leaves new elements uninitialised: the neighbour arrays are written
// by the threads that compute them, so zeroing them first would only be a serial pass (and its page
// faults) in front of the parallel one.
template <class T>
struct UninitialisedAllocator : std::allocator<T> {
    template <class U>
    struct rebind {
        using other = UninitialisedAllocator<U>;
    };
    UninitialisedAllocator() = default;
    template <class U>
    UninitialisedAllocator(const UninitialisedAllocator<U>&) noexcept {}
    template <class U>
    void construct(U* p) noexcept {
        ::new (static_cast<void*>(p)) U;
    }
    template <class U, class... Args>
    void construct(U* p, Args&&... args) {
        ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
    }
};

// An owning CSR (n_items x n_items): row i holds item i's neighbours with their similarities
// (float32), in an order that depends on the data only (not on the thread count), not by id.
struct Neighbours {
    std::vector<std::int64_t> indptr;
    std::vector<std::int32_t, UninitialisedAllocator<std::int32_t>> indices;
    std::vector<float, UninitialisedAllocator<float>> data;
};

// `users` (n_users x n_items: the training matrix as it is, the one transpose is made here) must be
// validated with finite, nonnegative values (kConfidences, or have no entries); k >= 1. Throws
// std::invalid_argument otherwise. OpenMP over items.
Neighbours item_neighbours(const CsrView& users, bool cosine, std::int64_t k, int threads);

// For each row u of `history` (n x n_items, finite values r_ui): score(u, j) = sum over the stored
// (i, r_ui) of r_ui * similarity(i, j), `similarity` being an (n_items x n_items) CSR with finite
// values (item_neighbours' result, or any other). Writes the best k items per row to out_ids /
// out_scores ((n, k), best first, equal scores by lower id; -1 / -inf padding past the eligible
// items). Eligible: every item (items without a neighbour in the history score 0), minus the row's
// own history items when `exclude_history`, restricted to the items with allowed[j] != 0 when
// `allowed` (n_items bytes) is given. Inputs are trusted (the binding checks shapes); OpenMP over rows.
void recommend(const CsrView& history, const CsrView& similarity, std::int64_t k, bool exclude_history,
               const std::uint8_t* allowed, std::int64_t* out_ids, float* out_scores, int threads);

}  // namespace recforge::knn
