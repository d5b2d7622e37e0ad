import json
import random

import pytest
import torch

from conftest import fast_config
from sakd.cli import main
from sakd.errors import ConfigError
from sakd.models import create_model
from sakd.nas import PAPER_SPACE, Arch, SearchSpace
from sakd.nas.search import SubnetEvaluator, read_results, search
from sakd.nas.train import SupernetTrainer
from sakd.training import load_config, train

TINY_SPACE = {
    "stem_width": 8,
    "stages": [{"channels": [4, 8], "depths": [1, 2]}, {"channels": [8, 12], "depths": [1, 3]}],
    "reference": {"channels": [8, 12], "depths": [1, 1]},
}
SPACE_OPT = "model.options={space: {stem_width: 8, stages: [{channels: [4, 8], depths: [1, 2]}, " \
            "{channels: [8, 12], depths: [1, 3]}], reference: {channels: [8, 12], depths: [1, 1]}}}"


def test_paper_search_space_has_36288_subnets_and_resnet34():
    space = SearchSpace.from_dict(PAPER_SPACE)
    assert space.size == 36_288
    assert space.contains(Arch((64, 128, 256, 512), (3, 4, 6, 3)))
    assert space.smallest() == Arch((48, 96, 192, 384), (2, 2, 2, 2))
    cfg = load_config("nas/cifar100_resnet34_supernet")
    assert SearchSpace.from_dict(cfg.model.options["space"]).size == 36_288


def test_bad_space_and_subnet_are_clear_errors():
    with pytest.raises(ConfigError, match="reference architecture .* is not in the search space"):
        SearchSpace.from_dict({**TINY_SPACE, "reference": {"channels": [5, 12], "depths": [1, 1]}})
    space = SearchSpace.from_dict(TINY_SPACE)
    with pytest.raises(ConfigError, match="is not in the search space"):
        space.check(Arch((4, 8), (1, 2)))


@pytest.mark.parametrize("spiking", [True, False])
def test_sampled_subnet_forward_equals_its_materialised_model(spiking):
    torch.manual_seed(0)
    net = create_model("resnet_supernet", spiking=spiking, num_classes=5, timesteps=2, space=TINY_SPACE)
    with torch.no_grad():  # non-trivial BN statistics
        net.train()(torch.randn(8, 3, 12, 12))
    rng = random.Random(0)
    x = torch.randn(4, 3, 12, 12)
    for arch in [net.space.largest(), net.space.smallest()] + [net.space.sample(rng) for _ in range(6)]:
        net.use(arch).eval()
        standalone = net.materialize().eval()
        assert standalone.spec.name == "resnet_custom" and [
            len(layer) for layer in (standalone.layer1, standalone.layer2)
        ] == list(arch.depths)
        with torch.no_grad():
            assert torch.allclose(net(x), standalone(x), atol=1e-6), arch


def _supernet_config(tmp_path, teacher, *extra):
    return fast_config(tmp_path, "model.name=resnet_supernet", SPACE_OPT, f"distill.teacher.weights={teacher}",
                       "distill.teacher.name=resnet_custom", "distill.alpha=1", "distill.beta=1", "distill.gamma=1",
                       "data.options={image_size: 12}", *extra)


@pytest.fixture(scope="module")
def nas_teacher(tmp_path_factory):
    out = tmp_path_factory.mktemp("nas_teacher")
    run = train(fast_config(out, "model.name=resnet_custom", "model.spiking=false", "data.options={image_size: 12}",
                            "model.options={depths: [1, 1], widths: [8, 12], stem_width: 8}", "optim.epochs=2"))
    return f"{run['run_dir']}/last.pt"


def test_a_supernet_step_changes_only_the_sampled_subnets_weights(tmp_path, nas_teacher, monkeypatch):
    arch = Arch((4, 12), (2, 1))
    cfg = _supernet_config(tmp_path, nas_teacher, "optim.momentum=0", "optim.weight_decay=0", "optim.epochs=1",
                           "data.options={image_size: 12, train_size: 64}", "data.batch_size=64")
    trainer = SupernetTrainer(cfg)
    monkeypatch.setattr(trainer, "subnets_for", lambda epoch, step: [arch])
    before = {k: v.clone() for k, v in trainer.parts.model.state_dict().items()}
    trainer.train_epoch()  # exactly one optimiser step
    used = trainer.parts.model.materialize(arch).state_dict()
    after = trainer.parts.model.state_dict()
    for name, old in before.items():
        if name.endswith("num_batches_tracked"):
            continue
        new = after[name]
        if name in used:
            inside = tuple(slice(0, n) for n in used[name].shape)
            mask = torch.zeros_like(old, dtype=torch.bool)
            mask[inside] = True
            assert torch.equal(new[~mask], old[~mask]), f"{name}: weights outside the subnet changed"
            assert not torch.equal(new[mask], old[mask]), f"{name}: the subnet's weights did not change"
        else:
            assert torch.equal(new, old), f"{name} is not in the subnet but changed"


def test_sandwich_rule_samples_largest_smallest_and_random(tmp_path, nas_teacher):
    trainer = SupernetTrainer(_supernet_config(tmp_path, nas_teacher, "nas.sampling=sandwich", "nas.sandwich_random=2"))
    archs = trainer.subnets_for(0, 0)
    space = trainer.parts.model.space
    assert archs[:2] == [space.largest(), space.smallest()] and len(archs) == 4
    assert archs == trainer.subnets_for(0, 0) and archs != trainer.subnets_for(0, 1)  # seeded per step
    assert trainer.train_epoch()["train/loss"] > 0


@pytest.fixture(scope="module")
def supernet_ckpt(tmp_path_factory, nas_teacher):
    out = tmp_path_factory.mktemp("supernet")
    return train_supernet_run(out, nas_teacher)


def train_supernet_run(out, teacher):
    trainer = SupernetTrainer(_supernet_config(out, teacher, "optim.epochs=2", "nas.calibration_batches=2"))
    trainer.fit()
    return str(trainer.run_dir / "last.pt")


@pytest.mark.parametrize("strategy", ["random", "tpe"])
def test_search_resumes_without_re_evaluating(tmp_path, supernet_ckpt, monkeypatch, strategy):
    results = tmp_path / "search.jsonl"
    first = search(supernet_ckpt, results, strategy=strategy, subnets=3)
    rows = read_results(results)
    assert len(rows) == 3 and rows[0]["reference"] and first["reference_rank"] in (1, 2, 3)
    calls = []
    real = SubnetEvaluator.__call__
    monkeypatch.setattr(SubnetEvaluator, "__call__", lambda self, arch: calls.append(arch) or real(self, arch))
    summary = search(supernet_ckpt, results, strategy=strategy, subnets=6)
    rows = read_results(results)
    keys = [(tuple(r["channels"]), tuple(r["depths"])) for r in rows]
    assert len(calls) == 3 and len(rows) == 6 and len(set(keys)) == 6
    assert summary["evaluated"] == 6 and summary["best"]["top1"] == max(r["top1"] for r in rows)
    assert all(0 <= r["top1"] <= 100 and r["params"] > 0 for r in rows)


def test_search_caps_at_the_space_size(tmp_path, supernet_ckpt):
    summary = search(supernet_ckpt, tmp_path / "all.jsonl", strategy="random", subnets=10_000)
    assert summary["evaluated"] == SearchSpace.from_dict(TINY_SPACE).size == 16


def test_plot_is_written_from_a_results_file(tmp_path):
    rng = random.Random(0)
    space = SearchSpace.from_dict(PAPER_SPACE)
    path = tmp_path / "results.jsonl"
    rows = [{**space.sample(rng).to_dict(), "top1": 70 + 10 * rng.random(), "reference": False} for _ in range(30)]
    rows.append({**space.reference.to_dict(), "top1": 77.0, "reference": True})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["nas", "plot", str(path), "--out", str(tmp_path / "figure3")]) == 0
    png, svg = tmp_path / "figure3.png", tmp_path / "figure3.svg"
    import matplotlib.image

    assert matplotlib.image.imread(png).shape[0] > 300 and "<svg" in svg.read_text()[:500]
    assert main(["nas", "plot", str(tmp_path / "empty.jsonl")]) == 2


def test_nas_train_refuses_a_plain_model(tmp_path, nas_teacher):
    with pytest.raises(ConfigError, match="trains model.name=resnet_supernet"):
        SupernetTrainer(fast_config(tmp_path))


def test_every_subnet_is_calibrated_on_the_same_unaugmented_batches(supernet_ckpt):
    a = SubnetEvaluator(supernet_ckpt, calibration_batches=2, device="cpu", seed=0)
    b = SubnetEvaluator(supernet_ckpt, calibration_batches=2, device="cpu", seed=0)
    assert len(a.calibration) == 2
    assert all(torch.equal(x, y) for x, y in zip(a.calibration, b.calibration, strict=True))
    from sakd.data import build_dataset

    plain = build_dataset("synthetic", root="data", augment=False, image_size=12).train
    rows = {tuple(plain[i][0].flatten().tolist()) for i in range(len(plain))}
    assert all(tuple(x.flatten().tolist()) in rows for x in a.calibration[0])  # no augmentation
    arch = a.space.smallest()
    assert a(arch)["top1"] == a(arch)["top1"] == b(arch)["top1"]  # no noise between evaluations


def test_tpe_is_told_the_reference_subnet_first(tmp_path, supernet_ckpt, monkeypatch):
    import optuna

    told = []
    real = optuna.study.Study.add_trial
    monkeypatch.setattr(
        optuna.study.Study, "add_trial", lambda self, trial: told.append(trial.params) or real(self, trial)
    )
    search(supernet_ckpt, tmp_path / "tpe.jsonl", strategy="tpe", subnets=2)
    ref = TINY_SPACE["reference"]
    assert told[0] == {"channels1": ref["channels"][0], "depth1": ref["depths"][0],
                       "channels2": ref["channels"][1], "depth2": ref["depths"][1]}


def test_materialised_subnet_keeps_the_supernets_dtype():
    net = create_model("resnet_supernet", spiking=True, num_classes=5, timesteps=2, space=TINY_SPACE).double()
    sub = net.materialize(net.space.smallest())
    assert {p.dtype for p in sub.state_dict().values() if p.is_floating_point()} == {torch.float64}


def test_sandwich_step_sums_the_subnets_losses(tmp_path, nas_teacher):
    trainer = SupernetTrainer(_supernet_config(tmp_path, nas_teacher, "nas.sampling=sandwich", "nas.sandwich_random=1"))
    step, space = trainer.student_step, trainer.parts.model.space
    x, y = next(iter(trainer.parts.train_loader))
    with torch.no_grad():
        t_logits = trainer.parts.teacher(x)
        t_feats = trainer.parts.teacher_taps(x)[1]
        archs = [space.largest(), space.smallest()]
        step.archs = archs
        total = step(x, y, t_logits, t_feats, 1.0, True)[0]
        singles = []
        for arch in archs:
            step.archs = [arch]
            singles.append(step(x, y, t_logits, t_feats, 1.0, True)[0])
    assert torch.allclose(total, singles[0] + singles[1], rtol=1e-6)
