"""`import recforge` stays light: the heavy dependencies load when first used, not at import."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_import_recforge_defers_heavy_modules():
    code = (
        "import sys, recforge\n"
        "print(' '.join(m for m in ('pandas', 'scipy.stats', 'tqdm', 'recforge.models', 'recforge.datasets')"
        " if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert loaded == []


def test_lazy_names_resolve_and_are_listed():
    import recforge as rf

    for name in rf.__all__:
        assert getattr(rf, name) is not None
    assert set(rf.__all__) <= set(dir(rf))
    assert callable(rf.topk) and callable(rf.ALS) and rf.datasets.__name__ == "recforge.datasets"
    from recforge import Interactions, split  # from-imports go through the same path

    assert Interactions is rf.Interactions and split is rf.split
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        rf.nope  # noqa: B018
