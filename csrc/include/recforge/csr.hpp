// recforge/csr.hpp — the one sparse-matrix contract of every kernel family (ALS, SGD positives,
// MLP sampling, top-K exclusion). No Python.
//
// A CSR matrix (n_rows x n_cols): indptr[n_rows + 1] int64 offsets (a matrix may pass 2^31
// entries), indices[nnz] int32 column ids (n_cols <= 2^31 - 1), data[nnz] float32 values, or null
// where only the pattern matters (an exclusion list).
//
// Validated once, at the boundary: validate_csr (or the owning Csr, which runs it) checks the
// structure and reports what else holds (CsrTraits); a kernel states the traits it needs and
// checks them in O(1) with require_csr. Kernels taking a CsrView trust it: a view that was not
// validated is undefined behaviour, not an error.
#pragma once

#include <cstdint>
#include <stdexcept>  // std::invalid_argument, what the validator throws
#include <vector>

namespace recforge {

// Non-owning view; the caller keeps the arrays alive and unchanged while a kernel runs.
struct CsrView {
    const std::int64_t* indptr = nullptr;
    const std::int32_t* indices = nullptr;
    const float* data = nullptr;  // null: pattern only
    std::int64_t n_rows = 0;
    std::int64_t n_cols = 0;

    std::int64_t nnz() const { return indptr[n_rows]; }
    std::int64_t row_nnz(std::int64_t r) const { return indptr[r + 1] - indptr[r]; }
};

// What holds besides a sound structure (all false for a property that fails or cannot hold).
struct CsrTraits {
    bool sorted = false;       // column ids non-decreasing within each row
    bool unique = false;       // ... strictly increasing (sorted, no duplicates)
    bool values = false;       // data is present
    bool finite = false;       // ... and every value is finite
    bool nonnegative = false;  // ... and every value is finite and >= 0
};

// The one full validator: n_rows, n_cols >= 0, n_cols <= 2^31 - 1, indptr starts at 0, never
// decreases and ends at `nnz` (the length of indices and data), every column id in [0, n_cols).
// Throws std::invalid_argument starting with `name` on the first violation; returns the traits,
// found in the same pass. O(n_rows + nnz), single-threaded.
CsrTraits validate_csr(const CsrView& m, std::int64_t nnz, const char* name);

// Throws std::invalid_argument naming `name` and the first trait of `need` missing from `have`.
void require_csr(const CsrTraits& have, const CsrTraits& need, const char* name);

// What the kernel families need (fields: sorted, unique, values, finite, nonnegative).
inline constexpr CsrTraits kSortedRows{true, false, false, false, false};  // top-K exclusion (a merge)
inline constexpr CsrTraits kUniqueRows{true, true, false, false, false};   // positives (binary search)
inline constexpr CsrTraits kFiniteValues{false, false, true, true, false};  // explicit ratings
inline constexpr CsrTraits kConfidences{false, false, true, true, true};    // implicit ALS: r >= 0

// An owning, validated CSR: a copy, so later writes to the source arrays cannot invalidate it
// (the Python binding's Csr is one). Immutable once built.
class Csr {
public:
    Csr() : indptr_(1, 0) { traits_ = validate_csr(view_unchecked(false), 0, "csr"); }  // 0 x 0
    // Copies `src` (nnz entries; data may be null) and validates it; throws as validate_csr.
    Csr(const CsrView& src, std::int64_t nnz, const char* name);
    // Takes the arrays and validates them (data may be empty when nnz > 0: pattern only).
    Csr(std::vector<std::int64_t> indptr, std::vector<std::int32_t> indices, std::vector<float> data,
        std::int64_t n_cols, const char* name);

    CsrView view() const {
        return {indptr_.data(), indices_.data(), traits_.values ? data_.data() : nullptr, n_rows(), n_cols_};
    }
    const CsrTraits& traits() const { return traits_; }
    std::int64_t n_rows() const { return static_cast<std::int64_t>(indptr_.size()) - 1; }
    std::int64_t n_cols() const { return n_cols_; }
    std::int64_t nnz() const { return static_cast<std::int64_t>(indices_.size()); }
    const std::vector<std::int64_t>& indptr() const { return indptr_; }
    const std::vector<std::int32_t>& indices() const { return indices_; }
    const std::vector<float>& data() const { return data_; }

private:
    CsrView view_unchecked(bool with_data) const {
        return {indptr_.data(), indices_.data(), with_data ? data_.data() : nullptr, n_rows(), n_cols_};
    }

    std::vector<std::int64_t> indptr_;
    std::vector<std::int32_t> indices_;
    std::vector<float> data_;
    std::int64_t n_cols_ = 0;
    CsrTraits traits_;
};

}  // namespace recforge
