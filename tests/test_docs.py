"""The examples in the docs run: every docstring example of the package (doctest) and the README's
Python block, so that neither can rot."""

from __future__ import annotations

import ast
import doctest
import importlib
import pkgutil
import re
from pathlib import Path

import pytest
from conftest import data_path

import recforge

REPO = Path(__file__).resolve().parents[1]
MODULES = ["recforge"] + sorted(
    m.name for m in pkgutil.walk_packages(recforge.__path__, "recforge.") if m.name.rsplit(".", 1)[-1] not in
    ("_core", "_cuda")  # compiled
)  # fmt: skip


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    try:
        module = importlib.import_module(name)
    except ImportError as exc:  # a module of an optional extra (recforge.distributed: Dask)
        pytest.skip(f"{name} needs an optional extra: {exc}")
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report = []
    for test in doctest.DocTestFinder().find(module, name):
        runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)


def test_doctests_are_found():
    """The run above is not vacuous: the package documents its main entry points with examples."""
    finder = doctest.DocTestFinder()
    count = 0
    for name in MODULES:
        try:
            count += sum(len(t.examples) for t in finder.find(importlib.import_module(name), name))
        except ImportError:  # an optional extra
            continue
    assert count >= 20, count


def test_readme_python_example(monkeypatch, tmp_path, capsys):
    data_path("ml-100k", "u.item")
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)
    assert blocks, "the README has no Python example"
    monkeypatch.chdir(tmp_path)
    try:
        import matplotlib  # noqa: F401
    except ImportError:  # charts are an optional extra (recforge[plot]): the rest of the example still runs
        blocks = [b.replace('chart="compare.png"', "chart=None") for b in blocks]
    recforge.set_config(progress=False)
    namespace: dict = {}  # the blocks read as one session
    try:
        for block in blocks:
            if not block.startswith("# (illustration"):  # needs the reader's own data: said in the block
                exec(compile(block, "README.md", "exec"), namespace)
    finally:
        recforge.set_config(progress=True)
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[")]
    new_user = ast.literal_eval(printed[-1])  # the titles printed for the new user
    assert len(new_user) == 5 and not {"Star Wars (1977)", "Return of the Jedi (1983)"} & set(new_user)
    assert "Raiders of the Lost Ark (1981)" in new_user  # what a Star Wars fan gets (ALS is deterministic)
    assert (tmp_path / "als.rf").is_file()
