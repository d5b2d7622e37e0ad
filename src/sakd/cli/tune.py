"""``sakd tune``: a hyperparameter study over a search space, scored on validation data."""

from __future__ import annotations

import json

from sakd.cli.command import COMMANDS, Command, positive


@COMMANDS.register("tune")
class Tune(Command):
    """tune a method's weights, temperatures and options with optuna (TPE) on a validation hold-out"""

    @property
    def details(self) -> str:
        """The search space file's format, from :mod:`sakd.tuning.space`."""
        from sakd.tuning import space

        text = (space.__doc__ or "::see sakd.tuning.space").split("::", 1)[1].strip("\n")  # none under python -OO
        return ("the --space file (YAML):\n" + text.replace("``", "`") + "\n\n"
                "several workers on one study: start the same sakd tune command in each process (one per GPU:\n"
                "CUDA_VISIBLE_DEVICES=k; a SLURM array: one task each) with the same --study folder (a shared\n"
                "file system) or the same --storage URL and no --seed (or a --seed each); they share the\n"
                "trials, none run twice, and a trial whose worker died is run again.")

    def arguments(self, p):
        p.add_argument("--config", required=True, help="the run to tune: a YAML file or a packaged config name")
        from sakd.tuning.space import packaged_spaces

        p.add_argument("--space", required=True,
                       help="a search space YAML (params / terms / combine) or a packaged one: "
                            f"{', '.join(packaged_spaces())}")
        p.add_argument("--trials", type=positive, default=20, help="finished trials to reach (default: %(default)s)")
        p.add_argument("--study", default=None,
                       help="the study's folder (default runs/tune/<config>-<space>); run again to continue it")
        p.add_argument("--pruner", choices=("median", "none"), default="median",
                       help="stop trials below the median of earlier ones at an epoch (default: %(default)s)")
        p.add_argument("--seed", type=int, default=None,
                       help="the sampler's seed, for a study drawn the same again by one process (default: none, "
                            "each process its own draws: workers started together draw apart)")
        p.add_argument("--prune-after", type=positive, default=None,
                       help="the first epoch the pruner may stop a trial at (default: a quarter of the epochs)")
        p.add_argument("--storage", metavar="URL", default=None,
                       help="a database optuna reaches (postgresql://..., mysql://..., sqlite:///study.db) for "
                            "workers on several machines (default: the journal file study.log in the study's "
                            "folder: processes on one machine or a shared file system)")
        p.add_argument("--heartbeat", type=positive, default=30, metavar="SECONDS",
                       help="a running trial's beat; a trial without one for 4x this (or whose process is gone, on "
                            "its machine) is failed and run again (default: %(default)s)")
        p.add_argument("overrides", nargs="*", metavar="key=value",
                       help="config overrides for every trial, e.g. data.val_fraction=0.1 optim.epochs=30")

    def writes(self, args):
        return [(self.folder(args) / "tune.json", "--study")]

    @staticmethod
    def folder(args):
        from pathlib import Path

        if args.study:
            return Path(args.study).expanduser()
        given = Path(str(args.config)).expanduser()
        config = given.stem if given.is_file() else str(args.config).removesuffix(".yaml").replace("/", "-")
        return Path("runs") / "tune" / f"{config}-{Path(str(args.space)).name.removesuffix('.yaml')}"

    def run(self, args) -> int:
        from sakd.tuning.space import SearchSpace
        from sakd.tuning.study import TuneSettings, tune

        settings = TuneSettings(args.config, SearchSpace.load(args.space), args.trials, self.folder(args),
                                list(args.overrides), pruner=args.pruner, seed=args.seed, prune_after=args.prune_after,
                                storage=args.storage, heartbeat=args.heartbeat)
        summary = tune(settings)
        best = summary.get("best")
        print(json.dumps({"study": str(settings.folder), "finished": summary["finished"], "best": best}, indent=2))
        return 0
