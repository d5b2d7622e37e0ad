import contextvars
import logging

import pytest
import torch

from conftest import DEVICES, skip_unless_compiles
from sakd.errors import ConfigError
from sakd.neurons import LIF, get_surrogate, kernels, lif_reference

FAST_BACKENDS = ["fused", "compiled"]


def backends_on(device: str) -> list[str]:
    return ["reference", "fused"] + (["compiled"] if kernels.compiler_available(device) else [])


def test_lif_forward_matches_hand_computed_sequence():
    # λ=0.5, V_th=1. Inputs for one neuron over 5 steps; step 2 lands exactly on the threshold.
    x = torch.tensor([0.6, 0.7, 0.3, 2.0, 0.1]).view(5, 1)
    # H1=0.6 no spike, V=0.6; H2=0.3+0.7=1.0 -> spike (>=), V=0; H3=0.3 -> V=0.3;
    # H4=0.15+2.0=2.15 -> spike, V=0; H5=0.1 -> no spike.
    expected = torch.tensor([0.0, 1.0, 0.0, 1.0, 0.0]).view(5, 1)
    for backend in ("auto", "compiled", "fused", "reference"):
        assert torch.equal(LIF(backend=backend)(x), expected), backend


def test_lif_input_exactly_at_threshold_spikes_and_resets():
    x = torch.tensor([1.0, 0.0, 1.0]).view(3, 1)
    assert LIF()(x).flatten().tolist() == [1.0, 0.0, 1.0]


def test_triangle_surrogate_values():
    sg = get_surrogate("triangle")
    x = torch.tensor([-2.0, -1.0, -0.5, 0.0, 0.25, 1.0, 3.0])
    assert torch.allclose(sg.grad(x), torch.tensor([0.0, 0.0, 0.5, 1.0, 0.75, 0.0, 0.0]))


def test_spike_gradient_is_the_surrogate():
    x = torch.tensor([[0.5], [0.0]], requires_grad=True)  # one step each: U - V_th = -0.5
    LIF(decay=0.0)(x.view(2, 1)).sum().backward()
    assert torch.allclose(x.grad, torch.tensor([[0.5], [0.0]]))  # step 2: U=0 -> 1-|0-1| = 0


@pytest.mark.parametrize("surrogate", ["triangle", "sigmoid", "atan", "rectangle"])
def test_other_surrogates_integrate_to_one(surrogate):
    x = torch.linspace(-2000, 2000, 4_000_001, dtype=torch.float64)  # atan has heavy tails
    area = torch.trapezoid(get_surrogate(surrogate).grad(x), x)
    assert abs(area.item() - 1.0) < 1e-3


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend", FAST_BACKENDS)
@pytest.mark.parametrize("detach_reset", [False, True])
@pytest.mark.parametrize("surrogate", ["triangle", "sigmoid"])
def test_fast_paths_match_autograd_of_reference_loop(backend, detach_reset, surrogate, device):
    skip_unless_compiles(backend, device)
    torch.manual_seed(0)
    x = (torch.randn(6, 4, 3, 5, dtype=torch.float64) * 1.2 + 0.4).to(device)
    x[2, 0, 0, 0] = 1.0  # exactly at threshold
    x[0, 1, 1, 1] = 1.0
    x[3, 2, 2, 2] = 1.0 - 0.5 * x[2, 2, 2, 2]  # charge exactly at threshold after a leak, if x[2] < 1
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_a = LIF(surrogate=surrogate, detach_reset=detach_reset, backend=backend)(a)
    out_b = lif_reference(b, 0.5, 1.0, get_surrogate(surrogate), detach_reset)
    w = torch.randn_like(out_a)
    (out_a * w).sum().backward()
    (out_b * w).sum().backward()
    assert torch.equal(out_a, out_b)
    assert torch.allclose(a.grad, b.grad, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend", FAST_BACKENDS)
@pytest.mark.parametrize("decay", [0.25, 0.9])
def test_fast_paths_in_float32_channels_last_and_inference(backend, decay, device):
    skip_unless_compiles(backend, device)
    torch.manual_seed(1)
    x = (torch.randn(4, 3, 6, 5, 7) * 1.5 + 0.5).to(device)
    x[1, 0, 0, 0, 0] = 1.0
    x = x.flatten(0, 1).contiguous(memory_format=torch.channels_last).unflatten(0, (4, 3))
    a, b = x.clone().requires_grad_(), x.contiguous().requires_grad_()
    lif = LIF(decay=decay, backend=backend)
    out_a = lif(a)
    out_b = lif_reference(b, decay, 1.0, get_surrogate("triangle"), False)
    assert out_a.stride() == x.stride()  # the layout is kept, no copy to contiguous
    assert torch.equal(out_a, out_b)
    w = torch.randn_like(out_b)
    (out_a * w).sum().backward()
    (out_b * w).sum().backward()
    assert torch.allclose(a.grad, b.grad, atol=1e-6)
    with torch.no_grad():  # inference keeps nothing for backward and gives the same spikes
        assert torch.equal(lif(x), out_b)
        strided = x[:, :, :, ::2]  # no dense layout: the path copies, same numbers
        assert torch.equal(lif(strided), lif_reference(strided, decay, 1.0, get_surrogate("triangle"), False))


def test_auto_backend_falls_back_to_eager_when_the_compiler_fails(monkeypatch):
    from torch._dynamo.exc import BackendCompilerFailed

    def broken(fn, key=()):
        def run(*args):
            raise BackendCompilerFailed(broken, RuntimeError("no compiler"), None)
        return run

    monkeypatch.setattr(kernels, "compiled", broken)
    monkeypatch.setattr(kernels, "compiler_available", lambda device_type: True)
    x = torch.randn(4, 2, 3) + 0.8

    def a_command():  # a context of its own, as sakd.cli.main runs each command: the failure stays in it
        with pytest.warns(RuntimeWarning, match="using the eager 'fused' backend"):
            out = LIF(backend="auto")(x)
        assert kernels.failed()
        assert torch.equal(out, lif_reference(x, 0.5, 1.0, get_surrogate("triangle"), False))
        with pytest.raises(BackendCompilerFailed):  # asked for explicitly: no silent fallback
            LIF(backend="compiled")(x)

    contextvars.copy_context().run(a_command)
    assert not kernels.failed()  # the next command tries the compiler again


@pytest.mark.skipif(not kernels.compiler_available("cpu"), reason="torch.compile has no C++ compiler here")
def test_each_compiled_kernel_is_one_graph_whatever_the_dtypes_sizes_and_gradient_layouts():
    """The models' setting (λ=0.5, T=4) through two dtypes, N = 0, 1 and larger N of several
    ranks, broadcast (zero-stride) and dense output gradients, no_grad, inference_mode and
    autocast: every compiled copy is one dtype, device and mode with one graph (N >= 2 dynamic;
    N < 2 runs eagerly), so no sequence of calls reaches Dynamo's recompile limit (a hard error
    under fullgraph: long test sessions hit it)."""
    import torch._dynamo.config as dynamo_config

    limit = "recompile_limit" if hasattr(dynamo_config, "recompile_limit") else "cache_size_limit"
    lif = LIF(backend="compiled")
    with dynamo_config.patch({limit: 1}):
        for dtype in (torch.float32, torch.float64):
            for shape in ((4, 0), (4, 1), (4, 1, 1, 1), (4, 2), (4, 5), (4, 2, 7), (4, 4, 3, 3)):
                x = (torch.randn(shape) * 0.6 + 0.7).to(dtype)
                a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
                out = lif(a)
                assert torch.equal(out, lif_reference(x, 0.5, 1.0, get_surrogate("triangle"), False))
                out.sum().backward()  # a broadcast gradient
                lif_reference(b, 0.5, 1.0, get_surrogate("triangle"), False).sum().backward()
                assert torch.equal(a.grad, b.grad)
                lif(a)[1].mul(torch.randn(shape[1:], dtype=dtype)).sum().backward()  # a dense one
                with torch.no_grad():
                    lif(x)
                with torch.inference_mode():  # inference tensors (the analysis makes them)
                    assert torch.equal(lif(x.clone()), out)
                with torch.autocast("cpu", dtype=torch.bfloat16):  # mixed precision training
                    c = x.clone().requires_grad_()
                    lif(c).sum().backward()
                    assert torch.equal(c.grad, b.grad)


@pytest.mark.parametrize("backend", backends_on("cpu"))
def test_reset_path_carries_gradient_unless_detached(backend):
    # H1 = 1.5 -> S1 = 1, V1 = H1(1 - S1) = 0; H2 = 0.5 V1 + 0.2 = 0.2 -> S2 = 0.
    # dS2/dx1 = sg(H2 - 1) · 0.5 · dV1/dH1, with sg(-0.8) = 0.2 and
    # dV1/dH1 = (1 - S1) - H1 · sg(H1 - 1) = 0 - 1.5 · 0.5 = -0.75 through the reset, 0 detached.
    # dS2/dx2 = sg(-0.8) = 0.2 either way.
    expected = {False: [0.2 * 0.5 * -0.75, 0.2], True: [0.0, 0.2]}
    for detach, grad in expected.items():
        x = torch.tensor([[1.5], [0.2]], dtype=torch.float64, requires_grad=True)
        LIF(detach_reset=detach, backend=backend)(x)[1].sum().backward()
        assert torch.allclose(x.grad.flatten(), torch.tensor(grad, dtype=torch.float64), atol=1e-15), detach


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_every_backend_keeps_the_membrane_in_float32(dtype, device):
    # charges near the threshold: a half-precision membrane would round some of them across V_th
    torch.manual_seed(3)
    x = (torch.randn(6, 64, 33) * 0.6 + 0.55).to(device, dtype)
    expected = lif_reference(x.float(), 0.5, 1.0, get_surrogate("triangle"), False)
    w = torch.randn(6, 64, 33, device=device)
    grads = {}
    for backend in backends_on(device):
        a = x.clone().requires_grad_()
        out = LIF(backend=backend)(a)
        assert out.dtype == dtype and torch.equal(out.float(), expected), backend
        (out.float() * w).sum().backward()
        assert a.grad.dtype == dtype
        grads[backend] = a.grad
    for backend in backends_on(device)[1:]:
        assert torch.equal(grads[backend], grads["reference"]), backend


@pytest.mark.parametrize("device", DEVICES)
def test_whole_model_under_bf16_autocast_gives_identical_spikes_and_gradients_on_every_backend(device, monkeypatch):
    from sakd.models import create_model

    torch.manual_seed(0)
    x, y = torch.randn(8, 3, 16, 16, device=device), torch.randint(0, 10, (8,), device=device)
    ref = create_model("resnet_tiny", spiking=True, num_classes=10, timesteps=4, neuron={"backend": "reference"})
    results = {}
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)  # the same convolution algorithms each time
    for backend in backends_on(device):
        net = create_model("resnet_tiny", spiking=True, num_classes=10, timesteps=4, neuron={"backend": backend})
        net.load_state_dict(ref.state_dict())
        net.to(device)
        spikes = []
        for m in net.modules():
            if isinstance(m, LIF):
                m.register_forward_hook(lambda mod, i, o, spikes=spikes: spikes.append(o))
        with torch.autocast(device, dtype=torch.bfloat16):
            logits = net(x)
        torch.nn.functional.cross_entropy(logits.float(), y).backward()
        results[backend] = (spikes, logits, [p.grad for p in net.parameters()])
    base_spikes, base_logits, base_grads = results["reference"]
    assert sum(int(s.sum()) for s in base_spikes) > 0
    for backend in backends_on(device)[1:]:
        spikes, logits, grads = results[backend]
        assert all(torch.equal(a, b) for a, b in zip(spikes, base_spikes, strict=True)), backend
        assert torch.equal(logits, base_logits), backend
        assert all(torch.equal(a, b) for a, b in zip(grads, base_grads, strict=True)), backend


def test_lif_is_stateless_between_calls():
    lif = LIF()
    x = torch.rand(4, 8, 3) * 2
    assert torch.equal(lif(x), lif(x))


def test_unknown_backend_is_a_clear_error():
    with pytest.raises(ConfigError, match="unknown LIF backend 'cuda'.*'auto', 'compiled', 'fused', 'reference'"):
        LIF(backend="cuda")


def test_unknown_surrogate_is_a_clear_error():
    with pytest.raises(ConfigError, match="unknown surrogate 'triangel'.*triangle"):
        LIF(surrogate="triangel")


def test_lif_rejects_unbatched_input():
    with pytest.raises(ValueError, match=r"\[T, B, \.\.\.\]"):
        LIF()(torch.ones(3))


@pytest.mark.skipif(torch.cuda.is_available(), reason="the notice only appears without CUDA")
def test_cpu_machines_do_not_print_the_cuda_home_notice_but_keep_other_warnings(monkeypatch, caplog):
    monkeypatch.setenv("CUDA_HOME", "/usr/local")
    kernels.quiet_cuda_home_notice()  # what building a kernel does first (importing cpp_extension logs it too)
    from torch.utils import cpp_extension

    with caplog.at_level(logging.WARNING, logger="torch.utils.cpp_extension"):
        assert cpp_extension._find_cuda_home() == "/usr/local"  # the call that logs the notice
        logging.getLogger("torch.utils.cpp_extension").warning("a real warning")
    assert [r.getMessage() for r in caplog.records] == ["a real warning"]
