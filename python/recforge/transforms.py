"""``rf.transforms``: public alias of :mod:`recforge.data.transforms` (so ``import recforge.transforms`` works too)."""

from __future__ import annotations

from .data.transforms import *  # noqa: F401,F403
from .data.transforms import __all__  # noqa: F401
