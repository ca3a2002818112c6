"""Knowledge distillation: a small student learns from a trained teacher's soft predictions.

Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network", 2015
(https://arxiv.org/abs/1503.02531); DistilBERT (Sanh et al., 2019) is a student of BERT. The teacher
is a trained classifier folder with the same labels and tokenizer (an earlier run's best/, or a Hub
name); it stays frozen beside the model, in eval mode, on the same device, and is never saved:
checkpoints and best/ hold the student alone. The loss mixes the hard labels and the teacher's
distribution softened by a temperature T:

    loss = (1 - alpha) * CE(student, y) + alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T))

(T^2 keeps the soft term's gradients on the scale of the hard one's as T grows.) Evaluation is
the student's, unchanged. The KL term goes into each training-loss line as `distill_kl`. A
checkpoint records a hash of the teacher's weights: a resume with another teacher is refused.

    python loop/train.py --config configs/smoke.yaml --output_dir output/teacher        # a teacher first
    python examples/distill.py --config configs/smoke.yaml --output_dir output/student \\
        --teacher output/teacher/best --config_overrides n_layers=1

(Measured on a 2-core CPU, 2026-12-01, these two commands: the 2-layer teacher 0.956 accuracy, its 1-layer
student 0.954.)
"""

import hashlib
import os
import sys
from dataclasses import dataclass, field
from typing import Optional

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import loop  # noqa: E402
from loop import UserError  # noqa: E402
from loop import models  # noqa: E402
from loop.errors import short  # noqa: E402


@dataclass
class DistillConfig(loop.TrainConfig):
    teacher: Optional[str] = field(default=None, metadata={
        "help": "The trained teacher: a model folder (an earlier run's best/) or a Hub name, with the student's "
                "labels and tokenizer."})
    distill_alpha: float = field(default=0.5, metadata={
        "help": "Weight of the teacher's soft targets, in [0, 1] (0: plain fine-tuning; 1: the labels unused)."})
    distill_temperature: float = field(default=2.0, metadata={
        "help": "Softmax temperature of both distributions in the soft term (> 0; higher: softer)."})
    # --teacher names a folder: '~' expanded, the same one by another path is the same run (and
    # best/training_args.json names it by its last part); a copy elsewhere (a job that stages it to its node's
    # disk) resumes too, as DistillLoop.resume_signature checks the teacher by its weights
    PATHS = loop.TrainConfig.PATHS + ("teacher",)
    resume_may_change = ("teacher",)

    def __post_init__(self):
        super().__post_init__()
        if not 0 <= self.distill_alpha <= 1:
            raise UserError(f"--distill_alpha must be in [0, 1], got {self.distill_alpha}.")
        if not self.distill_temperature > 0:
            raise UserError(f"--distill_temperature must be positive, got {self.distill_temperature}.")
        if self.eval_only:
            return  # the student is scored alone: no teacher needed
        if not self.teacher:
            raise UserError("--teacher is required: the trained classifier to distill from (e.g. an earlier "
                            "run's output/best).")
        if not os.path.isdir(self.teacher):  # a missing folder: now, not after the data is tokenized
            from huggingface_hub import constants, try_to_load_from_cache

            from loop.hub import folder_typo, hub_name

            if not hub_name(self.teacher):  # './best', '/runs/t/best': a folder meant
                raise UserError(f"--teacher '{self.teacher}' is not a folder (nor a Hub name, NAME or USER/NAME); "
                                f"pass the teacher run's best/ folder.")
            # 'teacher/best' is a valid Hub name too: from_pretrained would ask the Hub for it after the data work
            here = folder_typo(self.teacher)
            cached = isinstance(try_to_load_from_cache(self.teacher, "config.json"), str)
            if not cached and constants.HF_HUB_OFFLINE:
                raise UserError(f"--teacher '{self.teacher}' is not a folder{here}, and as a Hub name it is not in the "
                                f"cache while HF_HUB_OFFLINE is set; pass the teacher run's best/ folder.")
            if not cached and here and loop.errors.is_main_rank():
                print(f"[loop] warning: --teacher '{self.teacher}' is not a folder{here}: reading it as a Hub model "
                      f"name.", file=sys.stderr, flush=True)
        if self.weight_column:  # the soft term below weighs every example alike
            raise UserError("this example does not weigh examples; drop --weight_column.")


class DistillLoop(loop.Loop):
    uses_class_weights = True  # the hard term goes through weighted_loss (--class_weights, smoothing)

    def build_model(self):
        student = super().build_model()
        if self.cfg.eval_only:
            return student
        if self.data.multi_label or self.data.regression:
            raise UserError("examples/distill.py distills single-label classifiers (a softmax over classes); "
                            "this data is multi-label or regression.")
        self.teacher, self.teacher_order = self.load_teacher()
        return student

    def load_teacher(self):
        """The frozen teacher on this process's device, and the index that puts its logits in the
        student's label order (a teacher may number the same labels otherwise)."""
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        name = self.cfg.teacher
        try:
            teacher = AutoModelForSequenceClassification.from_pretrained(name, dtype=torch.float32)
            tokenizer = AutoTokenizer.from_pretrained(name)
        except (OSError, ValueError) as e:
            raise UserError(f"could not load the teacher '{name}' ({short(e)}); pass a trained "
                            f"classifier folder with its tokenizer, e.g. an earlier run's output/best.") from e
        vocab = tokenizer.get_vocab()
        if not set(vocab) - set(tokenizer.all_special_tokens):  # transformers 5 makes an empty one for a folder without
            raise UserError(f"the teacher '{name}' holds no tokenizer files; copy the tokenizer it was trained with "
                            f"into it (tokenizer.json, vocab.txt, ...).")
        if vocab != self.tokenizer.get_vocab():  # both read the one tokenization of each batch
            raise UserError(f"the teacher '{name}' has another tokenizer than the student; distill from a teacher "
                            f"that shares the student's tokenizer (--model_name_or_path / --tokenizer_name).")
        # The batch is padded by the student's tokenizer: the teacher's head finds each text's last token by that pad
        # id (a Llama teacher's config padding with <unk>, 0, read a padding position where the batch pads with </s>;
        # one without a pad id could not take a batch), as training makes the student's (models.sync_pad_token)
        models.sync_pad_token(teacher.config, self.tokenizer)
        # The batch is the student tokenizer's: the teacher gets the inputs its own tokenizer makes. Segment ids
        # a BERT teacher reads and a DistilBERT student's batch lacks are all 0 for one text; a pair's are unknown.
        self.teacher_inputs = list(tokenizer.model_input_names)
        if "token_type_ids" in self.teacher_inputs and "token_type_ids" not in self.tokenizer.model_input_names \
                and self.cfg.text_pair_column:
            raise UserError(f"the teacher '{name}' reads segment ids (token_type_ids) that the student's tokenizer "
                            f"does not make for a sentence pair; distill pairs from a teacher of the student's family.")
        positions = [getattr(teacher.config, f, None) for f in models.POSITION_FIELDS]
        limit = min((n for n in positions if isinstance(n, int) and n > 0), default=None)
        if limit is not None and limit < self.max_length:
            raise UserError(f"the teacher '{name}' reads at most {limit} positions, the student's inputs are up to "
                            f"{self.max_length} tokens long; pass --max_length {limit} or less.")
        kind = {"multi_label_classification": "multi-label", "regression": "regression"}.get(teacher.config.problem_type)
        if kind:  # its logits are not a softmax's (the student's data is single-label: build_model)
            raise UserError(f"the teacher '{name}' is a {kind} model; distill from a single-label classifier trained "
                            f"on these labels.")
        labels = [teacher.config.id2label[i] for i in range(teacher.config.num_labels)]
        if sorted(labels) != sorted(self.data.label_names):
            # the same classes under other names (IMDb's ClassLabel neg, pos and a teacher's NEGATIVE, POSITIVE):
            # --label_names names the data's ids as the teacher does (label names written as text it cannot rename)
            same = len(labels) == len(self.data.label_names) and self.data.label_ids == "positions" \
                and not self.cfg.label_names
            raise UserError(f"the teacher '{name}' predicts {labels}, the data has {list(self.data.label_names)}; "
                            f"distill from a teacher trained on these labels" +
                            (f", or, if they are the same classes, name the data's ids as the teacher does "
                             f"(--label_names {','.join(labels)}, in the data's id order)." if same else "."))
        order = torch.tensor([labels.index(n) for n in self.data.label_names])
        teacher.to(self.accelerator.device).eval().requires_grad_(False)
        # Recorded in every checkpoint (resume_signature): the weights, not the path, are what trained.
        digest = hashlib.sha1()
        for key, tensor in sorted(teacher.state_dict().items()):
            digest.update(key.encode())
            digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
        self.teacher_sha1 = digest.hexdigest()[:16]
        return teacher, order.to(self.accelerator.device)

    def resume_signature(self):
        return {**super().resume_signature(), "teacher_sha1": self.teacher_sha1}

    def compute_loss(self, model, batch):
        if not model.training:  # evaluation scores the student alone
            return super().compute_loss(model, batch)
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        outputs = model(**inputs)
        seen = {k: v for k, v in inputs.items() if k in self.teacher_inputs}
        if "token_type_ids" in self.teacher_inputs and "token_type_ids" not in seen:
            seen["token_type_ids"] = torch.zeros_like(inputs["input_ids"])  # one text: segment 0 throughout
        with torch.no_grad(), self.accelerator.autocast():
            soft = self.teacher(**seen).logits.float()[:, self.teacher_order]
        logits, t = outputs.logits.float(), self.cfg.distill_temperature  # the KL in fp32 under bf16 autocast
        kl = F.kl_div((logits / t).log_softmax(-1), (soft / t).log_softmax(-1), reduction="batchmean",
                      log_target=True) * t * t
        self.track("distill_kl", kl.detach())  # stays on the device: no host sync per step
        alpha = self.cfg.distill_alpha
        hard = self.weighted_loss(logits, batch["labels"]) if alpha < 1 else 0.0
        return (1 - alpha) * hard + alpha * kl, outputs


if __name__ == "__main__":
    loop.main(loop_cls=DistillLoop, config_cls=DistillConfig)
