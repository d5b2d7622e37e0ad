"""Every packaged recipe loads, builds, and runs one optimiser step on tiny synthetic data.

Recipes that differ only in numbers (data set, learning rate, epochs, loss weights) run the same
code: one step runs for each distinct kind (:func:`code_path`), every recipe is loaded and
validated. Weights a recipe names (its teacher's run, a torchvision/timm hub name) are replaced
by locally saved ANN state dicts of the same architecture, as a user without internet would do.
"""

import dataclasses
import json

import pytest
import torch

from sakd.models import create_model
from sakd.training import Trainer, load_config
from sakd.training.config import packaged_configs

RECIPES = [c for c in packaged_configs() if not c.startswith(("presets/", "quickstart/", "nas/"))]


def code_path(name: str) -> str:
    """A recipe's config with every setting that only changes a number reduced to whether it is on."""
    d = dataclasses.asdict(load_config(name))
    for section in ("run", "nas"):
        d.pop(section)
    d["data"] = d["data"]["name"] == "dvs_cifar10"  # event frames or images
    d["optim"] = {k: d["optim"][k] for k in ("name", "scheduler")}
    distill = d["distill"]
    for key in ("alpha", "beta", "gamma"):
        distill[key] = bool(distill[key])
    distill["tau"] = None
    distill["beta_schedule"] = [bool(s["beta"]) for s in distill["beta_schedule"]]
    distill["teacher"]["weights"] = bool(distill["teacher"]["weights"])
    distill["features"]["weights"] = bool(distill["features"]["weights"])
    return json.dumps(d, sort_keys=True)


KINDS: dict[str, str] = {}  # code path -> the first recipe of that kind
for _name in RECIPES:
    KINDS.setdefault(code_path(_name), _name)
TINY = [
    "data.name=synthetic", "data.options={image_size: 16, train_size: 2, test_size: 2}",
    "data.batch_size=2", "data.eval_batch_size=2", "data.num_workers=0", "optim.epochs=1",
    "optim.warmup_epochs=0", "run.device=cpu", "run.progress=false",
]


@pytest.fixture(scope="module")
def local_weights(tmp_path_factory):
    cache, folder = {}, tmp_path_factory.mktemp("weights")

    def get(name: str, stem: str) -> str:
        if (name, stem) not in cache:
            path = folder / f"{name}-{stem}.pth"
            torch.save(create_model(name, spiking=False, num_classes=10, stem=stem).state_dict(), path)
            cache[name, stem] = str(path)
        return cache[name, stem]

    return get


def test_the_recipes_cover_the_paper():
    names = set(RECIPES)
    for ds in ("cifar10", "cifar100"):
        for m in ("resnet18", "resnet19", "resnet34", "resnet50", "resnet101", "resnet152"):
            assert {f"{ds}/{m}_ann", f"{ds}/{m}_snn", f"{ds}/{m}_sakd"} <= names
    assert sum(n.startswith("cifar100/ablations/position_") for n in names) == 16  # Table 10
    assert sum(n.startswith("cifar100/ablations/beta_") for n in names) == 7  # Table 8
    assert sum(n.startswith("imagenet/ablations/") and "torchvision" not in n and "teacher" not in n for n in names) == 18


@pytest.mark.parametrize("name", sorted(KINDS.values()))
def test_recipe_runs_one_step(name, tmp_path, local_weights):
    cfg = load_config(name)
    extra = [f"run.output_dir={tmp_path}"]
    if cfg.distill.teacher.weights:
        arch = cfg.distill.teacher.name or cfg.model.name
        extra.append(f"distill.teacher.weights={local_weights(arch, cfg.model.stem)}")
    if cfg.model.init and cfg.model.init != "teacher":
        extra.append(f"model.init={local_weights(cfg.model.name, cfg.model.stem)}")
    trainer = Trainer(load_config(name, TINY + extra))
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    record = trainer.train_epoch()
    assert record["train/loss"] == record["train/loss"]  # finite, not NaN
    changed = [k for k, v in trainer.model.state_dict().items() if not torch.equal(v, before[k])]
    assert changed, "one optimiser step changed no weight"
    if cfg.mode == "sakd":
        assert ("train/feature_kd" in record) == (cfg.distill.weights_at(0)["feature_kd"] > 0)
        assert ("train/logit_kd" in record) == (cfg.distill.gamma > 0)


def test_nas_recipes_run_one_supernet_step(tmp_path, local_weights):
    from sakd.nas.train import SupernetTrainer

    teacher = Trainer(load_config("nas/tiny_teacher", TINY + [f"run.output_dir={tmp_path}"]))
    teacher.fit()
    for name, weights in (("nas/tiny_supernet", f"{teacher.run_dir}/last.pt"),
                          ("nas/cifar100_resnet34_supernet", local_weights("resnet34", "cifar"))):
        trainer = SupernetTrainer(load_config(name, TINY + [f"run.output_dir={tmp_path}", f"distill.teacher.weights={weights}"]))
        record = trainer.train_epoch()
        assert record["train/feature_kd"] > 0 and record["train/logit_kd"] >= 0
