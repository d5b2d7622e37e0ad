"""``sakd convert``: an ANN checkpoint as an SNN checkpoint (QCFS or data-based normalisation)."""

from __future__ import annotations

import json

from sakd.cli.command import COMMANDS, Command, positive
from sakd.outputs import write_text


@COMMANDS.register("convert")
class Convert(Command):
    """convert a trained ANN into an SNN at T timesteps (QCFS thresholds, or max / percentile of its activations)"""

    def arguments(self, p):
        p.add_argument("checkpoint", help="an ANN checkpoint file (or run folder: its last.pt)")
        p.add_argument("--method", required=True, choices=("qcfs", "max", "percentile"),
                       help="qcfs: an ANN trained with model.neuron.name=qcfs, its thresholds as they are; max / "
                            "percentile: a ReLU ANN, each activation's largest output (or that percentile) over "
                            "--images training images")
        p.add_argument("--timesteps", type=positive, required=True, metavar="T", help="the SNN's timesteps")
        p.add_argument("-o", "--out", required=True, metavar="FILE", help="the SNN checkpoint to write")
        p.add_argument("--images", type=positive, default=256,
                       help="calibration images from the run's training split (default %(default)s)")
        p.add_argument("--percentile", type=float, default=99.9, help="for --method percentile (default %(default)s)")
        p.add_argument("--start", type=float, default=None,
                       help="the initial membrane as a fraction of the threshold (default: 0.5 for qcfs, 0 "
                            "otherwise, SpikingJelly's)")
        p.add_argument("--json", metavar="FILE", help="also write what was done as JSON")

    def writes(self, args):
        return [(args.out, "-o")]

    def run(self, args) -> int:
        from sakd.training.conversion import convert

        summary = convert(args.checkpoint, args.method, args.timesteps, args.out, images=args.images,
                          percentile=args.percentile, start=args.start)
        print(json.dumps(summary, indent=2))
        if args.json:
            write_text(args.json, json.dumps(summary, indent=2), "--json")
        return 0
