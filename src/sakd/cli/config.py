"""``sakd config keys [SECTION]``: every config key with its type, default and meaning."""

from __future__ import annotations

from sakd.cli.command import COMMANDS, Command


@COMMANDS.register("config")
class ConfigKeys(Command):
    """every config key with its type, default and meaning: sakd config keys [SECTION]"""

    details = ("SECTION: a section or key (model, model.neuron, data, optim, distill, distill.features, run, nas), "
               "or a list of sections' entries (distill.terms[]). Override any key on a command line as "
               "key=value (optim.lr=0.05, \"distill.terms=[{name: dkd, weight: 1}]\"); a recipe's resolved "
               "content: sakd configs NAME.")

    def arguments(self, p):
        p.add_argument("what", choices=["keys"], help="keys: list the config keys")
        p.add_argument("section", nargs="?", default=None, metavar="SECTION",
                       help="only this section or key (e.g. optim, model.neuron, distill.terms[])")

    def run(self, args) -> int:
        import textwrap

        from sakd.training.config_keys import config_keys

        for k in config_keys(args.section):
            print(f"{k.name}: {k.type} = {k.default}")
            if k.meaning:
                print(textwrap.fill(k.meaning, width=100, initial_indent="    ", subsequent_indent="    "))
        return 0
