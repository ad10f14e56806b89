"""``rf.split``: public alias of :mod:`recforge.data.splits` (so ``import recforge.split`` works too)."""

from __future__ import annotations

from .data.splits import *  # noqa: F401,F403
from .data.splits import __all__  # noqa: F401
