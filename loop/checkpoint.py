"""Checkpoints: everything that writes or reads a run's state in --output_dir.

Owns: the output_dir checks (refuse to start over an earlier run, repair saves cut short by a
crash, clear an earlier run once every check passed), best/ (a `save_pretrained` model folder
that `pipeline()` loads), resumable checkpoints (`accelerator.save_state` plus our
`loop_state.json`), resume (`load_state`, the compatibility check, cutting metrics.jsonl back),
rotation and `--push_to_hub`. The `Checkpointer` is owned by the loop and reads the loop's parts
(accelerator, model, tokenizer, state, callbacks); the folder functions below it need nothing
but paths. Delegates: what a resume must agree with (`resume_checks.py`), writing files and folders
atomically (`storage.py`), loading pickles without running code (`safe_load.py`), the lock
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
import re
import shutil
import socket
import sys
import time
import warnings

import torch

from . import distributed, lora, modelcard, models, preemption
from .errors import RunFinished, UserError, divergence_fix, is_storage_error, listed, on_process, short, stop_together
from .labels import label_reading
from .lock import LOCK_FILE, LOCK_STALE_S, RunLock, lock_token
from .logs import eval_only_files, say
from .resume_checks import (PATH_OPTIONS, config_differences, data_differences, data_signature, examples_sha1,
                            jsonable, model_config_record, option_defaults, path_options, same_files)
from .safe_load import load_plain, metadata_problems, odd_arrays, rng_problem, trust_forced, unsafe_globals
from .splits import EVAL, TRAIN
from .storage import (file_digest, free_space, fsync_dir, publish, read_best_record, recover, remove_tree,
                      replace_file, sha256_file, size_text, tmp_sibling, tree_size, write_json)
from .version import __version__

STATE_FILE = "loop_state.json"
# loop_state.json's format, written as its "format" key. Raise it when a version of loop writes what an older one
# would misread; a checkpoint of a higher format than this version knows is refused (upgrade to resume it).
# 1: 2026-12-03, the first one numbered: absent in older checkpoints, whose versions read as the checks below
# say (no finish record before 2026-12-03 08:29, first-N-rows subsets before 2026-11-29 09:22, and so on).
STATE_FORMAT = 1
BEST_CHECKSUMS = "checksums.json"
TRAINING_ARGS = "training_args.json"  # in best/: the run's options, processes, versions, data files' sha256
FINISHED_FILE = ".loop-finished.json"  # a run that ended normally: its step and options (a resume then has no work)
ABANDONED = ".abandoned-"  # prefix of checkpoints/ folders moved aside (Checkpointer.abandon_newer)
_STEP = re.compile(r"^step_(\d+)$")
REGISTERED = "custom_checkpoint_{}.pkl"  # Checkpointer.register's objects, by position (accelerate's names)
_REGISTERED = re.compile(r"^custom_checkpoint_\d+\.pkl$")
# how long (s) a process that does not see the lock in --output_dir looks again before the run is refused as
# writing to a folder the nodes do not share (NFS shows another node's new file after up to acdirmax, 60 s by
# default; a mount with a longer actimeo needs more): LOOP_SHARED_VIEW_WAIT_S, read when it is needed
SHARED_VIEW_WAIT_S = 65


class Checkpointer:
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
        self.finished_pending = None  # finished_here's line, said once the resume checks passed (check_finished)

    @property
    def accelerator(self):
        return self.loop.accelerator

    # ------------------------------------------------------------ before any work
    def check_output_dir(self):
        """Take the output_dir lock, refuse to start a new run over an earlier one, repair saves cut
        short by a crash, and pick (and verify) the checkpoint to resume from.

        The main process does the work and tells the others its verdict, so every rank stops
        with the same error and none waits in a collective.
        """
        acc = self.accelerator
        error, path, plan, finished = None, None, None, None
        self.start_options = finished_options(self.cfg)  # as given: --auto_find_batch_size may shrink the batch later
        if acc.is_main_process:
            try:
                check_not_inside_a_run(self.cfg.output_dir)  # before the lock file lands there
                # (a task of a SLURM step no launcher joined: srun -n 2 python loop/train.py)
                self.lock = RunLock(self.cfg.output_dir, slurm=distributed.unjoined_slurm_task(acc))
                # a requeue waits for a dead node's lock to go stale, while the other ranks wait in the broadcast
                # below: only when their process group's timeout outlasts the wait
                resume, cfg = bool(self.cfg.resume_from_checkpoint), self.cfg
                short_timeout = acc.num_processes > 1 and cfg.ddp_timeout <= LOCK_STALE_S + 300
                self.lock.acquire(wait=resume and not short_timeout, no_wait=(
                    f"a resume waits for it only when --ddp_timeout ({cfg.ddp_timeout} s) outlasts the wait, "
                    f"{LOCK_STALE_S:.0f} s, by 300 s: the other processes wait meanwhile")
                    if resume and short_timeout else None)
                if getattr(self.loop, "runlog", None) is not None:
                    self.loop.runlog.guard = self.lock_held  # no log line once another run took the lock over
                finished = self.finished_here()  # (the lock is released by end_finished)
                if not finished:  # (a finished run writes no best/: re-run, it is left alone, or only pushed)
                    check_linked_folders(self.best_dir, self.checkpoints_dir)  # before hours of training
                    path = self._check_output_dir()
                    plan = self.plan_best(path) if path else None
            except UserError as e:
                error = str(e)
                self.release()
        if acc.num_processes > 1:
            from accelerate.utils import broadcast_object_list

            # (and the metric, which a resume may take from its checkpoint: keep_checkpoint_metric)
            lock = getattr(self, "lock", None)
            seen = (lock.token, os.path.abspath(self.cfg.output_dir), socket.gethostname()) if lock else None
            error, path, plan, finished, self.cfg.metric, seen = broadcast_object_list(
                [error, path, plan, finished, self.cfg.metric, seen])
            if not error and seen:
                error = self.check_shared_output_dir(*seen)
        if error:
            raise UserError(error, together=True)
        if finished:
            raise RunFinished(finished)
        self.resume_path = path
        self.best_plan = plan  # what resume() does about best/: every rank resets the best tracking alike

    def check_shared_output_dir(self, token, where, host):
        """Every rank reads the lock the main process took in --output_dir (its `token`): a folder the nodes do not
        share (a node-local disk, or a relative path from another working folder) trained to the end and said
        "checkpoint saved" while each node kept its own part of every checkpoint, which no resume could read.
        Returns the refusal every rank raises (the first process that does not see it, named), else None; the main
        process then gives the lock back. A shared filesystem may show a file created on another node late (NFS
        caches a folder's attributes, and that a name was not there, up to acdirmax, 30-60 s): a rank that does not see
        it looks again for up to SHARED_VIEW_WAIT_S (or LOOP_SHARED_VIEW_WAIT_S), which only a refusal waits out."""
        acc = self.accelerator
        given, problem = os.environ.get("LOOP_SHARED_VIEW_WAIT_S", SHARED_VIEW_WAIT_S), None
        try:
            wait = float(given)
            if not wait >= 0:  # (NaN too)
                raise ValueError(given)
        except ValueError:  # said after the gather: a variable set on one node alone left the others waiting in it
            problem, wait = (f"LOOP_SHARED_VIEW_WAIT_S={given!r} is not a number of seconds; set it to one (e.g. "
                             f"120) or unset it."), 0
        # within the process group's timeout: process 0 waits for the others' views in a collective meanwhile
        deadline = time.monotonic() + min(wait, max(1.0, self.cfg.ddp_timeout / 2))
        while not problem:
            try:
                os.listdir(self.cfg.output_dir)  # (opening the folder makes NFS look at it afresh)
            except OSError:
                pass
            seen = lock_token(self.cfg.output_dir) == token
            if seen or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        from accelerate.utils import gather_object

        views = gather_object([(bool(not problem and seen), socket.gethostname(), os.path.abspath(self.cfg.output_dir),
                                problem)])
        missing = [(i, h, d) for i, (ok, h, d, _) in enumerate(views) if not ok]
        if not missing:
            return None
        if acc.is_main_process:
            self.release()
        problems = [(i, h, p) for i, (_, h, _, p) in enumerate(views) if p]
        if problems:
            index, there, problem = problems[0]
            return problem if index == 0 else f"{on_process(index, there)}: {problem}"
        (index, there, looked), more = missing[0], len(missing) - 1
        return (on_process(index, there) + (f" (and {more} more)" if more else "")
                + f" does not see the lock {on_process(0, host)} wrote in --output_dir '{where}'"
                + (f" (it looks in '{looked}')" if looked != where else "")
                + ": a node-local disk, or a relative path from another working folder; use a folder every node "
                  "shares (an absolute path).")

    def finished_here(self):
        """With --resume_from_checkpoint auto (a requeued or re-submitted job): the line saying the run in
        output_dir finished with these same options, else None. Without this, a re-run resumed the last checkpoint
        and trained the steps after it again, rewriting the end of the log and best/ (on a GPU, not bit for bit).
        `latest` or a path names a checkpoint to resume: it is resumed. --push_to_hub (and --hub_model_id) added
        to a finished run is the same run, which end_finished() pushes (`push_pending`): resumed, it trained the
        steps after its last checkpoint again before pushing."""
        cfg = self.cfg
        if cfg.resume_from_checkpoint != "auto" or cfg.overwrite_output_dir:
            return None
        record = self.finished_record_here()
        if record is None:
            return None
        then = {k: v for k, v in (record.get("options") or {}).items() if k not in NOT_THE_RUN}  # (an older record's)
        now = finished_options(cfg)
        # changed options (more epochs): a resume, which check_resume_compatible judges; the same files named by another
        # path: the same run
        cwd = record.get("cwd")
        paths = path_options(cfg)
        changed = {k for k in set(then) | set(now) if k not in PUSH_OPTIONS and (
            k not in then or k not in now or then[k] != now[k] and not same_files(k, then[k], now[k], cwd, paths))}
        if changed - set(type(cfg).resume_may_change):
            return None
        # a push that run did not make (or made elsewhere): made now, and recorded
        self.push_pending = bool(cfg.push_to_hub) and (not then.get("push_to_hub")
                                                       or then.get("hub_model_id") != now.get("hub_model_id"))
        if self.push_pending:
            self.finished_record = {**record, "options": {**(record.get("options") or {}), **now}, "cwd": os.getcwd()}
        finished = (f"the run in '{cfg.output_dir}' finished at step {record.get('step')} ({record.get('finished')}) "
                    f"with these options: nothing to resume (--overwrite_output_dir trains it again)")
        if changed:  # a variant's option whose effect its resume_signature checks (a teacher copied elsewhere):
            self.finished_pending = finished  # finished once the last checkpoint's check passed (check_finished)
            return None
        return finished

    def end_finished(self):
        """The end of a run found finished (RunFinished, every rank): the push it still owes (--push_to_hub added
        to it) made, its finish record written when one is pending (an older loop's run, or the push now named),
        the lock released. Every rank stops together when the push cannot be made."""
        acc, error = self.accelerator, None
        if acc.is_main_process:
            from .hub import push_problem, repo_id

            try:
                if self.push_pending:
                    problem = push_problem(self.cfg)
                    if problem:
                        raise UserError(problem.replace("would fail after training",
                                                        "cannot push the finished run's best/"))
                    restore = self.retarget_card()
                    try:
                        self.push_to_hub()
                    except UserError:
                        if restore is not None:  # nothing pushed: best/ stays the card that names this folder
                            try:
                                restore()
                            except OSError as e:  # the push's error is the one to say
                                self.loop.warn(f"could not put '{self.best_dir}/README.md' back ({short(e)})")
                        raise
                    self._say(f"pushed '{self.best_dir}' to the Hub repository '{repo_id(self.cfg)}'")
                if self.finished_record:
                    write_json(self.finished_path, self.finished_record, atomic=True)
            except UserError as e:
                error = str(e)
            except OSError as e:  # the run is finished (and pushed); a re-run finds it so again
                self.loop.warn(f"could not write '{self.finished_path}' ({short(e)})")
            finally:
                self.release()
        stop_together(acc, error)
        # every rank leaves the process group together, as finish() does: left to the interpreter's exit, a
        # rank's gloo threads aborted under another that had gone (SIGABRT; torchrun exited 1, not 0)
        acc.wait_for_everyone()
        acc.end_training()

    def check_finished_unrecorded(self, max_steps):
        """--resume_from_checkpoint auto, on a checkpoint of a loop version that kept no finish record (before
        2026-12-03: no "format" in loop_state.json): the run finished when its log holds, after the checkpoint's
        lines, the evaluation of the step it ends at, with the same options (those a finish record compares), its
        lock released (a run that died leaves it: taken over as stale here) and best/ holding the log's best
        evaluation (a run killed while writing best/ did not finish). RunFinished then, on every rank, and
        end_finished() records the finish (a later re-run stops at check_output_dir) and, with --push_to_hub,
        pushes, since nothing records that run's push. Without this, every such run re-submitted after an upgrade trained its steps after the
        last checkpoint again and rewrote its log's end (and maybe best/). Called once the run's step count is
        known; anything else (early stopping, a signal, a doubt) resumes as before. Also the finish finished_here
        held back (a variant's option that may change differed, a teacher copied elsewhere): said now, once the
        checkpoint's resume checks (its resume_signature: the teacher's weights) passed."""
        cfg, acc, path = self.cfg, self.accelerator, self.resume_path
        finished = self.finished_pending if acc.is_main_process else None  # (its resume checks passed by now)
        unrecorded = cfg.resume_from_checkpoint == "auto" and path and "format" not in self.resume_state() \
            and self.is_own(path)
        if not finished and unrecorded and acc.is_main_process and self._finished_unrecorded(max_steps):
            finished = (f"the run in '{cfg.output_dir}' finished at step {max_steps} (its log holds that step's "
                        f"evaluation and best/ its best; no finish record was kept then): nothing to resume "
                        f"(--overwrite_output_dir trains it again)")
            when = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(os.path.getmtime(self.metrics_path)))
            self.finished_record = {"step": max_steps, "finished": when, "cwd": os.getcwd(),
                                    "options": self.start_options or finished_options(cfg)}
            self.push_pending = bool(cfg.push_to_hub)
        if acc.num_processes > 1:
            from accelerate.utils import broadcast_object_list

            finished = broadcast_object_list([finished])[0]
        if finished:
            raise RunFinished(finished)

    def _finished_unrecorded(self, max_steps):
        """check_finished_unrecorded's evidence (main process)."""
        saved = self.resume_state()
        state, old_cfg = saved.get("state") or {}, saved.get("config") or {}
        if (state.get("global_step") or 0) >= max_steps or getattr(getattr(self, "lock", None), "took_over", None):
            return False
        # the options a finish record compares (another extra evaluation set, say, is another run's ending)
        base = option_defaults()
        now = {k: v for k, v in finished_options(self.cfg).items() if k not in PUSH_OPTIONS}
        then = {k: old_cfg.get(k, base.get(k)) for k in now if k in old_cfg or k in base}
        # (the same files by another path are the same: against this run's working folder, none was recorded then)
        paths = path_options(self.cfg)
        if any(jsonable(old) != jsonable(now[k]) and not same_files(k, old, now[k], None, paths)
               for k, old in then.items()):
            return False
        try:
            with open(self.metrics_path, encoding="utf-8") as f:
                later = [json.loads(line) for line in f.read().splitlines()[state.get("metrics_lines") or 0:]]
        except (OSError, ValueError):
            return False
        key = f"eval_{self.cfg.metric}"
        evaluations = [r for r in later if isinstance(r, dict) and key in r]
        if not any(r.get("step") == max_steps for r in evaluations):
            return False
        best, best_step = state.get("best_metric"), state.get("best_step")
        for r in evaluations:  # the best evaluation since the checkpoint, as the run picked it
            if self.loop.improved(r[key], best):
                best, best_step = r[key], r.get("step")
        record = self.best_metrics() or {}
        return best_step is not None and record.get("step") == best_step

    def finished_record_here(self):
        """What .loop-finished.json in --output_dir says of the run that finished there (end_run wrote it): a dict,
        or None when there is none or it cannot be read (a copy cut short, a file edited by hand)."""
        try:
            with open(self.finished_path, encoding="utf-8") as f:
                record = json.load(f)
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) else None

    def earlier_run_message(self):
        """The refusal of a start over a run in --output_dir: a resume is offered only where a complete checkpoint is
        (a finished run that kept none, the smoke run, was sent to `latest`, which found none, and back), and a
        finished run is said as such."""
        step = (self.finished_record_here() or {}).get("step")
        what = (f"a finished run (step {step})" if isinstance(step, int) and not isinstance(step, bool) else
                "a run (best/, checkpoints/ or metrics.jsonl)")
        resume = (", --resume_from_checkpoint latest to continue it" if list_checkpoints(self.checkpoints_dir) else "")
        return (f"--output_dir '{self.cfg.output_dir}' already holds {what}; pass --overwrite_output_dir to replace "
                f"it{resume}, or choose another --output_dir.")

    def _check_output_dir(self):
        cfg = self.cfg
        recover(self.best_dir)
        recover_all(self.checkpoints_dir)
        earlier = os.path.isdir(self.best_dir) or os.path.isfile(self.metrics_path) or list_checkpoints(self.checkpoints_dir)
        resume, first_start = cfg.resume_from_checkpoint, False
        auto = resume == "auto"
        if auto:  # a requeued job's flag: continue if there is anything to continue, else start
            dead = getattr(getattr(self, "lock", None), "took_over", None)  # the stale lock of a run that died
            if list_checkpoints(self.checkpoints_dir):
                resume = "latest"
            elif os.path.isdir(self.best_dir) and not cfg.overwrite_output_dir and dead is None:
                # a finished (or errored) run released its lock: one that kept no checkpoint is not replaced
                raise UserError(f"--resume_from_checkpoint auto: --output_dir '{cfg.output_dir}' holds best/ but no "
                                f"checkpoint to continue from (a finished run that kept none); pass "
                                f"--overwrite_output_dir to replace that run, or choose another --output_dir.")
            else:  # nothing saved yet (at most the log of a run killed before its first checkpoint)
                if os.path.isdir(self.best_dir) and not cfg.overwrite_output_dir:
                    who = f"process {dead.get('pid')} on host '{dead.get('host')}'" if dead else "an earlier run"
                    self._say(f"--resume_from_checkpoint auto: '{cfg.output_dir}' holds best/ but no checkpoint, and "
                              f"the stale lock of {who} shows that run died before its first checkpoint; starting "
                              f"it over (a first start: its log goes, best/ is replaced).")
                resume, first_start = None, True
        if earlier and not (cfg.overwrite_output_dir or resume or first_start):
            raise UserError(self.earlier_run_message())
        if resume:
            try:
                path = resolve_resume(resume, cfg.output_dir, say=self._say, auto=auto)
            except UserError:
                if not (auto and cfg.overwrite_output_dir):
                    raise
                # auto with --overwrite_output_dir: continue when possible, else replace the run
                self._say(f"--resume_from_checkpoint auto: no checkpoint in '{self.checkpoints_dir}' verifies; "
                          f"--overwrite_output_dir: starting the run over.")
                resume, path = None, None
        # Another folder's checkpoint resumed over a run here would splice the two runs' logs (this one's cut to
        # the checkpoint's line count, the other's steps after it) and might keep this run's best/
        foreign = bool(resume and earlier) and not self.is_own(path)
        if foreign and not cfg.overwrite_output_dir:
            raise UserError(f"--output_dir '{cfg.output_dir}' already holds a run (best/, checkpoints/ or metrics.jsonl), "
                            f"and checkpoint '{path}' is another folder's: resuming it here would mix the two runs' "
                            f"records; pass --overwrite_output_dir to replace that run, or choose another --output_dir.")
        # A new run over an earlier one: its log, checkpoints and event files go, but only once every check
        # passed (clear_earlier_run, at the end of setup), so a failed start leaves the output_dir untouched.
        # --eval_only's files alone are no run to refuse to replace, but they scored another model: they go too
        scored = bool(eval_only_files(cfg.output_dir))
        self._clear_earlier = bool(earlier or scored) and (not resume or foreign)
        self._replaced = foreign  # plan_best: best/ here is the replaced run's, whatever it holds
        if not resume:
            return None
        self.keep_checkpoint_metric(path)  # before the comparison: a metric the checkpoint picked by default is no change
        self.check_resume_compatible(path)
        if os.path.isdir(self.best_dir):
            bad = verify_files(self.best_dir, read_checksums(self.best_dir))
            if bad:
                raise UserError(f"'{self.best_dir}' is damaged ({bad}); restore it from a copy, or start a new run "
                                f"in another --output_dir (resuming would keep a wrong best model).")
        return path

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

    def resume_state(self):
        """loop_state.json of the checkpoint being resumed, read once."""
        if getattr(self, "_resume_state", (None, None))[0] != self.resume_path:
            self._resume_state = (self.resume_path, read_state(self.resume_path))
        return self._resume_state[1]

    def merged_short_rounds(self):
        """Whether the run's epochs merge a last round of fewer examples than processes into the round before
        (EpochBatchSampler.merges_last_round): yes, unless resuming a checkpoint written before they did (its
        loop_state.json records no merged_short_rounds), whose epochs were a batch per process longer: its steps
        per epoch, schedule and skipped batches count them, so the resumed run keeps them
        (distributed.no_repeats_in_training)."""
        return not self.resume_path or bool(self.resume_state().get("merged_short_rounds", False))

    def check_epoch_length(self, n):
        """Refuse to resume a checkpoint whose epochs were not `n` micro-batches per process (as it records them;
        one written before records none): the batches it skips and its steps per epoch would not be this run's."""
        saved = self.resume_state().get("epoch_batches") if self.resume_path else None
        if saved is not None and saved != n:
            raise UserError(f"checkpoint '{self.resume_path}' was trained on epochs of {saved} batches per process, "
                            f"this run's have {n} (its batch sampler changed), so it would skip other batches than the "
                            f"ones trained; resume with the sampler it had, or start a new run in another --output_dir.")

    def resume_run_id(self):
        """The trackers' run id the checkpoint being resumed recorded (wandb's), or None; None too for a
        checkpoint of another output_dir (a run started from a copy is a run of its own: continuing the
        original's would rename it and, online, drop the copy's steps the original already logged)."""
        if not self.resume_path or os.path.realpath(os.path.dirname(os.path.abspath(self.resume_path))) != \
                os.path.realpath(self.checkpoints_dir):
            return None
        return self.resume_state().get("tracker_run_id")

    def resume_step(self):
        """The optimizer step of the checkpoint being resumed, or None on a fresh start or over a run this one
        replaces (another folder's checkpoint with --overwrite_output_dir): TensorBoard keeps this folder's earlier
        events up to that step and hides the rest."""
        if not self.resume_path or self._replaced:
            return None
        return self.resume_state().get("state", {}).get("global_step")

    def classes(self):
        """The loop and config classes, by name: a research variant's checkpoint is its own."""
        return {"loop": type(self.loop).__name__, "config": type(self.cfg).__name__}

    def keep_checkpoint_metric(self, path):
        """--metric left out then and now: the checkpoint's default goes on (f1, for multi-label data; an earlier
        loop's checkpoint, which records nothing about it, picked by accuracy, this run's default until the data).
        check_output_dir shares the result with the other processes."""
        saved = read_state(path)
        self.cfg.keep_checkpoint_metric(saved.get("config", {}).get("metric"), saved.get("metric_defaulted", False),
                                        saved.get("multi_label", False))

    def check_resume_compatible(self, path):
        """Refuse a checkpoint this run cannot continue: a newer format, or options, classes or data that differ
        (the message names each difference). Changes nothing."""
        saved = read_state(path)
        if not isinstance(saved.get("format", 0), int) or saved.get("format", 0) > STATE_FORMAT:
            wrote = f"loop {saved['loop_version']}, " if isinstance(saved.get("loop_version"), str) else ""
            raise UserError(f"checkpoint '{path}' was written by a newer version of loop ({wrote}checkpoint format "
                            f"{saved.get('format')!r}; this one, {__version__}, reads up to {STATE_FORMAT}); upgrade "
                            f"loop to resume it, or start a new run in another --output_dir.")
        # a variant's options that may change as its resume_signature checks them: compared as options in a
        # checkpoint that has none (an older version's)
        may_change = type(self.cfg).resume_may_change if saved.get("inputs") is not None else ()
        diff, renamed = config_differences(saved, self.cfg.to_dict(), self.classes(), self.accelerator.num_processes,
                                           path_options(self.cfg), may_change)
        if diff:
            # a longer run is another schedule (the learning rate decays to 0 at the old end): no resume extends it
            longer = any(d.startswith(("--num_train_epochs ", "--max_steps ")) for d in diff)
            raise UserError(f"checkpoint '{path}' was made with a different config ({', '.join(diff)}); resume with "
                            f"the same settings (README, Reliability, lists the options that may change) or start "
                            f"a new run in another --output_dir" + (
                                " (to train on from this run, give its best/ as --model_name_or_path: the "
                                "learning rate schedule was built for the run's length)" if longer else "") + ".")
        if renamed:
            self._say(f"{', '.join(renamed)} name{'s' if len(renamed) == 1 else ''} the files of checkpoint '{path}' "
                      f"by another path: the same files")  # (the same run once the data signature matches too)
        precision = saved.get("mixed_precision")
        if precision not in (None, self.accelerator.mixed_precision):
            # allowed (bf16 instead of an fp16 run that overflows is a fair rescue), but not silently
            self.loop.warn(f"checkpoint '{path}' was trained with mixed precision '{precision}', this run uses "
                           f"'{self.accelerator.mixed_precision}': it continues, but will not match an uninterrupted run.")

    def data_signature(self):
        """What a resume must find again (resume_checks.data_signature): equal on every rank and on every resume;
        computed once per Data (read from Arrow: milliseconds for 25k rows' labels, about 0.2 s for 7 million tokens
        on 2 CPU cores)."""
        data = self.loop.data
        if self._signature is None or self._signature[0] is not data:
            self._signature = (data, data_signature(data, getattr(self.loop, "tokenizer", None)))
        return self._signature[1]

    def check_same_data(self):
        """Every process must have prepared the same data (its data_signature, which a checkpoint records): nodes that
        read copies of their own (a node-local disk, a relative path) that differ trained each on its examples,
        silently, and a resume blamed the checkpoint ("made on other data") on those ranks alone. Several processes
        only; the signature is computed once anyway for the first checkpoint (0.2 s for 7 million tokens)."""
        acc = self.accelerator
        if acc.num_processes == 1:
            return
        from accelerate.utils import gather_object

        views = gather_object([(self.data_signature(), socket.gethostname())])
        first, first_host = views[0]
        other = [(i, host, sorted(k for k in set(first) | set(sig) if first.get(k) != sig.get(k)))
                 for i, (sig, host) in enumerate(views) if sig != first]
        if other:
            index, host, keys = other[0]
            more = f" (and {len(other) - 1} more)" if len(other) > 1 else ""
            shown = "; ".join(f"{k}: {first.get(k)} on process 0, {views[index][0].get(k)} on process {index}"
                              if not k.endswith("_sha1") else f"{k} differs" for k in keys[:4])
            raise UserError(f"{on_process(index, host)}{more} read other training data than "
                            f"{on_process(0, first_host)} ({shown}): a copy of the files of its own that differs, or a "
                            f"relative path from another working folder; give every node the same files.",
                            together=True)

    def saved_signature(self):
        """data_signature() as a checkpoint records it: with the extra evaluation sets a resume dropped (from
        the resumed checkpoint), so a set brought back later under the same name must still be the same."""
        signature = self.data_signature()
        dropped = {k: v for k, v in ((self.resume_state().get("data") or {}).get("extra_eval") or {}).items()
                   if k not in signature["extra_eval"]} if self.resume_path else {}
        return {**signature, "extra_eval": {**dropped, **signature["extra_eval"]}} if dropped else signature

    def check_resume_data(self):
        """Refuse to resume on other data: the skipped batches and the schedule would not be the run's.
        A checkpoint older than this check carries no signature: it resumes, unless this version
        prepares other data from the same files than the one that wrote it (see below)."""
        if not self.resume_path:
            return
        self.check_resume_inputs()
        self.check_resume_signature()
        self.check_resume_model_config()  # a warning, after the refusals: said to a run that goes on

    def check_resume_signature(self):
        """The data the checkpoint records (data_signature) against this run's; an older checkpoint's files."""
        saved = self.resume_state().get("data")
        cfg, data = self.cfg, self.loop.data
        if not saved:  # written by an older version: refuse where that version prepared other data
            change = None
            if data.carved and (cfg.max_train_samples or cfg.max_eval_samples):
                change = ("took --max_train_samples / --max_eval_samples before --validation_split_percentage "
                          "carved its split (now after: other examples)")
            elif data.head_order:
                change = "numbered the labels in the data's order (now in the trained head's: other label ids)"
            elif "lora_r" not in self.resume_state().get("config", {}) and {TRAIN, EVAL} & data.subset_cut:
                # a subset cut (no more rows than the limit left it whole): before 2026-11-29 09:22 (2e7ad75) its first N rows.
                # --lora_r is the first option those versions lacked (on main at 09:53; the half hour between
                # is refused too: nothing in its checkpoints tells it apart)
                change = ("took the first --max_train_samples / --max_eval_samples rows (now a seeded random subset: "
                          "other examples)")
            if change:
                raise UserError(f"checkpoint '{self.resume_path}' comes from an older version of loop, which {change}; "
                                f"resuming would mix the two: start a new run.")
            return
        now = self.data_signature()
        diff = data_differences(saved, now)
        if diff:
            side = saved.get("truncation_side")
            fix = f"--truncation_side {side} (the checkpoint's)" if side and side != now["truncation_side"] else \
                "the same data files" + (" (or give the evaluation set another name)"
                                         if all(d.startswith("evaluation set '") for d in diff) else "")
            raise UserError(f"checkpoint '{self.resume_path}' was made on other data ({'; '.join(diff)}); resume with "
                            f"{fix}, or start a new run in another --output_dir.")

    def check_resume_model_config(self):
        """Warn when the model's config is not the checkpoint's (its config.json edited, --config_overrides or a Hub
        revision changed: dropout, a norm's epsilon): the weights come from the checkpoint, those fields do not, so
        the resumed run is no longer the uninterrupted one. Warned, not refused: a newer transformers may also spell
        a config otherwise."""
        diff = self.model_config_changes()
        if diff:
            self.loop.warn(f"the model's config is not the one checkpoint '{self.resume_path}' was trained with "
                           f"({diff}); the run goes on with it, so it no longer repeats the interrupted run's steps.")

    def model_config_changes(self):
        """The fields of the model's config that differ from the resumed checkpoint's ('n_layers: 2 then, 3 now; ...',
        at most 5 named), or '' (none, a checkpoint written before it was recorded, or no model built yet)."""
        saved = self.resume_state().get("model_config")
        model = getattr(self.loop, "model", None)
        if not saved or model is None:
            return ""
        now = model_config_record(model)
        diff = [f"{k}: {saved.get(k)!r} then, {now.get(k)!r} now" for k in sorted(set(saved) | set(now))
                if saved.get(k) != now.get(k)]
        return "; ".join(diff[:5]) + (f" and {len(diff) - 5} more" if len(diff) > 5 else "")

    def check_resume_inputs(self):
        """A variant's own inputs (Loop.resume_signature) must be the checkpoint's: a checkpoint written
        before they were recorded, or by a loop without any, records {} and compares nothing."""
        saved = self.resume_state().get("inputs") or {}
        if not saved:
            return
        now = jsonable(self.loop.resume_signature())  # as the checkpoint holds it (tuples are lists, np.int64 text)
        diff = [f"{k}: {saved[k]!r} then, {now.get(k)!r} now" for k in saved if now.get(k) != saved[k]]
        if diff:
            raise UserError(f"checkpoint '{self.resume_path}' was made with other inputs of "
                            f"{type(self.loop).__name__} ({'; '.join(diff)}); resume with the same ones, or start a "
                            f"new run in another --output_dir.")

    def check_disk_space(self):
        """Refuse to start when one checkpoint and best/ do not fit on the disk; warn when fewer
        checkpoints fit than the run keeps. Called once the model exists (its size is the estimate)
        and before the output_dir is touched; the main process decides, every rank stops with it.

        The estimate (`save_sizes`) counts parameter bytes: the weights, twice more for AdamW's
        moments of the trainable ones in a checkpoint; tokenizer files, RNG and scheduler state are
        small beside them and not counted. An earlier run's checkpoints and log, removed before
        training, count as free; its best/ does not (the new one is written beside it first).
        """
        acc, cfg = self.accelerator, self.cfg
        error = None
        if acc.is_main_process:
            every = cfg.checkpoint_every
            ckpt, best = save_sizes(acc.unwrap_model(self.loop.model))
            need = best + (ckpt if every else 0)
            free = free_space(cfg.output_dir)
            if self._clear_earlier:
                free += tree_size(self.checkpoints_dir) + tree_size(self.metrics_path)
            held = self.checkpoints_held() if every else 0
            what = (f"one checkpoint (~{size_text(ckpt)}) and best/ (~{size_text(best)}) need" if every else
                    "best/ needs")
            if free < need:
                fix = ", or save no checkpoints (drop --checkpointing_steps)" if every else ""
                error = (f"--output_dir '{cfg.output_dir}' has {size_text(free)} free but {what} about "
                         f"{size_text(need)}; free space or choose another --output_dir{fix}.")
            elif held and (free - best) // max(ckpt, 1) < held:
                fits = (free - best) // max(ckpt, 1)
                self.loop.warn(f"--output_dir '{cfg.output_dir}' has {size_text(free)} free: room for {fits} of the "
                               f"{held} checkpoints this run holds at once (~{size_text(ckpt)} each, plus "
                               f"~{size_text(best)} for best/); free space or lower --save_total_limit, or the run stops "
                               f"with an error when the disk is full.")
        stop_together(acc, error)

    def checkpoints_held(self):
        """How many new checkpoints are on disk at once, at most: all of them, or --save_total_limit
        plus the one just written before rotation removes the oldest, plus the one a resume started
        from (rotation never removes it) (fewer if the run saves fewer)."""
        cfg, every = self.cfg, self.cfg.checkpoint_every
        done_epochs, done_steps = 0, 0
        if self.resume_path:
            state = self.resume_state().get("state", {})
            done_epochs, done_steps = state.get("epoch", 0), state.get("global_step", 0)
        if every == "epoch":
            planned = getattr(self.loop, "num_epochs", cfg.num_train_epochs) - done_epochs
        else:
            planned = getattr(self.loop, "max_steps", 0) // every - done_steps // every
        if not cfg.save_total_limit:
            return max(planned, 1)
        kept = 0 if self._clear_earlier else len(list_checkpoints(self.checkpoints_dir))  # already on disk
        peak = cfg.save_total_limit + 1 + (1 if self.resume_path else 0)
        return max(1, min(peak, kept + planned) - kept)

    def clear_earlier_run(self):
        """Remove an earlier run's log, checkpoints, TensorBoard files and --eval_only results (they would mix
        with ours); best/ stays until replaced. Called once every start-up check passed."""
        if self.accelerator.is_main_process and os.path.isfile(self.finished_path):
            os.remove(self.finished_path)  # this run trains on: an earlier finish no longer describes the folder
        if self._clear_earlier and self.accelerator.is_main_process:
            # only what a run of loop writes there: checkpoints/ and loop/ are common names (a user's other model,
            # or this package itself under --output_dir . at the repository's root)
            kept = remove_earlier_checkpoints(self.checkpoints_dir)
            # best/ stays until this run's first evaluation replaces it: a run that fails first (a NaN loss, a full
            # disk) loses nothing (its best_metrics.json and model card say which run it is)
            kept += self.loop.runlog.forget_earlier_events()
            if kept:
                self.loop.warn(f"kept {listed(kept, 5)} in --output_dir '{self.cfg.output_dir}': not files of a run "
                               f"of loop, so the earlier run's removal left them (move them if they are yours).")
            # --eval_only's files there scored the earlier run's models: they go with it
            for name in (self.metrics_path, *eval_only_files(self.cfg.output_dir)):
                if os.path.isfile(name):
                    os.remove(name)
        self.accelerator.wait_for_everyone()

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


# ---------------------------------------------------------------- folders on disk


def save_sizes(model):
    """(bytes of one resumable checkpoint, bytes of best/), estimated from the parameters.

    best/ holds the weights (and buffers) as stored; a checkpoint holds them too, plus AdamW's two
    moments (exp_avg, exp_avg_sq) of every trainable parameter. Counts the parameters this process
    holds: exact for one process, DDP and FSDP2 (a sharded DTensor reports its full size); low under FSDP1 and ZeRO-3.
    """
    weights = sum(t.numel() * t.element_size() for t in model.parameters())
    weights += sum(t.numel() * t.element_size() for t in model.buffers())
    moments = 2 * sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    return weights + moments, weights


def checksum_tree(folder, skip=(STATE_FILE, BEST_CHECKSUMS)):
    """{relative path: sha256} of every file under `folder` (except the files that hold the sums)."""
    out = {}
    for dirpath, _, files in os.walk(folder):
        for name in sorted(files):
            rel = os.path.relpath(os.path.join(dirpath, name), folder)
            if rel not in skip:
                out[rel] = sha256_file(os.path.join(dirpath, name))
    return out


def copy_own_files(source, dest):
    """Copy a best/ of another run (copy_best): the files its checksums.json names and that file, or, for an older
    loop's best/ without one, all of them. Never through a link (copytree followed them: a link to a secret came
    along into this run's best/, and --push_to_hub would upload it; one to /dev/zero filled the disk), never a
    named file outside the folder."""
    for dirpath, dirs, files in os.walk(source):
        for name in dirs + files:
            if os.path.islink(os.path.join(dirpath, name)):
                rel = os.path.relpath(os.path.join(dirpath, name), source)
                raise UserError(f"'{source}' holds a symbolic link ('{rel}'), which a best/ a loop run wrote never "
                                f"does; remove it there (or resume from a checkpoint of this --output_dir).")
    sums = read_checksums(source)
    if not sums:
        shutil.copytree(source, dest)
        return
    os.makedirs(dest)
    for rel in [BEST_CHECKSUMS, *(r for r in sums if r != BEST_CHECKSUMS)]:
        if os.path.isabs(rel) or os.path.normpath(rel).split(os.sep)[0] == os.pardir:
            raise UserError(f"'{source}/{BEST_CHECKSUMS}' names a file outside that folder ('{rel}'); check that "
                            f"folder (or resume from a checkpoint of this --output_dir).")
        if os.path.isfile(os.path.join(source, rel)):  # (one missing: verify_files names it)
            os.makedirs(os.path.dirname(os.path.join(dest, rel)), exist_ok=True)
            shutil.copy2(os.path.join(source, rel), os.path.join(dest, rel))


def verify_files(folder, sums):
    """None if every file in `sums` is there with its checksum, else a short reason naming the file."""
    if not sums:
        return None  # written before checksums existed: nothing to compare with
    for rel, want in sorted(sums.items()):
        path = os.path.join(folder, rel)
        if not os.path.isfile(path):
            return f"'{rel}' is missing"
        if sha256_file(path) != want:
            return f"'{rel}' does not match its checksum"
    return None


def read_checksums(folder):
    path = os.path.join(folder, BEST_CHECKSUMS)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return {BEST_CHECKSUMS: "unreadable"}  # reported as a mismatch


def group_settings(optimizer):
    """[(peak learning rate, weight decay)] of each parameter group: what a resume restores from the checkpoint
    (initial_lr, the scheduler's base, once a scheduler was built)."""
    return [(g.get("initial_lr", g.get("lr")), g.get("weight_decay")) for g in optimizer.param_groups]


def load_accelerator_files(accelerator, path, model):
    """accelerate's load_state (model, optimizer, scaler, RNG: weights-only loads) on checkpoint `path`, less the
    registered objects' files: it unpickles those with weights_only=False (Checkpointer.load_registered loads them),
    and it refuses a folder that holds more of them than it has registered (none). So it reads a private folder of
    links to the checkpoint's other entries. Where the checkpoint's weights are named for `model` (the prepared
    one) but for torch.compile's wrapper (--torch_compile may change on resume), the folder holds them renamed."""
    import tempfile

    source = os.path.abspath(path)
    check_sharded_metadata(path)
    try:
        view = tempfile.mkdtemp(prefix="loop-resume-")
    except OSError:  # no writable TMPDIR: beside the checkpoint (a `.tmp-` folder: recover_all removes a leftover)
        view = os.path.join(os.path.dirname(source), f".tmp-resume-{socket.gethostname()}-{os.getpid()}")
        os.makedirs(view)
    try:
        for name in os.listdir(source):
            renames = compile_renames(os.path.join(source, name), model) if name == MODEL_FILE else None
            if renames:
                rename_weights(os.path.join(source, name), os.path.join(view, name), renames)
            elif not _REGISTERED.match(name):
                os.symlink(os.path.join(source, name), os.path.join(view, name))
        accelerator.load_state(view)
    except Exception as e:  # its message names the checkpoint, not the links
        e.args = tuple(a.replace(view, path) if isinstance(a, str) else a for a in e.args)
        raise
    finally:
        shutil.rmtree(view, ignore_errors=True)  # the links only (rmtree follows none)


def check_sharded_metadata(path):
    """Refuse a sharded checkpoint (FSDP: pytorch_model_fsdp_0/, optimizer_0/) whose .metadata pickle builds anything
    but torch.distributed.checkpoint's metadata: torch reads it with a plain pickle.load, which runs what it names
    (a checkpoint copied from someone else ran their code). TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD: the user trusts it."""
    if trust_forced():
        return
    files = [os.path.join(path, folder, ".metadata") for folder in sorted(os.listdir(path))]
    for file, found in metadata_problems([f for f in files if os.path.isfile(f)]).items():
        raise UserError(f"checkpoint '{path}': '{os.path.relpath(file, path)}' holds {found}, which no sharded "
                        f"checkpoint holds (loading it could run code); resume from a checkpoint of your own, or, if "
                        f"you trust this one, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 loads it anyway.")


MODEL_FILE = "model.safetensors"  # accelerate's save_state: the (first) model's weights
COMPILED = "_orig_mod."  # torch.compile's wrapper names each weight of the model it compiled _orig_mod.<name>


def compile_renames(weights_file, model):
    """{name in `weights_file`: name in `model`'s state dict} where the two differ only by torch.compile's
    wrapper (a checkpoint of a compiled run resumed without compiling, or the other way round); None where no name
    needs it, or where they differ otherwise (accelerate's load then says which are missing)."""
    from safetensors import safe_open

    with safe_open(weights_file, "pt") as f:
        saved = list(f.keys())
    wanted = set(model.state_dict())
    if set(saved) <= wanted:  # (a subset: safetensors stores one of tied weights)
        return None
    plain = {k.replace(COMPILED, ""): k for k in wanted}
    if len(plain) != len(wanted) or any(k.replace(COMPILED, "") not in plain for k in saved):
        return None
    return {k: plain[k.replace(COMPILED, "")] for k in saved}


def rename_weights(source, dest, renames):
    """A copy of safetensors file `source` at `dest`, each tensor under renames[its name]: a new header (names,
    dtypes, shapes, offsets) before the same bytes, streamed, so no process holds the weights in memory for it."""
    import struct

    with open(source, "rb") as f, open(dest, "wb") as out:
        (size,) = struct.unpack("<Q", f.read(8))
        header = {renames.get(k, k): v for k, v in json.loads(f.read(size)).items()}  # (__metadata__ kept)
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)  # the data starts 8-byte aligned, as safetensors writes it
        out.write(struct.pack("<Q", len(raw)) + raw)
        shutil.copyfileobj(f, out, 16 << 20)


def local_tensor(t):
    """The part of `t` this rank holds: a DTensor's local shard (FSDP2, tensor parallel), else `t`."""
    to_local = getattr(t, "to_local", None)
    return to_local() if callable(to_local) else t


def frozen_names(model):
    """Names of the model's frozen parameters, recorded in each checkpoint; the model's own, without torch.compile's
    wrapper (a checkpoint of a compiled run may resume uncompiled)."""
    return [n for n, p in models.uncompiled(model).named_parameters() if not p.requires_grad]


def restore_trainable(loop, frozen):
    """On resume, before the hooks: which parameters train as when the checkpoint was saved (`frozen`, its
    frozen_names; None in a checkpoint written before 2026-12-03). A variant that unfroze parameters in a hook at a
    moment of its own (a plateau, step 10) would otherwise train its rebuilt, frozen model to the end, silently; the
    hooks then run as on any resume (an epoch rule in on_epoch_start gives what it gave before)."""
    if frozen is None:
        return
    # (a compiled run's checkpoints before 2026-12-04 named them for the compile wrapper)
    model, frozen = models.bare_model(loop.accelerator, loop.model), {n.replace(COMPILED, "") for n in frozen}
    now = set(frozen_names(model))
    if now == frozen:
        return
    for name, p in model.named_parameters():
        p.requires_grad_(name not in frozen)
    thawed, froze = len(now - frozen), len(frozen - now)
    loop.print(f"trainable parameters as at the checkpoint: {thawed} unfrozen" + (f", {froze} frozen" if froze else "")
               + " (a hook had changed them during the run)")


# options that change neither what a run trains nor what it evaluates: a re-run differing in them only (logging
# less often, no TensorBoard) finds the run finished all the same
# (--push_to_hub is the run's: a re-run asking for a push the finished run did not make must not end quietly)
PUSH_OPTIONS = ("push_to_hub", "hub_model_id")  # a finished run asked to push is pushed, not trained again
NOT_THE_RUN = ("resume_from_checkpoint", "overwrite_output_dir", "logging_steps", "report_to", "run_name", "verbose",
               "checkpointing_steps", "save_total_limit", "dataloader_num_workers", "preprocessing_num_workers",
               "ddp_timeout", "debug")


def published_args(args, paths=PATH_OPTIONS):
    """best/training_args.json from the whole record (Checkpointer.training_args): each local path (the options
    `paths`: resume_checks.path_options) by its last part (a Hub id as it is), as the model card names them
    (modelcard.named), and no working folder: best/ is what --push_to_hub uploads, and full paths name users,
    projects and clients. A data file is named by its path below the folder its option's files share (a pattern's
    shards keep their distinct names)."""
    options = dict(args["options"])
    for key in paths:
        if isinstance(options.get(key), str):
            options[key] = modelcard.named(options[key])
    if isinstance(options.get("extra_eval_files"), str):
        parts = [p.strip().partition("=") for p in options["extra_eval_files"].split(",") if p.strip()]
        options["extra_eval_files"] = ",".join(f"{name}={modelcard.named(path)}" if eq else modelcard.named(name)
                                               for name, eq, path in parts)
    files = {}
    for flag, entries in (args.get("data_files") or {}).items():
        if "error" in entries:  # (its message names the path)
            files[flag] = {"error": "not readable when best/ was written"}
            continue
        paths = list(entries)
        top = os.path.commonpath(paths) if len(paths) > 1 else os.path.dirname(paths[0]) if paths else ""
        files[flag] = {os.path.relpath(f, top or os.curdir): v for f, v in entries.items()}
    published = {"options": options, "data_files": files}
    return {k: published.get(k, v) for k, v in args.items() if k != "cwd"}


def finished_options(cfg):
    """The options a finished run is recorded with, as JSON reads them back (those that are not the run aside)."""
    options = {k: v for k, v in cfg.to_dict().items() if k not in NOT_THE_RUN}
    return json.loads(json.dumps(options, default=str))


_INT_OF_SIZE = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def bit_sum(tensor):
    """The sum of a tensor's raw bits read as integers (int64, wrapping): equal tensors give equal
    sums whatever the order of the addition; a changed element changes it (all but surely)."""
    t = tensor.detach()
    if t.dtype == torch.bool:
        t = t.to(torch.uint8)
    return t.contiguous().view(_INT_OF_SIZE[t.element_size()]).sum(dtype=torch.int64)


def recover_all(root):
    """`recover` every checkpoint under `root`: put back moved-aside ones, drop half-written ones."""
    if not os.path.isdir(root):
        return
    for name in os.listdir(root):
        if name.startswith(".tmp-"):
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)
        elif name.endswith(".old") and _STEP.match(name[: -len(".old")]):
            recover(os.path.join(root, name[: -len(".old")]))


def remove_ours(folder, ours, inside=lambda name: False):
    """An earlier run's entries in `folder` removed, those `ours(name, path)` claims (a folder goes with all it holds),
    the same way in its subfolders that `inside(name)` names, then each folder that emptied; the paths of the rest
    (which stays: an entry that is a symbolic link always, never followed) are returned. Only what a run of loop
    wrote: checkpoints/ and loop/ are common names (clear_earlier_run)."""
    if not os.path.isdir(folder):
        return []
    kept = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if os.path.islink(path):
            kept.append(path)
        elif os.path.isdir(path) and inside(name):
            kept += remove_ours(path, ours, inside)
        elif ours(name, path):
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.remove(path)
        else:
            kept.append(path)
    if not kept:
        try:
            os.rmdir(folder)
        except OSError:
            pass
    return kept


def remove_earlier_checkpoints(root):
    """An earlier run's checkpoints in `root` (checkpoints/) removed: the folders a run of loop puts there (`step_N`,
    its `.old` while replaced, `.tmp-*`, `.abandoned-*`), then `root` if that emptied it (remove_ours). Anything else
    stays: its paths are returned."""
    def ours(name, path):
        return os.path.isdir(path) and bool(_STEP.match(name) or _STEP.match(name.removesuffix(".old"))
                                            or name.startswith((".tmp-", ABANDONED)))

    return remove_ours(root, ours)


def is_complete(path):
    return os.path.isfile(os.path.join(path, STATE_FILE))


def check_linked_folders(best_dir, checkpoints_dir):
    """best/ and checkpoints/ as symbolic links (to a scratch disk): checkpoints/ is written through its link, so a
    link whose target is gone (a purged scratch folder) failed at the first save with a traceback; best/ is replaced
    as a whole (a new folder swapped in), which replaced the link and left its target holding the old model without a
    word, or, the target gone, lost the trained model at the end. Both refused in one line at the start."""
    if os.path.islink(best_dir):
        raise UserError(f"'{best_dir}' is a symbolic link (to '{os.readlink(best_dir)}'); each new best model replaces "
                        f"best/ as a whole folder, so the link's target would keep the old one: remove the link (to "
                        f"keep the run on another disk, make --output_dir itself the link).")
    if os.path.islink(checkpoints_dir) and not os.path.isdir(checkpoints_dir):
        raise UserError(f"'{checkpoints_dir}' is a symbolic link to '{os.readlink(checkpoints_dir)}', which does not "
                        f"exist (or is not a folder); create that folder, or remove the link.")


def check_not_inside_a_run(output_dir):
    """Refuse an --output_dir that is, or lies inside, another run's best/, checkpoints/ or one of its checkpoints:
    training there rewrote that run's files (best/'s training_args.json, no longer matching its checksums: the run's
    resume then refused best/ as damaged), and that run's next save would replace the folder with this run in it."""
    for path in self_and_parents(output_dir):
        if os.path.isfile(os.path.join(path, STATE_FILE)):
            what = "a checkpoint of another run"
        elif os.path.isfile(os.path.join(path, BEST_CHECKSUMS)) and os.path.isfile(os.path.join(path, "best_metrics.json")):
            what = "another run's best/ model"
        elif os.path.basename(path) == "checkpoints" and list_checkpoints(path):
            what = "another run's checkpoints/ folder"
        else:
            continue
        where = "is" if path == os.path.realpath(output_dir) else f"lies inside '{path}',"
        raise UserError(f"--output_dir '{output_dir}' {where} {what}; a run there would overwrite that run's files "
                        f"(and be replaced by its next save): choose a folder outside it.")


def self_and_parents(folder):
    """`folder` (resolved: links followed) and each folder it lies in, up to the root."""
    path = os.path.realpath(folder)
    while True:
        yield path
        if os.path.dirname(path) == path:
            return
        path = os.path.dirname(path)


def list_checkpoints(root):
    """Complete checkpoints under `root`, oldest first, as (step, path)."""
    if not os.path.isdir(root):
        return []
    found = []
    for name in os.listdir(root):
        m = _STEP.match(name)
        path = os.path.join(root, name)
        if m and os.path.isdir(path) and is_complete(path):
            found.append((int(m.group(1)), path))
    return sorted(found)


def verify_checkpoint(path):
    """None if `path` is a complete checkpoint whose files match their checksums, else why not."""
    try:
        info = read_state(path)
    except (OSError, ValueError) as e:
        return f"{STATE_FILE} is unreadable ({short(e)})"
    if not isinstance(info, dict):
        return f"{STATE_FILE} is not a checkpoint record"
    return verify_files(path, info.get("files"))


def resolve_resume(arg, output_dir, say=None, auto=False):
    """Turn --resume_from_checkpoint (a path or 'latest') into a complete, verified checkpoint folder.

    `latest` skips checkpoints that fail verification (saying so through `say`) and takes the
    newest one that passes; an explicit path that fails is an error. `auto`: `latest` asked for by
    --resume_from_checkpoint auto, named so in the errors, whose advice then fits auto.
    """
    root = os.path.join(output_dir, "checkpoints")
    if arg == "latest":
        flag = "auto" if auto else "latest"
        found = list_checkpoints(root)
        if not found:
            raise UserError(f"--resume_from_checkpoint {flag} found no complete checkpoint in '{root}'; start without it or pass a path.")
        for _, path in reversed(found):
            problem = verify_checkpoint(path)
            if problem is None:
                return path
            if say:
                say(f"skipping checkpoint '{path}': {problem}")
        fix = ("add --overwrite_output_dir to start the run over (auto then replaces it when no checkpoint "
               "verifies), or choose another --output_dir" if auto else
               "start a new run with --overwrite_output_dir (without --resume_from_checkpoint), or in another "
               "--output_dir")
        raise UserError(f"--resume_from_checkpoint {flag}: none of the {len(found)} checkpoints in '{root}' "
                        f"verifies (their files changed after they were written); {fix}.")
    if not os.path.isdir(arg):
        raise UserError(f"--resume_from_checkpoint '{arg}' does not exist; pass a checkpoint folder or 'latest'.")
    if not is_complete(arg):
        raise UserError(not_a_checkpoint(arg, output_dir))
    problem = verify_checkpoint(arg)
    if problem:
        raise UserError(f"--resume_from_checkpoint '{arg}' is damaged ({problem}); use another checkpoint or 'latest'.")
    return arg


_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json",
            "adapter_model.safetensors")


def not_a_checkpoint(arg, output_dir):
    """Why the folder `arg` (no loop_state.json) cannot be resumed, and what to pass instead: a model
    folder (best/ or any save_pretrained folder: fine-tune from it), a run folder or its checkpoints/
    folder (`latest`, or the newest checkpoint in it, named), a checkpoint whose save was cut short, or
    none of these."""
    flag = f"--resume_from_checkpoint '{arg}'"
    has = lambda name: os.path.exists(os.path.join(arg, name))  # noqa: E731
    name = os.path.basename(os.path.abspath(arg))
    if has("config.json") and any(has(w) for w in _WEIGHTS):
        best = has("best_metrics.json")
        found = list_checkpoints(os.path.join(os.path.dirname(os.path.abspath(arg)), "checkpoints")) if best else []
        also = f", or resume its run from its newest checkpoint, '{found[-1][1]}'" if found else ""
        what = "a run's best/ model" if best else "a model folder"
        return (f"{flag} is {what} (config.json and weights, no {STATE_FILE}), not a resumable checkpoint; to "
                f"fine-tune from it pass --model_name_or_path '{arg}' without --resume_from_checkpoint{also}.")
    try:
        steps = [n for n in os.listdir(arg) if _STEP.match(n) or n.startswith(".tmp-step_")]
    except OSError:  # unreadable: the tests below say what they can
        steps = []
    if name == "checkpoints" or steps:
        run, root, what = os.path.dirname(os.path.abspath(arg)), arg, "the checkpoints/ folder of a run"
    elif has("checkpoints") or has("best") or has("metrics.jsonl"):
        run, root, what = os.path.abspath(arg), os.path.join(arg, "checkpoints"), "a run folder (an --output_dir)"
    else:
        run = None
    if run is not None:
        found = list_checkpoints(root)
        if not found:
            best = os.path.join(run, "best")
            also = (f"; to fine-tune from its best model pass --model_name_or_path '{best}'"
                    if os.path.isdir(best) else "")
            return (f"{flag} is {what}, not a checkpoint, and holds no complete checkpoint; start without "
                    f"--resume_from_checkpoint{also}.")
        if os.path.realpath(run) == os.path.realpath(output_dir):
            latest = "--resume_from_checkpoint latest"
        else:
            latest = f"--resume_from_checkpoint latest with --output_dir '{run}' to continue that run there"
        return (f"{flag} is {what}, not a checkpoint; pass {latest}, or its newest checkpoint, "
                f"'{found[-1][1]}'.")
    if _STEP.match(name) or name.startswith(".tmp-step_") or has("optimizer.bin") or has("random_states_0.pkl"):
        return (f"{flag} is incomplete (no {STATE_FILE}, the save was interrupted); use an earlier checkpoint "
                f"or 'latest'.")
    return (f"{flag} is not a checkpoint (no {STATE_FILE}); pass a run's checkpoints/step_N folder, or 'latest' "
            f"with that run's --output_dir.")


def read_state(path):
    with open(os.path.join(path, STATE_FILE), encoding="utf-8") as f:
        return json.load(f)


def check_writable(accelerator, folder):
    """--eval_only's early check of --output_dir (a training run's is its lock): a file can be written
    there, before minutes or hours of scoring. A real write, not config's os.access: root passes that on
    a read-only mount or /sys. Leaves no trace: folders made for the probe go again. Then the folder's lock,
    returned (main process; else None) and released by Checkpointer.finish or at exit: a training run started
    while the scoring runs is refused, else its new best/ would sit beside scores of the model it replaced."""
    error, lock = None, None
    if accelerator.is_main_process:
        for path in self_and_parents(folder):  # the folder, or one it lies in (RUN/best: swapped out at its next save)
            reader = RunLock(path) if os.path.isfile(os.path.join(path, LOCK_FILE)) else None
            holder = reader.read() if reader is not None else None
            if holder and not reader.is_stale(holder):  # its next best/ would leave our scores describing another model
                inside = "" if path == os.path.realpath(folder) else f", inside '{path}',"
                error = (f"--output_dir '{folder}'{inside} is in use by a training run (process {holder.get('pid')} on "
                         f"host '{holder.get('host')}'); write --eval_only's results into another --output_dir.")
                stop_together(accelerator, error)
        made, path = [], os.path.abspath(folder)
        while not os.path.exists(path):
            made.append(path)
            path = os.path.dirname(path)
        probe = os.path.join(folder, f".loop-probe-{os.getpid()}")
        try:
            os.makedirs(folder, exist_ok=True)
            with open(probe, "w"):
                pass
            os.remove(probe)
        except OSError as e:
            error = (f"cannot write into --output_dir '{folder}' ({e.strerror or e}); fix its permissions or choose "
                     f"another --output_dir.")
        for path in made:  # deepest first
            try:
                os.rmdir(path)
            except OSError:
                pass
        if error is None:
            try:
                lock = RunLock(folder)
                lock.acquire()
            except UserError as e:
                error, lock = str(e), None
    stop_together(accelerator, error)
    return lock


def callback_keys(callbacks):
    """[(key, callback)]: each callback's key in a checkpoint, its class name (EarlyStopping; a second of a
    class: EarlyStopping#2), so a resume with the callbacks in another order, or one more or fewer, gives each
    its own state (by position, early stopping's went to another callback, or nowhere)."""
    seen, out = {}, []
    for cb in callbacks:
        name = type(cb).__name__
        seen[name] = seen.get(name, 0) + 1
        out.append((name if seen[name] == 1 else f"{name}#{seen[name]}", cb))
    return out


def labels_in_config(path, config):
    """The saved config.json names the labels always: transformers 5 leaves id2label and label2id out where
    they are its defaults (two labels called LABEL_0 and LABEL_1), and a server or script that reads them from
    config.json would find none."""
    file = os.path.join(path, "config.json")
    with open(file, encoding="utf-8") as f:
        saved = json.load(f)
    if "id2label" in saved and "label2id" in saved:
        return
    saved["id2label"] = {str(i): name for i, name in config.id2label.items()}
    saved["label2id"] = {name: int(i) for name, i in config.label2id.items()}
    with open(file, "w", encoding="utf-8") as f:
        f.write(json.dumps(saved, indent=2, sort_keys=True) + "\n")


def best_mismatch(folder, metric, value, epoch, step):
    """None when the best/ model folder `folder` holds the evaluation that scored `value` (eval_<metric>)
    at `step` (or, for a checkpoint older than the step record, at `epoch`); else why not, as the end of
    a sentence naming the folder."""
    if not os.path.isdir(folder):
        return "does not exist"
    record = read_best_record(folder)
    if record is None:
        return "has no readable best_metrics.json"
    got = record.get(f"eval_{metric}")
    where = ("step", step) if step is not None else ("epoch", epoch)
    same_value = isinstance(got, (int, float)) and isinstance(value, (int, float)) and math.isclose(
        got, value, rel_tol=1e-9, abs_tol=1e-12)
    if record.get(where[0]) == where[1] and same_value:
        return None
    shown = f"{got:.4g}" if isinstance(got, (int, float)) else got
    return (f"holds another evaluation's model (eval_{metric}={shown} at epoch {record.get('epoch')}, "
            f"step {record.get('step')})")


def source_best_dir(path):
    """The best/ of the run a checkpoint folder belongs to: beside its checkpoints/ folder (or, for a
    checkpoint copied elsewhere, beside the checkpoint itself)."""
    parent = os.path.dirname(os.path.abspath(path))
    run = os.path.dirname(parent) if os.path.basename(parent) == "checkpoints" else parent
    return os.path.join(run, "best")


_UNREMOVED = set()  # checkpoints rotate() could not remove, warned about once


def rotate(root, keep, protect=()):
    """Delete all but the newest `keep` complete checkpoints, never those in `protect`."""
    if not keep:
        return
    protect = {os.path.realpath(p) for p in protect if p}  # (a link and its target are one folder)
    for name in os.listdir(root) if os.path.isdir(root) else ():  # what an earlier rotation could not remove
        if name.startswith(".tmp-rm-"):                              # (busy NFS files): tried again
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)
    found = list_checkpoints(root)
    for _, path in found[:-keep]:
        if os.path.realpath(path) not in protect:
            left = _remove(path)
            if os.path.exists(left) and path not in _UNREMOVED:  # a read-only mount, busy NFS files: said once
                _UNREMOVED.add(path)
                aside = "" if left == path else f" (moved aside to '{os.path.basename(left)}', tried again later)"
                warnings.warn(f"--save_total_limit {keep}: could not remove the older checkpoint '{path}'{aside} "
                              f"(check its permissions); it stays, and the disk fills with more.", stacklevel=2)


def _remove(path):
    """Remove checkpoint `path` through a rename to .tmp-rm-<name>: a kill midway leaves a folder the next start
    removes (recover_all), not a step_N without its weights that no rotation would list again. Returns the path
    that was removed (or could not be)."""
    doomed = path
    if not os.path.islink(path):  # a link is not ours to remove (rmtree refuses it: warned)
        aside = os.path.join(os.path.dirname(path), ".tmp-rm-" + os.path.basename(path))
        try:
            os.rename(path, aside)
            doomed = aside
        except OSError:  # a read-only mount: removed (or not) where it is
            pass
    shutil.rmtree(doomed, ignore_errors=True)
    return doomed
