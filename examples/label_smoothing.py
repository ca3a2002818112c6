"""Label smoothing: train against soft targets instead of one-hot labels.

Szegedy et al., "Rethinking the Inception Architecture for Computer Vision", CVPR 2016
(https://arxiv.org/abs/1512.00567), section 7; see also Müller et al., "When Does Label
Smoothing Help?", NeurIPS 2019 (https://arxiv.org/abs/1906.02629).

The target puts 1 - eps on the true class and spreads eps uniformly over all K classes:
loss = (1 - eps) * CE(p, y) + eps * mean_k(-log p_k). It keeps the logits from growing
without bound and usually improves calibration. Only `compute_loss` changes; the
evaluation loss in metrics.jsonl stays the plain cross-entropy, so runs stay comparable.
The loop has this built in (--label_smoothing_factor, where --class_weights weigh each example by
its class); this example shows how a loss is overridden, and with --class_weights it weighs the
smoothed target per class, as PyTorch's `weight=` does.

    accelerate launch examples/label_smoothing.py --config configs/smoke.yaml --output_dir output/ls-accelerate --label_smoothing 0.1
    python examples/label_smoothing.py --config configs/smoke.yaml --output_dir output/ls
"""

import os
import sys
from dataclasses import dataclass, field

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import loop  # noqa: E402
from loop import UserError  # noqa: E402


@dataclass
class LabelSmoothingConfig(loop.TrainConfig):
    label_smoothing: float = field(default=0.1, metadata={"help": "Probability mass spread over all classes, in [0, 1)."})

    def __post_init__(self):
        super().__post_init__()
        if not 0 <= self.label_smoothing < 1:
            raise UserError(f"--label_smoothing must be in [0, 1), got {self.label_smoothing}.")
        if self.label_smoothing_factor:  # the loop's own would be ignored: compute_loss below replaces it
            raise UserError("this example smooths with --label_smoothing; drop --label_smoothing_factor (the loop's "
                            "own), or run loop/train.py with it.")
        if self.weight_column:  # compute_loss below weighs classes, not examples
            raise UserError("this example does not weigh examples; drop --weight_column, or run loop/train.py "
                            "--label_smoothing_factor with it.")


class LabelSmoothingLoop(loop.Loop):
    uses_class_weights = True  # compute_loss below applies --class_weights itself

    def build_model(self):
        if not self.cfg.eval_only and (self.data.multi_label or self.data.regression):  # known from the data only
            raise UserError("label smoothing spreads a single target over classes; this data is " + (
                "multi-label (no single target)" if self.data.multi_label else "a regression (no classes)")
                + ": run loop/train.py on it.")
        return super().build_model()

    def compute_loss(self, model, batch):
        inputs = {k: v for k, v in batch.items() if k != "labels"}  # the model need not compute its own loss
        outputs = model(**inputs)
        logits, labels, w = outputs.logits.float(), batch["labels"], self.class_weights
        if w is None:
            return F.cross_entropy(logits, labels, label_smoothing=self.cfg.label_smoothing), outputs
        # --class_weights: PyTorch's weighted mean, sum / sum(w[y]), but 0 rather than NaN for a micro-batch
        # of weight-0 classes alone (as Loop.weighted_loss)
        total = F.cross_entropy(logits, labels, weight=w, label_smoothing=self.cfg.label_smoothing, reduction="sum")
        loss = total / w[labels].sum().clamp_min(torch.finfo(torch.float32).tiny)
        return loss, outputs


if __name__ == "__main__":
    loop.main(loop_cls=LabelSmoothingLoop, config_cls=LabelSmoothingConfig)
