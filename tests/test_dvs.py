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


def test_aedat2_decoder_reads_a_fixed_byte_level_sample(tmp_path):
    # Built by hand from the AEDAT 2.0 / DVS128 specification, not by the test writer above:
    # '#' header lines, then per event a big-endian uint32 address and a big-endian uint32
    # timestamp (us); address bit 0 = polarity, bits 1-7 = x, bits 8-14 = y.
    sample = (
        b"#!AER-DAT2.0\r\n# a comment line\r\n"
        b"\x00\x00\x01\x01" b"\x00\x00\x00\x10"  # y=1,   x=0,   p=1, t=16
        b"\x00\x00\x7f\xfe" b"\x00\x00\x00\x20"  # y=127, x=127, p=0, t=32
        b"\x00\x00\x0a\x15" b"\x00\x00\x01\x00"  # y=10,  x=10,  p=1, t=256
    )
    (tmp_path / "s.aedat").write_bytes(sample)
    ev = read_aedat2_cifar10dvs(tmp_path / "s.aedat")
    # re-oriented as the SNN literature's loaders do: x' = 127 - y, y' = 127 - x, p' = 1 - p
    assert ev["t"].tolist() == [16, 32, 256]
    assert ev["x"].tolist() == [126, 0, 117]
    assert ev["y"].tolist() == [127, 0, 117]
    assert ev["p"].tolist() == [0, 1, 0]


def test_frames_follow_spikingjellys_split_hand_computed():
    # 7 events in 3 frames by count: N // F = 2 per frame, the remainder (3) in the last frame
    t = np.array([0, 1, 2, 3, 4, 5, 60])
    assert frame_index(t, 3, "number").tolist() == [0, 0, 1, 1, 2, 2, 2]
    # by time: dt = (60 - 0) // 3 = 20 us; t < 20 -> 0, t >= 40 -> 2
    assert frame_index(t, 3, "time").tolist() == [0, 0, 0, 0, 0, 0, 2]
    assert frame_index(np.array([5, 9]), 4, "number").tolist() == [3, 3]  # N < F: all in the last
    ev = {"t": np.array([0, 1, 2, 3, 4, 100]), "x": np.array([0, 1, 0, 1, 2, 2]),
          "y": np.array([0, 0, 0, 0, 1, 1]), "p": np.array([1, 0, 1, 1, 0, 0])}
    f = events_to_frames(ev, 2, "number", height=2, width=3)
    assert f.shape == (2, 2, 2, 3)
    assert f[0, 1, 0, 0] == 2 and f[0, 0, 0, 1] == 1 and f[1, 1, 0, 1] == 1 and f[1, 0, 1, 2] == 2
    assert f.sum() == 6 and f[0].sum() == 3 and f[1].sum() == 3
    g = events_to_frames(ev, 2, "time", height=2, width=3)  # dt = 50: only t=100 is in frame 1
    assert g[0].sum() == 5 and g[1, 0, 1, 2] == 1


def test_frames_equal_spikingjellys_integration_by_number_and_by_time():
    """SpikingJelly 2.0's ``integrate_events_by_fixed_frames_number`` on the same events (sorted
    timestamps, every time window holding events, which its time split needs): equal frames. sakd
    follows it, remainder in the last frame (tonic's ``ToFrame`` drops what does not fill a frame)."""
    utils = pytest.importorskip("spikingjelly.datasets.utils")
    rng = np.random.default_rng(0)
    n, h, w = 5003, 6, 9  # 5003 = 7 x 714 + 5: a remainder for the last frame
    ev = {"t": np.sort(rng.integers(0, 100_000, n)), "x": rng.integers(0, w, n), "y": rng.integers(0, h, n),
          "p": rng.integers(0, 2, n)}
    for split in ("number", "time"):
        theirs = utils.integrate_events_by_fixed_frames_number(ev, split, 7, h, w)
        ours = events_to_frames(ev, 7, split, height=h, width=w)
        assert ours.shape == theirs.shape and np.array_equal(ours, theirs) and ours.sum() == n


def test_backward_timestamps_keep_every_event_and_warn_once(tmp_path):
    t, x, y, p = [10, 20, 15, 30, 25, 40], [1, 2, 3, 4, 5, 6], [7, 7, 7, 7, 7, 7], [0, 1, 0, 1, 0, 1]
    write_aedat2(tmp_path / "back.aedat", t, x, y, p)
    with pytest.warns(RuntimeWarning, match="2 of 6 event timestamps step backwards") as seen:
        ev = read_events(tmp_path / "back.aedat")
    assert len(seen) == 1
    assert ev["t"].tolist() == t and ev["x"].tolist() == x  # file order, nothing dropped
    assert frame_index(ev["t"], 2, "number").tolist() == [0, 0, 0, 1, 1, 1]  # file order
    assert frame_index(ev["t"], 2, "time").tolist() == [0, 0, 0, 1, 1, 1]  # dt = 15: t >= 25 -> 1
    assert events_to_frames(ev, 2, "time", height=8, width=8).sum() == 6


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

    monkeypatch.setattr("sakd.data.event_frames.read_events", no_decoding)
    assert torch.equal(data.train[0][0], x)


def test_a_truncated_or_corrupt_frame_cache_is_rebuilt(tmp_path):
    make_dataset(tmp_path, per_class=2, n=80)
    data = build_dataset("dvs_cifar10", root=str(tmp_path), augment=False)
    good = data.test[0][0]
    cached = data.test.cache_path(data.test.items[0][0])
    assert cached.parts[-4:-1] == ("v2", "T4-number-48px", "airplane")
    for damage in (lambda b: b[: len(b) // 2], lambda b: b"not a numpy file"):
        cached.write_bytes(damage(cached.read_bytes()))
        with pytest.warns(RuntimeWarning, match="decoding the events again"):
            again = data.test[0][0]
        assert torch.equal(again, good)
        assert torch.equal(torch.from_numpy(np.load(cached)), good)  # rewritten whole
    np.save(cached, np.zeros((4, 2, 8, 8), dtype=np.float32))  # a cache of other settings
    with pytest.warns(RuntimeWarning, match="expected float32"):
        assert torch.equal(data.test[0][0], good)


def test_resize_crop_and_time_first_batches(tmp_path):
    make_dataset(tmp_path, per_class=3)
    data = build_dataset("dvs_cifar10", root=str(tmp_path))  # 48x48, random crop
    x, _ = data.train[0]
    assert x.shape == (4, 2, 48, 48)
    raw = data.test[0][0]
    assert raw.shape == (4, 2, 48, 48) and torch.equal(raw, data.test[0][0])  # test: no augmentation
    batch = data.collate_fn([data.train[i] for i in range(5)])
    assert batch[0].shape == (4, 5, 2, 48, 48) and batch[1].shape == (5,)
    torch.manual_seed(0)
    still = torch.rand(1, 2, 48, 48).repeat(4, 1, 1, 1)  # four equal frames
    crops = [data.train.transform(still) for _ in range(10)]
    assert all(torch.equal(c[0], c[t]) for c in crops for t in range(4))  # one crop for every frame
    assert any(not torch.equal(c, still) for c in crops)  # and it does move the frames


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
    from sakd.neurons import FiringRateMonitor

    x, _ = next(iter(trainer.parts.train_loader))
    assert x.shape == (4, 10, 2, 32, 32)  # time-first frames, one per timestep
    with FiringRateMonitor(trainer.parts.model) as monitor, torch.no_grad():
        trainer.parts.model.train()(x)
    assert 0 < monitor.mean_rate() < 1
    with pytest.raises(ConfigError, match="gives 4 frames per sample but model.timesteps=2"):
        Trainer(fast_config(tmp_path, *data, "model.timesteps=2"))
