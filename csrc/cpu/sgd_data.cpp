// sgd_data.cpp — the SGD kernels' training data, prepared once per fit from a validated CSR
// (see recforge/sgd.hpp): packed rating triplets, and positives with the row of every entry.
#include <cstdint>
#include <stdexcept>

#include "recforge/sgd.hpp"

namespace recforge::sgd {

RatingData prepare_ratings(const CsrView& m) {
    if (m.n_rows < 1 || m.n_cols < 1 || m.n_rows > INT32_MAX || m.n_cols > INT32_MAX)
        throw std::invalid_argument("ratings: n_users and n_items must be in [1, 2^31)");
    if (!m.data && m.nnz() > 0) throw std::invalid_argument("ratings has no values (data)");
    RatingData d;
    d.n_users = static_cast<std::int32_t>(m.n_rows);
    d.n_items = static_cast<std::int32_t>(m.n_cols);
    d.ratings.resize(static_cast<std::size_t>(m.nnz()));
    // Storage order, row by row: the order the first epoch's shuffle starts from.
    for (std::int64_t u = 0; u < m.n_rows; ++u)
        for (std::int64_t p = m.indptr[u]; p < m.indptr[u + 1]; ++p)
            d.ratings[p] = Rating{static_cast<std::int32_t>(u), m.indices[p], m.data[p]};
    return d;
}

PositiveData::PositiveData(const CsrView& m) : n_users_(m.n_rows), n_items_(m.n_cols) {
    if (m.n_cols < 1 || m.n_cols > INT32_MAX) throw std::invalid_argument("positives: n_items must be in [1, 2^31)");
    if (m.n_rows > INT32_MAX) throw std::invalid_argument("positives: more than 2^31 - 1 users");
    indptr_.assign(static_cast<std::size_t>(m.n_rows) + 1, 0);
    indices_.reserve(static_cast<std::size_t>(m.nnz()));
    row_of_.reserve(static_cast<std::size_t>(m.nnz()));
    for (std::int64_t u = 0; u < m.n_rows; ++u) {
        for (std::int64_t p = m.indptr[u]; p < m.indptr[u + 1]; ++p) {
            if (m.data && !(m.data[p] > 0.0f)) continue;  // a stored 0 (or less) is not a positive
            indices_.push_back(m.indices[p]);
            row_of_.push_back(static_cast<std::int32_t>(u));
        }
        indptr_[u + 1] = static_cast<std::int64_t>(indices_.size());
    }
}

}  // namespace recforge::sgd
