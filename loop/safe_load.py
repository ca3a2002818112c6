"""Loading a checkpoint's pickles without running their code: torch's weights-only unpickler, allowed the numpy
types a checkpoint's state holds (`load_plain`); what it would refuse, named before a save writes it
(`odd_arrays`) and before a resume loads it (`unsafe_globals`); TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD, the user's word
that a checkpoint is trusted (`trust_forced`); and each process's random state checked after a load (`rng_problem`).
"""

import os

import numpy as np
import torch

from .errors import short

def plain_globals():
    """What a checkpoint's pickles may build beyond tensors and Python's containers (load_plain): numpy arrays,
    their dtypes and scalars (a variant's or a callback's state, the RNG states). Data only: none of them runs
    code as it loads; numpy 2's array functions also under numpy 1's names (numpy.core), which a checkpoint saved
    before a numpy upgrade holds. (Not collections.deque: the unpickler builds one by extending it, which only lists
    may be.)"""
    import codecs

    core = getattr(np, "_core", None) or np.core  # (numpy 2 / 1)
    found = [core.multiarray._reconstruct, core.multiarray.scalar, np.ndarray, np.dtype, codecs.encode]
    if core.__name__ == "numpy._core" and torch.__version__ >= "2.5":  # (torch 2.5 takes a name beside a global)
        # a checkpoint saved under numpy 1 names them numpy.core: the same functions, refused by that name
        found += [(f, f"numpy.core.multiarray.{f.__name__}") for f in found[:2]]
    return found + sorted({type(np.dtype(c)) for c in "?bBhHiIlLqQefdgFDGSUMm"} - {np.dtype}, key=str)


def load_plain(path):
    """torch.load of a checkpoint file with torch's weights-only unpickler and plain_globals(); with
    TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD set (the user trusts the checkpoint), as torch would without it."""
    if trust_forced():
        return torch.load(path, map_location="cpu", weights_only=False)
    allowed = plain_globals()
    before = torch.serialization.get_safe_globals()
    torch.serialization.add_safe_globals(allowed)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    finally:
        torch.serialization.clear_safe_globals()
        torch.serialization.add_safe_globals(before)


def trust_forced():
    """TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD set (torch's spelling of true): the user trusts the checkpoints loaded."""
    return os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "0").lower() in ("1", "y", "yes", "true")


def odd_arrays(state, found=None):
    """numpy arrays and scalars in `state` (nested in dicts, lists, tuples, sets) whose dtype load_plain refuses:
    objects ('O') and records ('V'), whose dtype classes the pickle does not name (unsafe_globals misses them)."""
    found = [] if found is None else found
    if isinstance(state, (np.ndarray, np.generic)):
        if state.dtype.kind in "OV":
            found.append(f"a numpy {'object' if state.dtype.kind == 'O' else 'structured'} array")
    elif isinstance(state, dict):
        for v in state.values():
            odd_arrays(v, found)
    elif isinstance(state, (list, tuple, set, frozenset)):
        for v in state:
            odd_arrays(v, found)
    return list(dict.fromkeys(found))


def unsafe_globals(path):
    """The names in the pickle at `path` that load_plain would refuse (torch 2.5+: [] on older ones, which then
    find out at the load)."""
    find = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)
    if find is None:
        return []
    allowed = {g[1] if isinstance(g, tuple) else f"{g.__module__}.{g.__qualname__}" for g in plain_globals()}
    try:
        return [g for g in find(path) if g not in allowed]
    except Exception:  # noqa: BLE001 (not a torch zip file): the load says what it is
        return []


# What the .metadata pickle of torch.distributed.checkpoint (an FSDP checkpoint's sharded model and optimizer, which
# accelerate's load_state reads with a plain pickle.load) builds: its metadata classes, torch's sizes, dtypes and
# layouts, a path (pathlib._local: Python 3.13's name for pathlib's classes). Anything else in it could run code.
METADATA_CLASSES = {("torch.distributed.checkpoint.filesystem", "_StorageInfo"), ("torch", "Size"),
                    ("torch.serialization", "_get_layout"), ("pathlib", "PosixPath"), ("pathlib", "WindowsPath"),
                    ("pathlib._local", "PosixPath"), ("pathlib._local", "WindowsPath"), ("collections", "OrderedDict")}


def metadata_problems(paths):
    """{path: what it holds instead} for each torch.distributed.checkpoint .metadata pickle in `paths` that does not
    build a Metadata of only what METADATA_CLASSES and the metadata module's classes are. Read in one child process
    (check_metadata): even the allowed classes can be edited by a pickle (BUILD on the class itself), which must not
    happen to this one."""
    import json
    import subprocess
    import sys

    if not paths:
        return {}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    code = ("import json, sys; from loop.safe_load import check_metadata; "
            "print(json.dumps({p: check_metadata(p) for p in sys.argv[1:]}))")
    try:
        proc = subprocess.run([sys.executable, "-c", code, *paths], capture_output=True, text=True, env=env,
                              timeout=600)
        found = json.loads(proc.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError) as e:
        return {p: f"a pickle that could not be checked ({short(e)})" for p in paths}
    return {p: why for p, why in found.items() if why}


def check_metadata(path):
    """metadata_problems' reading, in the process that calls it: an unpickler that builds nothing but the allowed
    classes, and a Metadata at the end."""
    import pickle

    from torch.distributed.checkpoint import metadata

    class Refused(pickle.UnpicklingError):  # a class not allowed (other UnpicklingErrors: a damaged file)
        pass

    class Checked(pickle.Unpickler):
        def find_class(self, module, name):
            known = (module, name) in METADATA_CLASSES or (
                module == metadata.__name__ and isinstance(getattr(metadata, name, None), type)) or (
                module == "torch" and isinstance(getattr(torch, name, None), (torch.dtype, torch.layout,
                                                                             torch.memory_format)))
            if not known:
                raise Refused(f"{module}.{name}")
            return super().find_class(module, name)

    try:
        with open(path, "rb") as f:
            found = Checked(f).load()
    except Refused as e:
        return str(e)
    except Exception:  # noqa: BLE001 (damaged, or another format): the load says what it is
        return None
    return None if isinstance(found, metadata.Metadata) else f"a {type(found).__name__}, not a Metadata"


def rng_problem(path, rank):
    """None if this rank's RNG now holds the state saved in `path`, else why not.

    accelerate's load_state only logs (at INFO) a random state it could not load; we compare the
    Python and torch generators with the file, so a damaged file stops the resume.
    """
    import random

    from accelerate.utils.constants import RNG_STATE_NAME

    name = f"{RNG_STATE_NAME}_{rank}.pkl"
    try:
        states = load_plain(os.path.join(path, name))
        ok = (random.getstate() == states["random_state"]
              and torch.equal(torch.get_rng_state(), states["torch_manual_seed"]))
    except Exception as e:
        return f"'{name}': {short(e)}"
    return None if ok else f"'{name}' was not applied"
