"""The distillation methods as registered loss terms: each against a hand-computed value on tiny
tensors, each through one training step, SAKD's own terms unchanged by the move, and the errors
a user meets when a term lacks its inputs."""

import json
import math

import pytest
import torch

from conftest import fast_config
from objective_inputs import RECORD, recipe_values
from sakd.distill import LOSSES, SAKDLoss, TermInputs, TermSpec
from sakd.distill.terms import build_term
from sakd.errors import ConfigError
from sakd.training import Trainer


LN3 = math.log(3.0)


def kl(p, q):
    return sum(a * math.log(a / b) for a, b in zip(p, q) if a > 0)


def softmax(z, tau=1.0):
    e = [math.exp(v / tau) for v in z]
    return [v / sum(e) for v in e]


def inputs(student, target=(0,), teacher=None, fs=None, ft=None, steps=None, epoch=0):
    t = lambda v: None if v is None else torch.tensor(v, dtype=torch.float64)  # noqa: E731
    per_step = t(steps)
    logits = per_step.mean(0) if per_step is not None else t(student)
    return TermInputs(logits, torch.tensor(target), t(teacher), fs, ft, per_step, epoch)


def test_recipes_give_the_loss_values_recorded_before_the_terms_were_registered():
    """Every packaged recipe's objective, on fixed float64 tensors, at each β-schedule step: the
    values the pre-registry SAKDLoss gave (tests/data/objective_values.json), to 1e-12. Recipes
    added since (the any-network and Spikformer ones) had no values then; every recorded one is
    still packaged."""
    recorded, today = json.loads(RECORD.read_text()), recipe_values()
    assert recorded.keys() <= today.keys()
    for name, steps in recorded.items():
        assert today[name].keys() == steps.keys(), name
        for epoch, values in steps.items():
            assert today[name][epoch] == pytest.approx(values, rel=1e-12, abs=1e-12), (name, epoch)


def test_logit_kd_is_hinton_kd_by_hand():
    z_s, z_t = [0.0, 0.0], [LN3, 0.0]  # teacher probabilities 3/4, 1/4
    for tau in (1.0, 2.0):
        got = build_term("logit_kd", {"tau": tau})(inputs([z_s], teacher=[z_t])).item()
        assert got == pytest.approx(tau * tau * kl(softmax(z_t, tau), softmax(z_s, tau)), rel=1e-12)


def test_timestep_kd_weighs_each_timesteps_kl_by_hand():
    steps = [[[0.0, 0.0]], [[LN3, 0.0]]]  # T=2, B=1: timestep 2 already equals the teacher
    first = kl([0.75, 0.25], [0.5, 0.5])
    for weighting, expected in (("uniform", first / 2), ("linear", first / 3), ([3.0, 1.0], first * 3 / 4)):
        term = build_term("timestep_kd", {"tau": 1.0, "weighting": weighting})
        assert term(inputs(None, teacher=[[LN3, 0.0]], steps=steps)).item() == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match="weighting must be"):
        build_term("timestep_kd", {"weighting": [1.0, 2.0, 3.0]})(inputs(None, teacher=[[LN3, 0.0]], steps=steps))


def test_temporal_self_distillation_by_hand_and_its_target_carries_no_gradient():
    steps = [[[0.0, 0.0]], [[math.log(9.0), 0.0]]]  # mean logits [ln 3, 0]: probabilities 3/4, 1/4
    expected = (kl([0.75, 0.25], [0.5, 0.5]) + kl([0.75, 0.25], [0.9, 0.1])) / 2
    term = build_term("temporal_sd", {"tau": 1.0})
    assert not term.needs_teacher
    x = inputs(None, steps=steps)
    x.student_timestep_logits.requires_grad_()
    value = term(x)
    assert value.item() == pytest.approx(expected, rel=1e-12)
    (grad,) = torch.autograd.grad(value, x.student_timestep_logits)
    # the gradient of KL(p̄ ‖ p_t) in z_t with p̄ fixed: (p_t - p̄) / T
    p_bar = torch.tensor([0.75, 0.25], dtype=torch.float64)
    expected_grad = torch.stack([torch.tensor([0.5, 0.5]), torch.tensor([0.9, 0.1])]).double().sub(p_bar) / 2
    torch.testing.assert_close(grad[:, 0], expected_grad)


def test_dkd_by_hand_and_kd_decomposes_into_its_parts():
    z_s, z_t = [0.0, 0.0, math.log(2.0)], [math.log(2.0), LN3, 0.0]  # p_s = 1/4 1/4 1/2, p_t = 2/6 3/6 1/6
    tckd = kl([1 / 3, 2 / 3], [1 / 4, 3 / 4])
    nckd = kl([3 / 4, 1 / 4], [1 / 3, 2 / 3])
    got = build_term("dkd", {"alpha": 1.0, "beta": 8.0, "tau": 1.0})(inputs([z_s], teacher=[z_t])).item()
    assert got == pytest.approx(tckd + 8 * nckd, rel=1e-12)
    # Zhao et al.'s identity: KD = TCKD + (1 - p_t^target) · NCKD, for any logits
    torch.manual_seed(0)
    s, t, y = torch.randn(1, 7, dtype=torch.float64), torch.randn(1, 7, dtype=torch.float64), torch.tensor([3])
    kd = build_term("logit_kd", {"tau": 2.0})(TermInputs(s, y, t))
    p_target = torch.softmax(t / 2.0, 1)[0, 3]
    tc = build_term("dkd", {"alpha": 1.0, "beta": 0.0, "tau": 2.0})(TermInputs(s, y, t))
    nc = build_term("dkd", {"alpha": 0.0, "beta": 1.0, "tau": 2.0})(TermInputs(s, y, t))
    torch.testing.assert_close(kd, tc + (1 - p_target) * nc)
    warm = build_term("dkd", {"tau": 1.0, "warmup": 4})
    assert warm(inputs([z_s], teacher=[z_t], epoch=0)).item() == pytest.approx(got / 4, rel=1e-12)
    assert warm(inputs([z_s], teacher=[z_t], epoch=9)).item() == pytest.approx(got, rel=1e-12)


def test_attention_transfer_by_hand():
    # two channels, two positions: the student attends to position 0, the teacher to position 1
    fs = torch.tensor([[[[1.0, 0.0]], [[1.0, 0.0]]]]).expand(3, 1, 2, 1, 2)  # [T=3, B, C, H, W]
    ft = torch.tensor([[[[0.0, 2.0]], [[0.0, 1.0]]]])
    term = build_term("at", {}, [2], [2])
    assert term(TermInputs(torch.zeros(1, 2), torch.tensor([0]), None, [fs], [ft])).item() == pytest.approx(1.0)
    same = build_term("at", {}, [2], [5])  # no parameters: the channels may differ
    assert (
        same(TermInputs(torch.zeros(1, 2), torch.tensor([0]), None, [fs], [fs.mean(0).repeat(1, 2, 1, 1)[:, :5]])) == 0
    )


def _identity_conv(conv):
    with torch.no_grad():
        conv.weight.zero_()
        k = conv.weight.shape[-1] // 2
        for c in range(conv.weight.shape[0]):
            conv.weight[c, c, k, k] = 1.0
        if conv.bias is not None:
            conv.bias.zero_()


def test_fitnet_regresses_the_middle_tap_by_hand():
    term = build_term("fitnet", {}, [2, 2, 2], [2, 2, 2])
    assert term.taps == [1]  # the middle tap, as Romero et al. guide a middle layer
    conv, bn = term.regressors[0]
    _identity_conv(conv)
    term.eval()  # BatchNorm with running mean 0, variance 1: x / sqrt(1 + eps)
    g = torch.Generator().manual_seed(0)
    fs = [torch.randn(2, 1, 2, 3, 3, generator=g) for _ in range(3)]
    ft = [torch.randn(1, 2, 3, 3, generator=g) for _ in range(3)]
    got = term(TermInputs(torch.zeros(1, 2), torch.tensor([0]), None, fs, ft))
    expected = ((fs[1].mean(0) / math.sqrt(1 + bn.eps) - ft[1]) ** 2).mean()
    torch.testing.assert_close(got, expected)
    assert build_term("fitnet", {"taps": [0, -1]}, [2, 3, 4], [5, 6, 7]).taps == [0, 2]
    with pytest.raises(ConfigError, match=r"loss term 'fitnet': taps \[3\] out of range for the 3 taps"):
        build_term("fitnet", {"taps": [3]}, [2, 3, 4], [5, 6, 7])


def test_bkd_restores_the_last_tap_and_masks_whole_channels():
    term = build_term("bkd", {"mask_ratio": 0.0}, [2, 2], [2, 2])
    assert term.taps == [1]  # the feature right before the classifier
    for conv in (term.restore[0][0], term.restore[0][2]):
        _identity_conv(conv)  # restore = ReLU
    fs = [None, torch.tensor([[[[1.0, -2.0]], [[4.0, 0.5]]]]).expand(2, 1, 2, 1, 2)]
    ft = [None, torch.tensor([[[[2.0, 0.0]], [[8.0, 1.0]]]])]
    got = term(TermInputs(torch.zeros(1, 2), torch.tensor([0]), None, fs, ft))
    restored = torch.tensor([[[[1.0, 0.0]], [[4.0, 0.5]]]])
    target = ft[1] / 8.0 * 4.0  # the teacher rescaled to the student's maximum
    torch.testing.assert_close(got, ((restored - target) ** 2).mean())
    torch.manual_seed(0)
    blurred = build_term("bkd", {"mask_ratio": 0.25}, [8], [8]).blur(torch.ones(64, 8, 3, 3))
    per_channel = blurred.flatten(2)
    assert bool(((per_channel == 0).all(2) | (per_channel == 1).all(2)).all())  # whole channels kept or dropped
    assert 0.2 < (per_channel[:, :, 0] == 0).double().mean() < 0.3


def test_terms_take_flat_options_and_name_what_is_wrong(tmp_path):
    cfg = fast_config(tmp_path, "distill.terms=[{name: dkd, weight: 2, tau: 3, beta: 4}]")
    assert cfg.distill.terms[0].options == {"tau": 3, "beta": 4}
    with pytest.raises(
        ConfigError, match="loss term 'dkd' has no option 'temperature'; its options: alpha, beta, tau, warmup"
    ):
        fast_config(tmp_path, "distill.terms=[{name: dkd, temperature: 3}]")
    with pytest.raises(ConfigError, match="loss term 'dkd': needs tau > 0"):
        SAKDLoss(alpha=1, terms=[TermSpec.of("dkd", 1, {"tau": 0})])
    with pytest.raises(ConfigError, match="distill.terms: 'fitnet' reads the teacher's features"):
        Trainer(fast_config(tmp_path, "distill.terms=[{name: fitnet, weight: 1}]"))
    with pytest.raises(ConfigError, match="distill.terms: 'dkd' reads the teacher's logits"):
        Trainer(fast_config(tmp_path, "distill.terms=[{name: dkd, weight: 1}]"))


def test_old_objective_state_dicts_load():
    """Checkpoints written before the terms were registered kept SAKD's transforms under
    ``transforms.`` and added terms under ``extra.``."""
    torch.manual_seed(0)
    new = SAKDLoss([2, 3], [4, 5], alpha=1, beta=1, terms=[TermSpec.of("fitnet", 1)])
    old = {k.replace("terms.feature_kd.", "").replace("terms.fitnet.", "extra.fitnet."): v.clone() + 1
           for k, v in new.state_dict().items()}
    new.load_state_dict(old)
    assert torch.equal(new.terms["feature_kd"].transforms[0].conv.weight, old["transforms.0.conv.weight"])
    assert torch.equal(new.terms["fitnet"].regressors[0][0].weight, old["extra.fitnet.regressors.0.0.weight"])


ONE_STEP = ["data.options={train_size: 16, test_size: 16}", "data.batch_size=16", "optim.epochs=1",
            "distill.alpha=1", "run.progress=false"]


@pytest.mark.parametrize("name", sorted(set(LOSSES.names()) - {"ce", "feature_kd", "logit_kd"}))
def test_each_method_trains_one_step(name, tmp_path, teacher_ckpt):
    term_cls = LOSSES.get(name)
    extra = [f"distill.teacher.weights={teacher_ckpt}"] if term_cls.needs_teacher or term_cls.needs_features else []
    trainer = Trainer(fast_config(tmp_path, *ONE_STEP, *extra, f"distill.terms=[{{name: {name}, weight: 1}}]"))
    before = {k: v.clone() for k, v in trainer.step_module.state_dict().items()}
    record = trainer.train_epoch()
    assert math.isfinite(record[f"train/{name}"]) and record[f"train/{name}"] > 0
    after = trainer.step_module.state_dict()
    assert any(not torch.equal(after[k], v) for k, v in before.items() if k.startswith("model."))
    own = [k for k, _ in trainer.step_module.named_parameters() if k.startswith(f"objective.terms.{name}.")]
    assert all(not torch.equal(after[k], before[k]) for k in own)  # its parameters train


def test_weight_schedules_by_hand_and_their_config_errors(tmp_path):
    from sakd.distill.schedule import WeightPoint as P, WeightSchedule

    step = WeightSchedule.of(10.0, [P(10, 0.01)])  # the paper's ImageNet β
    assert [step.at(e) for e in (0, 9, 10, 50)] == [10.0, 10.0, 0.01, 0.01]
    ramp = WeightSchedule.of(0.0, [P(4, 2.0, "linear"), P(6, 0.0, "cosine")])
    assert [ramp.at(e) for e in range(8)] == [0.0, 0.5, 1.0, 1.5, 2.0, pytest.approx(1.0, abs=1e-15), 0.0, 0.0]
    assert ramp.ever_on and ramp.ever_off(3) and not WeightSchedule.of(1.0).ever_off(5)
    assert not WeightSchedule.of(0.0, [P(3, 0.0)]).ever_on
    # a term whose weight is 0 at every epoch is not built; one that ramps in is, and is skipped while off
    loss = SAKDLoss(
        alpha=1, terms=[TermSpec.of("logit_kd", 0.0), TermSpec.of("timestep_kd", 0.0, schedule=[P(1, 1.0)])]
    )
    assert list(loss.terms) == ["ce", "timestep_kd"] and loss.weights(0) == {"ce": 1.0, "timestep_kd": 0.0}
    s, y, t = torch.tensor([[1.0, 0.0]]), torch.tensor([0]), torch.tensor([[0.0, 1.0]])
    assert list(loss(s, y, t, epoch=0).terms) == ["ce"] and list(loss(s, y, t, epoch=1).terms) == ["ce", "timestep_kd"]
    for bad, message in (
        (
            "[{name: dkd, schedule: [{epoch: 2, weight: 1}, {epoch: 2, weight: 0}]}]",
            "loss term 'dkd': the schedule names an epoch twice",
        ),
        (
            "[{name: dkd, schedule: [{epoch: 2, weight: -1}]}]",
            r"'distill.terms\[0\].schedule\[0\].weight' must be >= 0.0",
        ),
        (
            "[{name: dkd, schedule: [{epoch: 2, weight: 1, ramp: exp}]}]",
            r"'distill.terms\[0\].schedule\[0\].ramp' must be one of",
        ),
    ):
        with pytest.raises(ConfigError, match=message):
            fast_config(tmp_path, f"distill.terms={bad}")
