"""Developer tasks: ``nox -s lint tests`` (the default), ``cuda_kernels``, ``tests_gpu``, ``tests_fake_gpu``,
``bench``, ``cpp``, ``dev``, ``sanitize`` (ASan + UBSan), ``fuzz_atheris``.

Every session that builds recforge installs it editable without build isolation into its own build
folder (``build/nox-<session>/``), so rerunning a session recompiles only what changed (README
"Development"). Arguments after ``--`` go to the tool: ``nox -s tests -- -k topk -x``.
"""

from __future__ import annotations

import subprocess

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True

BUILD_REQUIRES = ["scikit-build-core>=0.10", "pybind11>=3.0", "cmake>=3.21", "ninja"]


def _install_dev(session: nox.Session, extras: str, *config: str) -> None:
    """Editable install of ``.[extras]`` with no build isolation and a per-session build folder."""
    session.install(*BUILD_REQUIRES)
    session.install(
        "--no-build-isolation",
        "-e",
        f".[{extras}]",
        f"-Cbuild-dir=build/nox-{session.name}/{{wheel_tag}}",
        *config,
    )


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check, ruff format --check and clang-format --dry-run (``-- --fix`` applies them)."""
    session.install("-r", "tools/lint-requirements.txt")
    session.run("bash", "tools/lint.sh", *session.posargs, external=True)


@nox.session
def tests(session: nox.Session) -> None:
    """The pytest suite (the `cuda` tests skip with their reason where CuPy or a GPU is missing)."""
    _install_dev(session, "test")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session(venv_backend="none")
def cuda_kernels(session: nox.Session) -> None:
    """Compile every shipped CUDA kernel source with nvcc for sm_80 and sm_90 (CI runs it; needs nvcc, no GPU)."""
    session.run("python", "tools/check_cuda_kernels.py", *session.posargs, external=True)


@nox.session
def tests_gpu(session: nox.Session) -> None:
    """The tests marked ``cuda``, with CuPy (the `gpu` extra): needs a GPU and its driver, not nvcc."""
    _install_dev(session, "test,gpu")
    session.run("python", "-m", "pytest", "-m", "cuda", *session.posargs)


# Sanitizer runtime settings: stop at the first error, as a crash (the fuzz runner counts it); no leak
# report (CPython's own allocations); huge allocations fail as MemoryError instead of exhausting RAM.
ASAN_OPTIONS = ("detect_leaks=0:halt_on_error=1:abort_on_error=1:allocator_may_return_null=1:"
                "max_allocation_size_mb=4096:detect_odr_violation=0")  # fmt: skip
UBSAN_OPTIONS = "halt_on_error=1:print_stacktrace=1"


def _sanitizer_env() -> dict[str, str]:
    """LD_PRELOAD of the compiler's ASan runtime (it must come before the module) and of libstdc++
    (else ASan finds no real __cxa_throw: "CHECK failed ... real___cxa_throw" at the first C++
    exception, python itself not linking libstdc++), and the runtime options."""
    preload = [subprocess.check_output(["c++", f"-print-file-name={lib}"], text=True).strip()
               for lib in ("libasan.so", "libstdc++.so")]  # fmt: skip
    return {"LD_PRELOAD": " ".join(preload), "ASAN_OPTIONS": ASAN_OPTIONS, "UBSAN_OPTIONS": UBSAN_OPTIONS}


@nox.session
def sanitize(session: nox.Session) -> None:
    """The test suite and the fuzz suite on an ASan + UBSan build (RECFORGE_SANITIZE=ON, build/nox-sanitize).

    A memory error or undefined behaviour in the C++ code aborts the test with the sanitizer's report.
    ``-- <pytest args>`` replaces the default selection (``tests``).
    """
    _install_dev(session, "test", "-Ccmake.define.RECFORGE_SANITIZE=ON")
    env = _sanitizer_env() | {"RECFORGE_SANITIZED": "1"}
    session.run("python", "-m", "pytest", "-p", "no:cacheprovider", *(session.posargs or ["tests"]), env=env)


@nox.session
def fuzz_atheris(session: nox.Session) -> None:
    """Coverage-guided fuzzing (atheris) of the CSR validator and the model-file loader, 60 s each
    (``-- 300`` for 300 s). A new finding stops with the input; see tests/fuzz/atheris_targets.py."""
    _install_dev(session, "test")
    session.install("atheris")
    seconds = session.posargs[0] if session.posargs else "60"
    for target in ("csr", "load"):
        session.run("python", "tests/fuzz/atheris_targets.py", target, f"-max_total_time={seconds}", "-seed=1")


@nox.session
def tests_fake_gpu(session: nox.Session) -> None:
    """The ``cuda`` tests without a GPU: CuPy stood in for by NumPy, the kernels compiled as C++ (needs g++).

    Checks the GPU tests' logic and the device glue before a GPU session; slow (threads emulate the
    GPU: ~25 min on 2 cores), and no substitute for a real GPU run (tests/cuda_emu/fake_gpu.py).
    """
    _install_dev(session, "test")
    session.run("python", "-m", "pytest", "-p", "cuda_emu.fake_gpu", "-m", "cuda", *session.posargs,
                env={"PYTHONPATH": "tests"})  # fmt: skip


@nox.session
def bench(session: nox.Session) -> None:
    """A quick smoke run of the benchmarks (``-- als`` for one; full runs: python bench/run.py NAME)."""
    _install_dev(session, "bench")
    for name in session.posargs or ["topk", "als", "sgd", "mlp"]:
        session.run("python", "bench/run.py", name, "--quick", "--repeat", "1", "--threads", "2")


@nox.session
def cpp(session: nox.Session) -> None:
    """The C++ core alone: CTest smoke tests, cmake --install, a find_package(recforge) consumer."""
    session.install("cmake>=3.21", "ninja")
    session.run("bash", "tools/cpp_smoke.sh", *session.posargs, external=True)


@nox.session
def dev(session: nox.Session) -> None:
    """A development environment in .nox/dev: editable, incremental, compile_commands.json for clangd.

    Activate it with ``source .nox/dev/bin/activate``; rerun ``nox -s dev`` after a C++ edit.
    """
    _install_dev(session, "test", "-Ccmake.define.CMAKE_EXPORT_COMPILE_COMMANDS=ON")
    session.log("activate with: source .nox/dev/bin/activate")
