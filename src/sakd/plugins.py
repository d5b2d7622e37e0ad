"""Plug-in modules: a user's models, data sets, neurons, loss terms ... for every command.

A plug-in is a Python module that registers parts when imported (``@MODELS.register(...)``; see
CONTRIBUTING.md). sakd imports plug-ins from four places, in this order:

* ``sakd.plugins`` entry points of installed packages (``[project.entry-points."sakd.plugins"]
  mine = "my_package.sakd_parts"`` in the package's ``pyproject.toml``);
* the ``SAKD_PLUGINS`` environment variable: module names separated by commas;
* ``--plugin MODULE`` on the command line (repeatable, before or after the command);
* ``run.plugins`` of a config.

Modules are found on ``sys.path``, the current folder included. The ``--plugin`` modules, and
every module that registered a part the run's config names (from an entry point, the
environment, or a Python user's own module imported before ``sakd.train``), are
recorded in the run's ``run.plugins`` (its ``config.yaml`` and checkpoints), and whatever reads
the run later (``eval``, ``analyze``, ``visualize``, ``report``, ``compare``, ``export``,
``--resume``, a teacher checkpoint) imports them again first; one that cannot be imported is one
line naming it.
"""

from __future__ import annotations

import contextvars
import importlib
import os
import sys
from importlib import metadata

from sakd.errors import ConfigError

GROUP = "sakd.plugins"
ENVIRONMENT = "SAKD_PLUGINS"
# the plug-in modules a command was given (--plugin), in order: a command owns them (sakd.cli.main
# runs each in its own context), so one command's plug-ins are not recorded by the next one's runs
_LOADED: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("sakd_plugins", default=())


def loaded() -> list[str]:
    """The plug-in modules imported through here (and remembered) in this context."""
    return list(_LOADED.get())


def in_use(config: dict) -> list[str]:
    """What a run records as ``run.plugins``: the plug-ins imported through here, and the modules
    outside sakd that registered a part the run's config (a mapping) names, in any registry (a
    Python user's own module imported before ``sakd.train``); a script run as ``__main__`` cannot
    be imported again and is left out."""
    from sakd.registry import registries

    outside = sorted({module for r in registries() for name, module in r.modules().items()
                      if name in r.named_by(config) and module != "__main__"
                      and module != "sakd" and not module.startswith("sakd.")})
    return list(dict.fromkeys([*loaded(), *outside]))


def load(modules, source: str, remember: bool = True) -> list[str]:
    """Import each module of ``modules`` (once); ``source`` says in errors where it was named.
    ``remember``: every run of this process records it (the command line, the environment, entry
    points); modules a config or a checkpoint names are recorded by that config."""
    for name in modules:
        name = name.strip()
        if not name or name in _LOADED.get():
            continue
        failure = import_failure(name)
        if failure is not None:
            raise ConfigError(f"plug-in module {name!r} ({source}) {failure}; install it or put its folder on "
                              "PYTHONPATH")
        if remember:
            _LOADED.set((*_LOADED.get(), name))
    return loaded()


def import_failure(name: str) -> str | None:
    """Import the module ``name``; None if it imports, else why not, in a phrase."""
    here = os.getcwd() not in sys.path and "" not in sys.path  # a module in the current folder, as `python -m`
    if here:                                                      # finds it: on the path while it imports
        sys.path.append(os.getcwd())
    try:
        importlib.import_module(name)
    except ImportError as exc:
        return f"cannot be imported: {exc}"
    except Exception as exc:  # the module itself fails: what and where
        return f"failed while importing: {type(exc).__name__}: {exc}"
    finally:
        if here and os.getcwd() in sys.path:
            sys.path.remove(os.getcwd())
    return None


def load_installed() -> list[str]:
    """The entry points of installed packages, then ``SAKD_PLUGINS``."""
    for ep in metadata.entry_points(group=GROUP):  # a run records them where it names a part of theirs
        load([ep.value.split(":")[0]], f"entry point {ep.name!r} of group {GROUP}", remember=False)
    return load(os.environ.get(ENVIRONMENT, "").split(","), f"${ENVIRONMENT}", remember=False)


def load_recorded(config: dict | None) -> dict[str, str]:
    """Import the plug-ins a stored config (a run's ``config.yaml`` or a checkpoint's) records,
    each that can be; the others, module -> why not, for the reader to say what it goes on without
    (a loss term is not needed to evaluate) or, where a part it needs came from one, to name it in
    its error (:func:`named`)."""
    modules = ((config or {}).get("run") or {}).get("plugins") or []
    failures = {name: import_failure(name) for name in (modules if isinstance(modules, list) else [])}
    return {name: why for name, why in failures.items() if why is not None}


def named(missing: dict[str, str]) -> str:
    """Plug-ins that cannot be imported, in a phrase: ``'mine' (cannot be imported: No module named 'mine')``."""
    return ", ".join(f"{name!r} ({why})" for name, why in missing.items())
