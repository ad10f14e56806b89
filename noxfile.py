"""Developer tasks: ``nox -s lint tests`` (the default), ``cuda_kernels``, ``tests_gpu``, ``tests_fake_gpu``,
``bench``, ``cpp``, ``dev``.

Every session that builds recforge installs it editable without build isolation into its own build
folder (``build/nox-<session>/``), so rerunning a session recompiles only what changed (README
"Development"). Arguments after ``--`` go to the tool: ``nox -s tests -- -k topk -x``.
"""

from __future__ import annotations

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
