"""``sakd quickstart``: the main job, offline on the CPU."""

from __future__ import annotations

from sakd.cli.command import COMMANDS, Command
from sakd.outputs import writable_folder


@COMMANDS.register("quickstart")
class Quickstart(Command):
    """teacher, SNN and SAKD student on the embedded digits (CPU, minutes)"""

    def arguments(self, p):
        p.add_argument("--output-dir", default="runs/quickstart", help="where the runs go (default: %(default)s)")
        p.add_argument("--epochs", type=int, default=None, help="epochs per run (default: the config's, 15)")
        p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides for all three runs")

    def check_targets(self, args):
        writable_folder(args.output_dir, "--output-dir")

    def run(self, args) -> int:
        from sakd.training.quickstart import quickstart

        quickstart(args.output_dir, args.epochs, args.overrides)
        return 0
