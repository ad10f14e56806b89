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


def test_core_stub_enum_base_lists_only_members_every_enum_has():
    """_PybindEnum is stub-only: each member it lists must be one of every enum class that derives from it."""
    tree = ast.parse(STUB.read_text())
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    shared = {n.name for n in classes["_PybindEnum"].body if isinstance(n, ast.FunctionDef)}
    enums = [name for name, c in classes.items() if any(getattr(b, "id", None) == "_PybindEnum" for b in c.bases)]
    assert shared and enums
    for name in enums:
        missing = shared - set(vars(getattr(_core, name)))
        assert not missing, f"_core.{name} lacks {sorted(missing)}, which the stub's _PybindEnum gives it"
