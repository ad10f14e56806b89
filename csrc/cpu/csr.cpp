// The CSR validator and the owning Csr (see recforge/csr.hpp for the contract).
#include "recforge/csr.hpp"

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>

namespace recforge {
namespace {

[[noreturn]] void fail(const char* name, const std::string& what) {
    throw std::invalid_argument(std::string(name) + what);
}

}  // namespace

CsrTraits validate_csr(const CsrView& m, std::int64_t nnz, const char* name) {
    if (m.n_rows < 0 || m.n_cols < 0 || nnz < 0) fail(name, ": n_rows, n_cols and nnz must be >= 0");
    if (m.n_cols > INT32_MAX) fail(name, ": more than 2^31 - 1 columns");
    if (m.indptr[0] != 0) fail(name, ": indptr must start at 0, got " + std::to_string(m.indptr[0]));
    if (m.indptr[m.n_rows] != nnz)
        fail(name, ": indptr must end at nnz = " + std::to_string(nnz) + ", got " + std::to_string(m.indptr[m.n_rows]));
    // Branch-free passes (flags or-ed over each row, then one test): a matrix is validated on every
    // kernel call that builds a Csr, and the usual one is valid, so only a failure looks closer.
    const auto n_cols = static_cast<std::uint32_t>(m.n_cols);  // <= 2^31 - 1; a negative id reads as >= it
    bool descending = false, repeated = false;
    for (std::int64_t r = 0; r < m.n_rows; ++r) {
        const std::int64_t lo = m.indptr[r], hi = m.indptr[r + 1];
        // Checked before the row is read, so a broken indptr never sends the loop past nnz.
        if (hi < lo || hi > nnz)
            fail(name, ": indptr must be non-decreasing and <= nnz (row " + std::to_string(r) + ")");
        bool out_of_range = false, down = false, same = false;
        for (std::int64_t p = lo; p < hi; ++p) out_of_range |= static_cast<std::uint32_t>(m.indices[p]) >= n_cols;
        for (std::int64_t p = lo + 1; p < hi; ++p) {
            down |= m.indices[p - 1] > m.indices[p];
            same |= m.indices[p - 1] == m.indices[p];
        }
        for (std::int64_t p = lo; out_of_range && p < hi; ++p) {  // the first one, for the message
            const std::int32_t c = m.indices[p];
            if (c < 0 || c >= m.n_cols)
                fail(name, ": column index " + std::to_string(c) + " at position " + std::to_string(p) +
                               " out of range [0, " + std::to_string(m.n_cols) + ")");
        }
        descending |= down;
        repeated |= same;
    }
    CsrTraits t;
    t.sorted = !descending;
    t.unique = !descending && !repeated;
    t.values = m.data != nullptr || nnz == 0;
    bool non_finite = false, negative = false;
    for (std::int64_t p = 0; m.data && p < nnz; ++p) {
        std::uint32_t bits;
        std::memcpy(&bits, &m.data[p], sizeof bits);
        non_finite |= (bits & 0x7f800000u) == 0x7f800000u;  // exponent all ones: inf or NaN
        negative |= m.data[p] < 0.0f;
    }
    t.finite = t.values && !non_finite;
    t.nonnegative = t.finite && !negative;
    return t;
}

void require_csr(const CsrTraits& have, const CsrTraits& need, const char* name) {
    if (need.values && !have.values) fail(name, " has no values (data)");
    if (need.finite && !have.finite) fail(name, " contains NaN or infinite values");
    if (need.nonnegative && !have.nonnegative) fail(name, " contains negative values; they must be >= 0");
    if (need.unique && !have.unique) fail(name, ": column indices must be sorted and unique within each row");
    if (need.sorted && !have.sorted) fail(name, ": column indices must be sorted within each row");
}

Csr::Csr(const CsrView& src, std::int64_t nnz, const char* name) : n_cols_(src.n_cols) {
    if (src.n_rows < 0 || nnz < 0) fail(name, ": n_rows and nnz must be >= 0");
    indptr_.assign(src.indptr, src.indptr + src.n_rows + 1);
    indices_.assign(src.indices, src.indices + nnz);
    if (src.data) data_.assign(src.data, src.data + nnz);
    traits_ = validate_csr(view_unchecked(src.data != nullptr), nnz, name);
}

Csr::Csr(std::vector<std::int64_t> indptr, std::vector<std::int32_t> indices, std::vector<float> data,
         std::int64_t n_cols, const char* name)
    : indptr_(std::move(indptr)), indices_(std::move(indices)), data_(std::move(data)), n_cols_(n_cols) {
    if (indptr_.empty()) fail(name, ": indptr must have n_rows + 1 >= 1 entries");
    if (!data_.empty() && data_.size() != indices_.size()) fail(name, ": indices and data must have the same length");
    traits_ = validate_csr(view_unchecked(!data_.empty()), nnz(), name);
}

}  // namespace recforge
