"""``sakd list KIND``: every registry, listable; ``sakd configs``; and the older listing
commands (``sakd models``, ``sakd neurons`` ...), kept as aliases of ``sakd list``."""

from __future__ import annotations

import importlib

from sakd.cli.command import COMMANDS, Command

# KIND -> the registries it shows: (heading, module, registry name)
KINDS = {
    "models": [("models (model.name)", "sakd.models", "MODELS"),
               ("networks from elsewhere (model.name=SOURCE:NAME, twinned through torch.fx)", "sakd.models",
                "MODEL_SOURCES")],
    "datasets": [("data sets (data.name)", "sakd.data", "DATASETS")],
    "neurons": [("neurons (model.neuron.name)", "sakd.neurons", "NEURONS")],
    "surrogates": [("surrogates (model.neuron.surrogate)", "sakd.neurons", "SURROGATES")],
    "losses": [("loss terms (distill.terms)", "sakd.distill", "LOSSES"),
               ("feature transforms (distill.features.transform)", "sakd.distill", "TRANSFORMS"),
               ("feature distances (distill.features.distance)", "sakd.distill", "DISTANCES")],
    "optimizers": [("optimizers (optim.name)", "sakd.training.optim", "OPTIMIZERS"),
                   ("schedules (optim.scheduler)", "sakd.training.optim", "SCHEDULERS")],
    "schedulers": [("schedules (optim.scheduler)", "sakd.training.optim", "SCHEDULERS")],
    "exporters": [("export formats (sakd export --format)", "sakd.export.export", "EXPORTERS")],
    "loggers": [("experiment trackers (run.loggers)", "sakd.training.loggers", "LOGGERS")],
    "commands": [("commands", "sakd.cli.command", "COMMANDS")],
}


def show(kind: str) -> None:
    groups = [(heading, getattr(importlib.import_module(module), name)) for heading, module, name in KINDS[kind]]
    for heading, registry in groups:
        if len(groups) > 1:
            print(f"{heading}:")
        width = max(map(len, registry.names()))
        for name, desc in registry.describe().items():
            print(f"{'  ' if len(groups) > 1 else ''}{name:<{width}}  {desc}")


@COMMANDS.register("list")
class List(Command):
    """list what is registered of one kind: models, datasets, neurons, losses, commands ..."""

    def arguments(self, p):
        p.add_argument("kind", choices=list(KINDS), metavar="KIND", help=f"one of: {', '.join(KINDS)}")

    def run(self, args) -> int:
        show(args.kind)
        return 0


@COMMANDS.register("configs")
class Configs(Command):
    """list the packaged configs, or print one resolved: sakd configs [NAME] [key=value ...]"""

    def arguments(self, p):
        p.add_argument("name", nargs="?", metavar="NAME",
                       help="a packaged config (or a YAML file): print it resolved (its base: chain merged, every "
                            "default filled in)")
        p.add_argument("overrides", nargs="*", metavar="key=value", help="overrides to apply first")

    def run(self, args) -> int:
        import yaml

        from sakd.training.config import load_config, packaged_configs

        if args.name is None:
            print("\n".join(packaged_configs()))
            return 0
        print(yaml.safe_dump(load_config(args.name, args.overrides).to_dict(), sort_keys=False), end="")
        return 0


def alias(kind: str) -> type[Command]:
    """``sakd KIND``: ``sakd list KIND`` under its older name."""

    class Alias(Command):
        def run(self, args) -> int:
            show(kind)
            return 0

    Alias.__doc__ = f"list the registered {KINDS[kind][0][0].split(' (')[0]} (= sakd list {kind})"
    return Alias


for _kind in ("models", "datasets", "neurons", "surrogates", "losses", "optimizers", "exporters"):
    COMMANDS.register(_kind)(alias(_kind))
