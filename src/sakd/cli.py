"""The ``sakd`` command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sakd import __version__, plugins
from sakd.errors import SakdError
from sakd.outputs import writable, writable_folder, write_text

EPILOG = """examples:
  sakd quickstart                                   # digits: ANN teacher, SNN baseline, SAKD student
  sakd train --config cifar10/resnet19_ann          # train the ANN teacher
  sakd train --config cifar10/resnet19_sakd data.root=~/data optim.epochs=100
  sakd train --config cifar10/resnet19_sakd run.checkpoint_every=30min data.val_fraction=0.1
  sakd train --resume runs/cifar10-resnet19-sakd    # continue an interrupted run, mid-epoch too
  sakd eval runs/cifar10-resnet19-sakd/best.pt --json result.json
  sakd analyze runs/cifar10-resnet19-sakd/best.pt --images 1000   # SOPs, firing rates, energy vs the ANN
  sakd visualize --teacher T.pt --baseline S.pt --student K.pt --images 4   # Figure 4 (PNG, SVG)
  sakd report runs/quickstart/<time>/* -o report.html                      # one HTML file, Figure 4 included
  sakd export runs/cifar10-resnet19-sakd --format nir -o resnet19.nir      # also --format onnx
  sakd compare runs/cifar10-resnet19-*                 # a table of runs, as in the paper
  sakd nas train --config nas/tiny_supernet           # the architecture study, then:
  sakd nas search runs/nas-tiny-supernet/last.pt && sakd nas plot runs/nas-tiny-supernet/search.jsonl
  torchrun --nproc_per_node=8 -m sakd train --config imagenet/resnet34_sakd data.root=/data/imagenet
  sakd --plugin my_models train --config my.yaml    # your own model/neuron/loss module; eval etc. re-import it

exit status: 0 done, 2 bad input (one line names it), 75 stopped by SIGTERM/SIGUSR1 after writing
a checkpoint (resume it with --resume), 130 interrupted by Ctrl-C.
"""


def positive(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not positive")
    return value


class Parser(argparse.ArgumentParser):
    """argparse with errors on one line (status 2), like every other sakd error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="sakd", description="Train spiking neural networks by distilling an ANN twin (SAKD).", allow_abbrev=False,
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"sakd {__version__}")
    parser.add_argument("--plugin", metavar="MODULE", action="append",
                        help="import a module that registers models, data sets, neurons, loss terms ... "
                             "(repeatable, before or after the command; also $SAKD_PLUGINS and the "
                             "sakd.plugins entry points); a run records it")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("quickstart", help="teacher, SNN and SAKD student on the embedded digits (CPU, minutes)")
    p.add_argument("--output-dir", default="runs/quickstart", help="where the runs go (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=None, help="epochs per run (default: the config's, 15)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides for all three runs")

    p = sub.add_parser("train", help="train an ANN, an SNN baseline or an SAKD student from a YAML config")
    p.add_argument("--config", help="a YAML file or a packaged config name (see `sakd configs`)")
    p.add_argument("--resume", metavar="RUN", help="continue the run in this folder (or from this checkpoint)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. optim.lr=0.05")

    p = sub.add_parser("eval", help="evaluate a checkpoint: top-1/top-5, firing rates")
    p.add_argument("checkpoint", help="a checkpoint file (or run folder: its last.pt)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: %(default)s)")
    p.add_argument("overrides", nargs="*", metavar="data.key=value",
                   help="change the data the checkpoint was trained on, e.g. data.root=/data")

    p = sub.add_parser("analyze", help="synaptic operations, firing rates and energy of an SNN checkpoint vs its ANN twin")
    p.add_argument("checkpoint", help="a spiking checkpoint file (or run folder: its last.pt)")
    p.add_argument("--images", type=int, default=None, help="the first N test images (default: the whole test split)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: %(default)s)")
    p.add_argument("--batch-size", type=positive, default=None, help="images per batch (default: the run's eval batch)")
    p.add_argument("--e-mac", type=float, default=4.6, help="energy of a MAC in pJ (default %(default)s: 45 nm, Horowitz 2014)")
    p.add_argument("--e-ac", type=float, default=0.9, help="energy of an accumulate in pJ (default %(default)s)")
    p.add_argument("overrides", nargs="*", metavar="data.key=value",
                   help="change the data the checkpoint was trained on, e.g. data.root=/data")

    p = sub.add_parser("visualize", help="the paper's Figure 4: features and GradCAM of ANN, SNN w/o KD and SAKD student")
    p.add_argument("--teacher", required=True, metavar="ANN.pt", help="the ANN teacher's checkpoint (or run folder)")
    p.add_argument("--baseline", required=True, metavar="SNN.pt", help="the SNN trained without KD")
    p.add_argument("--student", required=True, metavar="SAKD.pt", help="the SNN trained with SAKD (its data set is used)")
    p.add_argument("--images", type=int, default=None, help="the first N test images (default 4)")
    p.add_argument("--index", type=int, nargs="+", metavar="I", help="these test images instead")
    p.add_argument("--taps", type=int, nargs="+", metavar="K", help="stage taps shown as feature maps (default: all)")
    p.add_argument("--cam-tap", type=int, default=None, metavar="K", help="GradCAM's target stage (default: the last)")
    p.add_argument("-o", "--out", default="figure4", help="output path without suffix: .png and .svg (default: %(default)s)")
    p.add_argument("--json", metavar="FILE", help="also write predictions and the similarity to the teacher as JSON")
    p.add_argument("--no-plot", action="store_true", help="no figure: only the similarity (e.g. over many images)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: %(default)s)")
    p.add_argument("overrides", nargs="*", metavar="data.key=value", help="change the student's data, e.g. data.root=/data")

    p = sub.add_parser("export", help="export an SNN checkpoint to NIR or ONNX (BatchNorm folded), checked after writing")
    p.add_argument("checkpoint", help="a spiking checkpoint file (or run folder: its last.pt)")
    p.add_argument("--format", required=True, metavar="FORMAT", help="nir or onnx (`sakd exporters` lists them)")
    p.add_argument("-o", "--out", required=True, metavar="FILE", help="the file to write")
    p.add_argument("--input-size", type=positive, nargs=2, metavar=("H", "W"),
                   help="input height and width (default: the checkpoint's data set's)")
    p.add_argument("--dt", type=float, default=1.0,
                   help="NIR: the time step of the simulator that will run the graph (default %(default)s; "
                        "snnTorch's importer uses 1e-4, Norse's 1e-3)")
    p.add_argument("--json", metavar="FILE", help="also write the export summary as JSON")

    p = sub.add_parser("report", help="one self-contained HTML file: curves, firing rates, energy, config, Figure 4")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR")
    p.add_argument("-o", "--out", default="report.html", help="the HTML file (default: %(default)s)")
    p.add_argument("--teacher", metavar="ANN.pt", help="Figure 4's ANN (default: the ANN among the runs)")
    p.add_argument("--baseline", metavar="SNN.pt", help="Figure 4's SNN without KD (default: the SNN among the runs)")
    p.add_argument("--student", metavar="SAKD.pt", help="Figure 4's student (default: the SAKD run among the runs)")
    p.add_argument("--images", type=positive, default=1000, help="test images for the energy analysis (default: %(default)s)")
    p.add_argument("--figure-images", type=positive, default=4, help="images in Figure 4 (default: %(default)s)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: %(default)s)")

    p = sub.add_parser("compare", help="runs side by side: best/final top-1, top-5, firing rate, SOPs, energy")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    p.add_argument("--analyze", action="store_true",
                   help="count SOPs and energy of runs that have no current analysis.json (`sakd analyze`)")
    p.add_argument("--images", type=positive, default=1000, help="test images for --analyze (default: %(default)s)")
    p.add_argument("--device", default="auto", help="for --analyze (default: %(default)s)")

    p = sub.add_parser("nas", help="the architecture study (§3.3): supernet training, search, Figure 3")
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

    for kind, what in REGISTRIES.items():
        sub.add_parser(kind, help=f"list the registered {what}")
    sub.add_parser("configs", help="list the packaged configs")
    return parser


def take_plugins(argv: list[str]) -> tuple[list[str], list[str]]:
    """``--plugin MODULE`` / ``--plugin=MODULE`` wherever they stand (before or after the command),
    and the rest of the command line."""
    modules, rest, i = [], [], 0
    while i < len(argv):
        a = argv[i]
        if a == "--plugin" and i + 1 < len(argv):
            modules.append(argv[i + 1])
            i += 2
            continue
        if a.startswith("--plugin="):
            modules.append(a.split("=", 1)[1])
        else:
            rest.append(a)
        i += 1
    return modules, rest


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The command line, with ``key=value`` overrides taken wherever they stand (argparse leaves
    those after an option unparsed); plug-ins are imported first, so that what they register is
    known to the parser, the config and the listings."""
    modules, argv = take_plugins(list(sys.argv[1:] if argv is None else argv))
    parser = build_parser()
    try:
        plugins.load_installed()
        plugins.load(modules, "--plugin")
    except SakdError as exc:
        if not {"-h", "--help", "--version"} & set(argv):  # help and the version even so
            parser.exit(2, f"sakd: error: {exc}\n")
    args, extra = parser.parse_known_args(argv)
    if extra and hasattr(args, "overrides") and all("=" in a and not a.startswith("-") for a in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def check_targets(args) -> None:
    """Every file or folder the command will write, checked before any work."""
    if getattr(args, "json", None):
        writable(args.json, "--json")
    if args.command in ("report", "export") and getattr(args, "out", None):
        writable(args.out, "-o")
    if args.command == "visualize" and not args.no_plot:
        for suffix in (".png", ".svg"):
            writable(Path(args.out).with_suffix(suffix), "-o")
    if args.command == "quickstart":
        writable_folder(args.output_dir, "--output-dir")


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        check_targets(args)
        return COMMANDS[args.command](args)
    except SakdError as exc:  # bad input (2), or a run stopped by a signal after its checkpoint (75)
        print(f"sakd {args.command}: error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)
    except OSError as exc:  # a file the user named cannot be read or written
        where = f" {exc.filename}" if getattr(exc, "filename", None) else ""
        print(f"sakd {args.command}: error: cannot use{where}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def cmd_quickstart(args) -> int:
    from sakd.training.quickstart import quickstart

    quickstart(args.output_dir, args.epochs, args.overrides)
    return 0


def cmd_train(args) -> int:
    from sakd.training import Trainer, load_config

    if args.resume:
        if args.config:
            raise SakdError("give --config or --resume, not both (a resumed run keeps its own config)")
        trainer = Trainer.resume(args.resume, args.overrides)
    else:
        if not args.config:
            raise SakdError("sakd train needs --config FILE (or --resume RUN); see `sakd configs`")
        trainer = Trainer(load_config(args.config, args.overrides))
    trainer.console.print(f"run folder: {trainer.run_dir}")
    summary = trainer.fit()
    print(json.dumps(summary, indent=2))
    return 0


def cmd_eval(args) -> int:
    from sakd.evaluation import evaluate_checkpoint, print_report

    result = evaluate_checkpoint(args.checkpoint, args.overrides, device=args.device)
    print_report(result)
    if args.json:
        write_text(args.json, json.dumps(result, indent=2), "--json")
    return 0


def cmd_analyze(args) -> int:
    from sakd.analysis.analyze import analyze_checkpoint, print_analysis, save_analysis
    from sakd.analysis.energy import E_AC_PJ, E_MAC_PJ

    result = analyze_checkpoint(args.checkpoint, args.images, args.overrides, device=args.device, e_mac=args.e_mac,
                                e_ac=args.e_ac, batch_size=args.batch_size)
    print_analysis(result)
    if Path(args.checkpoint).is_dir() and not args.overrides and (args.e_mac, args.e_ac) == (E_MAC_PJ, E_AC_PJ):
        save_analysis({**result, "spiking": True}, args.checkpoint, args.images)  # for compare and report
    if args.json:
        write_text(args.json, json.dumps(result, indent=2), "--json")
    return 0


def cmd_visualize(args) -> int:
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


def cmd_export(args) -> int:
    from sakd.export.export import export_checkpoint

    options = {"dt": args.dt} if args.format == "nir" else {}
    summary = export_checkpoint(args.checkpoint, args.format, args.out,
                                tuple(args.input_size) if args.input_size else None, **options)
    print(json.dumps(summary, indent=2))
    if args.json:
        write_text(args.json, json.dumps(summary, indent=2), "--json")
    return 0


def cmd_report(args) -> int:
    from sakd.analysis.report import build_report

    print(build_report(args.runs, args.out, teacher=args.teacher, baseline=args.baseline, student=args.student,
                       images=args.images, figure_images=args.figure_images, device=args.device))
    return 0


def cmd_compare(args) -> int:
    from sakd.compare import compare

    rows = compare(args.runs, analyze=args.analyze, images=args.images, device=args.device)
    if args.json:
        write_text(args.json, json.dumps(rows, indent=2), "--json")
    return 0


def cmd_nas(args) -> int:
    if args.nas_command == "train":
        from sakd.nas.train import SupernetTrainer
        from sakd.training import load_config

        if bool(args.config) == bool(args.resume):
            raise SakdError("sakd nas train needs --config FILE or --resume RUN (one of them)")
        trainer = (SupernetTrainer.resume(args.resume, args.overrides) if args.resume
                   else SupernetTrainer(load_config(args.config, args.overrides)))
        trainer.console.print(f"run folder: {trainer.run_dir}")
        print(json.dumps(trainer.fit(), indent=2))
    elif args.nas_command == "search":
        from sakd.nas.search import search

        summary = search(args.checkpoint, args.results, strategy=args.strategy, subnets=args.subnets,
                         calibration_batches=args.calibration_batches, seed=args.seed, device=args.device)
        print(json.dumps(summary, indent=2))
    else:
        from sakd.nas.plot import plot_results

        for path in plot_results(args.results, args.out):
            print(path)
    return 0


REGISTRIES = {"exporters": "export formats", "models": "models", "datasets": "data sets", "neurons": "spiking neurons",
              "surrogates": "surrogate gradients", "losses": "loss terms, feature transforms and distances",
              "optimizers": "optimisers and learning-rate schedules"}


def registries(kind: str) -> dict:
    """The registries one listing command shows, by heading."""
    if kind == "exporters":
        from sakd.export.export import EXPORTERS
        return {"export formats (sakd export --format)": EXPORTERS}
    if kind == "models":
        from sakd.models import MODELS
        return {"models": MODELS}
    if kind == "datasets":
        from sakd.data import DATASETS
        return {"data sets": DATASETS}
    if kind == "neurons":
        from sakd.neurons import NEURONS
        return {"neurons (model.neuron.name)": NEURONS}
    if kind == "surrogates":
        from sakd.neurons import SURROGATES
        return {"surrogates (model.neuron.surrogate)": SURROGATES}
    if kind == "losses":
        from sakd.distill import DISTANCES, TRANSFORMS
        from sakd.distill.terms import LOSSES
        return {"loss terms (distill.terms)": LOSSES,
                "feature transforms (distill.features.transform)": TRANSFORMS,
                "feature distances (distill.features.distance)": DISTANCES}
    from sakd.training.optim import OPTIMIZERS, SCHEDULERS
    return {"optimizers (optim.name)": OPTIMIZERS, "schedules (optim.scheduler)": SCHEDULERS}


def cmd_list(args) -> int:
    groups = registries(args.command)
    for heading, registry in groups.items():
        if len(groups) > 1:
            print(f"{heading}:")
        width = max(map(len, registry.names()))
        for name, desc in registry.describe().items():
            print(f"{'  ' if len(groups) > 1 else ''}{name:<{width}}  {desc}")
    return 0


def cmd_configs(args) -> int:
    from sakd.training.config import packaged_configs

    print("\n".join(packaged_configs()))
    return 0


COMMANDS = {
    "quickstart": cmd_quickstart, "train": cmd_train, "eval": cmd_eval, "analyze": cmd_analyze, "visualize": cmd_visualize,
    "report": cmd_report, "export": cmd_export, "compare": cmd_compare, "nas": cmd_nas,
    "configs": cmd_configs, **{kind: cmd_list for kind in REGISTRIES},
}

if __name__ == "__main__":
    sys.exit(main())
