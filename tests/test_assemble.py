"""A run is assembled from typed parts by named builders, then run: a Python user hands the
Trainer their own data set and their own student, and each builder works alone."""

import torch

from conftest import fast_config
from sakd.data import DataBundle
from sakd.data.synthetic import make_synthetic
from sakd.data.tensor_dataset import ImageTensorDataset
from sakd.models import create_model
from sakd.training import Trainer
from sakd.training.assemble import assemble, build_objective, build_splits, student_spec
from sakd.training.run_folder import Checkpoint, RunFolder


def own_data(classes: int = 4) -> DataBundle:
    """A data set a user made in memory (grey 12x12 images), not a registered one."""
    train, test = make_synthetic(512, classes, 1, 12, 0.5, seed=3), make_synthetic(128, classes, 1, 12, 0.5, seed=4)
    return DataBundle(ImageTensorDataset(*train), ImageTensorDataset(*test), num_classes=classes, in_channels=1,
                      image_size=12)


def test_a_user_hands_the_trainer_their_own_data_and_student(tmp_path):
    cfg = fast_config(tmp_path, "data.val_fraction=0.25", "optim.epochs=4")
    student = create_model("resnet_tiny", spiking=True, num_classes=4, timesteps=2, in_channels=1)
    parts = assemble(cfg, data=own_data(), model=student)
    assert parts.model is student and parts.spec == student.spec and parts.teacher is None
    assert len(parts.eval_loaders["val"].dataset) == 128 and len(parts.train_loader.dataset) == 384
    summary = Trainer(parts).fit()
    assert summary["best_top1"] > 40.0  # chance: 25%, with a standard error of 3.8 points on 128 test images
    run = RunFolder(summary["run_dir"])
    assert run.mode == "snn" and len(run.history) == 4 and "selected_top1" in run.summary()
    held = run.checkpoint()
    assert held.spec == student.spec and held.epoch == 4
    rebuilt = held.model()
    assert all(torch.equal(a, b.cpu()) for a, b in zip(rebuilt.state_dict().values(), student.state_dict().values()))


def test_each_builder_works_alone(tmp_path, teacher_ckpt):
    cfg = fast_config(tmp_path, f"distill.teacher.weights={teacher_ckpt}", "distill.beta=1", "distill.gamma=1",
                      "data.val_fraction=0.1")
    data = own_data(10)
    train, evaluation = build_splits(cfg, data, data.train)
    assert len(train) + len(evaluation["val"]) == len(data.train) and evaluation["test"] is data.test
    spec = student_spec(cfg, data)
    assert (spec.num_classes, spec.in_channels, spec.timesteps) == (10, 1, 2)
    student, teacher = spec.build(), Checkpoint.load(teacher_ckpt).model()
    objective, s_taps, t_taps = build_objective(cfg, student, teacher)
    assert list(objective.terms) == ["ce", "feature_kd", "logit_kd"] and s_taps.channels == t_taps.channels
