"""--auto_find_batch_size: the largest per-device training batch that fits in the device's memory (and an
evaluation batch that does).

Trainer's option of that name halves the batch after an out-of-memory error and starts training over
with fewer examples per optimizer step. Here the search happens before training, on the run's worst
micro-batch, and keeps the recipe: --per_device_train_batch_size goes down through divisors of itself,
each at most half the last (24, 12, 6, 3, 1), and --gradient_accumulation_steps up by as much, so an
optimizer step still averages the same number of examples and the schedule, the learning rate and the
results stay those of the batch asked for.

The trial is one forward and backward pass through the loop's own compute_loss (a variant's extra
passes there count; what an overridden training_step holds beside them does not: examples/fgm.py) on the longest training example repeated to fill the batch (batches are padded to their
longest row, and the loop trains its longest batch first), with room for what training holds beside it:
AdamW's two moments per trainable weight, and under DDP its gradient buckets. It runs before the model
is wrapped (no collective can hang on one rank's failure), with the random-number state put back and
the gradients dropped afterwards: a run that needed no halving trains exactly as without the option.

Evaluation (Trainer's search would restart training at a smaller batch when an evaluation an hour in
runs out of memory) gets its own trial: one pass of evaluation_step, without gradients, on the longest
evaluation or test example repeated to --per_device_eval_batch_size, beside the same reserve; halved
until it fits. The evaluation batch changes no score, so a resumed run searches it again.
"""

import gc
import re

import torch

from . import models
from .errors import UserError
from .loaders import padded_width
from .resume_checks import found_batch_size
from .splits import WEIGHT, extra_sets


def is_out_of_memory(e):
    """CUDA/XPU/MPS/CPU out-of-memory errors (accelerate's list, which find_executable_batch_size uses)."""
    from accelerate.utils.memory import should_reduce_batch_size

    return isinstance(e, torch.OutOfMemoryError) or should_reduce_batch_size(e)


def clip(e, width=200):
    """An out-of-memory error in a line: CUDA's names the size it tried and what is free, then advice."""
    msg = " ".join(str(e).split()) or type(e).__name__
    msg = re.sub(r"^\[enforce fail at [^\]]*\]\s*(?:(?:err == 0|data)\s*\.\s*)?", "", msg)  # torch's CPU allocator: its C++ check
    # one clause inside our sentence: a sentence's first word in lower case (a name like DefaultCPUAllocator kept)
    msg = re.sub(r"\.\s+([A-Z]\w*)", lambda m: "; " + (m.group(1).lower() if m.group(1)[1:].islower() else m.group(1)),
                 msg)
    if len(msg) > width:
        return msg[:width].rsplit(" ", 1)[0].rstrip(";,. ") + " ..."
    return msg.rstrip(".")


def raise_if_out_of_memory(loop, e, batch, what):
    """Raise the one line of out_of_memory in place of `e` when `e` is running out of memory; else return
    (the caller re-raises `e` itself)."""
    if is_out_of_memory(e):
        raise out_of_memory(loop, e, batch, what) from e


def out_of_memory(loop, e, batch, what):
    """The one line for an out-of-memory error a run met while training (`what` "training") or scoring a
    split ("eval", "test"), naming the batch and what to change (the error itself stays the cause, shown
    with --debug)."""
    from collections.abc import Mapping

    ids = batch.get("input_ids") if isinstance(batch, Mapping) else None  # (a BatchEncoding is one)
    on = f"on a batch of {ids.shape[0]} x {ids.shape[1]} tokens" if torch.is_tensor(ids) and ids.dim() == 2 \
        else "on a batch"
    acc = getattr(loop, "accelerator", None)
    if acc is not None and acc.num_processes > 1:  # one process ran out: it alone says so (UserError.alone)
        on += f" on process {acc.process_index}"
    if what == "training":
        fix = ("add --auto_find_batch_size (a new run), or lower --per_device_train_batch_size and raise "
               "--gradient_accumulation_steps by as much" + ("" if loop.cfg.gradient_checkpointing else
                                                             ", or add --gradient_checkpointing")
               + ", or lower --max_length")
        return UserError(f"out of memory in a training step {on} ({clip(e)}); {fix}.", alone=True)
    return UserError(f"out of memory scoring the {'evaluation' if what == 'eval' else what} split {on} "
                     f"({clip(e)}); lower --per_device_eval_batch_size (a resumed run may change it) or add "
                     f"--auto_find_batch_size.", alone=True)


def free_memory():
    gc.collect()
    from accelerate.utils.memory import clear_device_cache

    clear_device_cache(garbage_collection=False)


def check(cfg, accelerator):
    """Before any work: the search needs the whole model on each device."""
    from .distributed import sharder

    if cfg.auto_find_batch_size and not cfg.eval_only and sharder(accelerator):
        raise UserError(f"--auto_find_batch_size tries batches on the whole model, which {sharder(accelerator)} "
                        f"shards; drop it and set --per_device_train_batch_size (with --gradient_accumulation_steps "
                        f"for the examples per step).")


def process_rows(loop, ds):
    """The most rows of split `ds` one process gets (its share, rounded up): no batch of it holds more."""
    return -(-len(ds) // loop.accelerator.num_processes)


def trial(loop, rows, reserve_slots):
    """One forward and backward pass of `rows` copies of the longest training example, beside
    `reserve_slots` tensors the size of each trainable weight; raises what it raises (out of memory)."""
    from .contract import loss_and_outputs
    acc, model = loop.accelerator, loop.model
    longest = int(loop.data.train_lengths.argmax())
    # no batch holds more rows than a process gets: a batch asked larger than the data is tried at that size
    rows = min(rows, process_rows(loop, loop.data.train))
    batch = loop.train_dataloader.collate_fn([dict(loop.data.train[longest]) for _ in range(rows)])
    batch.pop(WEIGHT, None)  # the loss is weighed without them here: the memory is the same
    batch = {k: v.to(acc.device) for k, v in batch.items()}
    reserve = [torch.empty_like(p) for p in model.parameters() if p.requires_grad for _ in range(reserve_slots)]
    # a number a variant tracks in compute_loss is not logged from the trial, nor its side effects made
    loop.tracked.paused = loop.trial_pass = True
    try:
        with acc.autocast():
            loss, _ = loss_and_outputs(loop.compute_loss(model, batch))
        loss.backward()
    finally:
        loop.tracked.paused = loop.trial_pass = False
        model.zero_grad(set_to_none=True)
        del reserve, batch


def longest_row(ds):
    """The longest example of a tokenized split (a dict of its columns); a variant's split that is no
    datasets.Dataset (a list of rows) is read row by row."""
    try:
        import pyarrow.compute as pc

        lengths = pc.list_value_length(ds.with_format("arrow")[:]["input_ids"]).to_numpy(zero_copy_only=False)
        return dict(ds[int(lengths.argmax())])
    except (AttributeError, KeyError, TypeError):
        return dict(max((ds[i] for i in range(len(ds))), key=lambda row: len(row["input_ids"])))


def eval_trial(loop, longest, rows, reserve_slots):
    """One evaluation pass (the loop's own evaluation_step, no gradients) of `rows` copies of the example
    `longest`, beside `reserve_slots` tensors the size of each trainable weight (AdamW's moments stay in
    memory while a run evaluates); raises what it raises (out of memory)."""
    acc, model = loop.accelerator, loop.model
    batch = loop.eval_dataloader.collate_fn([dict(longest) for _ in range(rows)])
    batch = {k: v.to(acc.device) for k, v in batch.items()}
    reserve = [torch.empty_like(p) for p in model.parameters() if p.requires_grad for _ in range(reserve_slots)]
    try:
        with torch.no_grad(), acc.autocast():
            loop.evaluation_step(batch)
    finally:
        del reserve, batch


def find_eval_batch_size(loop):
    """(rows, width, failures) for evaluation: --per_device_eval_batch_size, or the first of its halvings
    whose batch of each split's longest example fits (the batch changes no score: any size may be tried);
    `width`, the widest trial's tokens per row. Every process tries on its own device; the smallest answer
    is everyone's; not even one row is one error line, on every process."""
    cfg, acc, model = loop.cfg, loop.accelerator, loop.model
    rows, failures, width = cfg.per_device_eval_batch_size, [], 0
    training = not cfg.eval_only  # then AdamW's moments (and DDP's buckets) sit beside an evaluation
    slots = (2 + (1 if acc.num_processes > 1 else 0)) if training else 0
    model.to(acc.device)  # where prepare() would put it (a resumed run skipped the training search, which does)
    was_training = model.training
    model.eval()
    splits = [ds for ds in scored_splits(loop) if len(ds)]
    with models.rng_kept(acc.device):
        for ds in splits:  # (a variant's evaluation_step may draw random numbers: MC dropout)
            longest = longest_row(ds)
            width = max(width, trial_width(loop, len(longest["input_ids"])))  # the widest trial, for the messages
            cap = process_rows(loop, ds)  # no batch of this split holds more rows
            rows = search(rows, lambda n: eval_trial(loop, longest, min(n, cap), slots), lambda n: n // 2, failures)
    model.train(was_training)
    rows = smallest(acc, rows)
    if not rows:
        why = f" ({failures[-1][1]})" if failures and failures[-1][0] == 1 else " (on another process)"
        raise UserError(f"--auto_find_batch_size: not even one evaluation example of {width} tokens fits in memory"
                        f"{why}; lower --max_length.", together=True)
    return rows, width, failures


def trial_width(loop, longest=None):
    """The tokens per row of a trial batch: the longest training example (or `longest` tokens), padded as
    its batch would be."""
    longest = int(loop.data.train_lengths.max()) if longest is None else longest
    return int(padded_width(longest, getattr(loop, "pad_multiple", 1), loop.max_length))


def search(rows, attempt, next_rows, failures):
    """Call attempt(rows) until it runs without running out of memory, trying next_rows(rows) after each
    failure (appending (rows, the error in a clause) to `failures`); returns the rows that fit, or 0 when
    none did. Any other error is raised."""
    while rows:
        error = None
        try:
            attempt(rows)
        except Exception as e:  # noqa: BLE001 (anything but running out of memory is raised)
            if not is_out_of_memory(e):
                raise
            error = clip(e)
        free_memory()
        if error is None:
            return rows
        failures.append((rows, error))
        rows = next_rows(rows)
    return 0


def smallest(accelerator, rows):
    """The smallest batch any process could take (0: one could take none): everyone's."""
    if accelerator.num_processes == 1:
        return rows
    import torch.distributed as dist

    t = torch.tensor([rows], device=accelerator.device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return int(t.item())


def smaller(rows, asked):
    """The next batch to try after `rows` failed: the largest divisor of `asked` at most half of `rows`
    (so rows x accumulation stays `asked` x the accumulation asked for); 0 after 1."""
    return max((d for d in range(1, rows // 2 + 1) if asked % d == 0), default=0)


def find_batch_size(loop):
    """(rows, accumulation, failures): the per-device batch asked for, or the first of its smaller()
    divisors that fits, with the accumulation that keeps the examples per optimizer step; `failures` lists
    (rows, the error in a clause) of each batch that did not fit. Every process tries on its own device;
    the smallest answer is everyone's. When not even one row fits: one error line, on every process."""
    cfg, acc, model = loop.cfg, loop.accelerator, loop.model
    asked, accumulation = cfg.per_device_train_batch_size, cfg.gradient_accumulation_steps
    rows, failures = asked, []
    model.to(acc.device)  # where prepare() would put it
    slots = 2 + (1 if acc.num_processes > 1 else 0)  # AdamW's two moments, and DDP's gradient buckets
    was_training = model.training
    model.train()
    cap = process_rows(loop, loop.data.train)  # a trial holds at most the rows a process gets

    def next_rows(n):  # a failed trial of `cap` rows fails every batch of `cap` or more: skip them
        m = smaller(n, asked)
        while m and n >= cap and m >= cap:
            m = smaller(m, asked)
        return m

    with models.rng_kept(acc.device):
        # (the trial's dropout must not move the run's random numbers)
        rows = search(rows, lambda n: trial(loop, n, slots), next_rows, failures)
    model.train(was_training)
    rows = smallest(acc, rows)
    if not rows:
        why = f" ({failures[-1][1]})" if failures and failures[-1][0] == 1 else " (on another process)"
        ways = ["lower --max_length"] + (["add --gradient_checkpointing"] if not cfg.gradient_checkpointing else []) \
            + (["train LoRA adapters (--lora_r) instead of every weight"] if not cfg.lora_r else [])
        raise UserError(f"--auto_find_batch_size: not even one training example of {trial_width(loop)} tokens fits "
                        f"in memory{why}; {', or '.join(ways)}.", together=True)
    return rows, accumulation * asked // rows, failures


def choose_batch_size(loop):
    """Loop.find_batch_size: the training batch (find_batch_size; a resumed run keeps its checkpoint's) and
    the evaluation batch (find_eval_batch_size), each said in one line, the DataLoaders rebuilt for them."""
    if not loop.checkpointer.resume_path:
        choose_train_batch_size(loop)
    choose_eval_batch_size(loop)


def choose_eval_batch_size(loop):
    """An evaluation batch that does not fit is halved (a run that scores an hour in would else fail there)."""
    cfg = loop.cfg
    rows, width, failures = find_eval_batch_size(loop)
    asked = cfg.per_device_eval_batch_size
    if rows == asked:
        splits = scored_splits(loop)
        loop.print(f"--auto_find_batch_size: an evaluation batch of {rows} x {width} tokens fits{tried_at(loop, rows, splits)}")
        return
    first = next((why for r, why in failures if r == asked), "on another process")
    loop.print(f"--auto_find_batch_size: an evaluation batch of {asked} x {width} tokens does not fit ({first}); "
               f"evaluating {rows} per device")
    cfg.per_device_eval_batch_size = rows
    loop.train_dataloader, loop.eval_dataloader = loop.build_dataloaders()
    loop.test_dataloader = loop.build_test_dataloader()  # batched like the evaluation loader
    loop.extra_eval_dataloaders = loop.build_extra_eval_dataloaders()
    made_by = [(loop.eval_dataloader, "build_dataloaders"), (loop.test_dataloader, "build_test_dataloader")] + \
        [(loader, "build_extra_eval_dataloaders") for loader in loop.extra_eval_dataloaders.values()]
    for loader, method in made_by:
        made = getattr(loader, "batch_size", None)
        if made is not None and made > rows:  # an override that fixes its own evaluation batch
            raise UserError(f"--auto_find_batch_size chose evaluation batches of {rows}, but {type(loop).__name__}."
                            f"{method} makes batches of {made}: build them from self.cfg.per_device_eval_batch_size, "
                            f"or drop --auto_find_batch_size.", together=True)


def scored_splits(loop):
    """The splits evaluation scores: the evaluation split, the held-out test split and the extra
    evaluation sets (those there are)."""
    data = loop.data
    return [ds for ds in (data.eval, data.test, *extra_sets(data).values()) if ds is not None]


def tried_at(loop, rows, splits):
    """' (tried at 16 rows, all a process gets of the data)' when no split gives a process `rows` rows (the
    trials are capped there: a larger batch never happens); else ''."""
    cap = max(process_rows(loop, ds) for ds in splits)
    return f" (tried at {cap} rows, all a process gets of the data)" if cap < rows else ""


def choose_train_batch_size(loop):
    cfg = loop.cfg
    rows, accumulation, failures = find_batch_size(loop)
    width = trial_width(loop)
    if not failures and rows == cfg.per_device_train_batch_size:
        loop.print(f"--auto_find_batch_size: a batch of {rows} x {width} tokens fits{tried_at(loop, rows, [loop.data.train])}")
        return
    first = next((why for r, why in failures if r == cfg.per_device_train_batch_size), "on another process")
    tried = tried_at(loop, cfg.per_device_train_batch_size, [loop.data.train])
    loop.print(f"--auto_find_batch_size: a batch of {cfg.per_device_train_batch_size} x {width} tokens does not fit "
               f"({first}){tried}; training with {rows} per device x {accumulation} accumulation steps (the same "
               f"{rows * accumulation} examples per process and optimizer step)")
    use_batch_size(loop, rows, accumulation)
    made = getattr(loop.train_sampler, "batch_size", rows)
    if made != rows:  # an overridden build_train_sampler that fixes its own batch
        raise UserError(f"--auto_find_batch_size chose {rows} rows per batch, but {type(loop).__name__}."
                        f"build_train_sampler makes batches of {made}: build them from "
                        f"self.cfg.per_device_train_batch_size, or drop --auto_find_batch_size.", together=True)


def resume_batch_size(loop):
    """A resumed --auto_find_batch_size run trains with the batch its checkpoint found (the skipped
    batches and the schedule are the checkpoint's); no new search. Before the DataLoaders are built."""
    if not (loop.cfg.auto_find_batch_size and loop.checkpointer.resume_path):
        return
    found = found_batch_size(loop.checkpointer.resume_state().get("config", {}), loop.cfg.to_dict())
    if found and list(found) != [loop.cfg.per_device_train_batch_size, loop.cfg.gradient_accumulation_steps]:
        loop.print(f"--auto_find_batch_size: resuming with the checkpoint's {found[0]} per device x {found[1]} "
                   f"accumulation steps")
        use_batch_size(loop, *found, rebuild=False)


def use_batch_size(loop, rows, accumulation, rebuild=True):
    """Train with `rows` per device and `accumulation` micro-batches per step (the config, which
    checkpoints record, the accelerator's count, and the DataLoaders when they exist)."""
    loop.cfg.per_device_train_batch_size, loop.cfg.gradient_accumulation_steps = rows, accumulation
    loop.accelerator.gradient_accumulation_steps = accumulation
    if rebuild:
        loop.train_dataloader, loop.eval_dataloader = loop.build_dataloaders()
