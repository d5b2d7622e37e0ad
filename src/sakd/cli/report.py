"""``sakd report``: one self-contained HTML file of runs."""

from __future__ import annotations

from sakd.cli.command import COMMANDS, Command, device, positive


@COMMANDS.register("report")
class Report(Command):
    """one self-contained HTML file: curves, firing rates, energy, config, Figure 4"""

    def arguments(self, p):
        p.add_argument("runs", nargs="+", metavar="RUN_DIR")
        p.add_argument("-o", "--out", default="report.html", help="the HTML file (default: %(default)s)")
        p.add_argument("--teacher", metavar="ANN.pt", help="Figure 4's ANN (default: the ANN among the runs)")
        p.add_argument(
            "--baseline", metavar="SNN.pt", help="Figure 4's SNN without KD (default: the SNN among the runs)"
        )
        p.add_argument("--student", metavar="SAKD.pt", help="Figure 4's student (default: the SAKD run among the runs)")
        p.add_argument(
            "--images", type=positive, default=1000, help="test images for the energy analysis (default: %(default)s)"
        )
        p.add_argument("--figure-images", type=positive, default=4, help="images in Figure 4 (default: %(default)s)")
        device(p)

    def writes(self, args):
        return [(args.out, "-o")]

    def run(self, args) -> int:
        from sakd.analysis.report import build_report

        print(build_report(args.runs, args.out, teacher=args.teacher, baseline=args.baseline, student=args.student,
                           images=args.images, figure_images=args.figure_images, device=args.device))
        return 0
