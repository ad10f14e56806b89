"""Declarative hyperparameters: one spec per model class, checked in ``fit``; scikit-learn conventions.

Each model class lists its parameters once in ``_param_spec`` (name -> ``Param``); ``__init__`` only
stores its arguments (``_store_params``); ``fit`` (and ``from_factors`` / ``load``) call ``_validate_params``.
``get_params`` / ``set_params`` read the ``__init__`` signature, so ``sklearn.base.clone`` and grid
search work without scikit-learn being a dependency, and the saved parameter list is
``get_params()``. Renamed parameters stay accepted for one release through ``_aliases`` (old name
-> new name), with a DeprecationWarning naming the new one.
"""

from __future__ import annotations

import inspect
import math
import numbers
import warnings
from typing import Any, ClassVar

from .._backend import resolve_threads

__all__ = ["EPOCHS", "INT_MAX", "MAX_EPOCHS", "MAX_NEGATIVES", "NEGATIVES", "Param", "ParamsMixin", "check_epochs"]

INT_MAX = 2**31 - 1  # the largest int parameter a kernel takes (a C int)
# Work bounds, far past any useful value: a fit asking for more is refused up front instead of
# running for days (each epoch is a pass over the data; each positive draws `negatives` negatives
# per epoch).
MAX_EPOCHS = 10_000
MAX_NEGATIVES = 10_000


class Param:
    """The rule of one hyperparameter.

    Parameters
    ----------
    kind : {"int", "float", "bool", "choice", "seed", "threads", "device", "range", "clip", "int_tuple"}
        "seed": int in [0, 2^63); "threads": int in [0, THREAD_LIMIT] (0 = all cores, see
        ``_backend.resolve_threads``); "device": "auto" | "cpu" | "cuda"; "range": a finite (low, high)
        pair with low < high; "clip": a bool or a "range"; "int_tuple": a sequence of ints.
    low, high : bounds of "int" / "float" (and of the items of "int_tuple"), inclusive unless
        ``low_open`` / ``high_open``. An "int" / "int_tuple" is at most ``INT_MAX`` (2^31 - 1: the
        kernels take a C int) unless ``high`` says less.
    choices : the allowed values of "choice"; for "float", names accepted besides the numbers.
    optional : None is allowed too.
    nonempty : "int_tuple" must have at least one item.
    note : why the bounds are what they are, added to the message of a value out of them.
    """

    def __init__(self, kind: str, *, low=None, high=None, low_open=False, high_open=False, choices=(),
                 optional=False, nonempty=False, note=""):  # fmt: skip
        if kind in ("int", "int_tuple") and high is None:
            high = INT_MAX
        self.kind, self.low, self.high, self.low_open, self.high_open = kind, low, high, low_open, high_open
        self.choices, self.optional, self.nonempty, self.note = tuple(choices), optional, nonempty, note

    def check(self, name: str, value: Any) -> None:
        """Raise TypeError (wrong kind) or ValueError (out of range) naming ``name``."""
        if value is None and self.optional:
            return
        kind = self.kind
        if kind == "bool":
            if not isinstance(value, (bool, numbers.Integral)) or value not in (0, 1):
                raise TypeError(f"{name} must be a bool, got {value!r}")
        elif kind == "choice":
            if value not in self.choices:
                raise ValueError(f"{name} must be one of {self.choices}, got {value!r}")
        elif kind == "device":
            if value not in ("auto", "cpu", "cuda"):
                raise ValueError(f"{name} must be 'auto', 'cpu' or 'cuda', got {value!r}")
        elif kind == "seed":
            _check_int(name, value)
            if not 0 <= value < 2**63:
                raise ValueError(f"{name} must be an int in [0, 2^63), got {value!r}")
        elif kind == "threads":
            resolve_threads(value)  # the one rule for every threads= (recforge._backend)
        elif kind in ("int", "float"):
            if kind == "int":
                _check_int(name, value)
            elif isinstance(value, str) and value in self.choices:
                return
            elif isinstance(value, bool) or not isinstance(value, numbers.Real):
                named = f" or one of {self.choices}" if self.choices else ""
                raise TypeError(f"{name} must be a number{named}, got {value!r}")
            self._check_bounds(name, value)
        elif kind == "clip" and isinstance(value, bool):
            return
        elif kind in ("range", "clip"):
            try:
                lo, hi = (float(v) for v in value)
            except (TypeError, ValueError):
                what = "True, False, None" if kind == "clip" else "None"
                raise ValueError(f"{name} must be {what} or a (low, high) pair of numbers, got {value!r}") from None
            if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
                raise ValueError(f"{name} must be a finite (low, high) pair with low < high, got {value!r}")
        elif kind == "int_tuple":
            if isinstance(value, (numbers.Number, str)) or not hasattr(value, "__iter__"):
                raise TypeError(f"{name} must be a sequence of ints, got {type(value).__name__}")
            items = list(value)
            if self.nonempty and not items:
                raise ValueError(f"{name} must have at least one item, got {value!r}")
            for v in items:
                _check_int(f"each item of {name}", v)
                self._check_bounds(f"each item of {name}", v)
        else:  # a typo in a spec, not a user error
            raise AssertionError(f"unknown parameter kind {kind!r}")

    def _check_bounds(self, name, value) -> None:
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value}")
        lo, hi = self.low, self.high
        if lo is not None and (value <= lo if self.low_open else value < lo):
            raise ValueError(f"{name} must be {'>' if self.low_open else '>='} {lo}, got {value}")
        if hi is not None and (value >= hi if self.high_open else value > hi):
            note = f" ({self.note})" if self.note else ""
            raise ValueError(f"{name} must be {'<' if self.high_open else '<='} {hi}, got {value}{note}")


EPOCHS = Param("int", low=1, high=MAX_EPOCHS, note="each epoch is a pass over the data; more would run for days")
NEGATIVES = Param(
    "int",
    low=1,
    high=MAX_NEGATIVES,
    note="each positive draws this many negatives an epoch; more would run for days",
)


def check_epochs(epochs) -> int:
    """An ``epochs`` argument (of a fold-in) by the ``epochs`` hyperparameter's rule."""
    EPOCHS.check("epochs", epochs)
    return int(epochs)


def _check_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")


class ParamsMixin:
    """get_params / set_params / repr / validation from ``__init__``'s signature and ``_param_spec``."""

    _param_spec: ClassVar[dict[str, Param]] = {}
    _aliases: ClassVar[dict[str, str]] = {}  # deprecated name -> its new name

    @classmethod
    def _param_names(cls) -> list[str]:
        """The ``__init__`` parameters, in declaration order (``**deprecated`` excluded)."""
        sig = inspect.signature(cls.__init__)
        return [p.name for p in sig.parameters.values()
                if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]  # fmt: skip

    @classmethod
    def _new_name(cls, name: str, stacklevel: int = 3) -> str:
        """``name``, or its new spelling with a DeprecationWarning when it is a deprecated alias."""
        new = cls._aliases.get(name)
        if new is None:
            return name
        warnings.warn(f"{cls.__name__}: {name!r} is deprecated, use {new!r}", DeprecationWarning, stacklevel=stacklevel)
        return new

    def _store_params(self, args: dict) -> None:
        """``__init__``'s whole body, ``self._store_params(locals())``: store every argument as given.

        The names come from the signature (as ``get_params`` reads them), so the list is kept in
        one place; the ``**deprecated`` keywords are mapped to their new names.
        """
        for name in self._param_names():
            setattr(self, name, args[name])
        for old, value in args.get("deprecated", {}).items():
            if old not in self._aliases:
                raise TypeError(f"{type(self).__name__}() got an unexpected keyword argument {old!r}")
            setattr(self, self._new_name(old, stacklevel=4), value)

    def __getattr__(self, name: str):
        # Only reached when normal lookup fails: old attribute names read the new ones.
        aliases = type(self)._aliases
        if name in aliases:
            return getattr(self, type(self)._new_name(name))
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def get_params(self, deep: bool = True) -> dict:
        """The constructor arguments, by name (scikit-learn's estimator convention)."""
        out = {}
        for name in self._param_names():
            value = getattr(self, name)
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                out.update((f"{name}__{k}", v) for k, v in value.get_params().items())
            out[name] = value
        return out

    def set_params(self, **params):
        """Set constructor arguments (deprecated names are mapped); validated at the next ``fit``."""
        names = set(self._param_names())
        for key, value in params.items():
            key = self._new_name(key)
            if key not in names:
                raise ValueError(f"invalid parameter {key!r} for {type(self).__name__}; valid: {sorted(names)}")
            setattr(self, key, value)
        return self

    def _validate_params(self) -> None:
        """Check every parameter against ``_param_spec`` (TypeError / ValueError naming it)."""
        for name, spec in self._param_spec.items():
            spec.check(name, getattr(self, name))

    def __repr__(self) -> str:
        sig = inspect.signature(type(self).__init__)
        shown = []
        for name in self._param_names():
            value, default = getattr(self, name, None), sig.parameters[name].default
            try:
                same = bool(value == default) and type(value) is type(default)
            except (TypeError, ValueError):  # arrays and other values without a plain ==
                same = False
            if not same:
                shown.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(shown)})"
