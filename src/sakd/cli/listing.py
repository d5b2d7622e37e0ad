"""``sakd list KIND``: every registry, listable; ``sakd configs``; and the older listing
commands (``sakd models``, ``sakd neurons`` ...), kept as aliases of ``sakd list``."""

from __future__ import annotations

from sakd.cli.command import COMMANDS, Command
from sakd.registry import Registry, registries


def kinds() -> dict[str, list[Registry]]:
    """Each ``sakd list`` KIND and the registries it shows, from the registries themselves."""
    out: dict[str, list[Registry]] = {}
    for registry in registries(listed=True):
        for kind in registry.listed:
            out.setdefault(kind, []).append(registry)
    return out


def show(kind: str) -> None:
    groups = kinds()[kind]
    for registry in groups:
        if len(groups) > 1:
            print(f"{registry.heading}:")
        width = max(map(len, registry.names()), default=0)
        for name, desc in registry.describe().items():
            print(f"{'  ' if len(groups) > 1 else ''}{name:<{width}}  {desc}")


@COMMANDS.register("list")
class List(Command):
    """list what is registered of one kind: models, datasets, neurons, losses, commands ..."""

    def arguments(self, p):
        known = list(kinds())
        p.add_argument("kind", choices=known, metavar="KIND", help=f"one of: {', '.join(known)}")

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

    Alias.__doc__ = f"list the registered {kind} (= sakd list {kind})"
    return Alias


for _kind in ("models", "datasets", "neurons", "surrogates", "losses", "optimizers", "exporters"):
    COMMANDS.register(_kind)(alias(_kind))
