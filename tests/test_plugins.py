"""Plug-ins: one registry type; neurons (IF, soft reset) on every backend; parts registered from
outside the package (this module) train through `sakd.train` from a config, with no edit elsewhere."""

import pytest
import torch

from conftest import DEVICES, fast_config, skip_unless_compiles
from sakd.neurons import FiringRateMonitor
from sakd.distill import DISTANCES
from sakd.distill.terms import LOSSES, LossTerm
from sakd.errors import ConfigError
from sakd.neurons import IF, LIF, NEURONS, NeuronSpec, SpikingNeuron, get_surrogate, kernels, lif_reference
from sakd.registry import Registry
from sakd.training import load_config, train

BACKENDS = ["reference", "fused"] + (["compiled"] if kernels.compiler_available("cpu") else [])


def test_registry_registers_by_name_lists_descriptions_and_suggests():
    parts = Registry("widget")

    @parts.register()
    def round_one():
        """A round widget."""

    @parts.register("square")
    class Square:
        """A square one.

        More text that is not the description."""

    assert parts.names() == ["round_one", "square"] and "square" in parts and len(parts) == 2
    assert parts.describe() == {"round_one": "A round widget.", "square": "A square one."}
    assert parts.get("square") is Square
    with pytest.raises(
        ConfigError, match=r"unknown widget 'sqare'. Did you mean 'square'\? Registered: round_one, square"
    ):
        parts.get("sqare")
    with pytest.raises(ValueError, match="widget 'square' is already registered"):
        parts.register("square")(Square)


def test_if_and_soft_reset_hand_computed():
    x = torch.tensor([0.6, 0.7, 0.3, 2.5, 0.1]).view(5, 1)
    # IF (λ=1), hard: H 0.6 | 1.3 -> spike, V=0 | 0.3 | 2.8 -> spike, V=0 | 0.1
    # LIF soft: H 0.6 | 0.3+0.7=1.0 -> spike, V=0 | 0.3 | 0.15+2.5=2.65 -> spike, V=1.65 | 0.825+0.1 -> no
    # IF soft: H 0.6 | 1.3 -> spike, V=0.3 | 0.6 | 3.1 -> spike, V=2.1 | 2.2 -> spike
    expected = {("if", "hard"): [0, 1, 0, 1, 0], ("lif", "soft"): [0, 1, 0, 1, 0], ("if", "soft"): [0, 1, 0, 1, 1]}
    for (name, reset), spikes in expected.items():
        for backend in BACKENDS:
            neuron = NeuronSpec(name=name, reset=reset, backend=backend).build()
            assert neuron(x).flatten().tolist() == spikes, (name, reset, backend)


@pytest.mark.parametrize("backend", BACKENDS[1:])
@pytest.mark.parametrize("decay, reset", [(1.0, "hard"), (1.0, "soft"), (0.5, "soft"), (0.9, "soft")])
@pytest.mark.parametrize("detach_reset", [False, True])
def test_if_and_soft_reset_match_the_autograd_reference(backend, decay, reset, detach_reset):
    torch.manual_seed(0)
    x = (torch.randn(6, 4, 3, 5, dtype=torch.float64) * 1.2 + 0.4)
    x[2, 0, 0, 0] = 1.0
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_a = LIF(decay=decay, reset=reset, detach_reset=detach_reset, backend=backend)(a)
    out_b = lif_reference(b, decay, 1.0, get_surrogate("triangle"), detach_reset, soft=reset == "soft")
    w = torch.randn_like(out_a)
    (out_a * w).sum().backward()
    (out_b * w).sum().backward()
    assert torch.equal(out_a, out_b)
    assert torch.allclose(a.grad, b.grad, atol=1e-12)


def test_soft_reset_gradient_hand_computed():
    # LIF soft: H1 = 1.5 -> S1 = 1, V1 = 0.5; H2 = 0.25 + 0.2 = 0.45, S2 = 0.
    # dS2/dx1 = sg(H2 - 1) · 0.5 · dV1/dH1, dV1/dH1 = 1 - V_th · sg(H1 - 1) = 1 - 0.5 (0 detached: 1)
    x = torch.tensor([[1.5], [0.2]], dtype=torch.float64, requires_grad=True)
    LIF(reset="soft")(x)[1].sum().backward()
    assert torch.allclose(x.grad.flatten(), torch.tensor([0.45 * 0.5 * 0.5, 0.45], dtype=torch.float64))


@pytest.mark.parametrize("neuron", ["model.neuron.name=if", "model.neuron.reset=soft"])
def test_if_and_soft_reset_train_one_step(tmp_path, neuron):
    summary = train(fast_config(tmp_path, neuron, "optim.epochs=1"))
    assert 0.0 < summary["firing_rate"] < 1.0


@NEURONS.register("test_clipped_if")
class ClippedIF(SpikingNeuron):
    """Integrate-and-fire whose input is clipped to [0, clip] (a neuron from outside the package)."""

    def __init__(self, threshold: float = 1.0, surrogate: str = "triangle", clip: float = 2.0):
        super().__init__()
        self.inner, self.clip = IF(threshold=threshold, surrogate=surrogate, backend="reference"), clip

    def forward(self, x):
        return self.inner(x.clamp(0.0, self.clip))


@DISTANCES.register("test_cosine")
def cosine(fs, ft):
    """1 - cosine similarity of the flattened feature maps (a loss from outside the package)."""
    return 1 - torch.nn.functional.cosine_similarity(fs.flatten(1), ft.flatten(1)).mean()


def test_a_neuron_and_a_loss_registered_outside_the_package_train_from_a_config(tmp_path, teacher_ckpt):
    assert NeuronSpec(name="test_clipped_if", options={"clip": 1.5}).build().clip == 1.5
    with pytest.raises(ConfigError, match="neuron 'test_clipped_if': bad model.neuron.options"):
        NeuronSpec(name="test_clipped_if", options={"gain": 2}).build()
    summary = train(fast_config(
        tmp_path, "model.neuron.name=test_clipped_if", "model.neuron.options={clip: 1.5}", "optim.epochs=5",
        f"distill.teacher.weights={teacher_ckpt}", "distill.beta=1", "distill.features.distance=test_cosine"))
    assert summary["best_top1"] > 25.0  # chance is 10%
    # the module that registered the parts the run names is recorded, for the commands that read the run
    assert load_config(f"{summary['run_dir']}/config.yaml").run.plugins == [__name__]
    from sakd.models.checkpoint import model_from_checkpoint

    model, _ = model_from_checkpoint(f"{summary['run_dir']}/last.pt")
    neurons = [m for m in model.modules() if isinstance(m, ClippedIF)]
    assert neurons and all(n.clip == 1.5 for n in neurons)
    with FiringRateMonitor(model) as monitor, torch.no_grad():
        model.train()(torch.randn(8, 3, 16, 16))
    assert set(monitor.rates()) == {n for n, m in model.named_modules() if isinstance(m, ClippedIF)}


def test_the_contributing_guide_examples_run():
    from conftest import contributing_examples
    from sakd.models import MODELS, create_model
    from sakd.neurons import SURROGATES

    assert len(contributing_examples()) == 8
    assert {"resnet10", "alif", "fast_sigmoid", "cosine", "logit_l2"} <= (set(MODELS) | set(NEURONS) | set(SURROGATES)
                                                                      | set(DISTANCES) | set(LOSSES))
    from sakd.cli import main

    assert main(["count_parameters", "resnet10", "--classes", "4"]) == 0
    snn = create_model("resnet10", spiking=True, num_classes=4, timesteps=2,
                       neuron={"name": "alif", "surrogate": "fast_sigmoid", "options": {"beta": 0.3}})
    ann = create_model("resnet10", spiking=False, num_classes=4)
    snn.load_state_dict(ann.state_dict())
    x = torch.randn(2, 3, 32, 32, requires_grad=True)
    with FiringRateMonitor(snn) as monitor:
        snn.train()(x).sum().backward()
    assert x.grad.abs().sum() > 0 and 0 < monitor.mean_rate() < 1
    assert DISTANCES.get("cosine")(torch.ones(2, 3), torch.ones(2, 3)).abs() < 1e-6
    from sakd.distill.terms import TermInputs

    term = LOSSES.get("logit_l2")()
    assert term.needs_teacher and term(TermInputs(torch.ones(2, 3), torch.zeros(2), torch.zeros(2, 3))) == 1.0
    import json
    import tempfile
    from pathlib import Path

    from sakd.export import EXPORTERS

    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "m.json"
        summary = EXPORTERS.get("param_shapes")(snn.eval(), torch.randn(1, 3, 32, 32), 2, out)
        assert json.loads(out.read_text())["parameters"]["fc.weight"] == [4, 512] and summary["parameters"] > 10
    from sakd.analysis.energy import OpCounter
    from sakd.analysis.energy_models import estimate

    with torch.no_grad(), OpCounter(snn) as counted:
        snn(torch.randn(2, 3, 32, 32))
    fc = counted.layers["fc"]  # the classifier: 4 x 512 weights and 4 biases, read once per sample and timestep
    priced = estimate("stationary_weights", counted.layers, counted.neurons, {}, 2, {"e_byte": 1.0})
    assert priced["layers"]["fc"]["snn"]["bytes"]["weights"] == (4 * 512 + 4) * fc.samples / 2 * 4


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend", BACKENDS[1:])
@pytest.mark.parametrize("reset", ["hard", "soft"])
def test_plif_backends_match_the_autograd_reference_including_the_leak_gradient(backend, reset, device):
    from sakd.neurons import PLIF

    skip_unless_compiles(backend, device)
    torch.manual_seed(0)
    x = (torch.randn(6, 4, 3, 5, dtype=torch.float64) * 1.2 + 0.4).to(device)
    ref = PLIF(decay=0.3, reset=reset, backend="reference").double().to(device)
    fast = PLIF(decay=0.3, reset=reset, backend=backend).double().to(device)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_a, out_b = fast(a), ref(b)
    w = torch.randn_like(out_a)
    (out_a * w).sum().backward()
    (out_b * w).sum().backward()
    assert torch.equal(out_a, out_b)
    assert torch.allclose(a.grad, b.grad, atol=1e-12)
    assert fast.w.grad.abs() > 0 and torch.allclose(fast.w.grad, ref.w.grad, atol=1e-12)


def test_plif_leak_gradient_hand_computed():
    from sakd.neurons import PLIF

    # λ = 0.5 (w = 0). H1 = 0.6, no spike, V1 = 0.6; H2 = λ·0.6 + 0.2 = 0.5, no spike.
    # dS2/dλ = sg(H2 - 1) · V1 = 0.5 · 0.6, and dλ/dw = λ(1 - λ) = 0.25
    plif = PLIF(decay=0.5).double()
    x = torch.tensor([[0.6], [0.2]], dtype=torch.float64, requires_grad=True)
    plif(x)[1].sum().backward()
    assert torch.allclose(plif.w.grad, torch.tensor(0.5 * 0.6 * 0.25, dtype=torch.float64))


def test_plif_learns_its_leak_in_training_and_copies_the_teachers_other_weights(tmp_path, teacher_ckpt):
    summary = train(fast_config(tmp_path, "model.neuron.name=plif", "model.neuron.decay=0.4", "optim.epochs=1",
                                f"distill.teacher.weights={teacher_ckpt}", "model.init=teacher", "distill.gamma=1"))
    from sakd.models.checkpoint import load_checkpoint

    state = load_checkpoint(f"{summary['run_dir']}/last.pt")["model"]
    leaks = {k: torch.sigmoid(v).item() for k, v in state.items() if k.endswith("neuron.w")}
    assert len(leaks) == 7 and all(0 < v < 1 for v in leaks.values())  # one per spiking layer of resnet_tiny
    assert any(abs(v - 0.4) > 1e-4 for v in leaks.values())  # learned: moved from the initial 0.4
    assert 0 < summary["firing_rate"] < 1


@LOSSES.register("test_feature_energy")
class FeatureEnergy(LossTerm):
    """Squared difference of the time-averaged student's and the teacher's mean feature energy per tap
    (a loss term from outside the package, reading features and owning a parameter)."""

    needs_features = True

    def __init__(self, student_channels, teacher_channels, power: float = 2.0):
        super().__init__()
        self.power, self.scale = power, torch.nn.Parameter(torch.ones(len(student_channels)))

    def forward(self, inputs):
        total = 0.0
        for k, (fs, ft) in enumerate(zip(inputs.student_features, inputs.teacher_features)):
            es, et = fs.mean(0).abs().pow(self.power).mean(), ft.abs().pow(self.power).mean()
            total = total + (self.scale[k] * es - et) ** 2
        return total


def test_a_loss_term_registered_outside_the_package_trains_from_a_config(tmp_path, teacher_ckpt):
    summary = train(fast_config(
        tmp_path, f"distill.teacher.weights={teacher_ckpt}", "distill.alpha=0", "distill.gamma=1", "optim.epochs=5",
        "distill.terms=[{name: test_feature_energy, weight: 0.5, options: {power: 1.0}}, {name: ce, weight: 1.0}]",
        "optim.lr=0.1"))
    import json
    from pathlib import Path

    records = [json.loads(line) for line in (Path(summary["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
    assert all({"train/test_feature_energy", "train/ce", "train/logit_kd"} <= set(r) for r in records)
    assert "train/feature_kd" not in records[0]  # beta is 0: the term reads the taps on its own
    assert summary["best_top1"] > 30.0  # chance is 10%
    from sakd.models.checkpoint import load_checkpoint

    scale = load_checkpoint(f"{summary['run_dir']}/last.pt")["objective"]["terms.test_feature_energy.scale"]
    assert scale.shape == (3,) and not torch.equal(scale, torch.ones(3))  # its parameter trained


def test_loss_terms_by_hand_and_their_config_errors(tmp_path):
    from sakd.distill import SAKDLoss, TermSpec

    logits, y = torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0])
    loss = SAKDLoss(alpha=0, terms=[TermSpec.of("ce", 2.0, {"label_smoothing": 0.0})])
    expected = torch.nn.functional.cross_entropy(logits, y)
    out = loss(logits, y)
    assert torch.allclose(out.total, 2 * expected) and torch.allclose(out.terms["ce"], expected)
    with pytest.raises(ConfigError, match=r"'ce' appears twice \(or is already the alpha/beta/gamma term\)"):
        SAKDLoss(alpha=1, terms=[TermSpec.of("ce", 1.0)])
    with pytest.raises(ConfigError, match="loss term .ce. has no option .smoothing.; its options: label_smoothing"):
        SAKDLoss(alpha=0, terms=[TermSpec.of("ce", 1.0, {"smoothing": 0.1})])
    with pytest.raises(ConfigError, match=r"'distill.terms\[0\].name' must be one of .*got 'cee'"):
        fast_config(tmp_path, "distill.terms=[{name: cee}]")
    with pytest.raises(ConfigError, match="distill.terms: 'test_feature_energy' reads the teacher's features"):
        train(fast_config(tmp_path, "distill.terms=[{name: test_feature_energy}]"))


# -- plug-ins on the command line: --plugin, $SAKD_PLUGINS, entry points, recorded by the run -----------

PLUGIN = '''
from sakd.neurons import NEURONS
from sakd.neurons.lif import LIF


@NEURONS.register("halfway_lif")
class HalfwayLIF(LIF):
    """LIF firing at half its threshold (a plug-in neuron of the tests)"""

    def __init__(self, decay=0.5, threshold=1.0, surrogate="triangle", detach_reset=False, reset="hard",
                 backend="auto"):
        super().__init__(decay, threshold / 2, surrogate, detach_reset, reset, backend)
'''


def sakd_cli(args, cwd, pythonpath=None, **env):
    import os
    import subprocess
    import sys

    environ = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SAKD_PLUGINS")}
    environ.update(env, OMP_NUM_THREADS="1")
    if pythonpath:
        environ["PYTHONPATH"] = os.pathsep.join(map(str, pythonpath))
    return subprocess.run([sys.executable, "-m", "sakd", *args], cwd=cwd, env=environ, capture_output=True,
                          text=True, timeout=300)


def test_a_plugin_neuron_trains_from_the_cli_and_every_reader_of_the_run_imports_it_again(tmp_path, monkeypatch):
    from conftest import FAST
    from sakd.training.run_folder import RunFolder
    from sakd.cli import main

    home = tmp_path / "plugins"
    home.mkdir()
    (home / "sakd_test_plugin.py").write_text(PLUGIN)
    monkeypatch.chdir(home)  # found in the current folder
    out = tmp_path / "runs"
    assert main(["train", "--config", "quickstart/snn", *FAST, "optim.epochs=1", f"run.output_dir={out}", "run.name=p",
                 "model.neuron.name=halfway_lif", "--plugin", "sakd_test_plugin"]) == 0
    run = out / "p"
    assert load_config(run / "config.yaml").run.plugins == RunFolder(run).plugins == ["sakd_test_plugin"]
    # a new process, no --plugin: the run's record brings the module back (eval; resume)
    for args in (["eval", str(run), "--device", "cpu"], ["train", "--resume", str(run), "optim.epochs=2"]):
        done = sakd_cli(args, cwd=tmp_path, pythonpath=[home])
        assert done.returncode == 0, (args, done.stderr)
    # where the module cannot be imported: one line naming it
    done = sakd_cli(["eval", str(run)], cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "plug-in module 'sakd_test_plugin' (cannot be imported: No module named 'sakd_test_plugin')" in done.stderr
    assert "halfway_lif" in done.stderr and "cannot be imported" in done.stderr
    with pytest.raises(SystemExit) as stop:
        main(["--plugin", "no_such_module", "neurons"])
    assert stop.value.code == 2
    with pytest.raises(SystemExit) as stop:  # help still answers
        main(["--plugin", "no_such_module", "--help"])
    assert stop.value.code == 0


def test_plugins_from_the_environment_and_from_installed_entry_points(tmp_path):
    home = tmp_path / "site"
    home.mkdir()
    (home / "sakd_test_plugin.py").write_text(PLUGIN)
    done = sakd_cli(["neurons"], cwd=tmp_path, pythonpath=[home], SAKD_PLUGINS="sakd_test_plugin")
    assert done.returncode == 0 and "halfway_lif" in done.stdout, done.stderr
    dist = home / "sakd_test_plugin-0.1.dist-info"  # an installed package's metadata, entry point included
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: sakd-test-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[sakd.plugins]\nhalfway = sakd_test_plugin\n")
    done = sakd_cli(["neurons"], cwd=tmp_path, pythonpath=[home])
    assert done.returncode == 0 and "halfway_lif" in done.stdout, done.stderr


def test_a_part_is_recorded_under_the_module_that_registered_it():
    """A class defined elsewhere (torch) and registered here: the run must import this module again."""
    parts = Registry("gadget")
    parts.register("borrowed")(torch.nn.Linear)
    assert parts.modules() == {"borrowed": __name__}


COMMAND = '''
from sakd.cli.command import COMMANDS, Command


@COMMANDS.register("hello")
class Hello(Command):
    """say hello (a plug-in command of the tests)"""

    def arguments(self, p):
        p.add_argument("--name", default="world")
        p.add_argument("--json", help="checked before any work, as for every command")

    def run(self, args):
        print(f"hello {args.name}")
        return 0
'''


def test_a_command_is_one_registered_class_and_a_plugin_can_add_one(tmp_path, monkeypatch, capsys):
    from sakd.cli import main

    (tmp_path / "sakd_test_command.py").write_text(COMMAND)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["--plugin", "sakd_test_command", "hello", "--name", "spikes"]) == 0
    assert capsys.readouterr().out == "hello spikes\n"
    (tmp_path / "a_file").write_text("")
    assert main(["hello", "--json", str(tmp_path / "a_file" / "x.json")]) == 2  # checked before it runs
    out, err = capsys.readouterr()
    assert out == "" and "--json" in err and err.count("\n") == 1, err
    assert main(["list", "commands"]) == 0 and "hello " in capsys.readouterr().out


def test_every_registry_is_listed_by_sakd_list(capsys):
    from sakd.cli import main
    from sakd.cli.listing import kinds

    assert {"models", "datasets", "neurons", "surrogates", "losses", "optimizers", "schedulers", "exporters",
            "loggers", "commands"} <= set(kinds())
    for kind in kinds():
        assert main(["list", kind]) == 0
        listed = capsys.readouterr().out
        assert listed.strip(), kind
    assert main(["list", "commands"]) == 0
    commands = capsys.readouterr().out
    assert all(f"\n{c} " in "\n" + commands for c in ("train", "eval", "list", "models"))  # aliases kept
    assert main(["models"]) == 0 and "resnet19" in capsys.readouterr().out
    assert main(["list", "loggers"]) == 0 and "tensorboard" in capsys.readouterr().out


TERM_PLUGIN = '''
import torch

from sakd.distill.terms import LOSSES, LossTerm


@LOSSES.register("logit_norm")
class LogitNorm(LossTerm):
    """the student's mean squared logit (a plug-in loss term of the tests)"""

    def forward(self, out):
        return out.student_logits.pow(2).mean()
'''


def test_a_run_whose_training_only_plugin_is_gone_is_still_read_and_resumed_with_an_override(tmp_path, monkeypatch):
    """A run trained with a plug-in loss term whose module is gone: eval, analyze, export and
    compare go on without it (a warning names it), --resume says what to do, and resumes with an
    override that leaves the term out."""
    from conftest import FAST

    home = tmp_path / "plugins"
    home.mkdir()
    (home / "sakd_term_plugin.py").write_text(TERM_PLUGIN)
    out = tmp_path / "runs"
    done = sakd_cli(["train", "--config", "quickstart/snn", *FAST, "optim.epochs=1", f"run.output_dir={out}",
                     "run.name=t", "distill.terms=[{name: logit_norm, weight: 0.1}]", "--plugin",
                     "sakd_term_plugin"], cwd=tmp_path, pythonpath=[home])
    assert done.returncode == 0, done.stderr
    run = out / "t"
    readers = [["eval", str(run), "--device", "cpu"], ["analyze", str(run), "--images", "8", "--device", "cpu"],
               ["export", str(run), "--format", "onnx", "-o", str(tmp_path / "m.onnx")], ["compare", str(run)]]
    said = in_one_process(readers, tmp_path)  # the module is not on the path any more
    for args, (code, err) in zip(readers, said, strict=True):
        assert code == 0, (args, err)
        assert (f"sakd {args[0]}: warning: " in err and "going on without loss term 'logit_norm'" in err
                and "plug-in module 'sakd_term_plugin' (cannot be imported: No module named" in err), (args, err)
    resumes = [["train", "--resume", str(run), "optim.epochs=2"],
               ["train", "--resume", str(run), "optim.epochs=2", "distill.terms=[]"]]
    (refused, err), (resumed, _) = in_one_process(resumes, tmp_path)
    assert refused == 2 and err.count("\n") == 1, err
    assert "logit_norm" in err and "'sakd_term_plugin' (cannot be imported: No module named" in err
    assert "override what it registered (e.g. distill.terms=[...]) to go on without it" in err
    assert resumed == 0
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2


def in_one_process(commands: list[list[str]], cwd) -> list[tuple[int, str]]:
    """Each sakd command's exit status and error output, run one after another in one new Python
    process (one start of torch instead of one per command)."""
    import json

    script = ("import contextlib, io, json, sys\nfrom sakd.cli import main\nout = []\n"
              f"for argv in {json.dumps(commands)}:\n"
              "    err = io.StringIO()\n"
              "    with contextlib.redirect_stderr(err):\n"
              "        code = main(argv)\n"
              "    out.append([code, err.getvalue()])\n"
              "print('RESULTS' + json.dumps(out))\n")
    done = sakd_python(script, cwd)
    assert done.returncode == 0, done.stderr
    return [tuple(r) for r in json.loads(done.stdout.split("RESULTS", 1)[1])]


def sakd_python(script: str, cwd):
    import os
    import subprocess
    import sys

    environ = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SAKD_PLUGINS")}
    return subprocess.run([sys.executable, "-c", script], cwd=cwd, env={**environ, "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, timeout=300)


SOURCE_PLUGIN = '''
from torch import nn

from sakd.models import MODEL_SOURCES


@MODEL_SOURCES.register("tinynets")
def tiny_networks(name, *, num_classes, in_channels, **options):
    """small plain networks (a plug-in model source of the tests)"""
    width = {"narrow": 4, "wide": 8}[name]
    return nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes))
'''


def test_a_run_whose_model_source_came_from_the_environment_records_it_and_evaluates_without_it(tmp_path):
    """A model source registered by a $SAKD_PLUGINS module: the run records the module (every
    registry that config keys name is looked at, model sources included), so eval in a process
    without $SAKD_PLUGINS imports it again."""
    from conftest import FAST

    home = tmp_path / "site"
    home.mkdir()
    (home / "sakd_test_source.py").write_text(SOURCE_PLUGIN)
    out = tmp_path / "runs"
    done = sakd_cli(["train", "--config", "quickstart/snn", *FAST, "optim.epochs=1", "model.name=tinynets:narrow",
                     f"run.output_dir={out}", "run.name=s"], cwd=tmp_path, pythonpath=[home],
                    SAKD_PLUGINS="sakd_test_source")
    assert done.returncode == 0, done.stderr
    import yaml

    assert yaml.safe_load((out / "s" / "config.yaml").read_text())["run"]["plugins"] == ["sakd_test_source"]
    done = sakd_cli(["eval", str(out / "s"), "--device", "cpu"], cwd=tmp_path, pythonpath=[home])
    assert done.returncode == 0 and "top-1" in done.stdout + done.stderr, done.stderr
    done = sakd_cli(["eval", str(out / "s")], cwd=tmp_path)  # the module gone: one line naming it
    assert done.returncode == 2 and "sakd_test_source" in done.stderr and done.stderr.count("\n") == 1, done.stderr


EXPORTER_PLUGIN = '''
import json

from sakd.export import EXPORTERS


@EXPORTERS.register("shapes", description="the parameters' names and shapes as JSON (a plug-in exporter of the tests)")
def export_shapes(model, example, timesteps, out, **options):
    shapes = {name: list(p.shape) for name, p in model.named_parameters()}
    out.write_text(json.dumps({"timesteps": timesteps, "input": list(example.shape), "parameters": shapes}))
    return {"parameters": len(shapes)}
'''


def test_an_export_format_is_one_registered_function_and_a_plugin_can_add_one(trio, tmp_path, monkeypatch, capsys):
    import json

    from sakd.cli import main
    from sakd.export import EXPORTERS
    from sakd.registry import registries

    assert EXPORTERS in registries(listed=True) and {"nir", "onnx"} <= set(EXPORTERS.names())
    (tmp_path / "sakd_test_exporter.py").write_text(EXPORTER_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    out, summary = tmp_path / "m.json", tmp_path / "summary.json"
    assert main(["--plugin", "sakd_test_exporter", "export", trio["student"], "--format", "shapes", "-o", str(out),
                 "--json", str(summary)]) == 0
    written = json.loads(out.read_text())
    assert written["timesteps"] == 2 and written["input"] == [1, 3, 16, 16] and written["parameters"]
    assert json.loads(summary.read_text())["parameters"] == len(written["parameters"])
    capsys.readouterr()
    assert main(["--plugin", "sakd_test_exporter", "list", "exporters"]) == 0
    assert "shapes " in capsys.readouterr().out
