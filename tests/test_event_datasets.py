"""N-MNIST, N-Caltech101 and DVS-Gesture: files written in each release's format and layout, read,
framed and trained through the user's code path (no download)."""

import numpy as np
import pytest
import torch

from sakd.data import build_dataset
from sakd.data.events import EventFileError, events_to_frames, read_atis_bin
from sakd.errors import DatasetNotFoundError


def write_atis(path, t, x, y, p, overflow_after=()):
    """Write events as an ATIS .bin file: 5 bytes each (x, y, p<<7 | t[22:16], t[15:8], t[7:0]);
    an overflow record (y = 240) after each index of ``overflow_after``. ``t`` is what the file
    holds (23 bits), before the overflows' 2^13 us."""
    rows = []
    for i, (ti, xi, yi, pi) in enumerate(zip(t, x, y, p)):
        rows.append([xi, yi, (pi << 7) | ((ti >> 16) & 127), (ti >> 8) & 255, ti & 255])
        if i in overflow_after:
            rows.append([0, 240, 0, 0, 0])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(np.asarray(rows, dtype=np.uint8).tobytes())


def random_events(rng, n, label, width, height):
    t = np.sort(rng.integers(0, 300_000, n))
    x = np.clip(rng.normal(width * (label + 1) / 12, 3, n), 0, width - 1).astype(int)  # the class moves the blob
    y = np.clip(rng.normal(height / 2, 4, n), 0, height - 1).astype(int)
    return t, x, y, rng.integers(0, 2, n)


def make_n_mnist(root, per_class=3, n=200):
    rng = np.random.default_rng(0)
    for split, count in (("Train", per_class), ("Test", 1)):
        for label in range(10):
            for i in range(count):
                write_atis(root / split / str(label) / f"{i:05d}.bin", *random_events(rng, n, label, 34, 34))


def test_an_atis_file_reads_by_hand_and_an_overflow_moves_the_later_timestamps():
    t = [5, 70_000, 8_388_607, 12]  # 8388607: the largest 23-bit timestamp
    x, y, p = [0, 33, 17, 239], [0, 33, 5, 179], [1, 0, 1, 0]
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "a.bin"
        write_atis(path, t, x, y, p, overflow_after=(1,))
        with pytest.warns(RuntimeWarning, match="step backwards"):  # 12 after the overflow: 8204 < 8388607 + 8192
            events = read_atis_bin(path)
        assert events["t"].tolist() == [5, 70_000, 8_388_607 + 8192, 12 + 8192]  # the marker itself is dropped
        assert events["x"].tolist() == x and events["y"].tolist() == y and events["p"].tolist() == p
        path.write_bytes(path.read_bytes()[:-2])
        with pytest.raises(EventFileError, match=r"a\.bin: .* not a whole number of 5-byte ATIS events"):
            read_atis_bin(path)


def test_atis_files_read_as_spikingjellys_reader_reads_them(tmp_path):
    """The peer: SpikingJelly 2.0's load_ATIS_bin on the same file (no overflow record, which it
    does not handle)."""
    utils = pytest.importorskip("spikingjelly.datasets.utils")
    rng = np.random.default_rng(1)
    write_atis(tmp_path / "b.bin", *random_events(rng, 500, 3, 34, 34))
    ours, theirs = read_atis_bin(tmp_path / "b.bin"), utils.load_ATIS_bin(str(tmp_path / "b.bin"))
    assert all(np.array_equal(ours[k], theirs[k].astype(np.int64)) for k in ("t", "x", "y", "p"))


def test_n_mnist_reads_the_release_layout_frames_by_hand_counts_and_caches(tmp_path, monkeypatch):
    make_n_mnist(tmp_path)
    data = build_dataset("n_mnist", root=str(tmp_path), augment=False, frames=4)
    assert (len(data.train), len(data.test), data.num_classes, data.in_channels, data.frames) == (30, 10, 10, 2, 4)
    x, label = data.train[4]  # digit 1's second recording
    assert x.shape == (4, 2, 34, 34) and label == 1
    events = read_atis_bin(tmp_path / "Train" / "1" / "00001.bin")
    assert torch.equal(x, torch.from_numpy(events_to_frames(events, 4, "number", 34, 34)))
    assert x.sum() == 200  # every event counted once (50 per frame)
    assert [int(x[f].sum()) for f in range(4)] == [50, 50, 50, 50]

    def no_decoding(path):
        raise AssertionError("read from the cache, not decoded again")

    monkeypatch.setattr("sakd.data.event_frames.read_events", no_decoding)
    assert torch.equal(build_dataset("n_mnist", root=str(tmp_path), augment=False, frames=4).train[4][0], x)
    with pytest.raises(DatasetNotFoundError, match="expected .*/Train/<digit>/\\*.bin"):
        build_dataset("n_mnist", root=str(tmp_path / "nowhere"))


def test_n_caltech101_has_a_fixed_stratified_seeded_split_and_names_a_bad_file(tmp_path):
    make_n_caltech101(tmp_path)
    a = build_dataset("n_caltech101", root=str(tmp_path), augment=False, image_size=24)
    b = build_dataset("n_caltech101", root=str(tmp_path / "Caltech101"), augment=False, image_size=24)
    assert a.num_classes == 3 and [p.name for p, _ in a.test.items] == [p.name for p, _ in b.test.items]
    assert [label for _, label in a.test.items] == [0, 1, 2]  # a fifth of 6, rounded, per class
    assert not {p for p, _ in a.test.items} & {p for p, _ in a.train.items} and len(a.train) == 15
    x, _ = a.train[0]
    assert x.shape == (4, 2, 24, 24) and x.sum() > 0
    bad = a.train.items[0][0]
    write_atis(bad, [1], [250], [3], [1])  # x = 250 is outside the 240-pixel-wide sensor
    c = build_dataset("n_caltech101", root=str(tmp_path), augment=False, image_size=24, cache_dir=str(tmp_path / "c"))
    with pytest.raises(EventFileError, match=f"{bad}: events fall outside a 240x180 sensor"):
        c.train[0]


def make_n_caltech101(root, per_class=6, classes=("accordion", "airplanes", "anchor")):
    rng = np.random.default_rng(2)
    for label, c in enumerate(classes):
        for i in range(per_class):
            write_atis(root / "Caltech101" / c / f"image_{i + 1:04d}.bin", *random_events(rng, 100, label, 240, 180))


def make_dvs_gesture(root, users=((1, 2), (24,)), n=160):
    from sakd.data.dvs_gesture import CLASSES

    rng = np.random.default_rng(3)
    for split, ids in zip(("ibmGestureTrain", "ibmGestureTest"), users):
        for user in ids:
            for label in range(len(CLASSES)):
                t, x, y, p = random_events(rng, n, label % 10, 128, 128)
                write_gesture(root / split / f"user{user:02d}_fluorescent" / f"{label}.npy", t / 1000, x, y, p)


@pytest.mark.parametrize("name, make, options", [
    ("n_mnist", lambda root: make_n_mnist(root, per_class=4, n=300), []),
    ("n_caltech101", make_n_caltech101, ["data.options.image_size=24"]),
    ("dvs_gesture", make_dvs_gesture, ["data.options.image_size=24", "data.options.frames=4"]),
])
def test_the_quickstart_trains_on_each_event_data_set_from_the_cli_and_resumes_exactly(tmp_path, name, make, options):
    """`sakd train --config quickstart/snn data.name=n_mnist data.root=DIR` trains as the digits do
    (the frames' channels and size come from the data set); a run stopped after its first epoch and
    resumed from the CLI records what the uninterrupted run records."""
    import json

    from sakd.cli import main
    from sakd.training import Trainer, load_config

    make(tmp_path / name)
    overrides = [f"data.name={name}", f"data.root={tmp_path / name}", "data.batch_size=10", "run.device=cpu",
                 f"run.output_dir={tmp_path / 'runs'}", "optim.epochs=2", "run.progress=false", *options]
    assert main(["train", "--config", "quickstart/snn", *overrides, "run.name=straight"]) == 0

    class StopsAfterOneEpoch(Trainer):
        def on_epoch_end(self, record):
            raise KeyboardInterrupt  # after the epoch's checkpoint

    with pytest.raises(KeyboardInterrupt):
        StopsAfterOneEpoch(load_config("quickstart/snn", [*overrides, "run.name=stopped"])).fit()
    assert main(["train", "--resume", str(tmp_path / "runs" / "stopped")]) == 0

    def numbers(run):
        lines = (tmp_path / "runs" / run / "metrics.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(line).items() if not k.startswith("time/")} for line in lines]

    assert [r["epoch"] for r in numbers("straight")] == [1, 2]
    assert all(0 <= r["test/top1"] <= 100 and r["test/firing_rate"] >= 0 for r in numbers("straight"))
    assert numbers("stopped") == numbers("straight")


def write_gesture(path, t_ms, x, y, p):
    """One recording as tonic's DVS-Gesture release holds it: [N, 4] of x, y, p, t in ms."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.stack([x, y, p, t_ms], axis=1).astype(np.float64))


def test_dvs_gesture_reads_tonics_release_layout_in_microseconds_and_frames_by_hand(tmp_path, monkeypatch):
    from sakd.data.dvs_gesture import read_gesture_npy

    make_dvs_gesture(tmp_path)
    path = tmp_path / "ibmGestureTrain" / "user01_fluorescent" / "3.npy"
    events, raw = read_gesture_npy(path), np.load(path)
    assert events["t"].tolist() == np.rint(raw[:, 3] * 1000).astype(int).tolist()  # ms -> us, as tonic does
    assert events["x"].tolist() == raw[:, 0].astype(int).tolist() and events["p"].tolist() == raw[:, 2].tolist()
    data = build_dataset("dvs_gesture", root=str(tmp_path), augment=False, frames=16)
    assert (len(data.train), len(data.test), data.num_classes, data.frames) == (22, 11, 11, 16)
    x, label = next((data.train[i] for i, (p, _) in enumerate(data.train.items) if p == path))
    assert label == 3 and x.shape == (16, 2, 128, 128)
    assert torch.equal(x, torch.from_numpy(events_to_frames(events, 16, "number", 128, 128)))
    assert [int(x[f].sum()) for f in range(16)] == [10] * 16  # 160 events, 10 a frame
    np.save(tmp_path / "ibmGestureTest" / "user24_fluorescent" / "12.npy", np.zeros((1, 4)))
    with pytest.raises(DatasetNotFoundError, match="12.npy: a DVS-Gesture recording is named by its label"):
        build_dataset("dvs_gesture", root=str(tmp_path))
    np.save(path, np.zeros((5, 3)))
    with pytest.raises(EventFileError, match="expected an array \\[N, 4\\] of x, y, p, t"):
        read_gesture_npy(path)


def test_frame_augmentations_treat_every_frame_alike_and_repeat_under_the_samples_seed(tmp_path):
    """flip / rotation / erasing (NDA's) act on all T frames of a sample with one draw, from the
    sample's seeded generator (what SeededSamples opens per (seed, epoch, index)): the same seed
    gives the same augmented sample, so a resumed run sees what the uninterrupted one saw."""
    from sakd.data.seeded import seeded
    from sakd.errors import ConfigError

    make_n_mnist(tmp_path, per_class=1)
    plain = build_dataset("n_mnist", root=str(tmp_path), augment=False).train[3][0]
    flipped = build_dataset("n_mnist", root=str(tmp_path), crop_padding=0, flip=1.0).train[3][0]
    assert torch.equal(flipped, plain.flip(-1))  # every frame mirrored, counts kept
    data = build_dataset("n_mnist", root=str(tmp_path), rotation=30.0, erasing=1.0)
    with seeded(11):
        a = data.train[3][0]
    with seeded(11):
        b = data.train[3][0]
    with seeded(12):
        c = data.train[3][0]
    assert torch.equal(a, b) and not torch.equal(a, c)
    with seeded(3):
        cut = build_dataset("n_mnist", root=str(tmp_path), crop_padding=0, erasing=1.0).train[3][0]
    changed = (cut != plain).any(0).any(0)  # the pixels the cutout took
    assert changed.any() and (cut[:, :, changed] == 0).all()  # zero in every frame and polarity alike
    with pytest.raises(ConfigError, match=r"data.options.flip must lie in \[0, 1\], got 2"):
        build_dataset("n_mnist", root=str(tmp_path), flip=2)
