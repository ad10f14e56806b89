"""python/recforge/_core.pyi matches the built module (tools/gen_core_stub.py regenerates it)."""

from __future__ import annotations

import ast
import difflib
import importlib.util
from pathlib import Path

import pytest

from recforge import _core

ROOT = Path(__file__).resolve().parents[1]
GENERATOR = ROOT / "tools" / "gen_core_stub.py"
STUB = ROOT / "python" / "recforge" / "_core.pyi"

pytestmark = pytest.mark.skipif(not GENERATOR.exists(), reason="needs the source tree (tools/gen_core_stub.py)")


def _generator():
    spec = importlib.util.spec_from_file_location("gen_core_stub", GENERATOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_core_stub_is_current():
    generated = _generator().generate(_core)
    current = STUB.read_text() if STUB.exists() else ""
    if generated != current:
        import pybind11

        diff = "".join(
            difflib.unified_diff(
                current.splitlines(True),
                generated.splitlines(True),
                "python/recforge/_core.pyi (checked in)",
                "generated from the built recforge._core",
            )
        )
        pytest.fail(
            f"_core.pyi is stale: run `python tools/gen_core_stub.py` and commit the result "
            f"(built with pybind11 {pybind11.__version__}, which decides how types are spelled)\n{diff}",
            pytrace=False,
        )


def test_core_stub_names_every_public_binding():
    tree = ast.parse(STUB.read_text())
    names = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    names |= {n.target.id for n in tree.body if isinstance(n, ast.AnnAssign)}
    public = {n for n in dir(_core) if not n.startswith("_") or n == "__version__"}
    assert public <= names, f"missing from _core.pyi: {sorted(public - names)}"
