"""Every built-in method, imported once so that each registers its class, and the lookup of a config's
``method.type``: a registered name, or ``package.module.ClassName`` for a user's own method outside the
package (docs/methods.md "Adding a method").
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

from cliptrase.method import (
    proxyclip,  # noqa: F401  (registers ProxyCLIP)
    resclip,  # noqa: F401  (registers ResCLIP)
    scclip,  # noqa: F401  (registers SCCLIP)
    trase,  # noqa: F401  (registers CLIPtrase)
)
from cliptrase.method.interface import METHODS, DenseMethod


def method_class(type_name: str) -> type[DenseMethod]:
    """The class a ``method.type`` names.

    Raises:
        KeyError: an unknown registered name (the message lists the valid ones).
        ImportError: a dotted path whose module cannot be imported.
        TypeError: a dotted path that does not name a ``DenseMethod`` subclass.
    """
    if "." not in type_name:
        return METHODS.get(type_name)
    module_name, _, attr = type_name.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ImportError(f"cannot import {module_name!r} for method type {type_name!r}: {err}") from None
    cls = getattr(module, attr, None)
    if not (isinstance(cls, type) and issubclass(cls, DenseMethod)):
        raise TypeError(f"{type_name!r} is not a DenseMethod subclass (cliptrase.method.interface)")
    return cls


def method_types() -> list[str]:
    """The registered method types."""
    return METHODS.names()


def build_method(cfg: Any, dataset: str | None = None) -> DenseMethod:
    """The method of a validated method config (or a mapping of its fields): ``method_class(type)(cfg)``."""
    if isinstance(cfg, Mapping):
        cfg = SimpleNamespace(**cfg)
    return method_class(cfg.type)(cfg, dataset)
