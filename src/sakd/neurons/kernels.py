"""The LIF recursion over T as two pure functions, run eagerly or compiled into one fused kernel.

:func:`lif_forward` and :func:`lif_backward` hold the whole per-element computation of a
multi-step LIF layer on a ``[T, N]`` view. Eagerly they are a few tensor ops per timestep;
through ``torch.compile`` (Inductor: vectorised C++ on CPU, Triton on CUDA) each becomes a single
pass over memory: the forward reads ``X`` once and writes the spikes and the charges ``H``, the
backward reads ``H`` and the incoming gradient once and writes ``dL/dX``. ``H`` is the only tensor
kept for the backward pass (the spikes are recomputed from it).

The arithmetic is the reference loop's, in the same order: ``H_t = X_t + λ·V_{t-1}`` (an exact
product for λ = 0.5, so a fused multiply-add cannot round differently), ``S_t = [H_t − V_th >= 0]``,
``V_t = H_t·(1 − S_t)``.
"""

from __future__ import annotations

import functools
import shutil
import warnings

import torch

from sakd.neurons.surrogate import Surrogate


def lif_forward(x: torch.Tensor, decay: float, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Spikes and charges ``H`` of ``x`` shaped ``[T, ...]``."""
    spikes, charges = [], []
    v = None
    for t in range(x.shape[0]):
        h = x[t] if v is None else x[t] + decay * v
        s = (h - threshold >= 0).to(x.dtype)
        v = h * (1.0 - s)
        spikes.append(s)
        charges.append(h)
    return torch.stack(spikes), torch.stack(charges)


def lif_spikes(x: torch.Tensor, decay: float, threshold: float) -> torch.Tensor:
    """Spikes only (inference: nothing is kept for a backward pass)."""
    spikes = []
    v = None
    for t in range(x.shape[0]):
        h = x[t] if v is None else x[t] + decay * v
        s = (h - threshold >= 0).to(x.dtype)
        v = h * (1.0 - s)
        spikes.append(s)
    return torch.stack(spikes)


def lif_backward(
    grad_spikes: torch.Tensor, charges: torch.Tensor, decay: float, threshold: float,
    surrogate: Surrogate, detach_reset: bool,
) -> torch.Tensor:
    """BPTT through the LIF recursion: ``dL/dX`` from ``dL/dS`` and the saved charges."""
    grads = []
    grad_v = None  # dL/dV_t flowing back from step t+1
    for t in range(charges.shape[0] - 1, -1, -1):
        h = charges[t]
        u = h - threshold
        grad_s = grad_spikes[t]
        if grad_v is None:
            grad_h = grad_s * surrogate.grad(u)
        else:
            if not detach_reset:  # dV_t/dS_t = -H_t
                grad_s = grad_s - grad_v * h
            grad_h = grad_v * (1.0 - (u >= 0).to(h.dtype)) + grad_s * surrogate.grad(u)
        grads.append(grad_h)
        grad_v = grad_h * decay
    return torch.stack(grads[::-1])


@functools.cache
def compiler_available(device_type: str) -> bool:
    """Whether ``torch.compile`` can build kernels here: Triton on CUDA, a C++ compiler on CPU."""
    if device_type == "cuda":
        try:
            import triton  # noqa: F401
        except ImportError:
            return False
        return torch.cuda.is_available()
    if device_type == "cpu":
        return any(shutil.which(cc) for cc in ("g++", "c++", "clang++"))
    return False


# Each (T, dtype, surrogate, decay, detach_reset, grad mode) is one compiled graph of the same
# function; a run uses one or two, a test session or a sweep in one process many more than
# torch.compile's default budget of 8 per function.
RECOMPILE_LIMIT = 64


@functools.cache
def compiled(fn):
    """``fn`` compiled by ``torch.compile`` (once per configuration, dynamic in N)."""
    kernel = torch.compile(fn, fullgraph=True)

    @functools.wraps(fn)
    def run(*args):
        with torch._dynamo.config.patch(recompile_limit=RECOMPILE_LIMIT):
            return kernel(*args)

    return run


_failure: list[str] = []


def is_compile_error(exc: Exception) -> bool:
    """Whether ``exc`` came from building a kernel (not from the computation itself)."""
    from torch._dynamo.exc import BackendCompilerFailed, TorchRuntimeError, Unsupported

    return isinstance(exc, (BackendCompilerFailed, Unsupported, TorchRuntimeError, OSError))


def failed() -> bool:
    return bool(_failure)


def mark_failed(exc: Exception) -> None:
    """Fall back to the eager kernels for the rest of the process, and say why once."""
    if not _failure:
        _failure.append(f"{type(exc).__name__}: {exc}")
        warnings.warn(
            f"sakd: torch.compile could not build the LIF kernels ({_failure[0].splitlines()[0]}); "
            "using the eager 'fused' backend (same numbers, slower)",
            RuntimeWarning,
            stacklevel=3,
        )
