from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import fake_mnist
from sakd.data import build_dataset
from sakd.errors import ConfigError, DatasetNotFoundError


def test_digits_split_is_fixed_stratified_and_standardised():
    a, b = build_dataset("digits", root="unused"), build_dataset("digits", root="unused", augment=False)
    assert (len(a.train), len(a.test)) == (1437, 360)
    assert torch.equal(a.test.labels, b.test.labels)
    counts = torch.bincount(a.test.labels, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # stratified: ~36 per class
    assert abs(b.train.images.mean().item()) < 1e-4 and abs(b.train.images.std().item() - 1) < 1e-3
    assert a.train[0][0].shape == (1, 16, 16) and (a.num_classes, a.in_channels) == (10, 1)


def _image_folder(root, splits=("train", "val"), classes=("cat", "dog"), per_class=3, shape=(40, 48)):
    rng = np.random.default_rng(0)
    for split in splits:
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 255, (*shape, 3), dtype=np.uint8)).save(root / split / c / f"{i}.png")


def test_imagefolder_pipeline(tmp_path):
    _image_folder(tmp_path)
    data = build_dataset("imagenet", root=str(tmp_path), image_size=32, resize=36)
    assert data.num_classes == 2 and len(data.train) == 6 and len(data.test) == 6
    x, y = data.train[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    assert data.test[0][0].shape == (3, 32, 32)
    assert torch.equal(data.test[0][0], data.test[0][0])  # val transform is deterministic


@pytest.mark.parametrize("shape, size", [((32, 32), 32), ((40, 48), 40), ((300, 400), 224)])
def test_imagefolder_takes_the_images_own_size_by_default(tmp_path, shape, size):
    """No silent upscaling: small images train at their own size (the CIFAR recipe: padded random
    crop), large ones at ImageNet's 224."""
    _image_folder(tmp_path, shape=shape, per_class=1)
    data = build_dataset("imagefolder", root=str(tmp_path))
    assert data.image_size == size
    assert data.train[0][0].shape == data.test[0][0].shape == (3, size, size)
    ops = [type(t).__name__ for t in data.train.transform.transforms]
    assert ("RandomCrop" if size <= 64 else "RandomResizedCrop") in ops
    assert build_dataset("imagefolder", root=str(tmp_path), image_size=24).train[0][0].shape == (3, 24, 24)


def test_imagefolder_errors(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"no folder .*/train.*ImageFolder layout"):
        build_dataset("imagenet", root=str(tmp_path))
    _image_folder(tmp_path / "a")
    (tmp_path / "a" / "val" / "dog").rename(tmp_path / "a" / "val" / "wolf")
    with pytest.raises(DatasetNotFoundError, match="train and val class folders differ"):
        build_dataset("imagefolder", root=str(tmp_path / "a"))
    _image_folder(tmp_path / "b", per_class=1)
    with pytest.raises(ConfigError, match="augment_style must be auto, small or imagenet"):
        build_dataset("imagefolder", root=str(tmp_path / "b"), augment_style="cifar")
    with pytest.raises(ConfigError, match="image_size must be auto or a positive whole number"):
        build_dataset("imagefolder", root=str(tmp_path / "b"), image_size="big")


def test_unknown_dataset_and_option():
    with pytest.raises(ConfigError, match="unknown data set 'cifar1000'.*cifar100"):
        build_dataset("cifar1000", root=".")
    with pytest.raises(ConfigError, match="takes no option.*'_label'|takes no option"):
        build_dataset("imagenet", root=".", _label="x")


# -- MNIST, Fashion-MNIST, KMNIST ---------------------------------------------------------------------
@pytest.mark.parametrize("gz, layout", [(True, "flat"), (False, "torchvision")])
def test_mnist_family_reads_idx_files_in_either_layout(tmp_path, gz, layout):
    folder = tmp_path if layout == "flat" else tmp_path / "FashionMNIST" / "raw"
    parts = fake_mnist(folder, gz)
    bundle = build_dataset("fashion_mnist", root=str(tmp_path), augment=False)
    assert (bundle.num_classes, bundle.in_channels, bundle.image_size) == (10, 1, 28)
    assert len(bundle.train) == 12 and len(bundle.test) == 6
    images, labels = parts["t10k"]
    expected = (images[3].float() / 255 - 0.2860) / 0.3530  # Fashion-MNIST's usual normalisation
    x, y = bundle.test[3]
    assert torch.allclose(x[0], expected) and y == labels[3]


def test_idx_reader_agrees_with_torchvisions(tmp_path):
    from torchvision.datasets.mnist import read_image_file, read_label_file

    from sakd.data.mnist import read_idx

    fake_mnist(tmp_path, gz=False)
    assert torch.equal(
        read_idx(tmp_path / "train-images-idx3-ubyte"), read_image_file(str(tmp_path / "train-images-idx3-ubyte"))
    )
    assert torch.equal(
        read_idx(tmp_path / "t10k-labels-idx1-ubyte").long(), read_label_file(str(tmp_path / "t10k-labels-idx1-ubyte"))
    )


def test_mnist_family_options_and_errors(tmp_path):
    fake_mnist(tmp_path / "KMNIST" / "raw", gz=True)
    bundle = build_dataset("kmnist", root=str(tmp_path), image_size=16)
    x, _ = bundle.train[0]
    assert x.shape == (1, 16, 16) and bundle.image_size == 16
    with pytest.raises(DatasetNotFoundError, match=r"mnist not found: no train-images-idx3-ubyte, .* in .*MNIST/raw"):
        build_dataset("mnist", root=str(tmp_path))
    (tmp_path / "KMNIST" / "raw" / "t10k-labels-idx1-ubyte.gz").unlink()
    import gzip

    with gzip.open(tmp_path / "KMNIST" / "raw" / "t10k-labels-idx1-ubyte.gz", "wb") as f:
        f.write(bytes([0, 0, 8, 1, 0, 0, 0, 9, 1, 2]))
    with pytest.raises(DatasetNotFoundError, match="is truncated: its header says \\[9\\]"):
        build_dataset("kmnist", root=str(tmp_path))


FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(not FASHION.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_from_the_debian_package():
    bundle = build_dataset("fashion_mnist", root=str(FASHION), augment=False)
    assert len(bundle.train) == 60000 and len(bundle.test) == 10000
    assert (
        bundle.train.labels.bincount().tolist() == [6000] * 10 and bundle.test.labels.bincount().tolist() == [1000] * 10
    )
    assert abs(bundle.train.images.mean().item()) < 0.01 and abs(bundle.train.images.std().item() - 1) < 0.01


@pytest.mark.parametrize("name", ["resnet19", "resnet18", "sew_resnet18", "vgg11", "resnet_tiny"])
def test_every_model_family_takes_one_channel_28x28_images(name):
    from sakd.models import create_model

    model = create_model(name, spiking=True, num_classes=10, timesteps=2, in_channels=1)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_the_transformers_policy_runs_on_training_images_only(tmp_path):
    """randaugment [N, M] and random_erasing p (data.options): RandAugment on the image after the
    crop and flip, erasing on the normalised tensor, nothing on the test split; each sample's draws
    are the seeded ones (the same key, the same image)."""
    from sakd.data.seeded import SeededSamples

    _image_folder(tmp_path, shape=(32, 32))
    data = build_dataset("imagefolder", root=str(tmp_path), randaugment=[2, 9], random_erasing=1.0)
    ops = [type(t).__name__ for t in data.train.transform.transforms]
    assert ops.index("RandomHorizontalFlip") < ops.index("RandomApply") < ops.index("ToDtype")
    assert ops[-2:] == ["Normalize", "RandomErasing"]
    policy = [t for t in data.train.transform.transforms if type(t).__name__ == "RandomApply"]
    assert len(policy) == 2 and all(t.p == 0.5 for t in policy)  # timm's n2: two operations, each at odds 0.5
    (op,) = policy[0].transforms
    assert (op.num_ops, op.magnitude, op.num_magnitude_bins) == (1, 9, 11)  # timm's m9: 9/10 of each range
    assert "RandomApply" not in [type(t).__name__ for t in data.test.transform.transforms]
    erased = data.train[0][0]
    assert (erased == 0).flatten(1).all(0).sum() > 0  # a rectangle erased (zeros across channels)
    seeded = SeededSamples(data.train, seed=3)
    assert torch.equal(seeded[(0, 1)][0], seeded[(0, 1)][0]) and not torch.equal(seeded[(0, 1)][0], seeded[(1, 1)][0])
    for bad in (9, [1, 11], [True, 9]):
        with pytest.raises(ConfigError, match=r"randaugment must be \[num_ops, magnitude\]"):
            build_dataset("imagefolder", root=str(tmp_path), randaugment=bad)
    for bad in (25, "0.25"):
        with pytest.raises(ConfigError, match="random_erasing is a probability"):
            build_dataset("imagefolder", root=str(tmp_path), random_erasing=bad)


def test_qcfs_policy_autoaugment_then_cutout_on_cifar_training_images():
    """autoaugment: cifar10 (torchvision's learned CIFAR-10 policy after the crop and flip) and
    cutout: 16 (a 16x16 square of zeros on the normalised tensor, clipped at the border); the test
    split gets neither; bad values are one line."""
    from sakd.data.augmentation import Cutout
    from sakd.data.cifar import _transforms

    train = [type(t).__name__ for t in _transforms("cifar10", True, True, autoaugment="cifar10", cutout=16).transforms]
    assert train == ["ToImage", "RandomCrop", "RandomHorizontalFlip", "AutoAugment", "ToDtype", "Normalize", "Cutout"]
    test = _transforms("cifar10", False, True, autoaugment="cifar10", cutout=16).transforms
    assert [type(t).__name__ for t in test] == ["ToImage", "ToDtype", "Normalize"]  # the test split: neither
    ones = torch.ones(3, 32, 32)
    torch.manual_seed(0)
    holes = [Cutout(16)(ones) == 0 for _ in range(200)]
    for hole in holes:
        assert hole.all(0).sum() == hole.any(0).sum()  # the same square in every channel
        rows, cols = hole[0].any(1).sum().item(), hole[0].any(0).sum().item()
        assert hole[0].sum() == rows * cols and 8 <= rows <= 16 and 8 <= cols <= 16  # a rectangle, clipped
    assert any(h[0].sum() == 256 for h in holes) and any(h[0].sum() < 256 for h in holes)
    for bad, message in ((dict(autoaugment="cifar"), "autoaugment must be one of"), (dict(cutout=-1), "cutout is a")):
        with pytest.raises(ConfigError, match=message):
            build_dataset("cifar10", root=str(Path("/nowhere")), **bad)


def test_mixup_mixes_images_and_one_hot_labels_by_one_drawn_lambda():
    from sakd.data.augmentation import mix
    from sakd.randomness import step_draws

    torch.manual_seed(0)
    x, y = torch.randn(6, 3, 4, 4), torch.arange(6)  # one class per sample: the labels show the permutation
    with step_draws(0, 1, 2):
        mixed, target = mix(x, y, 6, mixup=0.5)
    with step_draws(0, 1, 2):
        again = mix(x, y, 6, mixup=0.5)
    assert torch.equal(mixed, again[0]) and torch.equal(target, again[1])  # the step's draws
    assert torch.allclose(target.sum(1), torch.ones(6))
    diagonal = target.diagonal()  # λ, or 1 where the permutation keeps a sample in place
    lam = diagonal.min().item()
    assert 0 < lam < 1 and all(v == 1 or abs(v - lam) < 1e-6 for v in diagonal.tolist())  # one λ (timm's mode=batch)
    perm = torch.where(diagonal == 1, torch.arange(6), (target - lam * torch.eye(6)).argmax(1))
    assert sorted(perm.tolist()) == list(range(6))
    assert torch.allclose(mixed, lam * x + (1 - lam) * x[perm], atol=1e-6)
    frames, _ = mix(x.unsqueeze(0).expand(2, -1, -1, -1, -1), y, 6, mixup=0.5)  # [T, B, ...]: mixes samples
    assert frames.shape == (2, 6, 3, 4, 4) and torch.equal(frames[0], frames[1])
    images = torch.arange(6.0)[:, None, None, None].expand(6, 1, 8, 8).clone()  # image i is all i
    with step_draws(0, 1, 3):  # CutMix: a box of another image pasted in; λ is the area kept
        cut, target = mix(images, y, 6, mixup=0.0, cutmix=1.0)
    diagonal = target.diagonal()
    lam = diagonal.min().item()
    assert 0 < lam < 1
    for i in range(6):
        j = i if diagonal[i] == 1 else int((target[i] - lam * torch.eye(6)[i]).argmax())
        assert set(cut[i].unique().tolist()) <= {float(i), float(j)}
        if j != i:
            assert abs((cut[i] == j).float().mean().item() - (1 - lam)) < 1e-6


def test_an_unreadable_image_is_named_before_any_run_folder_or_skipped_with_a_count(tmp_path, capsys):
    """A truncated image: ``error`` names the file in one line (exit 2) and leaves no run folder;
    ``skip`` trains without it, with a warning naming it and a count; an empty class folder is named
    with its split's path."""
    from sakd.cli import main
    from sakd.data.imagefolder import Images
    from sakd.errors import BadDataError

    _image_folder(tmp_path / "images", per_class=4, shape=(16, 16))
    bad = tmp_path / "images" / "train" / "dog" / "2.png"
    bad.write_bytes(bad.read_bytes()[:60])  # truncated
    with pytest.raises(BadDataError, match=rf"1 image\(s\) of the train split cannot be read: {bad} \("):
        build_dataset("imagefolder", root=str(tmp_path / "images"))
    runs = tmp_path / "runs"
    args = [
        "train",
        "--config",
        "quickstart/snn",
        "data.name=imagefolder",
        f"data.root={tmp_path / 'images'}",
        "model.name=resnet_tiny",
        "optim.epochs=1",
        f"run.output_dir={runs}",
        "run.device=cpu",
        "data.num_workers=0",
        "data.batch_size=4",
    ]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(bad) in err and "data.options.bad_files=skip" in err
    assert not runs.exists() or not list(runs.iterdir())
    with pytest.warns(RuntimeWarning) as caught:
        data = build_dataset("imagefolder", root=str(tmp_path / "images"), bad_files="skip")
    said = [str(w.message) for w in caught]
    assert any(m.startswith(f"{bad}: cannot read the image") for m in said)
    assert "imagefolder: skipped 1 of 8 images of the train split that cannot be read" in said
    assert len(data.train) == 7 and str(bad) not in [p for p, _ in data.train.samples]
    assert main([*args, "data.options={bad_files: skip}"]) == 0
    with pytest.raises(ConfigError, match="bad_files must be one of error, skip"):
        build_dataset("imagefolder", root=str(tmp_path / "images"), bad_files="ignore")

    # a folder too large to check at start: the image is named when it is read
    folder = Images(tmp_path / "images" / "train", "train", "imagefolder", "error")
    with pytest.raises(BadDataError, match=rf"^{bad}: cannot read the image \(.*\); fix or remove it"):
        folder[[p for p, _ in folder.samples].index(str(bad))]
    skipping = Images(tmp_path / "images" / "train", "train", "imagefolder", "skip")
    i = [p for p, _ in skipping.samples].index(str(bad))
    with pytest.warns(RuntimeWarning, match="the next image read in its place"):
        assert skipping[i][1] == skipping.samples[i + 1][1]

    (tmp_path / "images" / "val" / "cat").rename(tmp_path / "images" / "val" / "cow")
    (tmp_path / "images" / "val" / "cat").mkdir()
    for f in (tmp_path / "images" / "val" / "cow").iterdir():
        f.rename(tmp_path / "images" / "val" / "dog" / f"cow{f.name}")
    (tmp_path / "images" / "val" / "cow").rmdir()
    with pytest.raises(DatasetNotFoundError, match=rf"the val split {tmp_path / 'images' / 'val'}: .*cat"):
        build_dataset("imagefolder", root=str(tmp_path / "images"), bad_files="skip")


def test_a_bad_file_in_a_loader_worker_is_still_one_line():
    """Raised in a DataLoader worker, a sakd error keeps its one line (PyTorch re-raises it with the
    worker's traceback as its text)."""
    from torch.utils.data import DataLoader, Dataset

    from sakd.errors import BadDataError

    class Broken(Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            raise BadDataError(f"/data/{i}.png: cannot read the image (truncated)")

    with pytest.raises(BadDataError) as caught:
        next(iter(DataLoader(Broken(), num_workers=1)))
    assert str(caught.value) == "/data/0.png: cannot read the image (truncated)"


def test_a_run_with_a_relative_data_root_is_evaluated_from_another_folder(tmp_path, monkeypatch, capsys):
    """A run trained with ``data.root=mnist`` (relative) records where its data was, absolute, so
    ``sakd eval`` from another folder finds it; an old run's relative root names the path it tried."""
    from conftest import FAST, fake_mnist
    from sakd.cli import main
    from sakd.training import load_config

    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    (work / "mnist").mkdir(parents=True)
    elsewhere.mkdir()
    fake_mnist(work / "mnist", gz=False, n_train=64, n_test=16)
    monkeypatch.chdir(work)
    args = [a for a in FAST if not a.startswith(("data.name", "data.batch_size"))]
    assert main(["train", "--config", "quickstart/snn", *args, "data.name=mnist", "data.root=mnist",
                 "data.batch_size=16", "optim.epochs=1", f"run.output_dir={tmp_path / 'runs'}", "run.name=m"]) == 0
    run = tmp_path / "runs" / "m"
    assert load_config(run / "config.yaml").data.root == str(work / "mnist")
    monkeypatch.chdir(elsewhere)
    assert main(["eval", str(run), "--device", "cpu"]) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--device", "cpu", "data.root=mnist"]) == 2  # as an older run recorded it
    err = capsys.readouterr().err
    assert str(elsewhere / "mnist") in err and f"looked for under the current folder {elsewhere}" in err
