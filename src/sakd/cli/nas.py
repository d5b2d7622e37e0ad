"""``sakd nas``: the architecture study (§3.3) in three steps: train, search, plot."""

from __future__ import annotations

import json

from sakd.cli.command import COMMANDS, Command
from sakd.cli.train import Train


class SupernetTrain(Train):
    usage = "sakd nas train"

    def trainer_class(self):
        from sakd.nas.train import SupernetTrainer

        return SupernetTrainer


@COMMANDS.register("nas")
class Nas(Command):
    """the architecture study (§3.3): supernet training, search, Figure 3"""

    def arguments(self, p):
        nas = p.add_subparsers(dest="nas_command", required=True, metavar="STEP")
        q = nas.add_parser("train", help="train a one-shot supernet distilled from a fixed ANN teacher")
        q.add_argument("--config", help="a YAML file or packaged config (e.g. nas/tiny_supernet)")
        q.add_argument("--resume", metavar="RUN", help="continue the supernet run in this folder")
        q.add_argument("overrides", nargs="*", metavar="key=value")
        q = nas.add_parser("search", help="evaluate subnets of a trained supernet (resumable)")
        q.add_argument("checkpoint", help="the supernet's checkpoint (or run folder)")
        q.add_argument("--strategy", choices=("tpe", "random"), help="default: the config's nas.strategy")
        q.add_argument("--subnets", type=int, help="distinct subnets to evaluate (default: nas.subnets)")
        q.add_argument("--results", help="JSONL results file (default: search.jsonl beside the checkpoint)")
        q.add_argument("--calibration-batches", type=int, help="batches to re-estimate BatchNorm statistics")
        q.add_argument("--seed", type=int)
        q.add_argument("--device", default="auto")
        q = nas.add_parser("plot", help="Figure 3: parallel coordinates of a results file, as PNG and SVG")
        q.add_argument("results")
        q.add_argument("--out", help="output path without suffix (default: beside the results)")

    def run(self, args) -> int:
        if args.nas_command == "train":
            return SupernetTrain().run(args)
        if args.nas_command == "search":
            from sakd.nas.search import search

            summary = search(args.checkpoint, args.results, strategy=args.strategy, subnets=args.subnets,
                             calibration_batches=args.calibration_batches, seed=args.seed, device=args.device)
            print(json.dumps(summary, indent=2))
            return 0
        from sakd.nas.plot import plot_results

        for path in plot_results(args.results, args.out):
            print(path)
        return 0
