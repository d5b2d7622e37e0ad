"""Multi-step leaky integrate-and-fire neuron (paper eq. 1-3) with BPTT through a surrogate, and
integrate-and-fire (no leak).

For each timestep ``t = 1..T`` (with ``V_0 = 0``)::

    H_t = λ · V_{t-1} + X_t          # charge (eq. 1); IF: λ = 1
    S_t = Θ(H_t - V_th)              # fire, Θ(0) = 1 (eq. 2)
    V_t = H_t · (1 - S_t)            # hard reset (eq. 3), or soft: V_t = H_t - S_t · V_th

Three implementations give the same spikes and gradients:

* ``"reference"``: a plain loop that autograd differentiates; the ground truth in the tests.
* ``"fused"``: one autograd function over the whole sequence (:mod:`sakd.neurons.kernels`, run
  eagerly). It keeps only its input ``X`` for the backward pass, which recomputes the charges and
  runs the BPTT recursion by hand: one stored tensor per layer instead of the loop's five per
  timestep.
* ``"compiled"``: the same two functions through ``torch.compile``: one fused kernel for the forward
  and one for the backward (vectorised C++ on CPU, Triton on CUDA).

``"auto"`` (the default) picks ``"compiled"`` where ``torch.compile`` can build kernels for the
input's device and ``"fused"`` elsewhere, or after a compilation failure (reported once).
"""

from __future__ import annotations

import torch

from sakd.errors import ConfigError
from sakd.neurons import kernels
from sakd.neurons.base import NEURONS, SpikingNeuron
from sakd.neurons.surrogate import Surrogate, get_surrogate, spike

BACKENDS = ("auto", "compiled", "fused", "reference")


def lif_step(x_t: torch.Tensor, v: torch.Tensor | None, decay, threshold: float, surrogate: Surrogate,
             detach_reset: bool, soft: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """One timestep of eq. 1-3 (``v``: the membrane ``V_{t-1}``, ``None`` at rest): ``(S_t, V_t)``.
    The membrane and the surrogate run in :func:`~sakd.neurons.kernels.compute_dtype` of the
    input; the spikes come back in the input's dtype."""
    h = x_t.to(kernels.compute_dtype(x_t.dtype))
    if v is not None:
        h = decay * v + h
    s = spike(h - threshold, surrogate)
    r = s.detach() if detach_reset else s
    return s.to(x_t.dtype), kernels.reset(h, r, threshold, soft)


def lif_reference(
    x: torch.Tensor, decay: float, threshold: float, surrogate: Surrogate, detach_reset: bool, soft: bool = False
) -> torch.Tensor:
    """:func:`lif_step` looped over ``x.shape[0]`` timesteps; autograd gives BPTT."""
    v, spikes = None, []
    for x_t in x:
        s, v = lif_step(x_t, v, decay, threshold, surrogate, detach_reset, soft)
        spikes.append(s)
    return torch.stack(spikes)


def _dense_time_major(x: torch.Tensor, compiled: bool) -> tuple[torch.Tensor, list[int] | None]:
    """``x`` as a ``[T, N]`` view without a copy (also for channels-last tensors), and the
    permutation that restores its shape; ``None`` where ``x`` has no dense time-major layout."""
    order = sorted(range(1, x.dim()), key=lambda d: -x.stride(d))
    perm = [0, *order]
    dense = x.permute(perm)
    if not dense.is_contiguous():
        flat, perm = x.reshape(x.shape[0], -1), None
    else:
        flat = dense.view(x.shape[0], -1)
    return (_for_kernel(flat) if compiled else flat), perm


def _for_kernel(t: torch.Tensor) -> torch.Tensor:
    """``t`` [T, N] as the compiled kernels take it: N dynamic (one kernel for every layer's size)
    and not a view (Dynamo guards on the shape and strides of the tensor a view views, so every
    layer shape would compile its own kernel and every call check those guards too)."""
    t = t.detach()
    torch._dynamo.maybe_mark_dynamic(t, 1)
    return t


def _restore(y: torch.Tensor, like: torch.Tensor, perm: list[int] | None) -> torch.Tensor:
    if perm is None:
        return y.view(like.shape)
    inverse = [perm.index(d) for d in range(like.dim())]
    return y.view([like.shape[d] for d in perm]).permute(inverse)


class _LIFFunction(torch.autograd.Function):
    """The fused LIF over the whole sequence; ``decay`` is a number, or a 0-dim tensor to learn
    (PLIF), whose gradient ``Σ_t dL/dH_t · V_{t-1}`` the backward kernel then returns too."""

    @staticmethod
    def forward(ctx, x, decay, threshold, soft, surrogate, detach_reset, compiled):
        learned = isinstance(decay, torch.Tensor)
        flat, perm = _dense_time_major(x, compiled)
        spikes = _forward_kernel(flat, decay, threshold, soft, compiled)(flat, decay, threshold, soft)
        ctx.save_for_backward(flat, *([decay] if learned else []))
        ctx.cfg = (None if learned else decay, threshold, soft, surrogate, detach_reset, compiled, perm)
        # detached: a view made inside a custom Function may not be changed in place (autograd
        # forbids it), and models change spikes in place (dropout, `out += identity`)
        return _restore(spikes, x, perm).detach()

    @staticmethod
    def backward(ctx, grad_spikes):
        flat, *learned = ctx.saved_tensors
        decay, threshold, soft, surrogate, detach_reset, compiled, perm = ctx.cfg
        grad = grad_spikes.permute(perm) if perm is not None else grad_spikes
        grad = grad.reshape(flat.shape).contiguous()  # dense like X (not a broadcast zero-stride grad)
        fn = kernels.lif_backward_with_decay if learned else kernels.lif_backward
        if compiled:
            flat, grad = _for_kernel(flat), _for_kernel(grad)
            key = (*_kernel_key(flat), "learned" if learned else decay, threshold, soft, repr(surrogate), detach_reset)
            fn = kernels.compiled(fn, key)
        out = fn(grad, flat, learned[0] if learned else decay, threshold, surrogate, detach_reset, soft)
        grad_x, grad_decay = out if learned else (out, None)
        return _restore(grad_x, grad_spikes, perm), grad_decay, None, None, None, None, None


def _kernel_key(flat: torch.Tensor) -> tuple:
    """What besides the neuron's settings gets its own compiled copy: T, the dtype, the device
    type, and the states Dynamo guards on that change between calls of one program (whether the
    tensor was made under ``torch.inference_mode``, the autocast dtype, deterministic
    algorithms; none changes what the kernels compute), so that each copy holds one graph
    (N >= 2, dynamic) and no sequence of layers, dtypes, devices and modes reaches Dynamo's
    recompile limit."""
    device = flat.device.type
    autocast = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None
    return (flat.shape[0], flat.dtype, device, flat.is_inference(), autocast,
            torch.are_deterministic_algorithms_enabled())


def _forward_kernel(flat, decay, threshold, soft, compiled):
    if compiled:  # one compiled copy per setting; a learned decay is an input, not a setting
        key = (*_kernel_key(flat), "learned" if isinstance(decay, torch.Tensor) else decay, threshold, soft)
        return kernels.compiled(kernels.lif_forward, key)
    return kernels.lif_forward


def _spikes_only(x, decay, threshold, soft, compiled):
    """Inference: the forward kernel, keeping nothing for a backward pass."""
    flat, perm = _dense_time_major(x, compiled)
    with torch.no_grad():  # one grad mode, one compiled kernel
        kernel = _forward_kernel(flat, decay, threshold, soft, compiled)
        return _restore(kernel(flat, decay, threshold, soft), x, perm)


@NEURONS.register("lif")
class LIF(SpikingNeuron):
    """Leaky integrate-and-fire, paper eq. 1-3: H = λV + X, spike at H >= V_th, hard (or soft) reset.

    Multi-step: ``[T, B, ...]`` currents to ``[T, B, ...]`` spikes (0./1., input dtype).

    Stateless between calls: the membrane starts at zero on every forward, so no reset is needed.

    Args:
        decay: leak factor λ of eq. 1 (0.5 in the paper).
        threshold: firing threshold V_th (1.0 in the paper).
        surrogate: name in :data:`sakd.neurons.SURROGATES`, a dict ``{"name": ..., **params}`` or a
            :class:`~sakd.neurons.surrogate.Surrogate`.
        detach_reset: stop the gradient through the reset term (``H_t · S_t``, soft: ``S_t · V_th``).
        reset: ``"hard"`` (eq. 3: to zero) or ``"soft"`` (subtract the threshold).
        backend: ``"auto"`` (default), ``"compiled"``, ``"fused"`` or ``"reference"``; all give
            the same numbers (see the module's docstring).
    """

    @property
    def binary(self) -> bool | None:
        """Spikes are exactly 0/1 (``run.memory=lean`` packs them as bits); a subclass with its own
        forward says for itself (a class attribute ``binary``), else lean checks its outputs."""
        return True if type(self).forward is LIF.forward else None

    def __init__(
        self,
        decay: float = 0.5,
        threshold: float = 1.0,
        surrogate: str | Surrogate | dict = "triangle",
        detach_reset: bool = False,
        reset: str = "hard",
        backend: str = "auto",
    ):
        super().__init__()
        if backend not in BACKENDS:
            raise ConfigError(f"unknown LIF backend {backend!r}; choose one of {BACKENDS}")
        if not 0.0 <= float(decay) <= 1.0:
            raise ConfigError(f"LIF decay must lie in [0, 1], got {decay}")
        if reset not in ("hard", "soft"):
            raise ConfigError(f"unknown reset {reset!r}; choose 'hard' or 'soft'")
        self.decay = float(decay)
        self.threshold = float(threshold)
        self.surrogate = get_surrogate(surrogate)
        self.detach_reset = bool(detach_reset)
        self.reset = reset
        self.backend = backend

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 2:
            raise ValueError(f"LIF expects input shaped [T, B, ...], got shape {tuple(x.shape)}")
        if self.backend == "reference":
            return lif_reference(x, self.decay, self.threshold, self.surrogate, self.detach_reset, self.reset == "soft")
        compiled = self.backend == "compiled" or (
            self.backend == "auto" and kernels.compiler_available(x.device.type) and not kernels.failed()
        )
        try:
            return self._run(x, compiled)
        except Exception as exc:  # a compiler that is present but broken: fall back, say so once
            if not compiled or self.backend == "compiled" or not kernels.is_compile_error(exc):
                raise
            kernels.mark_failed(exc)
            return self._run(x, False)

    def _run(self, x: torch.Tensor, compiled: bool) -> torch.Tensor:
        # fewer than 2 neurons per timestep: the same functions eagerly (Dynamo would specialise
        # N = 0 and N = 1 into graphs of their own, and the work is nothing)
        compiled = compiled and x.numel() >= 2 * x.shape[0]
        soft = self.reset == "soft"
        learned = isinstance(self.decay, torch.Tensor) and self.decay.requires_grad
        if not (torch.is_grad_enabled() and (x.requires_grad or learned)):
            return _spikes_only(x, self.decay, self.threshold, soft, compiled)
        return _LIFFunction.apply(x, self.decay, self.threshold, soft, self.surrogate, self.detach_reset, compiled)

    def step(self, x: torch.Tensor, state: torch.Tensor | None):
        """One timestep (:func:`lif_step`); the state is the membrane."""
        return lif_step(x, state, self.decay, self.threshold, self.surrogate, self.detach_reset, self.reset == "soft")

    def nir_node(self, shape, dt: float, dtype):
        """``nir.LIF`` with ``τ = dt/(1-λ)``, ``R = 1/(1-λ)``, ``v_leak = 0``, ``v_reset = 0``: NIR's
        ``τ·dv/dt = (v_leak - v) + R·I``, stepped by forward Euler with the consumer's ``dt``, is
        ``v ← λ·v + I`` (eq. 1); IF (λ = 1) is ``nir.IF`` with ``R = 1/dt`` (``dv/dt = R·I`` gives
        ``v ← v + I``); the threshold is :func:`~sakd.neurons.base.nir_threshold`. A soft reset
        has no NIR form (NIR's neurons reset to ``v_reset``)."""
        import dataclasses

        import nir
        import numpy as np

        from sakd.neurons.base import nir_threshold

        if self.reset != "hard":
            raise ConfigError("NIR's neurons reset to v_reset; a soft reset (V - V_th) has no NIR form")
        decay = float(torch.as_tensor(self.decay).detach())
        ones, zero = np.ones(shape, dtype=dtype), np.zeros(shape, dtype=dtype)
        threshold = ones * nir_threshold(self.threshold, dtype)
        cls = nir.IF if decay == 1.0 else nir.LIF
        # nir < 1.0.5 has no v_reset: its neurons reset to 0, as eq. 3 does
        reset = {"v_reset": zero} if "v_reset" in {f.name for f in dataclasses.fields(cls)} else {}
        if decay == 1.0:
            return nir.IF(r=ones * (1.0 / dt), v_threshold=threshold, **reset)
        return nir.LIF(tau=ones * (dt / (1.0 - decay)), r=ones * (1.0 / (1.0 - decay)), v_leak=zero,
                       v_threshold=threshold, **reset)

    def extra_repr(self) -> str:
        return (
            f"decay={self.decay}, threshold={self.threshold}, surrogate={self.surrogate!r}, "
            f"detach_reset={self.detach_reset}, reset={self.reset!r}, backend={self.backend!r}"
        )


@NEURONS.register("if")
class IF(LIF):
    """Integrate-and-fire: LIF without leak (λ = 1), H = V + X; hard (or soft) reset."""

    def __init__(self, threshold: float = 1.0, surrogate: str | Surrogate | dict = "triangle",
                 detach_reset: bool = False, reset: str = "hard", backend: str = "auto"):
        super().__init__(1.0, threshold, surrogate, detach_reset, reset, backend)
