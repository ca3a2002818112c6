"""What the Checkpointer (checkpoint.py) and the checks of a run's start (run_start.py) share, needing no
Checkpointer: a checkpoint's file names and format, the `checkpoints/step_N` folders (listed, verified against the
checksums they record, repaired after a crash, rotated, resolved from --resume_from_checkpoint), best/'s record and
checksums, and the helpers that load a checkpoint's files into a model (accelerate's files, the weights torch.compile
renamed, frozen parameters)."""

import json
import math
import os
import re
import shutil
import socket
import warnings

import torch

from . import modelcard, models
from .errors import UserError, listed, short, stop_together
from .lock import LOCK_FILE, RunLock
from .resume_checks import PATH_OPTIONS
from .safe_load import metadata_problems, trust_forced
from .storage import read_best_record, recover, sha256_file

STATE_FILE = "loop_state.json"
# loop_state.json's format, written as its "format" key. Raise it when a version of loop writes what an older one
# would misread; a checkpoint of a higher format than this version knows is refused (upgrade to resume it).
# 1: 2026-12-03, the first one numbered: absent in older checkpoints, whose versions read as the checks (run_start.py)
# say (no finish record before 2026-12-03 08:29, first-N-rows subsets before 2026-11-29 09:22, and so on).
STATE_FORMAT = 1
BEST_CHECKSUMS = "checksums.json"
TRAINING_ARGS = "training_args.json"  # in best/: the run's options, processes, versions, data files' sha256
FINISHED_FILE = ".loop-finished.json"  # a run that ended normally: its step and options (a resume then has no work)
ABANDONED = ".abandoned-"  # prefix of checkpoints/ folders moved aside (Checkpointer.abandon_newer)
_STEP = re.compile(r"^step_(\d+)$")
REGISTERED = "custom_checkpoint_{}.pkl"  # Checkpointer.register's objects, by position (accelerate's names)
_REGISTERED = re.compile(r"^custom_checkpoint_\d+\.pkl$")


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
    # (a compiled run's record names the weights of the whole model it compiled _orig_mod.<name>; a variant that
    # compiled a part keeps that part's _orig_mod. inside the names, in the record and in the model alike)
    model, frozen = models.bare_model(loop.accelerator, loop.model), {n.removeprefix(COMPILED) for n in frozen}
    now = set(frozen_names(model))
    if now == frozen:
        return
    unknown = sorted(frozen - {n for n, _ in model.named_parameters()})
    if unknown:  # (its weights would fail to load as missing keys, blaming that one checkpoint)
        raise UserError(f"the checkpoint records {len(unknown)} parameter(s) this model does not have "
                        f"({listed(unknown, 2)}): it was made with another layout of the model (a loop before "
                        f"2026-12-06 also put LoRA adapters on a multimodal model's vision tower); resume it with the "
                        f"loop that made it, or start a new run without --resume_from_checkpoint.")
    for name, p in model.named_parameters():
        p.requires_grad_(name not in frozen)
    thawed, froze = len(now - frozen), len(frozen - now)
    loop.print(f"trainable parameters as at the checkpoint: {thawed} unfrozen" + (f", {froze} frozen" if froze else "")
               + " (a hook had changed them during the run)")


# options that change neither what a run trains nor what it evaluates: a re-run differing in them only (logging
# less often, no TensorBoard) finds the run finished all the same
# (--push_to_hub is the run's: a re-run asking for a push the finished run did not make must not end quietly)
PUSH_OPTIONS = ("push_to_hub", "hub_model_id")  # a finished run asked to push is pushed, not trained again
NOT_THE_RUN = ("resume_from_checkpoint", "overwrite_output_dir", "logging_steps", "logging_first_step", "report_to",
               "run_name", "verbose", "checkpointing_steps", "save_total_limit", "dataloader_num_workers",
               "preprocessing_num_workers", "ddp_timeout", "debug")


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
            remove_entry(path)
        else:
            kept.append(path)
    if not kept:
        try:
            os.rmdir(folder)
        except OSError:
            pass
    return kept


def remove_entry(path):
    """An earlier run's file or folder removed, or one line saying why not: left there silently (another user's
    checkpoint in a shared folder, a read-only mount), a checkpoint of the replaced run was what `latest` resumed
    next (helper env F3)."""
    try:
        shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) else os.remove(path)
    except OSError as e:  # (a file gone meanwhile too: then the rest goes below)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        if os.path.lexists(path):
            raise UserError(f"could not remove the earlier run's '{path}' ({e.strerror or short(e)}); remove it "
                            f"yourself (as its owner, where it is writable), or choose another --output_dir.") from e


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
            where = f"'{root}'" if os.path.isdir(root) else f"'{output_dir}' (it has no checkpoints/ folder)"
            # a run killed before its first checkpoint: "start without it" was then refused, the folder holding a run
            earlier = any(os.path.exists(os.path.join(output_dir, n)) for n in ("best", "checkpoints", "metrics.jsonl"))
            # (auto starts over a run with no best/ only: one with best/ it refuses, or finds finished: rev2 F2)
            fix = ("start the run over with --overwrite_output_dir (without --resume_from_checkpoint)" + (
                   "" if os.path.exists(os.path.join(output_dir, "best")) else
                   ", or pass --resume_from_checkpoint auto, which starts it over where there is no checkpoint")
                   if earlier and not auto else "start without it or pass a path")
            raise UserError(f"--resume_from_checkpoint {flag} found no complete checkpoint in {where}; {fix}.")
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
        step = os.path.join(root, f"step_{int(arg)}") if arg.isascii() and arg.isdigit() else None
        if step and os.path.isdir(step):  # --resume_from_checkpoint 40: a step number, not its folder
            raise UserError(f"--resume_from_checkpoint '{arg}' is not a folder; pass the checkpoint of step {int(arg)} "
                            f"as its folder, '{step}' (or 'latest' for the newest).")
        if arg.lower() in ("true", "yes", "on", "1"):  # Trainer's train(resume_from_checkpoint=True): the newest one
            raise UserError(f"--resume_from_checkpoint '{arg}' is not a checkpoint folder; for the newest checkpoint "
                            f"in --output_dir pass 'latest' (Trainer's resume_from_checkpoint=True), or 'auto' to "
                            f"start afresh when there is none.")
        if arg.lower() in ("false", "no", "off", "0"):  # Trainer's resume_from_checkpoint=False: no resume
            raise UserError(f"--resume_from_checkpoint '{arg}' is not a checkpoint folder; leave "
                            f"--resume_from_checkpoint out to start without resuming.")
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
    """[(key, callback)]: each callback's key in a checkpoint, its `state_key` attribute if it has one, else its
    class name (EarlyStopping; a second of a class: EarlyStopping#2), so a resume with the callbacks in another
    order, or one more or fewer, gives each its own state (by position, early stopping's went to another callback,
    or nowhere); two of one class swapped on resume need a state_key each."""
    seen, keyed, out = {}, set(), []
    for cb in callbacks:
        key = getattr(cb, "state_key", None) or None  # ('' as None: the class name)
        keyed_state = key is not None and hasattr(cb, "state_dict")
        others = {type(o).__name__ for o in callbacks if o is not cb and hasattr(o, "state_dict")}
        if keyed_state and (not isinstance(key, str) or not key.strip() or key.isdigit() or "#" in key
                            or key in others or key in keyed):
            # a number is an old checkpoint's position, '#' and another's class name another callback's key: each
            # would hand one callback's state to another on resume, silently
            raise UserError(f"{type(cb).__name__}.state_key {key!r} cannot name its state in checkpoints: give each "
                            f"callback a text of its own, not a number, without '#', and not the class name of "
                            f"another callback given.")
        if keyed_state:
            keyed.add(key)
        name = key if isinstance(key, str) else type(cb).__name__
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
