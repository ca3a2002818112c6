"""What several processes or a sharded model change: the Accelerator, accelerate's prepare, and what the
distribution strategies need from a run.

Owns: the Accelerator the loop builds (`build_accelerator`) and accelerate's prepare of the parts the loop built
(`prepare_parts`; for --eval_only, `prepare_for_scoring`); the checks of the launch (processes no launcher
joined, SLURM tasks: `check_world`), of the precision (`check_precision`) and accelerate's torch.compile
(`take_over_dynamo`); DDP's find_unused_parameters (trial passes through the loop's compute_loss), the
registration of frozen parameters a variant unfreezes later, the refusal of parameters that became trainable
after DDP wrapped the model, FSDP2's list of blocks to shard, DeepSpeed's batch, accumulation and clipping
(`configure_deepspeed`); each micro-batch's share of an optimizer step (`loss_shares`); and ending the process
past gloo's workers. Does not own what a model looks like inside (`models.py`: unused parameters, shared
embeddings, block classes) nor when anything runs (`Loop.setup` calls `configure_ddp` / `configure_fsdp`).
"""

import atexit
import os
import sys

import torch

from . import models
from .errors import UserError, listed, short
from .splits import WEIGHT


def build_accelerator(cfg):
    """The run's Accelerator: --ddp_timeout for the process group, accumulation that follows the
    dataloader (a short last window), even batches (gather_for_metrics drops the duplicates), the
    trackers of --report_to, and the scheduler stepped by the loop, once per optimizer step (accelerate
    would step it once per process)."""
    from datetime import timedelta

    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, GradientAccumulationPlugin, InitProcessGroupKwargs

    fresh_precision()
    try:
        accelerator = Accelerator(
            kwargs_handlers=[InitProcessGroupKwargs(timeout=timedelta(seconds=cfg.ddp_timeout))],
            gradient_accumulation_plugin=GradientAccumulationPlugin(
                num_steps=cfg.gradient_accumulation_steps, sync_with_dataloader=True),
            # data_seed: the seed of a variant's DataLoader(shuffle=True) order (loaders.seed_variant_loaders)
            dataloader_config=DataLoaderConfiguration(even_batches=True, non_blocking=True,
                                                      data_seed=cfg.data_seed_or_seed),
            log_with=None if cfg.report_to == "none" else cfg.report_to.split(","),
            project_dir=cfg.output_dir,
            step_scheduler_with_optimizer=False,
        )
    except ValueError as e:  # fp8 without its kernels (transformer_engine, torchao), another precision refused
        if "MASTER_ADDR" in str(e):  # an MPI launch (mpirun, PMI_SIZE / OMPI_COMM_WORLD_SIZE) that set no rendezvous
            raise UserError(f"accelerate found a launch of several processes but no MASTER_ADDR to meet at "
                            f"({short(e)}); launch with torchrun or accelerate launch, which set it, or export "
                            f"MASTER_ADDR (rank 0's host name) and MASTER_PORT in every process.") from e
        if "precision" not in str(e):
            raise
        raise UserError(f"accelerate cannot start with this mixed precision ({short(e)}); install what it names, or "
                        f"choose bf16 or no (accelerate launch --mixed_precision bf16).") from e
    if accelerator.num_processes > 1:
        settle_gloo_workers_at_exit()
    return accelerator


# torch's name for the worker threads of a gloo process group (ProcessGroupGloo::runLoop)
GLOO_WORKER = "pt_gloo_runloop"


def settle_gloo_workers_at_exit():
    """Once per process: the last exit handler (atexit runs the first registered last, just before the interpreter
    finalizes) waits until the gloo process group's worker threads are idle (settle_gloo_workers)."""
    global _settle_registered
    if not _settle_registered:
        _settle_registered = True
        atexit.register(settle_gloo_workers)


_settle_registered = False


def settle_gloo_workers(limit_s=2.0, poll_s=0.005):
    """Wait, without the GIL, until every gloo worker thread of this process is idle (asleep at two polls in a
    row), at most `limit_s`. A worker drops a finished collective after the main thread saw it complete: when it
    holds the last reference to a tensor made in Python (broadcast_object_list's, in stop_together), it takes the
    GIL to free it. Descheduled on a busy machine until the interpreter had started to finalize, it was killed
    there by Python (pthread_exit from a noexcept destructor: 'terminate called without an active exception',
    SIGABRT), and torchrun reported a finished run failed (about 1 run in 40-65 on 2 busy cores, audit63 d1).
    torch offers no way to wait for the workers (destroy_process_group leaves gloo's running while DDP holds the
    group): their state in /proc is read (Linux; elsewhere nothing is waited for). A worker waiting on its peer in
    a collective that will not finish (another rank gone) sleeps too: the wait ends at once."""
    import time

    tids = _threads_named(GLOO_WORKER)
    deadline = time.monotonic() + limit_s
    quiet = 0
    while tids and quiet < 2 and time.monotonic() < deadline:
        time.sleep(poll_s)  # the GIL released: a worker waiting for it takes it now
        quiet = quiet + 1 if all(_thread_state(tid) in ("S", "X", "Z", "") for tid in tids) else 0


def exit_past_gloo_workers(code):
    """End a process of a multi-process run whose gloo worker threads are still there as Python ends one (its
    threads joined, its exit handlers run, its output flushed), then `os._exit(code)` rather than finalizing the
    interpreter: a worker that takes the GIL after finalization began is killed through a noexcept C++ destructor
    and aborts the process (SIGABRT, torchrun reports the rank failed). settle_gloo_workers, the wait for them to
    sleep, made it rare on a finished run; after a user error every rank raised together a worker could still be
    dropping a collective and it aborted about 1 exit in 2 (audit63 d1). Nothing is done without such workers
    (one process, NCCL). Called where the process ends: run_cli after an error, a stop or Ctrl-C, and loop/train.py
    after a finished run (a loop.main() that finished returns to its caller). What only finalization does is not
    done: a file a variant left open keeps what it had not flushed (close it, or use `with`)."""
    import threading

    if int(os.environ.get("WORLD_SIZE") or 1) <= 1 or not _threads_named(GLOO_WORKER):
        return
    # as Python waits for its threads before the exit handlers: threading's own exit hooks first (an idle executor's
    # workers, torch.compile's pool, are woken there to end), then every thread that is not a daemon, joined
    threading._shutdown()
    atexit._run_exitfuncs()  # trackers' and logging's, settle_gloo_workers, ignore_stop_signals after a stop
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except Exception:  # (closed, or None without a console)
            pass
    os._exit(code)


def _threads_named(name):
    """The ids of this process's threads called `name` (Linux /proc), else []."""
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return []
    found = []
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/comm", encoding="utf-8", errors="replace") as f:
                if f.read().strip() == name:
                    found.append(tid)
        except OSError:  # (ended meanwhile)
            pass
    return found


def _thread_state(tid):
    """A thread's state letter from /proc (R runs or waits for a CPU, S sleeps, ...); "" when it has ended."""
    try:
        with open(f"/proc/self/task/{tid}/stat", encoding="utf-8", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


def fresh_precision():
    """accelerate keeps one state per process, and reads the mixed precision (ACCELERATE_MIXED_PRECISION, which
    `accelerate launch` and `accelerate config` set) only when it first makes it: in a notebook or a sweep, a run
    asking for another precision than the process's first ran silently at that one. A one-process run starts
    accelerate's state afresh then (its process state, the device and the process group, stays)."""
    from accelerate.state import AcceleratorState, PartialState
    from accelerate.utils import parse_choice_from_env

    state = AcceleratorState._shared_state
    if not state or PartialState().num_processes > 1:
        return
    if state.get("_mixed_precision") != parse_choice_from_env("ACCELERATE_MIXED_PRECISION", "no"):
        AcceleratorState._reset_state()


def kind(accelerator):
    """accelerate's distributed type as its text: "NO", "MULTI_GPU", "MULTI_CPU", "FSDP", "DEEPSPEED", ..."""
    return getattr(accelerator.distributed_type, "value", str(accelerator.distributed_type))


def sharder(accelerator):
    """"FSDP" or "DeepSpeed" when one shards (and casts) the model, else None."""
    return {"FSDP": "FSDP", "DEEPSPEED": "DeepSpeed"}.get(kind(accelerator))


def configure_ddp(loop, model):
    """DDP only: turn on find_unused_parameters when some trainable parameters get no gradient from
    loop.compute_loss (models.find_unused_parameters), which DDP otherwise fails on at the second
    step. With `loop.unfreezes_later`, the frozen parameters the optimizer holds are registered with
    DDP too (they need find_unused_parameters while frozen); otherwise DDP would never average their
    gradients once a hook unfroze them. Sets loop.frozen_for_later and loop.ddp_registered."""
    from accelerate.utils import DistributedDataParallelKwargs

    acc, cfg = loop.accelerator, loop.cfg
    if acc.num_processes < 2 or not kind(acc).startswith("MULTI_") or kind(acc) == "MULTI_NEURON":
        return  # one process, FSDP, DeepSpeed or TPU: no DDP wrapper to configure
    model.to(acc.device)  # prepare() would move it anyway; the trial pass runs where training will
    loop.frozen_for_later = models.frozen_in_optimizer(model, loop.optimizer) if loop.unfreezes_later else []
    loop.ddp_registered = {id(p) for p in model.parameters() if p.requires_grad} | set(map(id, loop.frozen_for_later))
    if loop.frozen_for_later and cfg.ddp_find_unused_parameters is False:
        raise UserError("unfreezes_later registers frozen parameters with DDP, which then needs "
                        "find_unused_parameters; drop --ddp_find_unused_parameters false.")
    on, reason = ddp_trial(loop, model)
    # Every rank must build DDP the same way: on if any rank says on (its trial pass failed, say).
    if acc.reduce(torch.tensor([int(on)], device=acc.device), reduction="sum").item() and not on:
        on, reason = True, "another process asked for it"
    if on:
        acc.ddp_handler = acc.ddp_handler or DistributedDataParallelKwargs()
        acc.ddp_handler.find_unused_parameters = True
        loop.print(f"DDP: find_unused_parameters on: {reason}")
    elif cfg.ddp_find_unused_parameters is False and acc.ddp_handler is not None:
        acc.ddp_handler.find_unused_parameters = False


def ddp_trial(loop, model):
    """(on, reason) for find_unused_parameters, from trial passes through loop.compute_loss (not
    training steps: track() ignores them). A parameter that compute_loss uses outside the model's
    forward cannot be combined with find_unused_parameters: refused in one line."""
    acc = loop.accelerator
    from .contract import loss_and_outputs

    loss_fn = lambda m, batch: loss_and_outputs(loop.compute_loss(m, batch))[0]  # noqa: E731
    batch = trial_batch(loop)
    loop.tracked.paused = loop.trial_pass = True
    try:
        # (a forward that fails too only turns find_unused_parameters on: what escapes is compute_loss's own)
        on, reason = models.find_unused_parameters(loop.cfg, model, loop.tokenizer, autocast=acc.autocast,
                                                   loss_fn=loss_fn, batch=batch)
        if loop.frozen_for_later and loop.cfg.ddp_find_unused_parameters is None:
            on, reason = True, f"{len(loop.frozen_for_later)} frozen parameter(s) in the optimizer, to be unfrozen later"
        outside = models.used_outside_forward(model, loop.tokenizer, acc.autocast, loss_fn, batch) if on else []
    except UserError:
        raise
    except Exception as e:  # a variant's state made later (checkpoint_objects) fails here, under DDP only
        raise UserError(f"compute_loss failed in the trial pass that decides DDP's find_unused_parameters, which runs "
                        f"before prepare() and checkpoint_objects() ({short(e)}); build what compute_loss needs in "
                        f"build_model(), or skip it while self.trial_pass is True.") from e
    finally:
        loop.tracked.paused = loop.trial_pass = False
    if outside:
        raise UserError(f"compute_loss uses {', '.join(outside[:3])} outside the model's forward pass, which DDP "
                        f"cannot combine with find_unused_parameters (needed here: {reason}); call that module "
                        f"from inside the model's forward (wrap the model), or train without it.")
    return on, reason


def on_cuda(accelerator):
    """Whether the run computes on a CUDA device: the accelerator's (--cpu on a GPU host: no), or, for a loop driven
    by its parts before it has one, whether a GPU is there."""
    device = getattr(accelerator, "device", None)
    return device.type == "cuda" if device is not None else torch.cuda.is_available()


def raise_if_wrapper_attribute(e):
    """Raise one line in place of `e` when it is `model.X` asked of the DistributedDataParallel wrapper (a head
    a variant added to the model, reached through the `model` compute_loss is given: it works on one process,
    where that is the model itself); else return (the caller re-raises `e`)."""
    import re

    found = isinstance(e, AttributeError) and re.search(r"'DistributedDataParallel' object has no attribute '(\w+)'",
                                                        str(e))
    if found:
        name = found.group(1)
        raise UserError(f"compute_loss asked the model for '{name}', but on several processes the model it is given "
                        f"is DDP's wrapper, which does not pass attributes on; reach it as "
                        f"self.unwrapped_model.{name}, or model.module.{name}.", together=True) from e


def no_repeats_in_training(dataloader, sampler, merge=True):
    """Accelerate hands every process the same number of batches by filling an epoch's last round with examples
    from its start (even_batches), counted twice in that step. Where accelerate shards the loop's own sampler
    itself (not a variant's wrapper around it, whose batches it would fill as before), the sampler learns the
    number of processes and splits that round into one batch per process (EpochBatchSampler.splits_last_round;
    a round of fewer examples than processes merged into the one before, merges_last_round), and the training
    loader hands each its own as it is; evaluation keeps even_batches (gather_for_metrics drops its repeats).
    Before len(dataloader) is read: the split round counts there. `merge` False (resuming a checkpoint written
    before merging, Checkpointer.merged_short_rounds) keeps that checkpoint's epochs, whose short round accelerate
    fills. Returns a warning for batches that accelerate fills (repeats_warning, or that resume's), else None."""
    shard = getattr(dataloader, "batch_sampler", None)
    if not (hasattr(sampler, "divides_among_processes") and hasattr(shard, "even_batches")
            and getattr(shard, "batch_sampler", None) is sampler):
        return repeats_warning(shard)
    sampler.processes = shard.num_processes
    kept = None
    if not merge and getattr(sampler, "merge_short_round", False) and sampler.merges_last_round():
        sampler.merge_short_round = False  # its epochs, as the checkpoint counted them (steps, skipped batches)
        _, _, rows = sampler.last_round()
        kept = (f"the resumed checkpoint was written before an epoch's last round of fewer examples than processes "
                f"({rows} for {sampler.processes}) was merged into the round before, so this run keeps its epochs "
                f"to resume exactly: accelerate fills that round with {sampler.processes - rows} example(s) from the "
                f"epoch's start, trained twice every epoch; start a new run (another --output_dir) to train without.")
    if sampler.divides_among_processes():
        shard.even_batches = False
    return kept


def repeats_warning(shard):
    """A line for a variant's batches (its build_train_sampler, its own DataLoader) that do not divide among the
    processes: accelerate fills the epoch's last round with batches from its start, trained twice each epoch (the
    loop's sampler splits that round instead); else None."""
    inner = getattr(shard, "batch_sampler", None)
    procs = getattr(shard, "num_processes", 1)
    if procs < 2 or not getattr(shard, "even_batches", False) or not hasattr(inner, "__len__"):
        return None
    try:
        batches = len(inner)
    except TypeError:
        return None
    size, examples = getattr(shard, "batch_size", None), getattr(inner, "sampler", None)
    if size and hasattr(examples, "__len__") and not getattr(shard, "drop_last", False):
        # accelerate completes a short last batch too, to `size` (a torch BatchSampler's, say)
        extra = -(-batches // procs) * procs * size - len(examples)
        if extra <= 0:
            return None
        return (f"the training examples ({len(examples)} in {batches} batches of {size} per epoch, from "
                f"{type(inner).__name__}) do not fill the last round of {procs} processes: accelerate completes it "
                f"with {extra} example(s) from the epoch's start, trained twice every epoch; make the count a multiple "
                f"of {procs * size}, or subclass loop.loaders.EpochBatchSampler (override batch_arrays), which splits "
                f"that round among the processes instead.")
    if batches % procs == 0:
        return None
    return (f"the training batches ({batches} per epoch, from {type(inner).__name__}) do not divide among {procs} "
            f"processes: accelerate fills the epoch's last round with {procs - batches % procs} batch(es) from its "
            f"start, trained twice every epoch; make the count a multiple of {procs}, or subclass "
            f"loop.loaders.EpochBatchSampler (override batch_arrays), whose last round is split among the processes instead.")


def last_window(loop):
    """(n, start): an epoch's micro-batches per process, and the first of its last optimizer step's (start .. n - 1)."""
    n, ga = len(loop.train_dataloader), loop.cfg.gradient_accumulation_steps
    return n, (n - 1) // ga * ga


def loss_shares(loop):
    """(backward, logged): the factors of this process's micro-batch loss in Loop.backward and in the logged
    loss, so that every optimizer step's gradient is the mean over its examples, as one batch of them would
    give. With row weights (loop.row_weights: --class_weights, --weight_column) every step needs them: a
    micro-batch's weighted mean counts by its share of the step's weight (a batch of 1 under accumulation kept
    its class weight out of the step: w * ce / w). Without, only an epoch's last step needs them, where batches
    differ in size: accelerate divides each
    micro-batch loss by --gradient_accumulation_steps (N) and DDP averages the P processes, so a step is the
    mean of its micro-batch means. A micro-batch of r of the step's R examples gets P * N * r / R: a window of
    k < N full batches N / k (Trainer's correction), a short batch of 2 beside one of 4 1/3 of the step, not
    1/2, and a last round split 3 + 2 of 5 among 2 processes 1.2 and 0.8 (a merged round of 17, 9 + 8: 18/17 and
    16/17). Accelerate hands process p the batches p, p + P, ... of the sampler's order. A sampler without
    batch_sizes (a variant's), or a round accelerate fills with repeats (an epoch of fewer examples than
    processes), keeps only the N / k of a short window."""
    n, start = last_window(loop)
    ga = loop.cfg.gradient_accumulation_steps
    done = loop.state.batches_done  # this micro-batch's index in the epoch
    weights = getattr(loop, "row_weights", None)
    if done < start and weights is None:
        return 1.0, 1.0
    sampler, acc = loop.train_sampler, loop.accelerator
    procs = acc.num_processes
    if weights is not None and hasattr(sampler, "batch_sums"):
        # --class_weights / --weight_column: a micro-batch's weighted mean counts by its share of the step's weight
        sizes = sampler.batch_sums(weights)  # (cached per epoch: asked at every micro-batch)
    else:
        sizes = sampler.batch_sizes() if hasattr(sampler, "batch_sizes") else None
    if sizes is None or len(sizes) != n * procs or (procs > 1 and not sampler.divides_among_processes()):
        return (ga / (n - start), 1.0) if done >= start else (1.0, 1.0)
    first = done // ga * ga  # this step's window of micro-batches: first .. first + k - 1
    k = min(first + ga, n) - first
    mine, total = float(sizes[done * procs + acc.process_index]), float(sizes[first * procs:(first + k) * procs].sum())
    if total <= 0:  # every weight of the step is 0: so is every micro-batch's loss
        return 0.0, 0.0
    return procs * ga * mine / total, procs * k * mine / total  # logged: the log's mean of k x P values


def log_weight(loop):
    """How much this micro-batch's logged loss counts in a log line that spans several optimizer steps: 1, and
    N / k in an epoch's last window of k < N micro-batches (loss_shares makes that step's k values average to its
    example mean): each step then counts alike, as its own line shows it. Counted per micro-batch, a line ending
    in such a step weighed it k / N (audit29: 1 x 16 and 4 x accumulation 4 logged 0.692761 and 0.692459 for the
    same three steps)."""
    n, start = last_window(loop)
    k, ga = n - start, loop.cfg.gradient_accumulation_steps
    return ga / k if loop.state.batches_done >= start and k < ga else 1.0


def older_weighting(loop):
    """A warning for resuming a checkpoint of a loop before 2026-12-03 (it records no "frozen" parameters), whose
    epochs end in an optimizer step of micro-batches of different sizes (a short batch beside full ones, with
    accumulation or several processes): that loop weighed each micro-batch of such a step alike, loss_shares now
    weighs each example alike, so from the first such step the resumed run is neither the interrupted one nor a
    new one (audit30; steps before it are exact). None when no step of an epoch mixes sizes."""
    sampler, ga, procs = loop.train_sampler, loop.cfg.gradient_accumulation_steps, loop.accelerator.num_processes
    sizes = sampler.batch_sizes() if hasattr(sampler, "batch_sizes") else None
    if sizes is None or (ga == 1 and procs == 1):
        return None
    _, start = last_window(loop)
    window = sizes[start * procs:]  # the epoch's last optimizer step's micro-batches, on every process
    if len(set(window.tolist())) <= 1:
        return None
    return ("the checkpoint was written by a loop version before 2026-12-03, which weighed each micro-batch of an "
            "epoch's last optimizer step alike; its batches differ in size here (" + ", ".join(map(str, window.tolist()))
            + " rows), and each example now weighs alike, so from the end of the epoch it resumes in, the run differs "
            "slightly from the interrupted one.")


def trial_batch(loop):
    """Two training examples as the training DataLoader collates them (the run's own labels, which a
    variant's compute_loss expects), or None (then two made-up texts); at most 64 tokens each."""
    dataset = getattr(getattr(loop, "data", None), "train", None)
    collate = getattr(getattr(loop, "train_dataloader", None), "collate_fn", None)
    if dataset is None or collate is None or len(dataset) == 0:
        return None
    try:
        rows = [dict(dataset[i]) for i in range(min(2, len(dataset)))]
        for row in rows:  # the trial only needs the graph: short rows keep it cheap
            for key in ("input_ids", "attention_mask", "token_type_ids"):
                if isinstance(row.get(key), list) and len(row[key]) > 64:
                    row[key] = row[key][:63] + row[key][-1:]  # keep the last (end) token
        batch = collate(rows)
        batch.pop(WEIGHT, None)  # --weight_column's: not a model input (the trial's loss is unweighted)
        return batch
    except Exception:  # a custom dataset or collator this does not suit: the made-up texts
        return None


def check_unfreezable(loop):
    """With `unfreezes_later`, refuse at the start an optimizer that holds none of the frozen parameters (an
    overridden build_optimizer or param_groups that kept the trainable ones only): they could never be trained,
    and the run would stop only where a hook unfreezes them, an epoch or more later. Not under DeepSpeed."""
    if not loop.unfreezes_later or sharder(loop.accelerator) == "DeepSpeed":
        return
    frozen = [n for n, p in loop.model.named_parameters() if not p.requires_grad]
    if frozen and not models.frozen_in_optimizer(loop.model, loop.optimizer):
        raise UserError(f"unfreezes_later is set, but the optimizer holds none of the {len(frozen)} frozen parameter(s) "
                        f"({', '.join(frozen[:3])}), so unfreezing them would train nothing: build the optimizer over "
                        f"param_groups(model), which keeps them with unfreezes_later (name fragments: those whose names "
                        f"hold one; check them), or drop unfreezes_later.")


def check_ddp_parameters(model, registered, unfreezes_later=False):
    """Under DDP (`registered`: ids of the parameters it synchronises, else None), refuse a parameter
    that became trainable after the model was wrapped: DDP would not average its gradients, and each
    process would train its own copy."""
    if registered is None:
        return
    late = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in registered]
    missed = missed_fragments(late, unfreezes_later)
    if missed:
        raise UserError(f"{missed[0]} parameter(s) became trainable after DDP wrapped the model {missed[1]}")
    if late and unfreezes_later:  # registered are the frozen ones the optimizer held: these it did not
        raise UserError(f"{len(late)} parameter(s) became trainable after DDP wrapped the model ({', '.join(late[:3])}), "
                        f"but the optimizer did not hold them when it was built, so DDP did not register them: build the "
                        f"optimizer over param_groups(model), which keeps the frozen parameters with unfreezes_later "
                        f"(name fragments: only those whose names hold one).")
    if late:
        raise UserError(f"{len(late)} parameter(s) became trainable after DDP wrapped the model ({', '.join(late[:3])}); "
                        f"their gradients would not be averaged across processes: set unfreezes_later = True on the "
                        f"Loop subclass (param_groups then keeps the frozen parameters in the optimizer).")


def check_trainable(loop):
    """At each epoch start and log line (a hook may have unfrozen parameters): check_ddp_parameters, then
    check_optimized_parameters."""
    check_ddp_parameters(loop.model, loop.ddp_registered, loop.unfreezes_later)
    check_optimized_parameters(loop.accelerator, loop.model, loop.optimizer, loop.frozen_at_start,
                               loop.unfreezes_later)


def frozen_ids(model):
    """Ids of the model's frozen parameters (after prepare: the objects training holds), for
    check_optimized_parameters."""
    return {id(p) for p in model.parameters() if not p.requires_grad}


def missed_fragments(late, unfreezes_later):
    """For the line refusing parameters unfrozen late (`late`, their names) when `unfreezes_later` names fragments
    that some of them do not hold (the optimizer left those out as it was told: 'set unfreezes_later' would be advice
    already taken): (how many, the line's end naming them); None otherwise."""
    if isinstance(unfreezes_later, bool) or not unfreezes_later:
        return None
    missed = [n for n in late if not any(part in n for part in unfreezes_later)]
    if not missed:
        return None
    return len(missed), (f"({', '.join(missed[:3])}), and their names hold none of unfreezes_later's fragments "
                         f"({listed([repr(part) for part in unfreezes_later], 4)}), so the optimizer was built "
                         f"without them: add a fragment their names hold to unfreezes_later, or set it to True.")


def check_optimized_parameters(accelerator, model, optimizer, frozen, unfreezes_later=False):
    """Refuse a parameter frozen at the start (`frozen`: frozen_ids then) that is trainable now but not held by
    the optimizer (a variant that unfroze it in a hook, its optimizer built over the trainable ones only): it
    would get gradients and never change, silently (under DDP check_ddp_parameters refuses it first). One left
    out of the optimizer on purpose from the start (a head-only optimizer) is the variant's choice. Not under
    DeepSpeed, whose optimizer holds flat partitions."""
    if optimizer is None or not frozen or sharder(accelerator) == "DeepSpeed":
        return
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    late = [n for n, p in model.named_parameters() if p.requires_grad and id(p) in frozen and id(p) not in held]
    missed = missed_fragments(late, unfreezes_later)
    if missed:
        raise UserError(f"{missed[0]} parameter(s) are trainable but not in the optimizer {missed[1]}")
    if late:
        raise UserError(f"{len(late)} parameter(s) are trainable but not in the optimizer ({', '.join(late[:3])}), so "
                        f"they would never change: set unfreezes_later = True on the Loop subclass (param_groups then "
                        f"keeps the frozen parameters in the optimizer).")


def configure_fsdp(accelerator, model):
    """FSDP2 only: shard the model's blocks, but not a block that holds the input embeddings nor one
    the model does not contain (models.fsdp_wrap_classes: accelerate fails on BERT-family models and
    ESM otherwise); an explicit fsdp_transformer_layer_cls_to_wrap in the accelerate config is left
    alone. Encoder-decoders, whose embedding table is shared by encoder and decoder, are refused in
    one line: FSDP2 under accelerate cannot shard them."""
    plugin = getattr(accelerator.state, "fsdp_plugin", None)
    if plugin is None or getattr(plugin, "fsdp_version", 1) != 2:
        return
    model = models.uncompiled(model)
    shared = models.shared_input_embeddings(model)
    if shared:
        raise UserError(f"FSDP2 cannot shard model type '{model.config.model_type}': its input embeddings are "
                        f"shared with {', '.join(shared[:3])}; train it with DDP (configs/accelerate/"
                        f"multi_gpu.yaml) or DeepSpeed instead.")
    if plugin.transformer_cls_names_to_wrap:
        return
    names = models.fsdp_wrap_classes(model)
    if names is not None:
        plugin.transformer_cls_names_to_wrap = names


def check_accumulation(accelerator, cfg):
    """After prepare(): accelerate silently takes a DeepSpeed config's own accumulation count
    (configure_deepspeed refused a clash before; this catches any other way it could differ)."""
    if accelerator.gradient_accumulation_steps != cfg.gradient_accumulation_steps:
        raise UserError(f"the accelerate config sets gradient_accumulation_steps={accelerator.gradient_accumulation_steps} "
                        f"but --gradient_accumulation_steps is {cfg.gradient_accumulation_steps}; make them equal, or "
                        f"set it to auto in the config.")


# The DeepSpeed config keys our flags own, and the flags.
DEEPSPEED_OWN = {"train_micro_batch_size_per_gpu": "--per_device_train_batch_size",
                 "gradient_accumulation_steps": "--gradient_accumulation_steps",
                 "gradient_clipping": "--max_grad_norm"}


def configure_deepspeed(accelerator, cfg):
    """DeepSpeed only: the micro-batch size, the accumulation steps and the clipping are our flags'.

    A DeepSpeed config may hold numbers of its own (`accelerate config` always writes
    gradient_accumulation_steps): accelerate would silently take its accumulation while the loop's
    schedule counts ours (the learning rate would reach 0 a quarter of the way in at 4 vs 1), and
    DeepSpeed clips at its gradient_clipping (1.0 when auto) whatever --max_grad_norm says. "auto"
    or absent takes our value; another number is refused. DeepSpeed also reads the batch size from
    the DataLoader, which ours cannot give (a batch sampler)."""
    plugin = getattr(accelerator.state, "deepspeed_plugin", None)
    if plugin is None:
        return
    config = plugin.deepspeed_config
    ours = {"train_micro_batch_size_per_gpu": cfg.per_device_train_batch_size,
            "gradient_accumulation_steps": cfg.gradient_accumulation_steps,
            "gradient_clipping": float(cfg.max_grad_norm or 0.0)}  # DeepSpeed: 0 = no clipping
    clash = []
    for key, value in ours.items():
        theirs = config.get(key, "auto")
        if theirs in ("auto", None):
            config[key] = value
        elif float(theirs) != float(value):
            clash.append(f"{key}: {theirs} (our {DEEPSPEED_OWN[key]} is {value})")
    if clash:
        raise UserError(f"the DeepSpeed config sets {'; '.join(clash)}; set {'those' if len(clash) > 1 else 'it'} to "
                        f"auto in the config, or pass the same value to our flag.")


def check_world(accelerator):
    """A launcher that started several processes which did not join one process group: torchrun on a
    machine without a GPU, where accelerate forms no group unless ACCELERATE_USE_CPU=true. Each process would
    train alone into the same --output_dir (the lock stops all but one, which trains alone or which the
    launcher kills): one line on every rank instead, before the output_dir is touched. (The tasks of srun -n 2
    python loop/train.py are no launcher's processes, and may be runs of their own, each with its own
    --output_dir: the output_dir lock finds those that are not, unjoined_slurm_task.)"""
    launched = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if launched > 1 and accelerator.num_processes == 1:
        how = ("os.environ['ACCELERATE_USE_CPU'] = 'true' before notebook_launcher" if "ipykernel" in sys.modules
               else f"ACCELERATE_USE_CPU=true torchrun --nproc_per_node {launched} loop/train.py ...")
        raise UserError(f"the launcher started {launched} processes but they did not form one run (each sees 1 "
                        f"process); on a machine without a GPU set ACCELERATE_USE_CPU=true ({how}), or start one "
                        f"process.")
    asked = [name for env, name in (("ACCELERATE_USE_FSDP", "FSDP"), ("ACCELERATE_USE_DEEPSPEED", "DeepSpeed"))
             if os.environ.get(env, "").lower() in ("1", "true", "yes")]
    if asked and sharder(accelerator) != asked[0] and kind(accelerator) != "XLA":  # (a TPU shards by its own plugin)
        # accelerate enables them on GPUs only: an FSDP config under ACCELERATE_USE_CPU=true ran plain DDP, said nowhere
        raise UserError(f"the accelerate config asks for {asked[0]}, but accelerate runs {kind(accelerator)} here "
                        f"({asked[0]} needs GPUs); use a GPU machine, or another accelerate config (on CPUs: "
                        f"ACCELERATE_USE_CPU=true torchrun --nproc_per_node N loop/train.py ...).")
    given = (os.environ.get("ACCELERATE_GRADIENT_ACCUMULATION_STEPS") or "").strip()
    # (accelerate launch exports a DeepSpeed config's value there, `auto` included: configure_deepspeed judges it)
    if given and given != "auto" and kind(accelerator) != "DEEPSPEED" \
            and given != str(accelerator.gradient_accumulation_steps):
        # build_accelerator passes its own GradientAccumulationPlugin: accelerate then reads no variable
        raise UserError(f"ACCELERATE_GRADIENT_ACCUMULATION_STEPS={given} is not read by loop: it accumulates "
                        f"--gradient_accumulation_steps ({accelerator.gradient_accumulation_steps} now); pass "
                        f"--gradient_accumulation_steps {given}, or unset the variable.")


def slurm_step_tasks():
    """The number of tasks of the SLURM job step this process is one of (srun -n 2: 2), else 0. srun sets
    SLURM_STEP_NUM_TASKS in each task's environment; a batch script (or salloc's shell) runs outside any step and
    has only the allocation's SLURM_NTASKS, which counts tasks it may start, not copies of this command."""
    value = os.environ.get("SLURM_STEP_NUM_TASKS", "").strip()
    return int(value) if value.isascii() and value.isdigit() else 0


def unjoined_slurm_task(accelerator):
    """{"step": "JOB.STEP", "task": its SLURM_PROCID, "tasks": the step's count, "pty": whether srun --pty started
    it} when this process is one task of a SLURM step of several that no launcher joined (no WORLD_SIZE, one
    process), else None. Such tasks may be runs of their own (srun -n 2 --multi-prog, or one --output_dir per
    $SLURM_PROCID: a sweep; the shell of srun -n 4 --pty bash, whose other tasks ended at once) or copies of one
    command (srun -n 2 python loop/train.py), which would each train alone into the same --output_dir: the
    output_dir lock records this and refuses a second task of the step there (RunLock), in every task."""
    tasks = slurm_step_tasks()
    if tasks < 2 or "WORLD_SIZE" in os.environ or accelerator.num_processes > 1:
        return None
    env = os.environ.get
    return {"step": f"{env('SLURM_JOB_ID', '?')}.{env('SLURM_STEP_ID', '?')}", "task": env("SLURM_PROCID", "?"),
            "tasks": tasks, "pty": bool(env("SLURM_PTY_PORT"))}


def slurm_tasks_message(tasks):
    """The refusal of several tasks of one SLURM step in one --output_dir (RunLock)."""
    return (f"SLURM started this command as {tasks} tasks (SLURM_STEP_NUM_TASKS={tasks}) that no launcher joined "
            f"into one run, and they would each train alone into the same --output_dir; give each task its own "
            f"--output_dir if they are runs of their own, else start one launcher per node, which starts the "
            f"processes: srun --ntasks-per-node=1 ./launch.sh -- ... (GPU nodes; launch.sh does not join CPU nodes, "
            f"and there it says the torchrun command that does), or srun -n 1 accelerate launch (or torchrun) "
            f"loop/train.py ...")


def take_over_dynamo(cfg, accelerator):
    """accelerate's own torch.compile (accelerate launch --dynamo_backend, an accelerate config's dynamo_config,
    ACCELERATE_DYNAMO_BACKEND) compiles the model prepare() returns: under DDP the DDP wrapper, which
    accelerate's unwrap_model then rewrites on the process that calls it, so the ranks disagreed on skipping the
    gradient sync and a run with accumulation hung (audit37); nothing said the model was compiled, and inputs were
    not padded to buckets. Its inductor backend becomes --torch_compile (the model compiled inside any wrapper,
    with the mode asked for); another backend is refused. Returns the line that says so (None without it)."""
    from accelerate.utils import DynamoBackend

    plugin = accelerator.state.dynamo_plugin
    backend = str(getattr(plugin.backend, "value", plugin.backend)).lower()
    if backend == "no":
        return None
    if backend != "inductor":
        raise UserError(f"accelerate's dynamo backend '{backend}' (accelerate launch --dynamo_backend, the accelerate "
                        f"config's dynamo_config, or ACCELERATE_DYNAMO_BACKEND) is not one loop runs: it compiles with "
                        f"inductor through --torch_compile; set the backend to no (accelerate launch --dynamo_backend "
                        f"no) and pass --torch_compile, or set it to inductor.")
    mode = plugin.mode if plugin.mode not in (None, "default") else None
    if mode and cfg.torch_compile_mode and mode != cfg.torch_compile_mode:
        raise UserError(f"accelerate's dynamo mode '{mode}' and --torch_compile_mode {cfg.torch_compile_mode} differ; "
                        f"give one of them.")
    cfg.torch_compile = True
    if mode:
        cfg.torch_compile_mode = mode
        cfg.check_compile_mode()
    plugin.backend = DynamoBackend.NO  # compiled once, by build_model, inside the DDP/FSDP wrapper
    return (f"accelerate's dynamo backend inductor{f' (mode {mode})' if mode else ''} runs as --torch_compile: the "
            f"model is compiled inside the DDP wrapper, inputs padded to buckets.")


PRECISIONS = ("no", "fp16", "bf16", "fp8")  # accelerate's names, as it takes them (lower case)


def check_precision(accelerator):
    """Mixed precision as it will run, before any work: a name accelerate does not know (it takes
    ACCELERATE_MIXED_PRECISION as written: BF16 or bfloat16 ran float32 under that name), or fp16 / bf16 where it
    does not autocast (fp16 on a CPU: float32 throughout, while the start-up line, the checkpoints, best/'s card
    and eval_results.json said fp16, and batches were padded for it) is one line. bf16 on a CPU without native
    bf16 (no AVX512-BF16 / AMX) runs, emulated and many times slower than float32: returns the warning that says so
    (else None)."""
    mp = str(accelerator.mixed_precision)
    if mp not in PRECISIONS:
        raise UserError(f"mixed precision '{mp}' is not one of {', '.join(PRECISIONS)} (accelerate takes the name as "
                        f"written, in lower case: ACCELERATE_MIXED_PRECISION=bf16, or accelerate launch "
                        f"--mixed_precision bf16).")
    device = getattr(getattr(accelerator, "device", None), "type", "cpu")
    if mp in ("fp16", "bf16") and not getattr(accelerator, "native_amp", True) \
            and kind(accelerator) not in ("DEEPSPEED", "MEGATRON_LM"):  # (those two cast by their own rules)
        raise UserError(f"{mp} mixed precision does nothing on {device} (accelerate computes in float32 there, and the "
                        f"run would be recorded as {mp}); use bf16 or no mixed precision (accelerate launch "
                        f"--mixed_precision no, or ACCELERATE_MIXED_PRECISION=no).")
    if mp == "bf16" and device == "cpu" and not cpu_has_bf16():
        return ("bf16 mixed precision on this CPU, which has no native bf16 (AVX512-BF16 or AMX), is emulated: about "
                "10x slower than float32 here; without mixed precision it trains faster.")
    return None


def cpu_has_bf16():
    """Whether this CPU computes bf16 natively (oneDNN's check; True when it cannot be asked)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:  # a torch without the op: no warning rather than a wrong one
        return True


def scheduled_optimizer(acc, optimizer):
    """The optimizer a scheduler built after prepare() gets: the optimizer itself, not accelerate's wrapper
    (they share the groups), since a scheduler may call the optimizer's own methods (AdafactorSchedule
    calls Adafactor's), as under Trainer. Kept wrapped under fp16's GradScaler (the wrapper swaps the step
    method the scheduler would hook, and torch would warn of a step overridden) and under DeepSpeed."""
    inner = getattr(optimizer, "optimizer", None)
    if inner is None or getattr(optimizer, "scaler", None) is not None or kind(acc) == "DEEPSPEED":
        return optimizer
    return inner


def prepare_parts(loop):
    """Loop.prepare_parts: accelerator.prepare() of the model, the optimizer and every DataLoader the loop's build_*
    methods made (DDP/FSDP wrapping, device placement, each process's share of the batches), then what only the
    prepared parts tell: the parameters frozen at the start, an epoch's repeated last round, a DeepSpeed config's
    own accumulation."""
    from . import loaders

    acc = loop.accelerator
    test = [loop.test_dataloader] if loop.test_dataloader is not None else []
    held_out = test + list(loop.extra_eval_dataloaders.values())
    loaders.seed_variant_loaders(acc, loop.cfg, loop.train_dataloader, [loop.eval_dataloader, *held_out])
    with models.trainable(loop.frozen_for_later):  # DDP registers only what requires grad: see configure_ddp
        loop.model, loop.optimizer, loop.train_dataloader, loop.eval_dataloader, *held_out = acc.prepare(
            loop.model, loop.optimizer, loop.train_dataloader, loop.eval_dataloader, *held_out
        )
    loop.test_dataloader = held_out.pop(0) if test else None
    loop.extra_eval_dataloaders = dict(zip(loop.extra_eval_dataloaders, held_out))
    loop.frozen_at_start = frozen_ids(loop.model)  # what unfreezing may make trainable
    repeats = no_repeats_in_training(loop.train_dataloader, loop.train_sampler,  # the last round
                                     merge=loop.checkpointer.merged_short_rounds())
    if repeats:  # a variant's sampler, which accelerate fills as it does, or an older checkpoint's epochs
        loop.warn(repeats)
    check_accumulation(acc, loop.cfg)  # what prepare() made of a DeepSpeed config's own count


def prepare_for_scoring(loop):
    """Loop.setup_evaluation's prepare (--eval_only): the model placed, under mixed precision and --torch_compile,
    but not wrapped for training (DDP, FSDP: every process holds it whole and scores its share), an evaluation batch
    that fits with --auto_find_batch_size, and every evaluation DataLoader sharded among the processes."""
    acc = loop.accelerator
    loop.model = acc.prepare_model(loop.model, evaluation_mode=True)
    loop.model = models.autocast_scoring(loop.model, loop.cfg, acc)  # --torch_dtype without mixed precision
    if loop.cfg.auto_find_batch_size:  # (the loaders are rebuilt for it)
        from . import memory

        memory.choose_eval_batch_size(loop)
    loop.eval_dataloader = acc.prepare_data_loader(loop.eval_dataloader)
    if loop.test_dataloader is not None:
        loop.test_dataloader = acc.prepare_data_loader(loop.test_dataloader)
    loop.extra_eval_dataloaders = {name: acc.prepare_data_loader(loader)
                                   for name, loader in loop.extra_eval_dataloaders.items()}
