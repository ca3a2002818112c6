"""Logging: metrics.jsonl, the trackers, console messages and the running training loss.

Owns: where a record goes (one JSON line in `output_dir/metrics.jsonl`, the accelerate trackers
named by --report_to, a `[loop] key=value` console line), console messages and warnings (main
process only, printed above the progress bars), the quiet console (third-party progress bars,
load reports and info logs off unless --verbose / LOOP_VERBOSE=1), the closing summary, and the
training loss summed on the device between logging steps. Does not own:
what is logged or when (the loop decides), nor truncating the log on resume (`checkpoint.py`,
which knows how many lines a checkpoint covers).

(Named `logs`, not `logging`, so it never shadows the standard library module.)
"""

import contextlib
import glob
import json
import logging
import os
import re
import secrets
import socket
import sys
import time
import traceback
import warnings

import torch

from .errors import UserError, divergence_fix, is_storage_error, short, stop_together
from .splits import extra_sets
from .storage import replace_file
from .version import __version__

METRICS_FILE = "metrics.jsonl"
EVAL_RESULTS, PREDICTIONS = "eval_results.json", "{}_predictions.jsonl"  # --eval_only's files
EVAL_ONLY_FILES = (EVAL_RESULTS, PREDICTIONS.format("eval"), PREDICTIONS.format("test"))
EXTRA_PREDICTIONS = PREDICTIONS.format("eval_*")  # an extra evaluation set's (--extra_eval_files), by glob
NONFINITE_PATIENCE = 3  # consecutive NaN/inf losses before we give up
_IMPORTED = time.perf_counter()  # about when the process started: a command's wall time counts imports too
_first_run = True  # no run yet in this process: a command's first run counts from the import (run_started)


def run_started():
    """When the run's wall time (the summary's "done in") starts: the import of loop for a command's run
    (loop/train.py, loop.main(), outside a notebook's kernel) that is the process's first, whose imports are part of
    its wait; any other run starts at its fit() (a notebook's runs of hours later, or the second of a sweep, counted
    from the import for hours too much)."""
    global _first_run
    from . import errors

    first, _first_run = _first_run, False
    # (any kernel: a `%run loop/train.py` has the script's name in argv[0], and loop may have been imported hours ago)
    return _IMPORTED if first and errors.exit_follows_stop and "ipykernel" not in sys.modules else time.perf_counter()


def _no_follow(path, flags):
    """open()'s opener that refuses a symbolic link at `path` (ELOOP) instead of writing through it."""
    return os.open(path, flags | getattr(os, "O_NOFOLLOW", 0), 0o666)


def remove_event_files(folder):
    """TensorBoard's files in `folder` (EVENT_FILE, in EVENT_SUBFOLDER subfolders too) removed, then each folder
    that emptied (remove_ours); the paths of anything else (which stays) are returned. The folder's name, loop/, is a
    common one: under --output_dir . at the repository's root it is this package (so a link there stays too)."""
    from .checkpoint_folders import remove_ours  # (checkpoint_folders.py imports models, which imports this module)

    if os.path.islink(folder):
        return [folder]
    return remove_ours(folder, lambda name, path: os.path.isfile(path) and bool(EVENT_FILE.match(name)),
                       inside=EVENT_SUBFOLDER.match)


def below(folder):
    """The paths of the files and folders in `folder` and its subfolders (through a link `folder` is)."""
    for top, dirs, files in os.walk(folder):
        yield from (os.path.join(top, name) for name in dirs + files)


def eval_only_files(output_dir):
    """The --eval_only files an earlier scoring left in `output_dir` (paths; extra sets' included)."""
    paths = [os.path.join(output_dir, f) for f in EVAL_ONLY_FILES]
    extra = glob.glob(os.path.join(glob.escape(output_dir), EXTRA_PREDICTIONS))
    return [p for p in paths if os.path.isfile(p)] + sorted(p for p in extra if os.path.isfile(p))


def spread(values, what):
    """'learning rate 2e-05', or 'learning rates 1e-05 to 5e-05' when the optimizer's groups differ."""
    low, high = min(values), max(values)
    return f"{what} {low:g}" if low == high else f"{what}s {low:g} to {high:g}"


PROJECT = "loop"  # the trackers' project: TensorBoard's folder in the output_dir, wandb's default project
# what TensorBoard's writer puts in that folder: event files and hparams.yml, and add_hparams' subfolders named by
# the time (accelerate's store_init_configuration)
EVENT_FILE = re.compile(r"^(events\.out\.tfevents\..+|hparams\.yml)$")
EVENT_SUBFOLDER = re.compile(r"^\d+(\.\d+)?$")
SHOWN_LABELS = 20  # label names the opening line lists


class RunLog:
    """Where the loop's records and messages go. Every rank holds one; only the main one writes."""

    def __init__(self, cfg, accelerator):
        self.cfg, self.accelerator = cfg, accelerator
        self.path = os.path.join(cfg.output_dir, METRICS_FILE)
        self._counted = (None, 0, 0)  # count_lines' last count: (the file's inode, bytes read, newlines in them)
        self.trackers = cfg.report_to != "none"
        self.run_id = None  # the trackers' id of this run (wandb's): kept in checkpoints, a resume continues the run
        self.verbose = bool(getattr(cfg, "verbose", False)) or os.environ.get("LOOP_VERBOSE", "") not in ("", "0")
        self.bars = accelerator.is_local_main_process  # progress bars: one per node, not one per rank
        self.train_batches = self.train_samples = 0  # micro-batches and examples this process trained (the summary)
        self.guard = None  # called before each record is written: False skips it (Checkpointer.lock_held), or None
        self.train_seconds = 0.0
        self.eval_seconds = 0.0
        self.paused_seconds = 0.0  # in a training epoch, writing best/ and checkpoints (Loop.after_step): not training
        self.started = run_started()
        self.library_settings = None  # as they were before quiet_libraries (restore_libraries, at the run's end)
        if not self.verbose:
            self.library_settings = library_settings()
            quiet_libraries()

    def outside_training(self):
        """Seconds so far of evaluating and of writing best/ and checkpoints: out of a training epoch's time."""
        return self.eval_seconds + self.paused_seconds

    @contextlib.contextmanager
    def not_training(self, bar):
        """An evaluation or a checkpoint inside a training epoch: the progress bar cleared and its clock paused,
        and what eval_seconds does not hold of its time (writing best/ and the checkpoint) kept in paused_seconds."""
        bar.clear()
        started, outside = time.perf_counter(), self.outside_training()
        try:
            yield
        finally:
            bar.unpause()
            self.paused_seconds += time.perf_counter() - started - (self.outside_training() - outside)

    def start_trackers(self, resume_step=None, run_id=None):
        """Open the --report_to trackers with the run's config as hyperparameters.

        The run is named --run_name (else WANDB_NAME, else the output_dir's last part). wandb gets an id:
        WANDB_RUN_ID, else `run_id` (the one the resumed checkpoint recorded, kept even by a resume without
        trackers), else a new one; with resume="allow" (unless WANDB_RESUME says otherwise) a
        preempted run's restarts continue one wandb run instead of starting a new one each (the steps it
        logs again after the checkpoint are the ones already there: the resume is exact, and wandb keeps
        the first). Its project is WANDB_PROJECT, else "loop" (accelerate would name it by the project
        name alone, which also names TensorBoard's folder); its files go to <output_dir>/wandb/ unless
        WANDB_DIR names another folder.

        TensorBoard writes into the same folder on every start: its writer is told to hide what an
        earlier run logged from step `resume_step + 1` on (the steps a resumed run logs again), or
        all of it (a new run over an old --output_dir), as metrics.jsonl is cut back.

        config.py already checked that they are installed; starting one can still fail (wandb not
        logged in or offline, a log folder we cannot write, ...). That is one error line naming the
        tracker, on every rank: accelerate starts trackers on the main process only, so the main
        process tells the others, and none waits for it in a collective.
        """
        # set with or without trackers: a resume that turns them on later continues the same run
        self.run_id = os.environ.get("WANDB_RUN_ID") or run_id or secrets.token_hex(4)  # (wandb's: 8 of a-z0-9)
        if not self.trackers:
            return
        acc, error = self.accelerator, None
        config = {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in self.cfg.to_dict().items()}
        config["loop_version"] = __version__  # which loop made the run, beside its hyperparameters
        name = self.cfg.run_name or os.environ.get("WANDB_NAME") or \
            os.path.basename(os.path.normpath(os.path.abspath(self.cfg.output_dir)))
        if acc.is_main_process:
            error = unwritable_wandb_dir(acc.log_with)
        if acc.is_main_process and not error:
            folder = os.path.join(self.cfg.output_dir, PROJECT)
            made = [] if os.path.lexists(folder) else [folder]  # (--output_dir is there: the lock made it)
            before = set(below(folder))  # what a failed start keeps
            try:
                purge = 0 if resume_step is None else resume_step + 1
                if any(str(t) == "wandb" for t in acc.log_with):
                    from accelerate.tracking import WandBTracker

                    resume = {} if os.environ.get("WANDB_RESUME") else {"resume": "allow"}  # the user's, if set
                    # wandb's files (its offline runs to `wandb sync`) beside the run they belong to, as TensorBoard's
                    # are, not in a wandb/ of whatever folder the run started from; WANDB_DIR, if set, wins
                    where = {} if os.environ.get("WANDB_DIR") else {"dir": os.path.abspath(self.cfg.output_dir)}
                    wandb = WandBTracker(os.environ.get("WANDB_PROJECT") or PROJECT, id=self.run_id, name=name,
                                         **resume, **where)
                    acc.log_with = [wandb if str(t) == "wandb" else t for t in acc.log_with]
                acc.init_trackers(PROJECT, config=config, init_kwargs={"tensorboard": {"purge_step": purge},
                                                                      "mlflow": {"run_name": name}})
            except Exception as e:  # any tracker's constructor, start() or config upload
                error = tracker_error(e, self.cfg.report_to)
                self.close_trackers()  # the ones that did start: no open writer or dangling run left behind
                # and a failed start leaves the folders as they were: TensorBoard, started before the tracker
                # that failed, wrote a file whose purge mark hides the earlier run's curves (audit65 e1). Only
                # this process's files (a loop/ linked to a folder other runs share: review r2 F2): TensorBoard
                # names them ...HOST.PID.N; accelerate's hparams.yml, which hides nothing, may stay (in a new
                # subfolder of its own, which another run's could be)
                new, ours = set(below(folder)) - before, f".{socket.gethostname()}.{os.getpid()}."
                for path in sorted(new, reverse=True) + made:  # (deepest first)
                    name = os.path.basename(path)
                    with contextlib.suppress(OSError):
                        if os.path.isdir(path) and not os.path.islink(path):
                            os.rmdir(path)  # (when empty)
                        elif EVENT_FILE.match(name) and ours in name:
                            os.remove(path)
        stop_together(acc, error)

    def count_batch(self, batch):
        """One training micro-batch done (its rows read from a tensor's shape: no device sync)."""
        rows = getattr(batch.get("input_ids", batch.get("labels")), "shape", None)  # a short last batch's too
        self.train_batches += 1
        self.train_samples += rows[0] if rows else self.cfg.per_device_train_batch_size

    def forget_earlier_events(self):
        """A new run over an earlier one (main process): that run's TensorBoard files go, unless this run's own
        writer is open on the folder, which hides them itself (purge_step, start_trackers); a run without
        TensorBoard would leave the old run's curves beside its metrics.jsonl. Only TensorBoard's files: the
        paths of what else the folder holds are returned (they stay)."""
        if "tensorboard" in [getattr(t, "name", "") for t in getattr(self.accelerator, "trackers", [])]:
            return []
        return remove_event_files(os.path.join(self.cfg.output_dir, PROJECT))

    def close_trackers(self):
        """finish() every tracker the accelerator holds, ignoring a failing one; then forget them."""
        for tracker in list(getattr(self.accelerator, "trackers", [])):
            try:
                tracker.finish()
            except Exception:
                pass
        self.accelerator.trackers = []

    def training_record(self, loop):
        """The training log line's record: step, fractional epoch, the mean loss since the last line (its
        one host sync), the learning rate (the peak, with per-group rates) and a variant's tracked numbers."""
        state, acc = loop.state, self.accelerator
        epoch = state.epoch_at(len(loop.train_dataloader))  # as the evaluation's record says it: 1, not 1.0
        return {"step": state.global_step, "epoch": epoch, "loss": loop.loss_meter.take(acc, state.global_step),
                "learning_rate": max(loop.lr_scheduler.get_last_lr()), **loop.tracked.take(acc)}

    def record(self, record):
        """One JSON line in metrics.jsonl, a console line and the trackers (main process only)."""
        acc = self.accelerator
        record = plain(record, "Loop.log")
        if acc.is_main_process and self.guard is not None and not self.guard():
            return  # another run took the output_dir over (Checkpointer.lock_held): not a line into its log
        if acc.is_main_process:
            try:
                os.makedirs(self.cfg.output_dir, exist_ok=True)
                line = (json.dumps(record) + "\n").encode()
                if os.path.islink(self.path):  # planted in a shared folder: writing through it writes elsewhere
                    raise UserError(f"'{self.path}' is a symbolic link (to '{os.readlink(self.path)}'); the log is "
                                    f"written into --output_dir itself: remove the link.")
                with open(self.path, "ab", buffering=0, opener=_no_follow) as f:
                    start = f.seek(0, os.SEEK_END)
                    try:
                        if f.write(line) != len(line):
                            raise OSError(28, "No space left on device")
                    except OSError:
                        os.ftruncate(f.fileno(), start)  # no half line: the log stays valid JSON lines
                        raise
            except OSError as e:
                raise UserError(f"could not append to '{self.path}' ({e.strerror or e}); free space or fix "
                                f"permissions in --output_dir (the lines written so far are intact).") from e
            self.print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))
        if self.trackers:
            try:
                acc.log({k: v for k, v in record.items() if k != "step"}, step=record["step"])
            except Exception as e:  # a full disk under TensorBoard's files (its writer thread's OSError, raised here)
                # (an OSError of this machine's: a remote tracker's "permission denied" is not --output_dir's)
                if not (isinstance(e, OSError) and is_storage_error(e)):
                    raise
                raise UserError(f"could not write the trackers' logs ({short(e)}); free space or fix permissions in "
                                f"--output_dir (metrics.jsonl holds every line so far).") from e

    def count_lines(self):
        """Lines of metrics.jsonl written so far (saved in a checkpoint, to cut the log back on resume). Counted on
        from where the last count ended, since the log only grows between checkpoints (one rewritten, by a resume's
        cut, is another file: counted again): a checkpoint reads the lines since the last one, not the whole log
        (1 s a checkpoint at a million lines, audit61)."""
        try:
            f = open(self.path, "rb")
        except FileNotFoundError:
            return 0
        with f:
            st = os.fstat(f.fileno())
            inode, done, lines = self._counted
            if inode != (st.st_dev, st.st_ino) or done > st.st_size:
                done, lines = 0, 0
            f.seek(done)
            for chunk in iter(lambda: f.read(1 << 20), b""):
                lines += chunk.count(b"\n")
                done += len(chunk)
            self._counted = ((st.st_dev, st.st_ino), done, lines)
            if done:  # a last line without its newline (a write cut short) is a line too
                f.seek(done - 1)
                lines += f.read(1) != b"\n"
        return lines

    def print(self, msg):
        """One `[loop]` line, main process only, above any progress bar (not glued to its end)."""
        if self.accelerator.is_main_process:
            say(msg)

    def describe_run(self, loop):
        """The line that opens training: examples, labels, processes, steps, mixed precision."""
        data, cfg, acc = loop.data, self.cfg, self.accelerator
        rows, procs, ga = cfg.per_device_train_batch_size, acc.num_processes, cfg.gradient_accumulation_steps
        # the number a recipe gives (Trainer's "total train batch size"); an epoch's last step may hold fewer
        full = rows * procs * ga
        split = f"{rows} per device x {procs} process(es) x {ga} accumulation steps" if procs > 1 or ga > 1 else ""
        steps, n = loop.steps_per_epoch, len(data.train)
        # an epoch smaller than one step's examples, or an epoch of one step that holds more (a last round of fewer
        # examples than processes merged into it, loaders.EpochBatchSampler.merges_last_round): its one step holds
        # them all
        batch = f" of {full} examples" + (f" ({split})" if split else "") if n == full or n > full and steps > 1 else \
            f" of all {n} examples (a full step would hold {full}" + (f": {split})" if split else ")")
        self.print(f"{n} training / {self.examples_and_labels(loop)}, "
                   f"{steps} optimizer step{'s' if steps != 1 else ''} per epoch{batch}"
                   + (f", {loop.max_steps} in all (--max_steps)" if cfg.max_steps else
                      f", {loop.max_steps} in all ({cfg.num_train_epochs:g} epochs)" if cfg.num_train_epochs % 1 else "")
                   + f", mixed precision: {acc.mixed_precision}; loop {__version__}")
        self.say_scored_class(loop)
        self.print(self.optimization_line(loop))

    def say_scored_class(self, loop):
        """Two labels: which one f1, precision and recall score (id 1: the data's sorted second name, or a trained
        head's second), which no number says ('Positive'/'negative' sorts 'negative' second)."""
        names = list(loop.data.label_names)
        if loop.regression or loop.multi_label or len(names) != 2:
            return
        bare = [m for m in ("f1", "precision", "recall") if m in self.cfg.metric_list()]
        if bare:
            self.print(f"{', '.join(bare)}: of the class '{names[1]}' (id 1) against '{names[0]}' "
                       f"({bare[0]}_macro: the mean over both)")

    def optimization_line(self, loop):
        """'optimizer: AdamW, learning rate 2e-05, betas (0.9, 0.999), eps 1e-08, weight decay 0.01; linear
        schedule, 37 warmup steps of 375[; label smoothing 0.1]': what the run trains with (the optimizer's
        own betas and eps, so an overridden build_optimizer is described as it is)."""
        cfg = self.cfg
        optimizer = getattr(loop.optimizer, "optimizer", loop.optimizer)  # inside accelerate's wrapper
        own = getattr(optimizer, "defaults", {})
        extra = "".join(f", {k} {own[k]}" for k in ("betas", "eps") if k in own)
        groups = getattr(optimizer, "param_groups", None) or [{}]
        # the rates and decays the groups hold (a variant's per-layer rates), the scheduler's starting ones
        rate = spread([g.get("initial_lr", g.get("lr", cfg.learning_rate)) for g in groups], "learning rate")
        if any(g.get("relative_step") for g in groups):  # Adafactor's own step size: its schedule's 0 is no rate
            rate = "relative step size (no learning rate)"
        decay = max(g.get("weight_decay", cfg.weight_decay) for g in groups)
        from .core import Loop

        if type(loop).build_scheduler is not Loop.build_scheduler:  # a variant's own: name it, not our flags'
            scheduler = getattr(loop.lr_scheduler, "scheduler", loop.lr_scheduler)
            schedule = f"{type(scheduler).__name__} (build_scheduler) over {loop.max_steps} steps"
        else:
            kwargs = f" {cfg.lr_scheduler_kwargs}" if cfg.lr_scheduler_kwargs else ""
            schedule = (f"{cfg.lr_scheduler_type} schedule{kwargs}, {cfg.num_warmup_steps(loop.max_steps)} warmup "
                        f"steps of {loop.max_steps}")
        return (f"optimizer: {type(optimizer).__name__}, {rate}{extra}, weight decay {decay:g}; {schedule}"
                + (f"; label smoothing {loop.label_smoothing:g}" if loop.label_smoothing else ""))

    def describe_evaluation(self, loop):
        """The line that opens an --eval_only run: the model, examples, labels, processes."""
        dtype = f", weights in {self.cfg.torch_dtype}" if self.cfg.torch_dtype != "float32" else ""
        self.print(f"scoring {self.cfg.model_name_or_path} on {self.examples_and_labels(loop)}, mixed precision: "
                   f"{self.accelerator.mixed_precision}{dtype} (--eval_only: no training)")
        self.say_scored_class(loop)

    def examples_and_labels(self, loop):
        """'500 evaluation / 45 held-out test examples, labels [...], 2 process(es)' (describe_*)."""
        data = loop.data
        test, extra = getattr(data, "test", None), extra_sets(data)
        names = list(data.label_names)  # at most SHOWN_LABELS: 10,000 would make this line 100 KB (config.json has them)
        shown = str(names) if len(names) <= SHOWN_LABELS else \
            f"{str(names[:SHOWN_LABELS])[:-1]}, ... and {len(names) - SHOWN_LABELS} more]"
        labels = f"regression target '{names[0]}'" if loop.regression else f"labels {shown}"
        return (f"{len(data.eval)} evaluation " + "".join(f"/ {len(ds)} '{name}' " for name, ds in extra.items())
                + (f"/ {len(test)} held-out test " if test is not None else "")
                + f"examples, {labels}, {self.accelerator.num_processes} process(es)")

    def write_scoring(self, loop, metrics):
        """--eval_only's files and closing lines (main process: write_predictions, write_eval_results); a
        failed write stops every rank with its line."""
        error = None
        if self.accelerator.is_main_process:
            try:
                self.write_predictions(loop)
                self.write_eval_results(loop, metrics)
            except UserError as e:
                error = str(e)
        stop_together(self.accelerator, error)

    def write_eval_results(self, loop, metrics):
        """--eval_only's closing lines, and output_dir/eval_results.json (main process): the metrics, per
        label too, with the model and data they came from. Written whole through a rename."""
        cfg, scored = self.cfg, loop.data
        if cfg.train_file or cfg.validation_file:
            from .config import data_files

            data = {k: getattr(cfg, k) for k in ("train_file", "validation_file", "test_file") if getattr(cfg, k)}
            # a pattern of shards: the files it matched, in name order (the order they are read in)
            matched = {k: data_files(v, "") for k, v in data.items()}
            data.update({f"{k}_matched": files for k, files in matched.items() if files != [data[k]]})
        else:  # the Hub dataset (or folder), and the split each side read
            data = {"dataset_name": cfg.dataset_name, "dataset_config_name": cfg.dataset_config_name,
                    "eval_split": scored.eval_split_name, "test_split": cfg.test_split}
        extra = cfg.extra_evals()
        if extra:  # {name: file (or the files its pattern matched) or Hub split}
            from .config import data_files

            data["extra_eval"] = {name: (source if kind == "split" or data_files(source, "") == [source]
                                         else data_files(source, "")) for name, kind, source in extra}
        if scored.carved:
            data.update(train_split=None if cfg.train_file else cfg.train_split,
                        validation_split_percentage=cfg.validation_split_percentage)
        data.update(max_eval_samples=cfg.max_eval_samples, max_test_samples=cfg.max_test_samples)
        if scored.carved or cfg.max_eval_samples or (cfg.max_test_samples and scored.test is not None):
            # the carve and the subsets are drawn with it, named as it was given
            data["data_seed" if cfg.data_seed is not None else "seed"] = cfg.data_seed_or_seed
        data.update(text_column=cfg.text_column, text_pair_column=cfg.text_pair_column, label_column=cfg.label_column,
                    label_names=list(scored.label_names), max_length=loop.max_length,
                    truncation_side=getattr(loop.tokenizer, "truncation_side", None))
        for split, (n, _) in (getattr(scored, "truncated", None) or {}).items():
            data[f"{split}_cut_at_max_length"] = n  # texts the model saw only part of
        data = {k: v for k, v in data.items() if v is not None}
        reports = {}  # per class: what one accuracy number hides on imbalanced data
        for prefix, (logits, _, refs) in loop.scored.items():
            kind = label_kind(loop, logits, refs)
            if kind in ("single", "multi"):
                from . import scores

                reports[prefix] = scores.report(logits.numpy(), refs.numpy(), scored.label_names, kind == "multi")
        record = {"model": cfg.model_name_or_path, **metrics,
                  **{f"{prefix}_{k}": v for prefix, report in reports.items() for k, v in report.items()},
                  "data": data, "mixed_precision": self.accelerator.mixed_precision, "torch_dtype": cfg.torch_dtype,
                  "num_processes": self.accelerator.num_processes, "eval_seconds": round(self.eval_seconds, 3)}
        path = self.write_output(EVAL_RESULTS, json.dumps(record, indent=2) + "\n")
        extras = {f"eval_{name}": f"evaluation set '{name}'" for name in extra_sets(scored)}
        for prefix, what in {"eval": "evaluation", **extras, "test": "held-out test"}.items():
            if f"{prefix}_samples" in metrics:
                self.print(f"{what}: {scores_line(metrics, prefix, skip=extras)}")
                classes = reports.get(prefix, {}).get("per_class", {})
                if len(classes) > 20:  # more only in the file, which the line names
                    self.print(f"  precision, recall, f1 and support of each of the {len(classes)} labels: "
                               f"{prefix}_per_class in {EVAL_RESULTS}")
                    continue
                width = max((len(n) for n in classes), default=0)
                for n, c in classes.items():
                    self.print(f"  {n:<{width}}  precision {c['precision']:.3f}  recall {c['recall']:.3f}  "
                               f"f1 {c['f1']:.3f}  support {c['support']}")
        self.print(f"done in {time.perf_counter() - self.started:.1f}s; scores in {path}")

    def write_predictions(self, loop):
        """--eval_only: {eval,test}_predictions.jsonl (main process), one line per example in the order of
        its file: "row" (0-based, in the file or Hub split it was read from), the true and the predicted
        label (score()'s own decision) with the predicted class's probability; multi-label: "labels",
        "predictions" and "scores" (each label's sigmoid); regression: the two numbers. A file an earlier
        scoring left is removed first; a variant whose labels are not the loop's own kinds gets none (said)."""
        names = list(loop.data.label_names)
        for stale in eval_only_files(self.cfg.output_dir):  # an earlier --eval_only's file would sit beside these
            if os.path.basename(stale) != EVAL_RESULTS:
                os.remove(stale)
        for prefix, (logits, predictions, refs) in loop.scored.items():
            rows = loop.data.rows_of(prefix) if hasattr(loop.data, "rows_of") else getattr(loop.data, f"{prefix}_rows", None)
            kind = label_kind(loop, logits, refs)
            if rows is None or len(rows) != len(refs) or kind is None:
                self.print(f"no {PREDICTIONS.format(prefix)}: the scores are not of the loop's own labels, one per row")
                continue
            if kind == "regression":  # the target as float32 prints it (1.02, not 1.0199999809), the prediction
                # to 6 digits (its 7th depends on the batch the example was padded in, as a score's does)
                lines = [{"row": int(r), "label": float(str(t)), "prediction": float(f"{p:.6g}")}
                         for r, t, p in zip(rows, refs.float().numpy(), predictions.float().numpy())]
            elif kind == "multi":
                lines = [{"row": int(r), "labels": [n for n, y in zip(names, t) if y],
                          "predictions": [n for n, y in zip(names, p) if y],
                          "scores": {n: round(q, 6) for n, q in zip(names, s)}}
                         for r, t, p, s in zip(rows, refs.tolist(), predictions.tolist(), torch.sigmoid(logits).tolist())]
            else:
                ids = predictions.long()
                # the predicted class's, a slice of rows at a time: the softmax of all would be another N x K copy
                probs = torch.cat([torch.softmax(part, -1).gather(1, i[:, None])[:, 0]
                                   for part, i in zip(logits.split(4096), ids.split(4096))])
                lines = [{"row": int(r), "label": names[t], "prediction": names[i], "score": round(q, 6)}
                         for r, t, i, q in zip(rows, refs.tolist(), ids.tolist(), probs.tolist())]
            lines.sort(key=lambda line: line["row"])
            path = self.write_output(PREDICTIONS.format(prefix), "".join(json.dumps(line) + "\n" for line in lines))
            self.print(f"{prefix} predictions: {path}")

    def write_output(self, name, text):
        """Write `text` to output_dir/`name` whole (through a rename); a failure is one UserError line."""
        path = os.path.join(self.cfg.output_dir, name)
        try:
            os.makedirs(self.cfg.output_dir, exist_ok=True)
            replace_file(path, text.encode())
        except OSError as e:
            raise UserError(f"could not write '{path}' ({e.strerror or e}); free space or fix permissions in "
                            f"--output_dir.") from e
        return path

    def summary(self, loop):
        """The closing lines: best evaluation and where best/ is, wall time, throughput, padding."""
        state, cfg = loop.state, self.cfg
        wall = time.perf_counter() - self.started
        ckpt = loop.checkpointer
        reset = getattr(ckpt, "best_reset", None)  # resumed without the checkpoint's best model (checkpoint.py)
        main = self.accelerator.is_main_process  # its lines alone are printed: only it reads best/ on disk
        if main and state.best_metric is not None:
            # best/ is named only when it holds this evaluation's model (Checkpointer.best_where)
            since = (f" (since the resume; the earlier best, {ckpt.describe_best(reset)}, was not available)"
                     if reset else "")
            self.print(f"best {ckpt.describe_best(state)}{since}; {ckpt.best_where(state)}")
            best = ckpt.best_metrics()
            extras = [f"eval_{n}" for n in extra_sets(getattr(loop, "data", None))]
            for prefix in extras:  # each extra evaluation set's scores of these weights
                if best and best.get("step") == state.best_step and f"{prefix}_samples" in best:
                    self.print(f"evaluation set '{prefix[5:]}', best/'s weights: "
                               f"{scores_line(best, prefix, skip=extras)}")
            test = held_out_scores(best, state.best_step)
            if test:
                self.print(f"held-out test, best/'s weights: {test}")
            elif getattr(loop, "test_dataloader", None) is not None and best and best.get("step") == state.best_step:
                # resumed with a test split that the run which wrote best/ did not have
                self.print("held-out test: best/ was written before this run had test data, so it has no test "
                           "scores (a best/ written by this run would)")
        elif main and reset:
            self.print(f"no best model in {cfg.output_dir}: the resumed checkpoint's best ({ckpt.describe_best(reset)}) "
                       f"was not available, and no evaluation came after the resume")
        line = f"done in {wall:.1f}s"
        if self.train_seconds > 0 and self.train_batches:
            n = self.accelerator.num_processes
            samples = self.train_samples * n / self.train_seconds  # (n x this process's: the others' differ by 1 at most)
            sampler = getattr(loop, "train_sampler", None)
            mean_len = sampler.mean_length() if hasattr(sampler, "mean_length") else None
            line += f"; training {samples:.1f} samples/s"
            if mean_len:
                line += f", {samples * mean_len:.0f} tokens/s (without padding)"
            if hasattr(sampler, "padding_efficiency"):
                eff = sampler.padding_efficiency(multiple=getattr(loop, "pad_multiple", 1), cap=getattr(loop, "max_length", None))
                line += f", padding efficiency {eff:.3f}"
        self.print(line)

    def progress(self, iterable=None, total=None, initial=0, desc=""):
        """A progress display for a loop over batches, shown by the main process of each node.

        On a terminal: tqdm's bar (`update`, `clear`, `close`; iterate over it when given an iterable).
        Written to a file or a pipe (a SLURM log), a bar is a stream of '\r' redraws, so instead a
        plain `[loop] epoch 1: 120/1563 batches (8%), ...` line comes at most every LOOP_PROGRESS_S
        seconds (default 30; 0: none), with the same interface.
        """
        if total is None and iterable is not None:
            total = len(iterable)
        if self.bars and _isatty(sys.stderr):
            from tqdm.auto import tqdm

            return tqdm(iterable, total=total, initial=initial, desc=desc, leave=False, dynamic_ncols=True)
        every = progress_seconds()
        bar = PlainProgress(total, initial, desc, every if self.bars else 0)
        return bar.wrap(iterable) if iterable is not None else bar

    def warn(self, msg, stacklevel=3):
        if self.accelerator.is_main_process:
            warnings.warn(msg, stacklevel=stacklevel)


def unwritable_wandb_dir(log_with):
    """The error line for a WANDB_DIR that cannot be written, when wandb is asked for; else None. wandb itself only
    warns and writes the run into a temporary folder instead (/tmp/wandb: often a node's own, cleared by the job's
    end), away from where its offline run was to be synced from."""
    import tempfile

    folder = os.environ.get("WANDB_DIR")
    if not folder or not any(str(t) == "wandb" for t in log_with):
        return None
    disabled = os.environ.get("WANDB_DISABLED", "").lower() in ("1", "true", "yes")
    if disabled or os.environ.get("WANDB_MODE", "").lower() == "disabled":  # wandb writes nothing then
        return None
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".loop-probe-"):
            pass
    except OSError as e:
        return (f"WANDB_DIR={folder} cannot be written ({short(e)}); wandb would keep this run in a temporary folder "
                f"instead: set WANDB_DIR to a folder you can write, or unset it (the run's wandb files then go into "
                f"--output_dir/wandb).")
    return None


# What to do when a tracker cannot start, by tracker name (the rest get the generic advice).
TRACKER_FIXES = {
    "wandb": "log in with `wandb login` or set WANDB_MODE=offline",
    "comet_ml": "set COMET_API_KEY or COMET_MODE=offline",
    "mlflow": "check MLFLOW_TRACKING_URI",
    "tensorboard": "make sure it can write its log folder in --output_dir",
}


def tracker_error(e, report_to):
    """The one-line message for a tracker that failed to start: which one, why, and the fix.

    accelerate starts all trackers in one call, so the failing one is found in the traceback: the
    innermost frame that runs a method of a tracker object (constructor, start or config upload).
    """
    from accelerate.tracking import GeneralTracker

    name = None
    for frame, _ in traceback.walk_tb(e.__traceback__):
        obj = frame.f_locals.get("self")
        if isinstance(obj, GeneralTracker):
            name = getattr(obj, "name", None) or type(obj).__name__
    names = [name] if name else [n.strip() for n in report_to.split(",")]
    fixes = [TRACKER_FIXES[n] for n in names if n in TRACKER_FIXES] or ["fix its setup"]
    which = ", ".join(f"'{n}'" for n in names)
    # `all` starts every tracker installed here: there is nothing to drop from it, only names to give instead
    drop = "or drop it from --report_to" if "all" not in [n.strip() for n in report_to.split(",")] else \
        "or name the trackers you want instead of all (--report_to tensorboard, say; all starts every one installed)"
    return f"--report_to tracker {which} failed to start ({short(e)}); {' / '.join(fixes)}, {drop}."


class LossMeter:
    """The training loss since the last log line, summed on the device: no host sync per step.

    Also counts consecutive non-finite losses, so a diverged run stops with the step named.
    """

    def __init__(self, device):
        z = lambda: torch.zeros((), device=device, dtype=torch.float32)  # noqa: E731
        self.sum, self.n = z(), z()
        self.bad_run = z()  # consecutive non-finite losses
        self.bad_max = z()  # longest such run since the last log

    def add(self, loss, weight=1.0):
        """One micro-batch's loss, counted `weight` times (distributed.log_weight: each step counts alike)."""
        finite = torch.isfinite(loss)
        if weight == 1:  # (no multiplication: the usual line's sum stays bit for bit what it was)
            self.sum += torch.where(finite, loss.float(), 0.0)
            self.n += finite.float()
        else:
            self.sum += torch.where(finite, loss.float() * weight, 0.0)
            self.n += finite.float() * weight
        self.bad_run = torch.where(finite, 0.0, self.bad_run + 1)
        self.bad_max = torch.maximum(self.bad_max, self.bad_run)

    def take(self, accelerator, step):
        """Mean loss over all ranks since the last call, then reset (a host sync, at log lines only)."""
        # consecutive batches on one rank: whether any rank's longest run reached the patience (a sum
        # of the runs would add up separate runs; reduction="max" is missing from older accelerate)
        hit = (self.bad_max >= NONFINITE_PATIENCE).float()
        loss_sum, n, bad = accelerator.reduce(torch.stack([self.sum, self.n, hit]), reduction="sum").tolist()
        self.sum.zero_(), self.n.zero_(), self.bad_max.zero_()
        if bad:
            raise UserError(f"the training loss was NaN or infinite for {NONFINITE_PATIENCE} or more consecutive batches by step "
                            f"{step}; {divergence_fix(accelerator.mixed_precision)} (no checkpoint was saved from "
                            f"these weights).")
        return loss_sum / n if n else float("nan")  # every loss since the last line non-finite: not a loss of 0

    def state(self, accelerator):
        """[sum, count] over all ranks, for a checkpoint: a resumed run logs the same loss."""
        return accelerator.reduce(torch.stack([self.sum, self.n]), reduction="sum").tolist()

    def load(self, state, accelerator):
        if state and accelerator.is_main_process:  # the sums are over all ranks: add them once
            self.sum.fill_(state[0])
            self.n.fill_(state[1])


def plain(values, where):
    """`values` ({name: value}) with numpy scalars and one-element tensors as Python numbers (what a
    variant's compute_metrics or log() naturally returns: np.mean, torch.tensor(...).sum()); any other
    value json cannot write stops the run in one line naming it, before an epoch's work is lost to a
    TypeError in json.dumps."""
    import numpy as np

    if not isinstance(values, dict):  # compute_metrics' float: "'float' object has no attribute 'items'"
        raise UserError(f"{where} gave a {type(values).__name__}, not a dict; return {{name: value}}, e.g. "
                        f"{{'accuracy': 0.9}}.")
    out = {}
    for name, value in values.items():
        one = (isinstance(value, np.ndarray) and value.size == 1) or (torch.is_tensor(value) and value.numel() == 1)
        if isinstance(value, np.generic) or one:  # np.float32(0.5), np.asarray(0.5), torch.tensor(0.5)
            value = value.item()
        try:
            json.dumps(value)
        except (TypeError, ValueError) as e:
            raise UserError(f"{where} gave '{name}' = {type(value).__name__} ({short(e)}), which a JSON log line "
                            f"cannot hold; give a number, text, or a list or dict of them.") from e
        out[name] = value
    return out


class Tracked:
    """Extra training numbers a variant reports with `Loop.track(name, value)` (R-Drop's KL, an
    adversarial loss): summed on the device, no host sync per step; each training log line gets
    their mean over the steps since the last line and over all processes, and a checkpoint keeps
    the running sums, so a resumed run logs what the uninterrupted one did. A name tracked on some
    processes only is averaged over the values those reported."""

    def __init__(self):
        self.sums = {}  # name -> its running sum, a 0-d float32 tensor on the device of the first value
        self.counts = {}  # name -> values added since the last line (a host count: no kernel per step)
        self.paused = False  # during trial passes (Loop.configure_ddp): not training steps

    OWN = ("step", "epoch", "loss", "learning_rate", "grad_norm")  # the training log line's own keys

    def add(self, name, value, own=False):
        """Add one step's value of `name` (`own`: the loop's own grad_norm, else a variant's number)."""
        if name in self.OWN and not own:
            raise UserError(f"track('{name}', ...) would replace the training log line's own '{name}'; track it "
                            f"under another name, e.g. '{name}_2'.")
        if self.paused:
            return
        value = torch.as_tensor(value).detach().float()
        if value.dim():  # a scalar (a loss, grad_norm) adds with one kernel, no mean
            value = value.mean()
        if name in self.sums:
            self.sums[name].add_(value)
        else:
            self.sums[name] = value.clone()
        self.counts[name] = self.counts.get(name, 0) + 1

    def _reduced(self, accelerator):
        names = sorted(self.sums)
        if accelerator.num_processes > 1:  # the names any rank tracked: every rank joins the same reduce
            from accelerate.utils import gather_object

            names = sorted(set(gather_object(names)))
        if not names:
            return {}
        zero = torch.zeros((), dtype=torch.float32)
        sums = torch.stack([self.sums.get(n, zero).to(accelerator.device) for n in names])
        counts = torch.tensor([float(self.counts.get(n, 0)) for n in names], device=accelerator.device)
        return dict(zip(names, accelerator.reduce(torch.stack([sums, counts], 1), reduction="sum").tolist()))

    def take(self, accelerator):
        """{name: mean} since the last call, then reset."""
        out = {n: s / max(c, 1) for n, (s, c) in self._reduced(accelerator).items() if c}
        for total in self.sums.values():
            total.zero_()
        self.counts = dict.fromkeys(self.counts, 0)
        return out

    def state(self, accelerator):
        return self._reduced(accelerator)  # summed over ranks

    def load(self, state, accelerator):
        for name, (s, c) in (state or {}).items():  # the sums once, on the main process
            main = accelerator.is_main_process
            self.sums[name] = torch.tensor(s if main else 0.0, device=accelerator.device, dtype=torch.float32)
            self.counts[name] = int(c) if main else 0


PROGRESS_S = 30  # seconds between plain progress lines when the output is not a terminal


def _isatty(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # replaced by an object without isatty, or closed
        return False


class PlainProgress:
    """tqdm's small interface (update, clear, close) as occasional `[loop]` lines, for logs in files.

    A line comes when `update` finds `every` seconds passed since the last one (or since the
    start); nothing is printed when `every` is 0. `clock` is for tests.
    """

    def __init__(self, total, initial=0, desc="", every=PROGRESS_S, clock=time.monotonic, out=None):
        self.total, self.n, self.desc, self.every = total, initial, desc, every
        self.clock, self.out = clock, out or say
        self.start_n, self.started = initial, clock()
        self.last = self.started

    def update(self, n=1):
        self.n += n
        if self.every <= 0:
            return
        now = self.clock()
        if now - self.last >= self.every:
            self.last = now
            self.out(self.line(now))

    def line(self, now):
        """`epoch 1: 120/1563 batches (8%), 3.2 batches/s, eta 7m30s` (the rate since the start)."""
        done, elapsed = self.n - self.start_n, now - self.started
        rate = done / elapsed if elapsed > 0 else 0.0
        text = f"{self.desc}: {self.n}/{self.total} batches" if self.total else f"{self.desc}: {self.n} batches"
        if self.total:
            text += f" ({100 * self.n / self.total:.0f}%)"
        text += f", {rate:.3g} batches/s"
        if self.total and rate > 0:
            text += f", eta {_duration((self.total - self.n) / rate)}"
        return text

    def wrap(self, iterable):
        """Yield from `iterable`, counting each item (tqdm(iterable) without a bar)."""
        for item in iterable:
            yield item
            self.update(1)

    def clear(self):
        """Nothing stays on screen to clear (the lines are part of the log): marks a pause, which
        `unpause` takes out of the rate (a mid-epoch evaluation is not training time)."""
        self.paused_at = self.clock()

    def unpause(self):
        """As tqdm's: the time since `clear` does not count towards the rate and the eta."""
        paused_at = getattr(self, "paused_at", None)
        if paused_at is not None:
            gap = self.clock() - paused_at
            self.started += gap
            self.last += gap
            self.paused_at = None

    def close(self):
        self.every = 0


def _duration(seconds):
    """7m30s, 2h05m or 12s."""
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


def progress_seconds():
    """LOOP_PROGRESS_S as seconds; a value that is not a number falls back to the default with a
    warning (a typo in an environment variable must not end a run at its first epoch)."""
    text = os.environ.get("LOOP_PROGRESS_S", "")
    try:
        value = float(text) if text.strip() else PROGRESS_S
    except ValueError:
        value = -1.0
    if not (value >= 0 and value != float("inf")):
        warnings.warn(f"LOOP_PROGRESS_S={text!r} is not a number of seconds; using {PROGRESS_S}.", stacklevel=2)
        return PROGRESS_S
    return value


def say(msg, file=None):
    """Print a `[loop]` line above tqdm's bars (tqdm.write moves them down a line); stdout unless `file`."""
    from tqdm.auto import tqdm

    file = file or sys.stdout
    if file is None:  # started with its stdout closed (`>&-`): no console, the run goes on
        return
    line = f"[loop] {msg}"
    try:
        try:
            tqdm.write(line, file=file)
        except UnicodeEncodeError:  # a console that cannot show a label or a path (PYTHONIOENCODING=ascii, a file
            # under Windows' cp1252): escaped; a ValueError, it ended the console below (every later line lost)
            encoding = getattr(file, "encoding", None) or "ascii"
            tqdm.write(line.encode(encoding, "backslashreplace").decode(encoding), file=file)
        file.flush()
    except (BrokenPipeError, ValueError):
        # the reader went away (`| head`, a `| tee` whose ssh session dropped): the console is gone, the
        # run is not; metrics.jsonl and checkpoints keep the record. Later lines go nowhere.
        if file is sys.stdout:
            sys.stdout = open(os.devnull, "w")


_SILENT = logging.getLogger("loop.silent")
_SILENT.addHandler(logging.NullHandler())
_SILENT.propagate = False
_SILENT.setLevel(logging.ERROR)


def quiet_evaluate():
    """evaluate's info/warning logs and progress bars off (its import resets them: call after it)."""
    try:
        import evaluate

        evaluate.logging.set_verbosity_error()
        evaluate.disable_progress_bar()
    except (ImportError, AttributeError):
        pass


_REPORT_FILE = [None]  # where the "new head" line goes: stdout, or stderr for predict (its stdout is data)


def library_settings():
    """What quiet_libraries changes, as it is now: for restore_libraries when a run ends (a notebook goes on, and its
    own from_pretrained after a run printed no warning, no progress bar and no load report)."""
    from transformers.utils import logging as tlogging

    settings = {"transformers": (tlogging.get_verbosity(), tlogging.is_progress_bar_enabled()),
                "quiet_report": _QUIET_WEIGHT_REPORT[0], "report_file": _REPORT_FILE[0]}
    try:  # imported now if it was not (quiet_libraries imports it): as a fresh import has it, it is put back so
        import datasets

        settings["datasets"] = (datasets.logging.get_verbosity(), datasets.is_progress_bar_enabled())
    except ImportError:
        pass
    return settings


def restore_libraries(settings):
    """Undo quiet_libraries: library_settings()' snapshot back (evaluate's, imported later, stays quiet)."""
    if not settings:
        return
    from transformers.utils import logging as tlogging

    verbosity, bars = settings["transformers"]
    tlogging.set_verbosity(verbosity)
    tlogging.enable_progress_bar() if bars else tlogging.disable_progress_bar()
    _QUIET_WEIGHT_REPORT[0], _REPORT_FILE[0] = settings["quiet_report"], settings["report_file"]
    modeling_utils = sys.modules.get("transformers.modeling_utils")  # (not imported for it: a heavy import)
    report = getattr(modeling_utils, "log_state_dict_report", None)
    if not settings["quiet_report"] and getattr(report, "_loop_quiet", False):
        modeling_utils.log_state_dict_report = report._loop_original
    if "datasets" in settings:
        import datasets

        verbosity, bars = settings["datasets"]
        datasets.logging.set_verbosity(verbosity)
        datasets.enable_progress_bars() if bars else datasets.disable_progress_bars()


def quiet_libraries(report_file=None):
    """Third-party output off: datasets/transformers/evaluate progress bars and info/warning logs,
    and transformers' weight-load report, replaced by one line of ours naming the new head (on
    `report_file`, default stdout). Errors still show. --verbose (or LOOP_VERBOSE=1) skips this."""
    _REPORT_FILE[0] = report_file
    try:
        import datasets

        datasets.disable_progress_bars()
        datasets.logging.set_verbosity_error()
    except ImportError:
        pass
    if "evaluate" in sys.modules:  # else quiet_evaluate() when the metrics are built: importing it takes 3 s
        quiet_evaluate()
    from transformers.utils import logging as tlogging

    tlogging.set_verbosity_error()
    tlogging.disable_progress_bar()
    # accelerate's note at every checkpoint of a model with tied weights (BART's and T5's shared embeddings): the
    # copy is dropped from the file and tied again when the model it is loaded into is built (a resume is exact)
    shared = logging.getLogger("accelerate.utils.other")
    if _drop_shared_tensor_note not in shared.filters:
        shared.addFilter(_drop_shared_tensor_note)
    _QUIET_WEIGHT_REPORT[0] = True
    if "transformers.modeling_utils" in sys.modules:  # else when a model is loaded: importing it takes 2-3 s
        quiet_weight_report()


def _drop_shared_tensor_note(record):
    """A logging filter: False for accelerate's 'Removed shared tensor ... while saving' (quiet_libraries)."""
    return "Removed shared tensor" not in record.getMessage()


_QUIET_WEIGHT_REPORT = [False]
_MISMATCHED = [None]  # the last load's weights of another shape than the checkpoint's


def last_mismatched_keys(forget=False):
    """[(name, checkpoint shape, model shape)] of the last model load whose report we replaced; None when
    transformers printed its own (--verbose). `forget`: clear it (before a load)."""
    found = _MISMATCHED[0]
    if forget:
        _MISMATCHED[0] = None
    return found


def quiet_weight_report():
    """After quiet_libraries(), before loading a model: transformers' weight-load report replaced by
    our one line naming the new head. Does nothing under --verbose (quiet_libraries not called)."""
    if not _QUIET_WEIGHT_REPORT[0]:
        return
    try:
        from transformers import modeling_utils
    except ImportError:
        return
    original = getattr(modeling_utils, "log_state_dict_report", None)
    if original is None or getattr(original, "_loop_quiet", False):
        return

    def report(model, pretrained_model_name_or_path, ignore_mismatched_sizes, loading_info, logger=None):
        mismatched = sorted(getattr(loading_info, "mismatched_keys", None) or [])  # (name, checkpoint, model shape)
        _MISMATCHED[0] = mismatched  # named by models.mismatched_sizes_message when the load fails on them
        original(model, pretrained_model_name_or_path, ignore_mismatched_sizes, loading_info, logger=_SILENT)
        from .errors import is_main_rank

        missing = sorted(set(getattr(loading_info, "missing_keys", None) or []) | {m[0] for m in mismatched})
        if missing and is_main_rank():
            resized = f" ({len(mismatched)} of another shape in the checkpoint)" if mismatched else ""
            # the body's weights sit under the base model's prefix (bert., model.); the head's do not
            prefix = getattr(model, "base_model_prefix", "") + "."
            what = "new weights" if prefix != "." and any(n.startswith(prefix) for n in missing) else "new head"
            say(f"{what}: {', '.join(missing)}{resized}" if len(missing) <= 6 else
                f"{len(missing)} weights newly initialized{resized}: {', '.join(missing[:6])}, ...", file=_REPORT_FILE[0])

    report._loop_quiet, report._loop_original = True, original
    modeling_utils.log_state_dict_report = report


def label_kind(loop, logits, refs):
    """Which of the loop's own label kinds scored rows are ("single", "multi", "regression"), or None
    for a variant's own labels (no per-label report, no predictions file)."""
    names = loop.data.label_names
    if loop.regression:
        return "regression" if logits.ndim == 2 and refs.ndim == 1 else None
    if logits.ndim != 2 or logits.shape[1] != len(names):
        return None
    if loop.multi_label:
        return "multi" if refs.shape == logits.shape else None
    return "single" if refs.ndim == 1 and not refs.is_floating_point() else None


def held_out_scores(best, step):
    """'test_accuracy=0.9312, test_loss=0.2011 (25000 examples)' from best_metrics.json `best` when it
    holds test_* scores of the best model at optimizer step `step`; else None."""
    if not best or best.get("step") != step or "test_samples" not in best:
        return None
    return scores_line(best, "test")


def scores_line(record, prefix, skip=()):
    """'test_accuracy=0.9312, test_loss=0.2011 (25000 examples)': a record's {prefix}_* numbers, but those
    of the longer prefixes in `skip` (the extra evaluation sets': eval_ood_* are not eval's, eval_ood_hard_*
    not eval_ood's)."""
    longer = [p for p in skip if p.startswith(prefix + "_")]
    shown = [f"{k}={v:.4f}" if v == 0 or abs(v) >= 1e-3 else f"{k}={v:.4g}" for k, v in record.items()  # mse 3e-07
             if k.startswith(prefix + "_") and k != f"{prefix}_samples" and isinstance(v, (int, float))
             and not any(k.startswith(p + "_") for p in longer)]
    return f"{', '.join(shown)} ({record[f'{prefix}_samples']} examples)"
