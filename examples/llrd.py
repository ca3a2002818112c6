"""Layer-wise learning-rate decay (LLRD): lower layers of the encoder learn more slowly.

Howard & Ruder, "Universal Language Model Fine-tuning for Text Classification" (ULMFiT,
discriminative fine-tuning), ACL 2018 (https://arxiv.org/abs/1801.06146); as used for BERT-style
encoders by Sun et al., "How to Fine-Tune BERT for Text Classification?", 2019
(https://arxiv.org/abs/1905.05583) and Clark et al., ELECTRA, ICLR 2020 (https://arxiv.org/abs/2003.10555).

With L transformer layers, the head (classifier, pooler, final norms) gets --learning_rate,
layer i (0 = lowest) gets learning_rate * decay ** (L - i), and the embeddings get
learning_rate * decay ** (L + 1): each layer one factor below the one above it. (The papers place the
top layer differently: Sun et al. give it the head's full rate, ELECTRA's code one more factor below the
head, decay ** 2; so the same --llrd_decay is one factor away from theirs at every layer.) The
embeddings are found by identity (the model's input embeddings: GPT-2's `wte`, T5's and BART's
`shared`) and by name (position embeddings). An encoder-decoder's decoder sits above its encoder:
decoder layer j is at depth L_encoder + j, L = L_encoder + L_decoder. A model whose layers are not
numbered in one of the usual ways (`layer.N`, `layers.N`, `h.N`, `block.N`: ALBERT shares one layer group,
Funnel numbers blocks) is refused, as LLRD would lower the embeddings alone.

Only `param_groups` changes (each of the loop's decay / no-decay
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
# position embeddings not named "embed...": GPT-2's wpe
POSITIONS = re.compile(r"(?:^|\.)wpe\.")


@dataclass
class LLRDConfig(loop.TrainConfig):
    llrd_decay: float = field(default=0.8, metadata={"help": "Learning-rate factor per layer, from the top down (1 = off)."})

    def __post_init__(self):
        super().__post_init__()
        if not self.llrd_decay > 0:  # 0 would freeze everything below the head, a negative rate climb the loss
            raise loop.UserError(f"--llrd_decay must be above 0 (0.8: each layer at 0.8 of the one above), got "
                                 f"{self.llrd_decay}.")


class LLRDLoop(loop.Loop):
    def param_groups(self, model):
        """The loop's decay / no-decay groups, each split by depth with its own rate."""
        cfg = self.cfg
        names = {id(p): n for n, p in model.named_parameters()}
        embeddings = {id(p) for p in model.get_input_embeddings().parameters()}  # wte, shared: not named "embed"
        config = getattr(model, "config", None)
        stacked = bool(getattr(config, "is_encoder_decoder", False))  # the decoder's layers above the encoder's

        def layer(name):  # (stack, index) of a layer's parameter, else None; stack 1 = an encoder-decoder's decoder
            if m := LAYER.search(name):
                return int(stacked and ".decoder." in f".{name}"), int(m.group(1))
            return None

        counts = [0, 0]  # layers per stack
        for n in names.values():
            if at := layer(n):
                counts[at[0]] = max(counts[at[0]], at[1] + 1)
        top = sum(counts)  # number of transformer layers
        if top == 0:
            raise loop.UserError(f"examples/llrd.py found no numbered transformer layers in {type(model).__name__} "
                                 "(layer.N, layers.N, h.N or block.N); layer-wise decay would lower the embeddings "
                                 "alone: train it with loop/train.py.")

        def depth(pid):  # 0 = embeddings, i + 1 = layer i (counted up through the stacks), top + 1 = head
            name = names[pid]
            if pid in embeddings:
                return 0
            if at := layer(name):
                return counts[0] * at[0] + at[1] + 1
            if "embed" in name or POSITIONS.search(name):
                return 0
            if stacked and ".encoder." in f".{name}":  # T5's encoder final_layer_norm: the encoder's top, below the decoder
                return counts[0]
            return top + 1

        groups = {}
        for base in super().param_groups(model):
            for p in base["params"]:
                d = depth(id(p))
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
