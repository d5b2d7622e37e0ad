"""Every command of the README runs as written, on the quickstart's runs (short ones: one epoch),
or is marked here with what it needs that a test cannot have (a data set, a GPU, several machines,
an install, an hour): a command added to the README and neither run nor marked fails this test.
Training commands run with ``optim.epochs=1`` appended (the same code path, shorter)."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]

# command as written -> what it needs
MARKED = {
    "pip install -e . && sakd quickstart": "the install (CI runs it); the quickstart itself runs below",
    'pip install -e ".[dev]" && pytest -q': "the install and this very test suite",
    "python benchmarks/kd_methods.py": "a study of minutes; tests/test_benchmarks.py runs its quick form",
    "python benchmarks/kd_methods.py --tuned --trials 4 --epochs 6": "a study of 36 minutes; tests/test_benchmarks.py "
    "runs its --tuned form on a tiny budget",
    "python benchmarks/claims.py": "a study of an hour; tests/test_benchmarks.py runs its quick form",
    "python benchmarks/claims.py --quick": "the Fashion-MNIST data package; "
    "tests/test_benchmarks.py runs it on its own data",
    "python benchmarks/suite.py": "a benchmark of minutes; tests/test_benchmarks.py runs each of its figures",
    "python benchmarks/suite.py --quick": "a benchmark; tests/test_benchmarks.py runs each of its figures",
    "python benchmarks/suite.py --neuron plif --reset soft": "a benchmark; tests/test_benchmarks.py runs it",
    "bash benchmarks/cuda_check.sh": "a GPU",
    "python benchmarks/min_plan.py": "a benchmark of minutes; tests/test_benchmarks.py runs its plans at 1/16 width",
    "python benchmarks/peak_record.py": "it writes the recorded benchmarks/results/peak_record-cpu.json (a test must "
    "not; under pytest's one thread per worker its record differs); tests/test_benchmarks.py runs it at 1/16 width",
    "sakd train --config quickstart/snn model.name=python:my_pkg.nets:my_cnn": "a package of your own; "
    "tests/test_graph_twins.py builds, trains and exports python:test_graph_twins:user_net",
    "sakd train --config quickstart/snn model.name=timm:mobilenetv3_small_050 "
    '"model.options.activations={Hardswish: spike, Hardsigmoid: keep}"': "a minute of training; "
    "tests/test_graph_twins.py twins timm:mobilenetv3_small_050 with this mapping and takes a SAKD step with it",
    "python benchmarks/any_network.py": "a study of an hour; tests/test_benchmarks.py runs its quick form",
    "python benchmarks/any_network.py --quick": "the Fashion-MNIST data package; "
    "tests/test_benchmarks.py runs it on its own data",
    "apt-get install dataset-fashion-mnist": "root and Debian's package mirror",
    'pip install -e ".[vis]"': "an install (the dev extra has it)",
    'pip install -e ".[export]"': "an install (the dev extra has it)",
    "pip install --no-deps spikingjelly==2.0.0 loguru": "an install",
    "sakd train --config nas/tiny_teacher": "the NAS study's data (CIFAR-10); tests/test_nas.py runs it on test data",
    "sakd nas train --config nas/tiny_supernet": "CIFAR-10; tests/test_nas.py runs it on test data",
    "sakd nas search runs/nas-tiny-supernet/last.pt": "the supernet above; tests/test_nas.py",
    "sakd nas plot runs/nas-tiny-supernet/search.jsonl": "the search above; tests/test_nas.py",
}
# CIFAR, ImageNet, a cluster
NEEDS_DATA = re.compile(r"cifar10-|cifar10/|imagenet|fashion-mnist|fashion_mnist|torchrun")


def commands() -> list[str]:
    """The shell commands of the docs' ``bash`` blocks, one per line (continuations joined, comments off)."""
    out = []
    for doc in DOCS:
        for block in re.findall(r"```(?:bash|sh)\n(.*?)```", doc.read_text(), flags=re.S):
            for line in block.replace("\\\n", " ").splitlines():
                line = re.sub(r"\s+#.*$", "", line).strip()
                if line and not line.startswith("#"):
                    out.append(" ".join(line.split()))
    return out


def test_every_command_is_run_or_marked():
    unmarked = [c for c in commands() if c not in MARKED and not NEEDS_DATA.search(c)]
    assert unmarked, "nothing would run"
    assert all(c in commands() for c in MARKED), [c for c in MARKED if c not in commands()]  # no stale marks


def run(command: str, env: dict, cwd: Path) -> None:
    """One command as a shell would run it, variables set by earlier lines; sakd and Python in
    this environment, training shortened to one epoch."""
    if "=" in command.split()[0] and not command.startswith("sakd"):  # VAR=value
        name, value = command.split("=", 1)
        env[name] = shlex.split(value)[0] if value else ""
        return
    for name, value in sorted(env.items(), key=lambda kv: -len(kv[0])):
        command = command.replace(f"${name}", value)
    for part in command.split(" | "):
        argv = [m for a in shlex.split(part)
                for m in (sorted(str(p.relative_to(cwd)) for p in cwd.glob(a)) or [a] if "*" in a else [a])]
        if argv[0] == "sakd" and argv[1] in ("train", "quickstart", "nas"):
            argv.append("--epochs=1" if argv[1] == "quickstart" else "optim.epochs=1")
        if argv[0] == "sakd":  # in this process (the same entry point, without an interpreter's start)
            from sakd.cli import main

            assert main(argv[1:]) == 0, command
            continue
        if argv[0] == "python":  # the repository's scripts, run from the folder of the runs
            argv = [sys.executable, str(ROOT / argv[1]), *argv[2:]]
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{command}\n{done.stderr[-3000:]}"


def test_the_readmes_offline_commands_run_as_written(tmp_path, monkeypatch):
    pytest.importorskip("pytorch_grad_cam")  # visualize and report draw Figure 4
    monkeypatch.chdir(tmp_path)
    run("sakd quickstart", {}, tmp_path)  # the main job, whose runs the README's later commands read
    (q,) = (tmp_path / "runs" / "quickstart").iterdir()
    env = {"Q": str(q.relative_to(tmp_path))}
    ran = 0
    for command in commands():
        if command in MARKED or NEEDS_DATA.search(command):
            continue
        command = command.replace("Q=runs/quickstart/<time>", f"Q={env['Q']}")
        run(command, env, tmp_path)
        ran += 1
    assert ran >= 15
    assert all((tmp_path / f).is_file() for f in ("report.html", "model.nir", "model.onnx", "figure4.png"))


def test_the_python_examples_of_the_readme_and_the_docs_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blocks = [(doc, block) for doc in DOCS for block in re.findall(r"```python\n(.*?)```", doc.read_text(), flags=re.S)]
    assert {doc.name for doc, _ in blocks} >= {"README.md", "user-guide.md"}
    for doc, block in blocks:
        exec(compile(block, str(doc), "exec"), {})
    assert len(list((tmp_path / "runs").glob("**/best.pt"))) >= 3  # the examples' runs: teacher, student, SNN


def links() -> list[tuple[Path, str]]:
    """Every relative link and image of the README, the docs and CONTRIBUTING (web links left out)."""
    out = []
    for doc in [*DOCS, ROOT / "CONTRIBUTING.md"]:
        text = re.sub(r"```.*?```", "", doc.read_text(), flags=re.S)
        out += [(doc, target) for target in re.findall(r"\]\(([^)\s]+)\)", text) if not re.match(r"[a-z]+:", target)]
    return out


def anchors(doc: Path) -> set[str]:
    """The anchors of a Markdown file's headings, as GitHub and MkDocs make them."""
    heads = re.findall(r"^#+ (.+)$", re.sub(r"```.*?```", "", doc.read_text(), flags=re.S), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).strip().replace(" ", "-") for h in heads}


def test_every_link_of_the_docs_resolves():
    found = links()
    assert len(found) >= 20
    broken = []
    for doc, target in found:
        path, _, anchor = target.partition("#")
        file = (doc.parent / path).resolve() if path else doc
        if not file.exists() or (anchor and anchor not in anchors(file)):
            broken.append(f"{doc.relative_to(ROOT)}: {target}")
    assert not broken, broken
    linked = {(doc.parent / t.partition("#")[0]).resolve() for doc, t in found}
    assert set(DOCS[1:]) <= linked, "a docs page no other page links to"


def test_every_test_the_docs_name_exists():
    """A ``tests/FILE.py::NAME`` in the README, the docs or CONTRIBUTING names a test of that file."""
    named = {(f, n) for doc in [*DOCS, ROOT / "CONTRIBUTING.md"]
             for f, n in re.findall(r"(tests/test_\w+\.py)::(test_\w+)", doc.read_text())}
    assert len(named) >= 25
    missing = [f"{f}::{n}" for f, n in sorted(named)
               if not (ROOT / f).is_file() or not re.search(rf"^def {n}\(", (ROOT / f).read_text(), flags=re.M)]
    assert not missing, missing
