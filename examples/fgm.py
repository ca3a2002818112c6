"""FGM: adversarial training on the word embeddings.

Miyato, Dai and Goodfellow, "Adversarial Training Methods for Semi-Supervised Text Classification",
ICLR 2017 (https://arxiv.org/abs/1605.07725). Per micro-batch: a clean forward and backward, then
r = fgm_epsilon * g / ||g|| added to the word-embedding matrix (g: that micro-batch's gradient of
it), a forward and backward on the perturbed embeddings, and the embeddings put back. The optimizer
step uses the sum of both gradients.

Three traps this version avoids (each makes the run silently differ from the method):
- Under gradient accumulation `.grad` already holds the window's earlier micro-batches: they are set
  aside, so r comes from this micro-batch's gradient alone, then added back.
- Under DDP a synced backward averages the gradients across processes: the clean backward runs under
  `no_sync`, so r is each process's own micro-batch gradient (as on one process) and the gradients
  of both passes are averaged once, on the window's last micro-batch.
- The embeddings are restored from a copy: (w + r) - r is not w in floating point, and r differs per
  process, so subtracting lets the replicas drift apart (the loop refuses that at the next save).

epsilon bounds the L2 norm of the perturbation of the whole embedding matrix for one micro-batch (as the
widely used FGM code for fine-tuning does), not of each example's embedded sequence as in Miyato et al.:
the rows of the words a micro-batch holds share it, so each example's part shrinks as
--per_device_train_batch_size grows (measured on a tiny model: about 1.0 at batch 1, 0.7 at 4, 0.36 at
16); tune it with the batch size fixed.

Not with --lora_r (the word embeddings are frozen: they have no gradient to perturb along), FSDP or
DeepSpeed (they shard the embeddings; DeepSpeed's engine owns the gradients): refused at the start.

With --auto_find_batch_size the batch is tried through compute_loss (loop/memory.py), not this training_step:
the three copies of the embedding matrix a step holds beside it (the copy, r, the summed gradient) are not
counted; with a large vocabulary set --per_device_train_batch_size yourself.

The adversarial loss goes into each training-loss line as `fgm_adv_loss`.

    accelerate launch examples/fgm.py --config configs/smoke.yaml --output_dir output/fgm --fgm_epsilon 1.0
"""

import os
import sys
from dataclasses import dataclass, field

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

import loop  # noqa: E402
from loop import distributed  # noqa: E402


@dataclass
class FGMConfig(loop.TrainConfig):
    fgm_epsilon: float = field(default=1.0, metadata={"help": "L2 norm of the word-embedding perturbation."})


class FGMLoop(loop.Loop):
    def check_options(self):
        super().check_options()
        if self.cfg.eval_only:  # scoring a saved model: no step, no perturbation
            return
        if self.cfg.lora_r:
            raise loop.UserError("examples/fgm.py perturbs the word embeddings along their gradient, and --lora_r "
                                 "freezes them (no gradient); drop --lora_r.")
        sharder = distributed.sharder(self.accelerator)
        if sharder:
            raise loop.UserError(f"examples/fgm.py reads and perturbs the whole word-embedding matrix and its "
                                 f"gradient, which {sharder} shards; run it on one process or under DDP.")

    def training_step(self, batch):
        acc = self.accelerator
        embeddings = self.unwrapped_model.get_input_embeddings().weight
        earlier, embeddings.grad = embeddings.grad, None  # the window's earlier micro-batches, set aside
        with acc.no_sync(self.model):  # the clean pass: this process's gradient only
            loss, _ = self.compute_loss(self.model, batch)
            self.backward(loss)
        g = embeddings.grad
        r = self.cfg.fgm_epsilon * g / g.norm().clamp_min(1e-12)
        embeddings.grad = g if earlier is None else earlier + g
        saved = embeddings.detach().clone()
        with torch.no_grad():
            embeddings.add_(r)
        adversarial, _ = self.compute_loss(self.model, batch)  # synced on the window's last micro-batch
        self.backward(adversarial)
        with torch.no_grad():
            embeddings.copy_(saved)
        self.track("fgm_adv_loss", adversarial.detach())
        return loss.detach() * distributed.loss_shares(self)[1]  # the logged loss, weighed as the base step's


if __name__ == "__main__":
    loop.main(loop_cls=FGMLoop, config_cls=FGMConfig)
