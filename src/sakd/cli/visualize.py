"""``sakd visualize``: the paper's Figure 4."""

from __future__ import annotations

import json
from pathlib import Path

from sakd.cli.command import COMMANDS, Command, data_overrides, device
from sakd.errors import SakdError
from sakd.outputs import write_text


@COMMANDS.register("visualize")
class Visualize(Command):
    """the paper's Figure 4: features and GradCAM of ANN, SNN w/o KD and SAKD student"""

    def arguments(self, p):
        p.add_argument(
            "--teacher", required=True, metavar="ANN.pt", help="the ANN teacher's checkpoint (or run folder)"
        )
        p.add_argument("--baseline", required=True, metavar="SNN.pt", help="the SNN trained without KD")
        p.add_argument(
            "--student", required=True, metavar="SAKD.pt", help="the SNN trained with SAKD (its data set is used)"
        )
        p.add_argument("--images", type=int, default=None, help="the first N test images (default 4)")
        p.add_argument("--index", type=int, nargs="+", metavar="I", help="these test images instead")
        p.add_argument(
            "--taps", type=int, nargs="+", metavar="K", help="stage taps shown as feature maps (default: all)"
        )
        p.add_argument(
            "--cam-tap", type=int, default=None, metavar="K", help="GradCAM's target stage (default: the last)"
        )
        p.add_argument(
            "-o", "--out", default="figure4", help="output path without suffix: .png and .svg (default: %(default)s)"
        )
        p.add_argument(
            "--json", metavar="FILE", help="also write predictions and the similarity to the teacher as JSON"
        )
        p.add_argument("--no-plot", action="store_true", help="no figure: only the similarity (e.g. over many images)")
        device(p, "cpu")
        data_overrides(p, "of the student")

    def writes(self, args):
        return [] if args.no_plot else [(Path(args.out).with_suffix(s), "-o") for s in (".png", ".svg")]

    def run(self, args) -> int:
        from sakd.analysis.figure4 import ROLES, figure4_data, plot_figure4

        if args.images is not None and args.index:
            raise SakdError("give --images N or --index I..., not both")
        data = figure4_data(args.teacher, args.baseline, args.student, images=args.images, indices=args.index,
                            taps=args.taps, cam_tap=args.cam_tap, overrides=args.overrides, device=args.device)
        for path in [] if args.no_plot else plot_figure4(data, args.out):
            print(path)
        if args.json:
            write_text(args.json, json.dumps(data.summary(), indent=2), "--json")
        print(f"Pearson correlation with the ANN teacher's maps, mean over {len(data.indices)} images:")
        for role, sim in data.similarity().items():
            taps = ", ".join(f"{tap} {r:+.3f}" for tap, r in sim["features"].items())
            print(f"  {ROLES[role]:<14} features: {taps}; GradCAM {sim['cam']:+.3f}")
        return 0
