"""Constraints on configuration fields, checked when a config is loaded (not when a run needs them).

A dataclass field declares its range or its choices with :func:`limited`; ``Literal[...]`` types
declare fixed choices. :func:`check_field` is what the config loader calls on every value it reads,
so ``model.timesteps=0`` or ``run.amp=fp8`` is one line naming the key, the value and what is
allowed, before any data, model or teacher is loaded.
"""

from __future__ import annotations

import difflib
from dataclasses import field
from typing import Any
from collections.abc import Callable

from sakd.errors import ConfigError


def limited(default: Any = None, *, default_factory: Callable | None = None, ge: float | None = None,
            gt: float | None = None, le: float | None = None, lt: float | None = None,
            choices: Callable[[], list[str]] | None = None, check: Callable[[Any], Any] | None = None):
    """A dataclass field with bounds (``ge``/``gt``/``le``/``lt``), registry-backed ``choices``
    (a callable, so plug-ins registered later count) or a ``check`` that raises ``ConfigError``."""
    meta = {k: v for k, v in dict(ge=ge, gt=gt, le=le, lt=lt, choices=choices, check=check).items() if v is not None}
    if default_factory is not None:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


def check_field(value: Any, meta, key: str) -> None:
    """Raise :class:`ConfigError` if ``value`` breaks the field's declared limits (``None`` passes)."""
    if value is None or not meta:
        return
    items = value if isinstance(value, list) else [value]
    for item in items:
        numeric = isinstance(item, (int, float)) and not isinstance(item, bool)
        for op, bound, ok in (("ge", ">=", lambda v, b: v >= b), ("gt", ">", lambda v, b: v > b),
                              ("le", "<=", lambda v, b: v <= b), ("lt", "<", lambda v, b: v < b)):
            if op in meta and numeric and not ok(item, meta[op]):
                raise ConfigError(f"config key '{key}' must be {bound} {meta[op]}, got {item!r}")
        if "choices" in meta:
            known = list(meta["choices"]())  # a choice "PREFIX:*" takes any "PREFIX:something"
            if item not in known and not any(k.endswith(":*") and str(item).startswith(k[:-1]) and str(item) != k[:-1]
                                             for k in known):
                close = difflib.get_close_matches(str(item), known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(f"config key '{key}' must be one of {', '.join(known)}; got {item!r}{hint}")
        if "check" in meta:
            try:
                meta["check"](item)
            except ConfigError as exc:
                raise ConfigError(f"config key '{key}': {exc}") from None


def one_of(key: str, value: Any, allowed) -> ConfigError:
    """The error for a value outside a fixed set of choices."""
    allowed = list(allowed)
    close = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(f"config key '{key}' must be one of {', '.join(map(str, allowed))}; got {value!r}{hint}")
