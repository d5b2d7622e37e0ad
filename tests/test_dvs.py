"""DVS-CIFAR10: files in the real on-disk layout, decoded and framed through the user's code path."""

import numpy as np
import pytest
import torch

from sakd.data import build_dataset
from sakd.data.dvs_cifar10 import CLASSES
from sakd.data.events import EventFileError, events_to_frames, frame_index, read_aedat2_cifar10dvs, read_events
from sakd.errors import ConfigError, DatasetNotFoundError


def write_aedat2(path, t, x, y, p):
    """Write events (in the loader's orientation) as an original CIFAR10-DVS AEDAT 2.0 file."""
    x_raw, y_raw, p_raw = 127 - np.asarray(y), 127 - np.asarray(x), 1 - np.asarray(p)
    address = (y_raw.astype(np.uint32) << 8) | (x_raw.astype(np.uint32) << 1) | p_raw.astype(np.uint32)
    body = np.empty(2 * len(address), dtype=">u4")
    body[0::2], body[1::2] = address, np.asarray(t, dtype=np.uint32)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"#!AER-DAT2.0\r\n# This is a raw AE data file created by sakd's tests\r\n" + body.tobytes())


def random_events(rng, n, label):
    t = np.sort(rng.integers(0, 1_000_000, n))
    # class-dependent location, so a model can learn the classes
    x = np.clip(rng.normal(12 * label + 10, 6, n), 0, 127).astype(int)
    y = np.clip(rng.normal(64, 20, n), 0, 127).astype(int)
    return t, x, y, rng.integers(0, 2, n)


def make_dataset(root, per_class=10, n=400, classes=CLASSES, fmt="aedat"):
    rng = np.random.default_rng(0)
    for label, c in enumerate(classes):
        for i in range(per_class):
            t, x, y, p = random_events(rng, n, label)
            path = root / c / f"cifar10_{c}_{i}.{fmt}"
            if fmt == "aedat":
                write_aedat2(path, t, x, y, p)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                np.savez(path, t=t, x=x, y=y, p=p)


def test_aedat2_decoder_round_trips_the_binary_layout(tmp_path):
    t, x, y, p = [0, 5, 9, 20], [0, 127, 3, 64], [127, 0, 100, 64], [1, 0, 0, 1]
    write_aedat2(tmp_path / "a.aedat", t, x, y, p)
    ev = read_aedat2_cifar10dvs(tmp_path / "a.aedat")
    assert [ev[k].tolist() for k in ("t", "x", "y", "p")] == [t, x, y, p]
    # the raw bits of event 0 (x'=0, y'=127, p'=1): sensor x = 127-y' = 0, sensor y = 127-x' = 127,
    # sensor polarity 1-p' = 0, packed as y<<8 | x<<1 | p and written big-endian, then its timestamp
    raw = (tmp_path / "a.aedat").read_bytes().split(b"\r\n")[-1]
    assert raw[:8] == (127 << 8).to_bytes(4, "big") + (0).to_bytes(4, "big")


def test_frames_by_event_count_and_by_time_hand_computed():
    ev = {"t": np.array([0, 1, 2, 3, 4, 100]), "x": np.array([0, 1, 0, 1, 2, 2]),
          "y": np.array([0, 0, 0, 0, 1, 1]), "p": np.array([1, 0, 1, 1, 0, 0])}
    assert frame_index(ev["t"], 2, "number").tolist() == [0, 0, 0, 1, 1, 1]
    assert frame_index(ev["t"], 2, "time").tolist() == [0, 0, 0, 0, 0, 1]  # 101 us in 2 bins
    f = events_to_frames(ev, 2, "number", height=2, width=3)
    assert f.shape == (2, 2, 2, 3)
    assert f[0, 1, 0, 0] == 2 and f[0, 0, 0, 1] == 1 and f[1, 1, 0, 1] == 1 and f[1, 0, 1, 2] == 2
    assert f.sum() == 6 and f[0].sum() == 3 and f[1].sum() == 3
    g = events_to_frames(ev, 2, "time", height=2, width=3)
    assert g[0].sum() == 5 and g[1, 0, 1, 2] == 1


def test_dataset_shapes_split_counts_and_cache(tmp_path, monkeypatch):
    make_dataset(tmp_path, per_class=10, n=400)
    data = build_dataset("dvs_cifar10", root=str(tmp_path), augment=False, image_size=128)
    assert (len(data.train), len(data.test), data.num_classes, data.in_channels, data.frames) == (90, 10, 10, 2, 4)
    assert {p.name for p, _ in data.test.items if _ == 0} == {"cifar10_airplane_0.aedat"}  # first tenth tests
    x, label = data.train[0]
    path = data.train.items[0][0]
    ev = read_events(path)
    assert x.shape == (4, 2, 128, 128) and label == 0
    # per frame and polarity, the counts equal the events of that quarter of the stream
    for k in range(4):
        part = slice(k * 100, (k + 1) * 100)
        for pol in (0, 1):
            assert x[k, pol].sum().item() == int((ev["p"][part] == pol).sum())
    assert data.train.cache_path(path).is_file()

    def no_decoding(*a, **k):
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr("sakd.data.dvs_cifar10.read_events", no_decoding)
    assert torch.equal(data.train[0][0], x)


def test_resize_crop_and_time_first_batches(tmp_path):
    make_dataset(tmp_path, per_class=3)
    data = build_dataset("dvs_cifar10", root=str(tmp_path))  # 48x48, random crop
    x, _ = data.train[0]
    assert x.shape == (4, 2, 48, 48)
    raw = data.test[0][0]
    assert raw.shape == (4, 2, 48, 48) and torch.equal(raw, data.test[0][0])  # test: no augmentation
    batch = data.collate_fn([data.train[i] for i in range(5)])
    assert batch[0].shape == (4, 5, 2, 48, 48) and batch[1].shape == (5,)


def test_npz_release_reads_like_aedat(tmp_path):
    make_dataset(tmp_path / "a", per_class=2, n=50)
    make_dataset(tmp_path / "b", per_class=2, n=50, fmt="npz")
    a = build_dataset("dvs_cifar10", root=str(tmp_path / "a"), augment=False)
    b = build_dataset("dvs_cifar10", root=str(tmp_path / "b"), augment=False)
    assert torch.equal(a.train[3][0], b.train[3][0])


def test_missing_class_and_corrupt_file_are_named(tmp_path):
    make_dataset(tmp_path, per_class=2, classes=CLASSES[:9])
    with pytest.raises(DatasetNotFoundError, match=r"lacks the class folder\(s\) \['truck'\]"):
        build_dataset("dvs_cifar10", root=str(tmp_path))
    with pytest.raises(DatasetNotFoundError, match="no folder"):
        build_dataset("dvs_cifar10", root=str(tmp_path / "nowhere"))
    make_dataset(tmp_path, per_class=2, classes=CLASSES[9:])
    bad = tmp_path / "truck" / "cifar10_truck_1.aedat"
    bad.write_bytes(bad.read_bytes()[:-3])
    data = build_dataset("dvs_cifar10", root=str(tmp_path))
    with pytest.raises(EventFileError, match="cifar10_truck_1.aedat: .* not a whole number of 8-byte events"):
        data.train[len(data.train) - 1]
    with pytest.raises(ConfigError, match="split_by"):
        build_dataset("dvs_cifar10", root=str(tmp_path), split_by="space")


def test_short_sakd_step_on_event_frames(tmp_path):
    from conftest import fast_config
    from sakd.training import Trainer, train

    make_dataset(tmp_path / "dvs", per_class=3, n=300)
    data = ["data.name=dvs_cifar10", f"data.root={tmp_path / 'dvs'}", "data.options={image_size: 32}",
            "data.batch_size=10", "model.name=vgg11", "model.timesteps=4", "optim.epochs=1"]
    teacher = train(fast_config(tmp_path, *data, "model.spiking=false"))
    trainer = Trainer(fast_config(tmp_path, *data, f"distill.teacher.weights={teacher['run_dir']}/last.pt",
                                  "distill.alpha=1", "distill.beta=1", "distill.gamma=1"))
    record = trainer.train_epoch()
    assert record["train/feature_kd"] > 0 and record["train/logit_kd"] >= 0
    assert 0 <= record["test/firing_rate"] < 1  # BN running stats are barely trained after 2 steps
    from sakd.analysis import FiringRateMonitor

    x, _ = next(iter(trainer.train_loader))
    assert x.shape == (4, 10, 2, 32, 32)  # time-first frames, one per timestep
    with FiringRateMonitor(trainer.model) as monitor, torch.no_grad():
        trainer.model.train()(x)
    assert 0 < monitor.mean_rate() < 1
    with pytest.raises(ConfigError, match="gives 4 frames per sample but model.timesteps=2"):
        Trainer(fast_config(tmp_path, *data, "model.timesteps=2"))
