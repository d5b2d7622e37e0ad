"""Event streams: decoding files and integrating events into frames.

Events are a dict of equal-length numpy arrays ``t`` (microseconds), ``x``, ``y`` (pixels) and
``p`` (polarity, 0 = OFF, 1 = ON).

Readers:

* :func:`read_aedat2_cifar10dvs`: the original CIFAR10-DVS release (jAER AEDAT 2.0): ASCII header
  lines starting with ``#``, then big-endian ``uint32`` pairs (address, timestamp). The address
  holds ``x = (a & 0xFE) >> 1``, ``y = (a & 0x7F00) >> 8`` and ``p = a & 1``; like the SNN
  literature's loaders (SpikingJelly) the sensor is re-oriented to ``x' = 127 - y``,
  ``y' = 127 - x``, ``p' = 1 - p``, so frames look the same as from the converted releases.
* :func:`read_event_array`: pre-converted ``.npz`` (keys t, x, y, p, as SpikingJelly writes) or
  ``.npy`` structured arrays with fields t, x, y, p (as tonic uses).
* :func:`read_atis_bin`: the ATIS ``.bin`` files of N-MNIST and N-Caltech101 (Orchard et al. 2015):
  5 bytes per event, ``x``, ``y``, ``p << 7 | t[22:16]``, ``t[15:8]``, ``t[7:0]``. A record with
  ``y = 240`` marks a timestamp overflow: it adds 2^13 us to its own and every later timestamp and
  is dropped, as the release's MATLAB reader and tonic do (SpikingJelly's ``load_ATIS_bin`` keeps
  such records as events).

Real recordings can hold timestamps that step backwards. Like SpikingJelly and tonic, the readers
keep every event in file order (and warn once per file); splitting by event count uses that
order, splitting by time uses the timestamps themselves. Only a file that is not a whole number
of events (truncated) is an error.

Frames follow SpikingJelly's ``integrate_events_by_fixed_frames_number`` exactly: by ``number``,
each of the first ``F - 1`` frames takes ``N // F`` consecutive events and the last frame the rest;
by ``time``, frames span ``(t_max - t_min) // F`` microseconds each, the last one up to ``t_max``.

No library reads the original AEDAT 2.0 release without a network and heavy extras (tonic reads
only the AEDAT 4 re-release; SpikingJelly needs torchaudio), hence this small decoder.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from sakd.errors import SakdError

FIELDS = ("t", "x", "y", "p")
SPLITS = ("number", "time")


class EventFileError(SakdError):
    """An event file is unreadable, truncated or not in the expected format."""


def read_aedat2_cifar10dvs(path: str | Path, size: int = 128) -> dict[str, np.ndarray]:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise EventFileError(f"cannot read event file {path}: {exc}") from None
    start = 0
    while raw.startswith(b"#", start):  # header lines
        end = raw.find(b"\n", start)
        if end < 0:
            raise EventFileError(f"{path}: header never ends (no event data)")
        start = end + 1
    body = raw[start:]
    if len(body) % 8:
        raise EventFileError(
            f"{path}: {len(body)} bytes of events is not a whole number of 8-byte events (truncated or corrupt)"
        )
    data = np.frombuffer(body, dtype=">u4")
    address, t = data[0::2], data[1::2]
    x = (address & 0xFE) >> 1
    y = (address & 0x7F00) >> 8
    p = address & 0x1
    warn_if_unordered(path, t)
    return {
        "t": t.astype(np.int64),
        "x": (size - 1 - y).astype(np.int64),
        "y": (size - 1 - x).astype(np.int64),
        "p": (1 - p).astype(np.int64),
    }


def load_array(path: Path):
    """``np.load`` of an event file (no pickles); one that cannot be read is an error naming it."""
    try:
        return np.load(path, allow_pickle=False)
    except Exception as exc:
        raise EventFileError(f"cannot read event file {path}: {exc}") from None


def read_event_array(path: str | Path) -> dict[str, np.ndarray]:
    path = Path(path)
    obj = load_array(path)
    if isinstance(obj, np.lib.npyio.NpzFile):
        names, get = set(obj.files), obj.__getitem__
    elif obj.dtype.names:
        names, get = set(obj.dtype.names), obj.__getitem__
    else:
        raise EventFileError(f"{path}: expected a structured array with fields {FIELDS}, got dtype {obj.dtype}")
    missing = [f for f in FIELDS if f not in names]
    if missing:
        raise EventFileError(f"{path}: missing event field(s) {missing}; has {sorted(names)}")
    events = {f: np.asarray(get(f)).astype(np.int64).ravel() for f in FIELDS}
    if len({len(v) for v in events.values()}) != 1:
        raise EventFileError(f"{path}: fields t, x, y, p have different lengths")
    warn_if_unordered(path, events["t"])
    return events


def warn_if_unordered(path: Path, t: np.ndarray) -> None:
    """Warn (once per file) that some timestamps step backwards; the events are kept as they are."""
    back = int((np.diff(t.astype(np.int64)) < 0).sum()) if len(t) > 1 else 0
    if back:
        warnings.warn(f"{path}: {back} of {len(t)} event timestamps step backwards; keeping every event "
                      "(split_by=number follows the file's order, split_by=time the timestamps)",
                      RuntimeWarning, stacklevel=3)


OVERFLOW_Y = 240  # an ATIS record with this y marks a timestamp overflow
OVERFLOW_US = 1 << 13  # what each overflow adds to the timestamps from it on


def read_atis_bin(path: str | Path) -> dict[str, np.ndarray]:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise EventFileError(f"cannot read event file {path}: {exc}") from None
    if len(raw) % 5:
        raise EventFileError(f"{path}: {len(raw)} bytes is not a whole number of 5-byte ATIS events (truncated or "
                             "corrupt)")
    data = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 5).astype(np.int64)
    x, y = data[:, 0], data[:, 1]
    p = data[:, 2] >> 7
    t = ((data[:, 2] & 127) << 16) | (data[:, 3] << 8) | data[:, 4]
    overflow = y == OVERFLOW_Y
    t = t + np.cumsum(overflow) * OVERFLOW_US
    keep = ~overflow
    warn_if_unordered(path, t[keep])
    return {"t": t[keep], "x": x[keep], "y": y[keep], "p": p[keep]}


READERS = {".aedat": read_aedat2_cifar10dvs, ".npz": read_event_array, ".npy": read_event_array,
           ".bin": read_atis_bin}


def read_events(path: str | Path) -> dict[str, np.ndarray]:
    suffix = Path(path).suffix
    if suffix not in READERS:
        raise EventFileError(f"{path}: unknown event file type {suffix!r}; readable: {sorted(READERS)}")
    return READERS[suffix](path)


def frame_index(t: np.ndarray, frames: int, split_by: str) -> np.ndarray:
    """The frame (0..frames-1) of every event, as SpikingJelly integrates fixed frame numbers.

    * ``"number"``: event ``i`` (in file order) of ``N`` goes to frame ``min(i // (N // F), F - 1)``:
      ``N // F`` events per frame, the remainder in the last (all of them there when ``N < F``).
    * ``"time"``: with ``dt = (t_max - t_min) // F``, frame ``min((t - t_min) // dt, F - 1)``; a
      stream shorter than ``F`` microseconds (``dt = 0``, where SpikingJelly fails) uses ``dt = 1``.
    """
    n = len(t)
    if split_by == "number":
        per_frame = n // frames
        if per_frame == 0:
            return np.full(n, frames - 1, dtype=np.int64)
        return np.minimum(np.arange(n, dtype=np.int64) // per_frame, frames - 1)
    if split_by == "time":
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        t = t.astype(np.int64)
        t0 = t.min()
        dt = max(int(t.max() - t0) // frames, 1)
        return np.minimum((t - t0) // dt, frames - 1)
    raise ValueError(f"unknown split_by {split_by!r}; choose one of {SPLITS}")


def events_to_frames(events: dict[str, np.ndarray], frames: int, split_by: str = "number",
                     height: int = 128, width: int = 128) -> np.ndarray:
    """Count events per (frame, polarity, y, x): an array ``[frames, 2, height, width]`` (float32)."""
    x, y, p = events["x"], events["y"], events["p"]
    if len(x) and (x.min() < 0 or x.max() >= width or y.min() < 0 or y.max() >= height or not np.isin(p, (0, 1)).all()):
        raise EventFileError(f"events fall outside a {width}x{height} sensor with polarities 0/1")
    f = frame_index(events["t"], frames, split_by)
    flat = ((f * 2 + p) * height + y) * width + x
    counts = np.bincount(flat, minlength=frames * 2 * height * width)
    return counts.reshape(frames, 2, height, width).astype(np.float32)
