"""R-Drop: two dropout passes per example, plus a KL term that makes them agree.

Liang et al., "R-Drop: Regularized Dropout for Neural Networks", NeurIPS 2021
(https://arxiv.org/abs/2106.14448). Each training batch goes through the model twice
(in one forward, as a doubled batch, so DDP and mixed precision see one ordinary call);
dropout makes the two predictions differ. The paper's loss per example (Eq. 3, and the official
fairseq criterion) is the cross-entropy of both copies plus alpha / 2 times the symmetric KL divergence
between their distributions; this is half of it, so the loss (and the learning rate that suits it) stays
on the scale of one cross-entropy while `rdrop_alpha` is the paper's alpha (its GLUE runs use 0.1 to 1):

    loss = (CE(p1, y) + CE(p2, y)) / 2 + alpha / 4 * (KL(p1 || p2) + KL(p2 || p1))

(The official repository's README snippet sums the KL over the batch and weighs it by alpha, not
alpha / 2: its alpha is not the paper's.) R-Drop is defined here for single-label classification (a softmax over the classes):
multi-label and regression data are refused, as its KL would not be the method's there.

Evaluation is unchanged (one pass, dropout off). The mean symmetric KL, (KL(p1 || p2) + KL(p2 || p1)) / 2, goes into each training-loss
line of metrics.jsonl as `rdrop_kl` (`self.track`: averaged over the steps and the processes,
kept in checkpoints like the loss).

    accelerate launch examples/rdrop.py --config configs/smoke.yaml --output_dir output/rdrop-accelerate --rdrop_alpha 1.0
    python examples/rdrop.py --config configs/smoke.yaml --output_dir output/rdrop
"""

import os
import sys
from dataclasses import dataclass, field

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import loop  # noqa: E402


@dataclass
class RDropConfig(loop.TrainConfig):
    rdrop_alpha: float = field(default=1.0, metadata={"help": "The paper's alpha: weight of the symmetric KL "
                                                              "term between the two passes (0.1 to 1 on GLUE)."})

    def __post_init__(self):
        super().__post_init__()
        if self.rdrop_alpha < 0:
            raise loop.UserError(f"--rdrop_alpha must be 0 or more, got {self.rdrop_alpha}.")


class RDropLoop(loop.Loop):
    uses_class_weights = True  # compute_loss below applies --class_weights itself (through weighted_loss)
    uses_example_weights = True  # and --weight_column's, passed twice for the batch scored twice

    def build_model(self):
        if not self.cfg.eval_only and (self.data.multi_label or self.data.regression):
            raise loop.UserError("examples/rdrop.py regularizes single-label classifiers (a KL between two softmax "
                                 "predictions); this data is " + ("multi-label" if self.data.multi_label else
                                 "a regression") + ": run loop/train.py on it.")
        return super().build_model()

    def compute_loss(self, model, batch):
        if not model.training:  # no dropout, nothing to regularize
            return super().compute_loss(model, batch)
        labels = batch["labels"]
        inputs = {k: torch.cat([v, v]) for k, v in batch.items() if k != "labels"}
        outputs = model(**inputs)
        logits = outputs.logits.float()  # the KL in fp32 even under bf16/fp16 autocast
        both = torch.cat([labels, labels])
        w = self.example_weights  # --weight_column's, one per example: the batch is scored twice, so twice
        ce = self.weighted_loss(logits, both, None if w is None else torch.cat([w, w]))  # and by --class_weights
        lp1, lp2 = logits.log_softmax(-1).chunk(2)
        kl = (F.kl_div(lp1, lp2, reduction="batchmean", log_target=True)
              + F.kl_div(lp2, lp1, reduction="batchmean", log_target=True)) / 2  # the mean of both directions
        self.last_kl = kl.detach()  # stays on the device: no host sync per step
        self.track("rdrop_kl", self.last_kl)
        # The paper's CE1 + CE2 + alpha/2 (KL12 + KL21), halved: ce is the mean of the two CEs, kl the mean KL
        return ce + self.cfg.rdrop_alpha / 2 * kl, outputs


if __name__ == "__main__":
    loop.main(loop_cls=RDropLoop, config_cls=RDropConfig)
