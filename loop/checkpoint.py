"""Checkpoint folders on disk: atomic replace, finding the latest, rotation.

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

from .errors import UserError

STATE_FILE = "loop_state.json"
_STEP = re.compile(r"^step_(\d+)$")


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
