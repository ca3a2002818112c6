"""The checks of a run's start, before any work (part of the Checkpointer, checkpoint.py): the --output_dir lock
and whether every process sees it, an earlier or a finished run in that folder, the checkpoint to resume picked and
verified, and whether it fits this run (its options, data, model config, inputs, the room on disk). The main
process checks; every rank stops with the same line, so none waits in a collective."""

import json
import os
import socket
import time

from . import distributed
from .checkpoint_folders import (NOT_THE_RUN, PUSH_OPTIONS, STATE_FILE, STATE_FORMAT, check_linked_folders,
                                 check_not_inside_a_run, finished_options, list_checkpoints, read_checksums,
                                 read_state, recover_all, remove_earlier_checkpoints, remove_entry, resolve_resume,
                                 save_sizes, verify_files)
from .errors import RunFinished, UserError, listed, on_process, short, stop_together
from .lock import LOCK_STALE_S, RunLock, lock_token
from .logs import eval_only_files
from .resume_checks import (GONE, config_differences, data_differences, data_signature, jsonable, model_config_record,
                            option_defaults, path_options, same_files, what_differs)
from .splits import EVAL, TRAIN
from .storage import free_space, recover, size_text, tree_size, write_json
from .version import __version__

# how long (s) a process that does not see the lock in --output_dir looks again before the run is refused as
# writing to a folder the nodes do not share (NFS shows another node's new file after up to acdirmax, 60 s by
# default; a mount with a longer actimeo needs more): LOOP_SHARED_VIEW_WAIT_S, read when it is needed
SHARED_VIEW_WAIT_S = 65


class RunStart:
    """Checkpointer's checks before any work (see the module's docstring); Checkpointer is its only user."""

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
            # finished once the last checkpoint's check passed (check_finished_unrecorded)
            self.finished_pending = finished
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
        if best_step is None and "best_step" not in state and best is not None:
            # a checkpoint older than best_step's record (2026-11-29) that no later evaluation beat: best/ is its best
            # when it has its value at its epoch (else that run's finished model was trained again, all of its tail)
            return record.get(key) == best and record.get("epoch") == state.get("best_epoch")
        return best_step is not None and record.get("step") == best_step

    def finished_record_here(self):
        """What .loop-finished.json in --output_dir says of the run that finished there (write_finished wrote it): a
        dict, or None when there is none or it cannot be read (a copy cut short, a file edited by hand)."""
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
        fmt = saved.get("format", 0)
        if not isinstance(fmt, int) or isinstance(fmt, bool) or fmt < 0:  # edited or damaged: no loop writes it
            raise UserError(f"checkpoint '{path}' has a damaged {STATE_FILE} (its format {json.dumps(fmt)} is no "
                            f"checkpoint format, a whole number from 0); resume from another checkpoint, or start a "
                            f"new run in another --output_dir.")
        if fmt > STATE_FORMAT:
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
            # an option this loop does not have: no flag gives it back (compat F2: a newer loop's checkpoint, whose
            # version and format may be this one's, was told to "resume with the same settings")
            gone = [d.endswith(f" → {GONE}") for d in diff]
            if all(gone):
                raise UserError(f"checkpoint '{path}' records options this loop does not have ({', '.join(diff)}): "
                                f"it was made by a newer loop (upgrade loop to resume it), by an older one that had "
                                f"them, or with a variant's config; resume it with that loop, or start a new run in "
                                f"another --output_dir.")
            raise UserError(f"checkpoint '{path}' was made with a different config ({', '.join(diff)}); resume with "
                            f"the same settings (README, Reliability, lists the options that may change) or start "
                            f"a new run in another --output_dir" + (
                                " (to train on from this run, give its best/ as --model_name_or_path: the "
                                "learning rate schedule was built for the run's length)" if longer else "") + (
                                f"; an option {GONE} is one this loop does not have: a newer loop's (upgrade loop "
                                f"to resume it), an older one's that was dropped, or a variant config's" if any(gone)
                                else "") + ".")
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
        only; the signature is computed once anyway for the first checkpoint (0.2 s for 7 million tokens). With
        --eval_only the scored splits (each process scores its share: other copies would mix two sets' scores)."""
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
            raise UserError(f"{on_process(index, host)}{more} read other data than {on_process(0, first_host)} "
                            f"({what_differs(first, views[index][0], keys, index)}): a copy of the files of its own "
                            f"that differs, or a relative path from another working folder; give every node the same "
                            f"files.",
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
        error = None
        if self.accelerator.is_main_process:
            try:
                if os.path.isfile(self.finished_path):  # this run trains on: an earlier finish no longer describes it
                    remove_entry(self.finished_path)
                if self._clear_earlier:
                    self._clear_earlier_files()
            except UserError as e:  # (a file it could not remove: every rank stops with its line)
                error = str(e)
        stop_together(self.accelerator, error)

    def _clear_earlier_files(self):
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
                remove_entry(name)
