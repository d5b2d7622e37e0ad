"""``sakd export``: an SNN checkpoint as a NIR or ONNX file, checked after writing."""

from __future__ import annotations

import json

from sakd.cli.command import COMMANDS, Command, key_value, positive
from sakd.outputs import write_text


@COMMANDS.register("export")
class Export(Command):
    """export an SNN checkpoint to NIR or ONNX (BatchNorm folded), checked after writing"""

    def arguments(self, p):
        p.add_argument("checkpoint", help="a spiking checkpoint file (or run folder: its last.pt)")
        p.add_argument(
            "--format", required=True, metavar="FORMAT", help="nir or onnx (`sakd list exporters` lists them)"
        )
        p.add_argument("-o", "--out", required=True, metavar="FILE", help="the file to write")
        p.add_argument("--input-size", type=positive, nargs=2, metavar=("H", "W"),
                       help="input height and width (default: the checkpoint's data set's)")
        p.add_argument("--dt", type=float, default=None,
                       help="NIR: the time step of the simulator that will run the graph (default 1; "
                            "snnTorch's importer uses 1e-4, Norse's 1e-3); = --option dt=DT")
        p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", type=key_value("--option"),
                       help="an option of the format's exporter (its function's keyword arguments; repeatable)")
        p.add_argument("--json", metavar="FILE", help="also write the export summary as JSON")

    def writes(self, args):
        return [(args.out, "-o")]

    def run(self, args) -> int:
        from sakd.export import export_checkpoint

        options = dict(args.option)
        if args.dt is not None:
            options["dt"] = args.dt
        summary = export_checkpoint(args.checkpoint, args.format, args.out,
                                    tuple(args.input_size) if args.input_size else None, **options)
        print(json.dumps(summary, indent=2))
        if args.json:
            write_text(args.json, json.dumps(summary, indent=2), "--json")
        return 0
