"""Checkpoints: everything that writes or reads a run's state in --output_dir.

Owns: the output_dir checks (refuse to start over an earlier run, repair saves cut short by a
crash, clear an earlier run once every check passed), best/ (a `save_pretrained` model folder
that `pipeline()` loads), resumable checkpoints (`accelerator.save_state` plus our
`loop_state.json`), resume (`load_state`, the compatibility check, cutting metrics.jsonl back),
rotation and `--push_to_hub`. The `Checkpointer` is owned by the loop and reads the loop's parts
(accelerator, model, tokenizer, state, callbacks); the folder functions below it need nothing
but paths. Does not own: when to save (the loop decides) nor stop signals (`preemption.py`).

Every folder we publish (`best/`, `checkpoints/step_N/`) is first written to a hidden
temporary sibling and renamed into place when complete, so a crash mid-save leaves the
previous one intact. A checkpoint is complete when it holds `loop_state.json`, which is
written last; `latest` ignores anything else (a `.tmp-step_N` or a `step_N` without it).
Files are fsynced before the rename, so "complete" also holds after a power cut.
"""

import json
import os
import re
import shutil
import time

import torch

from .errors import UserError, short

STATE_FILE = "loop_state.json"
_STEP = re.compile(r"^step_(\d+)$")
# Checkpoints made with a different value of these cannot continue the same run.
RESUME_KEYS = ("model_name_or_path", "train_file", "dataset_name", "dataset_config_name", "text_column",
               "text_pair_column", "label_column", "label_names", "max_length", "max_train_samples",
               "per_device_train_batch_size", "gradient_accumulation_steps", "group_by_length", "seed",
               "num_train_epochs", "config_overrides")


class Checkpointer:
    """The loop's saving and resuming. `loop` gives the parts; nothing here decides when to save."""

    def __init__(self, loop):
        self.loop = loop
        self.cfg = loop.cfg
        self.best_dir = os.path.join(self.cfg.output_dir, "best")
        self.checkpoints_dir = os.path.join(self.cfg.output_dir, "checkpoints")
        self.metrics_path = os.path.join(self.cfg.output_dir, "metrics.jsonl")
        self.resume_path = None  # the checkpoint --resume_from_checkpoint resolved to
        self.saved_at = None  # the loop position of the last checkpoint written or loaded
        self._clear_earlier = False

    @property
    def accelerator(self):
        return self.loop.accelerator

    # ------------------------------------------------------------ before any work
    def check_output_dir(self):
        """Refuse to start a new run over an earlier one; repair saves cut short by a crash."""
        cfg, acc = self.cfg, self.accelerator
        if acc.is_main_process:
            recover(self.best_dir)
            recover_all(self.checkpoints_dir)
        acc.wait_for_everyone()
        earlier = os.path.isdir(self.best_dir) or os.path.isfile(self.metrics_path) or list_checkpoints(self.checkpoints_dir)
        if earlier and not (cfg.overwrite_output_dir or cfg.resume_from_checkpoint):
            raise UserError(f"--output_dir {cfg.output_dir} already holds a run (best/, checkpoints/ or metrics.jsonl); "
                            f"pass --overwrite_output_dir to replace it, --resume_from_checkpoint latest to continue it, "
                            f"or choose another --output_dir.")
        # A new run over an earlier one: its log and checkpoints go, but only once every check passed
        # (clear_earlier_run, at the end of setup), so a failed start leaves the output_dir untouched.
        self._clear_earlier = bool(earlier) and not cfg.resume_from_checkpoint
        if cfg.resume_from_checkpoint:
            self.resume_path = resolve_resume(cfg.resume_from_checkpoint, cfg.output_dir)
            self.check_resume_compatible(self.resume_path)

    def check_resume_compatible(self, path):
        saved = read_state(path)
        old_cfg = saved.get("config", {})
        diff = [k for k in RESUME_KEYS if k in old_cfg and old_cfg[k] != getattr(self.cfg, k)]
        now = self.accelerator.num_processes
        if saved.get("num_processes") not in (None, now):
            diff.append(f"number of processes ({saved['num_processes']} then, {now} now)")
        if diff:
            raise UserError(f"checkpoint {path} was made with a different config ({', '.join(diff)}); resume with "
                            f"the same settings or start a new run in another --output_dir.")

    def clear_earlier_run(self):
        """Remove an earlier run's log and checkpoints (they would mix with ours); best/ stays until replaced."""
        if self._clear_earlier and self.accelerator.is_main_process:
            shutil.rmtree(self.checkpoints_dir, ignore_errors=True)
            if os.path.isfile(self.metrics_path):
                os.remove(self.metrics_path)
        self.accelerator.wait_for_everyone()

    # ------------------------------------------------------------ best/
    def save_best(self, metrics):
        """Write best/ (model folder + best_metrics.json) atomically; every rank takes part."""
        loop, acc = self.loop, self.accelerator
        path = self.best_dir
        acc.wait_for_everyone()
        state_dict = acc.get_state_dict(loop.model)  # gathers FSDP/DeepSpeed shards; call on all ranks
        error = None
        if acc.is_main_process:
            tmp = tmp_sibling(path)
            try:
                shutil.rmtree(tmp, ignore_errors=True)
                self.write_model(tmp, state_dict)
                with open(os.path.join(tmp, "best_metrics.json"), "w") as f:
                    json.dump({"epoch": loop.state.epoch + 1, "step": loop.state.global_step, **metrics}, f, indent=2)
                publish(tmp, path)
            except Exception as e:  # a full disk shows as OSError, SafetensorError or RuntimeError (torch.save)
                shutil.rmtree(tmp, ignore_errors=True)
                error = (f"could not write {path} ({short(e)}); free space or fix permissions in "
                         f"--output_dir (the previous best/ is intact).")
        if acc.num_processes > 1:  # every rank stops with the main one instead of waiting for it forever
            from accelerate.utils import broadcast_object_list

            error = broadcast_object_list([error])[0]
        if error:
            raise UserError(error)
        return path

    def write_model(self, path, state_dict):
        """A folder that `pipeline(...)` and `from_pretrained` load: safetensors, config, tokenizer.

        A LoRA model is saved with its adapter merged (a normal model folder), and the adapter
        alone in `adapter/` beside it. The tokenizer keeps the pad token and padding side the
        loop chose (models.prepare_padding) and the config the same pad id, so pipeline() pads
        a batch the way training did."""
        from . import models

        model = self.accelerator.unwrap_model(self.loop.model, keep_torch_compile=False)
        if models.is_peft(model):
            model.save_pretrained(os.path.join(path, "adapter"), state_dict=state_dict, safe_serialization=True)
            state_dict = models.merged_state_dict(model, state_dict)
            model = model.get_base_model()
        model.save_pretrained(path, state_dict=state_dict, safe_serialization=True)
        self.loop.tokenizer.save_pretrained(path)

    def best_metrics(self):
        path = os.path.join(self.best_dir, "best_metrics.json")
        if os.path.isfile(path):
            with open(path) as f:
                return json.load(f)
        return None

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
        state.callbacks = {i: cb.state_dict() for i, cb in enumerate(loop.callbacks) if hasattr(cb, "state_dict")}
        state.loss_since_log = loop.loss.state(acc)  # summed over ranks: a resumed run logs the same loss
        try:
            if acc.is_main_process:
                shutil.rmtree(tmp, ignore_errors=True)
                os.makedirs(tmp)
            acc.wait_for_everyone()
            acc.save_state(tmp, safe_serialization=True)  # model, optimizer, scaler, RNG of every rank, registered
            acc.wait_for_everyone()
            if acc.is_main_process:
                info = {"state": state.state_dict(), "config": self.cfg.to_dict(),
                        "num_processes": acc.num_processes, "saved_at": time.time()}
                self.mark_complete(tmp, info)
                publish(tmp, final)
                rotate(self.checkpoints_dir, self.cfg.save_total_limit, protect=[loop.resumed_from, final])
        except Exception as e:  # a full disk shows as OSError, SafetensorError or RuntimeError (torch.save)
            if acc.is_main_process:
                shutil.rmtree(tmp, ignore_errors=True)
            raise UserError(f"could not write checkpoint {final} ({short(e)}); free space or fix permissions "
                            f"in --output_dir (earlier checkpoints are intact).") from e
        acc.wait_for_everyone()
        self.saved_at = loop.position()
        return final

    def mark_complete(self, tmp, info):
        """Write loop_state.json, last: from now on the folder counts as a complete checkpoint."""
        write_json(os.path.join(tmp, STATE_FILE), info)

    def check_weights_finite(self):
        """Refuse to checkpoint NaN/inf weights (one host sync per checkpoint; ranks agree via reduce)."""
        acc = self.accelerator
        params = [p.detach() for p in self.loop.model.parameters()]
        ok = torch.stack([torch.isfinite(p).all() for p in params]).all().float() if params else torch.ones(())
        if acc.reduce(ok.to(acc.device), reduction="sum").item() < acc.num_processes:
            raise UserError(f"the model weights became NaN or infinite by step {self.loop.state.global_step}; lower "
                            f"--learning_rate or use bf16 instead of fp16 (no checkpoint was saved from these weights).")

    def resume(self):
        """Restore model, optimizer, scheduler, RNG, loop state and callbacks from `resume_path`."""
        loop, acc = self.loop, self.accelerator
        acc.load_state(self.resume_path)  # loads the registered TrainState too, on every rank
        for i, cb in enumerate(loop.callbacks):
            st = loop.state.callbacks.get(i, loop.state.callbacks.get(str(i)))
            if st is not None and hasattr(cb, "load_state_dict"):
                cb.load_state_dict(st)
        loop.loss.load(loop.state.loss_since_log, acc)
        self.saved_at = loop.position()
        if acc.is_main_process and os.path.isfile(self.metrics_path):
            # Drop log lines written after the checkpoint (the run may have been killed later).
            with open(self.metrics_path) as f:
                lines = f.readlines()[: loop.state.metrics_lines]
            with open(self.metrics_path, "w") as f:
                f.writelines(lines)
        acc.wait_for_everyone()
        return self.resume_path

    # ------------------------------------------------------------ the Hub
    def push_to_hub(self):
        """Upload best/ to --hub_model_id (main process only)."""
        from huggingface_hub import create_repo, upload_folder

        repo = self.cfg.hub_model_id or os.path.basename(os.path.abspath(self.cfg.output_dir))
        try:
            create_repo(repo, exist_ok=True)
            upload_folder(repo_id=repo, folder_path=self.best_dir)
        except Exception as e:
            raise UserError(f"could not push best/ to the Hub repository '{repo}' ({short(e)}); the local "
                            f"copy in {self.best_dir} is complete.") from e


# ---------------------------------------------------------------- folders on disk


def tmp_sibling(path):
    head, name = os.path.split(os.path.abspath(path))
    return os.path.join(head, f".tmp-{name}")


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, default=str)
        f.flush()
        os.fsync(f.fileno())


def _fsync_tree(folder):
    """Flush every file under `folder` (and the folder itself) to disk."""
    for dirpath, _, files in os.walk(folder):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(dirpath)


def _fsync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems cannot fsync a directory; the rename is still atomic
        pass
    finally:
        os.close(fd)


def publish(tmp, final):
    """Rename a finished `tmp` folder to `final`, replacing an existing one.

    A directory cannot be renamed over a non-empty one, so the old one is moved aside
    first; `recover` puts it back if we die between the two renames.
    """
    _fsync_tree(tmp)
    old = final + ".old"
    if os.path.exists(old):
        shutil.rmtree(old)
    if os.path.exists(final):
        os.rename(final, old)
    os.rename(tmp, final)
    _fsync_dir(os.path.dirname(os.path.abspath(final)))
    if os.path.exists(old):
        shutil.rmtree(old, ignore_errors=True)


def recover(final):
    """Undo a half-finished `publish`: if `final` is gone but `final.old` exists, restore it."""
    old = final + ".old"
    if not os.path.exists(final) and os.path.isdir(old):
        os.rename(old, final)
    tmp = tmp_sibling(final)
    if os.path.exists(tmp):
        shutil.rmtree(tmp, ignore_errors=True)


def recover_all(root):
    """`recover` every checkpoint under `root`: put back moved-aside ones, drop half-written ones."""
    if not os.path.isdir(root):
        return
    for name in os.listdir(root):
        if name.startswith(".tmp-"):
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)
        elif name.endswith(".old") and _STEP.match(name[: -len(".old")]):
            recover(os.path.join(root, name[: -len(".old")]))


def is_complete(path):
    return os.path.isfile(os.path.join(path, STATE_FILE))


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


def resolve_resume(arg, output_dir):
    """Turn --resume_from_checkpoint (a path or 'latest') into a complete checkpoint folder."""
    root = os.path.join(output_dir, "checkpoints")
    if arg == "latest":
        found = list_checkpoints(root)
        if not found:
            raise UserError(f"--resume_from_checkpoint latest found no complete checkpoint in {root}; start without it or pass a path.")
        return found[-1][1]
    if not os.path.isdir(arg):
        raise UserError(f"--resume_from_checkpoint {arg} does not exist; pass a checkpoint folder or 'latest'.")
    if not is_complete(arg):
        raise UserError(f"--resume_from_checkpoint {arg} is incomplete (no {STATE_FILE}, the save was interrupted); use an earlier checkpoint or 'latest'.")
    return arg


def read_state(path):
    with open(os.path.join(path, STATE_FILE), encoding="utf-8") as f:
        return json.load(f)


def rotate(root, keep, protect=()):
    """Delete all but the newest `keep` complete checkpoints, never those in `protect`."""
    if not keep:
        return
    protect = {os.path.abspath(p) for p in protect if p}
    found = list_checkpoints(root)
    for _, path in found[:-keep]:
        if os.path.abspath(path) not in protect:
            shutil.rmtree(path, ignore_errors=True)
