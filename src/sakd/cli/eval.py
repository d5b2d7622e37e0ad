"""``sakd eval``: a checkpoint's accuracy and firing rates on its test split."""

from __future__ import annotations

import argparse
import json

from sakd.cli.command import COMMANDS, Command, data_overrides, device, positive
from sakd.errors import SakdError
from sakd.outputs import write_text


def split_timesteps(tokens: list[str]) -> tuple[list[int] | str, list[str], list[str]]:
    """``--timesteps``' words: numbers separated by spaces or commas (``1 2 4``, ``1,2,4``) or
    ``all``. argparse gives the option every word after it, so a ``key=value`` among them is an
    override and any other word (a run folder) the checkpoint: (timesteps, overrides, the rest)."""
    numbers, overrides, rest = [], [], []
    for token in tokens:
        if "=" in token:
            overrides.append(token)
            continue
        if "," not in token and token != "all" and not token.lstrip("-").isdigit():
            rest.append(token)
            continue
        for word in filter(None, token.split(",")):
            try:
                numbers.append(word if word == "all" else positive(word))
            except argparse.ArgumentTypeError as exc:
                raise SakdError(f"--timesteps: {exc} (write numbers such as 1 2 4 or 1,2,4, or all)") from None
    if not numbers:
        raise SakdError("--timesteps needs numbers such as 1 2 4 or 1,2,4, or all")
    if "all" in numbers and len(numbers) > 1:
        raise SakdError("--timesteps takes numbers or `all`, not both")
    return ("all" if numbers == ["all"] else numbers), overrides, rest


@COMMANDS.register("eval")
class Eval(Command):
    """evaluate a checkpoint: top-1/top-5, firing rates"""

    def arguments(self, p):
        p.add_argument("checkpoint", nargs="?", help="a checkpoint file (or run folder: its last.pt)")
        p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
        p.add_argument("--timesteps", nargs="+", metavar="T",
                       help="an SNN's accuracy read out after each of these timesteps (deployment at T' "
                            "timesteps): numbers separated by spaces or commas (1 2 4, 1,2,4), or `all`: 1 to its "
                            "own T")
        device(p)
        data_overrides(p)

    def run(self, args) -> int:
        from sakd.training.evaluate import evaluate_checkpoint, print_report

        timesteps, overrides, positional = None, list(args.overrides), [args.checkpoint] * bool(args.checkpoint)
        if args.timesteps is not None:
            timesteps, taken, rest = split_timesteps(args.timesteps)
            overrides, positional = overrides + taken, positional + rest
        if len(positional) != 1:
            raise SakdError(f"sakd eval takes one checkpoint (a file or a run folder), got {len(positional)}: "
                            f"{' '.join(positional) or 'none'}")
        result = evaluate_checkpoint(positional[0], overrides, device=args.device, timesteps=timesteps)
        print_report(result)
        if args.json:
            write_text(args.json, json.dumps(result, indent=2), "--json")
        return 0
