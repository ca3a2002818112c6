"""The loop: one class, read top to bottom in the order it runs.

    fit()
      setup()            accelerator, tokenizer, data, model, dataloaders, optimizer, scheduler
      resume()           --resume_from_checkpoint: every state back, mid-epoch included
      for each epoch:
        train_loop()     training_step() -> compute_loss(); optimizer_step(); logging, checkpoints
        val_loop()       evaluation_step() per batch -> compute_metrics()
        save_best()      best/ by --metric, atomically
      hooks: on_train_start, on_epoch_start, on_step_end, on_evaluate, on_save, on_train_end

A research variant subclasses `Loop` and overrides one or two of these methods; everything
else (distribution, mixed precision, resume, best checkpoint) keeps working.
"""

import json
import math
import os
import shutil
import signal
import threading
import time
import warnings

import torch
import torch.nn.functional as F

from . import checkpoint as ckpt
from . import data as D
from .callbacks import EarlyStopping
from .errors import Preempted, UserError

LOCAL_METRICS = os.path.join(os.path.dirname(__file__), "metrics")
# Checkpoints made with a different value of these cannot continue the same run.
RESUME_KEYS = ("model_name_or_path", "train_file", "dataset_name", "dataset_config_name", "text_column",
               "text_pair_column", "label_column", "label_names", "max_length", "max_train_samples",
               "per_device_train_batch_size", "gradient_accumulation_steps", "group_by_length", "seed",
               "num_train_epochs", "config_overrides")
NONFINITE_PATIENCE = 3  # consecutive NaN/inf losses before we give up
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)
# A launcher forwards the signal it got to its workers, and SLURM or a terminal signals the whole
# process group: one preemption can reach a worker two or three times within milliseconds. Only a
# repeat after this many seconds means "exit now".
SIGNAL_ECHO_S = 2.0


class TrainState:
    """Where the run is. Saved in every checkpoint; a pure function of the steps taken."""

    def __init__(self):
        self.epoch = 0  # epoch in progress (or the next one, after an epoch checkpoint)
        self.batches_done = 0  # micro-batches of `epoch` already trained on, on each rank
        self.global_step = 0  # optimizer steps taken
        self.best_metric = None
        self.best_epoch = None
        self.metrics_lines = 0  # lines of metrics.jsonl written when the checkpoint was taken
        self.loss_since_log = None  # [sum, count] of losses since the last log line, over all ranks
        self.callbacks = {}

    def state_dict(self):
        return dict(self.__dict__)

    def load_state_dict(self, state):
        self.__dict__.update(state)


class Loop:
    def __init__(self, cfg, callbacks=None):
        self.cfg = cfg
        self.callbacks = list(callbacks or [])
        if cfg.early_stopping_patience:
            self.callbacks.append(EarlyStopping(cfg.early_stopping_patience))
        self.state = TrainState()
        self.stop_reason = None  # set by request_stop(): finish this epoch's evaluation, then stop
        self._signal = None  # set by a stop signal: checkpoint at the next optimizer step, exit
        self._signal_time = None
        self._saved_at = None  # (epoch, batches_done, global_step) of the last checkpoint written or loaded
        self.resumed_from = None

    # ================================================================ setup
    def fit(self):
        """Train, evaluating every epoch and keeping the best model; returns the best metrics."""
        self.setup()
        self.resume()
        previous_handlers = self.install_signal_handlers()
        try:
            self.call("on_train_start")
            cfg = self.cfg
            for epoch in range(self.state.epoch, cfg.num_train_epochs):
                self.state.epoch = epoch
                self.call("on_epoch_start")
                self.train_loop(epoch)
                metrics = self.val_loop()
                self.log({"step": self.state.global_step, "epoch": epoch + 1, **metrics})
                self.save_best(metrics)
                self.call("on_evaluate", metrics=metrics)
                self.state.epoch, self.state.batches_done = epoch + 1, 0
                if self.cfg.checkpoint_every == "epoch":
                    self.save_checkpoint()
                if self.stop_reason:
                    self.print(f"stopping: {self.stop_reason}")
                    break
                # a signal that came during evaluation: stop here, at a clean epoch boundary
                if epoch + 1 < cfg.num_train_epochs and self.stop_signalled():
                    self.preempt()
            self.call("on_train_end")
            self.finish()
        finally:
            self.restore_signal_handlers(previous_handlers)
        return self.best_metrics()

    def setup(self):
        cfg = self.cfg
        self.accelerator = self.build_accelerator()
        from accelerate.utils import set_seed

        set_seed(cfg.seed)
        self.check_output_dir()
        self.metric = self.build_metric()  # cheap, and a bad --metric should fail before the data work
        self.tokenizer = self.build_tokenizer()
        self.data = self.build_datasets()
        self.model = self.build_model()
        self.train_dataloader, self.eval_dataloader = self.build_dataloaders()
        self.optimizer = self.build_optimizer(self.model)
        acc = self.accelerator
        ds_plugin = getattr(acc.state, "deepspeed_plugin", None)
        if ds_plugin is not None and ds_plugin.is_auto("train_micro_batch_size_per_gpu"):
            # DeepSpeed reads the batch size from the DataLoader, and ours has a batch sampler instead
            ds_plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = cfg.per_device_train_batch_size
        self.model, self.optimizer, self.train_dataloader, self.eval_dataloader = acc.prepare(
            self.model, self.optimizer, self.train_dataloader, self.eval_dataloader
        )
        # Counted after prepare: the length is per process, so the schedule fits any world size.
        self.steps_per_epoch = math.ceil(len(self.train_dataloader) / cfg.gradient_accumulation_steps)
        self.max_steps = self.steps_per_epoch * cfg.num_train_epochs
        if len(self.train_dataloader) < cfg.gradient_accumulation_steps:
            self.warn(f"--gradient_accumulation_steps {cfg.gradient_accumulation_steps} is more than the "
                      f"{len(self.train_dataloader)} batches per epoch; each epoch takes one optimizer step.")
        # The scheduler is NOT passed to prepare(): accelerate would step it once per process.
        # We step it once per optimizer step ourselves, and checkpoint it via registration.
        self.lr_scheduler = self.build_scheduler(self.optimizer, self.max_steps)
        acc.register_for_checkpointing(self.lr_scheduler)
        acc.register_for_checkpointing(self.state)
        for obj in self.checkpoint_objects():
            acc.register_for_checkpointing(obj)
        self._stop_group = self._make_stop_group()
        self._init_loss_tracking()
        self.clear_earlier_run()  # every check passed: only now touch the output_dir
        if cfg.report_to != "none":
            acc.init_trackers("loop", config={k: (v if isinstance(v, (int, float, str, bool)) else str(v))
                                              for k, v in cfg.to_dict().items()})
        self.print(f"{len(self.data.train)} training / {len(self.data.eval)} evaluation examples, "
                   f"labels {self.data.label_names}, {acc.num_processes} process(es), "
                   f"{self.steps_per_epoch} optimizer steps per epoch, mixed precision: {acc.mixed_precision}")

    def build_accelerator(self):
        from accelerate import Accelerator
        from accelerate.utils import DataLoaderConfiguration, GradientAccumulationPlugin

        cfg = self.cfg
        return Accelerator(
            gradient_accumulation_plugin=GradientAccumulationPlugin(
                num_steps=cfg.gradient_accumulation_steps, sync_with_dataloader=True),
            dataloader_config=DataLoaderConfiguration(even_batches=True, non_blocking=True),
            log_with=None if cfg.report_to == "none" else cfg.report_to.split(","),
            project_dir=cfg.output_dir,
            step_scheduler_with_optimizer=False,
        )

    def check_output_dir(self):
        """Refuse to start a new run over an earlier one; repair saves cut short by a crash."""
        cfg, acc = self.cfg, self.accelerator
        best = os.path.join(cfg.output_dir, "best")
        if acc.is_main_process:
            ckpt.recover(best)
            ckpt.recover_all(self.checkpoints_dir)
        acc.wait_for_everyone()
        earlier = os.path.isdir(best) or os.path.isfile(self.metrics_path) or ckpt.list_checkpoints(self.checkpoints_dir)
        if earlier and not (cfg.overwrite_output_dir or cfg.resume_from_checkpoint):
            raise UserError(f"--output_dir {cfg.output_dir} already holds a run (best/, checkpoints/ or metrics.jsonl); "
                            f"pass --overwrite_output_dir to replace it, --resume_from_checkpoint latest to continue it, "
                            f"or choose another --output_dir.")
        # A new run over an earlier one: its log and checkpoints go, but only once every check passed
        # (clear_earlier_run, at the end of setup), so a failed start leaves the output_dir untouched.
        self._clear_earlier = bool(earlier) and not cfg.resume_from_checkpoint
        if cfg.resume_from_checkpoint:
            self.resume_path = ckpt.resolve_resume(cfg.resume_from_checkpoint, cfg.output_dir)
            self.check_resume_compatible(self.resume_path)
        else:
            self.resume_path = None

    def clear_earlier_run(self):
        """Remove an earlier run's log and checkpoints (they would mix with ours); best/ stays until replaced."""
        if self._clear_earlier and self.accelerator.is_main_process:
            shutil.rmtree(self.checkpoints_dir, ignore_errors=True)
            if os.path.isfile(self.metrics_path):
                os.remove(self.metrics_path)
        self.accelerator.wait_for_everyone()

    def check_resume_compatible(self, path):
        saved = ckpt.read_state(path)
        old_cfg = saved.get("config", {})
        diff = [k for k in RESUME_KEYS if k in old_cfg and old_cfg[k] != getattr(self.cfg, k)]
        if saved.get("num_processes") not in (None, self.accelerator.num_processes):
            diff.append(f"number of processes ({saved['num_processes']} then, {self.accelerator.num_processes} now)")
        if diff:
            raise UserError(f"checkpoint {path} was made with a different config ({', '.join(diff)}); resume with "
                            f"the same settings or start a new run in another --output_dir.")

    def build_tokenizer(self):
        from transformers import AutoTokenizer

        name = self.cfg.tokenizer_name or self.cfg.model_name_or_path
        self.model_config = self.load_model_config()
        try:
            return AutoTokenizer.from_pretrained(name)
        except Exception as e:
            raise UserError(f"could not load a tokenizer from '{name}' ({D._short(e)}); pass a folder with tokenizer "
                            f"files via --tokenizer_name.") from e

    def load_model_config(self):
        from transformers import AutoConfig

        name = self.cfg.model_name_or_path
        try:
            return AutoConfig.from_pretrained(name)
        except Exception as e:
            where = "is not a local folder and could not be fetched from the Hugging Face Hub" if not os.path.isdir(name) \
                else "is a folder without a usable config.json"
            raise UserError(f"model '{name}' {where} ({D._short(e)}); pass a local model folder with "
                            f"--model_name_or_path (offline, set HF_HUB_OFFLINE=1).") from e

    def build_datasets(self):
        """Raw data -> checked -> labels as ids -> tokenized; returns a `data.Data`."""
        cfg = self.cfg
        raw = D.load_raw(cfg)
        D.check_columns(cfg, raw)
        raw = D.select_and_split(cfg, raw)
        label_names = D.encode_labels(cfg, raw)
        raw = D.carve_validation(cfg, raw)
        self.max_length = self.resolve_max_length()
        num_proc = cfg.preprocessing_num_workers
        if num_proc is None and len(raw[D.TRAIN]) >= 20_000:
            num_proc = min(8, os.cpu_count() or 1)
        with self.accelerator.main_process_first():  # tokenize once, the other ranks read the cache
            tok = D.tokenize(cfg, raw, self.tokenizer, self.max_length, num_proc=num_proc)
        train, evaluation = tok[D.TRAIN], tok[D.EVAL]
        lengths = train["length"]
        # Eval sorted by length: less padding, same results (accuracy does not depend on order).
        evaluation = evaluation.sort("length", reverse=True)
        return D.Data(train=train.remove_columns("length"), eval=evaluation.remove_columns("length"),
                      label_names=label_names, train_lengths=lengths)

    def resolve_max_length(self):
        cfg = self.cfg
        limits = [n for n in (getattr(self.model_config, "max_position_embeddings", None),
                              self.tokenizer.model_max_length) if n and n < 1_000_000]
        limit = min(limits) if limits else 512
        if cfg.max_length is None:
            return min(limit, 512)
        if cfg.max_length > limit:
            self.warn(f"--max_length {cfg.max_length} is above the model's limit of {limit} positions; using {limit}.")
            return limit
        return cfg.max_length

    def build_model(self):
        """AutoModelForSequenceClassification in fp32 (master weights), labels in its config."""
        from transformers import AutoModelForSequenceClassification

        cfg = self.cfg
        names = self.data.label_names
        config = self.model_config
        head = getattr(config, "num_labels", None)
        archs = getattr(config, "architectures", None) or []
        if any("SequenceClassification" in a for a in archs) and head not in (None, len(names)) and not cfg.from_scratch:
            raise UserError(f"the model's classification head has {head} labels but the data has {len(names)} "
                            f"({', '.join(names)}); use a base model or one trained on the same labels.")
        config.num_labels = len(names)
        config.id2label = dict(enumerate(names))
        config.label2id = {n: i for i, n in enumerate(names)}
        for key, value in cfg.overrides_dict().items():
            if not hasattr(config, key):
                raise UserError(f"--config_overrides key '{key}' is not a field of {type(config).__name__}.")
            old = getattr(config, key)
            try:
                setattr(config, key, type(old)(value) if old is not None and not isinstance(old, bool)
                        else value.lower() in ("1", "true") if isinstance(old, bool) else value)
            except ValueError:
                raise UserError(f"--config_overrides {key}={value}: expected a {type(old).__name__}.")
        kwargs = {"attn_implementation": cfg.attn_implementation} if cfg.attn_implementation else {}
        try:
            if cfg.from_scratch:
                model = AutoModelForSequenceClassification.from_config(config, dtype=torch.float32, **kwargs)
            else:
                model = AutoModelForSequenceClassification.from_pretrained(
                    cfg.model_name_or_path, config=config, dtype=torch.float32, **kwargs)
        except (ValueError, ImportError) as e:
            if "attn_implementation" in str(e) or "attention" in str(e).lower():
                raise UserError(f"--attn_implementation {cfg.attn_implementation} is not supported here ({D._short(e)}); try sdpa or eager.") from e
            raise
        model = model.float()  # fp32 master weights even from an fp16/bf16 checkpoint
        if cfg.gradient_checkpointing:
            model.gradient_checkpointing_enable()
        if cfg.torch_compile:
            model = torch.compile(model)
        return model

    def build_dataloaders(self):
        from torch.utils.data import DataLoader
        from transformers import DataCollatorWithPadding
        from accelerate.utils import DistributedType

        cfg, acc = self.cfg, self.accelerator
        if acc.distributed_type == DistributedType.XLA:
            # static shapes on TPU: every batch padded to max_length, no recompiles
            collator = DataCollatorWithPadding(self.tokenizer, padding="max_length", max_length=self.max_length)
            self.pad_multiple = self.max_length
        else:
            self.pad_multiple = 64 if cfg.torch_compile else (8 if acc.mixed_precision != "no" else 1)
            collator = DataCollatorWithPadding(self.tokenizer, pad_to_multiple_of=self.pad_multiple if self.pad_multiple > 1 else None)
        workers = cfg.dataloader_num_workers
        if workers is None:
            workers = 2 if torch.cuda.is_available() else 0
        common = dict(collate_fn=collator, num_workers=workers, pin_memory=torch.cuda.is_available(),
                      persistent_workers=workers > 0)
        self.train_sampler = D.EpochBatchSampler(self.data.train_lengths, cfg.per_device_train_batch_size,
                                                 cfg.seed, group_by_length=cfg.group_by_length)
        # A private generator: creating a DataLoader iterator must not draw from the global RNG,
        # or a resumed run's dropout masks would differ from the uninterrupted run's.
        train = DataLoader(self.data.train, batch_sampler=self.train_sampler,
                           generator=torch.Generator().manual_seed(cfg.seed), **common)
        evaluation = DataLoader(self.data.eval, batch_size=cfg.per_device_eval_batch_size, shuffle=False,
                                generator=torch.Generator().manual_seed(cfg.seed), **common)
        return train, evaluation

    def build_optimizer(self, model):
        """AdamW; no weight decay on biases and LayerNorm weights. Fused kernels on CUDA."""
        from transformers.pytorch_utils import ALL_LAYERNORM_LAYERS
        from transformers.trainer_pt_utils import get_parameter_names

        decay = set(get_parameter_names(model, ALL_LAYERNORM_LAYERS, ["bias", "layernorm", "rmsnorm"]))
        params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        groups = [
            {"params": [p for n, p in params if n in decay], "weight_decay": self.cfg.weight_decay},
            {"params": [p for n, p in params if n not in decay], "weight_decay": 0.0},
        ]
        fused = {"fused": True} if torch.cuda.is_available() else {}
        return torch.optim.AdamW(groups, lr=self.cfg.learning_rate, **fused)

    def build_scheduler(self, optimizer, num_training_steps):
        from transformers import get_scheduler

        return get_scheduler(self.cfg.lr_scheduler_type, optimizer,
                             num_warmup_steps=int(self.cfg.warmup_ratio * num_training_steps),
                             num_training_steps=num_training_steps)

    def checkpoint_objects(self):
        """Extra objects with state_dict/load_state_dict (an EMA, a memory bank), saved in every
        checkpoint and restored on resume. Called once, after prepare(); keep the order fixed."""
        return []

    def build_metric(self):
        """The --metric through `evaluate`: accuracy ships with the package, others come from the Hub."""
        import evaluate

        name = self.cfg.metric
        local = os.path.join(LOCAL_METRICS, name)
        with self.accelerator.main_process_first():
            try:
                return evaluate.load(local if os.path.isdir(local) else name, keep_in_memory=True)
            except Exception as e:
                raise UserError(f"--metric '{name}' could not be loaded ({D._short(e)}); 'accuracy' works offline, "
                                f"other names need the Hugging Face Hub.") from e

    # ================================================================ training
    def train_loop(self, epoch):
        """One epoch of optimizer steps (continuing mid-epoch after a resume)."""
        acc = self.accelerator
        # Accelerate's dataloader re-sets its batch sampler's epoch to its own iteration counter on
        # every pass, and that counter starts at 0 in a resumed process: set both to the true epoch.
        if hasattr(self.train_dataloader, "set_epoch"):
            self.train_dataloader.set_epoch(epoch)
        self.train_sampler.set_epoch(epoch)
        self.print(f"epoch {epoch + 1}: padding efficiency {self.train_sampler.padding_efficiency(multiple=self.pad_multiple):.3f}")
        dataloader = self.train_dataloader
        if self.state.batches_done:
            # Only the resumed epoch skips; the sampler is a function of (seed, epoch), so the
            # remaining batches are exactly those the uninterrupted run would have seen.
            dataloader = acc.skip_first_batches(dataloader, self.state.batches_done)
        self.model.train()
        from tqdm.auto import tqdm

        bar = tqdm(total=len(self.train_dataloader), initial=self.state.batches_done, desc=f"epoch {epoch + 1}",
                   disable=not acc.is_local_main_process, leave=False)
        for batch in dataloader:
            with acc.accumulate(self.model):
                loss = self.training_step(batch)
                self._track_loss(loss)
                if acc.sync_gradients:
                    self.optimizer_step()
            self.state.batches_done += 1
            bar.update(1)
            if acc.sync_gradients:
                self.state.global_step += 1
                end_of_epoch = self.state.batches_done >= len(self.train_dataloader)
                if self.state.global_step % self.cfg.logging_steps == 0 or end_of_epoch:
                    self.log_training()
                self.call("on_step_end")
                every = self.cfg.checkpoint_every
                if isinstance(every, int) and self.state.global_step % every == 0:
                    self.save_checkpoint()
                self._test_fault("step")
                # every rank asks at every optimizer step, so all of them stop at the same one
                if self.stop_signalled():
                    bar.close()
                    self.preempt()
        bar.close()

    def training_step(self, batch):
        """Forward and backward on one micro-batch; returns the (unscaled) loss."""
        loss, _ = self.compute_loss(self.model, batch)
        self.accelerator.backward(loss)
        return loss.detach()

    def compute_loss(self, model, batch):
        """Return (loss, outputs). Override for a different objective."""
        outputs = model(**batch)
        return outputs.loss, outputs

    def optimizer_step(self):
        """Clip (only when gradients are synced), step, schedule, zero."""
        acc = self.accelerator
        if self.cfg.max_grad_norm:
            acc.clip_grad_norm_(self.model.parameters(), self.cfg.max_grad_norm)
        self.optimizer.step()
        if not acc.optimizer_step_was_skipped:  # fp16 scaler skipped an overflow step: keep the schedule
            self.lr_scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

    def _init_loss_tracking(self):
        # Running sums on the device: no host sync until the next logging step.
        dev = self.accelerator.device
        self._loss_sum = torch.zeros((), device=dev, dtype=torch.float32)
        self._loss_n = torch.zeros((), device=dev, dtype=torch.float32)
        self._bad_run = torch.zeros((), device=dev, dtype=torch.float32)  # consecutive non-finite losses
        self._bad_max = torch.zeros((), device=dev, dtype=torch.float32)  # longest such run since the last log

    def _track_loss(self, loss):
        finite = torch.isfinite(loss)
        self._loss_sum += torch.where(finite, loss.float(), 0.0)
        self._loss_n += finite.float()
        self._bad_run = torch.where(finite, 0.0, self._bad_run + 1)
        self._bad_max = torch.maximum(self._bad_max, self._bad_run)

    def log_training(self):
        acc = self.accelerator
        stats = acc.reduce(torch.stack([self._loss_sum, self._loss_n, self._bad_max]), reduction="sum")
        loss_sum, n, bad = stats.tolist()  # the one host sync, every logging_steps
        self._loss_sum.zero_(), self._loss_n.zero_(), self._bad_max.zero_()
        if bad >= NONFINITE_PATIENCE:
            raise UserError(f"the training loss was NaN or infinite for {int(bad)} consecutive batches by step "
                            f"{self.state.global_step}; lower --learning_rate or use bf16 instead of fp16 "
                            f"(no checkpoint was saved from these weights).")
        epoch = self.state.epoch + self.state.batches_done / max(len(self.train_dataloader), 1)
        self.log({"step": self.state.global_step, "epoch": round(epoch, 4),
                  "loss": loss_sum / max(n, 1), "learning_rate": max(self.lr_scheduler.get_last_lr())})  # the peak, with per-group rates

    # ================================================================ evaluation
    @torch.no_grad()
    def val_loop(self):
        """Score every evaluation example exactly once, on all ranks; returns eval_* metrics."""
        acc = self.accelerator
        self.model.eval()
        preds, refs, losses = [], [], []
        for batch in self.eval_dataloader:
            logits, labels = self.evaluation_step(batch)
            logits = logits.float()  # bf16/fp16 logits would round the metric
            loss = F.cross_entropy(logits, labels, reduction="none")
            # gather_for_metrics drops the samples that even_batches duplicated on the last batch
            logits, labels, loss = acc.gather_for_metrics((logits, labels, loss))
            preds.append(logits.argmax(-1))
            refs.append(labels)
            losses.append(loss)
        self.model.train()
        preds, refs, losses = torch.cat(preds).cpu(), torch.cat(refs).cpu(), torch.cat(losses).cpu()
        if len(refs) != len(self.data.eval):
            raise RuntimeError(f"evaluation scored {len(refs)} examples, expected {len(self.data.eval)}")
        metrics = {f"eval_{k}": v for k, v in self.compute_metrics(preds, refs).items()}
        metrics["eval_loss"] = losses.mean().item()
        metrics["eval_samples"] = len(refs)
        return metrics

    def evaluation_step(self, batch):
        """Return (logits, labels) for one evaluation batch."""
        labels = batch.pop("labels")
        outputs = self.model(**batch)
        return outputs.logits, labels

    def compute_metrics(self, predictions, references):
        """Metric values by name (without the eval_ prefix)."""
        kwargs = {}
        if self.cfg.metric in ("f1", "precision", "recall") and len(self.data.label_names) > 2:
            kwargs["average"] = "macro"
        return self.metric.compute(predictions=predictions.tolist(), references=references.tolist(), **kwargs)

    # ================================================================ saving
    def save_best(self, metrics):
        """Write best/ when --metric improved. Every rank takes part (state dicts may be sharded)."""
        value = metrics[f"eval_{self.cfg.metric}"]
        if not (math.isfinite(value) and math.isfinite(metrics["eval_loss"])):
            raise UserError(f"evaluation at epoch {self.state.epoch + 1} gave a non-finite metric or loss; lower "
                            f"--learning_rate or use bf16 instead of fp16 (these weights are not saved as best).")
        if self.state.best_metric is not None and value <= self.state.best_metric:
            return
        self.state.best_metric, self.state.best_epoch = value, self.state.epoch + 1
        path = os.path.join(self.cfg.output_dir, "best")
        acc = self.accelerator
        acc.wait_for_everyone()
        state_dict = acc.get_state_dict(self.model)  # gathers FSDP/DeepSpeed shards; call on all ranks
        error = None
        if acc.is_main_process:
            tmp = ckpt.tmp_sibling(path)
            try:
                shutil.rmtree(tmp, ignore_errors=True)
                self.write_model(tmp, state_dict)
                with open(os.path.join(tmp, "best_metrics.json"), "w") as f:
                    json.dump({"epoch": self.state.epoch + 1, "step": self.state.global_step, **metrics}, f, indent=2)
                ckpt.publish(tmp, path)
            except Exception as e:  # a full disk shows as OSError, SafetensorError or RuntimeError (torch.save)
                shutil.rmtree(tmp, ignore_errors=True)
                error = (f"could not write {path} ({D._short(e)}); free space or fix permissions in "
                         f"--output_dir (the previous best/ is intact).")
        if acc.num_processes > 1:  # every rank stops with the main one instead of waiting for it forever
            from accelerate.utils import broadcast_object_list

            error = broadcast_object_list([error])[0]
        if error:
            raise UserError(error)
        self.call("on_save", path=path)

    def write_model(self, path, state_dict):
        """A folder that `pipeline(...)` and `from_pretrained` load: safetensors, config, tokenizer."""
        model = self.accelerator.unwrap_model(self.model, keep_torch_compile=False)
        model.save_pretrained(path, state_dict=state_dict, safe_serialization=True)
        self.tokenizer.save_pretrained(path)

    def save_checkpoint(self):
        """A resumable checkpoint in checkpoints/step_N, written by all ranks, published atomically.

        Accelerate's save_state writes model, optimizer, grad scaler, every rank's RNG and the
        registered objects (scheduler, TrainState) into a hidden temporary folder; the main process
        then adds loop_state.json, which marks it complete, and renames the folder into place.
        """
        acc = self.accelerator
        self.check_weights_finite()
        final = os.path.join(self.checkpoints_dir, f"step_{self.state.global_step}")
        tmp = ckpt.tmp_sibling(final)
        self.state.metrics_lines = self._count_metric_lines()
        self.state.callbacks = {i: cb.state_dict() for i, cb in enumerate(self.callbacks) if hasattr(cb, "state_dict")}
        # The loss since the last log line, summed over ranks, so a resumed run logs the same loss.
        self.state.loss_since_log = acc.reduce(torch.stack([self._loss_sum, self._loss_n]), reduction="sum").tolist()
        try:
            if acc.is_main_process:
                shutil.rmtree(tmp, ignore_errors=True)
                os.makedirs(tmp)
            acc.wait_for_everyone()
            acc.save_state(tmp, safe_serialization=True)  # model, optimizer, scaler, RNG of every rank, registered
            acc.wait_for_everyone()
            self._test_fault("save")
            if acc.is_main_process:
                info = {"state": self.state.state_dict(), "config": self.cfg.to_dict(),
                        "num_processes": acc.num_processes, "saved_at": time.time()}
                ckpt.write_json(os.path.join(tmp, ckpt.STATE_FILE), info)  # written last: marks the folder complete
                ckpt.publish(tmp, final)
                ckpt.rotate(self.checkpoints_dir, self.cfg.save_total_limit, protect=[self.resumed_from, final])
        except Exception as e:  # a full disk shows as OSError, SafetensorError or RuntimeError (torch.save)
            if acc.is_main_process:
                shutil.rmtree(tmp, ignore_errors=True)
            raise UserError(f"could not write checkpoint {final} ({D._short(e)}); free space or fix permissions "
                            f"in --output_dir (earlier checkpoints are intact).") from e
        acc.wait_for_everyone()
        self._saved_at = self._position()
        self.call("on_save", path=final)
        return final

    def check_weights_finite(self):
        """Refuse to checkpoint NaN/inf weights (one host sync per checkpoint; ranks agree via reduce)."""
        params = [p.detach() for p in self.model.parameters()]
        ok = torch.stack([torch.isfinite(p).all() for p in params]).all().float() if params else torch.ones(())
        if self.accelerator.reduce(ok.to(self.accelerator.device), reduction="sum").item() < self.accelerator.num_processes:
            raise UserError(f"the model weights became NaN or infinite by step {self.state.global_step}; lower "
                            f"--learning_rate or use bf16 instead of fp16 (no checkpoint was saved from these weights).")

    def preempt(self):
        """Checkpoint (unless this step already has one) and leave with Preempted: exit code 75."""
        path = os.path.join(self.checkpoints_dir, f"step_{self.state.global_step}")
        if self._saved_at != self._position():
            path = self.save_checkpoint()
        self.print(f"stop signal ({signal.Signals(self._signal).name if self._signal else 'another rank'}): "
                   f"checkpoint saved at {path}")
        raise Preempted(path)

    def _position(self):
        return self.state.epoch, self.state.batches_done, self.state.global_step

    def resume(self):
        """Restore model, optimizer, scheduler, RNG and loop state from --resume_from_checkpoint."""
        if not self.resume_path:
            return
        acc = self.accelerator
        acc.load_state(self.resume_path)  # loads the registered TrainState too, on every rank
        for i, cb in enumerate(self.callbacks):
            st = self.state.callbacks.get(i, self.state.callbacks.get(str(i)))
            if st is not None and hasattr(cb, "load_state_dict"):
                cb.load_state_dict(st)
        if self.state.loss_since_log and acc.is_main_process:  # the sums are over all ranks: add them once
            self._loss_sum.fill_(self.state.loss_since_log[0])
            self._loss_n.fill_(self.state.loss_since_log[1])
        self.resumed_from = self.resume_path
        self._saved_at = self._position()
        if acc.is_main_process and os.path.isfile(self.metrics_path):
            # Drop log lines written after the checkpoint (the run may have been killed later).
            with open(self.metrics_path) as f:
                lines = f.readlines()[: self.state.metrics_lines]
            with open(self.metrics_path, "w") as f:
                f.writelines(lines)
        acc.wait_for_everyone()
        self.print(f"resumed from {self.resume_path}: epoch {self.state.epoch + 1}, "
                   f"batch {self.state.batches_done}, step {self.state.global_step}")

    def finish(self):
        acc = self.accelerator
        acc.wait_for_everyone()
        if self.cfg.push_to_hub and acc.is_main_process:
            self.push_to_hub()
        acc.end_training()

    def push_to_hub(self):
        from huggingface_hub import create_repo, upload_folder

        repo = self.cfg.hub_model_id or os.path.basename(os.path.abspath(self.cfg.output_dir))
        try:
            create_repo(repo, exist_ok=True)
            upload_folder(repo_id=repo, folder_path=os.path.join(self.cfg.output_dir, "best"))
        except Exception as e:
            raise UserError(f"could not push best/ to the Hub repository '{repo}' ({D._short(e)}); the local "
                            f"copy in {self.cfg.output_dir}/best is complete.") from e

    def best_metrics(self):
        path = os.path.join(self.cfg.output_dir, "best", "best_metrics.json")
        if os.path.isfile(path):
            with open(path) as f:
                return json.load(f)
        return None

    # ================================================================ stopping
    def request_stop(self, reason):
        """Stop after the current epoch's evaluation (used by early stopping)."""
        self.stop_reason = reason

    def install_signal_handlers(self):
        """SIGTERM/SIGINT/SIGUSR1: finish the step, checkpoint, exit 75. A second signal exits now.

        The handler only sets a flag (the step in flight finishes; nothing is written from inside a
        signal handler). Returns the previous handlers for `restore_signal_handlers`.
        """
        if threading.current_thread() is not threading.main_thread():
            self.warn("fit() is not running in the main thread: stop signals will not save a checkpoint.")
            return {}

        def handler(signum, frame):
            now = time.monotonic()
            if self._signal is None:
                self._signal, self._signal_time = signum, now
                os.write(2, f"[loop] {signal.Signals(signum).name}: finishing this step, then saving a checkpoint "
                            f"(send it again to exit at once)\n".encode())
            elif now - self._signal_time > SIGNAL_ECHO_S:
                os.write(2, f"[loop] second {signal.Signals(signum).name}: exiting without a checkpoint\n".encode())
                os._exit(128 + signum)

        return {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}

    def restore_signal_handlers(self, previous):
        for sig, old in previous.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)

    def _make_stop_group(self):
        # A CPU (gloo) group for the stop flag: agreeing on "stop?" every step must not sync the GPU.
        import torch.distributed as dist

        from accelerate.utils import DistributedType

        if self.accelerator.num_processes == 1:
            return False  # single process: no agreement needed
        if self.accelerator.distributed_type == DistributedType.XLA or not dist.is_initialized():
            return "device"  # through the accelerator's collectives
        if dist.get_backend() == "gloo":
            return None  # the default group
        try:
            return dist.new_group(backend="gloo")
        except Exception:  # e.g. a backend without a gloo side channel: agree through the device instead
            return "device"

    def stop_signalled(self):
        """True on every rank if any rank got a stop signal (all ranks agree at the same step)."""
        if self._stop_group is False:
            return self._signal is not None
        flag = 1 if self._signal is not None else 0
        if self._stop_group == "device":
            # a device collective syncs the host: only on logging steps, which sync anyway
            if self.state.global_step % self.cfg.logging_steps:
                return False
            t = torch.tensor([flag], device=self.accelerator.device)
            return bool(self.accelerator.reduce(t, reduction="sum").item())
        import torch.distributed as dist

        t = torch.tensor([flag])
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self._stop_group)
        return bool(t.item())

    # ================================================================ testing aids
    def _test_fault(self, where):
        """Deterministic interruptions for the test suite; inert unless these variables are set.

        LOOP_TEST_SIGNAL_AT_STEP=N[:SIG]  after optimizer step N, rank 0 sends itself SIGTERM (or SIG):
                                         the real handler runs and the other ranks must follow.
        LOOP_TEST_CRASH_AT_STEP=N         after optimizer step N (and its checkpoint), every rank
                                         kills itself with SIGKILL, like `kill -9`.
        LOOP_TEST_CRASH_IN_SAVE=N         in the middle of writing checkpoint step_N (model and
                                         optimizer written, not yet complete), every rank is SIGKILLed.
        """
        step = self.state.global_step
        if where == "step":
            at, _, name = os.environ.get("LOOP_TEST_SIGNAL_AT_STEP", "").partition(":")
            if at == str(step) and self.accelerator.is_main_process:
                os.kill(os.getpid(), getattr(signal, name or "SIGTERM"))
            if os.environ.get("LOOP_TEST_CRASH_AT_STEP") == str(step):
                os.kill(os.getpid(), signal.SIGKILL)
        elif where == "save" and os.environ.get("LOOP_TEST_CRASH_IN_SAVE") == str(step):
            os.kill(os.getpid(), signal.SIGKILL)

    # ================================================================ hooks and logging
    def call(self, hook, **kwargs):
        """Run hook `name` on the loop itself, then on each callback."""
        getattr(self, hook)(**kwargs)
        for cb in self.callbacks:
            fn = getattr(cb, hook, None)
            if fn is not None:
                fn(self, **kwargs)

    def on_train_start(self): ...
    def on_epoch_start(self): ...
    def on_step_end(self): ...
    def on_evaluate(self, metrics): ...
    def on_save(self, path): ...
    def on_train_end(self): ...

    @property
    def metrics_path(self):
        return os.path.join(self.cfg.output_dir, "metrics.jsonl")

    @property
    def checkpoints_dir(self):
        return os.path.join(self.cfg.output_dir, "checkpoints")

    def _count_metric_lines(self):
        if not os.path.isfile(self.metrics_path):
            return 0
        with open(self.metrics_path) as f:
            return sum(1 for _ in f)

    def log(self, record):
        """One JSON line in metrics.jsonl and the trackers (main process only)."""
        acc = self.accelerator
        if acc.is_main_process:
            os.makedirs(self.cfg.output_dir, exist_ok=True)
            with open(self.metrics_path, "a") as f:
                f.write(json.dumps(record) + "\n")
            self.print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))
        if self.cfg.report_to != "none":
            acc.log({k: v for k, v in record.items() if k != "step"}, step=record["step"])

    def print(self, msg):
        self.accelerator.print(f"[loop] {msg}", flush=True)

    def warn(self, msg):
        if self.accelerator.is_main_process:
            warnings.warn(msg, stacklevel=2)
