"""``sakd eval``: a checkpoint's accuracy and firing rates on its test split."""

from __future__ import annotations

import json

from sakd.cli.command import COMMANDS, Command, data_overrides, device
from sakd.outputs import write_text


@COMMANDS.register("eval")
class Eval(Command):
    """evaluate a checkpoint: top-1/top-5, firing rates"""

    def arguments(self, p):
        p.add_argument("checkpoint", help="a checkpoint file (or run folder: its last.pt)")
        p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
        device(p)
        data_overrides(p)

    def run(self, args) -> int:
        from sakd.evaluation import evaluate_checkpoint, print_report

        result = evaluate_checkpoint(args.checkpoint, args.overrides, device=args.device)
        print_report(result)
        if args.json:
            write_text(args.json, json.dumps(result, indent=2), "--json")
        return 0
