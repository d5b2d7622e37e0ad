"""A search space for ``sakd tune``: what each trial draws, read from YAML and checked at load.

::

    params:              # config keys: a range, a list of choices, or a fixed value
      distill.tau: {low: 1, high: 8}
      distill.gamma: {low: 0.1, high: 10, log: true}
      optim.lr: [0.05, 0.1]
    terms:               # registered loss terms a trial adds to distill.terms, every option as above
      dkd: {weight: {low: 0.1, high: 4, log: true}, beta: {low: 1, high: 16}, tau: [2, 4, 8]}
      temporal_sd: {weight: {low: 0.1, high: 4, log: true}, tau: 1}
    combine: [1, 2]      # how many of `terms` a trial sums: single terms and pairs (default: all of them)

A range ``{low, high}`` draws real numbers uniformly (``log: true``: on a log scale; ``step``: on a
grid); with a whole-number ``step`` (and whole ``low`` and ``high``: ``{low: 1, high: 8, step: 1}``)
it draws whole numbers, which integer settings (``run.seed``, dkd's ``warmup``) need. A list draws
one of its entries (any YAML values); ``{value: V}`` fixes a value that is itself a list or a
mapping (``taps: {value: [1, 2]}``), which a bare list or mapping would not. With ``combine``, the
trial first draws which terms it sums (one
categorical over every set of the given sizes, named ``terms``) and then only the chosen terms'
options: the space is conditional, which optuna's TPE handles (define-by-run).
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from sakd.errors import ConfigError

KEYS = ("params", "terms", "combine")
SPACES = resources.files("sakd") / "tuning" / "spaces"  # the packaged ones


@dataclass(frozen=True)
class Dimension:
    """One drawn value: a range (``low``/``high``), choices, or a fixed value."""

    name: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple | None = None
    value: Any = None

    @classmethod
    def parse(cls, name: str, spec) -> Dimension:
        if isinstance(spec, list):
            if not spec:
                raise ConfigError(f"search space {name}: an empty list of choices")
            return cls(name, choices=tuple(spec))
        if not isinstance(spec, dict):
            return cls(name, value=spec)
        if set(spec) == {"value"}:
            return cls(name, value=spec["value"])
        unknown = set(spec) - {"low", "high", "log", "step"}
        if unknown or not {"low", "high"} <= set(spec):
            raise ConfigError(f"search space {name}: a range is {{low, high[, log][, step]}} (a fixed mapping: "
                              f"{{value: ...}}), got {spec}")
        low, high, step = spec["low"], spec["high"], spec.get("step")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high, step or 1)):
            raise ConfigError(f"search space {name}: low, high and step must be numbers, got {spec}")
        if not low < high:
            raise ConfigError(f"search space {name}: low {low} must be below high {high}")
        log = bool(spec.get("log", False))
        if log and (low <= 0 or step is not None):  # optuna: a log scale has no grid
            raise ConfigError(f"search space {name}: a log range needs low > 0 and no step, got {spec}")
        if step is not None and step <= 0:
            raise ConfigError(f"search space {name}: step must be > 0, got {step}")
        return cls(name, low=low, high=high, log=log, step=step)

    @property
    def integer(self) -> bool:
        return self.step is not None and all(isinstance(v, int) for v in (self.low, self.high, self.step))

    def draw(self, trial):
        """The trial's value (optuna's ``suggest_*`` under this dimension's name)."""
        if self.choices is not None:  # optuna stores plain values: other choices by their JSON
            plain = all(c is None or isinstance(c, (bool, int, float, str)) for c in self.choices)
            if plain:
                return trial.suggest_categorical(self.name, list(self.choices))
            picked = trial.suggest_categorical(self.name, [json.dumps(c) for c in self.choices])
            return json.loads(picked)
        if self.low is None:
            return self.value
        if self.integer:
            return trial.suggest_int(self.name, self.low, self.high, step=self.step)
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)


@dataclass
class SearchSpace:
    """Config keys and loss terms to draw, and which sets of the terms a trial may sum."""

    params: list[Dimension] = field(default_factory=list)
    terms: dict[str, list[Dimension]] = field(default_factory=dict)
    combinations: list[tuple[str, ...]] = field(default_factory=list)
    source: str = ""
    spec: dict = field(default_factory=dict)  # the space as written (a study records it)

    @classmethod
    def from_dict(cls, data: dict, source: str = "") -> SearchSpace:
        from sakd.distill.terms import LOSSES, check_options

        if not isinstance(data, dict) or not data:
            raise ConfigError(f"search space {source}: expected a mapping with {', '.join(KEYS)}")
        unknown = set(data) - set(KEYS)
        if unknown:
            raise ConfigError(f"search space {source}: unknown key(s) {sorted(unknown)}; it has {', '.join(KEYS)}")
        params = [Dimension.parse(k, v) for k, v in (data.get("params") or {}).items()]
        for d in params:
            if d.name == "distill.terms" and data.get("terms"):
                raise ConfigError(f"search space {source}: draw distill.terms under params or under terms, not both")
        terms: dict[str, list[Dimension]] = {}
        for name, options in (data.get("terms") or {}).items():
            LOSSES.get(name)  # an unknown term: one line with the registered names
            options = dict(options or {})
            if "weight" not in options:
                raise ConfigError(f"search space {source}: term {name!r} needs a weight (a value or a range)")
            check_options(name, {k: v for k, v in options.items() if k != "weight"})
            terms[name] = [Dimension.parse(f"{name}.{k}", v) for k, v in options.items()]
        combine = data.get("combine")
        names = list(terms)
        if combine is None:
            combinations = [tuple(names)] if names else []
        else:
            sizes = combine if isinstance(combine, list) else [combine]
            if not names or not all(isinstance(k, int) and 1 <= k <= len(names) for k in sizes):
                raise ConfigError(f"search space {source}: combine takes sizes from 1 to {len(names)} "
                                  f"(the number of terms), got {combine!r}")
            combinations = [c for k in sorted(set(sizes)) for c in itertools.combinations(names, k)]
        if not params and not terms:
            raise ConfigError(f"search space {source}: nothing to draw (no params, no terms)")
        return cls(params, terms, combinations, source, data)

    @classmethod
    def load(cls, source: str | Path) -> SearchSpace:
        """A YAML file, or the name of a packaged space (``sakd/tuning/spaces/<name>.yaml``)."""
        path = Path(source).expanduser()
        if not path.is_file():
            packaged = SPACES / f"{str(source).removesuffix('.yaml')}.yaml"
            if not packaged.is_file():
                names = ", ".join(packaged_spaces())
                raise ConfigError(f"search space {source!r} is neither a file nor a packaged space ({names})")
            path = Path(str(packaged))
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ConfigError(f"search space {path}: not valid YAML ({str(exc).splitlines()[0]})") from None
        return cls.from_dict(data, str(path))

    def overrides(self, trial, base_terms: list[dict]) -> list[str]:
        """A trial's draws as ``key=value`` overrides; the drawn terms are added after
        ``base_terms`` (the config's own ``distill.terms``)."""
        out = [f"{d.name}={json.dumps(d.draw(trial))}" for d in self.params]
        if self.terms:
            chosen = self.combinations[0]
            if len(self.combinations) > 1:
                labels = ["+".join(c) for c in self.combinations]
                chosen = self.combinations[labels.index(trial.suggest_categorical("terms", labels))]
            drawn = []
            for name in chosen:
                values = {d.name.split(".", 1)[1]: d.draw(trial) for d in self.terms[name]}
                weight = values.pop("weight")
                drawn.append({"name": name, "weight": weight, "options": values})
            out.append(f"distill.terms={json.dumps(base_terms + drawn)}")
        return out


def packaged_spaces() -> list[str]:
    """The names of the search spaces sakd ships (``--space NAME``)."""
    return sorted(p.name.removesuffix(".yaml") for p in SPACES.iterdir() if p.name.endswith(".yaml"))
