from pathlib import Path

import pytest

from sakd.errors import ConfigError
from sakd.models import create_model
from sakd.training.config import load_config, packaged_configs


def test_overrides_are_typed():
    cfg = load_config(None, ["optim.lr=1e-3", "model.spiking=false", "data.options.image_size=8",
                             "distill.beta_schedule=[{epoch: 10, beta: 0.01}]"])
    assert cfg.optim.lr == 0.001 and cfg.model.spiking is False and cfg.data.options == {"image_size": 8}
    assert cfg.distill.weights_at(9)["feature_kd"] == 0.0 and cfg.distill.weights_at(10)["feature_kd"] == 0.01


def test_base_inheritance_and_paper_presets():
    cfg = load_config("cifar100/resnet19_sakd")
    assert (cfg.distill.tau, cfg.distill.alpha, cfg.distill.gamma, cfg.distill.beta) == (20, 0, 1, 100)
    assert cfg.model.name == "resnet19" and cfg.model.spiking and cfg.model.timesteps == 4
    assert cfg.optim.name == "sgd" and cfg.optim.lr == 0.1 and cfg.optim.epochs == 200
    assert cfg.mode == "sakd"
    imagenet = load_config("presets/sakd_imagenet")
    assert (imagenet.distill.tau, imagenet.distill.alpha, imagenet.distill.gamma) == (1, 1, 10)
    assert imagenet.distill.weights_at(0)["feature_kd"] == 10 and imagenet.distill.weights_at(10)["feature_kd"] == 0.01


@pytest.mark.parametrize("name", packaged_configs())
def test_every_packaged_config_loads_and_names_a_model(name):
    cfg = load_config(name)
    create_model(cfg.model.name, spiking=cfg.model.spiking, num_classes=10, **cfg.model.options)


@pytest.mark.parametrize(
    "override, message",
    [
        ("optim.lrr=0.1", "unknown config key 'optim.lrr'; did you mean 'optim.lr'"),
        ("optim.lr=fast", "'optim.lr' must be a number"),
        ("model.timesteps=2.5", "'model.timesteps' must be an integer"),
        ("model.name.x=1", "is a value, not a section"),
        ("nonsense", "must look like key=value"),
    ],
)
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_unknown_config_name_is_a_clear_error():
    with pytest.raises(ConfigError, match="neither a file nor a packaged config"):
        load_config("cifar10/resnet91_sakd")


def test_bad_yaml_is_reported_with_its_path(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {name: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml is not valid YAML"):
        load_config(bad)


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.timesteps=0", "config key 'model.timesteps' must be >= 1, got 0"),
        ("run.amp=fp8", "config key 'run.amp' must be one of auto, off, bf16, fp16; got 'fp8'"),
        ("optim.name=adam", "config key 'optim.name' must be one of adamw, sgd; got 'adam' (did you mean 'adamw'?)"),
        ("optim.scheduler=step", "config key 'optim.scheduler' must be one of constant, cosine; got 'step'"),
        ("distill.features.level=blocks", "'distill.features.level' must be one of stage, block; got 'blocks'"),
        ("distill.features.position=middle", "'distill.features.position' must be one of before, after"),
        ("distill.features.transform=conv3", "'distill.features.transform' must be one of conv, none, norm"),
        ("distill.features.distance=manhattan", "'distill.features.distance' must be one of "),
        ("distill.features.reduce=max", "'distill.features.reduce' must be one of sum, mean"),
        ("distill.features.weights=[1, -1]", "'distill.features.weights' must be >= 0.0, got -1.0"),
        ("model.neuron.backend=cuda", "'model.neuron.backend' must be one of auto, compiled, fused, reference"),
        ("model.neuron.name=lfi", "got 'lfi' (did you mean 'lif'?)"),
        ("model.neuron.reset=zero", "'model.neuron.reset' must be one of hard, soft; got 'zero'"),
        ("model.neuron.surrogate=triangel", "(did you mean 'triangle'?)"),
        ("model.neuron.decay=1.5", "'model.neuron.decay' must be <= 1.0, got 1.5"),
        ("model.neuron.threshold=0", "'model.neuron.threshold' must be > 0.0, got 0.0"),
        ("model.stem=tiny", "'model.stem' must be one of cifar, imagenet; got 'tiny'"),
        ("model.name=resnet91", "'model.name' must be one of"),
        ("distill.teacher.name=vgg13", "'distill.teacher.name' must be one of"),
        ("data.name=cifar11", "(did you mean 'cifar10'?)"),
        ("data.batch_size=0", "'data.batch_size' must be >= 1, got 0"),
        ("data.num_workers=-1", "'data.num_workers' must be >= 0, got -1"),
        ("data.val_fraction=1", "'data.val_fraction' must be < 1.0, got 1.0"),
        ("optim.lr=0", "'optim.lr' must be > 0.0, got 0.0"),
        ("optim.epochs=0", "'optim.epochs' must be >= 1, got 0"),
        ("optim.betas=[0.9, 1.5]", "'optim.betas': AdamW betas lie in [0, 1), got 1.5"),
        ("distill.tau=0", "'distill.tau' must be > 0.0, got 0.0"),
        ("distill.beta=-1", "'distill.beta' must be >= 0.0, got -1.0"),
        ("distill.beta_schedule=[{epoch: -1, beta: 1}]", "'distill.beta_schedule[0].epoch' must be >= 0, got -1"),
        ("nas.sampling=random", "'nas.sampling' must be one of uniform, sandwich; got 'random'"),
        ("run.device=gpu", "'run.device': 'gpu' is not a device"),
        ("run.checkpoint_every=5x", "'run.checkpoint_every': '5x' is not an interval"),
        ("run.checkpoint_every=2.5", "'run.checkpoint_every': '2.5': a number of steps must be whole"),
        ("run.log_interval=0", "'run.log_interval' must be >= 1, got 0"),
    ],
)
def test_every_field_is_checked_when_the_config_loads(override, message):
    import re

    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config("cifar10/resnet19_sakd", [override])


@pytest.mark.parametrize("spec, expected", [("0", None), (None, None), (500, ("steps", 500.0)),
                                            ("500steps", ("steps", 500.0)), ("30min", ("min", 30.0)),
                                            ("1.5m", ("min", 1.5))])
def test_checkpoint_intervals(spec, expected):
    from sakd.training.config import parse_interval

    assert parse_interval(spec) == expected
    loaded = load_config(None, [f"run.checkpoint_every={'null' if spec is None else spec}"]).run.checkpoint_every
    assert loaded == (None if spec is None else str(spec))


def test_cli_errors_are_one_line_with_status_2_and_come_before_any_data(tmp_path, monkeypatch, capsys):
    from sakd.cli import main

    def no_data(*args, **kwargs):
        raise AssertionError("the data set was loaded before the config was checked")

    monkeypatch.setattr("sakd.data.registry.build_dataset", no_data)  # the one door to every data set
    for argv in (["train", "--config", "quickstart/snn", "model.timesteps=0", f"run.output_dir={tmp_path}"],
                 ["train", "--config", "quickstart/snn", "run.amp=fp8"],
                 ["train", "--config", "nope/none"],
                 ["eval", str(tmp_path / "missing.pt")],
                 ["compare", str(tmp_path)],
                 ["nas", "search", str(tmp_path / "missing.pt")], ["eval"]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"sakd {argv[0]}: error: ") and "Traceback" not in err
    for argv in (["train", "--bogus"], ["frobnicate"]):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and err.count("\n") == 1 and "error:" in err, argv
    assert not any(tmp_path.iterdir())


def test_a_config_built_in_python_is_checked_too(tmp_path):
    from sakd.training import Trainer

    cfg = load_config("quickstart/snn", [f"run.output_dir={tmp_path}"])
    cfg.model.timesteps = 0
    with pytest.raises(ConfigError, match="'model.timesteps' must be >= 1"):
        Trainer(cfg)


def test_bad_files_and_places_are_one_line_before_any_work_and_leave_nothing(tmp_path, monkeypatch, capsys, trio):
    """A binary or non-UTF-8 config, a .pt that is not a checkpoint or is empty, a config that is a
    folder, an output that is a folder or lies under a file: one line naming the file and what is
    wrong, status 2, before any data is loaded, and nothing written."""
    import torch

    from sakd.cli import main

    def no_data(*args, **kwargs):
        raise AssertionError("the data set was loaded before the bad input was found")

    monkeypatch.setattr("sakd.data.registry.build_dataset", no_data)  # the one door to every data set
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "latin1.yaml").write_bytes("model: {name: caf\xe9}\n".encode("latin-1"))
    (bad / "binary.yaml").write_bytes(bytes(range(256)))
    (bad / "broken.yaml").write_text("model: {name: [\n")
    (bad / "empty.pt").write_bytes(b"")
    (bad / "text.pt").write_text("not a checkpoint\n")
    (bad / "truncated.pt").write_bytes((Path(trio["student"]) / "last.pt").read_bytes()[:5000])
    import argparse

    torch.save({"format": "sakd-checkpoint", "args": argparse.Namespace(a=1)}, bad / "pickled.pt")  # a class
    torch.save({"weight": torch.ones(2)}, bad / "state_dict.pt")
    (bad / "a_file").write_text("x")
    folder = bad / "a_folder"
    folder.mkdir()
    student = trio["student"]
    cases = {
        ("train", "--config", str(bad / "latin1.yaml")): "latin1.yaml is not a text file (not UTF-8 at byte",
        ("train", "--config", str(bad / "binary.yaml")): "binary.yaml is not a text file",
        ("train", "--config", str(bad / "broken.yaml")): "broken.yaml is not valid YAML at line 2",
        ("train", "--config", str(folder)): "is a folder; give a YAML file",
        ("eval", str(bad / "empty.pt")): "empty.pt: the file is empty (0 bytes)",
        ("eval", str(bad / "text.pt")): "text.pt is not a checkpoint: not a PyTorch file (it begins as text",
        ("eval", str(bad / "truncated.pt")): "truncated.pt: a damaged PyTorch file",
        ("eval", str(bad / "pickled.pt")): "pickled.pt holds Python objects besides tensors and plain data, which "
        "sakd does not load: unpickling them would run code",
        ("eval", str(bad / "state_dict.pt")): "state_dict.pt is not a sakd checkpoint",
        ("train", "--config", "quickstart/snn", f"run.output_dir={bad / 'a_file'}"): "run.output_dir",
        (
            "train",
            "--config",
            "quickstart/snn",
            f"run.output_dir={bad / 'a_file' / 'runs'}",
        ): "a_file is a file, not a folder",
        ("eval", student, "--json", str(folder)): "--json",
        ("eval", student, "--json", str(bad / "a_file" / "r.json")): "a_file is a file, not a folder",
        ("report", student, "-o", str(folder)): "is a folder; give a file name",
        ("export", student, "--format", "onnx", "-o", str(bad / "a_file" / "m.onnx")): "a_file is a file",
        (
            "visualize",
            "--teacher",
            trio["teacher"],
            "--baseline",
            trio["baseline"],
            "--student",
            student,
            "-o",
            str(bad / "a_file" / "fig"),
        ): "a_file is a file",
        ("compare", student, "--json", str(folder)): "is a folder",
        ("quickstart", "--output-dir", str(bad / "a_file")): "--output-dir",
    }
    before = sorted(p.name for p in bad.rglob("*"))
    for argv, message in cases.items():
        assert main(list(argv)) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err, (argv, err)
        assert err.startswith(f"sakd {argv[0]}: error: ") and message in err, (argv, err)
    assert sorted(p.name for p in bad.rglob("*")) == before  # nothing left behind


def test_eval_names_its_device_flag(capsys, trio):
    import torch

    from sakd.cli import main

    if torch.cuda.is_available():
        pytest.skip("a machine with CUDA takes cuda")
    assert main(["eval", trio["student"], "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert "--device cuda:0 but CUDA is not available on this machine; use --device cpu" in err


def test_help_stands_alone_every_key_listed_and_a_recipe_printed_resolved(capsys):
    """``sakd config keys`` lists every key of the config with its type, default and meaning;
    ``sakd configs NAME`` prints a recipe as a run records it; every command's --help names
    --plugin and the exit statuses; train's points to the keys, tune's gives the space format."""
    import yaml

    from sakd.cli import COMMANDS, main
    from sakd.training import load_config
    from sakd.training.config import Config

    def leaves(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict) and k not in ("options", "surrogate_options"):
                yield from leaves(v, f"{prefix}{k}.")
            else:
                yield prefix + k

    assert main(["config", "keys"]) == 0
    out = capsys.readouterr().out
    listed = [line.split(":")[0] for line in out.splitlines() if not line.startswith(" ")]
    assert listed == list(leaves(Config().to_dict()))
    meanings = [line for line in out.splitlines() if line.startswith("    ")]
    assert len(meanings) >= len(listed)  # a meaning under every key
    assert "optim.lr: float = 0.1\n    the peak learning rate" in out
    assert (
        "model.neuron.name: str = lif\n    the neuron (lif: eq. 1-3) (one of the registered names: `sakd list neurons`)"
        in out
    )
    assert main(["config", "keys", "distill.terms[]"]) == 0
    assert "distill.terms[].weight: float = 1.0" in capsys.readouterr().out
    assert main(["config", "keys", "optim"]) == 0
    assert all(line.startswith(("optim.", "    ")) for line in capsys.readouterr().out.splitlines())
    assert main(["config", "keys", "optimizer"]) == 2
    assert "no config key or section 'optimizer'; the sections: convert, data, distill" in capsys.readouterr().err

    assert main(["configs", "quickstart/snn", "optim.lr=0.3"]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == load_config("quickstart/snn", ["optim.lr=0.3"]).to_dict()

    for name in COMMANDS.names():
        with pytest.raises(SystemExit):
            main([*name.split(), "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "--plugin MODULE" in text and "exit status: 0 done, 2 bad input" in text, name
        if name == "train":
            assert "sakd config keys [SECTION]" in text and "sakd configs NAME" in text
        if name == "tune":
            assert "the --space file (YAML): params:" in text and "combine: [1, 2]" in text
