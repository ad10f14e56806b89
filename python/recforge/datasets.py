"""``rf.datasets``: public alias of :mod:`recforge.data.datasets` (so ``import recforge.datasets`` works too)."""

from __future__ import annotations

from .data.datasets import *  # noqa: F401,F403
from .data.datasets import __all__  # noqa: F401
