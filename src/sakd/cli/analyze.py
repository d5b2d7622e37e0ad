"""``sakd analyze``: synaptic operations, firing rates and energy against the ANN twin."""

from __future__ import annotations

import json
from pathlib import Path

from sakd.cli.command import COMMANDS, Command, data_overrides, device, key_value, positive
from sakd.outputs import write_text


@COMMANDS.register("analyze")
class Analyze(Command):
    """synaptic operations, firing rates and energy of an SNN checkpoint vs its ANN twin"""

    def arguments(self, p):
        p.add_argument("checkpoint", help="a spiking checkpoint file (or run folder: its last.pt)")
        p.add_argument(
            "--images", type=int, default=None, help="the first N test images (default: the whole test split)"
        )
        p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
        device(p)
        p.add_argument(
            "--batch-size", type=positive, default=None, help="images per batch (default: the run's eval batch)"
        )
        p.add_argument(
            "--e-mac", type=float, default=4.6, help="energy of a MAC in pJ (default %(default)s: 45 nm, Horowitz 2014)"
        )
        p.add_argument("--e-ac", type=float, default=0.9, help="energy of an accumulate in pJ (default %(default)s)")
        p.add_argument("--energy-model", default=None, metavar="NAME",
                       help="the energy model that counts memory traffic, shown beside the operations-only figure "
                            "(default lemaire; `sakd list energy-models` lists them)")
        p.add_argument("--energy-option", action="append", default=[], metavar="KEY=VALUE",
                       type=key_value("--energy-option"),
                       help="an option of the energy model (its constructor's keyword arguments; repeatable)")
        data_overrides(p)

    def run(self, args) -> int:
        from sakd.analysis.analyze import ENERGY_MODEL, analyze_checkpoint, print_analysis, save_analysis
        from sakd.analysis.energy import E_AC_PJ, E_MAC_PJ

        result = analyze_checkpoint(args.checkpoint, args.images, args.overrides, device=args.device, e_mac=args.e_mac,
                                    e_ac=args.e_ac, batch_size=args.batch_size,
                                    energy_model=args.energy_model or ENERGY_MODEL,
                                    energy_options=dict(args.energy_option))
        print_analysis(result)
        defaults = (args.e_mac, args.e_ac, args.energy_model or ENERGY_MODEL, args.energy_option) == (
            E_MAC_PJ, E_AC_PJ, ENERGY_MODEL, [])
        if Path(args.checkpoint).is_dir() and not args.overrides and defaults:
            save_analysis({**result, "spiking": True}, args.checkpoint, args.images)  # for compare and report
        if args.json:
            write_text(args.json, json.dumps(result, indent=2), "--json")
        return 0
