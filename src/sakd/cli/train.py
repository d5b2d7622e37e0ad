"""``sakd train``: one run from a config, or a stopped run resumed."""

from __future__ import annotations

import json

from sakd.cli.command import COMMANDS, Command
from sakd.errors import SakdError


@COMMANDS.register("train")
class Train(Command):
    """train an ANN, an SNN baseline or an SAKD student from a YAML config"""

    usage = "sakd train"
    details = ("config keys: every key with its type, default and meaning is listed by `sakd config keys [SECTION]`;\n"
               "recipes: `sakd configs` lists them, `sakd configs NAME` prints one resolved (its base: chain merged,\n"
               "every default filled in), which key=value overrides change.")

    def trainer_class(self):
        """The class that runs it (the architecture study's is another); imported when it runs."""
        from sakd.training import Trainer

        return Trainer

    def arguments(self, p):
        p.add_argument("--config", help="a YAML file or a packaged config name (see `sakd configs`)")
        p.add_argument("--resume", metavar="RUN", help="continue the run in this folder (or from this checkpoint)")
        p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. optim.lr=0.05")

    def run(self, args) -> int:
        from sakd.training import load_config

        trainer_cls = self.trainer_class()
        if args.resume:
            if args.config:
                raise SakdError("give --config or --resume, not both (a resumed run keeps its own config)")
            trainer = trainer_cls.from_checkpoint(args.resume, args.overrides)
        else:
            if not args.config:
                raise SakdError(f"{self.usage} needs --config FILE (or --resume RUN); see `sakd configs`")
            trainer = trainer_cls(load_config(args.config, args.overrides))
        trainer.console.print(f"run folder: {trainer.run_dir}")
        print(json.dumps(trainer.fit(), indent=2))
        return 0
