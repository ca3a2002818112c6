"""What accelerate lets a user set outside loop's flags (accelerate launch flags, an accelerate config file,
ACCELERATE_* variables) either runs as asked and is said, or is refused in one line (audit37)."""
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

from conftest import ROOT, env, tiny_args
from loop.errors import UserError


def plugin_acc(backend, mode=None):
    from accelerate.utils import DynamoBackend

    plugin = SimpleNamespace(backend=DynamoBackend(backend.upper()), mode=mode)
    return SimpleNamespace(state=SimpleNamespace(dynamo_plugin=plugin))


def test_accelerates_dynamo_becomes_torch_compile_or_is_refused():
    """accelerate's dynamo compiled the DDP wrapper, which its unwrap_model rewrote on rank 0 alone: with
    accumulation the ranks disagreed on skipping the gradient sync and hung until --ddp_timeout; nothing said the
    model was compiled and inputs were not bucketed. Inductor now runs as --torch_compile (accelerate's own compile
    turned off: compiled once), with accelerate's mode; another backend is refused."""
    from accelerate.utils import DynamoBackend

    from loop import TrainConfig, distributed

    cfg, acc = TrainConfig(), plugin_acc("inductor")
    said = distributed.take_over_dynamo(cfg, acc)
    assert cfg.torch_compile and cfg.torch_compile_mode is None and acc.state.dynamo_plugin.backend == DynamoBackend.NO
    assert said.startswith("accelerate's dynamo backend inductor runs as --torch_compile")
    cfg, acc = TrainConfig(), plugin_acc("inductor", mode="max-autotune-no-cudagraphs")
    assert "(mode max-autotune-no-cudagraphs)" in distributed.take_over_dynamo(cfg, acc)
    assert cfg.torch_compile_mode == "max-autotune-no-cudagraphs"
    with pytest.raises(UserError, match=r"--torch_compile_mode reduce-overhead \(CUDA graphs\) cannot accumulate"):
        distributed.take_over_dynamo(TrainConfig(gradient_accumulation_steps=2), plugin_acc("inductor", "reduce-overhead"))
    with pytest.raises(UserError, match=r"accelerate's dynamo mode 'max-autotune' and --torch_compile_mode default "
                                        r"differ"):
        distributed.take_over_dynamo(TrainConfig(torch_compile_mode="default"), plugin_acc("inductor", "max-autotune"))
    with pytest.raises(UserError, match=r"accelerate's dynamo backend 'eager' .* is not one loop runs: it compiles "
                                        r"with inductor through --torch_compile; set the backend to no"):
        distributed.take_over_dynamo(TrainConfig(), plugin_acc("eager"))
    cfg = TrainConfig()
    assert distributed.take_over_dynamo(cfg, plugin_acc("no")) is None and not cfg.torch_compile


@pytest.mark.parametrize("variables, words", [
    ({"ACCELERATE_USE_FSDP": "true"}, ["the accelerate config asks for FSDP, but accelerate runs MULTI_CPU here",
                                       "FSDP needs GPUs"]),
    ({"ACCELERATE_USE_DEEPSPEED": "true"}, ["asks for DeepSpeed, but accelerate runs MULTI_CPU"]),
    ({"ACCELERATE_GRADIENT_ACCUMULATION_STEPS": "2"}, [
        "ACCELERATE_GRADIENT_ACCUMULATION_STEPS=2 is not read by loop: it accumulates --gradient_accumulation_steps "
        "(1 now); pass --gradient_accumulation_steps 2, or unset the variable."]),
])
def test_accelerate_settings_that_would_not_run_are_one_line(monkeypatch, variables, words):
    """An FSDP or DeepSpeed config under ACCELERATE_USE_CPU=true trained plain DDP (accelerate enables them on GPUs
    only), and ACCELERATE_GRADIENT_ACCUMULATION_STEPS did nothing (our plugin wins): both without a word."""
    from accelerate.utils import DistributedType

    from loop import distributed

    for k, v in variables.items():
        monkeypatch.setenv(k, v)
    acc = SimpleNamespace(num_processes=2, distributed_type=DistributedType.MULTI_CPU, gradient_accumulation_steps=1)
    with pytest.raises(UserError) as e:
        distributed.check_world(acc)
    for w in words:
        assert w in str(e.value), str(e.value)
    acc.gradient_accumulation_steps = 2  # the same number as ours: nothing to say
    if "ACCELERATE_GRADIENT_ACCUMULATION_STEPS" in variables:
        distributed.check_world(acc)
    if "ACCELERATE_GRADIENT_ACCUMULATION_STEPS" in variables:
        # accelerate launch exports a DeepSpeed config's value, `auto` too (configure_deepspeed judges it): no refusal
        monkeypatch.setenv("ACCELERATE_GRADIENT_ACCUMULATION_STEPS", "auto")
        distributed.check_world(SimpleNamespace(num_processes=2, distributed_type=DistributedType.MULTI_CPU,
                                                gradient_accumulation_steps=1))
        monkeypatch.setenv("ACCELERATE_GRADIENT_ACCUMULATION_STEPS", "4")
        distributed.check_world(SimpleNamespace(num_processes=2, distributed_type=DistributedType.DEEPSPEED,
                                                gradient_accumulation_steps=1))
    if "ACCELERATE_USE_FSDP" in variables:  # where accelerate runs it
        distributed.check_world(SimpleNamespace(num_processes=2, distributed_type=DistributedType.FSDP,
                                                gradient_accumulation_steps=1))


def test_accelerate_dynamo_from_the_environment_compiles_once_inside_the_wrapper(tiny_model, tiny_data, tmp_path):
    """End to end with accelerate reading ACCELERATE_DYNAMO_BACKEND (what accelerate launch --dynamo_backend and a
    config file's dynamo_config set): the run's start turns it into --torch_compile and accelerate compiles nothing."""
    args = tiny_args(tiny_model, tiny_data, str(tmp_path / "out"))
    code = ("import sys; from loop import Loop, parse_args; loop = Loop(parse_args(sys.argv[1:])); acc = loop.start(); "
            "print('RESULT', loop.cfg.torch_compile, acc.state.dynamo_plugin.backend.value)")
    proc = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=env(ACCELERATE_DYNAMO_BACKEND="inductor"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "RESULT True NO" in proc.stdout and "runs as --torch_compile" in proc.stdout, proc.stdout[-2000:]


SRUN_TWO = {"SLURM_JOB_ID": "7", "SLURM_NTASKS": "2", "SLURM_STEP_ID": "0", "SLURM_STEP_NUM_TASKS": "2",
            "SLURM_PROCID": "1", "SLURM_LOCALID": "1", "SLURM_STEP_TASKS_PER_NODE": "2"}


@pytest.mark.parametrize("variables, processes, refused", [
    (SRUN_TWO, 1, True),  # srun -n 2 python loop/train.py: two runs of their own
    ({**SRUN_TWO, "SLURM_STEP_NUM_TASKS": "16", "SLURM_NTASKS": "16"}, 1, True),
    ({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "4", "SLURM_PROCID": "0"}, 1, False),  # a batch script (no step) of 4 tasks
    # srun -n 1 inside an allocation of several tasks (srun sets the step's SLURM_NTASKS)
    ({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "1", "SLURM_STEP_ID": "0", "SLURM_STEP_NUM_TASKS": "1"}, 1, False),
    # srun --ntasks-per-node=1 ./launch.sh on 2 nodes: its launcher's processes have WORLD_SIZE and one group
    ({**SRUN_TWO, "SLURM_STEP_TASKS_PER_NODE": "1(x2)", "WORLD_SIZE": "16"}, 16, False),
    (SRUN_TWO, 2, False),  # tasks that did form one run (an MPI launch accelerate reads): nothing to refuse
])
def test_slurm_tasks_that_would_each_train_alone_are_refused(monkeypatch, variables, processes, refused):
    """srun -n 2 python loop/train.py (no launcher: no WORLD_SIZE) started two runs of their own into the same
    --output_dir (w8). A batch script's SLURM_NTASKS counts the tasks the allocation may start, not copies of the
    command: a run there, or in an srun -n 1 step, is one run."""
    from accelerate.utils import DistributedType

    from loop import distributed

    for name in [n for n in os.environ if n.startswith("SLURM_")] + ["WORLD_SIZE"]:
        monkeypatch.delenv(name, raising=False)
    for k, v in variables.items():
        monkeypatch.setenv(k, v)
    acc = SimpleNamespace(num_processes=processes, gradient_accumulation_steps=1,
                          distributed_type=DistributedType.NO if processes == 1 else DistributedType.MULTI_GPU)
    if not refused:
        distributed.check_world(acc)
        return
    with pytest.raises(UserError) as e:
        distributed.check_world(acc)
    tasks = variables["SLURM_STEP_NUM_TASKS"]
    assert str(e.value) == (
        f"SLURM started this command as {tasks} tasks (SLURM_STEP_NUM_TASKS={tasks}) that no launcher joined into one "
        f"run, so each would train alone into the same --output_dir; start one launcher per node, which starts the "
        f"processes: srun --ntasks-per-node=1 ./launch.sh -- ... (GPU nodes), or srun -n 1 accelerate launch (or "
        f"torchrun) loop/train.py ...")


def test_srun_tasks_without_a_launcher_stop_before_the_output_dir(tiny_model, tiny_data, tmp_path):
    """The whole command line as one of srun -n 2's tasks: the one line, exit 2, nothing written."""
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "loop/train.py"),
                           *tiny_args(tiny_model, tiny_data, str(out))], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env=env(**SRUN_TWO))
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert [line for line in proc.stderr.splitlines() if line.startswith("error:")] == [
        "error: SLURM started this command as 2 tasks (SLURM_STEP_NUM_TASKS=2) that no launcher joined into one run, "
        "so each would train alone into the same --output_dir; start one launcher per node, which starts the "
        "processes: srun --ntasks-per-node=1 ./launch.sh -- ... (GPU nodes), or srun -n 1 accelerate launch (or "
        "torchrun) loop/train.py ..."]
    assert not out.exists()
