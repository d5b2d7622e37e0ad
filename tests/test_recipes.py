"""Every packaged recipe loads, builds, and runs one optimiser step on tiny synthetic data.

Recipes that differ only in numbers (data set, learning rate, epochs, loss weights, a network's
depth) run the same code: one step runs for each distinct kind (:func:`code_path`), every recipe
is loaded and validated (``test_config.py``); every depth is built and checked in ``test_models.py``.
Weights a recipe names (its teacher's run, a torchvision/timm hub name) are replaced
by locally saved ANN state dicts of the same architecture, as a user without internet would do.
"""

import dataclasses
import functools
import inspect
import json

import pytest
import torch

from sakd.data import DATASETS
from sakd.models import create_model
from sakd.training import Trainer, load_config
from sakd.training.config import packaged_configs

# training recipes (a conversion recipe, convert.method set, is `sakd convert`'s: tests/test_qcfs.py)
RECIPES = [c for c in packaged_configs()
           if not c.startswith(("presets/", "quickstart/", "nas/")) and not load_config(c).convert.method]


@functools.cache
def modules_of(name: str, stem: str) -> tuple[str, ...]:
    """The module classes a model is made of (built on the meta device: no weights): ResNet-50,
    -101 and -152 run the same code, with more blocks."""
    return tuple(sorted({type(m).__qualname__ for m in _meta_model(name, stem).modules()}))


@functools.cache
def _meta_model(name: str, stem: str):
    with torch.device("meta"):
        return create_model(name, spiking=True, num_classes=10, stem=stem)


def size(name: str) -> int:
    """How many modules a recipe's networks have: each kind runs its smallest recipe."""
    cfg = load_config(name)
    nets = {cfg.model.name} | ({cfg.distill.teacher.name} if cfg.distill.teacher.name else set())
    return sum(len(list(_meta_model(n, cfg.model.stem).modules())) for n in nets if not cfg.model.options)


def code_path(name: str) -> str:
    """A recipe's config with every setting that only changes a number reduced to whether it is on,
    and each network to the module classes it is made of."""
    d = dataclasses.asdict(load_config(name))
    for section in ("run", "nas"):
        d.pop(section)
    model = d["model"]
    model["name"] = modules_of(model["name"], model["stem"]) if not model["options"] else model["name"]
    teacher = d["distill"]["teacher"]
    if teacher["name"]:
        teacher["name"] = modules_of(teacher["name"], model["stem"])
    d["data"] = "frames" in inspect.signature(DATASETS.get(d["data"]["name"])).parameters  # event frames or images
    model["timesteps"] = None  # a number: the code is the same at every T
    d["optim"] = {k: d["optim"][k] for k in ("name", "scheduler")}
    distill = d["distill"]
    for key in ("alpha", "beta", "gamma"):
        distill[key] = bool(distill[key])
    distill["tau"] = None
    distill["beta_schedule"] = [bool(s["beta"]) for s in distill["beta_schedule"]]
    distill["teacher"]["weights"] = bool(distill["teacher"]["weights"])
    distill["features"]["weights"] = bool(distill["features"]["weights"])
    return json.dumps(d, sort_keys=True)


KINDS: dict[str, str] = {}  # code path -> the smallest recipe of that kind
for _name in sorted(RECIPES, key=lambda n: (size(n), n)):
    KINDS.setdefault(code_path(_name), _name)
TINY = [
    "data.name=synthetic", "data.options={image_size: 16, train_size: 2, test_size: 2}",
    "data.batch_size=2", "data.eval_batch_size=2", "data.num_workers=0", "optim.epochs=1",
    "optim.warmup_epochs=0", "optim.cooldown_epochs=0", "run.device=cpu", "run.progress=false",
]


@pytest.fixture(scope="module")
def local_weights(tmp_path_factory):
    cache, folder = {}, tmp_path_factory.mktemp("weights")

    def get(name: str, stem: str, neuron=None) -> str:
        """An ANN's weights (with the neuron's own parameters, QCFS's thresholds, where it has some)."""
        key = (name, stem, repr(neuron))
        if key not in cache:
            path = folder / f"{name}-{stem}-{len(cache)}.pth"
            torch.save(create_model(name, spiking=False, num_classes=10, stem=stem, neuron=neuron).state_dict(), path)
            cache[key] = str(path)
        return cache[key]

    return get


def test_the_recipes_cover_the_paper():
    names = set(RECIPES)
    for ds in ("cifar10", "cifar100"):
        for m in ("resnet18", "resnet19", "resnet34", "resnet50", "resnet101", "resnet152"):
            assert {f"{ds}/{m}_ann", f"{ds}/{m}_snn", f"{ds}/{m}_sakd"} <= names
    assert sum(n.startswith("cifar100/ablations/position_") for n in names) == 16  # Table 10
    assert sum(n.startswith("cifar100/ablations/beta_") for n in names) == 7  # Table 8
    assert (
        sum(n.startswith("imagenet/ablations/") and "torchvision" not in n and "teacher" not in n for n in names) == 18
    )


@pytest.mark.parametrize("name", sorted(KINDS.values()))
def test_recipe_runs_one_step(name, tmp_path, local_weights):
    cfg = load_config(name)
    extra = [f"run.output_dir={tmp_path}"]
    if cfg.distill.teacher.weights:
        arch = cfg.distill.teacher.name or cfg.model.name
        extra.append(f"distill.teacher.weights={local_weights(arch, cfg.model.stem, cfg.model.neuron)}")
    if cfg.model.init and cfg.model.init != "teacher":
        extra.append(f"model.init={local_weights(cfg.model.name, cfg.model.stem, cfg.model.neuron)}")
    trainer = Trainer(load_config(name, TINY + extra))
    before = {k: v.clone() for k, v in trainer.parts.model.state_dict().items()}
    record = trainer.train_epoch()
    assert record["train/loss"] == record["train/loss"]  # finite, not NaN
    changed = [k for k, v in trainer.parts.model.state_dict().items() if not torch.equal(v, before[k])]
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
        trainer = SupernetTrainer(
            load_config(name, TINY + [f"run.output_dir={tmp_path}", f"distill.teacher.weights={weights}"])
        )
        record = trainer.train_epoch()
        assert record["train/feature_kd"] > 0 and record["train/logit_kd"] >= 0
