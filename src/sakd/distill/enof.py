"""EnOF's output-feature distillation: the SNN's output feature goes through the ANN teacher's
classifier, whose logits then learn the teacher's (Guo et al., NeurIPS 2024, "EnOF-SNN: training
accurate spiking neural networks via enhancing the output feature"; written from the paper's
abstract and summaries, as neither its body nor code was available here).

``L_AF = τ² · KL(p_τ(z_t) ‖ p_τ(head_t(f̄_s)))``, with ``f̄_s`` the student's last-stage feature
averaged over time and space (the pooled feature before the classifier), ``head_t`` the teacher's
classifier (frozen: gradients pass through it into the student's backbone, none reach the
teacher or the student's own classifier) and ``z_t`` the teacher's logits. The teacher's
classifier is the better-trained reader of a same-architecture feature, so matching through it
makes the SNN's feature carry what the ANN's does. Choices the available text leaves open: τ = 4
with sakd's τ² convention, the last tap of ``distill.features`` (``taps``). The paper's other
half, RepAct (the last LIF before the output feature replaced by a ReLU), changes the network:
``model.options.output_relu: true`` on sakd's ResNets (the recipe sets it); without it the feature
the teacher's classifier reads is the student's spike rate. On sakd's ResNet-19 (classifier
fc1 -> act -> fc2) the "output feature" is the pooled last stage, read by the teacher's whole
fc1 -> ReLU -> fc2. The student's tap must have the teacher's
channels, and must be what the classifier reads (checked at the first step).
"""

from __future__ import annotations

import torch

from sakd.distill.terms import LOSSES, LossTerm, TermInputs, check_head_input, pick_taps, soft_kl, time_mean
from sakd.errors import ConfigError


@LOSSES.register("enof")
class OutputFeatureKD(LossTerm):
    """EnOF (Guo et al. 2024): the SNN's pooled output feature read by the ANN's classifier learns the ANN's logits"""

    needs_teacher = True
    needs_features = True
    feature_timesteps = False  # the student's features through time_mean only

    def __init__(self, student_channels: list[int], teacher_channels: list[int], teacher_head, tau: float = 4.0,
                 taps: list[int] | None = None):
        super().__init__()
        if tau <= 0:
            raise ValueError(f"tau must be > 0, got {tau}")
        (self.tap,) = pick_taps("enof", taps, len(student_channels), [-1])
        if student_channels[self.tap] != teacher_channels[self.tap]:
            raise ConfigError(f"enof: the student's tap has {student_channels[self.tap]} channels, the teacher's "
                              f"classifier reads {teacher_channels[self.tap]}")
        self.tau = float(tau)
        self._head = [teacher_head]  # a plain list: the teacher's classifier is not this term's parameter
        self.head_checked = False  # whether the teacher's classifier was seen to read the chosen tap

    def forward(self, inputs: TermInputs) -> torch.Tensor:
        if not self.head_checked:
            check_head_input(self, self._head[0], time_mean(inputs.teacher_features[self.tap]), inputs.teacher_logits)
            self.head_checked = True
        pooled = time_mean(inputs.student_features[self.tap]).mean((2, 3))
        return soft_kl(self._head[0](pooled), inputs.teacher_logits, self.tau)
