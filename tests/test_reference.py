"""The loop against a plain PyTorch loop written out here (torchtune's kind of test: exact values).

Everything the loop adds between a batch and a weight update (Accelerate's accumulation, the correction of a
short last window, gradient clipping, weight-decay groups, the warmup-then-linear schedule stepped once per
optimizer step) must come to what the textbook loop below computes from the same starting weights and the
same micro-batches: AdamW on the mean cross-entropy of each step's examples, clipped to --max_grad_norm, at
the learning rate the linear schedule gives that step. A bug in any of those parts (a schedule stepped twice,
clipping skipped, the short window's gradient halved, a norm weight decayed) moves the weights by far more
than float32 rounding does, and the logged losses with them.
"""

import copy
import os

import pytest
import torch
import torch.nn.functional as F

from conftest import read_jsonl, tiny_args
from loop import Loop, parse_args

LR, WARMUP, WEIGHT_DECAY, CLIP = 1e-3, 2, 0.01, 0.5
BATCH, ACCUMULATION, EXAMPLES, EPOCHS = 8, 2, 40, 2  # 5 micro-batches an epoch: windows of 2, 2 and 1


class Recording(Loop):
    """The loop as it is, keeping the weights it starts from, every micro-batch it trains on (in order)
    and the weights it ends with."""

    def on_train_start(self):
        self.start_model = copy.deepcopy(self.unwrapped_model)
        self.micro_batches = []

    def training_step(self, batch):
        self.micro_batches.append({k: v.detach().clone() for k, v in batch.items()})
        return super().training_step(batch)

    def on_train_end(self):
        self.end_weights = {k: v.detach().clone() for k, v in self.unwrapped_model.state_dict().items()}


def linear_with_warmup(step, total):
    """The learning rate's factor at optimizer step `step` (0-based): up from 0 over WARMUP steps, then
    down to 0 at `total`."""
    if step < WARMUP:
        return step / WARMUP
    return max(0.0, (total - step) / (total - WARMUP))


def reference_training(model, micro_batches):
    """AdamW on `model`, one step per ACCUMULATION micro-batches (an epoch's last window may hold fewer),
    each step on the mean loss over its examples; returns the loss of each step."""
    no_decay = [p for n, p in model.named_parameters() if n.endswith("bias") or "norm" in n.lower()]
    decay = [p for n, p in model.named_parameters() if not (n.endswith("bias") or "norm" in n.lower())]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": WEIGHT_DECAY},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=LR, betas=(0.9, 0.999), eps=1e-8)
    per_epoch = -(-EXAMPLES // BATCH)
    windows = []
    for epoch in range(EPOCHS):
        batches = micro_batches[epoch * per_epoch:(epoch + 1) * per_epoch]
        windows += [batches[i:i + ACCUMULATION] for i in range(0, per_epoch, ACCUMULATION)]
    model.train()
    losses = []
    for step, window in enumerate(windows):
        examples = sum(len(b["labels"]) for b in window)
        total = 0.0
        for batch in window:
            inputs = {k: v for k, v in batch.items() if k != "labels"}
            loss = F.cross_entropy(model(**inputs).logits, batch["labels"], reduction="sum") / examples
            loss.backward()
            total += loss.item()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        for group in optimizer.param_groups:
            group["lr"] = LR * linear_with_warmup(step, len(windows))
        optimizer.step()
        optimizer.zero_grad()
        losses.append(total)
    return losses


def test_training_equals_a_plain_pytorch_loop(tiny_model, tiny_data, tmp_path):
    out = str(tmp_path / "out")
    loop = Recording(parse_args(tiny_args(
        tiny_model, tiny_data, out, num_train_epochs=EPOCHS, max_train_samples=EXAMPLES, max_eval_samples=16,
        per_device_train_batch_size=BATCH, gradient_accumulation_steps=ACCUMULATION, learning_rate=LR,
        warmup_steps=WARMUP, weight_decay=WEIGHT_DECAY, max_grad_norm=CLIP, lr_scheduler_type="linear",
        logging_steps=1, config_overrides="dropout=0.0,attention_dropout=0.0,seq_classif_dropout=0.0")))
    loop.fit()
    steps = EPOCHS * -(-EXAMPLES // (BATCH * ACCUMULATION))
    assert len(loop.micro_batches) == EPOCHS * -(-EXAMPLES // BATCH)
    assert all(len(b["labels"]) == BATCH for b in loop.micro_batches)  # 40 = 5 full batches an epoch

    reference = copy.deepcopy(loop.start_model)
    want_losses = reference_training(reference, loop.micro_batches)
    logged = [r for r in read_jsonl(os.path.join(out, "metrics.jsonl")) if "loss" in r]
    assert [r["step"] for r in logged] == list(range(1, steps + 1))
    assert [r["loss"] for r in logged] == pytest.approx(want_losses, rel=1e-5)
    # (each line logs the rate after its step, which the next step uses, as Trainer logs it: README)
    assert [r["learning_rate"] for r in logged] == pytest.approx(
        [LR * linear_with_warmup(s + 1, steps) for s in range(steps)], rel=1e-9)

    want = reference.state_dict()
    moved = max((want[k] - loop.start_model.state_dict()[k]).abs().max().item() for k in want)
    diff = max((loop.end_weights[k] - want[k]).abs().max().item() for k in want)
    assert moved > 1e-3  # the weights did move: the comparison below is not of two untouched models
    # (bit-identical on this CPU build today; the margin is for another torch's kernels, while a decayed norm weight
    # alone moves them by 3e-5, and a doubled schedule step, no clipping or a halved last window change the losses)
    assert diff < 2e-6, f"the loop's weights differ from the plain loop's by {diff} (moved by {moved})"
