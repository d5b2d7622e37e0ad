"""``sakd compare``: runs side by side."""

from __future__ import annotations

import json

from sakd.cli.command import COMMANDS, Command, positive
from sakd.outputs import write_text


@COMMANDS.register("compare")
class Compare(Command):
    """runs side by side: best/final top-1, top-5, firing rate, SOPs, energy"""

    def arguments(self, p):
        p.add_argument("runs", nargs="+", metavar="RUN_DIR")
        p.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
        p.add_argument("--analyze", action="store_true",
                       help="count SOPs and energy of runs that have no current analysis.json (`sakd analyze`)")
        p.add_argument("--images", type=positive, default=1000, help="test images for --analyze (default: %(default)s)")
        p.add_argument("--device", default="auto", help="for --analyze (default: %(default)s)")
        p.add_argument("--mixed-images", action="store_true",
                       help="show SOPs and energy counted on different numbers of test images (refused otherwise)")

    def run(self, args) -> int:
        from sakd.compare import compare

        rows = compare(args.runs, analyze=args.analyze, images=args.images, device=args.device,
                       mixed_images=args.mixed_images)
        if args.json:
            write_text(args.json, json.dumps(rows, indent=2), "--json")
        return 0
