"""Package-wide settings: ``set_config`` / ``get_config``.

``progress``: whether ``fit`` shows tqdm progress bars when called with ``progress=None`` (the
default). Starts from the environment variable ``RECFORGE_PROGRESS`` ("0", "false", "no" or
"off" silence the bars), read when recforge is imported.
"""

from __future__ import annotations

import os

__all__ = ["get_config", "set_config", "show_progress"]

_CONFIG = {"progress": os.environ.get("RECFORGE_PROGRESS", "1").strip().lower() not in ("0", "false", "no", "off")}


def get_config() -> dict:
    """A copy of the current settings, e.g. ``{"progress": True}``."""
    return dict(_CONFIG)


def set_config(*, progress: bool | None = None) -> None:
    """Change package-wide settings; arguments left as None keep their value.

    Parameters
    ----------
    progress : bool, optional
        Show progress bars in ``fit`` (when ``fit`` is called with ``progress=None``).
    """
    if progress is not None:
        if not isinstance(progress, bool):
            raise TypeError(f"progress must be a bool, got {type(progress).__name__}")
        _CONFIG["progress"] = progress


def show_progress(progress: bool | None) -> bool:
    """``progress`` when given, else the package-wide setting."""
    return _CONFIG["progress"] if progress is None else bool(progress)
