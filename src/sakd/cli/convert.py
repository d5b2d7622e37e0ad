"""``sakd convert``: an ANN checkpoint as an SNN checkpoint (QCFS or data-based normalisation), from
flags or from a conversion recipe (``--config``: its ``convert`` section, ``model.init`` the ANN,
``model.timesteps`` the SNN's T)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sakd.cli.command import COMMANDS, Command, positive
from sakd.errors import ConfigError
from sakd.outputs import writable, write_text

# what a conversion reads of its recipe (the rest, the data and the network, come from the checkpoint)
READ = ("model.init", "model.timesteps", "convert.", "run.name", "run.output_dir")


@COMMANDS.register("convert")
class Convert(Command):
    """convert a trained ANN into an SNN at T timesteps (QCFS thresholds, or max / percentile of its activations)"""

    details = ("a recipe: `sakd convert --config cifar10/vgg16_qcfs_convert [key=value ...]` converts its\n"
               "model.init at model.timesteps by its convert section and writes RUN_DIR/snn-T<T>.pt\n"
               "(run.output_dir/run.name); flags given beside it win over the recipe.")

    def arguments(self, p):
        p.add_argument("checkpoint", nargs="?", help="an ANN checkpoint file (or run folder: its last.pt)")
        p.add_argument("overrides", nargs="*", metavar="key=value", help="with --config: overrides of the recipe")
        p.add_argument("--config", help="a conversion recipe: a YAML file or packaged config name")
        p.add_argument("--method", choices=("qcfs", "max", "percentile"),
                       help="qcfs: an ANN trained with model.neuron.name=qcfs, its thresholds as they are; max / "
                            "percentile: a ReLU ANN, each activation's largest output (or that percentile) over "
                            "--images training images")
        p.add_argument("--timesteps", type=positive, metavar="T", help="the SNN's timesteps")
        p.add_argument("-o", "--out", metavar="FILE", help="the SNN checkpoint to write")
        p.add_argument("--images", type=positive,
                       help="calibration images from the run's training split (default 256)")
        p.add_argument("--percentile", type=float,
                       help="for --method percentile (default 99.9)")
        p.add_argument("--start", type=float, default=None,
                       help="the initial membrane as a fraction of the threshold (default: 0.5 for qcfs, 0 "
                            "otherwise, SpikingJelly's)")
        p.add_argument("--per-channel", action=argparse.BooleanOptionalAction, default=None,
                       help="max / percentile: one threshold per channel of each activation (default: per layer)")
        p.add_argument("--json", metavar="FILE", help="also write what was done as JSON")

    def writes(self, args):
        return [(args.out, "-o")] if args.out else []

    def settings(self, args) -> dict:
        """What to convert, how, and where to: the flags, over the recipe where one is given."""
        flags = {k: getattr(args, k) for k in ("method", "timesteps", "out", "images", "percentile", "start",
                                                "per_channel")}
        if not args.config:
            if args.overrides:
                raise ConfigError(f"overrides {args.overrides} need a recipe (--config)")
            missing = [f"--{k}" for k in ("method", "timesteps") if flags[k] is None] + ([] if args.out else ["-o"])
            if args.checkpoint is None or missing:
                raise ConfigError(f"sakd convert needs {' '.join(['CHECKPOINT', *missing])} (or --config RECIPE)")
            return {"checkpoint": args.checkpoint, **{k: v for k, v in flags.items() if v is not None}}
        from sakd.training import load_config

        overrides = ([args.checkpoint] if args.checkpoint else []) + args.overrides
        for item in overrides:
            if "=" not in item:
                raise ConfigError(f"give a checkpoint or --config, not both: {args.config} names its checkpoint as "
                                  f"model.init (override it with model.init={item})")
            if not item.split("=", 1)[0].strip().startswith(READ):
                raise ConfigError(f"override {item!r}: a conversion reads only {', '.join(READ)}* of its recipe; "
                                  "the data and the network are the checkpoint's")
        cfg = load_config(args.config, overrides)
        if cfg.convert.method is None and args.method is None:
            raise ConfigError(f"{args.config} is not a conversion recipe: it sets no convert.method")
        if not cfg.model.init or cfg.model.init == "teacher":
            raise ConfigError(f"{args.config}: model.init must name the ANN checkpoint to convert, "
                              f"got {cfg.model.init!r}")
        name = cfg.run.name or f"{cfg.data.name}-{cfg.model.name}-convert".replace(":", "_")
        recipe = {"method": cfg.convert.method, "timesteps": cfg.model.timesteps, "images": cfg.convert.images,
                  "percentile": cfg.convert.percentile, "start": cfg.convert.start,
                  "per_channel": cfg.convert.per_channel,
                  "out": str(Path(cfg.run.output_dir) / name / f"snn-T{flags['timesteps'] or cfg.model.timesteps}.pt")}
        return {"checkpoint": cfg.model.init, **recipe, **{k: v for k, v in flags.items() if v is not None}}

    def run(self, args) -> int:
        from sakd.training.conversion import convert

        todo = self.settings(args)  # what is not given: convert()'s defaults
        if args.config and not args.out:  # the recipe's output, checked as -o is
            writable(todo["out"], "the converted checkpoint")
        summary = convert(todo.pop("checkpoint"), todo.pop("method"), todo.pop("timesteps"), todo.pop("out"), **todo)
        shown = {**summary, "thresholds": {  # per channel: each site's range (every one: --json and the checkpoint)
            site: v if not isinstance(v, list) else {"channels": len(v), "min": min(v), "max": max(v)}
            for site, v in summary["thresholds"].items()}}
        print(json.dumps(shown, indent=2))
        if args.json:
            write_text(args.json, json.dumps(summary, indent=2), "--json")
        return 0
