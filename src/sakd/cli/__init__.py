"""The ``sakd`` command line: one module of this package per command, each registered in
:data:`~sakd.cli.command.COMMANDS` (a plug-in module may add its own); ``sakd list commands``."""

from __future__ import annotations

import argparse
import contextvars
import os
import sys
import warnings

from sakd import plugins
from sakd.cli.command import COMMANDS
from sakd.errors import SakdError
from sakd.registry import import_submodules
from sakd.version import __version__

import_submodules(__name__, __path__)  # every command registers itself

EPILOG = """examples:
  sakd quickstart                                   # digits: ANN teacher, SNN baseline, SAKD student
  sakd train --config cifar10/resnet19_ann          # train the ANN teacher
  sakd train --config cifar10/resnet19_sakd data.root=~/data optim.epochs=100
  sakd train --config cifar10/resnet19_sakd run.checkpoint_every=30min data.val_fraction=0.1
  sakd train --resume runs/cifar10-resnet19-sakd    # continue an interrupted run, mid-epoch too
  sakd eval runs/cifar10-resnet19-sakd/best.pt --json result.json
  sakd eval runs/cifar10-resnet19-sakd/best.pt --timesteps all   # the SNN deployed at T' = 1 .. T
  sakd tune --config cifar100/resnet19_sakd --space sakd --trials 30 data.val_fraction=0.1 optim.epochs=50
  sakd analyze runs/cifar10-resnet19-sakd/best.pt --images 1000   # SOPs, firing rates, energy vs the ANN
  sakd visualize --teacher T.pt --baseline S.pt --student K.pt --images 4   # Figure 4 (PNG, SVG)
  sakd report runs/quickstart/<time>/* -o report.html                      # one HTML file, Figure 4 included
  sakd export runs/cifar10-resnet19-sakd --format nir -o resnet19.nir      # also --format onnx
  sakd compare runs/cifar10-resnet19-*                 # a table of runs, as in the paper
  sakd list models                                  # what is registered: also datasets, neurons, losses, commands ...
  sakd nas train --config nas/tiny_supernet           # the architecture study, then:
  sakd nas search runs/nas-tiny-supernet/last.pt && sakd nas plot runs/nas-tiny-supernet/search.jsonl
  torchrun --nproc_per_node=8 -m sakd train --config imagenet/resnet34_sakd data.root=/data/imagenet
  sakd --plugin my_models train --config my.yaml    # your own model/neuron/loss module; eval etc. re-import it

exit status: 0 done, 2 bad input (one line names it), 75 stopped by SIGTERM/SIGUSR1 after writing
a checkpoint (resume it with --resume), 130 interrupted by Ctrl-C.
"""

# the end of every command's --help
COMMON = """--plugin MODULE (before or after the command, repeatable; also $SAKD_PLUGINS and the sakd.plugins
entry points) imports a module that registers models, data sets, neurons, loss terms, commands ...

exit status: 0 done, 2 bad input (one line names it), 75 stopped by SIGTERM/SIGUSR1 after writing
a checkpoint (resume it with --resume), 130 interrupted by Ctrl-C."""


class Parser(argparse.ArgumentParser):
    """argparse with errors on one line (status 2), like every other sakd error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


FIRST = (
    "quickstart",
    "train",
    "eval",
    "tune",
    "analyze",
    "visualize",
    "report",
    "export",
    "compare",
    "nas",
    "list",
    "configs",
)


def build_parser() -> argparse.ArgumentParser:
    """The parser of every registered command (each module of this package registers one)."""
    parser = Parser(
        prog="sakd", description="Train spiking neural networks by distilling an ANN twin (SAKD).", allow_abbrev=False,
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"sakd {__version__}")
    parser.add_argument("--plugin", metavar="MODULE", action="append",
                        help="import a module that registers models, data sets, neurons, loss terms, commands ... "
                             "(repeatable, before or after the command; also $SAKD_PLUGINS and the "
                             "sakd.plugins entry points); a run records it")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    names = sorted(COMMANDS.names(), key=lambda n: (FIRST.index(n) if n in FIRST else len(FIRST), n))
    for name, help_text in ((n, COMMANDS.describe()[n]) for n in names):
        command = COMMANDS.get(name)()
        epilog = "\n\n".join(filter(None, [command.details, COMMON]))
        command.arguments(sub.add_parser(name, help=help_text, description=help_text, epilog=epilog,
                                         formatter_class=argparse.RawDescriptionHelpFormatter))
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
    try:
        plugins.load_installed()
        plugins.load(modules, "--plugin")
    except SakdError as exc:
        if not {"-h", "--help", "--version"} & set(argv):  # help and the version even so
            Parser(prog="sakd").exit(2, f"sakd: error: {exc}\n")
    parser = build_parser()  # after the plug-ins: the commands they register too
    args, extra = parser.parse_known_args(argv)
    if extra and hasattr(args, "overrides") and all("=" in a and not a.startswith("-") for a in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run one command; its plug-ins (``--plugin``) are its own (a context of its own), so a
    Python caller's next command records only the plug-ins it is given. While it runs, the current
    folder is on ``sys.path`` (a plug-in module there imports, in loader workers too)."""
    here = os.getcwd()
    added = here not in sys.path and "" not in sys.path
    if added:
        sys.path.append(here)
    try:
        return contextvars.copy_context().run(_main, argv)
    finally:
        if added and here in sys.path:
            sys.path.remove(here)


def _main(argv: list[str] | None) -> int:
    args = parse(argv)

    default = warnings.showwarning

    def one_line(message, category, filename, lineno, file=None, line=None):  # sakd's warnings, without code
        if f"{os.sep}sakd{os.sep}" not in str(filename):  # another library's: as Python shows it
            return default(message, category, filename, lineno, file, line)
        print(f"sakd {args.command}: warning: {message}", file=file or sys.stderr)

    try:
        command = COMMANDS.get(args.command)()
        command.check_targets(args)  # every file it will write, before any work
        with warnings.catch_warnings():
            warnings.showwarning = one_line  # restored when the command ends
            return command.run(args)
    except SakdError as exc:  # bad input (2), or a run stopped by a signal after its checkpoint (75)
        print(f"sakd {args.command}: error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)
    except OSError as exc:  # a file the user named cannot be read or written
        where = f" {exc.filename}" if getattr(exc, "filename", None) else ""
        print(f"sakd {args.command}: error: cannot use{where}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
