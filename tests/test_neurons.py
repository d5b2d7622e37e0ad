import pytest
import torch

from sakd.errors import ConfigError
from sakd.neurons import LIF, get_surrogate, lif_reference


def test_lif_forward_matches_hand_computed_sequence():
    # λ=0.5, V_th=1. Inputs for one neuron over 5 steps; step 2 lands exactly on the threshold.
    x = torch.tensor([0.6, 0.7, 0.3, 2.0, 0.1]).view(5, 1)
    # H1=0.6 no spike, V=0.6; H2=0.3+0.7=1.0 -> spike (>=), V=0; H3=0.3 -> V=0.3;
    # H4=0.15+2.0=2.15 -> spike, V=0; H5=0.1 -> no spike.
    expected = torch.tensor([0.0, 1.0, 0.0, 1.0, 0.0]).view(5, 1)
    for backend in ("fused", "reference"):
        assert torch.equal(LIF(backend=backend)(x), expected)


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


@pytest.mark.parametrize("detach_reset", [False, True])
@pytest.mark.parametrize("surrogate", ["triangle", "sigmoid"])
def test_fused_bptt_matches_autograd_of_reference_loop(detach_reset, surrogate):
    torch.manual_seed(0)
    x = (torch.randn(6, 4, 3, 5, dtype=torch.float64) * 1.2 + 0.4)
    x[2, 0, 0, 0] = 1.0  # exactly at threshold
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_a = LIF(surrogate=surrogate, detach_reset=detach_reset)(a)
    out_b = lif_reference(b, 0.5, 1.0, get_surrogate(surrogate), detach_reset)
    w = torch.randn_like(out_a)
    (out_a * w).sum().backward()
    (out_b * w).sum().backward()
    assert torch.equal(out_a, out_b)
    assert torch.allclose(a.grad, b.grad, atol=1e-12)


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


def test_unknown_surrogate_is_a_clear_error():
    with pytest.raises(ConfigError, match="unknown surrogate 'triangel'.*triangle"):
        LIF(surrogate="triangel")


def test_lif_rejects_unbatched_input():
    with pytest.raises(ValueError, match=r"\[T, B, \.\.\.\]"):
        LIF()(torch.ones(3))
