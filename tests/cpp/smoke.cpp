// recforge C++ smoke tests: the core stands alone. Links recforge::core only (no Python, no BLAS:
// the core's reference routines run when none is installed). Run by CTest, one check per argument:
//   recforge_smoke topk   exact top-K (dense, with an exclusion CSR, and over candidates) against a
//                         brute force; integer-valued factors make every score exact, so ids must
//                         match including the tie rule (equal scores: lower id first)
//   recforge_smoke als    one implicit ALS half-step (Cholesky: the exact row minimiser) does not
//                         increase the rows' share of the loss, and lowers it from a random start;
//                         a singular system is a std::domain_error (never a terminate)
//   recforge_smoke interrupt  a StopToken that asks to stop interrupts a kernel (recforge::Interrupted);
//                         threads above thread_limit() are refused
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "recforge/als.hpp"
#include "recforge/csr.hpp"
#include "recforge/interrupt.hpp"
#include "recforge/parallel.hpp"
#include "recforge/topk.hpp"

namespace {

int failures = 0;

#define CHECK(cond, ...)                                                                  \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            std::fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond); \
            std::fprintf(stderr, __VA_ARGS__);                                            \
            std::fprintf(stderr, "\n");                                                   \
            ++failures;                                                                   \
        }                                                                                 \
    } while (0)

// Values in {-3, ..., 3}: dot products of length <= 16 are exact in float whatever the order.
std::vector<float> small_ints(std::mt19937& gen, std::size_t n) {
    std::uniform_int_distribution<int> d(-3, 3);
    std::vector<float> v(n);
    for (auto& x : v) x = static_cast<float>(d(gen));
    return v;
}

// Brute-force top-k of one query over `ids` (exact scores; ties by lower id; excluded ids skipped).
void brute_topk(const float* q, const std::vector<float>& items, std::int64_t f, std::vector<std::int64_t> ids,
                const std::vector<std::int64_t>& excluded, std::int64_t k, std::int64_t* out_ids, float* out_scores) {
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
    std::vector<std::pair<float, std::int64_t>> scored;
    for (std::int64_t j : ids) {
        if (j < 0 || std::find(excluded.begin(), excluded.end(), j) != excluded.end()) continue;
        float s = 0;
        for (std::int64_t t = 0; t < f; ++t) s += q[t] * items[j * f + t];
        scored.push_back({s, j});
    }
    std::sort(scored.begin(), scored.end(), [](const auto& a, const auto& b) {
        return a.first != b.first ? a.first > b.first : a.second < b.second;
    });
    for (std::int64_t r = 0; r < k; ++r) {
        const bool have = r < static_cast<std::int64_t>(scored.size());
        out_ids[r] = have ? scored[r].second : -1;
        out_scores[r] = have ? scored[r].first : -std::numeric_limits<float>::infinity();
    }
}

int check_topk() {
    std::mt19937 gen(7);
    const std::int64_t n = 9, m = 70, f = 8, k = 6;
    const auto queries = small_ints(gen, n * f);
    const auto items = small_ints(gen, m * f);

    // Exclude a few items per row (sorted ids, one duplicate), and all but 3 items in the last row
    // so that it ends in padding.
    std::vector<std::int64_t> indptr{0};
    std::vector<std::int32_t> indices;
    std::vector<std::vector<std::int64_t>> excluded(n);
    for (std::int64_t i = 0; i < n; ++i) {
        if (i == n - 1) {
            for (std::int64_t j = 3; j < m; ++j) excluded[i].push_back(j);
        } else {
            for (std::int64_t j = i; j < m; j += 11) excluded[i].push_back(j);
            excluded[i].push_back(excluded[i].back());
        }
        indices.insert(indices.end(), excluded[i].begin(), excluded[i].end());
        indptr.push_back(static_cast<std::int64_t>(indices.size()));
    }
    // Validated once, as the Python binding does; the kernels then trust the view.
    const recforge::Csr exclude_csr(std::move(indptr), std::move(indices), {}, m, "exclude");
    const recforge::CsrView exclude = exclude_csr.view();

    std::vector<std::int64_t> all(m);
    std::iota(all.begin(), all.end(), 0);
    std::vector<std::int64_t> want_ids(n * k), got_ids(n * k);
    std::vector<float> want_scores(n * k), got_scores(n * k);

    for (auto kernel : {recforge::TopkKernel::automatic, recforge::TopkKernel::blas}) {
        recforge::TopkOptions opt;
        opt.kernel = kernel;
        for (bool with_exclude : {false, true}) {
            for (std::int64_t i = 0; i < n; ++i)
                brute_topk(&queries[i * f], items, f, all, with_exclude ? excluded[i] : std::vector<std::int64_t>{}, k,
                           &want_ids[i * k], &want_scores[i * k]);
            recforge::topk_dense(queries.data(), n, items.data(), m, f, k, nullptr, 0,
                                 with_exclude ? &exclude : nullptr, got_ids.data(), got_scores.data(), 2, opt);
            CHECK(got_ids == want_ids, "topk_dense ids differ (kernel %d, exclude %d)", static_cast<int>(kernel),
                  static_cast<int>(with_exclude));
            CHECK(got_scores == want_scores, "topk_dense scores differ (kernel %d, exclude %d)",
                  static_cast<int>(kernel), static_cast<int>(with_exclude));
        }
    }

    // Candidates: 12 per row with -1 padding and a duplicate.
    const std::int64_t c = 12;
    std::vector<std::int64_t> cand(n * c);
    std::uniform_int_distribution<std::int64_t> pick(0, m - 1);
    for (std::int64_t i = 0; i < n; ++i) {
        for (std::int64_t t = 0; t < c; ++t) cand[i * c + t] = t == c - 1 ? -1 : pick(gen);
        cand[i * c + 1] = cand[i * c];
    }
    for (std::int64_t i = 0; i < n; ++i)
        brute_topk(&queries[i * f], items, f, std::vector<std::int64_t>(&cand[i * c], &cand[i * c] + c), excluded[i], k,
                   &want_ids[i * k], &want_scores[i * k]);
    recforge::topk_candidates(queries.data(), n, items.data(), m, f, k, cand.data(), c, &exclude, got_ids.data(),
                              got_scores.data(), 2);
    CHECK(got_ids == want_ids, "topk_candidates ids differ");
    CHECK(got_scores == want_scores, "topk_candidates scores differ");

    bool threw = false;
    try {
        recforge::topk_dense(queries.data(), n, items.data(), m, f, m + 1, nullptr, 0, nullptr, got_ids.data(),
                             got_scores.data(), 1);
    } catch (const std::invalid_argument&) {
        threw = true;
    }
    CHECK(threw, "k > m must throw std::invalid_argument");
    return failures;
}

int check_als() {
    std::mt19937 gen(11);
    const std::int64_t rows = 30, cols = 25;
    const int f = 4;
    std::bernoulli_distribution keep(0.2);
    std::uniform_real_distribution<float> value(1.0f, 5.0f), factor(-0.5f, 0.5f);

    std::vector<std::int64_t> indptr{0};
    std::vector<std::int32_t> indices;
    std::vector<float> data;
    for (std::int64_t u = 0; u < rows; ++u) {
        for (std::int32_t i = 0; i < cols; ++i)
            if (keep(gen)) {
                indices.push_back(i);
                data.push_back(value(gen));
            }
        indptr.push_back(static_cast<std::int64_t>(indices.size()));
    }
    const recforge::Csr m(std::move(indptr), std::move(indices), std::move(data), cols, "confidences");
    const recforge::CsrView csr = m.view();

    std::vector<float> X(rows * f), Y(cols * f);
    for (auto& x : X) x = factor(gen);
    for (auto& y : Y) y = factor(gen);

    recforge::als::ImplicitOptions opt;
    opt.alpha = 2.0f;
    opt.reg = 0.1f;
    opt.solver = recforge::als::Solver::cholesky;
    opt.threads = 2;

    std::vector<float> G(f * f);  // Y'Y, an input of the half-step (a partitioned driver computes it once)
    recforge::als::gram(Y.data(), cols, f, G.data(), 1);
    const double before = recforge::als::implicit_loss(csr, X.data(), Y.data(), G.data(), f, opt);
    recforge::als::implicit_solve(csr, Y.data(), G.data(), f, X.data(), opt);
    const double after = recforge::als::implicit_loss(csr, X.data(), Y.data(), G.data(), f, opt);
    std::printf("als: rows' loss %.6f -> %.6f after one half-step\n", before, after);
    CHECK(std::isfinite(after), "loss is not finite");
    CHECK(after < before, "one half-step did not lower the loss (%.6f -> %.6f)", before, after);

    // The exact minimiser is a fixed point: a second half-step changes the loss by rounding only.
    recforge::als::implicit_solve(csr, Y.data(), G.data(), f, X.data(), opt);
    const double again = recforge::als::implicit_loss(csr, X.data(), Y.data(), G.data(), f, opt);
    CHECK(std::abs(again - after) <= 1e-4 * std::abs(after) + 1e-6, "second half-step moved the loss %.6f -> %.6f",
          after, again);

    // A singular system (no regularisation, no unobserved-pair weight, one entry per row: rank 1)
    // is reported as std::domain_error on the calling thread, never thrown inside the OpenMP region
    // (which would terminate the process), for the smallest failing row whatever the thread count.
    std::vector<std::int64_t> one_ptr{0};
    std::vector<std::int32_t> one_idx;
    for (std::int64_t u = 0; u < rows; ++u) {
        one_idx.push_back(static_cast<std::int32_t>(u % cols));
        one_ptr.push_back(u + 1);
    }
    const recforge::Csr single(std::move(one_ptr), std::move(one_idx), std::vector<float>(rows, 1.0f), cols, "m");
    recforge::als::ImplicitOptions sing = opt;
    sing.reg = 0.0f;
    sing.alpha0 = 0.0f;
    std::string message;
    try {
        recforge::als::implicit_solve(single.view(), Y.data(), G.data(), f, X.data(), sing);
    } catch (const std::domain_error& e) {
        message = e.what();
    }
    CHECK(message.find("row 0 are not positive definite") != std::string::npos, "singular system: '%s'",
          message.c_str());
    message.clear();
    std::vector<float> bias_in(cols, 0.0f), bias_out(rows, 0.0f);
    try {
        recforge::als::explicit_solve(single.view(), Y.data(), bias_in.data(), f, X.data(), bias_out.data(),
                                      recforge::als::ExplicitOptions{0.0f, 0.0f, 2});
    } catch (const std::domain_error& e) {
        message = e.what();
    }
    CHECK(message.find("not positive definite") != std::string::npos, "singular explicit system: '%s'",
          message.c_str());
    return failures;
}

// A kernel whose caller's StopToken asks to stop throws recforge::Interrupted, after its parallel
// region; without a token (or with one that never asks) it runs to the end.
int check_interrupt() {
    const std::int64_t n = 64, m = 4096, f = 8;
    std::vector<float> q(n * f, 1.0f), items(m * f, 1.0f);
    std::vector<std::int64_t> ids(n);
    std::vector<float> scores(n);
    auto run = [&]() {
        recforge::topk_dense(q.data(), n, items.data(), m, f, 1, nullptr, 0, nullptr, ids.data(), scores.data(), 2);
    };
    bool interrupted = false;
    {
        recforge::StopToken token([](void*) { return true; }, nullptr);
        try {
            run();
        } catch (const recforge::Interrupted&) {
            interrupted = true;
        }
    }
    CHECK(interrupted, "a requested stop did not interrupt the kernel");
    {
        recforge::StopToken token([](void*) { return false; }, nullptr);
        run();
    }
    run();
    CHECK(ids[0] == 0 && scores[0] == static_cast<float>(f), "kernel result wrong after a stop");
    // An exception thrown by a parallel body reaches the caller (it never leaves the OpenMP region).
    std::string caught;
    try {
        recforge::parallel_for(0, 1000, 2, 1, [](std::int64_t i) {
            if (i == 377) throw std::runtime_error("row 377");
        });
    } catch (const std::runtime_error& e) {
        caught = e.what();
    }
    CHECK(caught == "row 377", "exception from a parallel body: '%s'", caught.c_str());
    bool refused = false;
    try {
        recforge::resolve_threads(recforge::thread_limit() + 1);
    } catch (const std::invalid_argument&) {
        refused = true;
    }
    CHECK(refused, "threads above thread_limit() accepted");
    return failures;
}

// The one validator refuses what a kernel must never read: a column id past the last column, row
// pointers that do not end at nnz. Kernels trust a view only because this ran first.
int check_csr() {
    auto rejects = [](std::vector<std::int64_t> indptr, std::vector<std::int32_t> indices, std::int64_t n_cols) {
        try {
            recforge::Csr bad(std::move(indptr), std::move(indices), {}, n_cols, "m");
        } catch (const std::invalid_argument&) {
            return true;
        }
        return false;
    };
    CHECK(rejects({0, 1}, {3}, 3), "column id == n_cols accepted");
    CHECK(rejects({0, 2}, {0}, 3), "indptr past nnz accepted");
    CHECK(rejects({1, 1}, {0}, 3), "indptr not starting at 0 accepted");
    CHECK(!rejects({0, 2, 2}, {0, 2}, 3), "a sound matrix refused");
    const recforge::Csr ok({0, 2, 3}, {2, 0, 1}, {1.0f, 2.0f, 3.0f}, 3, "m");
    CHECK(!ok.traits().sorted && ok.traits().values && ok.traits().nonnegative, "traits of an unsorted matrix wrong");
    return failures;
}

}  // namespace

int main(int argc, char** argv) {
    const std::string what = argc > 1 ? argv[1] : "";
    int failed = 0;
    if (what == "topk") {
        failed = check_topk();
    } else if (what == "als") {
        failed = check_als();
    } else if (what == "csr") {
        failed = check_csr();
    } else if (what == "interrupt") {
        failed = check_interrupt();
    } else {
        std::fprintf(stderr, "usage: %s topk|als|csr|interrupt\n", argv[0]);
        return 2;
    }
    std::printf("%s: %s\n", what.c_str(), failed ? "FAILED" : "ok");
    return failed ? 1 : 0;
}
