"""Installed package versions, as every record embedcache writes states them (store groups,
runs, saved probes, exports)."""

from __future__ import annotations

import platform
from importlib import metadata

__all__ = ["distribution_version", "package_versions"]


def distribution_version(name: str) -> str | None:
    """The installed version of a package, also when its distribution is named otherwise
    (``xgboost`` comes as ``xgboost`` or ``xgboost-cpu``); ``None`` when it is not installed."""
    for distribution in (name, f"{name}-cpu"):
        try:
            return metadata.version(distribution)
        except metadata.PackageNotFoundError:
            continue
    return None


def package_versions(names) -> dict[str, str | None]:
    """``{"python": ..., name: version}`` for ``names``, in that order."""
    return {"python": platform.python_version(), **{name: distribution_version(name) for name in names}}
