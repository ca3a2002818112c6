"""Checkpoints: everything that writes or reads a run's state in --output_dir.

Owns: best/ (a `save_pretrained` model folder that `pipeline()` loads), resumable checkpoints
(`accelerator.save_state` plus our `loop_state.json`), resume (`load_state`, cutting metrics.jsonl
back), when to rotate and `--push_to_hub`. The `Checkpointer` is owned by the loop and reads the loop's parts
(accelerator, model, tokenizer, state, callbacks). Delegates: the checks before any work, which it
inherits (`run_start.py`: refuse to start over an earlier run, repair saves cut short by a crash, the
checkpoint to resume and whether it fits), the folders on disk (`checkpoint_folders.py`: listed,
verified, rotated, `latest` resolved), what a resume must agree with (`resume_checks.py`), writing files
and folders atomically (`storage.py`), loading pickles without running code (`safe_load.py`), the lock
(`lock.py`). Does not own: when to save (the loop decides) nor stop signals (`preemption.py`).

Every folder we publish (`best/`, `checkpoints/step_N/`) is first written to a hidden
temporary sibling and renamed into place when complete, so a crash mid-save leaves the
previous one intact. A checkpoint is complete when it holds `loop_state.json`, which is
written last; `latest` ignores anything else (a `.tmp-step_N` or a `step_N` without it).
Files are fsynced before the rename, so "complete" also holds after a power cut.

One run per output_dir: the main process holds `output_dir/.loop.lock` for the run's lifetime
(`lock.py`).

Every file of a checkpoint (in `loop_state.json`) and of best/ (in `checksums.json`) has its
sha256 recorded when written; resume verifies them. `latest` skips a checkpoint that fails and
uses the newest one that verifies.

best/ always holds the model the run's best-so-far record names: resuming a checkpoint of another
run folder copies that run's best/ here when it holds that model and verifies; when the model is
not available, the best tracking starts over (a warning) and the next evaluation writes best/.
"""

import json
import math
import os
import pickle
import shutil
import socket
import sys
import time
import warnings

import torch

from . import lora, modelcard, models, preemption
from .checkpoint_folders import (ABANDONED, BEST_CHECKSUMS, FINISHED_FILE, REGISTERED, STATE_FILE, STATE_FORMAT,
                                 TRAINING_ARGS, best_mismatch, bit_sum, callback_keys, checksum_tree, copy_own_files,
                                 finished_options, frozen_names, group_settings, labels_in_config, list_checkpoints,
                                 load_accelerator_files, local_tensor, published_args, read_checksums, read_state,
                                 restore_trainable, rotate, source_best_dir, verify_files)
from .errors import UserError, divergence_fix, is_storage_error, listed, short, stop_together
from .labels import label_reading
from .logs import eval_only_files, say
from .resume_checks import examples_sha1, model_config_record, path_options
from .run_start import RunStart
from .safe_load import load_plain, odd_arrays, rng_problem, trust_forced, unsafe_globals
from .storage import (file_digest, free_space, fsync_dir, publish, read_best_record, remove_tree, replace_file,
                      sha256_file, size_text, tmp_sibling, write_json)
from .version import __version__


class Checkpointer(RunStart):
    """The loop's saving and resuming. `loop` gives the parts; nothing here decides when to save."""

    def __init__(self, loop):
        self.loop = loop
        self.cfg = loop.cfg
        self.best_dir = os.path.join(self.cfg.output_dir, "best")
        self.checkpoints_dir = os.path.join(self.cfg.output_dir, "checkpoints")
        self.metrics_path = os.path.join(self.cfg.output_dir, "metrics.jsonl")
        self.finished_path = os.path.join(self.cfg.output_dir, FINISHED_FILE)
        self.resume_path = None  # the checkpoint --resume_from_checkpoint resolved to
        # the loop position and folder of the last checkpoint in this run's checkpoints/ written or loaded
        # (a checkpoint loaded from elsewhere does not count: a stop right after it must save one here)
        self.saved_at = self.saved_path = None
        self._clear_earlier = self._replaced = False
        self.start_options = None  # the options as given (check_output_dir): what a finish record holds
        self.best_plan = None  # resuming: {"copy": folder} or {"reset": message}, see plan_best
        self.best_reset = None  # the resumed checkpoint's best, when its model was not available (the summary)
        self._signature = None  # (data, data_signature()): computed once per Data
        # a run found finished (RunFinished): the push it still owes (--push_to_hub added) and the finish record to
        # write, both made by end_finished()
        self.push_pending, self.finished_record = False, None
        # finished_here's line, said once the resume checks passed (check_finished_unrecorded)
        self.finished_pending = None

    @property
    def accelerator(self):
        return self.loop.accelerator

    def _say(self, msg):
        print(f"[loop] {msg}", file=sys.stderr, flush=True)

    def finish(self):
        """The end of a run, every rank together: --push_to_hub (main process), the trackers ended, the
        output_dir lock released (also released at exit after an error)."""
        acc, error = self.accelerator, None
        acc.wait_for_everyone()
        if acc.is_main_process:
            try:
                self.finish_main()
            except UserError as e:  # a push refused, the lock taken over: every rank stops on it, together
                error = str(e)
        stop_together(acc, error)
        # every rank leaves the process group together (as end_finished does), not while the main process still
        # writes: a rank's gloo threads could abort under another that had gone (SIGABRT; a finished run exited 1)
        acc.wait_for_everyone()
        acc.end_training()
        self.release()

    def finish_main(self):
        """finish()'s work on the main process: the finish record and the push."""
        if self.cfg.eval_only:
            if self.cfg.push_to_hub:
                self.push_to_hub()
            return
        self.check_lock()  # taken over by another run: no push, no record of a finish that is not ours
        options = self.start_options or finished_options(self.cfg)  # a re-run with `auto` finds nothing to do
        record = {"step": self.loop.state.global_step, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                  "options": options, "cwd": os.getcwd()}  # what its relative paths are relative to (same_files)
        # written before the push, the push not made: a push that fails leaves a finished run, and the same
        # command with `auto` then only pushes (was: no record, and `auto` found best/ and no checkpoint)
        self.write_finished({**record, "options": {**options, "push_to_hub": False}} if self.cfg.push_to_hub
                            else record)
        if self.cfg.push_to_hub:
            self.push_to_hub()
            self.write_finished(record)

    def write_finished(self, record):
        """The finish record (main process); a failure to write it is warned about: the run is done and saved, and
        a re-run would only repeat its last steps."""
        try:
            write_json(self.finished_path, record, atomic=True)
        except OSError as e:
            self.loop.warn(f"could not write '{self.finished_path}' ({short(e)})")

    def check_lock(self):
        """Before writing into output_dir (main process): the lock must still be this run's."""
        lock = getattr(self, "lock", None)
        if lock is not None:
            lock.check_still_held()

    def check_step_alone(self):
        """Before the first write into output_dir (main process): a task of a SLURM step no launcher joined stops,
        as the other task was refused, when another task of its step came to this --output_dir (srun -n 2 python
        loop/train.py: every task ends with the one line, nothing written); RunLock.check_step_alone."""
        lock = getattr(self, "lock", None)
        if lock is not None:
            lock.check_step_alone(wait=True)

    def lock_held(self):
        """Before each metrics.jsonl line (main process): False once the lock was taken over by another run or
        removed (the heartbeat reads it every LOCK_HEARTBEAT_S; here one stat says whether the file is still the
        one this run made, and only then is it read), or once another task of this run's SLURM step came to the
        folder late (its mark beside the lock: one more stat, for a task of a step no launcher joined only); this
        run then writes no line into the folder, and stops at its next checkpoint, best/ or end (check_lock), where
        every process stops together."""
        lock = getattr(self, "lock", None)
        if lock is None:
            return True
        if lock.lost is None and lock.held and not lock.same_file():  # removed or replaced since the last heartbeat
            lock.still_ours()
        return lock.lost is None and not lock.copy_came()

    def release(self):
        """Give the output_dir lock back (main process; safe to call twice)."""
        lock = getattr(self, "lock", None)
        if lock is not None:
            lock.release()
            self.lock = None

    # ------------------------------------------------------------ best/
    def metric_value(self, metrics, epoch):
        """--metric's value in an evaluation's `metrics`: refused in one line when missing, or when it
        or the loss is not finite (such weights are never saved as best/)."""
        key = f"eval_{self.cfg.metric}"
        if key not in metrics:
            raise UserError(f"--metric {self.cfg.metric}: the evaluation gave no {key} (it gave "
                            f"{', '.join(k for k in metrics if k != 'eval_samples')}); name one of those, or return it "
                            f"from compute_metrics and list it in the loop's own_metrics.")
        if not math.isfinite(metrics["eval_loss"]):
            raise UserError(f"evaluation at epoch {epoch} gave a non-finite loss (eval_loss={metrics['eval_loss']}); "
                            f"{divergence_fix(getattr(self.accelerator, 'mixed_precision', None))} (these weights are "
                            f"not saved as best).")
        if not math.isfinite(metrics[key]):  # the model is fine: the metric has no value on this data
            raise UserError(f"evaluation at epoch {epoch} gave {key}={metrics[key]} beside a finite loss: --metric "
                            f"{self.cfg.metric} is undefined on this evaluation data (a score of one class, say); "
                            f"pick another --metric, or have compute_metrics give a number there.")
        return metrics[key]

    def save_if_improved(self, metrics):
        """Loop.save_best: best/ when --metric improved on the run's best (every rank), the held-out test split
        scored first with these weights (Loop.test_loop), its test_* metrics in best_metrics.json and a metrics.jsonl
        record; then the on_save hook."""
        loop, state = self.loop, self.loop.state
        epoch = loop.eval_epoch()
        value = self.metric_value(metrics, epoch)  # present and finite, else one error line
        if not loop.improved(value, state.best_metric):
            return
        state.best_metric, state.best_epoch, state.best_step = value, epoch, state.global_step
        test = {}
        if loop.test_dataloader is not None:
            test = loop.test_loop()
            loop.log({"step": state.global_step, "epoch": epoch, **test})
        path = self.save_best({"epoch": epoch, **metrics, **test})
        loop.call("on_save", path=path)

    def save_best(self, metrics):
        """Write best/ (model folder + best_metrics.json) atomically; every rank takes part."""
        loop, acc = self.loop, self.accelerator
        path = self.best_dir
        acc.wait_for_everyone()
        self.check_weights_finite()  # and, under DDP, that the replicas agree: best/ is rank 0's copy
        state_dict = acc.get_state_dict(loop.model)  # gathers FSDP/DeepSpeed shards; call on all ranks
        # A compiled model's state dict names every weight `_orig_mod.<name>` (accelerate unwraps it
        # keeping the compile wrapper): from_pretrained would find none of them and start from random.
        state_dict = {k.removeprefix("_orig_mod."): v for k, v in state_dict.items()}
        error = failure = None
        had_best = os.path.isdir(path)  # what the message after a failed write can promise
        if acc.is_main_process:
            # our own temporary folder: no other process may ever write into it (the lock says so too)
            tmp = f"{tmp_sibling(path)}-{socket.gethostname()}-{os.getpid()}"
            try:
                self.check_lock()
                shutil.rmtree(tmp, ignore_errors=True)
                self.write_model(tmp, state_dict)
                modelcard.write(loop, tmp, metrics)  # README.md: what the Hub shows (--push_to_hub)
                # the options, processes, versions and data files' sha256 (before a variant's files: it may add to
                # it), with local paths by their last part and no working folder, as the model card names them: best/
                # may be published (the whole record goes beside best/, below)
                args = self.training_args()
                write_json(os.path.join(tmp, TRAINING_ARGS), published_args(args, path_options(self.cfg)))
                loop.write_best_extras(tmp)  # a variant's own files: checksummed and published with the rest
                with open(os.path.join(tmp, "best_metrics.json"), "w") as f:
                    # the columns read, where not the default: predict.py reads a table's, asks for --pairs, knows
                    # a header; --eval_only reads them (trained.check_trained_columns)
                    cfg = self.cfg
                    # (text_pair_column always, null for single texts: a record without it, from a loop version
                    # before 2026-11-30 or an edited file, says nothing either way)
                    columns = {"text_pair_column": cfg.text_pair_column,
                               **({"text_column": cfg.text_column} if cfg.text_pair_column or cfg.text_column != "text"
                                  else {}),
                               **({"label_column": cfg.label_column} if cfg.label_column != "label" else {})}
                    # how the labels were read ("label_ids": texts, or positions with their "label_names"):
                    # --eval_only reads integer ids so (trained.trained_label_reading)
                    json.dump({"epoch": loop.state.epoch + 1, "step": loop.state.global_step, **metrics, **columns,
                               **(label_reading(loop.data) or {}), "split": self.split_record()}, f, indent=2)
                write_json(os.path.join(tmp, BEST_CHECKSUMS), checksum_tree(tmp))
                # the paths as given and the working folder, for reproducing the run here: never pushed
                write_json(os.path.join(self.cfg.output_dir, TRAINING_ARGS), args, atomic=True)
                publish(tmp, path)
                self.forget_scoring()
            except Exception as e:  # a full disk shows as OSError, SafetensorError or RuntimeError (torch.save)
                shutil.rmtree(tmp, ignore_errors=True)
                if isinstance(e, UserError):  # the lock taken over by another run
                    error = str(e)
                elif not is_storage_error(e):
                    failure = e  # a bug, not the disk: raised below with its traceback, once the ranks know
                    error = f"writing {path} failed on the main process: {short(e)}"
                else:
                    kept = "the previous best/ is intact" if os.path.isdir(path) else \
                        "no best/ was there before" if not had_best else "the previous best/ is in best.old"
                    error = f"could not write {path} ({short(e)}); free space or fix permissions in --output_dir ({kept})."
        stop_together(acc, error, failure)  # every rank stops with the main one instead of waiting forever
        return path

    def split_record(self):
        """How the evaluated rows were drawn (best_metrics.json "split"), so that --eval_only draws them again
        (trained.check_trained_split): the seed of the carve and the subsets (--data_seed, else --seed, and which one was
        given), the carve's --validation_split_percentage (null: the run had evaluation data of its own), the
        --max_*_samples, and the evaluation examples' count and hash as a set (examples_sha1, the one checkpoints
        record)."""
        cfg, data = self.cfg, self.loop.data
        carved = getattr(data, "carved", False)
        return {"seed": cfg.data_seed_or_seed, "seed_option": "data_seed" if cfg.data_seed is not None else "seed",
                "validation_split_percentage": cfg.validation_split_percentage if carved else None,
                "max_train_samples": cfg.max_train_samples, "max_eval_samples": cfg.max_eval_samples,
                "max_test_samples": cfg.max_test_samples, "eval_examples": len(data.eval),
                "eval_examples_sha1": self.eval_examples_sha1()}

    def eval_examples_sha1(self):
        """examples_sha1 of the evaluation split: the checkpoints' (data_signature) when computed, else computed
        once per Data (a sort of one digest per example: 0.2-0.35 s for 25k examples of 128 tokens)."""
        data = self.loop.data
        if self._signature is not None and self._signature[0] is data:
            return self._signature[1].get("eval_examples_sha1")
        if getattr(self, "_eval_sha1", (None,))[0] is not data:
            self._eval_sha1 = (data, examples_sha1(data.eval))
        return self._eval_sha1[1]

    def training_args(self):
        """output_dir/training_args.json: what reproducing the run takes that best/ does not otherwise hold. The
        options as the run resolved them (finished_options: a batch --auto_find_batch_size shrank is the one
        trained; --dataset_name null where local files replaced it, not the default imdb it never read), the
        processes and mixed precision, the versions of python, loop and the libraries (version.library_versions),
        the working folder the file options are relative to, and each data file's sha256 (data_file_hashes).
        best/ holds it as published_args makes it (best/ is what --push_to_hub uploads)."""
        from .version import library_versions

        acc, options = self.accelerator, finished_options(self.cfg)
        if self.cfg.train_file or self.cfg.validation_file:  # (data.load_raw: files, no Hub dataset)
            options.update(dataset_name=None, dataset_config_name=None)
        return {"options": options, "num_processes": acc.num_processes,
                "mixed_precision": acc.mixed_precision, "variant": type(self.loop).__qualname__,
                "versions": library_versions(), "cwd": os.getcwd(), "data_files": self.data_file_hashes()}

    def data_file_hashes(self):
        """{option: {file: {"bytes", "sha256"}}} of the local data files the run read (each file of a pattern of
        shards). Hashed once a process, as best/ is written again at every improvement: a multi-GB file is read
        once more, at the first best/ (sha256 reads about 650 MB/s a core here: IMDb's 25k-review train.parquet,
        10 MB, in 0.026 s). A Hub dataset is named in the options (--dataset_name, --dataset_config_name)."""
        from .config import data_files

        if getattr(self, "_data_hashes", None) is not None:
            return self._data_hashes
        cfg, out = self.cfg, {}
        named = [(flag, getattr(cfg, flag)) for flag in ("train_file", "validation_file", "test_file")]
        named += [(f"extra_eval_files[{name}]", source) for name, kind, source in cfg.extra_evals(check_keys=False)
                  if kind == "file"]
        for flag, path in named:
            if not path:
                continue
            try:
                files = data_files(os.path.expanduser(path), f"--{flag}")
                out[flag] = {f: {"bytes": os.path.getsize(f), "sha256": file_digest(f)} for f in files}
            except (OSError, UserError) as e:  # gone or changed since it was read: said in the record, no failure
                out[flag] = {"error": short(e)}
        self._data_hashes = out
        return out

    def forget_scoring(self):
        """--eval_only's files in output_dir scored the model best/ held then (or another): once best/ is replaced
        they describe nothing here, and a resumed run left them beside it (a new run removes them at its start)."""
        stale = eval_only_files(self.cfg.output_dir)
        for name in stale:
            os.remove(name)
        if stale:
            say(f"removed {', '.join(os.path.basename(n) for n in stale)} from '{self.cfg.output_dir}': --eval_only "
                f"scored a model that best/ no longer holds")

    def write_model(self, path, state_dict):
        """A folder that `pipeline(...)` and `from_pretrained` load: safetensors, config, tokenizer.

        A LoRA model is saved with its adapter merged (a normal model folder), and the adapter
        alone in `adapter/` beside it. The tokenizer keeps the pad token and padding side the
        loop chose (models.prepare_padding) and the config the same pad id, so pipeline() pads
        a batch the way training did."""
        # (under DDP(compiled model) the compile wrapper's save_pretrained is PEFT's: the adapter alone as best/)
        model = models.bare_model(self.accelerator, self.loop.model)
        if lora.is_peft(model):
            with warnings.catch_warnings():  # PEFT's note that the adapter holds the embeddings grow_embeddings grew
                warnings.filterwarnings("ignore", message="Setting .save_embedding_layers. to .True.")  # (said before)
                model.save_pretrained(os.path.join(path, "adapter"), state_dict=state_dict, safe_serialization=True)
            state_dict = lora.merged_state_dict(model, state_dict)
            model = model.get_base_model()
        model.save_pretrained(path, state_dict=state_dict, safe_serialization=True)
        labels_in_config(path, model.config)
        tokenizer = self.loop.tokenizer
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is not None:
            # tokenizer.json holds the cut the last call asked for: max_length's after tokenizing, none when the data
            # came from datasets' cache (a resume, a rerun), another after a trial batch; best/ the same bytes alike,
            # cutting where training did for a reader of tokenizer.json alone
            backend.enable_truncation(self.loop.max_length, direction=tokenizer.truncation_side)
            backend.no_padding()
        tokenizer.save_pretrained(path)

    def register(self, *objects):
        """Objects with state_dict/load_state_dict that every checkpoint saves and a resume restores
        beside the model, optimizer and RNG (the scheduler, the TrainState, a variant's extras), in
        this order (their files are named by position, `custom_checkpoint_<i>.pkl`: keep it fixed).

        Saved as accelerate's register_for_checkpointing would (the same files: earlier checkpoints
        resume), but loaded here with torch's weights-only unpickler (save_registered, load_registered):
        accelerate loads these files unpickling anything, so a planted checkpoint ran its code on resume."""
        plain = [o for o in objects if not (callable(getattr(o, "state_dict", None))
                                            and callable(getattr(o, "load_state_dict", None)))]
        if plain:  # (found at the first save, after an epoch of training, as an AttributeError)
            raise UserError(f"checkpoint_objects() returned {type(plain[0]).__name__} {plain[0]!r:.60}, which has no "
                            f"state_dict() and load_state_dict(); return objects that have both (a module, a tensor "
                            f"holder, a small class of your own), not their state.")
        self.objects = list(objects)

    def save_registered(self, folder):
        """Every rank calls state_dict() (a variant's per-rank state gathers there); the main process writes, and
        refuses at once a state a resume would refuse (load_plain), naming the object: not after a preemption."""
        from accelerate.utils import save

        trusted = trust_forced()  # a resume would load anything: nothing to refuse
        for i, obj in enumerate(getattr(self, "objects", ())):
            path = os.path.join(folder, REGISTERED.format(i))
            state = obj.state_dict()
            save(state, path, save_on_each_node=self.accelerator.project_configuration.save_on_each_node)
            # at every checkpoint, not once an object: a state may come to hold what it did not at first (a None
            # that becomes an object, a list that gets a deque); about 0.4 ms an object (a tiny model's checkpoint
            # takes 80-120 ms)
            unsafe = [] if trusted or not os.path.isfile(path) else unsafe_globals(path) + odd_arrays(state)
            if unsafe:
                whose = f"{type(obj).__name__}.state_dict()"
                if obj is self.loop.state:  # the callbacks' states ride in TrainState's: name the callback's own
                    for key, held in (getattr(obj, "callbacks", None) or {}).items():
                        alone = f"{path}.callback"
                        save(held, alone)
                        bad = unsafe_globals(alone) + odd_arrays(held)
                        os.remove(alone)
                        if bad:
                            whose, unsafe = f"callback {key}'s state_dict()", bad
                            break
                raise UserError(f"{whose} holds {listed(unsafe, 3)}, which a resume would not load (checkpoints load "
                                f"weights-only: no code runs); return tensors, numpy arrays or scalars (numbers, "
                                f"strings, datetime64), Python numbers, strings, lists and dicts (a datetime as its "
                                f"isoformat(), a deque as a list, objects as their fields).")

    def load_registered(self, path):
        """Restore the registered objects from checkpoint `path`, on every rank (weights-only: tensors, numpy
        arrays, numbers, strings and containers of them; anything else is refused, naming the file)."""
        for i, obj in enumerate(getattr(self, "objects", ())):
            name = REGISTERED.format(i)
            try:
                state = load_plain(os.path.join(path, name))
            except pickle.UnpicklingError as e:
                found = unsafe_globals(os.path.join(path, name))
                raise UserError(f"checkpoint '{path}': '{name}' holds {listed(found, 3) if found else 'an object'}, "
                                f"which torch's weights-only loader refuses (it could run code as it loads); a "
                                f"state_dict() of tensors, numpy arrays or scalars (of numbers, strings or dates), numbers, "
                                f"strings, lists and dicts resumes. If you trust this checkpoint (your own run's), "
                                f"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 loads it anyway.") from e
            obj.load_state_dict(state)

    def best_metrics(self):
        """best/'s best_metrics.json, or None when there is no (readable) best/."""
        return read_best_record(self.best_dir)

    def best_of(self, state):
        """(value, epoch, step) of the best evaluation a TrainState (or its state_dict) records."""
        get = state.get if isinstance(state, dict) else lambda k: getattr(state, k, None)
        return get("best_metric"), get("best_epoch"), get("best_step")

    def describe_best(self, state):
        value, epoch, step = self.best_of(state)
        return f"eval_{self.cfg.metric}={value:.4g} at epoch {epoch}, step {step if step is not None else '?'}"

    def plan_best(self, path):
        """Before resuming `path` (main process, nothing touched yet): does best/ here hold the model the
        checkpoint calls best so far? None when it does, when there is none yet, or when best/ was written
        after the checkpoint (a run cut short: the resumed run evaluates that step again and rewrites it).
        Else, for a checkpoint of another run folder, {"copy": that run's best/} when it holds that model
        (its best_metrics.json names the same step and value) and its files match checksums.json; else
        {"reset": the warning}: that model is not available, so the best tracking starts over and the
        next evaluation writes best/ here (rather than a summary, and --push_to_hub, naming a best/ that
        is not there, or refusing a resume that costs nothing but the best model so far)."""
        state = read_state(path).get("state") or {}
        if self.best_of(state)[0] is None:
            return None
        # the replaced run's best/ is not this run's, even with the same step and score
        here = "belongs to the run this one replaces" if self._replaced else \
            best_mismatch(self.best_dir, self.cfg.metric, *self.best_of(state))
        if here is None:
            return None
        written = (read_best_record(self.best_dir) or {}).get("step")
        if not self._replaced and isinstance(written, int) and isinstance(state.get("global_step"), int) \
                and written > state["global_step"]:
            return None
        best = self.describe_best(state)
        if self.is_own(path):
            return {"reset": f"checkpoint '{path}' records a best model so far ({best}), but '{self.best_dir}' "
                             f"{here}; the best tracking starts over: the next evaluation writes best/ again."}
        source = source_best_dir(path)
        why = best_mismatch(source, self.cfg.metric, *self.best_of(state))
        if why is None:
            bad = verify_files(source, read_checksums(source))
            if bad is None:
                return {"copy": source, "best": best}
            why = f"is damaged ({bad})"
        return {"reset": f"checkpoint '{path}' comes from another run, whose best model so far ({best}) is not "
                         f"available ('{source}' {why}); the best tracking starts over here: the next evaluation writes "
                         f"'{self.best_dir}' (to keep that model instead, stop, copy it there and resume again)."}

    def copy_best(self, source):
        """Copy another run folder's best/ here (main process): through a temporary sibling, verified
        against its checksums.json, published atomically like a best/ we write. True when it had checksums to
        verify (an older loop's best/ had none: the copy gets them)."""
        tmp = f"{tmp_sibling(self.best_dir)}-{socket.gethostname()}-{os.getpid()}"
        try:
            shutil.rmtree(tmp, ignore_errors=True)
            copy_own_files(source, tmp)
            sums = read_checksums(tmp)
            bad = verify_files(tmp, sums)
            if bad:
                raise UserError(f"the copy of '{source}' does not match its checksums ({bad}); check that folder, "
                                f"or resume without it from a checkpoint of this --output_dir.")
            if sums is None:  # a best/ of a loop version before checksums: the copy gets them (a later resume checks)
                write_json(os.path.join(tmp, BEST_CHECKSUMS), checksum_tree(tmp))
            publish(tmp, self.best_dir)
            return sums is not None
        except OSError as e:
            raise UserError(f"could not copy '{source}' to '{self.best_dir}' ({short(e)}); free space or fix "
                            f"permissions in --output_dir, or copy it by hand and resume again.") from e
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def best_where(self, state):
        """Where the summary says the best model is: best/ when it holds the evaluation `state` calls best,
        else what is wrong (best/ is never named when it is not there)."""
        problem = best_mismatch(self.best_dir, self.cfg.metric, *self.best_of(state))
        if problem is None:
            return f"model in {self.best_dir}"
        return f"no model of it in {self.cfg.output_dir} ('{self.best_dir}' {problem})"

    # ------------------------------------------------------------ resumable checkpoints
    def save(self):
        """A resumable checkpoint in checkpoints/step_N, written by all ranks, published atomically.

        Accelerate's save_state writes model, optimizer, grad scaler, every rank's RNG and the
        registered objects (scheduler, TrainState, checkpoint_objects) into a hidden temporary
        folder; the main process then adds loop_state.json, which marks it complete, and renames
        the folder into place. Returns the final path.
        """
        loop, acc = self.loop, self.accelerator
        self.check_weights_finite()
        state = loop.state
        final = os.path.join(self.checkpoints_dir, f"step_{state.global_step}")
        tmp = tmp_sibling(final)
        state.metrics_lines = loop.runlog.count_lines()
        # a stop one process asked for since the last evaluation: every process's now, and the checkpoint's (a
        # resume stops at the next evaluation, as the uninterrupted run does)
        state.stop_requested = preemption.agree_reason(acc, state.stop_requested)
        state.callbacks = {key: cb.state_dict() for key, cb in callback_keys(loop.callbacks) if hasattr(cb, "state_dict")}
        state.loss_since_log = loop.loss_meter.state(acc)  # summed over ranks: a resumed run logs the same loss
        state.tracked_since_log = loop.tracked.state(acc)
        error = failure = None

        def failed(e):  # a full disk shows as OSError, SafetensorError or RuntimeError (torch.save)
            if isinstance(e, UserError):  # the lock taken over by another run
                return str(e), None
            if not is_storage_error(e):  # a bug (ours or a library's), not the disk: keep the traceback
                return (f"writing checkpoint {final} failed: {short(e)}", e)  # (stop_together names the process)
            why = short(e)
            if not getattr(e, "errno", None):  # a library's wording (torch's "iostream error"): what the disk holds
                try:
                    why += f"; {size_text(free_space(self.cfg.output_dir))} free there"
                except OSError:
                    pass
            try:  # (a failing disk may refuse the listing too: the save's error is the one to say)
                earlier = ("earlier checkpoints are intact" if list_checkpoints(self.checkpoints_dir) else
                           "there is no earlier checkpoint")
            except OSError:
                earlier = "earlier checkpoints, if any, were not touched"
            return (f"could not write checkpoint {final} ({why}); free space or fix permissions in --output_dir "
                    f"({earlier}).", None)

        def agree():
            # Every rank learns of a failure on any rank before the next collective, as in save_best: a rank
            # that left alone would leave the others waiting in a barrier (or dying there with a traceback).
            try:
                stop_together(acc, error, failure, every_rank=True)
            except BaseException:
                if acc.is_main_process:  # whichever rank failed: nothing half-written stays
                    shutil.rmtree(tmp, ignore_errors=True)
                raise

        try:
            if acc.is_main_process:
                self.check_lock()
                shutil.rmtree(tmp, ignore_errors=True)
                os.makedirs(tmp)
        except Exception as e:
            error, failure = failed(e)
        agree()
        try:
            acc.save_state(tmp, safe_serialization=True)  # model, optimizer, scaler, RNG of every rank
            self.save_registered(tmp)
        except Exception as e:
            error, failure = failed(e)
        agree()
        if acc.is_main_process:
            try:
                self.check_every_process_wrote(tmp, final)
                info = {"format": STATE_FORMAT, "loop_version": __version__,  # (named if a later one is refused)
                        "state": state.state_dict(), "config": self.cfg.to_dict(),
                        "cwd": os.getcwd(),  # what the config's relative paths are relative to (same_files)
                        "classes": self.classes(),
                        # --metric left out: its default, which a resume without --metric keeps (multi-label data
                        # picks by f1; keep_checkpoint_metric)
                        "metric_defaulted": self.cfg.metric_defaulted, "multi_label": loop.multi_label,
                        "num_processes": acc.num_processes, "mixed_precision": acc.mixed_precision,
                        # the epochs' length, and whether a short last round merged (merged_short_rounds)
                        "epoch_batches": loop.epoch_length,
                        "merged_short_rounds": getattr(loop.train_sampler, "merge_short_round", True),
                        "data": self.saved_signature(), "inputs": loop.resume_signature(), "saved_at": time.time(),
                        "model_config": model_config_record(acc.unwrap_model(loop.model)),
                        "frozen": frozen_names(acc.unwrap_model(loop.model)),  # a hook's unfreezing, restored on resume
                        "tracker_run_id": getattr(loop.runlog, "run_id", None),  # a resume continues the run
                        "files": checksum_tree(tmp)}  # verified on resume
                self.mark_complete(tmp, info)
                publish(tmp, final)
                rotate(self.checkpoints_dir, self.cfg.save_total_limit, protect=[loop.resumed_from, final])
            except Exception as e:
                error, failure = failed(e)
        agree()
        self.saved_at, self.saved_path = loop.position(), final
        return final

    def check_every_process_wrote(self, tmp, final):
        """Refuse to mark complete a checkpoint without the RNG state of every process (accelerate's
        random_states_<i>.pkl, which a resume reads on each): the processes that wrote elsewhere do not share this
        --output_dir (a node-local disk), and the checkpoint would say "saved" while no resume could read it."""
        acc = self.accelerator
        missing = [i for i in range(acc.num_processes)
                   if not os.path.exists(os.path.join(tmp, f"random_states_{i}.pkl"))]
        if acc.num_processes > 1 and missing:
            raise UserError(f"checkpoint {final} lacks the random_states_<i>.pkl of process {listed(missing)}, "
                            f"written where process 0 does not see it: --output_dir "
                            f"'{os.path.abspath(self.cfg.output_dir)}' is not one folder every node shares; use one "
                            f"that is (no checkpoint was saved).")

    def mark_complete(self, tmp, info):
        """Write loop_state.json, last: from now on the folder counts as a complete checkpoint."""
        write_json(os.path.join(tmp, STATE_FILE), info)

    def check_weights_finite(self):
        """Refuse to checkpoint NaN/inf weights, or, under DDP, replicas that differ (one host sync per
        checkpoint; every rank reaches the same verdict)."""
        acc = self.accelerator
        # Each rank checks what it holds: under FSDP2 parameters are DTensors, and reducing a value
        # computed from them would be a DTensor op with no sharding rule. The local shards cover
        # every weight once over all ranks, and the reduce below makes every rank agree.
        params = [local_tensor(p.detach()) for p in self.loop.model.parameters()]
        ok = torch.stack([torch.isfinite(p).all() for p in params]).all().float() if params else torch.ones(())
        from .distributed import kind

        replicas = acc.num_processes > 1 and kind(acc).startswith("MULTI_") and bool(params)  # DDP: every rank holds all
        if replicas:
            # and their fingerprint: DDP keeps the gradients equal, not the weights; a variant that changes
            # them per process (an in-place add then subtract of a per-rank tensor does not round back)
            # makes the replicas drift apart silently, and a checkpoint would keep rank 0's alone
            # (per tensor, the sum of its raw bits as integers: exact and independent of the order of
            # the addition, so identical weights agree on any device and thread count)
            fingerprint = torch.stack([bit_sum(p) for p in params])
            found = acc.gather(torch.cat([ok.long().view(1), fingerprint]).view(1, -1).to(acc.device)).cpu()
            ok_all, same = bool(found[:, 0].all()), bool((found[:, 1:] == found[0, 1:]).all())
        else:
            ok_all, same = acc.reduce(ok.to(acc.device), reduction="sum").item() == acc.num_processes, True
        if not ok_all:
            raise UserError(f"the model weights became NaN or infinite by step {self.loop.state.global_step}; "
                            f"{divergence_fix(acc.mixed_precision)} (no checkpoint was saved from these weights).")
        if not same:
            raise UserError(f"the processes hold different weights at step {self.loop.state.global_step}: something "
                            f"changed the parameters differently on each process (a variant that adds and then "
                            f"subtracts a per-process perturbation, say, which does not round back exactly; restore "
                            f"a saved copy instead); no checkpoint was saved from these weights.")

    def resume(self):
        """Restore model, optimizer, scheduler, RNG, loop state and callbacks from `resume_path`."""
        loop, acc = self.loop, self.accelerator
        path = self.resume_path
        # which parameters train, first: FSDP2 loads no optimizer state into a parameter frozen at that moment
        restore_trainable(loop, self.resume_state().get("frozen"))
        if "frozen" not in self.resume_state():  # (recorded since 2026-12-03, just after the weighting changed)
            from .distributed import older_weighting

            changed = older_weighting(loop)
            if changed:
                loop.warn(changed)
        self.load_files(path)
        self.check_restored_rng(path)
        self.restore_callbacks()
        loop.loss_meter.load(loop.state.loss_since_log, acc)
        loop.tracked.load(getattr(loop.state, "tracked_since_log", None), acc)
        if self.is_own(path):  # a checkpoint loaded from elsewhere is no checkpoint of this run's
            self.saved_at, self.saved_path = loop.position(), path
        plan = self.best_plan or {}
        if plan.get("reset"):  # on every rank: save_best's "improved" must agree (it is a collective)
            self.best_reset = dict(zip(("best_metric", "best_epoch", "best_step"), self.best_of(loop.state)))
            loop.state.best_metric = loop.state.best_epoch = loop.state.best_step = None
            loop.warn(plan["reset"])
        error = None
        if acc.is_main_process:
            try:
                self.abandon_newer(path, loop.state.global_step)
                self.cut_metrics(path, loop.state.metrics_lines)
                if plan.get("copy"):
                    verified = self.copy_best(plan["copy"])
                    # how best/ was made: this run's record (a resume has that run's options); a copied best/ that no
                    # evaluation beat left the new --output_dir without it (helper compat F4)
                    try:
                        write_json(os.path.join(self.cfg.output_dir, TRAINING_ARGS), self.training_args(), atomic=True)
                    except OSError as e:
                        raise UserError(f"could not write '{TRAINING_ARGS}' in --output_dir ({short(e)}); free space "
                                        f"or fix permissions there.") from e
                    self._say(f"copied the best model so far ({plan['best']}) from '{plan['copy']}' to "
                              f"'{self.best_dir}' ({'checksums verified' if verified else 'an older best/ without checksums to verify'}): "
                              f"checkpoint '{path}' comes from that run.")
            except UserError as e:
                error = str(e)
        stop_together(acc, error, every_rank=True)  # every rank stops with the main one, none waits in a barrier
        return path

    def load_files(self, path):
        """Load the checkpoint's files into the model, the optimizer, the scheduler and the registered objects;
        a load that fails is one UserError saying why (the optimizer's groups, the model's config, or the files)."""
        loop, acc = self.loop, self.accelerator
        built = group_settings(loop.optimizer)
        try:
            # (the model accelerate saves and loads: without DDP's wrapper, with torch.compile's)
            load_accelerator_files(acc, path, acc.unwrap_model(loop.model, keep_torch_compile=True))
            self.load_registered(path)  # the scheduler, the TrainState, a variant's objects, on every rank
            changed = [f"group {i}: {name} {now} built, {then} in the checkpoint"
                       for i, (b, c) in enumerate(zip(built, group_settings(loop.optimizer)))
                       for name, now, then in zip(("learning rate", "weight decay"), b, c) if now != then]
            if changed:  # a variant's param_groups edited between the runs (the options are compared elsewhere)
                loop.warn(f"the optimizer's parameter groups were built with other settings than checkpoint '{path}' "
                          f"holds ({'; '.join(changed[:3])}): the resumed run takes the checkpoint's, as the "
                          f"interrupted run had them; start a new run from its best/ to train with the new ones.")
        except UserError:
            raise
        except Exception as e:  # the files verified, so this is a checkpoint from other code or a bad copy
            if "parameter group" in str(e):  # its optimizer grouped the parameters otherwise: every checkpoint of it
                raise UserError(f"could not load checkpoint '{path}' ({short(e)}): its optimizer grouped the "
                                f"parameters otherwise than this run does (a variant's param_groups, or an older loop: a "
                                f"Llama's or T5's final norm left weight decay on 2026-12-03), so no checkpoint of that "
                                f"run resumes; start a new run from its best/ (--model_name_or_path) in another "
                                f"--output_dir.") from e
            changed = self.model_config_changes()
            if changed:  # every checkpoint of the run holds the old shapes: another one would fail alike
                raise UserError(f"could not load checkpoint '{path}' ({short(e)}): the model's config is not the one "
                                f"the run trained with ({changed}); resume with that config (its config.json or "
                                f"--config_overrides as they were), or start a new run in another --output_dir.") from e
            raise UserError(f"could not load checkpoint '{path}' ({short(e)}); resume from another checkpoint "
                            f"or start a new run in another --output_dir.") from e

    def check_restored_rng(self, path):
        """Every rank restored its random number generators, or every rank stops: the run would not reproduce."""
        acc = self.accelerator
        problem = rng_problem(path, acc.process_index)
        bad = torch.tensor([1.0 if problem else 0.0], device=acc.device)
        if acc.num_processes > 1:  # every rank stops together, not just the one whose file was bad
            bad = acc.reduce(bad, reduction="sum")
        if bad.item():
            raise UserError(f"checkpoint '{path}' did not restore the random number generators "
                            f"({problem or 'on another rank'}); the run would not be reproducible, so resume "
                            f"from another checkpoint.")

    def restore_callbacks(self):
        """Each callback's state from the TrainState, by its key (by position in checkpoints before 2026-12-02),
        with a warning for a callback without state and for state without its callback."""
        loop = self.loop
        saved = dict(loop.state.callbacks or {})
        by_position = bool(saved) and all(str(k).isdigit() for k in saved)  # written before 2026-12-02: 0, 1, ...
        for i, (key, cb) in enumerate(callback_keys(loop.callbacks)):
            st = saved.pop(key, None) if not by_position else saved.pop(str(i), saved.pop(i, None))
            if st is not None and hasattr(cb, "load_state_dict"):
                cb.load_state_dict(st)
            elif hasattr(cb, "load_state_dict") and not by_position:
                loop.warn(f"the checkpoint holds no state of callback {key}: it starts afresh")
        if saved and not by_position:  # a callback the run had then and not now: its state goes unused
            loop.warn(f"the checkpoint holds the state of callback(s) this run does not have: {', '.join(saved)}")

    def is_own(self, path):
        """True when `path` is a checkpoint folder in this run's checkpoints/."""
        # realpath: an --output_dir reached through a link and a resume path written without it are one folder
        return bool(path) and os.path.dirname(os.path.realpath(path)) == os.path.realpath(self.checkpoints_dir)

    def abandon_newer(self, path, step):
        """Resuming from a checkpoint older than the newest in checkpoints/ starts another timeline: the
        newer checkpoints continue the abandoned one (a later `latest` would take one of them, with a log
        cut back below its own). Move them aside to `checkpoints/.abandoned-step_N` (hidden: `latest`,
        rotation and the disk estimate ignore them; kept, not deleted, so a wrong path given by hand
        costs no training), replacing an older one of that name; one line says so. Main process."""
        newer = [p for s, p in list_checkpoints(self.checkpoints_dir)
                 if s > step and os.path.realpath(p) != os.path.realpath(path)]
        if not newer:
            return
        moved = []
        try:
            for p in newer:
                aside = os.path.join(self.checkpoints_dir, ABANDONED + os.path.basename(p))
                if os.path.lexists(aside):  # (a link of that name is unlinked, never followed)
                    remove_tree(aside, ignore_errors=False)
                os.rename(p, aside)
                moved.append(os.path.basename(p))
            fsync_dir(self.checkpoints_dir)
        except OSError as e:
            raise UserError(f"could not move the newer checkpoints aside in '{self.checkpoints_dir}' "
                            f"({short(e)}); fix permissions in --output_dir, or delete them by hand.") from e
        self._say(f"resumed from an older checkpoint than the newest: moved the {len(moved)} newer one(s) "
                  f"({', '.join(moved)}: another timeline, or ones that failed verification), aside to "
                  f"'{os.path.join(self.checkpoints_dir, ABANDONED)}<name>' (`latest` ignores them; delete them "
                  f"once unneeded).")

    def cut_metrics(self, path, want):
        """Drop log lines written after the checkpoint (the run may have been killed later), through a
        temporary file and an atomic rename: a crash now leaves the old log or the new one. A log shorter
        than the checkpoint's count lost records: one warning (main process)."""
        if not os.path.isfile(self.metrics_path):
            if want and self.is_own(path):
                self.loop.warn(f"'{self.metrics_path}' is missing, but checkpoint '{path}' was saved after {want} "
                               f"lines of it: this run's log lacks those records.")
            elif want:  # another run's checkpoint, resumed into a new folder: its log up to it, as best/ is
                self.copy_metrics(path, want)
            return
        with open(self.metrics_path, "rb") as f:
            lines = f.readlines()
        whole = [line for line in lines if line.endswith(b"\n")]  # a cut-off last line (a half-copied folder):
        if len(whole) < (want or 0):  # the next record would be glued to it, and no JSON-lines reader takes that
            self.loop.warn(f"'{self.metrics_path}' holds {len(whole)} whole lines, but checkpoint '{path}' was saved "
                           f"after {want}: the log lost records (it continues from here, with a gap).")
            if len(whole) == len(lines):
                return
        try:
            replace_file(self.metrics_path, b"".join(whole[:want]))
        except OSError as e:
            raise UserError(f"could not rewrite '{self.metrics_path}' ({short(e)}); free space or fix "
                            f"permissions in --output_dir (the log is intact).") from e

    def copy_metrics(self, path, want):
        """Start this folder's metrics.jsonl with the `want` lines the run that saved checkpoint `path` (another
        run's, in its checkpoints/) had logged by then, from its metrics.jsonl: the log then tells the whole story
        as best/, copied alike, does (the evaluation it names is in it). Left out, with a warning, where that log
        holds fewer lines or later steps than the checkpoint saw (another timeline since); none copied without one."""
        source = os.path.join(os.path.dirname(os.path.dirname(os.path.realpath(path))),
                              os.path.basename(self.metrics_path))
        if not os.path.isfile(source):  # a checkpoint folder moved on its own: no log came with it
            return
        try:
            with open(source, "rb") as f:
                lines = [line for _, line in zip(range(want), f)]
            fits = len(lines) == want and all(line.endswith(b"\n") for line in lines) \
                and (json.loads(lines[-1]).get("step") or 0) <= self.loop.state.global_step
        except (OSError, ValueError, AttributeError):
            fits = False
        if not fits:
            self.loop.warn(f"'{self.metrics_path}' starts at this resume: the log of the run that saved '{path}' "
                           f"({source}) does not hold the {want} lines it had logged by then.")
            return
        try:
            replace_file(self.metrics_path, b"".join(lines))
        except OSError as e:
            raise UserError(f"could not write '{self.metrics_path}' ({short(e)}); free space or fix permissions in "
                            f"--output_dir.") from e
        self._say(f"copied the first {want} lines of '{source}' (the log up to checkpoint '{path}') to "
                  f"'{self.metrics_path}'.")

    # ------------------------------------------------------------ the Hub
    def retarget_card(self):
        """Before a finished run's best/ is pushed: its card (written when it trained, naming the output folder or
        another --hub_model_id) named as a run trained with these Hub options names it, its checksum updated. Left
        as it is where it is not loop's card or cannot be rewritten (a warning: the push goes on). Returns a
        function that puts the card and checksums.json back as they were (a push that failed), or None."""
        from . import modelcard
        from .hub import repo_id

        path = os.path.join(self.best_dir, "README.md")
        sums_path = os.path.join(self.best_dir, BEST_CHECKSUMS)
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError:
            return None  # no card (it could not be made): nothing names the model
        card = modelcard.retarget(text, repo_id(self.cfg), self.cfg.hub_model_id)
        if card is None or card == text:
            return None
        try:
            with open(sums_path, "rb") as f:
                sums_before = f.read()
        except OSError:
            sums_before = None

        def restore():
            replace_file(path, text.encode("utf-8"))
            if sums_before is not None:
                replace_file(sums_path, sums_before)

        try:
            replace_file(path, card.encode("utf-8"))
        except OSError as e:
            self.loop.warn(f"could not name '{repo_id(self.cfg)}' in '{path}' ({short(e)}); it is pushed as it is.")
            return None  # nothing changed: nothing to put back
        try:
            sums = read_checksums(self.best_dir)
            if sums and "README.md" in sums:
                sums["README.md"] = sha256_file(path)
                replace_file(sums_path, json.dumps(sums, indent=2).encode("utf-8"))
        except OSError as e:
            self.loop.warn(f"could not record the card's new checksum in '{sums_path}' ({short(e)}).")
        return restore

    def push_to_hub(self):
        """Upload best/ to --hub_model_id (main process only)."""
        from huggingface_hub import create_repo, upload_folder

        from .hub import repo_id

        repo = repo_id(self.cfg)
        if not os.path.isdir(self.best_dir):
            raise UserError(f"--push_to_hub: there is no '{self.best_dir}' to push (no evaluation of this run saved "
                            f"one here); nothing was pushed: upload the model folder you want with huggingface_hub's "
                            f"upload_folder to '{repo}'.")
        try:
            create_repo(repo, exist_ok=True)
            upload_folder(repo_id=repo, folder_path=self.best_dir)
        except Exception as e:
            retry = ("" if self.cfg.eval_only else " and the run is recorded finished: the same command with "
                     "--resume_from_checkpoint auto pushes it without training again")
            raise UserError(f"could not push best/ to the Hub repository '{repo}' ({short(e)}); the local "
                            f"copy in {self.best_dir} is complete{retry}.") from e
