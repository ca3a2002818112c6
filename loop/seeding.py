"""The run's random numbers and kernels: the seed every process starts from, each process's own stream for
training, and --full_determinism.

Owns: the global generators (Python's `random`, numpy's, torch's on the CPU and on each device) and the
switches that make kernels deterministic, both put back as they were when a run ends (a notebook, a sweep). Does
not own the data's draws (`data.py`: private generators of --data_seed, the same on every process) nor putting the
generators back at a resume (`checkpoint.py`: every process's state is in every checkpoint). `Loop.start` and
`Loop.setup` call these.
"""

import os

import torch

CUBLAS_DETERMINISTIC = ":4096:8"  # cuBLAS's fixed workspaces (or ":16:8": less memory, slower)


def full_determinism(cfg):
    """--full_determinism (Trainer's switch): kernels that give the same numbers every run, on a GPU too.
    torch's deterministic algorithms (an operation that has none fails naming itself), cuDNN without
    benchmarking and with its deterministic convolutions, cuBLAS with a fixed workspace
    (CUBLAS_WORKSPACE_CONFIG, set unless given) and flash-attention's deterministic backward (transformers reads
    FLASH_ATTENTION_DETERMINISTIC). cuBLAS reads its variable when CUDA first runs a matrix product, so this
    runs before the accelerator starts. Returns a warning when CUDA was in use before (a notebook, a variant
    that used the GPU earlier), where the variable may come too late; else None."""
    if not cfg.full_determinism:
        return None
    late = "CUBLAS_WORKSPACE_CONFIG" not in os.environ and torch.cuda.is_initialized()
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_DETERMINISTIC)
    os.environ.setdefault("FLASH_ATTENTION_DETERMINISTIC", "1")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    if late:
        return (f"--full_determinism: CUDA was in use before the run started, and cuBLAS may have sized its workspace "
                f"already; for matrix products that are deterministic too, set CUBLAS_WORKSPACE_CONFIG="
                f"{CUBLAS_DETERMINISTIC} before Python starts.")
    return None


DETERMINISM_VARIABLES = ("CUBLAS_WORKSPACE_CONFIG", "FLASH_ATTENTION_DETERMINISTIC")


def process_settings():
    """The process's random generators and kernel switches as they are now (the run seeds the one, and
    --full_determinism sets the other): for restore_process_settings when the run ends. The generators: Python's,
    numpy's, torch's on the CPU and, where CUDA has started, on each GPU (not MPS's or XPU's; CUDA that the run
    itself started keeps the run's stream)."""
    import random

    import numpy as np

    return {"deterministic": torch.are_deterministic_algorithms_enabled(),
            "warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
            "cudnn": (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark),
            "environ": {name: os.environ.get(name) for name in DETERMINISM_VARIABLES},
            "generators": (random.getstate(), np.random.get_state(), torch.get_rng_state(),
                           torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None)}


def restore_process_settings(settings):
    """Put back what the run changed (process_settings' snapshot): in a notebook or a sweep the next run without
    --full_determinism ran with deterministic kernels while its training_args.json said otherwise, and a random
    search drawing each trial's rate from `random` drew the same rate after every run (the run's seeded stream)."""
    if not settings:
        return
    import random

    import numpy as np

    torch.use_deterministic_algorithms(settings["deterministic"], warn_only=settings["warn_only"])
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = settings["cudnn"]
    for name, value in settings["environ"].items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    python, numpy, cpu, cuda = settings["generators"]
    random.setstate(python)
    np.random.set_state(numpy)
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state_all(cuda)


def seed_all(seed):
    """The same seed on every process: everything setup() draws (a new head's and LoRA's initial weights, a
    variant's modules) is the same on each, whether or not the strategy broadcasts rank 0's weights."""
    from accelerate.utils import set_seed

    set_seed(seed)


def seed_per_process(accelerator, seed):
    """At the end of setup(), everything built alike on every process (the new head, a variant's
    checkpoint_objects, which the main process alone saves): each process its own random numbers for training
    (dropout masks). With --seed alone every process drew the same masks (example i of each process's batch
    masked alike whenever the batches had the same shape). Process 0 keeps the stream --seed began, so one
    process trains exactly as before; each other one is seeded from (seed, its index) through numpy's
    SeedSequence, not from seed + index, the stream that --seed seed+index starts with: on a GPU process 1
    would draw the dropout of process 0 of the run with the next seed (a seed study's runs would share masks).
    The data's order is no part of it (private generators of --data_seed), and a resume puts every process's
    generators back as they were saved."""
    index = accelerator.process_index
    if index == 0:
        return
    import numpy as np

    seed_all(int(np.random.SeedSequence([seed, index]).generate_state(1)[0]))  # (32 bits: numpy's seed takes no more)
