"""The LIF recursion over T as two pure functions, run eagerly or compiled into fused kernels.

:func:`lif_forward` and :func:`lif_backward` hold the whole per-element computation of a
multi-step LIF layer on a ``[T, N]`` view. Eagerly they are a few tensor ops per timestep;
through ``torch.compile`` (Inductor: vectorised C++ on CPU, Triton on CUDA) each becomes a single
pass over memory, as cheap as a ReLU's:

* forward: reads ``X``, writes the spikes ``S`` (8 bytes per float32 element, like a ReLU);
* backward: reads ``X`` and ``dL/dS``, recomputes the charges ``H`` in registers, runs BPTT
  backwards over T and writes ``dL/dX`` (12 bytes per element, like a ReLU's backward).

The layer keeps only its input ``X`` for the backward pass: no charges, membranes or spike masks.

The arithmetic is the reference loop's, in the same order: ``H_t = X_t + λ·V_{t-1}`` (an exact
product for λ = 0.5 or 1, so a fused multiply-add cannot round differently), ``S_t = [H_t − V_th >= 0]``,
and the reset: hard ``V_t = H_t·(1 − S_t)`` (eq. 3) or soft ``V_t = H_t − S_t·V_th`` (subtract the
threshold).

Numerics, the same for every backend: the membrane, the surrogate and the BPTT recursion run in
:func:`compute_dtype` of the input (float32 for bfloat16/float16/float32 inputs, float64 for
float64), whatever autocast is in force; the spikes and ``dL/dX`` come back in the input's dtype.
A half-precision membrane would flip spikes wherever its rounding crosses the threshold, and the
flips would grow with depth.
"""

from __future__ import annotations

import contextvars
import functools
import hashlib
import logging
import shutil
import types
import warnings

import torch

from sakd.neurons.surrogate import Surrogate


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the membrane is kept in for inputs of ``dtype``: at least float32."""
    return torch.promote_types(dtype, torch.float32)


def reset(h: torch.Tensor, s: torch.Tensor, threshold: float, soft: bool) -> torch.Tensor:
    """The membrane after the spike (eq. 3): ``H_t·(1 - S_t)`` (hard reset to 0) or, ``soft``,
    ``H_t - S_t·V_th``."""
    return h - s * threshold if soft else h * (1.0 - s)


def lif_steps(x: torch.Tensor, decay: float, threshold: float,
              soft: bool = False) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The charge ``H_t`` (membrane potential before the spike) and spike ``S_t`` of each
    timestep of ``x`` shaped ``[T, ...]``, both in :func:`compute_dtype`; ``soft``: soft reset."""
    dtype = compute_dtype(x.dtype)
    steps = []
    v = None
    for t in range(x.shape[0]):
        x_t = x[t].to(dtype)
        h = x_t if v is None else x_t + decay * v
        s = (h - threshold >= 0).to(dtype)
        v = reset(h, s, threshold, soft)
        steps.append((h, s))
    return steps


def lif_forward(x: torch.Tensor, decay: float, threshold: float, soft: bool = False) -> torch.Tensor:
    """Spikes ``[T, ...]`` (in ``x``'s dtype) of ``x`` shaped ``[T, ...]``."""
    return torch.stack([s for _, s in lif_steps(x, decay, threshold, soft)]).to(x.dtype)


def _bptt(grad_spikes: torch.Tensor, x: torch.Tensor, decay, threshold: float, surrogate: Surrogate,
          detach_reset: bool, soft: bool) -> tuple[list[torch.Tensor], list]:
    """``dL/dH_t`` of every timestep (in time order, :func:`compute_dtype`) and the recomputed steps."""
    steps = lif_steps(x, decay, threshold, soft)
    dtype = compute_dtype(x.dtype)
    grads = []
    grad_v = None  # dL/dV_t flowing back from step t+1
    for t in range(len(steps) - 1, -1, -1):
        h, s = steps[t]
        grad_s = grad_spikes[t].to(dtype)
        sg = surrogate.grad(h - threshold)
        if grad_v is None:
            grad_h = grad_s * sg
        elif soft:  # V_t = H_t - S_t·V_th: dV_t/dH_t = 1, dV_t/dS_t = -V_th
            if not detach_reset:
                grad_s = grad_s - grad_v * threshold
            grad_h = grad_v + grad_s * sg
        else:  # V_t = H_t·(1 - S_t): dV_t/dH_t = 1 - S_t, dV_t/dS_t = -H_t
            if not detach_reset:
                grad_s = grad_s - grad_v * h
            grad_h = grad_v * (1.0 - s) + grad_s * sg
        grads.append(grad_h)
        grad_v = grad_h * decay
    return grads[::-1], steps


def lif_backward(
    grad_spikes: torch.Tensor, x: torch.Tensor, decay: float, threshold: float,
    surrogate: Surrogate, detach_reset: bool, soft: bool = False,
) -> torch.Tensor:
    """BPTT through the LIF recursion: ``dL/dX`` (in ``x``'s dtype) from ``dL/dS`` and the layer's
    input ``X``, computed in :func:`compute_dtype`."""
    grads, _ = _bptt(grad_spikes, x, decay, threshold, surrogate, detach_reset, soft)
    return torch.stack(grads).to(x.dtype)


def lif_backward_with_decay(
    grad_spikes: torch.Tensor, x: torch.Tensor, decay: torch.Tensor, threshold: float,
    surrogate: Surrogate, detach_reset: bool, soft: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`lif_backward` and ``dL/dλ`` for a learned leak (PLIF): ``Σ_t dL/dH_t · V_{t-1}``."""
    grads, steps = _bptt(grad_spikes, x, decay, threshold, surrogate, detach_reset, soft)
    grad_decay = torch.zeros((), dtype=grads[0].dtype, device=x.device)
    for t in range(1, len(steps)):
        h, s = steps[t - 1]
        v = reset(h, s, threshold, soft)
        grad_decay = grad_decay + (grads[t] * v).sum()
    return torch.stack(grads).to(x.dtype), grad_decay.to(decay.dtype)


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


def _not_the_cuda_home_notice(record: logging.LogRecord) -> bool:
    """Building CPU kernels makes torch look for a CUDA toolkit and, on a machine without a GPU,
    log "No CUDA runtime is found, using CUDA_HOME=..." on every run: noise for a CPU kernel."""
    return not record.getMessage().startswith("No CUDA runtime is found")


def quiet_cuda_home_notice() -> None:
    """Leave out torch's CUDA-home notice when CPU kernels are built (called before a kernel is
    compiled; adding the filter again changes nothing)."""
    logging.getLogger("torch.utils.cpp_extension").addFilter(_not_the_cuda_home_notice)


# Inductor settings of the kernels, where this torch has them:
# * N is dynamic, so Inductor cannot size the CPU thread split from the shape it first saw (a small
#   first layer would leave every later, large one single-threaded): let OpenMP split at run time.
# * Triton (CUDA) contracts a*b + c into one fused multiply-add and flushes subnormals to zero by
#   default, and either rounds differently from eager PyTorch; these two keep the backward's
#   arithmetic the reference loop's, as on the CPU (whose C++ kernels never contract).
_WANTED = {"cpp.dynamic_threads": True, "emulate_precision_casts": True, "eager_numerics.disable_ftz": True}


@functools.cache
def _options() -> dict:
    from torch._inductor import config

    def known(key: str) -> bool:
        obj = config
        for part in key.split("."):
            if not hasattr(obj, part):
                return False
            obj = getattr(obj, part)
        return True

    return {k: v for k, v in _WANTED.items() if known(k)}


@functools.cache
def compiled(fn, key: tuple = ()):
    """``fn`` compiled by ``torch.compile`` for one neuron configuration ``key`` (the neuron's
    settings, T, the dtype and the device type).

    Each key gets its own copy of ``fn``'s code object, so its compiled graphs live in their own
    cache: a call checks the guards of one graph (N dynamic; layers of N < 2 neurons, which Dynamo
    would specialise, run eagerly), not of every configuration seen in the process, and a test
    session or a sweep never reaches Dynamo's per-function recompile limit.
    """
    quiet_cuda_home_notice()
    code = fn.__code__.replace(
        co_name=f"{fn.__name__}_{hashlib.blake2b(repr(key).encode(), digest_size=6).hexdigest()}"
    )
    copy = types.FunctionType(code, fn.__globals__, code.co_name, fn.__defaults__, fn.__closure__)
    copy.__qualname__ = code.co_name
    return torch.compile(copy, fullgraph=True, options=_options())


# why torch.compile could not build the kernels, once it failed in this context (a command's own:
# sakd.cli.main runs each in a context of its own), so they are not tried again
_FAILURE: contextvars.ContextVar[str | None] = contextvars.ContextVar("sakd_kernel_failure", default=None)


def is_compile_error(exc: Exception) -> bool:
    """Whether ``exc`` came from building a kernel (not from the computation itself)."""
    from torch._dynamo.exc import BackendCompilerFailed, TorchRuntimeError, Unsupported

    return isinstance(exc, (BackendCompilerFailed, Unsupported, TorchRuntimeError, OSError))


def failed() -> bool:
    return _FAILURE.get() is not None


def mark_failed(exc: Exception) -> None:
    """Fall back to the eager kernels for the rest of the context, and say why once."""
    if _FAILURE.get() is None:
        _FAILURE.set(f"{type(exc).__name__}: {exc}")
        warnings.warn(
            f"sakd: torch.compile could not build the LIF kernels ({_FAILURE.get().splitlines()[0]}); "
            "using the eager 'fused' backend (same numbers, slower)",
            RuntimeWarning,
            stacklevel=3,
        )
