"""Layer-wise learning-rate decay (LLRD): lower layers of the encoder learn more slowly.

Howard & Ruder, "Universal Language Model Fine-tuning for Text Classification" (ULMFiT,
discriminative fine-tuning), ACL 2018 (https://arxiv.org/abs/1801.06146); the form used
here is that of Clark et al., ELECTRA, ICLR 2020 (https://arxiv.org/abs/2003.10555) and
Sun et al., "How to Fine-Tune BERT for Text Classification?", 2019 (https://arxiv.org/abs/1905.05583).

With L transformer layers, the head (classifier, pooler, final norms) gets --learning_rate,
layer i (0 = lowest) gets learning_rate * decay ** (L - i), and the embeddings get
learning_rate * decay ** (L + 1). Only `param_groups` changes (each of the loop's decay / no-decay
groups is split by depth, so the no-decay rule stays the loop's): the scheduler scales every
group's rate by the same factor, so the ratios hold through warmup and decay. Each group
carries a "name" (embeddings, layer_0, ..., head); their starting rates are written to
metrics.jsonl as `llrd_lr` when training starts. The head's groups come first, so the
`learning_rate` logged during training is the head's (the peak) rate.

    accelerate launch examples/llrd.py --config configs/smoke.yaml --output_dir output/llrd-accelerate --llrd_decay 0.8
    python examples/llrd.py --config configs/smoke.yaml --output_dir output/llrd
"""

import os
import re
import sys
from dataclasses import dataclass, field

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import loop  # noqa: E402

# "...layer.3.", "...layers.3." (BERT, DistilBERT, RoBERTa, DeBERTa, ModernBERT), "...h.3." (GPT-2)
LAYER = re.compile(r"\.(?:layer|layers|h|block)\.(\d+)\.")


@dataclass
class LLRDConfig(loop.TrainConfig):
    llrd_decay: float = field(default=0.8, metadata={"help": "Learning-rate factor per layer, from the top down (1 = off)."})


class LLRDLoop(loop.Loop):
    def param_groups(self, model):
        """The loop's decay / no-decay groups, each split by depth with its own rate."""
        cfg = self.cfg
        names = {id(p): n for n, p in model.named_parameters()}
        layers = [int(m.group(1)) for n in names.values() if (m := LAYER.search(n))]
        top = max(layers) + 1 if layers else 0  # number of transformer layers

        def depth(name):  # 0 = embeddings, i + 1 = layer i, top + 1 = head
            if m := LAYER.search(name):
                return int(m.group(1)) + 1
            return 0 if "embed" in name else top + 1

        groups = {}
        for base in super().param_groups(model):
            for p in base["params"]:
                d = depth(names[id(p)])
                label = "embeddings" if d == 0 else "head" if d == top + 1 else f"layer_{d - 1}"
                group = groups.setdefault((d, base["name"]), {
                    **base, "name": label, "params": [], "lr": cfg.learning_rate * cfg.llrd_decay ** (top + 1 - d)})
                group["params"].append(p)
        return [groups[k] for k in sorted(groups, key=lambda k: (-k[0], k[1]))]  # the head first

    def on_train_start(self):
        if not self.resumed_from:
            lrs = {g["name"]: g.get("initial_lr", g["lr"]) for g in self.optimizer.param_groups}
            self.log({"step": self.state.global_step, "llrd_lr": lrs})


if __name__ == "__main__":
    loop.main(loop_cls=LLRDLoop, config_cls=LLRDConfig)
