import pytest
import torch

from sakd.errors import ConfigError
from sakd.neurons import LIF, get_surrogate, kernels, lif_reference

FAST_BACKENDS = ["fused", pytest.param("compiled", marks=pytest.mark.skipif(
    not kernels.compiler_available("cpu"), reason="torch.compile has no C++ compiler here"))]


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


@pytest.mark.parametrize("backend", FAST_BACKENDS)
@pytest.mark.parametrize("detach_reset", [False, True])
@pytest.mark.parametrize("surrogate", ["triangle", "sigmoid"])
def test_fast_paths_match_autograd_of_reference_loop(backend, detach_reset, surrogate):
    torch.manual_seed(0)
    x = (torch.randn(6, 4, 3, 5, dtype=torch.float64) * 1.2 + 0.4)
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


@pytest.mark.parametrize("backend", FAST_BACKENDS)
@pytest.mark.parametrize("decay", [0.25, 0.9])
def test_fast_paths_in_float32_channels_last_and_inference(backend, decay):
    torch.manual_seed(1)
    x = torch.randn(4, 3, 6, 5, 7) * 1.5 + 0.5
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
    monkeypatch.setattr(kernels, "_failure", [])
    monkeypatch.setattr(kernels, "compiler_available", lambda device_type: True)
    x = torch.randn(4, 2, 3) + 0.8
    with pytest.warns(RuntimeWarning, match="using the eager 'fused' backend"):
        out = LIF(backend="auto")(x)
    assert torch.equal(out, lif_reference(x, 0.5, 1.0, get_surrogate("triangle"), False))
    with pytest.raises(BackendCompilerFailed):  # asked for explicitly: no silent fallback
        LIF(backend="compiled")(x)


@pytest.mark.skipif(not torch.cuda.is_available() or not kernels.compiler_available("cuda"),
                    reason="needs a CUDA device with Triton")
def test_compiled_cuda_kernel_matches_reference():
    torch.manual_seed(2)
    x = (torch.randn(4, 8, 16, 9, 9, device="cuda") * 1.5 + 0.5)
    x[2, 0, 0, 0, 0] = 1.0
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_a = LIF(backend="compiled")(a)
    out_b = lif_reference(b, 0.5, 1.0, get_surrogate("triangle"), False)
    assert torch.equal(out_a, out_b)
    w = torch.randn_like(out_b)
    (out_a * w).sum().backward()
    (out_b * w).sum().backward()
    assert torch.allclose(a.grad, b.grad, atol=1e-6)


def test_reset_path_carries_gradient_unless_detached():
    x = torch.tensor([[1.5], [0.2]], requires_grad=True)
    grads = []
    for detach in (False, True):
        x.grad = None
        LIF(detach_reset=detach)(x)[1].sum().backward()
        grads.append(x.grad[0].item())
    # H2 = 0.5*H1*(1-S1) + x2; dS2/dx1 through the reset term is -0.5*H1*sg(H1-1)*sg(H2-1)
    assert grads[0] != grads[1]


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
