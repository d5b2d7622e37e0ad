"""``sakd eval``: a checkpoint's accuracy and firing rates on its test split."""

from __future__ import annotations

import json

from sakd.cli.command import COMMANDS, Command, data_overrides, device, positive
from sakd.errors import SakdError
from sakd.outputs import write_text


def steps(text: str):
    """``--timesteps``: a positive whole number or ``all``."""
    return text if text == "all" else positive(text)


@COMMANDS.register("eval")
class Eval(Command):
    """evaluate a checkpoint: top-1/top-5, firing rates"""

    def arguments(self, p):
        p.add_argument("checkpoint", help="a checkpoint file (or run folder: its last.pt)")
        p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
        p.add_argument("--timesteps", nargs="+", metavar="T", type=steps,
                       help="an SNN's accuracy read out after each of these timesteps (deployment at T' "
                            "timesteps), or `all`: 1 to its own T")
        device(p)
        data_overrides(p)

    def run(self, args) -> int:
        from sakd.evaluation import evaluate_checkpoint, print_report

        if args.timesteps is not None and "all" in args.timesteps and len(args.timesteps) > 1:
            raise SakdError("--timesteps takes numbers or `all`, not both")
        timesteps = None if args.timesteps is None else ("all" if "all" in args.timesteps else args.timesteps)
        result = evaluate_checkpoint(args.checkpoint, args.overrides, device=args.device, timesteps=timesteps)
        print_report(result)
        if args.json:
            write_text(args.json, json.dumps(result, indent=2), "--json")
        return 0
