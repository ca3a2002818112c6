"""The loop: one class that tells the training story, read top to bottom in the order it runs.

    fit()
      setup()            accelerator, tokenizer, data, model, dataloaders, optimizer (the build_* methods);
                         prepare_parts() (accelerate's prepare); scheduler
      resume()           --resume_from_checkpoint: every state back, mid-epoch included
      for each epoch:
        train_loop()     training_step() -> compute_loss(), backward(); optimizer_step(); after_step(): logging,
                         evaluate() every --eval_steps optimizer steps, checkpoints, a stop signal
        evaluate()       val_loop(): evaluation_step() per batch -> compute_metrics(), on the evaluation
                         split and each extra evaluation set (--extra_eval_files); then
                         save_best(): best/ by --metric, atomically, and test_loop() on the held-out
                         test split (--test_file / --test_split) with best/'s weights
      hooks: on_train_start, on_epoch_start, on_step_end, on_epoch_end, on_evaluate, on_save, on_train_end

    validate()           --eval_only (fit() runs it): setup_evaluation(), val_loop() and test_loop() once,
                         on_evaluate, the predictions and eval_results.json, finish(); no training

A research variant subclasses `Loop` and overrides one or two of these methods; everything
else (distribution, mixed precision, resume, best checkpoint) keeps working.

What lives elsewhere: the options (`config.py`; a --config file read into flags, `config_files.py`; the hints
for an unknown option, `option_hints.py`), data loading and tokenizing (`data.py`), labels to ids
(`labels.py`), batching (`loaders.py`), the tokenizer and model (`models.py`; LoRA, `lora.py`), the losses
(`losses.py`), the schedule's arithmetic (`schedules.py`), what several processes or a sharded model change
(`distributed.py`), batch sizes and memory (`memory.py`), metrics (`scores.py`), the Hub (`hub.py`), writing
and reading run state (`checkpoint.py`; what a resume must agree with, `resume_checks.py`), what a trained model's
run recorded, for --eval_only (`trained.py`), stop signals (`preemption.py`), the random numbers (`seeding.py`),
where records and messages go (`logs.py`), callbacks and early stopping (`callbacks.py`), the split and column
names every data module shares (`splits.py`), what the loop checks of a variant's overrides (`contract.py`) and how
errors end a run (`errors.py`).
The `build_*` methods here are thin on purpose: they are the places to override, and they delegate
the work.
"""

import copy
import time
import warnings

import torch

from . import data as D
from . import distributed, hub, loaders, losses, memory, models, preemption, schedules, scores, seeding, trained
from .callbacks import EarlyStopping, check_hook_signatures, reset_callbacks, unknown_hooks
from .checkpoint import Checkpointer
from .checkpoint_folders import callback_keys, check_writable
from .contract import GradientWatch, check_gradient, check_initialised, checked_step_loss, loss_and_outputs
from .errors import RunFinished, UserError, agreed, stop_together
from .labels import check_label_kind
from .logs import LossMeter, RunLog, Tracked
from .preemption import StopSignals
from .splits import EXTRA, WEIGHT, extra_sets


class TrainState:
    """Where the run is: the steps, the best evaluation, the log's length, a stop asked for and the callbacks'
    state. Saved in every checkpoint, so that a resume continues where the run was."""

    def __init__(self):
        self.epoch = 0  # epoch in progress (or the next one, after an epoch checkpoint)
        self.batches_done = 0  # micro-batches of `epoch` already trained on, on each rank
        self.global_step = 0  # optimizer steps taken
        self.best_metric = None
        self.best_epoch = None
        self.best_step = None  # optimizer step of the best evaluation (evaluations may come mid-epoch)
        self.metrics_lines = 0  # lines of metrics.jsonl written when the checkpoint was taken
        self.loss_since_log = None  # [sum, count] of losses since the last log line, over all ranks
        self.tracked_since_log = None  # the same for Loop.track()'s numbers: {name: [sum, count]}
        self.stop_reason = None  # why the run stopped early (request_stop): a resume then trains nothing more
        # a stop request_stop() asked for on this process since the last evaluation, which agrees on it; agreed
        # by every process when a checkpoint is saved too (a resume then stops where the uninterrupted run does)
        self.stop_requested = None
        self.evaluations = 0  # evaluations done (--eval_on_start evaluates step 0 only if none was)
        self.callbacks = {}

    def state_dict(self):
        return dict(self.__dict__)

    def load_state_dict(self, state):
        self.__dict__.update(state)

    def epoch_at(self, epoch_batches):
        """The epoch where the run is, with `epoch_batches` micro-batches an epoch: a whole number at an epoch's
        end, else a fraction (1.5)."""
        if self.batches_done >= epoch_batches:
            return self.epoch + 1
        epoch = round(self.epoch + self.batches_done / max(epoch_batches, 1), 4)
        return int(epoch) if epoch == int(epoch) else epoch  # --eval_on_start's step 0: epoch 0, not 0.0


class Loop:
    # Metrics an overridden compute_metrics computes itself, name -> True when higher is better:
    # build_metric loads no module for them, and --metric may name them to pick best/.
    own_metrics = {}
    # The <name>s of eval_<name>_* keys a variant logs itself (EMA's raw weights: eval_raw_*): no extra
    # evaluation set (--extra_eval_files) may take one, its scores would be overwritten.
    own_eval_names = ()
    # True while compute_loss runs in the trial passes before training (DDP's find_unused_parameters,
    # --auto_find_batch_size's largest batch): a variant keeps side effects (a counter, a memory bank's enqueue)
    # out of those calls
    trial_pass = False
    # Gradual unfreezing: True in a variant that freezes parameters in build_model and unfreezes them in a
    # hook: param_groups keeps them in the optimizer, and under DDP they are registered (find_unused on), which
    # costs DDP gradient buckets of their size; a tuple of name fragments ("layer.5.", "lora_") keeps only those
    # frozen parameters whose names hold one. A frozen parameter left out stays out of the optimizer and DDP
    # (a permanent freeze, a LoRA body, costs nothing).
    unfreezes_later = False
    # --label_smoothing_factor, set in setup() once the data showed single-label classes (weighted_loss)
    label_smoothing = 0.0
    # --weight_column: the current micro-batch's weight per example (a float32 tensor the loop takes out of
    # the batch before training_step sees it; weighted_loss() applies it), or None
    example_weights = None

    def __init__(self, cfg, callbacks=None):
        # a copy: the run fills in what it reads of the data and the model (--eval_only takes the trained run's
        # columns), which must not carry over into the next run built from the same config (a notebook, a sweep)
        self.cfg = copy.copy(cfg)
        self.accelerator = None  # build_accelerator(), in setup()
        self.callbacks = list(callbacks or [])
        if cfg.early_stopping_patience:
            self.callbacks.append(EarlyStopping(cfg.early_stopping_patience, cfg.early_stopping_threshold))
        self.state = TrainState()
        self.signals = StopSignals()  # a stop signal: checkpoint at the next optimizer step, exit 75
        self.checkpointer = Checkpointer(self)
        self.fitted = False  # fit() ran (once per Loop)
        self.gradient_watch = GradientWatch()  # a training_step that never calls backward: refused, not trained on
        self.process_settings = None  # seeding.process_settings() before the run changed them (start)
        self.resumed_from = None
        self.frozen_for_later = []  # frozen parameters DDP registers for unfreezing (configure_ddp)
        self.ddp_registered = None  # ids of the parameters DDP synchronises (configure_ddp)
        self.frozen_at_start = set()  # ids of the parameters frozen when training starts (after prepare)
        self.train_sampler, self.pad_multiple = None, 1  # set by build_dataloaders
        self.train_dataloader = self.eval_dataloader = None  # build_dataloaders(); no training one with --eval_only
        self.test_dataloader = None  # build_test_dataloader(), with --test_file / --test_split
        self.extra_eval_dataloaders = {}  # build_extra_eval_dataloaders(): {name: loader}, --extra_eval_files
        self.class_weights = None  # build_class_weights(): a tensor of one loss weight per label, or None
        self.row_weights = None  # each training row's loss weight (numpy), or None: distributed.loss_shares
        self.tracked = Tracked()  # numbers a variant reports with track()
        # score()'s last {"eval"/"test": (logits, predictions, references)}: --eval_only's files. logits is None unless
        # something read them (--eval_only, a compute_metrics that takes them): N x K fp32 is GBs at 10k classes
        self.scored = {}

    # ================================================================ the story
    def fit(self):
        """Train, evaluating every epoch and keeping the best model; returns the best metrics.
        With --eval_only, validate() instead (it returns the metrics of its one evaluation). Once per Loop."""
        check_initialised(self)  # a variant's __init__ that skipped Loop's
        if self.fitted:  # its state is at the end of that run: a second fit() trained nothing and cleared its log
            raise UserError(f"this {type(self).__name__} has run already (fit() is once per Loop); make a new one "
                            f"for another run: {type(self).__name__}(cfg).fit().")
        self.fitted = True
        reset_callbacks(self.callbacks)  # reused across runs (a sweep): afresh; a resume then loads their state
        if self.cfg.eval_only:
            return self.validate()
        # Stop signals are taken from the start: one during setup (minutes of tokenizing) or resume
        # stops the run right after them, with a checkpoint to resume from, exit 75. Gradients on whatever the
        # caller's block says (a notebook cell under torch.no_grad() failed at the first backward).
        with torch.enable_grad(), torch.inference_mode(False), preemption.way_out(self, self.signals.install()):
            try:
                self.setup()
            except RunFinished as done:  # a re-run of a finished job (--resume_from_checkpoint auto)
                self.checkpointer.end_finished()  # a push it owes, its finish record, the lock
                self.print(str(done))
                return self.checkpointer.best_metrics()
            self.resume()
            self.gradient_watch.first_step = self.state.global_step  # this process's steps start here
            if self.stop_signalled(at_once=True):
                preemption.preempt(self)
            if self.stop_reason:  # a checkpoint saved as the run stopped early: its story is over
                self.print(f"the run had stopped at step {self.state.global_step} ({self.stop_reason}); "
                           f"nothing left to train")
            self.call("on_train_start")
            cfg = self.cfg
            # at step 0 with no evaluation yet (a resume of the checkpoint a stop during setup saved evaluates too)
            if cfg.eval_on_start and self.state.global_step == 0 and not self.state.evaluations \
                    and not self.stop_reason:
                self.evaluate()  # the starting model: the baseline, and the evaluation checked before hours of training
                if self.stop_signalled():  # a signal during it: checkpoint step 0 (its resume does not evaluate again)
                    preemption.preempt(self)
            for epoch in range(self.state.epoch, self.num_epochs if not self.stop_reason else 0):
                self.state.epoch = epoch
                self.set_epoch(epoch)  # before on_epoch_start: the hook sees this epoch's batches
                self.call("on_epoch_start")
                self.train_loop(epoch)
                if self.stop_reason and self.state.batches_done < len(self.train_dataloader):
                    self.print(f"stopping: {self.stop_reason}")  # early stopping at a mid-epoch evaluation
                    break
                self.call("on_epoch_end")  # before the epoch's evaluation: what it changes (an average) is scored
                self.evaluate()
                self.state.epoch, self.state.batches_done = epoch + 1, 0
                # a step checkpoint that falls on the epoch's last step comes here, after its evaluation
                # (as at --eval_steps): a resume from it does not evaluate that step again
                if cfg.checkpoint_due(self.state.global_step, epoch_end=True):
                    self.save_checkpoint()
                if self.stop_reason:
                    self.print(f"stopping: {self.stop_reason}")
                    break
                # a signal that came during evaluation: stop here, at a clean epoch boundary
                if epoch + 1 < self.num_epochs and self.stop_signalled():
                    preemption.preempt(self)
            self.call("on_train_end")
            self.finish()
            self.runlog.summary(self)
        return self.checkpointer.best_metrics()

    def setup(self):
        """Everything before the first step: the parts (the build_* methods), each check that can refuse the run
        while that costs little (options, output_dir, data against a resumed checkpoint, disk space), accelerate's
        prepare (prepare_parts), the step arithmetic and the schedule; the output_dir is touched only once every
        check passed."""
        cfg = self.cfg
        acc = self.start()
        self.checkpointer.check_output_dir()  # before any work: a refused start costs nothing
        # (what one node alone may fail, a path it lacks, stops every rank with its line: errors.agreed)
        agreed(acc, self.check_options, doing="checking the options")
        stop_together(acc, hub.push_problem(cfg) if acc.is_main_process else None)  # a push refused now, not after hours
        memory.resume_batch_size(self)  # --auto_find_batch_size: a resumed run takes the batch its checkpoint found
        self.build_parts()
        self.checkpointer.check_same_data()  # node-local copies of the data that differ: before the resume's check
        self.checkpointer.check_resume_data()  # a resume on changed data files would skip the wrong batches
        self.class_weights = self.build_class_weights()
        losses.set_up(self, Loop)  # label smoothing, each row's weight in its step, a warning for an override
        self.print(models.describe_parameters(self.model))  # after an override froze or added what it wanted
        renamed = models.renamed_weights(self.model)  # an override's head that best/ would not load back
        if renamed:
            self.warn(renamed)
        self.optimizer = self.build_optimizer(self.model)
        models.check_outside_parameters(self.model, self.optimizer, acc.num_processes)  # a module beside the model
        distributed.check_unfreezable(self)  # unfreezes_later with an optimizer that left the frozen ones out
        distributed.configure_deepspeed(acc, cfg)  # batch size, accumulation and clipping are ours, not its config's
        self.configure_ddp(self.model)
        self.configure_fsdp(self.model)
        if cfg.auto_find_batch_size:
            self.find_batch_size()  # before prepare_parts(): the DataLoaders may be rebuilt for smaller batches
        self.prepare_parts()
        # Counted after prepare: the length is per process, so the schedule fits any world size.
        self.epoch_length = len(self.train_dataloader)  # micro-batches per epoch and process (set_epoch checks it)
        self.checkpointer.check_epoch_length(self.epoch_length)  # and a resumed checkpoint's epochs
        # the last epoch cut short by --max_steps or a fraction of an epoch (fit evaluates where it ends)
        self.steps_per_epoch, self.max_steps, self.num_epochs = schedules.steps(cfg, self.epoch_length)
        cfg.run_steps = self.max_steps  # what --eval_steps 0.1 (and the other cadences below 1) are a share of
        self.checkpointer.check_finished_unrecorded(self.max_steps)  # an older loop's finished run, re-submitted
        if len(self.train_dataloader) < cfg.gradient_accumulation_steps:
            self.warn(f"--gradient_accumulation_steps {cfg.gradient_accumulation_steps} is more than the "
                      f"{len(self.train_dataloader)} batches per epoch; each epoch takes one optimizer step.")
        # The scheduler is NOT passed to prepare(): accelerate would step it once per process.
        # We step it once per optimizer step ourselves, and checkpoint it via registration.
        self.lr_scheduler = self.build_scheduler(distributed.scheduled_optimizer(acc, self.optimizer), self.max_steps)
        self.checkpointer.register(self.lr_scheduler, self.state, *self.checkpoint_objects())
        self.signals.connect(acc)
        self.loss_meter = LossMeter(acc.device)
        self.checkpointer.check_disk_space()  # one checkpoint and best/ must fit
        self.checkpointer.check_step_alone()  # srun -n 2 python loop/train.py into one folder: every task stops
        # a tracker that cannot start (wandb not logged in) fails here
        self.runlog.start_trackers(resume_step=self.checkpointer.resume_step(), run_id=self.checkpointer.resume_run_id())
        self.checkpointer.clear_earlier_run()  # every check passed: only now touch the output_dir
        self.runlog.describe_run(self)
        # everything above (the new head, a variant's checkpoint_objects) drew the same numbers on every process:
        # from here each draws its own dropout masks (a resume then puts back each one's saved generators)
        seeding.seed_per_process(acc, cfg.seed)

    def prepare_parts(self):
        """accelerator.prepare() of what the build_* methods made: the model, the optimizer and every DataLoader
        (DDP/FSDP wrapping, device placement, each process's share of the batches), then what only the prepared
        parts tell (distributed.prepare_parts)."""
        distributed.prepare_parts(self)

    def start(self):
        """The accelerator, the seed and the run log: the first steps of setup() and setup_evaluation()."""
        self.process_settings = seeding.process_settings()  # put back when the run ends (a notebook goes on)
        late = seeding.full_determinism(self.cfg)  # --full_determinism: before the accelerator starts CUDA (cuBLAS)
        self.accelerator = acc = self.build_accelerator()
        distributed.check_world(acc)  # processes no launcher joined (srun -n 2, ...): one line, not N runs
        slow = distributed.check_precision(acc)  # a precision named but not run (fp16 on a CPU) is one line
        compiled = distributed.take_over_dynamo(self.cfg, acc)  # accelerate's torch.compile becomes --torch_compile
        seeding.seed_all(self.cfg.seed)  # the same on every process until setup() is done
        self.runlog = RunLog(self.cfg, acc)
        loaders.close_at_exit(self)  # a loop driven by its parts, which never reaches fit()'s closing
        for warning in (late, slow):
            if warning:
                self.warn(warning)
        if compiled:
            self.print(compiled)
        return acc

    @property
    def unwrapped_model(self):
        """The model itself, its submodules and parameters reachable by their own names: self.model is what
        accelerate prepared (under DDP a DistributedDataParallel wrapper, with --torch_compile a compiled one whose
        parameters are named `_orig_mod.<name>`), so `self.model.base_model` works in one process and fails in two.
        Call self.model, not this, for a forward that DDP synchronizes and torch.compile runs."""
        return models.bare_model(self.accelerator, self.model)

    def check_options(self):
        """Options that can be refused in a second, before any work."""
        models.check_attention(self.cfg, self.accelerator.mixed_precision)  # flash-attn needs mixed precision
        models.check_dtype(self.cfg, self.accelerator)  # a bf16 LoRA body meets its fp32 head under bf16 autocast
        memory.check(self.cfg, self.accelerator)  # --auto_find_batch_size needs the whole model on a device
        models.set_tf32(self.cfg, self.accelerator.device)  # --tf32: an Ampere+ GPU, or one line
        models.set_sdpa_backends(self.cfg, self.accelerator.device)  # not cuDNN's attention, unless asked
        offline = hub.check(self.cfg)  # a Hub name we cannot get: one line in seconds, not minutes of retries
        if offline:  # every name cached, no Hub: read offline
            self.print(offline)
        check_hook_signatures(self)  # on_evaluate(self, m): refused now, not at the first evaluation
        hookless = unknown_hooks(self)  # an on_epoch_stop nothing would call
        if hookless:
            self.warn(hookless)
        callback_keys(self.callbacks)  # a state_key that would hand one callback's state to another: refused now
        self.cfg.check_extra_names(self.own_eval_names, type(self).__name__)  # a variant's own eval_<name>_*
        self.cfg.check_metrics(self.own_metrics, self.own_eval_names, type(self).__name__)  # --metric SET_name

    def build_parts(self):
        """The tokenizer, data, model, metric and DataLoaders (train's None with --eval_only), with the
        checks between them; shared by setup() and setup_evaluation()."""
        cfg = self.cfg
        acc = self.accelerator
        # first: a bad model name fails before anything is loaded (a folder one node lacks: every rank stops)
        self.model_config = agreed(acc, lambda: models.load_config(cfg), doing="reading the model's config")
        self.tokenizer = agreed(acc, self.build_tokenizer, doing="loading the tokenizer")
        self.max_length = models.max_length(cfg, self.model_config, self.tokenizer)
        # Saved with best/: pipeline(truncation=True) then cuts texts where training and evaluation did
        # (not at the tokenizer's own limit, which may be longer, or absent: 1e30).
        models.record_max_length(self.tokenizer, self.max_length)
        models.check_mixed_precision(self.model_config, self.accelerator.mixed_precision)  # DeBERTa v1: fails in bf16
        if cfg.eval_only:
            self.check_trained_model()  # a base model, a regression's metric: before the data work
        # A metric from the Hub may fail to load: try it before the data work (importing evaluate alone
        # takes seconds). The ones shipped with loop are computed in scores.py, made after the data checks.
        metrics_first = scores.from_hub(cfg.metric_list(), skip=self.computed_metrics())
        if metrics_first:
            self.metric = self.build_metric()
        self.data = self.build_datasets()
        models.record_max_length(self.tokenizer, self.max_length)  # again: a variant's build_datasets may set another
        # (only where the loop's own compute_metrics scores: a variant's own may give no f1, found after an epoch)
        ours = type(self).compute_metrics is Loop.compute_metrics
        said = cfg.score_as_multi_label(resumed=bool(self.checkpointer.resume_path)) if self.multi_label and ours else None
        if said:  # --metric left out: multi-label data picks by f1 (a Hub metric built first is refused just below)
            self.print(said)
        self.check_label_kind()  # labels an overridden build_datasets made: before a whole epoch of training
        self.model = agreed(acc, self.build_model, doing="building the model")
        models.check_vocabulary(cfg, self.model, self.data.max_token_id)  # a tokenizer from another model
        if not metrics_first:
            self.metric = self.build_metric()
        self.train_dataloader, self.eval_dataloader = self.build_dataloaders()
        self.test_dataloader = self.build_test_dataloader()
        self.extra_eval_dataloaders = self.build_extra_eval_dataloaders()

    # ================================================================ scoring a trained model (--eval_only)
    def validate(self):
        """Score --model_name_or_path as it is, once, on the evaluation split (and the held-out test
        split), training nothing; print the metrics, write output_dir/eval_results.json and each example's
        prediction (eval_predictions.jsonl, test_predictions.jsonl), return the metrics. (Named as
        Lightning's Trainer.validate, which does the same.)"""
        check_initialised(self)  # a variant's __init__ that skipped Loop's
        if not self.cfg.eval_only:  # its data, model and files are --eval_only's: a training config died after scoring
            raise UserError(f"validate() scores a trained model as --eval_only does, and this {type(self).__name__} "
                            f"was configured to train; configure it with --eval_only (eval_only=True), or call fit().")
        with preemption.way_out(self):  # the loaders closed, the process put back
            self.setup_evaluation()
            started = time.perf_counter()
            metrics = self.val_loop()
            self.runlog.eval_seconds += time.perf_counter() - started
            if self.test_dataloader is not None:
                metrics.update(self.test_loop())
            self.call("on_evaluate", metrics=metrics)
            self.runlog.write_scoring(self, metrics)  # the predictions files and eval_results.json
            self.finish()
        return metrics

    def setup_evaluation(self):
        """setup() for --eval_only: the accelerator, tokenizer, data (labels as in training, nothing
        tokenized for it), the trained model and the evaluation DataLoaders; no optimizer, no
        checkpoints: output_dir gets eval_results.json and the predictions files, nothing else (and its lock while
        the scoring runs).
        The model is not wrapped for training (DDP, FSDP): every process holds it whole and scores its
        share."""
        acc = self.start()
        # before the work whose results it is to hold; its lock keeps a training run out meanwhile
        self.checkpointer.lock = check_writable(acc, self.cfg.output_dir)
        # (the Hub check first: a Hub id's records come from the cache, or the Hub; a path one node lacks stops all)
        agreed(self.accelerator, self.check_options, doing="checking the options")
        dtype = trained.trained_dtype(self.cfg, acc)  # a best/ whose body the run kept in bf16: scored in it
        if dtype:
            self.print(dtype)
        self.build_parts()
        self.checkpointer.check_same_data()  # node-local copies of the evaluation data that differ
        other = trained.check_scored_split(self.cfg, self.data)  # the run's carve, drawn again: the rows it recorded?
        if other:
            self.warn(other)
        distributed.prepare_for_scoring(self)  # the model unwrapped (no DDP/FSDP), the DataLoaders sharded
        self.runlog.describe_evaluation(self)

    def check_trained_model(self):
        """--eval_only, before the data work: the model is a trained classifier (not a base model whose
        head would be new), a regression model is scored as one, and the columns and evaluation rows its
        run recorded are taken unless given (trained.check_model); the data's labels and problem are checked
        against it in the data step (data.prepare)."""
        trained.check_model(self.cfg, self.model_config, say=self.print)

    # ================================================================ building (override to change a part)
    def build_accelerator(self):
        """The Accelerator (distributed.build_accelerator: our schedule, accumulation and trackers)."""
        return distributed.build_accelerator(self.cfg)

    def build_tokenizer(self):
        """The tokenizer of `self.model_config` (with a pad token, and the padding side the model needs)."""
        return models.load_tokenizer(self.cfg, self.model_config, say=self.print)

    def build_datasets(self):
        """Raw data -> checked -> labels as ids -> tokenized (at `self.max_length`); returns a `data.Data`."""
        head = models.trained_head_labels(self.cfg, self.model_config)  # a fine-tuned classifier's label order
        # --eval_only: the model's classes, problem and label reading, which the data must match
        model = trained.data_must_match(self.cfg, self.model_config) if self.cfg.eval_only else {}
        return D.prepare(self.cfg, self.tokenizer, self.max_length, self.accelerator, head_labels=head, **model)

    @property
    def multi_label(self):
        """Whether each example has a set of labels (data.Data.multi_label): multi-hot float labels,
        binary cross-entropy, a label predicted where its logit is above 0 (sigmoid 0.5)."""
        return bool(getattr(getattr(self, "data", None), "multi_label", False))

    @property
    def regression(self):
        """Whether each label is a number (--problem_type regression, data.Data.regression): float
        targets, one output per text trained with mean squared error, predictions are that output."""
        return bool(getattr(getattr(self, "data", None), "regression", False))

    def check_label_kind(self):
        """The default evaluation_loss and compute_metrics take class ids (or the loop's own multi-label
        rows): other labels need both overridden (labels.check_label_kind)."""
        base = [n for n in ("evaluation_loss", "compute_metrics") if getattr(type(self), n) is getattr(Loop, n)]
        check_label_kind(self.data, self.cfg.metric_list(), self.own_metrics, base)

    def build_class_weights(self):
        """--class_weights as a float32 tensor on the device (one weight per label id), or None; said once."""
        weights = losses.class_weights(self.cfg.class_weight_list(), self.data)
        if weights is None:
            return None
        self.print(losses.describe(weights, self.data.label_names, self.multi_label))
        return torch.tensor(weights, device=self.accelerator.device)

    def build_model(self):
        """AutoModelForSequenceClassification in fp32 (master weights), labels in its config."""
        return models.build_model(self.cfg, self.model_config, self.data.label_names,
                                  tokenizer=self.tokenizer,  # pad id synced to the tokenizer
                                  multi_label=self.multi_label, regression=self.regression)

    def find_batch_size(self):
        """--auto_find_batch_size: the largest per-device batch (from the one asked for, down) whose longest
        micro-batch fits in memory, with the accumulation that keeps the examples per optimizer step (a
        resumed run keeps its checkpoint's), and an evaluation batch that fits; the DataLoaders are rebuilt
        for them (memory.choose_batch_size)."""
        memory.choose_batch_size(self)

    def configure_ddp(self, model):
        """DDP only: find_unused_parameters from trial passes through compute_loss, and the frozen
        parameters a variant with `unfreezes_later` unfreezes later (distributed.configure_ddp)."""
        distributed.configure_ddp(self, model)

    def configure_fsdp(self, model):
        """FSDP2 only: the blocks to shard; encoder-decoders refused (distributed.configure_fsdp)."""
        distributed.configure_fsdp(self.accelerator, model)

    def build_train_sampler(self):
        """The training batch sampler (override for a curriculum or another batching): it yields
        lists of indices into self.data.train and must be a pure function of (data seed, epoch), with
        set_epoch(epoch), the same len() every epoch, and its one short batch, if any, last: a
        resume skips the batches already done. Default: length-grouped, shuffled per epoch."""
        return loaders.train_sampler(self.cfg, self.data.train_lengths)

    def build_dataloaders(self):
        """(train, eval) DataLoaders: batches from build_train_sampler(), padding per batch."""
        sampler = self.build_train_sampler() if self.data.train is not None else None  # None: --eval_only
        train, evaluation, self.train_sampler, self.pad_multiple = loaders.dataloaders(
            self.cfg, self.data, self.tokenizer, self.max_length, self.accelerator, sampler=sampler)
        return train, evaluation

    def build_test_dataloader(self):
        """The held-out test split's DataLoader (None without one), batched and padded like evaluation's."""
        return loaders.held_out_dataloader(self.cfg, self.data.test, like=self.eval_dataloader) \
            if self.data.test is not None else None

    def build_extra_eval_dataloaders(self):
        """{name: DataLoader} of the extra evaluation sets (--extra_eval_files, --extra_eval_splits; {}
        without), batched and padded like evaluation's."""
        return {name: loaders.held_out_dataloader(self.cfg, ds, like=self.eval_dataloader)
                for name, ds in extra_sets(self.data).items()}

    def param_groups(self, model):
        """The optimizer's parameter groups: the trainable parameters with weight decay ("decay")
        and the biases and norm weights without ("no_decay"); with `unfreezes_later` the frozen ones too
        (AdamW leaves a parameter alone until it has a gradient). Split or edit them for per-layer or
        per-module learning rates (examples/llrd.py): the no-decay rule stays the loop's."""
        return models.param_groups(model, self.cfg.weight_decay, include_frozen=self.unfreezes_later)

    def build_optimizer(self, model):
        """AdamW over param_groups(model), fused on CUDA except under fp16 (models.adamw)."""
        return models.adamw(self.param_groups(model), self.cfg, self.accelerator)

    def build_scheduler(self, optimizer, num_training_steps):
        """--lr_scheduler_type over the run's optimizer steps, with its warmup and --lr_scheduler_kwargs
        (schedules.build)."""
        return schedules.build(self.cfg, optimizer, num_training_steps, self.warn)

    def checkpoint_objects(self):
        """Extra objects with state_dict/load_state_dict (an EMA, a memory bank), saved in every
        checkpoint (by the main process: per-rank state gathers its parts in state_dict) and restored
        on resume, on every process. Called once, after prepare(); keep the order fixed. Not called with
        --eval_only (nothing is trained or resumed): what val_loop reads of them must not depend on it.
        Not for trainable modules: those go on the model in build_model(), so the optimizer,
        DDP and best/ see them."""
        return []

    def resume_signature(self):
        """What a resume must find again beyond the data and the options: {name: JSON value} of a
        variant's own inputs that the config does not hold (a distillation teacher's weights hash, a
        file's checksum); recorded in every checkpoint, and a resume that computes other values stops
        with one line naming them. Called by the main process at each save, and by every process
        before resuming: the same on each."""
        return {}

    def build_metric(self):
        """{name: metric with `.compute(predictions=..., references=..., **options)`} for --metrics and
        --metric, but own_metrics. accuracy, f1, precision, recall and matthews_correlation ship with the
        package (scores.Shipped, offline); other names are evaluate modules from the Hub. A regression's
        metrics are computed directly (scores.regression), not loaded."""
        return scores.load_metrics(self.cfg.metric_list(), self.accelerator, skip=self.computed_metrics(),
                                   verbose=self.runlog.verbose, metric=self.cfg.metric_source()[1])

    def computed_metrics(self):
        """Metric names build_metric makes nothing for: own_metrics, and a regression's (scores.regression;
        never a Hub module: on classes they are refused by name, check_label_kind)."""
        return tuple(self.own_metrics) + scores.REGRESSION_METRICS

    # ================================================================ training
    def train_loop(self, epoch):
        """One epoch of optimizer steps (continuing mid-epoch after a resume)."""
        acc = self.accelerator
        dataloader = self.epoch_dataloader(epoch)
        if dataloader is None:  # resumed from --max_steps' last step: nothing left
            return
        self.model.train()
        bar = self.runlog.progress(total=self.epoch_batches(epoch), initial=self.state.batches_done,
                                   desc=f"epoch {epoch + 1}")
        runlog, started, outside = self.runlog, time.perf_counter(), self.runlog.outside_training()
        for batch in dataloader:
            self.example_weights = batch.pop(WEIGHT, None)  # not a model input: weighted_loss() reads it
            try:
                with acc.accumulate(self.model):
                    loss = checked_step_loss(self.training_step(batch))
                    self.loss_meter.add(loss, distributed.log_weight(self))  # each step alike in a line of several
                    if acc.sync_gradients:
                        self.optimizer_step()
            except Exception as e:  # a batch too large is the user's to change: one line, not a traceback
                memory.raise_if_out_of_memory(self, e, batch, "training")
                distributed.raise_if_wrapper_attribute(e)  # model.head on DDP's wrapper: where to reach it
                raise
            self.state.batches_done += 1
            runlog.count_batch(batch)
            bar.update(1)
            if acc.sync_gradients:
                self.state.global_step += 1
                if self.after_step(bar):
                    break
        bar.close()
        self.gradient_watch.check_learned(self.state.global_step)  # a run none of whose steps had a gradient
        if dataloader is not self.train_dataloader:  # the resumed epoch's skipping loader: its workers end here,
            loaders.close_dataloaders(dataloader)    # not beside the next epoch's for the rest of the run
            self._skipping_dataloader = None
        self.example_weights = None  # the last micro-batch's: nothing after the epoch is weighted by them
        runlog.train_seconds += time.perf_counter() - started - (runlog.outside_training() - outside)

    def epoch_dataloader(self, epoch):
        """Epoch `epoch`'s training batches in their order (set_epoch, and the checks each epoch makes), without those
        a resumed epoch trained already; None when the run is at --max_steps."""
        sampler = self.set_epoch(epoch)
        unrepeatable = loaders.check_sampler_order(sampler, epoch, self.accelerator)  # a variant's sampler: the same
        if unrepeatable:                                                               # order on every process and
            self.warn(unrepeatable)                                                    # on a resume
        distributed.check_trainable(self)  # on_epoch_start may have unfrozen some
        if hasattr(sampler, "padding_efficiency"):
            eff = sampler.padding_efficiency(multiple=self.pad_multiple, cap=self.max_length)
            self.print(f"epoch {epoch + 1}: padding efficiency {eff:.3f}")
        if self.state.global_step >= self.max_steps:
            return None
        dataloader = self.train_dataloader
        if self.state.batches_done:
            # Only the resumed epoch skips; the sampler is a function of (seed, epoch), so the
            # remaining batches are exactly those the uninterrupted run would have seen.
            dataloader = self._skipping_dataloader = loaders.skip_batches(self.accelerator, dataloader,
                                                                          self.state.batches_done)
            unseeded = loaders.unseeded_order_warning(self.train_dataloader, self.state.batches_done)
            if unseeded:
                self.warn(unseeded)
        return dataloader

    def after_step(self, bar):
        """What follows an optimizer step: on_step_end, the log line every --logging_steps, an --eval_steps
        evaluation, a step checkpoint, a stop signal (a checkpoint, exit 75). True when the epoch ends here (early
        stopping at this evaluation, or --max_steps)."""
        # the epoch's last step, or --max_steps' (fit() evaluates and checkpoints it)
        last = self.state.batches_done >= len(self.train_dataloader) or self.state.global_step >= self.max_steps
        self.call("on_step_end")  # before the log line: a number it tracks is in this step's line
        logging, evaluating, saving = schedules.due(self.cfg, self.state.global_step, last)
        if logging:
            distributed.check_trainable(self)  # a parameter unfrozen without unfreezes_later: refused here
            self.log_training()
        # Evaluate before the step's checkpoint, so the checkpoint holds the evaluation's
        # record and best/; an evaluation cut short is redone from the previous checkpoint.
        stopping = False
        if evaluating or saving:
            with self.runlog.not_training(bar):  # out of samples/s, the bar's rate and its eta
                if evaluating:
                    self.evaluate()
                    stopping = bool(self.stop_reason)  # early stopping: leave after this step's checkpoint
                if saving:
                    self.save_checkpoint()  # at the epoch's last step: fit() saves it after the evaluation
        if stopping:  # (its checkpoint, due here, holds the stop: a resume from 'latest' trains nothing)
            return True
        # every rank asks at every optimizer step, so all of them stop at the same one
        if self.stop_signalled():
            bar.close()
            preemption.preempt(self)
        return self.state.global_step >= self.max_steps

    def set_epoch(self, epoch):
        """Put the training batches in epoch `epoch`'s order; returns the batch sampler (None when
        build_dataloaders was overridden without one). Refuses a sampler whose length changed: the
        steps per epoch, the schedule's length and a resume's skipping are counted from the first."""
        # Accelerate's dataloader re-sets its batch sampler's epoch to its own iteration counter on
        # every pass, and that counter starts at 0 in a resumed process: set both to the true epoch.
        if hasattr(self.train_dataloader, "set_epoch"):
            self.train_dataloader.set_epoch(epoch)
        sampler = self.train_sampler
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        loaders.check_epoch_length(len(self.train_dataloader), self.epoch_length, sampler, epoch)
        return sampler

    def epoch_batches(self, epoch):
        """Micro-batches epoch `epoch` trains: all of them, or in --max_steps' last epoch those it needs."""
        n, accumulate = len(self.train_dataloader), self.cfg.gradient_accumulation_steps
        return min(n, (self.max_steps - epoch * self.steps_per_epoch) * accumulate)

    def training_step(self, batch):
        """Forward and backward on one micro-batch; returns the (unscaled) loss.

        Under --gradient_accumulation_steps the parameters' .grad already holds the window's
        earlier micro-batches when this runs (and is averaged across processes only on the
        window's last one, when accelerator.sync_gradients is True): a method that reads
        gradients mid-step (FGM, SAM) must set the accumulated ones aside and add them back, run its
        first backward under `with self.accelerator.no_sync(self.model):` (one all-reduce per step,
        not two) and restore perturbed weights from a copy (subtracting does not round back)."""
        loss, _ = loss_and_outputs(self.compute_loss(self.model, batch))  # (loss, outputs), the loss 0-d
        check_gradient(loss)  # a detached loss: one line, not torch's error from inside backward
        self.backward(loss)
        share = distributed.loss_shares(self)[1]
        return loss.detach() if share == 1 else loss.detach() * share  # the log's mean: the step's example mean

    def backward(self, loss):
        """`accelerator.backward`, which divides by --gradient_accumulation_steps, scaled so that an epoch's
        last optimizer step, whose micro-batches differ in size (a short last batch, a shorter window, a last
        round split among the processes), uses the mean gradient over its examples as every other step
        does (distributed.loss_shares). Call this, not accelerator.backward, from an overridden training_step."""
        share = distributed.loss_shares(self)[0]
        self.accelerator.backward(loss if share == 1 else loss * share)

    def compute_loss(self, model, batch):
        """Return (loss, outputs). Override for a different objective. The loss is one micro-batch's
        on one process; an optimizer step averages those by their examples (an override's loss normalised over its
        batch, like a class-weighted mean, is normalised per micro-batch), or for this default with --class_weights
        or --weight_column by their share of the step's weight: the step's weighted mean over all of its examples.
        With --class_weights, --label_smoothing_factor or --weight_column (in training), the model's loss
        is replaced by weighted_loss()."""
        outputs = model(**batch)
        if self.class_weights is None and not self.label_smoothing and (self.example_weights is None
                                                                         or not model.training):
            return outputs.loss, outputs
        return self.weighted_loss(outputs.logits, batch["labels"]), outputs

    def weighted_loss(self, logits, labels, example_weights=None):
        """The training loss weighted by --class_weights and smoothed by --label_smoothing_factor, each
        example weighted by --weight_column, in fp32 (losses.weighted: the micro-batch's weighted mean, which
        backward() weighs by its share of the step's weight; multi-label: BCE with pos_weight); without them the plain
        loss. `example_weights`: one per row of `logits` (default: the micro-batch's, self.example_weights; a loss
        over the batch twice, as R-Drop's, passes them twice)."""
        return losses.weighted(logits, labels, self.class_weights, self.multi_label, self.label_smoothing,
                               example_weights=self.example_weights if example_weights is None else example_weights,
                               regression=self.regression)

    def optimizer_step(self):
        """Clip (only when gradients are synced), step, schedule, zero."""
        acc = self.accelerator
        if not self.gradient_watch.found(self.model, distributed.kind(acc)):  # a batch training_step skipped (or no
            # backward at all: refused at the epoch's end): nothing to step (fp16's scaler fails on a step without one)
            with warnings.catch_warnings():  # (torch's "lr_scheduler.step() before optimizer.step()": on purpose)
                warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler.step\(\)`")
                self.lr_scheduler.step()  # the schedule follows the steps
            self.optimizer.zero_grad(set_to_none=True)
            return
        # DeepSpeed clips inside its own step (configure_deepspeed gave it --max_grad_norm); asking
        # accelerate would only fetch its norm, a host sync per step
        if self.cfg.max_grad_norm and distributed.kind(acc) != "DEEPSPEED":
            norm = acc.clip_grad_norm_(self.model.parameters(), self.cfg.max_grad_norm)
            if norm is not None:  # before clipping; the log line's mean, kept on the device (no host sync)
                # FSDP2 returns a DTensor: its whole value (a collective every rank makes here)
                self.tracked.add("grad_norm", norm.full_tensor() if hasattr(norm, "full_tensor") else norm, own=True)
        self.optimizer.step()
        if not acc.optimizer_step_was_skipped:  # fp16 scaler skipped an overflow step: keep the schedule
            self.lr_scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

    def log_training(self):
        """The mean training loss since the last log line: the step loop's only reads from the device, every
        logging_steps (the loss with its NaN count, and the tracked numbers with grad_norm)."""
        self.log(self.training_record())

    def training_record(self):
        """The training log line: step, epoch, mean loss, learning rate, grad_norm and the tracked numbers
        (RunLog.training_record). Override to add a number computed at that moment (a weight norm): call
        super(), add keys, return it. Runs on every process (the loss mean is a collective)."""
        return self.runlog.training_record(self)

    def track(self, name, value):
        """Report a training number (a tensor, kept on the device) next to the loss: the next log
        line holds its mean since the previous line, over all processes; checkpointed."""
        self.tracked.add(name, value)

    # ================================================================ evaluation
    def evaluate(self):
        """One evaluation where the run is: val_loop(), a metrics.jsonl record, best/, on_evaluate."""
        state, epoch = self.state, self.eval_epoch()
        started = time.perf_counter()
        metrics = self.val_loop()
        state.evaluations += 1
        self.runlog.eval_seconds += time.perf_counter() - started
        self.log({"step": state.global_step, "epoch": epoch, **metrics})
        self.save_best(metrics)
        self.call("on_evaluate", metrics=metrics)
        # a stop requested on any process since the last evaluation stops them all, here (stop_reason is read
        # nowhere before: every process takes the same path)
        agreed = preemption.agree_reason(self.accelerator, state.stop_requested)
        state.stop_reason, state.stop_requested = state.stop_reason or agreed, None
        return metrics

    def val_loop(self):
        """Score every evaluation example exactly once, on all ranks; returns eval_* metrics, and
        eval_<name>_* for each extra evaluation set, scored with the same weights (their scores pick
        nothing; as test_loop, they leave the RNG as it was: a run trains exactly as one without them)."""
        metrics = self.score(self.eval_dataloader, self.data.eval, prefix="eval")
        for name, loader in self.extra_eval_dataloaders.items():
            with models.rng_kept(self.accelerator.device):
                metrics.update(self.score(loader, self.data.extra_eval[name], prefix=EXTRA + name))
        return metrics

    def test_loop(self):
        """Score the held-out test split with the weights best/ was just written from; returns test_*
        metrics. The RNG is set back afterwards: a run with test data trains exactly as one without."""
        started = time.perf_counter()
        with models.rng_kept(self.accelerator.device):
            metrics = self.score(self.test_dataloader, self.data.test, prefix="test")
        self.runlog.eval_seconds += time.perf_counter() - started  # not training time (samples/s)
        return metrics

    def score(self, dataloader, dataset, prefix):
        """Score every example of `dataset` (through `dataloader`) exactly once, on all ranks, with
        evaluation_step, evaluation_loss and compute_metrics; returns {prefix}_* metrics (scores.score_split)."""
        return scores.score_split(self, dataloader, dataset, prefix)

    def evaluation_step(self, batch):
        """Return (logits, labels) for one evaluation batch (its "labels" are popped from `batch`)."""
        labels = batch.pop("labels")
        outputs = self.model(**batch)
        return outputs.logits, labels

    def evaluation_loss(self, logits, labels):
        """Per-example loss behind eval_loss (and --metric loss): cross-entropy, or for multi-label
        data binary cross-entropy averaged over the labels (the models' own training losses). Override
        it to score evaluation by the objective compute_loss trains (focal, label-smoothed, ...).
        Regression: the squared error of the one output (the models' MSE, per example)."""
        return losses.per_example(logits, labels, self.multi_label, self.regression)

    def compute_metrics(self, predictions, references, logits=None):
        """Metric values by name (without the eval_ prefix). `predictions` and `references` are
        class ids, `logits` the fp32 scores behind the predictions (for AUC, calibration, top-k);
        all on the CPU, one row per evaluation example, gathered from every process. Multi-label:
        rows of 0/1 per label (scores.multi_label: exact-match accuracy, micro-averaged f1,
        precision, recall and Matthews correlation over every example-label decision). Regression:
        float predictions (the output) and targets (scores.regression: mse, rmse, mae, r2, pearson,
        spearman). This one reads no logits, so score() keeps them only for an override that takes them."""
        if self.regression:
            names = [n for n in self.cfg.metric_list() if n not in self.own_metrics]
            return scores.regression(names, predictions.numpy(), references.numpy())
        if self.multi_label:
            return scores.multi_label(list(self.metric), predictions.numpy(), references.numpy())
        return scores.compute_all(self.metric, predictions.tolist(), references.tolist(), len(self.data.label_names))

    # ================================================================ saving (the work is in checkpoint.py)
    def improved(self, value, best):
        """True when `value` beats `best` in --metric's direction (higher, or lower for loss)."""
        return best is None or (value > best if self.higher_is_better() else value < best)

    def higher_is_better(self):
        """--metric's direction: --greater_is_better if given, else own_metrics, else known from the name."""
        name = self.cfg.metric_source()[1]  # (ood_accuracy: accuracy, on the evaluation set 'ood')
        if self.cfg.greater_is_better is None and name in self.own_metrics:
            return bool(self.own_metrics[name])
        return self.cfg.higher_is_better

    def eval_epoch(self):
        """The epoch an evaluation happens at: a whole number at an epoch's end, else a fraction (1.5);
        None with --eval_only (no training)."""
        return None if self.train_dataloader is None else self.state.epoch_at(len(self.train_dataloader))

    def save_best(self, metrics):
        """Write best/ when --metric improved. Every rank takes part (state dicts may be sharded).
        With a held-out test split, test_loop() scores these weights first: its test_* metrics go
        into best_metrics.json and a metrics.jsonl record, so they are always best/'s
        (Checkpointer.save_if_improved)."""
        self.checkpointer.save_if_improved(metrics)

    def write_best_extras(self, path):
        """Write a variant's own files into best/ (a calibration temperature, a label map) while it is
        being built: `path` is the temporary folder, checksummed and published atomically with the
        model afterwards. Main process only: no collectives here."""

    def save_checkpoint(self):
        """A resumable checkpoint in checkpoints/step_N (all ranks); returns its path."""
        path = self.checkpointer.save()
        self.call("on_save", path=path)
        return path

    def resume(self):
        """Restore everything from --resume_from_checkpoint, if given (mid-epoch included)."""
        if not self.checkpointer.resume_path:
            return
        self.resumed_from = self.checkpointer.resume()
        self.print(f"resumed from {self.resumed_from}: epoch {self.state.epoch + 1}, "
                   f"batch {self.state.batches_done}, step {self.state.global_step}")

    def position(self):
        """Where the run is, as (epoch, batches_done, global_step)."""
        return self.state.epoch, self.state.batches_done, self.state.global_step

    def close_dataloaders(self):
        """Stop the worker processes of every DataLoader the loop holds (loaders.close_dataloaders): fit() and
        validate() do on their way out, and an exit hook does for a loop driven by its parts."""
        names = ("train_dataloader", "eval_dataloader", "test_dataloader", "_skipping_dataloader")
        loaders.close_dataloaders(*(getattr(self, n, None) for n in names), *self.extra_eval_dataloaders.values())

    def finish(self):
        """Every rank done: --push_to_hub, the trackers ended, the output_dir lock released (Checkpointer.finish)."""
        self.checkpointer.finish()

    # ================================================================ stopping
    @property
    def stop_reason(self):
        """Why the run stops early, or None. Kept in the TrainState, so a checkpoint saved at the stop
        resumes as a finished run instead of training on past it."""
        return self.state.stop_reason

    def request_stop(self, reason):
        """Stop after the current evaluation, or the next one (used by early stopping). Any process may ask,
        from any hook: at that evaluation every process stops (with the reason of the lowest-ranked one that
        asked); until then the request is pending (self.stop_requested), and stop_reason is unset."""
        self.state.stop_requested = self.state.stop_requested or reason

    @property
    def stop_requested(self):
        """The stop this process asked for since the last evaluation (request_stop), or None."""
        return self.state.stop_requested

    def stop_signalled(self, at_once=False):
        """True on every rank if any rank got a stop signal (all ranks ask at the same step; `at_once`:
        ask now, not only on a logging step)."""
        return self.signals.agree(self.accelerator, self.state.global_step, 1 if at_once else self.cfg.logging_every)

    # ================================================================ hooks and logging
    def call(self, hook, **kwargs):
        """Run hook `hook` on the loop itself, then on each callback."""
        getattr(self, hook)(**kwargs)
        for cb in self.callbacks:
            fn = getattr(cb, hook, None)
            if fn is not None:
                fn(self, **kwargs)

    def on_train_start(self): ...
    def on_epoch_start(self): ...
    def on_step_end(self): ...
    def on_epoch_end(self): ...
    def on_evaluate(self, metrics): ...
    def on_save(self, path): ...
    def on_train_end(self): ...

    def log(self, record):
        """One JSON line in metrics.jsonl and the trackers (main process only); needs a "step"."""
        self.runlog.record(record)

    def print(self, msg):
        self.runlog.print(msg)

    def warn(self, msg):
        self.runlog.warn(msg)
