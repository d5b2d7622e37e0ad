"""A training step's peak memory on its device, in segments: what ``run.memory_budget`` plans with
and checks against.

* CUDA: the caching allocator's own count (``torch.cuda.max_memory_allocated``): every tensor
  allocated on the device, the models' and the optimizer's included, reset at each segment.
* CPU keeps no such count. torch's profiler (``profile_memory``) records each allocation and
  free of the CPU allocator while the step runs; a segment's peak is their running sum at its
  highest, on top of ``resident``: the run's tensors alive before the step (its models'
  parameters, buffers and gradients, the optimizer's state), counted once each
  (:func:`resident_bytes`).

Neither changes what the step computes: the profiler watches the same kernels (compiled ones
included) run on the same values. A segment ends at each :meth:`StepPeaks.mark`.
"""

from __future__ import annotations

import contextlib
import os
import sys

import torch
from torch import nn
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile, record_function

_MARK = "sakd.memory.mark"


@contextlib.contextmanager
def _stderr_closed():
    """The process's standard error (file descriptor 2, where C++ writes) goes nowhere meanwhile."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def resident_bytes(device: torch.device, modules: list[nn.Module], optimizer=None) -> int:
    """The bytes of the distinct storages on ``device`` of the modules' parameters, buffers and
    gradients and of the optimizer's state: what is alive on it before a training step."""
    tensors = [t for m in modules for t in (*m.parameters(), *m.buffers())]
    tensors += [p.grad for m in modules for p in m.parameters() if p.grad is not None]
    if optimizer is not None:
        tensors += [v for state in optimizer.state.values() for v in state.values() if isinstance(v, torch.Tensor)]
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors
                if t.device.type == device.type and t.untyped_storage().data_ptr()}
    return sum(storages.values())


class StepPeaks:
    """While active, the peak memory on ``device`` (bytes), one value per segment; ``resident``:
    what was alive before (CPU only: CUDA's count has it)."""

    def __init__(self, device: torch.device, resident: int = 0):
        self.device, self.resident = device, resident
        self.segments: list[int] = []
        self._profile = None

    @property
    def peak(self) -> int:
        return max(self.segments, default=0)

    def __enter__(self) -> StepPeaks:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            os.environ.setdefault("KINETO_LOG_LEVEL", "6")  # no start/stop lines from the profiler's library
            self._profile = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
            earlier = torch.empty(1)
            self._profile.__enter__()
            with _stderr_closed():  # the allocator's one line per process on freeing what it did not see made
                del earlier
        return self

    def mark(self) -> None:
        """The segment so far ends; the next starts."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.segments.append(torch.cuda.max_memory_allocated(self.device))
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            with record_function(_MARK):
                pass

    def __exit__(self, *exc) -> None:
        self.mark()
        if self._profile is None:
            return
        self._profile.__exit__(*exc)
        events = self._profile.profiler.kineto_results.events()
        self._profile = None
        marks = sorted(e.start_ns() for e in events if e.name() == _MARK)
        changes = sorted((e.start_ns(), e.nbytes()) for e in events
                         if e.name() == "[memory]" and e.device_type() == DeviceType.CPU)
        now, peak, i = self.resident, self.resident, 0
        for end in marks:
            while i < len(changes) and changes[i][0] <= end:
                now += changes[i][1]
                peak = max(peak, now)
                i += 1
            self.segments.append(peak)
            peak = now
