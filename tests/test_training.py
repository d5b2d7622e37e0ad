import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import fast_config
from sakd.cli import main
from sakd.distill import Objective
from sakd.errors import CheckpointError, ConfigError, DatasetNotFoundError, TrainingDivergedError
from sakd.training import Trainer, load_config, train
from sakd.models.checkpoint import load_checkpoint

SAKD = ["distill.alpha=1", "distill.beta=1", "distill.gamma=1", "distill.tau=4"]


def test_teacher_learns(teacher_ckpt):
    assert load_checkpoint(teacher_ckpt)["best_top1"] > 60.0  # chance is 10%


def test_short_sakd_run_beats_chance_and_writes_its_run_folder(tmp_path, teacher_ckpt):
    cfg = fast_config(tmp_path, f"distill.teacher.weights={teacher_ckpt}", *SAKD, "optim.epochs=8", "optim.lr=0.1")
    summary = train(cfg)
    assert summary["mode"] == "sakd"
    assert summary["best_top1"] > 50.0  # chance is 10%
    assert 0.0 < summary["firing_rate"] < 1.0
    run = Path(summary["run_dir"])
    assert {"config.yaml", "metrics.jsonl", "last.pt", "best.pt", "tensorboard"} <= {p.name for p in run.iterdir()}
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == list(range(1, 9))
    assert {"train/ce", "train/feature_kd", "train/logit_kd", "test/top1", "test/top5", "lr"} <= set(records[0])
    assert load_config(run / "config.yaml").distill.teacher.weights == teacher_ckpt
    ckpt = load_checkpoint(run / "last.pt")
    assert ckpt["objective"] and not any(k.startswith("transforms") for k in ckpt["model"])


def test_resume_after_interruption_reproduces_the_uninterrupted_run(tmp_path, teacher_ckpt, monkeypatch):
    extra = [f"distill.teacher.weights={teacher_ckpt}", *SAKD, "optim.epochs=3"]
    full = train(fast_config(tmp_path / "a", *extra))

    real = Trainer.train_epoch

    def interrupted(self):
        if self.epoch == 1:
            raise KeyboardInterrupt
        return real(self)

    monkeypatch.setattr(Trainer, "train_epoch", interrupted)
    trainer = Trainer(fast_config(tmp_path / "b", *extra))
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    monkeypatch.setattr(Trainer, "train_epoch", real)
    resumed = Trainer.from_checkpoint(trainer.run_dir).fit()

    def numbers(run_dir):
        lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(line).items() if not k.startswith("time/")} for line in lines]

    assert numbers(resumed["run_dir"]) == numbers(full["run_dir"])


def test_ctrl_c_in_the_first_epoch_finishes_the_step_writes_last_pt_and_resumes(tmp_path, capsys):
    """A first Ctrl-C does what SIGTERM does (in epoch 1, where no epoch checkpoint exists yet): the
    step finishes, last.pt is written, the resume command printed works and the run ends as an
    uninterrupted one (mixup and CutMix on: the resumed steps mix as the uninterrupted ones did)."""
    import signal

    from sakd.errors import Preempted

    mixing = ["data.mixup=0.5", "data.cutmix=1.0", "distill.label_smoothing=0.1"]
    full = Trainer(fast_config(tmp_path / "full", *mixing))
    full.fit()
    # Python's own handler (ignored, where a shell started us in the background)
    before = signal.getsignal(signal.SIGINT)
    trainer = Trainer(fast_config(tmp_path / "cut", *mixing))
    trainer.on_step = lambda epoch, step: signal.raise_signal(signal.SIGINT) if (epoch, step) == (0, 2) else None
    with pytest.raises(Preempted) as stop:
        trainer.fit()
    assert stop.value.exit_code == 130
    assert f"resume with: sakd train --resume {trainer.run_dir}" in str(stop.value)
    assert "Ctrl-C again to stop at once" in capsys.readouterr().err
    assert load_checkpoint(trainer.run_dir / "last.pt")["step"] == 3  # the step in flight finished
    assert signal.getsignal(signal.SIGINT) is before  # the handler from before training is back
    resumed = Trainer.from_checkpoint(trainer.run_dir)
    resumed.fit()
    assert all(
        torch.equal(a, b)
        for a, b in zip(resumed.parts.model.state_dict().values(), full.parts.model.state_dict().values())
    )


def signals_at_step_1(trainer, *names):
    """Raise these signals in the trainer's process before its second step."""
    import signal

    def send(epoch, step):
        if (epoch, step) == (0, 1):
            for name in names:
                signal.raise_signal(getattr(signal, name))

    trainer.on_step = send
    return trainer


def test_a_second_ctrl_c_stops_at_once_and_says_what_is_kept(tmp_path, capsys):
    trainer = signals_at_step_1(Trainer(fast_config(tmp_path)), "SIGINT", "SIGINT")
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    err = " ".join(capsys.readouterr().err.split())
    assert "stopped at once in epoch 1" in err and "no checkpoint was written yet" in err
    # no "--resume" that would fail: how to start again, and no folder left holding nothing
    assert "run the same sakd train command again to start it afresh" in err and "--resume" not in err
    assert f"removed {trainer.run_dir}: it held no checkpoint yet" in err and not trainer.run_dir.exists()
    after_term = signals_at_step_1(Trainer(fast_config(tmp_path / "term")), "SIGTERM", "SIGINT")
    with pytest.raises(KeyboardInterrupt):  # a Ctrl-C after SIGTERM stops at once too
        after_term.fit()


def test_nan_loss_stops_with_the_epoch_and_step_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    cfg = fast_config(tmp_path, "optim.epochs=3")
    real = Objective.forward
    calls = {"n": 0}

    def poisoned(self, *args, **kwargs):
        out = real(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 10:  # epoch 2 (8 steps per epoch), step 2
            out.total = out.total * float("nan")
        return out

    monkeypatch.setattr(Objective, "forward", poisoned)
    trainer = Trainer(cfg)
    with pytest.raises(TrainingDivergedError, match="epoch 2, step 2/8.*last good checkpoint.*epoch 1"):
        trainer.fit()
    ckpt = load_checkpoint(trainer.run_dir / "last.pt")
    assert ckpt["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


def test_teacher_of_another_architecture_is_refused(tmp_path, teacher_ckpt):
    cfg = fast_config(tmp_path, "model.name=resnet19", f"distill.teacher.weights={teacher_ckpt}", *SAKD)
    with pytest.raises(ConfigError, match="holds resnet_tiny but the student is resnet19.*distill.teacher.name"):
        Trainer(cfg)
    assert not any(tmp_path.iterdir())  # nothing half-written


def test_spiking_teacher_is_refused(tmp_path, trio):
    with pytest.raises(ConfigError, match="holds a spiking model"):
        Trainer(fast_config(tmp_path, f"distill.teacher.weights={trio['baseline']}/last.pt", *SAKD))


def test_distillation_without_teacher_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="needs a teacher"):
        Trainer(fast_config(tmp_path, "distill.gamma=1"))


def test_student_initialised_from_teacher_copies_weights(tmp_path, teacher_ckpt):
    trainer = Trainer(fast_config(tmp_path, f"distill.teacher.weights={teacher_ckpt}", *SAKD, "model.init=teacher"))
    teacher_sd = load_checkpoint(teacher_ckpt)["model"]
    for k, v in trainer.parts.model.state_dict().items():
        assert torch.equal(v, teacher_sd[k])


def test_checkpoint_of_another_model_is_refused(tmp_path, teacher_ckpt):
    with pytest.raises(ConfigError, match="holds resnet_tiny, the model is resnet19"):
        Trainer(fast_config(tmp_path, "model.name=resnet19", f"model.init={teacher_ckpt}"))
    bare = tmp_path / "tiny_state_dict.pt"
    torch.save(load_checkpoint(teacher_ckpt)["model"], bare)  # no record of its architecture
    with pytest.raises(CheckpointError, match="do not fit model resnet19; missing: .*shape mismatch: conv1.weight"):
        Trainer(fast_config(tmp_path, "model.name=resnet19", f"model.init={bare}"))


def test_not_a_checkpoint_is_refused(tmp_path):
    bare = tmp_path / "weights.pt"
    torch.save({"conv1.weight": torch.zeros(1)}, bare)
    with pytest.raises(CheckpointError, match="not a sakd checkpoint"):
        load_checkpoint(bare)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_missing_dataset_names_the_path(tmp_path):
    cfg = load_config("cifar10/resnet19_snn", [f"data.root={tmp_path}/nowhere", f"run.output_dir={tmp_path}/runs"])
    with pytest.raises(DatasetNotFoundError, match=r"nowhere/cifar-10-batches-py.*data.download=true"):
        Trainer(cfg)


def test_runs_never_overwrite_each_other(tmp_path):
    a = train(fast_config(tmp_path, "optim.epochs=1", "model.spiking=false", "run.name=same"))
    b = train(fast_config(tmp_path, "optim.epochs=1", "model.spiking=false", "run.name=same"))
    assert a["run_dir"] != b["run_dir"] and Path(a["run_dir"], "last.pt").exists()


def test_cli_eval_and_errors(tmp_path, teacher_ckpt, capsys):
    out = tmp_path / "eval.json"
    assert main(["eval", teacher_ckpt, "--json", str(out), "--device", "cpu"]) == 0
    result = json.loads(out.read_text())
    assert result["top1"] > 60.0 and result["model"] == "resnet_tiny"
    assert main(["train", "--config", "quickstart/snn", "model.name=resnet91"]) == 2
    assert "'model.name' must be one of" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "nope.pt")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_eval_evaluates_what_the_run_evaluated_and_says_so(tmp_path, capsys):
    run = train(fast_config(tmp_path, "optim.epochs=1", "model.spiking=false", "data.test_subset=100"))["run_dir"]
    out = tmp_path / "eval.json"
    assert main(["eval", run, "--json", str(out), "--device", "cpu"]) == 0
    result = json.loads(out.read_text())
    last = json.loads((Path(run) / "metrics.jsonl").read_text().splitlines()[-1])
    assert result["samples"] == 100 and result["top1"] == pytest.approx(last["test/top1"])
    assert "100 of its 256 images (data.test_subset=100" in " ".join(capsys.readouterr().out.split())
    assert main(["eval", run, "--json", str(out), "--device", "cpu", "data.test_subset=null"]) == 0
    assert json.loads(out.read_text())["samples"] == 256 and "256 images" in " ".join(capsys.readouterr().out.split())


def test_cli_compare_tables_runs(tmp_path, teacher_ckpt, trio, capsys):
    out = tmp_path / "rows.json"
    assert main(["compare", str(Path(teacher_ckpt).parent), trio["baseline"], "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert [r["mode"] for r in rows] == ["ann", "snn"]  # the one vocabulary (Config.mode); tables label them
    assert rows[0]["best_top1"] == load_checkpoint(teacher_ckpt)["best_top1"]
    assert rows[1]["timesteps"] == 2 and 0 < rows[1]["firing_rate"] < 1
    assert main(["compare", str(tmp_path)]) == 2


def test_every_term_follows_its_weight_schedule_and_beta_schedule_is_one_case(tmp_path, teacher_ckpt):
    """β's step schedule switches feature KD off mid-training; an added term ramps in linearly
    from weight 0 (not computed while it weighs nothing); the weights are recorded per epoch."""
    cfg = fast_config(
        tmp_path,
        f"distill.teacher.weights={teacher_ckpt}",
        *SAKD,
        "optim.epochs=3",
        "distill.beta_schedule=[{epoch: 1, beta: 0.5}, {epoch: 2, beta: 0.0}]",
        "distill.terms=[{name: timestep_kd, weight: 0, tau: 2, schedule: [{epoch: 2, weight: 1, ramp: linear}]}]",
    )
    assert cfg.distill.weights_at(1) == {"ce": 1.0, "feature_kd": 0.5, "logit_kd": 1.0, "timestep_kd": 0.5}
    run = Path(train(cfg)["run_dir"])
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["weight/feature_kd"] for r in records] == [1.0, 0.5, 0.0]
    assert [r["weight/timestep_kd"] for r in records] == [0.0, 0.5, 1.0]
    assert ["train/feature_kd" in r for r in records] == [True, True, False]
    assert ["train/timestep_kd" in r for r in records] == [False, True, True]
    assert all("train/logit_kd" in r for r in records)
    assert records[1]["train/loss"] == pytest.approx(
        records[1]["train/ce"]
        + 0.5 * records[1]["train/feature_kd"]
        + records[1]["train/logit_kd"]
        + 0.5 * records[1]["train/timestep_kd"]
    )


def test_teacher_of_another_architecture_when_named(tmp_path):
    # a ResNet-19 ANN (128/256/512 channels) teaches a resnet_tiny SNN (16/32/64): the Conv
    # transforms map the channels; spatial sizes agree stage by stage
    teacher = train(fast_config(tmp_path, "model.name=resnet19", "model.spiking=false", "optim.epochs=1",
                                "data.options={image_size: 8}"))
    cfg = fast_config(
        tmp_path,
        f"distill.teacher.weights={teacher['run_dir']}/last.pt",
        "distill.teacher.name=resnet19",
        *SAKD,
        "optim.epochs=1",
        "data.options={image_size: 8}",
    )
    trainer = Trainer(cfg)
    assert [
        (t.conv.in_channels, t.conv.out_channels) for t in trainer.parts.objective.terms["feature_kd"].transforms
    ] == [(16, 128), (32, 256), (64, 512)]
    record = trainer.train_epoch()
    assert record["train/feature_kd"] > 0
    with pytest.raises(ConfigError, match="needs the same architecture"):
        Trainer(
            fast_config(
                tmp_path,
                f"distill.teacher.weights={teacher['run_dir']}/last.pt",
                "distill.teacher.name=resnet19",
                *SAKD,
                "model.init=teacher",
                "data.options={image_size: 8}",
            )
        )


def test_validation_hold_out_selects_the_best_checkpoint_without_the_test_set(tmp_path, capsys):
    from sakd.data.holdout import stratified_holdout

    labels = torch.arange(200) % 10
    train_idx, val_idx = stratified_holdout(labels.numpy(), 0.25)
    assert sorted(train_idx + val_idx) == list(range(200)) and not set(train_idx) & set(val_idx)
    assert torch.bincount(labels[val_idx]).tolist() == [5] * 10  # stratified
    assert (train_idx, val_idx) == stratified_holdout(labels.numpy(), 0.25)  # fixed

    summary = train(fast_config(tmp_path, "data.val_fraction=0.25", "optim.epochs=3", "model.spiking=false"))
    run = Path(summary["run_dir"])
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all({"val/top1", "val/loss", "test/top1"} <= set(r) for r in records)
    chosen = max(records, key=lambda r: r["val/top1"])
    assert load_checkpoint(run / "best.pt")["epoch"] == chosen["epoch"]
    assert summary["selected_top1"] == chosen["test/top1"] and summary["selected_epoch"] == chosen["epoch"]
    assert summary["best_top1"] == max(r["test/top1"] for r in records)
    assert summary["final_top1"] == records[-1]["test/top1"]
    trainer = Trainer.from_checkpoint(run)
    assert len(trainer.parts.train_loader.dataset) == 384 and len(trainer.parts.eval_loaders["val"].dataset) == 128

    assert main(["compare", str(run), "--json", str(tmp_path / "rows.json")]) == 0
    row = json.loads((tmp_path / "rows.json").read_text())[0]
    assert (row["best_top1"], row["final_top1"], row["selected_top1"]) == (
        summary["best_top1"], summary["final_top1"], summary["selected_top1"])
    assert "val-sel" in capsys.readouterr().out
    assert main(["eval", str(run / "best.pt"), "--json", str(tmp_path / "eval.json"), "--device", "cpu"]) == 0
    result = json.loads((tmp_path / "eval.json").read_text())
    assert result["run"]["final_top1"] == summary["final_top1"] and result["run"]["selected_epoch"] == chosen["epoch"]


def test_weight_decay_reaches_every_parameter_unless_told_otherwise(tmp_path):
    trainer = Trainer(fast_config(tmp_path, "optim.weight_decay=0.001"))
    (group,) = trainer.parts.optimizer.param_groups
    assert group["weight_decay"] == 0.001 and len(group["params"]) == len(list(trainer.parts.model.parameters()))
    trainer = Trainer(fast_config(tmp_path, "optim.weight_decay=0.001", "optim.decay_bn_and_bias=false"))
    decayed, free = trainer.parts.optimizer.param_groups
    assert all(p.dim() > 1 for p in decayed["params"]) and free["weight_decay"] == 0.0
    free_ids = {id(p) for p in free["params"]}
    assert id(trainer.parts.model.bn1.weight) in free_ids and id(trainer.parts.model.fc.bias) in free_ids


def test_a_checkpoint_that_cannot_be_written_is_a_clear_error_and_keeps_the_previous_one(tmp_path, small_disk):
    """A disk that fills up during a run (a real one: a small tmpfs): the checkpoint's path and the
    OS's reason in one line, the previous last.pt whole, no temporary file left."""
    disk = small_disk(4 * 2**20)

    class FillsTheDisk(Trainer):
        def on_epoch_end(self, record):
            free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
            (disk / "filler").write_bytes(b"\0" * (free - 16 * 1024))  # room for a metrics line, not a checkpoint

    trainer = FillsTheDisk(fast_config(disk, "optim.epochs=2", "model.spiking=false", "run.loggers=[]"))
    with pytest.raises(CheckpointError, match=r"^cannot write checkpoint .*last.pt: No space left on device; "
                                               r".*last.pt still holds the previous checkpoint$"):
        trainer.fit()
    assert load_checkpoint(trainer.run_dir / "last.pt")["epoch"] == 1
    assert not list(trainer.run_dir.glob(".*.tmp"))
    assert len((trainer.run_dir / "metrics.jsonl").read_text().splitlines()) == 2


def test_a_full_disk_at_start_names_the_file_and_leaves_no_run_folder(tmp_path, small_disk, capsys):
    from sakd.cli import main

    disk = small_disk(256 * 1024)
    (disk / "runs").mkdir()
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    (disk / "filler").write_bytes(b"\0" * free)
    assert main(["train", "--config", "quickstart/snn", "data.name=synthetic", "model.name=resnet_tiny",
                 f"run.output_dir={disk}/runs", "run.loggers=[]", "run.device=cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(r"runs/snn/.lock: No space left on device$", err)
    assert not list((disk / "runs").iterdir())  # the run folder it made is gone, no empty config.yaml


def test_every_file_a_run_writes_is_whole_or_absent(tmp_path, small_disk):
    """A write the OS refuses (a real read-only disk) names the file and its reason, keeps the
    earlier file as it was and leaves nothing behind; a file written whole has the permissions
    open() would give it."""
    from sakd import outputs
    from sakd.errors import WriteError
    from sakd.models import checkpoint as ckpt_io

    disk = small_disk(1024 * 1024, read_only={"r.html": b"an earlier report"})
    with pytest.raises(CheckpointError, match=r"new.pt: Read-only file system; no earlier new.pt exists"):
        ckpt_io.atomic_save({"x": 1}, disk / "new.pt")
    with pytest.raises(WriteError, match=r"^cannot write the report .*r.html: Read-only file system$"):
        outputs.write_bytes(disk / "r.html", b"<p>", "the report")
    assert [p.name for p in disk.iterdir()] == ["r.html"] and (disk / "r.html").read_bytes() == b"an earlier report"
    outputs.write_text(tmp_path / "mode.txt", "x", "a file")
    (tmp_path / "plain.txt").write_text("x")  # what open() gives a new file
    assert (tmp_path / "mode.txt").stat().st_mode & 0o777 == (tmp_path / "plain.txt").stat().st_mode & 0o777
    (tmp_path / "mode.txt").chmod(0o640)
    outputs.write_text(tmp_path / "mode.txt", "y", "a file")  # an existing file keeps its permissions
    assert (tmp_path / "mode.txt").stat().st_mode & 0o777 == 0o640


def test_a_log_line_that_does_not_fit_on_the_disk_is_taken_back(small_disk):
    """Appending to metrics.jsonl on a full disk (a real tmpfs): one error naming the file and the
    OS's reason, and the file as it was (no half line)."""
    from sakd import outputs
    from sakd.errors import WriteError

    disk = small_disk(64 * 1024)
    log = disk / "metrics.jsonl"
    outputs.append_text(log, '{"epoch": 1}\n', "the metrics")
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    (disk / "filler").write_bytes(b"\0" * (free - 100))  # the log's page has room, the next line needs more
    line = '{"epoch": 2, "train/loss": ' + "1" * 20000 + "}\n"
    with pytest.raises(WriteError, match=r"^cannot write the metrics .*metrics.jsonl: No space left on device$"):
        outputs.append_text(log, line, "the metrics")
    assert log.read_text() == '{"epoch": 1}\n'


def test_a_teacher_of_another_class_count_is_refused_before_training(tmp_path, teacher_ckpt):
    with pytest.raises(ConfigError, match="the teacher has num_classes=10 but the data set synthetic gives 5"):
        Trainer(
            fast_config(tmp_path, "data.options={num_classes: 5}", f"distill.teacher.weights={teacher_ckpt}", *SAKD)
        )
    bare = tmp_path / "imagenet_head.pt"
    state = load_checkpoint(teacher_ckpt)["model"]
    state["fc.weight"], state["fc.bias"] = torch.zeros(1000, state["fc.weight"].shape[1]), torch.zeros(1000)
    torch.save(state, bare)
    with pytest.raises(CheckpointError, match=r"do not fit model resnet_tiny; shape mismatch: fc.weight: \(1000, 64\)"):
        Trainer(fast_config(tmp_path, f"distill.teacher.weights={bare}", *SAKD))
    assert not any(p.is_dir() for p in tmp_path.iterdir())  # no run folder was started


def test_a_version_1_checkpoint_with_an_arch_record_still_loads(tmp_path, teacher_ckpt):
    from sakd.models.checkpoint import model_from_checkpoint
    from sakd.models.registry import ModelSpec

    new = load_checkpoint(teacher_ckpt)
    old = {"format": "sakd-checkpoint", "version": 1, "model": new["model"],
           "arch": {"name": "resnet_tiny", "spiking": False, "num_classes": 10, "timesteps": 2, "in_channels": 3,
                    "stem": "cifar", "options": {},
                    "neuron": {"decay": 0.5, "threshold": 1.0, "surrogate": "triangle", "detach_reset": False,
                               "backend": "auto"}}}  # version 1 recorded no neuron name or reset
    torch.save(old, tmp_path / "v1.pt")
    model, ckpt = model_from_checkpoint(tmp_path / "v1.pt")
    assert isinstance(ckpt["spec"], ModelSpec) and ckpt["spec"] == new["spec"].replace(timesteps=2)
    assert ckpt["spec"].neuron.name == "lif" and ckpt["spec"].neuron.reset == "hard"
    assert all(torch.equal(v, new["model"][k]) for k, v in model.state_dict().items())
    # through the typed reader every command uses: with its run's config, and without one
    from sakd.training.run_folder import Checkpoint

    torch.save({**old, "config": new["config"], "epoch": 6, "history": new["history"]}, tmp_path / "v1_run.pt")
    held = Checkpoint.load(tmp_path / "v1_run.pt")
    assert held.spec == ckpt["spec"] and held.mode == "ann" and held.epoch == 6 and len(held.history) == 6
    with pytest.raises(CheckpointError, match="records no config: it was not written by a sakd run"):
        Checkpoint.load(tmp_path / "v1.pt")


def test_a_run_recorded_before_terms_had_schedules_still_reads(tmp_path):
    """metrics.jsonl of earlier versions kept β as "beta" (no weight/* keys): the report plots it."""
    from sakd.analysis.report import curves_svg

    old = [{"epoch": e, "lr": 0.1, "beta": b, "train/loss": 1.0 / e, "train/top1": 50.0, "test/top1": 40.0 + e}
           for e, b in ((1, 10.0), (2, 0.01))]
    new = [{**{k: v for k, v in r.items() if k != "beta"}, "weight/feature_kd": r["beta"], "weight/ce": 1.0,
            "weight/logit_kd": float(r["epoch"])} for r in old]
    for records in (old, new):
        svg = curves_svg(records, "a run")
        assert "loss weights" in svg and svg.count("<svg") == 1
    svg = curves_svg(new, "a run")
    assert "weight/feature_kd" in svg and "weight/logit_kd" in svg  # the legend of the weights that change
    assert "weight/ce" not in svg  # a weight that never changes is not plotted


def test_train_and_test_subsets_are_fixed_stratified_and_hold_out_within(tmp_path):
    from sakd.data.holdout import sample_labels

    trainer = Trainer(fast_config(tmp_path, "data.train_subset=100", "data.test_subset=50", "data.val_fraction=0.2"))
    train_set = trainer.parts.train_loader.dataset.dataset  # inside the per-sample seeding wrapper
    val_set, test_set = trainer.parts.eval_loaders["val"].dataset, trainer.parts.eval_loaders["test"].dataset
    assert (len(train_set), len(val_set), len(test_set)) == (80, 20, 50)
    for subset, per_class in ((train_set, 8), (val_set, 2), (test_set, 5)):  # synthetic: 10 balanced classes
        assert np.bincount(sample_labels(subset), minlength=10).tolist() == [per_class] * 10
    assert not set(train_set.indices) & set(val_set.indices)  # the hold-out comes out of the subset
    again = Trainer(fast_config(tmp_path, "data.train_subset=100", "data.test_subset=50", "data.val_fraction=0.2"))
    assert again.parts.train_loader.dataset.dataset.indices == train_set.indices  # fixed: every run alike
    with pytest.raises(ConfigError, match="data.train_subset=5 cannot be drawn by class from 512 samples"):
        Trainer(fast_config(tmp_path, "data.train_subset=5"))


def test_mixup_and_label_smoothing_train_and_mixup_refuses_dkd(tmp_path, teacher_ckpt, monkeypatch):
    """data.mixup mixes every micro-batch until data.mixup_off_epoch (the teacher sees the mixed
    images, ce the mixed labels, distill.label_smoothing smooths them); a term that reads each
    label's class is refused."""
    import sakd.training.trainer as trainer_module

    calls = []
    real = trainer_module.mix
    monkeypatch.setattr(trainer_module, "mix", lambda x, y, k, a, c: calls.append(a) or real(x, y, k, a, c))
    summary = train(fast_config(tmp_path, "data.mixup=0.4", "data.mixup_off_epoch=4", "distill.label_smoothing=0.1",
                                "run.name=mixed", f"distill.teacher.weights={teacher_ckpt}", "distill.gamma=1",
                                "optim.epochs=8", "optim.lr=0.1"))
    assert calls == [0.4] * 4 * (512 // 64)  # every step of the first 4 epochs (512 samples, batches of 64), none after
    assert summary["best_top1"] > 40  # chance is 10%
    with pytest.raises(
        ConfigError, match="data.mixup / data.cutmix mix the labels, but distill.terms dkd reads each label's class"
    ):
        train(fast_config(tmp_path, "data.cutmix=1", f"distill.teacher.weights={teacher_ckpt}", "run.name=refused",
                          "distill.terms=[{name: dkd, weight: 1}]"))


def test_label_smoothing_of_mixed_labels_is_timms_mixup_target():
    """ce with distill.label_smoothing on mixed labels is the cross-entropy against timm's
    mixup_target: λ·smooth(y) + (1 - λ)·smooth(y[perm]), smooth(y) = (1 - ε)·onehot(y) + ε/K."""
    from torch.nn.functional import log_softmax, one_hot

    from sakd.data.augmentation import mix
    from sakd.distill.terms import CrossEntropy, TermInputs
    from sakd.randomness import step_draws

    torch.manual_seed(0)
    x, y, logits = torch.randn(6, 3, 4, 4), torch.arange(6), torch.randn(6, 6, dtype=torch.float64)
    with step_draws(0, 0, 0):
        _, target = mix(x, y, 6, mixup=0.5)
    diagonal = target.diagonal()  # one class per sample: the labels show λ and the permutation
    lam = diagonal.min().item()
    perm = torch.where(diagonal == 1, torch.arange(6), (target - lam * torch.eye(6)).argmax(1))
    eps = 0.1

    def smooth(labels):
        return (1 - eps) * one_hot(labels, 6).double() + eps / 6

    timm_target = lam * smooth(y) + (1 - lam) * smooth(perm)
    expected = -(timm_target * log_softmax(logits, 1)).sum(1).mean()
    got = CrossEntropy(label_smoothing=eps)(TermInputs(logits, target.double()))
    assert 0 < lam < 1
    torch.testing.assert_close(got, expected)


def test_the_schedule_warms_up_decays_over_the_epochs_before_the_cooldown_and_holds_the_minimum():
    """optim.cooldown_epochs (timm's): warm-up, cosine to min_lr over epochs - cooldown, then min_lr."""
    import math

    from sakd.training.optim import build_scheduler

    cfg = load_config(None, ["optim.lr=1.0", "optim.min_lr=0.1", "optim.epochs=10", "optim.warmup_epochs=2",
                             "optim.cooldown_epochs=3"]).optim
    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([weight], lr=1.0)
    scheduler = build_scheduler(optimizer, cfg, steps_per_epoch=1)
    lrs = []
    for _ in range(10):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    cosine = [0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * k / 5)) for k in range(5)]  # steps 2..6 of 7
    assert lrs[:2] == [0.5, 1.0] and all(math.isclose(a, b) for a, b in zip(lrs[2:7], cosine))
    assert all(math.isclose(v, 0.1) for v in lrs[7:])  # the cooldown at min_lr
    with pytest.raises(ConfigError, match=r"warmup_epochs \+ optim.cooldown_epochs"):
        build_scheduler(optimizer, load_config(None, ["optim.epochs=4", "optim.warmup_epochs=2",
                                                      "optim.cooldown_epochs=2"]).optim, 1)


@pytest.mark.parametrize("name, size", [("resnet_tiny", {}), ("spikformer", dict(depth=1, dim=16, heads=2)),
                                        ("spike_driven_transformer", dict(depth=1, dim=16)),
                                        ("python:sakd.examples.own_cnn:own_cnn", dict(widths=[8, 16, 32]))])
def test_an_snns_first_timesteps_are_the_network_deployed_at_fewer(name, size):
    """What ``sakd eval --timesteps`` reads: the mean of a T-step run's first t logits equals a
    run of t timesteps (the network is causal in eval mode), for t up to T and beyond."""
    from sakd.models import create_model

    torch.manual_seed(0)
    model = create_model(name, spiking=True, num_classes=10, timesteps=5, **size).double().eval()
    x = torch.rand(3, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        prefix = model.forward_timesteps(x).cumsum(0)
        for t in (1, 2, 4, 5):
            model.timesteps = t
            torch.testing.assert_close(prefix[t - 1] / t, model(x))


def test_eval_reads_an_snn_out_after_each_timestep(tmp_path, capsys):
    from sakd.models import checkpoint as ckpt_io
    from sakd.training.evaluate import evaluate

    run = train(fast_config(tmp_path, "optim.epochs=1", "data.test_subset=64"))["run_dir"]  # T = 2
    out = tmp_path / "eval.json"
    assert main(["eval", run, "--json", str(out), "--device", "cpu", "--timesteps", "1", "2", "3"]) == 0
    result = json.loads(out.read_text())
    by = result["by_timesteps"]
    assert list(by) == ["1", "2", "3"] and "read out after T =" in capsys.readouterr().out
    assert by["2"]["top1"] == pytest.approx(result["top1"]) and by["2"]["loss"] == pytest.approx(
        result["loss"], rel=1e-5
    )
    model, _ = ckpt_io.model_from_checkpoint(ckpt_io.load_checkpoint(run))
    cfg = load_config(Path(run) / "config.yaml")
    from sakd.data import open_data
    from sakd.data.holdout import test_split
    from torch.utils.data import DataLoader

    data = open_data(cfg.data, augment=False)
    loader = DataLoader(test_split(data.test, 64), batch_size=64)
    for t in (1, 3):  # the network run at t timesteps
        model.timesteps = t
        assert evaluate(model, loader, torch.device("cpu"))["top1"] == pytest.approx(by[str(t)]["top1"])
    assert main(["eval", run, "--timesteps", "all", "--json", str(out), "--device", "cpu"]) == 0
    assert list(json.loads(out.read_text())["by_timesteps"]) == ["1", "2"]
    teacher = train(fast_config(tmp_path, "optim.epochs=1", "model.spiking=false", "data.test_subset=20"))["run_dir"]
    capsys.readouterr()
    assert main(["eval", teacher, "--timesteps", "1", "--device", "cpu"]) == 2
    assert "is an ANN; it has no timesteps" in capsys.readouterr().err
    assert main(["eval", run, "--timesteps", "0"]) == 2
    assert "--timesteps: 0 is not positive" in capsys.readouterr().err
    # commas as well as spaces, and an override after the numbers stays an override
    assert main(["eval", run, "--timesteps", "1,2", "--json", str(out), "--device", "cpu"]) == 0
    assert list(json.loads(out.read_text())["by_timesteps"]) == ["1", "2"]
    assert (
        main(["eval", run, "--timesteps", "1", "2", "data.test_subset=30", "--json", str(out), "--device", "cpu"]) == 0
    )
    result = json.loads(out.read_text())
    assert list(result["by_timesteps"]) == ["1", "2"] and result["samples"] == 30
    assert main(["eval", run, "--timesteps", "1,all"]) == 2
    assert "numbers or `all`, not both" in capsys.readouterr().err
    # the run folder after the numbers (argparse gives it to --timesteps) is still the checkpoint
    assert main(["eval", "--timesteps", "1", "2", run, "--json", str(out), "--device", "cpu"]) == 0
    assert list(json.loads(out.read_text())["by_timesteps"]) == ["1", "2"]
    assert main(["eval", "--timesteps", "1,x", run]) == 2
    assert "--timesteps: 'x' is not a whole number" in capsys.readouterr().err
    assert main(["eval", "--device", "cpu"]) == 2
    assert "sakd eval takes one checkpoint (a file or a run folder), got 0: none" in capsys.readouterr().err


def test_one_process_at_a_time_trains_in_a_run_folder_and_a_killed_one_does_not_block(tmp_path):
    """A second ``--resume`` of a run that a live process trains in is one line naming that process,
    and writes nothing (no second metrics line, no tracker files); once the holder is killed (-9),
    the lock it left does not block."""
    import signal
    import subprocess
    import sys

    from sakd.training.run_folder import RunBusyError

    run = Path(train(fast_config(tmp_path, "optim.epochs=1"))["run_dir"])
    def files():
        return {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != ".lock"}

    before = files()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from sakd.training.run_folder import FolderLock; "
            f"FolderLock({str(run)!r}).acquire(); print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunBusyError, match=rf"{run} is in use by process {holder.pid} on \S+ \(training in it\)"):
            Trainer.from_checkpoint(run, ["optim.epochs=2"])
        assert main(["train", "--resume", str(run), "optim.epochs=2"]) == 2
        assert files() == before
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    trainer = Trainer.from_checkpoint(run, ["optim.epochs=2"])  # the killed holder's lock is gone with it
    trainer.fit()
    assert [r["epoch"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())] == [1, 2]
