"""The GPU ALS without a GPU: csrc/cuda/als.cu compiled as C++ (tests/cuda_emu/simt.hpp) and driven by the
real half-steps of recforge/_ops/cuda.py, with NumPy for CuPy (and for cuBLAS's GEMMs).

Checked against the CPU kernels (``recforge._ops.cpu``): every half-step (CG, Cholesky, explicit with
biases, iALS-revisited alpha0 / nu), the losses, 15 alternating iterations (objective within 1e-4
relative), the Cholesky solve against a dense solve, CG converging as ``cg_steps`` grows, rows in
batches and a CSR streamed from host memory (a tiny memory budget), empty rows, and the errors. What
this cannot check (CuPy, NVRTC, cuBLAS, device memory, speed) is in test_gpu_als.py, run on a GPU.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from cuda_emu.emulator import Emulator
from hypothesis import given, settings
from hypothesis import strategies as st

from recforge._ops import cpu, cuda, kernels

IMPLICIT = {"alpha": 2.0, "regularization": 0.1, "alpha0": 0.5, "nu": 0.5}


def _patch(mp, emulator, budget=64 << 20, free=1 << 30, block=64, grid=3) -> None:
    for attr, value in (("_xp", lambda: np), ("_launch", emulator.launch), ("_memory_budget", lambda: budget),
                        ("_free_memory", lambda: free), ("_pinned", np.array), ("_max_shared", lambda: 48 << 10),
                        ("BLOCK", block), ("MAX_GRID", grid)):  # fmt: skip
        mp.setattr(cuda, attr, value)


@pytest.fixture
def gpu(emulator, monkeypatch) -> Emulator:
    """cuda.py on the CPU: NumPy arrays, the emulated kernels, 3 blocks of 64 threads per launch (every
    grid-stride loop turns); the budgets are large (one batch, CSR resident) unless a test lowers them."""
    _patch(monkeypatch, emulator)
    emulator.launches.clear()
    return emulator


def interactions(rng, n, m, density, empty_rows=(), negative=False):
    x = sp.random(n, m, density=density, format="csr", random_state=rng, dtype=np.float32)
    x.data[:] = rng.integers(1, 6, x.nnz) * (rng.choice([-1, 1], x.nnz) if negative else 1)
    x = x.tolil()
    for r in empty_rows:
        x[r, :] = 0
    x = x.tocsr()
    x.eliminate_zeros()
    return x


def factors(rng, n, f, scale=0.3):
    return (rng.standard_normal((n, f)) * scale).astype(np.float32)


def implicit_step(ops, m, Y, X, solver, cg_steps=3, **params):
    ops.als_implicit_half_step(m, Y, ops.gram(Y, 1), X, solver=solver, cg_steps=cg_steps, threads=1,
                               **{**IMPLICIT, **params})  # fmt: skip


# -- the kernels --------------------------------------------------------------------------------------
def test_every_als_kernel_is_launched_with_matching_types(gpu):
    rng = np.random.default_rng(0)
    m = interactions(rng, 12, 9, 0.3, empty_rows=[2])
    Y, X = factors(rng, 9, 4), factors(rng, 12, 4)
    implicit_step(cuda, m, Y, X, "cg")
    implicit_step(cuda, m, Y, X, "cholesky")
    cuda.als_explicit_half_step(m, Y, np.zeros(9, np.float32), X, np.zeros(12, np.float32), regularization=0.1,
                                global_mean=3.0, threads=1)  # fmt: skip
    assert set(gpu.launches) == set(kernels.SOURCES["als.cu"])


@pytest.mark.parametrize("scaling", ["all_pairs", "observed"])
@pytest.mark.parametrize("solver", ["cg", "cholesky", "cholesky-in-global-memory"])
@pytest.mark.parametrize("f", [1, 5, 32, 40])
def test_implicit_half_step_matches_the_cpu(gpu, monkeypatch, solver, f, scaling):
    if solver == "cholesky-in-global-memory":  # a device without room for the matrix in shared memory
        monkeypatch.setattr(cuda, "_max_shared", lambda: 4 * f * f - 4)
        solver = "cholesky"
    rng = np.random.default_rng(f)
    m = interactions(rng, 40, 30, 0.2, empty_rows=[0, 7])
    Y, X0 = factors(rng, 30, f), factors(rng, 40, f)
    want, got = X0.copy(), X0.copy()
    implicit_step(cpu, m, Y, want, solver, scaling=scaling)
    implicit_step(cuda, m, Y, got, solver, scaling=scaling)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert (got[[0, 7]] == 0).all()  # rows without entries: exactly zero, as on the CPU


@pytest.mark.parametrize("solver", ["cg", "cholesky"])
def test_prior_half_step_matches_the_cpu(gpu, solver):
    """Side information: rows pulled toward a prior mean (empty rows solved too), as the CPU kernel."""
    rng = np.random.default_rng(3)
    m = interactions(rng, 40, 30, 0.2, empty_rows=[0, 7])
    Y, X0, prior = factors(rng, 30, 8), factors(rng, 40, 8), factors(rng, 40, 8)
    want, got = X0.copy(), X0.copy()
    implicit_step(cpu, m, Y, want, solver, prior=prior, prior_weight=4.0)
    implicit_step(cuda, m, Y, got, solver, prior=prior, prior_weight=4.0)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert (got[[0, 7]] != 0).all()  # rows without entries: their prior's solve
    with pytest.raises(ValueError, match="prior must be finite with shape"):
        implicit_step(cuda, m, Y, got, solver, prior=prior[:3], prior_weight=1.0)


@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 25), m=st.integers(1, 20), f=st.integers(1, 9), density=st.sampled_from([0.0, 0.1, 0.5]),
       alpha0=st.sampled_from([0.0, 1.0]), nu=st.sampled_from([0.0, 1.0]),
       scaling=st.sampled_from(["all_pairs", "observed"]), seed=st.integers(0, 2**16))  # fmt: skip
def test_half_steps_match_the_cpu_on_random_shapes(emulator, n, m, f, density, alpha0, nu, scaling, seed):
    with pytest.MonkeyPatch.context() as mp:  # hypothesis: no function-scoped fixtures
        _patch(mp, emulator, budget=2048, block=32, grid=2)  # small batches too
        rng = np.random.default_rng(seed)
        x = interactions(rng, n, m, density)
        Y, X0 = factors(rng, m, f), factors(rng, n, f)
        for solver in ("cg", "cholesky"):
            want, got = X0.copy(), X0.copy()
            implicit_step(cpu, x, Y, want, solver, alpha0=alpha0, nu=nu, regularization=0.5, scaling=scaling)
            implicit_step(cuda, x, Y, got, solver, alpha0=alpha0, nu=nu, regularization=0.5, scaling=scaling)
            np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)
        ob = rng.standard_normal(m).astype(np.float32)
        want = (np.zeros((n, f), np.float32), np.zeros(n, np.float32))
        got = (np.zeros((n, f), np.float32), np.zeros(n, np.float32))
        for ops, (X, b) in ((cpu, want), (cuda, got)):
            ops.als_explicit_half_step(x, Y, ob, X, b, regularization=0.2, global_mean=2.5, threads=1)
        np.testing.assert_allclose(got[0], want[0], rtol=1e-3, atol=1e-4)
        np.testing.assert_allclose(got[1], want[1], rtol=1e-3, atol=1e-4)


def test_explicit_half_step_and_losses_match_the_cpu(gpu):
    rng = np.random.default_rng(3)
    m = interactions(rng, 50, 35, 0.15, empty_rows=[4], negative=True)
    Y, other_bias = factors(rng, 35, 6), rng.standard_normal(35).astype(np.float32)
    out = {}
    for ops in (cpu, cuda):
        X, b = np.full((50, 6), 9.0, np.float32), np.full(50, 9.0, np.float32)  # overwritten, empty rows too
        ops.als_explicit_half_step(m, Y, other_bias, X, b, regularization=0.1, global_mean=0.5, threads=1)
        sse = ops.als_explicit_sse(m, X, b, Y, other_bias, global_mean=0.5, threads=1)
        loss = ops.als_implicit_loss(abs(m), X, Y, threads=1, **IMPLICIT)
        wr_loss = ops.als_implicit_loss(abs(m), X, Y, threads=1, **{**IMPLICIT, "nu": 1.0}, scaling="observed")
        out[ops.name] = X, b, sse, loss, wr_loss
    np.testing.assert_allclose(out["cuda"][0], out["cpu"][0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out["cuda"][1], out["cpu"][1], rtol=1e-4, atol=1e-5)
    assert out["cuda"][0][4].tolist() == [0.0] * 6 and out["cuda"][1][4] == 0.0
    assert out["cuda"][2] == pytest.approx(out["cpu"][2], rel=1e-5)
    assert out["cuda"][3] == pytest.approx(out["cpu"][3], rel=1e-5)
    assert out["cuda"][4] == pytest.approx(out["cpu"][4], rel=1e-5) and out["cpu"][4] != out["cpu"][3]


@pytest.mark.parametrize("solver", ["cg", "cholesky", "explicit"])
def test_fifteen_iterations_reach_the_cpu_objective(gpu, monkeypatch, solver):
    """Alternating half-steps as ALS.fit runs them: the objective after 15 iterations within 1e-4 relative."""
    monkeypatch.setattr(cuda, "BLOCK", 32)  # the Cholesky kernel synchronises its block per column: fewer threads
    rng = np.random.default_rng(5)
    ui = interactions(rng, 30, 24, 0.2)
    iu = ui.T.tocsr()
    f = 4
    objective = {}
    for ops in (cpu, cuda):
        X, Y = factors(np.random.default_rng(1), 30, f, 0.03), factors(np.random.default_rng(2), 24, f, 0.03)
        if solver == "explicit":
            bu, bi = np.zeros(30, np.float32), np.zeros(24, np.float32)
            for _ in range(15):
                ops.als_explicit_half_step(ui, Y, bi, X, bu, regularization=0.05, global_mean=3.0, threads=1)
                ops.als_explicit_half_step(iu, X, bu, Y, bi, regularization=0.05, global_mean=3.0, threads=1)
            objective[ops.name] = ops.als_explicit_sse(ui, X, bu, Y, bi, global_mean=3.0, threads=1)
        else:
            for _ in range(15):
                implicit_step(ops, ui, Y, X, solver)
                implicit_step(ops, iu, X, Y, solver)
            objective[ops.name] = ops.als_implicit_loss(ui, X, Y, threads=1, **IMPLICIT)
    assert objective["cuda"] == pytest.approx(objective["cpu"], rel=1e-4)


# -- the solvers ---------------------------------------------------------------------------------------
def dense_solution(m, Y, regularization, alpha, alpha0=1.0):
    """Each row's exact implicit solution by numpy.linalg.solve (float64)."""
    Y64 = Y.astype(np.float64)
    out = np.zeros((m.shape[0], Y.shape[1]))
    for u in range(m.shape[0]):
        cols, r = m.indices[m.indptr[u] : m.indptr[u + 1]], m.data[m.indptr[u] : m.indptr[u + 1]]
        if len(cols) == 0:
            continue
        c = 1.0 + alpha * r
        A = alpha0 * Y64.T @ Y64 + (Y64[cols].T * (c - alpha0)) @ Y64[cols] + regularization * np.eye(Y.shape[1])
        out[u] = np.linalg.solve(A, Y64[cols].T @ c)
    return out


def test_cholesky_equals_a_dense_solve(gpu):
    rng = np.random.default_rng(6)
    m = interactions(rng, 30, 50, 0.2, empty_rows=[3])
    Y = factors(rng, 50, 12)
    X = np.zeros((30, 12), np.float32)
    implicit_step(cuda, m, Y, X, "cholesky", alpha0=1.0, nu=0.0)
    np.testing.assert_allclose(X, dense_solution(m, Y, IMPLICIT["regularization"], IMPLICIT["alpha"]), rtol=2e-4,
                               atol=2e-5)  # fmt: skip


def test_cg_converges_to_the_exact_solution_as_cg_steps_grow(gpu):
    rng = np.random.default_rng(7)
    m = interactions(rng, 25, 40, 0.25)
    Y = factors(rng, 40, 10)
    exact = dense_solution(m, Y, IMPLICIT["regularization"], IMPLICIT["alpha"])
    errors = []
    for steps in (1, 2, 4, 8, 16):
        X = np.zeros((25, 10), np.float32)
        implicit_step(cuda, m, Y, X, "cg", cg_steps=steps, alpha0=1.0, nu=0.0)
        errors.append(np.abs(X - exact).max())
    assert all(b < a for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 1e-4 * np.abs(exact).max()


def test_not_positive_definite_names_the_row(gpu):
    m = sp.csr_matrix(np.array([[0, 0], [1, 0]], np.float32))
    X, Y = np.zeros((2, 2), np.float32), np.zeros((2, 2), np.float32)  # Y = 0, lambda = 0: singular
    with pytest.raises(ValueError, match="row 1 are not positive definite"):
        cuda.als_implicit_half_step(m, Y, cuda.gram(Y), X, alpha=1.0, regularization=0.0, alpha0=1.0, nu=0.0,
                                    solver="cholesky", cg_steps=1, threads=1)  # fmt: skip


# -- batches and streaming -------------------------------------------------------------------------------
def test_batches_and_a_streamed_csr_give_the_same_factors(gpu, monkeypatch):
    rng = np.random.default_rng(8)
    m = interactions(rng, 70, 40, 0.15, empty_rows=[0, 69])
    Y, X0 = factors(rng, 40, 6), factors(rng, 70, 6)
    results = []
    for budget, free in ((64 << 20, 1 << 30), (600, 1 << 30), (600, 1024)):  # one batch; batches; streamed
        monkeypatch.setattr(cuda, "_memory_budget", lambda b=budget: b)
        monkeypatch.setattr(cuda, "_free_memory", lambda b=free: b)
        dev = cuda.csr(m)
        assert dev.resident == (free > 1024)
        assert len(list(cuda._batches(dev, 4 * 6 * 6, 16))) > 1 or budget > 600
        row = []
        for solver in ("cg", "cholesky"):
            X = X0.copy()
            implicit_step(cuda, dev, Y, X, solver)
            row.append(X)
        row.append(cuda.als_implicit_loss(dev, X0, Y, threads=1, **IMPLICIT))
        results.append(row)
    for other in results[1:]:
        np.testing.assert_allclose(other[0], results[0][0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(other[1], results[0][1], rtol=1e-5, atol=1e-6)
        assert other[2] == pytest.approx(results[0][2], rel=1e-9)


def test_csr_keeps_int64_row_pointers_and_validates(gpu):
    rng = np.random.default_rng(9)
    m = interactions(rng, 5, 4, 0.5)
    dev = cuda.csr(m)
    assert dev.indptr.dtype == np.int64 and dev.host_indptr.dtype == np.int64 and dev.indices.dtype == np.int32
    assert cuda.csr(dev) is dev
    bad = sp.csr_matrix((np.ones(1, np.float32), np.array([7], np.int32), np.array([0, 1, 1, 1, 1, 1])), shape=(5, 4))
    with pytest.raises(ValueError, match="ratings"):
        cuda.csr(bad, "ratings")


def test_the_cholesky_launch_asks_for_shared_memory_only_where_it_fits(gpu, monkeypatch):
    launches = []
    monkeypatch.setattr(cuda, "_launch", lambda kernel, n, args, shared=0: launches.append((kernel, args[4], shared)))
    A, b = np.zeros((3, 128, 128), np.float32), np.zeros((3, 128), np.float32)
    for limit in (227 << 10, 48 << 10):  # an H100's opt-in limit: f = 128 in shared memory; 48 KiB: global memory
        monkeypatch.setattr(cuda, "_max_shared", lambda v=limit: v)
        cuda._solve_spd(A, b, 0)
    assert launches == [("rf_cholesky_solve", 1, 4 * 128 * 128), ("rf_cholesky_solve", 0, 0)]


def test_factor_arrays_are_checked_before_any_launch(gpu):
    rng = np.random.default_rng(10)
    m = interactions(rng, 6, 5, 0.5)
    Y, X = factors(rng, 5, 3), factors(rng, 6, 3)
    G = cuda.gram(Y)
    for bad_x, what in ((X.astype(np.float64), "X"), (X[:, :2], "X"), (np.asfortranarray(X), "X")):
        with pytest.raises(ValueError, match=f"{what} must be a C-contiguous float32"):
            cuda.als_implicit_half_step(m, Y, G, bad_x, solver="cg", cg_steps=1, threads=1, **IMPLICIT)
    with pytest.raises(ValueError, match="Y must be"):
        cuda.als_implicit_half_step(m, Y[:4], G, X, solver="cg", cg_steps=1, threads=1, **IMPLICIT)
    with pytest.raises(ValueError, match="own_bias must be"):
        cuda.als_explicit_half_step(m, Y, np.zeros(5, np.float32), X, np.zeros(5, np.float32), regularization=0.1,
                                    global_mean=0.0, threads=1)  # fmt: skip
    with pytest.raises(ValueError, match="cg_steps must be >= 1"):
        cuda.als_implicit_half_step(m, Y, G, X, solver="cg", cg_steps=0, threads=1, **IMPLICIT)
    assert gpu.launches == []


ALS_WR = {"nu": 1.0, "regularization_scaling": "observed"}


@pytest.mark.parametrize("config", [{"solver": "cg"}, {"solver": "cholesky", **ALS_WR}, {"feedback": "explicit"}])
def test_dask_block_half_step_runs_the_gpu_kernels(gpu, monkeypatch, config):
    """rf.distributed's block task with device="cuda" (GPU workers): the block's CSR and factors go to
    the device, ``get_ops("cuda")``'s half-step runs, the new factors come back as host arrays."""
    pytest.importorskip("distributed", reason="recforge.distributed needs the dask extra")
    from recforge import _backend
    from recforge.distributed import _tasks

    monkeypatch.setattr(_backend, "_cupy_problem", lambda: None)  # "CuPy sees a GPU"
    rng = np.random.default_rng(5)
    m = interactions(rng, 40, 30, 0.2, empty_rows=[3])
    Y, X0 = factors(rng, 30, 6), factors(rng, 40, 6)
    explicit = config.get("feedback") == "explicit"
    other = (Y, rng.standard_normal(30).astype(np.float32) if explicit else None)
    own = (X0, np.zeros(40, np.float32) if explicit else None)
    params = {"feedback": "implicit", "threads": 1, "alpha": 2.0, "regularization": 0.1, "alpha0": 1.0, "nu": 0.0,
              "regularization_scaling": "all_pairs", "cg_steps": 3, "global_bias": 2.5, **config}  # fmt: skip
    G = cpu.gram(Y, 1)
    want = _tasks.half_step(cpu.csr(m), other, G, own, {**params, "device": "cpu"})
    gpu.launches.clear()
    got = _tasks.half_step(cpu.csr(m), other, G, own, {**params, "device": "cuda"})
    assert gpu.launches  # the GPU kernels ran
    assert all(isinstance(a, np.ndarray) for a in got if a is not None) and (got[1] is None) == (not explicit)
    for g, w in zip(got, want):
        if w is not None:
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(own[0], X0)  # the inputs stay untouched
