"""launch.sh: the command it builds (--dry-run, with fake nvidia-smi and SLURM variables), how it
passes a stop signal on, and the example accelerate configs."""

import glob
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT

LAUNCH = os.path.join(ROOT, "launch.sh")
TRAIN = os.path.join(ROOT, "loop", "train.py")
IN_PLACE = os.path.join(ROOT, "loop", "accelerate_launch.py")  # one process: accelerate launch's flags, no launcher
CLEAR = ("NNODES", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT", "NPROC_PER_NODE", "MIXED_PRECISION",
         "ACCELERATE_CONFIG", "CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "PYTHON")


def fake_bin(tmp_path, gpus=(), name="bin"):
    """A PATH folder with an nvidia-smi that reports `gpus` (compute capabilities)."""
    d = tmp_path / name
    d.mkdir()
    lines = "\n".join(f"GPU {i}: Fake GPU (UUID: GPU-{i})" for i in range(len(gpus)))
    caps = "\n".join(str(c) for c in gpus)
    script = d / "nvidia-smi"
    script.write_text(f"""#!/bin/sh
[ {len(gpus)} -eq 0 ] && {{ echo "NVIDIA-SMI has failed" >&2; exit 9; }}
case "$*" in
  *compute_cap*) printf '%s\\n' "{caps}" ;;
  *) printf '%s\\n' "{lines}" ;;
esac
""")
    script.chmod(0o755)
    return str(d)


def launch_env(bin_dir, **extra):
    """launch.sh's environment: PATH is `bin_dir` (its fake nvidia-smi, accelerate or python), then the system's
    folders; PYTHON (the one process's interpreter) is `bin_dir`'s fake python where a test made one, else this
    test's own, which has accelerate. An `extra` variable given as None is left unset (PYTHON=None: launch.sh picks)."""
    env = {k: v for k, v in os.environ.items() if k not in CLEAR and not k.startswith("SLURM_")}
    env["PATH"] = bin_dir + os.pathsep + "/usr/bin:/bin"
    fake = os.path.join(bin_dir, "python")
    env["PYTHON"] = fake if os.path.exists(fake) else sys.executable
    env.update({k: str(v) for k, v in extra.items()})
    return {k: v for k, v in env.items() if extra.get(k, "") is not None}


def dry_run(bin_dir, *train_args, **env):
    p = subprocess.run([LAUNCH, "--dry-run", "--", *train_args], env=launch_env(bin_dir, **env),
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return shlex.split(p.stdout)


def flags(cmd):
    """{--flag: value} for accelerate launch's flags (before train.py): `accelerate launch` starts several
    processes, `$PYTHON loop/accelerate_launch.py` (the same flags) one."""
    assert cmd[:2] == ["accelerate", "launch"] or cmd[1] == IN_PLACE, cmd
    head = cmd[2:cmd.index(TRAIN)]
    out, i = {}, 0
    while i < len(head):
        if i + 1 < len(head) and not head[i + 1].startswith("--"):
            out[head[i]] = head[i + 1]
            i += 2
        else:
            out[head[i]] = True
            i += 1
    return out


def test_slurm_two_nodes(tmp_path):
    cmd = dry_run(fake_bin(tmp_path, [9.0] * 4), "--config", "configs/imdb.yaml", "--output_dir", "out dir",
                  SLURM_JOB_ID=4242, SLURM_NNODES=2, SLURM_NODEID=1, SLURM_JOB_NODELIST="gpu-[003-005,010],cpu1",
                  SLURM_STEP_NUM_TASKS=2)
    assert flags(cmd) == {"--num_processes": "8", "--mixed_precision": "bf16", "--multi_gpu": True,
                          "--num_machines": "2", "--machine_rank": "1", "--main_process_ip": "gpu-003",
                          "--main_process_port": str(20000 + 4242), "--dynamo_backend": "no"}
    assert cmd[cmd.index(TRAIN) + 1:] == ["--config", "configs/imdb.yaml", "--output_dir", "out dir"]


@pytest.mark.parametrize("nodelist, first", [("node7", "node7"), ("node1,node2", "node1"), ("n[1-4]", "n1"),
                                             ("rack1-n[07,09-12]", "rack1-n07"), ("a[01-02]-ib,b1", "a01-ib"),
                                             ("login,gpu[1-2]", "login")])
def test_slurm_first_host(tmp_path, nodelist, first):
    cmd = dry_run(fake_bin(tmp_path, [8.0]), SLURM_JOB_ID=7, SLURM_NNODES=3, SLURM_NODEID=0,
                  SLURM_JOB_NODELIST=nodelist, SLURM_STEP_NUM_TASKS=3)
    assert flags(cmd)["--main_process_ip"] == first


def test_explicit_nodes_override_slurm_and_old_gpus_get_fp16(tmp_path):
    cmd = dry_run(fake_bin(tmp_path, [7.0, 7.0]), NNODES=3, NODE_RANK=2, MASTER_ADDR="10.0.0.1", MASTER_PORT=1234,
                  SLURM_JOB_ID=9, SLURM_NNODES=5, SLURM_NODEID=4, SLURM_JOB_NODELIST="x[1-5]")
    f = flags(cmd)
    assert (f["--num_processes"], f["--mixed_precision"], f["--num_machines"], f["--machine_rank"],
            f["--main_process_ip"], f["--main_process_port"]) == ("6", "fp16", "3", "2", "10.0.0.1", "1234")


def physical_cores():
    """What accelerate itself picks for one CPU process (psutil's physical cores)."""
    import psutil

    return psutil.cpu_count(logical=False)


def test_one_gpu_and_no_gpu(tmp_path):
    """One process starts as `$PYTHON loop/accelerate_launch.py <accelerate launch's flags>`, which becomes train.py
    (no launcher process in between); several as `accelerate launch`."""
    cmd = dry_run(fake_bin(tmp_path, [8.0], "one"))
    assert cmd[:2] == [sys.executable, IN_PLACE]
    f = flags(cmd)
    assert f == {"--num_processes": "1", "--mixed_precision": "bf16", "--num_machines": "1", "--dynamo_backend": "no"}
    cmd = dry_run(fake_bin(tmp_path, [], "none"))  # every value given: accelerate prints no "not passed" block
    assert cmd[:2] == [sys.executable, IN_PLACE]
    assert flags(cmd) == {"--cpu": True, "--num_processes": "1", "--num_cpu_threads_per_process": str(physical_cores()),
                          "--mixed_precision": "no", "--num_machines": "1", "--dynamo_backend": "no"}
    assert flags(dry_run(fake_bin(tmp_path, [], "none3"), OMP_NUM_THREADS=3))["--num_cpu_threads_per_process"] == "3"
    # OpenMP's list form (threads per nesting level) gives the first level's (was passed whole: accelerate's
    # 115-line usage, audit65 e3)
    assert flags(dry_run(fake_bin(tmp_path, [], "none4"), OMP_NUM_THREADS="4,1"))["--num_cpu_threads_per_process"] == "4"
    # CUDA_VISIBLE_DEVICES (set by SLURM for the allocation) wins over what nvidia-smi lists
    cmd = dry_run(fake_bin(tmp_path, [8.0] * 8, "eight"), CUDA_VISIBLE_DEVICES="2,5")
    assert cmd[:2] == ["accelerate", "launch"]
    f = flags(cmd)
    assert f["--num_processes"] == "2" and f["--multi_gpu"] is True


def test_cpu_threads_follow_the_cpus_the_job_may_use(tmp_path):
    """A CPU process took one thread per physical core of the machine, whatever the job was given: 64 threads on a
    SLURM job's 4 CPUs. Now the physical cores it may run on (its affinity: taskset, SLURM's binding), at most
    SLURM_CPUS_PER_TASK."""
    bin_dir = fake_bin(tmp_path, [])
    p = subprocess.run(["taskset", "-c", "0", LAUNCH, "--dry-run"], env=launch_env(bin_dir), capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert flags(shlex.split(p.stdout))["--num_cpu_threads_per_process"] == "1"
    assert flags(dry_run(bin_dir, SLURM_CPUS_PER_TASK=1))["--num_cpu_threads_per_process"] == "1"
    assert flags(dry_run(bin_dir, SLURM_CPUS_PER_TASK=4096))["--num_cpu_threads_per_process"] == str(physical_cores())


@pytest.mark.parametrize("tasks, localid, pty, refused", [
    ("2", "0", "", True), ("8(x2)", "0", "", True), ("1,2", "0", "", True), ("", "1", "", True),
    ("1(x4)", "0", "", False), ("1", "0", "", False), ("4", "0", "40123", False), ("4", "1", "40123", True)])
def test_more_than_one_slurm_task_per_node_is_refused(tmp_path, tasks, localid, pty, refused):
    """`#SBATCH --ntasks-per-node=8` and `srun ./launch.sh` started 8 launch.sh on a node, each a run of its own on
    one port and output_dir: one trained, the others failed (exit 2 under a traceback). Every task now refuses in one
    line naming srun --ntasks-per-node=1; one task per node goes on. The shell of `srun --ntasks-per-node=4 --pty
    bash` (task 0 of 4, whose other tasks ended at once; srun --pty sets SLURM_PTY_PORT) was refused too, where
    launch.sh runs once: it goes on, and only a task other than the node's first is refused there."""
    env = launch_env(fake_bin(tmp_path, [9.0]), SLURM_JOB_ID=5, SLURM_NNODES=2, SLURM_NODEID=0,
                     SLURM_JOB_NODELIST="n[1-2]", SLURM_LOCALID=localid, SLURM_NTASKS_PER_NODE=8,
                     **({"SLURM_STEP_TASKS_PER_NODE": tasks} if tasks else {}),
                     **({"SLURM_PTY_PORT": pty} if pty else {}))
    p = subprocess.run([LAUNCH, "--dry-run"], env=env, capture_output=True, text=True, timeout=60)
    if refused:
        assert p.returncode == 2 and p.stdout == "" and len(p.stderr.splitlines()) == 1, p.stderr
        assert "each would start a training run of its own" in p.stderr and "--ntasks-per-node=1" in p.stderr
    else:  # (SLURM_NTASKS_PER_NODE is the allocation's: a batch script running launch.sh itself once has it too)
        assert p.returncode == 0 and p.stderr == "", p.stderr


def test_nproc_per_node_counts_processes_not_gpus(tmp_path):
    """NPROC_PER_NODE=2 on a node with 8 GPUs: 2 GPU processes. On a node without a GPU it used to be
    taken for 2 GPUs (fp16, --multi_gpu on a CPU); now it is one line naming torchrun, exit 2."""
    f = flags(dry_run(fake_bin(tmp_path, [9.0] * 8, "eight"), NPROC_PER_NODE=2))
    assert (f["--num_processes"], f["--multi_gpu"], f["--mixed_precision"]) == ("2", True, "bf16")
    # one node, several processes: the job's port, so two jobs sharing a node do not clash
    f = flags(dry_run(fake_bin(tmp_path, [9.0] * 8, "slurm"), NPROC_PER_NODE=4, SLURM_JOB_ID=4242, SLURM_NNODES=1))
    assert f["--main_process_port"] == str(20000 + 4242) and f["--num_machines"] == "1"
    p = subprocess.run([LAUNCH, "--dry-run"], env=launch_env(fake_bin(tmp_path, [], "none"), NPROC_PER_NODE=2),
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "this node has no GPU" in p.stderr and "torchrun --nproc_per_node 2" in p.stderr
    p = subprocess.run([LAUNCH, "--dry-run"], env=launch_env(fake_bin(tmp_path, [9.0] * 2, "two"), NPROC_PER_NODE=4),
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "NPROC_PER_NODE=4 but this node has 2 GPU(s)" in p.stderr
    f = flags(dry_run(fake_bin(tmp_path, [], "none1"), NPROC_PER_NODE=1))
    assert (f["--cpu"], f["--num_processes"], f["--mixed_precision"]) == (True, "1", "no")
    # with an accelerate config (a TPU's) the file's processes ran, and NPROC_PER_NODE was ignored, said nowhere
    p = subprocess.run([LAUNCH, "--dry-run"], env=launch_env(fake_bin(tmp_path, [], "tpu2"), NPROC_PER_NODE=4,
                                                             ACCELERATE_CONFIG="configs/accelerate/tpu.yaml"),
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and len(p.stderr.splitlines()) == 1, p.stderr
    assert "NPROC_PER_NODE=4 but this node has no GPU" in p.stderr and "its num_processes" in p.stderr
    assert "'configs/accelerate/tpu.yaml'" in p.stderr
    # a NO or MULTI_CPU file starts one process without a GPU (its num_processes above 1 is refused): torchrun is said,
    # not "set them there", which that refusal answers
    p = subprocess.run([LAUNCH, "--dry-run"], env=launch_env(fake_bin(tmp_path, [], "none2"), NPROC_PER_NODE=2,
                                                             ACCELERATE_CONFIG="configs/accelerate/single_gpu.yaml"),
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and len(p.stderr.splitlines()) == 1, p.stderr
    assert "torchrun --nproc_per_node 2 loop/train.py" in p.stderr and "set them there" not in p.stderr


@pytest.mark.parametrize("name", ["python", "python3"])
def test_gpus_counted_by_torch_without_nvidia_smi(tmp_path, name):
    """ROCm nodes and containers without nvidia-smi: the GPUs come from torch.cuda.device_count(), asked of the
    interpreter launch.sh would run one process with: PYTHON, else the one it picks (here python3, where there is
    no `python`, which the probe used to ask: 0 GPUs, a CPU run beside them)."""
    d = tmp_path / "rocm"
    d.mkdir()
    python = d / name  # stands in for the interpreter: it has accelerate, 2 devices, bf16 supported
    python.write_text('#!/bin/sh\ncase "$*" in *device_count*) echo 2 ;; esac\nexit 0\n')
    python.chmod(0o755)
    write_script(d / "accelerate", SHIM)
    f = flags(dry_run(str(d), **({"PYTHON": str(python)} if name == "python" else {"PYTHON": None})))
    assert (f["--num_processes"], f["--multi_gpu"], f["--mixed_precision"]) == ("2", True, "bf16")


def write_script(path, text):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o755)


# A python without accelerate (python 2, the system's beside a venv's accelerate), and an `accelerate` that is no
# python script (a pyenv or conda shim): launch.sh's interpreter must be neither.
LACKS_ACCELERATE = "#!/bin/sh\necho \"ModuleNotFoundError: No module named 'accelerate'\" >&2\nexit 1\n"
SHIM = '#!/usr/bin/env bash\nexec python3 -m accelerate.commands.accelerate_cli "$@"\n'
THIS_PYTHON = f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n'  # this test's interpreter, which has accelerate


@pytest.mark.parametrize("scripts, picked", [
    (dict(python3=THIS_PYTHON, accelerate=SHIM), "python3"),  # no `python` (Debian, Ubuntu, CUDA images)
    (dict(python=LACKS_ACCELERATE, accelerate=f"#!{sys.executable}\n"), sys.executable),  # accelerate's own
    (dict(python=LACKS_ACCELERATE, python3=THIS_PYTHON, accelerate=SHIM), "python3"),
], ids=["no-python", "python-lacks-accelerate", "python3-before-python"])
def test_one_process_runs_under_a_python_that_has_accelerate(tmp_path, scripts, picked):
    """One process ran as `python loop/accelerate_launch.py` (before, `accelerate launch`, under accelerate's own
    interpreter): with no `python` on PATH it failed (exit 127), and with a `python` that lacks accelerate on
    ModuleNotFoundError (exit 1), where 2 GPUs' `accelerate launch` still started. It now runs under PYTHON, else
    the python that `accelerate` runs under, else the first of python3 and python that has accelerate."""
    bin_dir = fake_bin(tmp_path, [])
    for name, text in scripts.items():
        write_script(os.path.join(bin_dir, name), text)
    picked = os.path.join(bin_dir, picked) if picked in scripts else picked
    env = launch_env(bin_dir, PYTHON=None, PYTHONPATH=ROOT)
    p = subprocess.run([LAUNCH, "--dry-run"], env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert shlex.split(p.stdout)[:2] == [picked, IN_PLACE]
    if "python" not in scripts:  # and it starts: train.py under it (accelerate imported first) prints the version
        import loop

        p = subprocess.run([LAUNCH, "--", "--version"], env=env, capture_output=True, text=True, timeout=120)
        assert p.returncode == 0 and p.stdout.startswith(f"loop {loop.__version__} from "), p.stderr[-3000:]


PIP_WRAPPER = "#!/bin/sh\n'''exec' {} \"$0\" \"$@\"\n' '''\nimport sys\n"  # distlib's, for a path #! cannot hold


@pytest.mark.parametrize("folder, quote", [("venv a", True), ("v" * 130, False)], ids=["space", "long"])
def test_pips_sh_wrapper_names_accelerates_python(tmp_path, folder, quote):
    """pip writes `accelerate` as a /bin/sh wrapper where its interpreter's path holds a space or is too long for a
    #! line, the path on its second line, quoted where it holds a space: launch.sh found no python there, and with a
    python3 on PATH that lacks accelerate refused one process (exit 2) where `accelerate` itself worked."""
    bin_dir = fake_bin(tmp_path, [])
    venv = tmp_path / folder / "bin"
    venv.mkdir(parents=True)
    own = str(venv / "python")
    write_script(own, THIS_PYTHON)
    write_script(os.path.join(bin_dir, "python3"), LACKS_ACCELERATE)
    write_script(os.path.join(bin_dir, "accelerate"), PIP_WRAPPER.format(f'"{own}"' if quote else own))
    p = subprocess.run([LAUNCH, "--dry-run"], env=launch_env(bin_dir, PYTHON=None), capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, p.stderr
    assert shlex.split(p.stdout)[:2] == [own, IN_PLACE]


@pytest.mark.parametrize("python, said", [
    ("/nope/python", "PYTHON=/nope/python is no program this shell can run"),
    ("lacks", "does not run or has no accelerate"),
], ids=["missing", "no-accelerate"])
def test_a_given_python_is_checked(tmp_path, python, said):
    """PYTHON is set for other tools too: one that does not exist ended in setsid's "failed to execute" (127) after
    the start line, one without accelerate in a ModuleNotFoundError traceback (1). Each is now one line, exit 2."""
    bin_dir = fake_bin(tmp_path, [])
    if python == "lacks":
        python = os.path.join(bin_dir, "python2")
        write_script(python, LACKS_ACCELERATE)
    p = subprocess.run([LAUNCH, "--dry-run"], env=launch_env(bin_dir, PYTHON=python), capture_output=True, text=True,
                       timeout=60)
    assert (p.returncode, p.stdout) == (2, "") and len(p.stderr.splitlines()) == 1, p.stderr
    assert p.stderr.startswith("launch.sh: PYTHON=") and said in p.stderr and "unset it" in p.stderr


def test_no_python_with_accelerate_is_one_line(tmp_path):
    """No interpreter with accelerate: one line naming PYTHON, exit 2 (not setsid's "failed to execute python", 127).
    Several processes start with `accelerate launch`, which needs none of them."""
    for gpus in ([], [9.0, 9.0]):
        bin_dir = fake_bin(tmp_path, gpus, f"bin{len(gpus)}")
        for name, text in dict(python=LACKS_ACCELERATE, python3=LACKS_ACCELERATE, accelerate=SHIM).items():
            write_script(os.path.join(bin_dir, name), text)
        p = subprocess.run([LAUNCH, "--dry-run"], env=launch_env(bin_dir, PYTHON=None), capture_output=True,
                           text=True, timeout=60)
        if gpus:
            assert p.returncode == 0 and shlex.split(p.stdout)[:2] == ["accelerate", "launch"], p.stderr
            continue
        assert (p.returncode, p.stdout) == (2, "") and len(p.stderr.splitlines()) == 1, p.stderr
        assert p.stderr.startswith("launch.sh: found no Python with accelerate") and "set PYTHON" in p.stderr


def test_accelerate_config_file(tmp_path):
    cfg = os.path.join(ROOT, "configs", "accelerate", "fsdp.yaml")
    f = flags(dry_run(fake_bin(tmp_path, [9.0, 9.0]), ACCELERATE_CONFIG=cfg))
    assert f["--config_file"] == cfg and f["--num_processes"] == "2" and "--multi_gpu" not in f
    f = flags(dry_run(fake_bin(tmp_path, [], "tpu"), ACCELERATE_CONFIG="configs/accelerate/tpu.yaml"))
    assert f == {"--config_file": "configs/accelerate/tpu.yaml", "--dynamo_backend": "no"}  # no --cpu
    pipe = str(tmp_path / "config.fifo")  # what ACCELERATE_CONFIG=<(...) names: not a regular file, still read
    os.mkfifo(pipe)
    assert flags(dry_run(fake_bin(tmp_path, [9.0], "fifo"), ACCELERATE_CONFIG=pipe))["--config_file"] == pipe


@pytest.mark.slow  # ~6 s each: a launcher of its own
@pytest.mark.parametrize("config", [
    "compute_environment: LOCAL_MACHINE\ndistributed_type: 'NO'\nnum_processes: 1\nmixed_precision: 'no'\nuse_cpu: true\n",
    '{"compute_environment": "LOCAL_MACHINE", "distributed_type": "NO", "num_processes": 1, "use_cpu": true}',
    # json.dumps(indent="\t") after a blank line: read as JSON (YAML refuses a tab there; audit60 round-2 L5, L6)
    '\n{\n\t"compute_environment": "LOCAL_MACHINE",\n\t"distributed_type": "NO",\n\t"num_processes": 1,\n\t"use_cpu": '
    'true\n}\n',
    # YAML's flow style, braces and unquoted keys: YAML, not JSON (audit60 round-2: was refused as broken JSON)
    "{compute_environment: LOCAL_MACHINE, distributed_type: 'NO', num_processes: 1, use_cpu: true}"])
def test_an_accelerate_config_given_as_a_pipe_is_read(tmp_path, config):
    """ACCELERATE_CONFIG=<(...) (a config made on the fly): accelerate takes only a regular file, so the run
    stopped on "The passed configuration file `/dev/fd/63` does not exist" (audit59's leftover). The pipe is read
    once into a file of the launch's own: here the run gets as far as train.py's own check of its flags."""
    script = f'ACCELERATE_CONFIG=<(printf %s {shlex.quote(config)}) exec {shlex.quote(LAUNCH)} ' \
             f'--output_dir {shlex.quote(str(tmp_path / "out"))} --no_such_flag'
    p = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120,
                       env=launch_env(fake_bin(tmp_path, []), PYTHON=sys.executable, PYTHONPATH=ROOT))
    assert p.returncode == 2, p.stderr
    assert p.stderr.splitlines()[-1].startswith("error: unrecognized argument '--no_such_flag'"), p.stderr
    # a GPU-only one through a pipe on this node without a GPU: refused, naming the pipe (not launch.sh's copy)
    fsdp = config.replace("'NO'", "FSDP").replace('"NO"', '"FSDP"')
    p = subprocess.run(["bash", "-c", f"ACCELERATE_CONFIG=<(printf %s {shlex.quote(fsdp)}) exec {shlex.quote(LAUNCH)}"],
                       capture_output=True, text=True, timeout=120, env=launch_env(fake_bin(tmp_path, [], "fsdp")))
    assert p.returncode == 2 and p.stderr.startswith("launch.sh: ACCELERATE_CONFIG='/dev/fd/"), p.stderr
    assert "' (a pipe) asks for FSDP, which needs GPUs" in p.stderr, p.stderr


def test_a_link_to_launch_sh_or_sbatchs_copy_of_it_runs_the_repositorys_train_py(tmp_path):
    """launch.sh found loop/ beside the path it was started by: a link in ~/bin, or the copy `sbatch launch.sh`
    runs from SLURM's spool folder, started '<that folder>/loop/accelerate_launch.py', "can't open file", after
    saying "node 0 of 1" (audit60 u1). A link is followed; a copy takes the folder it was submitted from; a copy
    with neither is one line."""
    bin_dir = fake_bin(tmp_path, [])
    link, copy = tmp_path / "home_bin" / "launch.sh", tmp_path / "spool" / "slurm_script"
    for path in (link, copy):
        path.parent.mkdir()
    link.symlink_to(LAUNCH)
    shutil.copy(LAUNCH, copy)

    def launch(script, **env):
        return subprocess.run([str(script), "--dry-run"], env=launch_env(bin_dir, **env), capture_output=True,
                              text=True, timeout=60, cwd=tmp_path)

    train_py = os.path.join(ROOT, "loop", "train.py")
    for script, env in ((link, {}), (copy, {"SLURM_SUBMIT_DIR": ROOT})):
        p = launch(script, **env)
        assert p.returncode == 0 and train_py in shlex.split(p.stdout), p.stdout + p.stderr
    p = launch(copy, SLURM_SUBMIT_DIR=str(tmp_path))
    assert (p.returncode, p.stdout) == (2, "") and len(p.stderr.splitlines()) == 1, p.stderr
    assert p.stderr.startswith(f"launch.sh: no loop/train.py in {copy.parent} (this copy of launch.sh is outside")
    # the repository's own launch.sh (or a link to it) runs its own train.py, whatever folder the job was submitted
    # from, even one holding another checkout (audit60 round-2 mutant L2)
    other = tmp_path / "other_checkout"
    (other / "loop").mkdir(parents=True)
    (other / "loop" / "train.py").write_text("")
    for script in (LAUNCH, link):
        p = launch(script, SLURM_SUBMIT_DIR=str(other))
        assert p.returncode == 0 and train_py in shlex.split(p.stdout), p.stdout + p.stderr
    # a readlink without -f (macOS before 12.3): the script's path as given, which is the repository's here
    write_script(os.path.join(bin_dir, "readlink"), "#!/bin/sh\necho 'readlink: illegal option -- f' >&2\nexit 1\n")
    p = launch(LAUNCH)
    assert p.returncode == 0 and train_py in shlex.split(p.stdout), p.stdout + p.stderr


def test_multi_node_needs_master_addr(tmp_path):
    p = subprocess.run([LAUNCH, "--dry-run"], env=launch_env(fake_bin(tmp_path, [9.0]), NNODES=2),
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "MASTER_ADDR" in p.stderr


def test_example_accelerate_configs_load():
    from accelerate.commands.config.config_args import ClusterConfig

    kinds = {os.path.basename(f): ClusterConfig.from_yaml_file(f).distributed_type.value
             for f in glob.glob(os.path.join(ROOT, "configs", "accelerate", "*.yaml"))}
    assert kinds == {"single_gpu.yaml": "NO", "multi_gpu.yaml": "MULTI_GPU", "fsdp.yaml": "FSDP",
                     "deepspeed_zero2.yaml": "DEEPSPEED", "tpu.yaml": "XLA"}


def fake_python(tmp_path, body, name="bin"):
    """The one-process command (`python loop/accelerate_launch.py ...`, which becomes train.py) is `body` here."""
    # (launch.sh first asks PYTHON whether it has accelerate: python -c ...)
    (tmp_path / name / "python").write_text("#!/bin/bash\n[ \"$1\" = -c ] && exit 0\n" + body)
    (tmp_path / name / "python").chmod(0o755)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1, signal.SIGHUP, signal.SIGINT])
def test_signal_reaches_training_and_exit_code(tmp_path, sig):
    """A stop signal to launch.sh reaches the training process as SIGTERM; launch.sh exits 75.
    SIGHUP too (a dropped ssh session): it used to end launch.sh at once with 129 and leave the
    training running on, detached in its own session.

    `python` is a fake here that behaves like the one training process: it lists its pid in LOOP_PID_DIR,
    takes a moment to save, leaves the `preempted` mark and exits 75.
    """
    bin_dir = fake_bin(tmp_path, [])  # no GPU: one process
    log = tmp_path / "log"
    fake_python(tmp_path, f"""trap "echo worker got TERM >> {log}; sleep 1; echo saved >> {log}; touch $LOOP_PID_DIR/preempted; exit 75" TERM
touch "$LOOP_PID_DIR/$$"; echo started >> {log}; while :; do sleep 0.1; done
""")
    # SIGINT and SIGHUP at their default: a shell starts a background job (`pytest &`) with SIGINT ignored, `nohup`
    # with SIGHUP ignored, and a signal ignored on entry cannot be trapped by bash, so launch.sh would never hear it
    proc = subprocess.Popen([LAUNCH, "--", "--output_dir", "x"], env=launch_env(bin_dir),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: [signal.signal(s, signal.SIG_DFL) for s in (signal.SIGINT,
                                                                                           signal.SIGHUP)])
    deadline = time.time() + 30
    while not (log.exists() and "started" in log.read_text()):
        assert time.time() < deadline, "fake training never started"
        time.sleep(0.05)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 75, err
    assert log.read_text().splitlines() == ["started", "worker got TERM", "saved"]
    assert "resume with --resume_from_checkpoint latest" in err


def test_a_signal_reaches_training_under_a_tmpdir_with_pattern_characters(tmp_path):
    """launch.sh finds the training processes by the LOOP_PID_DIR in their environment; grep read that folder's
    path as a pattern, so under a TMPDIR like '/scratch/job[1]' ('[1]' matches '1') it found none: SIGTERM was
    'nothing left to stop', training went on and no checkpoint was saved (audit61)."""
    bin_dir = fake_bin(tmp_path, [])
    log = tmp_path / "log"
    fake_python(tmp_path, f"""trap "echo worker got TERM >> {log}; touch $LOOP_PID_DIR/preempted; exit 75" TERM
touch "$LOOP_PID_DIR/$$"; echo started >> {log}; while :; do sleep 0.1; done
""")
    tmp = tmp_path / "job[1].x*"
    tmp.mkdir()
    proc = subprocess.Popen([LAUNCH, "--", "--output_dir", "x"], env=launch_env(bin_dir, TMPDIR=str(tmp)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 30
    while not (log.exists() and "started" in log.read_text()):
        assert time.time() < deadline, "fake training never started"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 75, err
    assert log.read_text().splitlines() == ["started", "worker got TERM"]


@pytest.mark.parametrize("env, said", [
    (dict(ACCELERATE_CONFIG="configs/accelerate/fsdpp.yaml"), "ACCELERATE_CONFIG='configs/accelerate/fsdpp.yaml' is not a file"),
    (dict(NPROC_PER_NODE=0), "NPROC_PER_NODE=0 starts no process; leave it unset for one per GPU (2 here)"),
    (dict(NNODES=2, NODE_RANK=2, MASTER_ADDR="n0"), "NODE_RANK='2' must be one of 0..1 for NNODES=2"),
    (dict(NNODES="two"), "NNODES='two' is not a number of nodes"),
    (dict(ACCELERATE_CONFIG="configs/accelerate"), "ACCELERATE_CONFIG='configs/accelerate' is not a file"),
    # audit65 e3: accelerate's 115-line usage ending "invalid int value", or passed on
    (dict(MASTER_PORT="abc"), "MASTER_PORT='abc' is not a port (1..65535)"),
    (dict(MASTER_PORT=99999), "MASTER_PORT='99999' is not a port (1..65535)"),
    (dict(OMP_NUM_THREADS="abc"), "OMP_NUM_THREADS='abc' is not a number of threads; unset it for one per core"),
    (dict(OMP_NUM_THREADS=0), "OMP_NUM_THREADS='0' is not a number of threads"),
])
def test_launch_variables_are_checked(tmp_path, env, said):
    """A mistyped ACCELERATE_CONFIG was accelerate's 16-line traceback (exit 1); NPROC_PER_NODE=0 on a GPU node
    trained on the CPU; a NODE_RANK past NNODES went on to the launcher. Each is one line and exit 2."""
    p = subprocess.run([LAUNCH, "--dry-run"], env=launch_env(fake_bin(tmp_path, [9.0, 9.0]), **env),
                       capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert (p.returncode, p.stdout) == (2, "") and said in p.stderr and len(p.stderr.splitlines()) == 1, p.stderr


def test_launch_sh_run_by_sh_says_to_run_it_with_bash():
    """`sh launch.sh` (dash on Debian and Ubuntu) stopped at "set: Illegal option -o pipefail" (audit65 e4)."""
    if "bash" in os.path.basename(os.path.realpath(shutil.which("sh") or "bash")):
        pytest.skip("sh is bash here: launch.sh runs")
    p = subprocess.run(["sh", LAUNCH, "--dry-run"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert (p.returncode, p.stdout) == (2, "") and p.stderr == \
        "launch.sh: run it with bash (./launch.sh or bash launch.sh), not sh.\n", p.stderr


def test_a_gpu_only_accelerate_config_on_a_node_without_a_gpu_is_refused(tmp_path):
    """ACCELERATE_CONFIG=configs/accelerate/fsdp.yaml (or multi_gpu, deepspeed_zero2) on a node without a GPU started
    the config's 8 processes, each loading the data and the model before all stopped with advice that named
    neither FSDP nor the GPU (audit59 h1): one line, exit 2, nothing started. A one-process config still runs."""
    no_gpu = fake_bin(tmp_path, [])
    as_json = tmp_path / "fsdp.json"  # accelerate reads JSON configs too (its key and value quoted)
    as_json.write_text('{\n  "distributed_type": "FSDP",\n  "num_processes": 8\n}\n')
    for config, kind in [(f"configs/accelerate/{name}.yaml", kind) for name, kind in
                         (("fsdp", "FSDP"), ("multi_gpu", "MULTI_GPU"), ("deepspeed_zero2", "DEEPSPEED"))] + \
            [(str(as_json), "FSDP")]:
        p = subprocess.run([LAUNCH, "--dry-run"], env=launch_env(no_gpu, ACCELERATE_CONFIG=config),
                           capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert (p.returncode, p.stdout) == (2, "") and len(p.stderr.splitlines()) == 1, p.stderr
        assert f"ACCELERATE_CONFIG='{config}' asks for {kind}, which needs GPUs, and this node has none" in p.stderr
    p = subprocess.run([LAUNCH, "--dry-run"], env=launch_env(no_gpu, ACCELERATE_CONFIG="configs/accelerate/single_gpu.yaml"),
                       capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert p.returncode == 0 and "--config_file configs/accelerate/single_gpu.yaml" in p.stdout, p.stderr


@pytest.mark.parametrize("nodes, rank, per_node, refused", [
    ("12", "010", "", ""), ("12", "08", "", ""), ("012", "10", "", ""), ("12", "012", "", "NODE_RANK='012' must be one of 0..11"),
    ("2", "1", "08", "NPROC_PER_NODE=8 but this node has 2 GPU(s)"), ("2", "1", "02", ""), ("00", "0", "", "NNODES='00'")])
def test_numbers_with_a_leading_zero_are_decimal(tmp_path, nodes, rank, per_node, refused):
    """NODE_RANK=010 of 12 nodes was read as octal 8 by bash's arithmetic; 08 (NODE_RANK, NPROC_PER_NODE) was a bash
    error, and the launch went on (NPROC_PER_NODE=08 trained on the CPU beside 2 GPUs); NNODES=012 was refused.
    Each is the decimal number, and the launcher is told it."""
    env = launch_env(fake_bin(tmp_path, [9.0, 9.0]), NNODES=nodes, NODE_RANK=rank, MASTER_ADDR="n0",
                     **({"NPROC_PER_NODE": per_node} if per_node else {}))
    p = subprocess.run([LAUNCH, "--dry-run"], env=env, capture_output=True, text=True, timeout=60, cwd=ROOT)
    if refused:
        assert p.returncode == 2 and refused in p.stderr and len(p.stderr.splitlines()) == 1, p.stderr
    else:
        assert p.returncode == 0 and p.stderr == "", p.stderr
        got = flags(shlex.split(p.stdout))
        assert (got["--machine_rank"], got["--num_machines"]) == (str(int(rank)), str(int(nodes)))
        assert got["--num_processes"] == str(int(nodes) * int(per_node or 2))


def test_mixed_precision_is_checked(tmp_path):
    p = subprocess.run([LAUNCH, "--dry-run"], env=launch_env(fake_bin(tmp_path, [8.0]), MIXED_PRECISION="bfloat16"),
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and p.stdout == ""
    assert "MIXED_PRECISION='bfloat16' is not one of no, fp16, bf16, fp8" in p.stderr
    assert flags(dry_run(fake_bin(tmp_path, [8.0], "fp8"), MIXED_PRECISION="fp8"))["--mixed_precision"] == "fp8"


def refused(bin_dir, **env):
    """launch.sh --dry-run's one `launch.sh:` line, exit 2, nothing printed to run."""
    p = subprocess.run([LAUNCH, "--dry-run", "--", "--output_dir", "x"], env=launch_env(bin_dir, **env),
                       capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert (p.returncode, p.stdout) == (2, "") and len(p.stderr.splitlines()) == 1, p.stdout + p.stderr
    assert p.stderr.startswith("launch.sh: "), p.stderr
    return p.stderr.strip()


def torchrun_parses(recipe):
    """The torchrun command a refusal gives (from `torchrun`, up to the train args' `...`) is one torchrun takes."""
    from torch.distributed.run import get_args_parser

    words = shlex.split(recipe[recipe.index("torchrun "):recipe.index(" ...")])
    args = get_args_parser().parse_args(words[1:])
    assert args.training_script == "loop/train.py"
    return args


SLURM_STEP = dict(SLURM_JOB_ID=555, SLURM_STEP_ID=0, SLURM_NNODES=2, SLURM_JOB_NODELIST="cn[07-08]", SLURM_NODEID=1,
                  SLURM_PROCID=1, SLURM_STEP_NUM_TASKS=2, SLURM_NTASKS=2, SLURM_STEP_TASKS_PER_NODE="1(x2)")


@pytest.mark.parametrize("env, said", [
    (dict(NNODES=2, NODE_RANK=1, MASTER_ADDR="10.0.0.1", MASTER_PORT=29622),
     "ACCELERATE_USE_CPU=true torchrun --nnodes 2 --node_rank 1 --master_addr 10.0.0.1 --master_port 29622 "
     "--nproc_per_node 1 loop/train.py ... on every node, each with its own --node_rank, instead."),
    (dict(NNODES=3, NODE_RANK=0, MASTER_ADDR="n0", NPROC_PER_NODE=2),
     "ACCELERATE_USE_CPU=true torchrun --nnodes 3 --node_rank 0 --master_addr n0 --master_port 29500 "
     "--nproc_per_node 2 loop/train.py ..."),
    # srun --ntasks-per-node=1 ./launch.sh on 2 CPU nodes (what slurm_tasks_message advised), and the batch script
    (SLURM_STEP, "run srun --ntasks-per-node=1 bash -c 'ACCELERATE_USE_CPU=true exec torchrun --nnodes 2 --node_rank "
     "$SLURM_NODEID --master_addr cn07 --master_port 20555 --nproc_per_node 1 loop/train.py ...' instead."),
    (dict(SLURM_JOB_ID=555, SLURM_NNODES=2, SLURM_JOB_NODELIST="cn[07-08]", SLURM_NODEID=0),
     "srun --ntasks-per-node=1 bash -c 'ACCELERATE_USE_CPU=true exec torchrun --nnodes 2 --node_rank $SLURM_NODEID"),
])
def test_several_cpu_nodes_are_refused_with_the_torchrun_command_that_joins_them(tmp_path, env, said):
    """audit66 S3: NNODES=2 on nodes without a GPU passed `--cpu --num_processes 1 --num_machines 2` to accelerate,
    whose CPU launcher joins no machines (without an mpirun hostfile): node 0 trained alone (exit 0) and node 1
    stopped on the output_dir lock node 0 held, naming "another process"; under srun both were refused with advice
    naming srun ./launch.sh, what they ran. Now one line, exit 2, with torchrun's command filled in."""
    line = refused(fake_bin(tmp_path, []), **env)
    assert "on a node without a GPU, but launch.sh does not join CPU nodes into one run" in line and said in line, line
    args = torchrun_parses(line.replace("$SLURM_NODEID", "1"))
    assert args.nnodes == str(env.get("NNODES", 2))
    # GPU nodes (in an srun step): still accelerate's launch of the nodes (unchanged)
    f = flags(dry_run(fake_bin(tmp_path, [9.0, 9.0], "gpus"),
                      **{**env, **({"SLURM_STEP_NUM_TASKS": 2} if "SLURM_JOB_ID" in env else {})}))
    assert (f["--num_machines"], f["--num_processes"]) == (args.nnodes, str(2 * int(args.nnodes)))


def test_an_accelerate_config_of_several_cpu_processes_is_refused_with_torchruns_command(tmp_path):
    """audit66 S4: ACCELERATE_CONFIG with `distributed_type: MULTI_CPU, num_processes: 2` on a node without a GPU ran
    one process, saying nothing: accelerate's CPU launcher starts several only through an mpirun hostfile (checked
    below, as accelerate 1.16 reads such a config). Now one line naming torchrun; one process, or an mpirun hostfile
    (accelerate starts mpirun), still runs."""
    from accelerate.commands import launch
    from accelerate.utils import prepare_simple_launcher_cmd_env

    no_gpu = fake_bin(tmp_path, [])
    yaml_config = tmp_path / "multicpu.yaml"
    yaml_config.write_text("compute_environment: LOCAL_MACHINE\ndistributed_type: MULTI_CPU\nnum_machines: 1\n"
                           "num_processes: 2\nmachine_rank: 0\nmixed_precision: 'no'\nuse_cpu: true\n")
    # what accelerate does with it: no multi-GPU launcher, and its CPU launcher's command is this one process
    args = launch._validate_launch_command(launch.launch_command_parser().parse_args(
        ["--config_file", str(yaml_config), "train.py"]))[0]
    assert not (args.multi_gpu or args.use_fsdp or args.use_deepspeed or args.tpu) and args.num_processes == 2
    assert prepare_simple_launcher_cmd_env(args)[0] == [sys.executable, "train.py"]
    json_config = tmp_path / "multicpu.json"
    json_config.write_text('{"distributed_type": "MULTI_CPU", "num_processes": "4", "use_cpu": true}')
    for config, procs in ((yaml_config, 2), (json_config, 4)):
        line = refused(no_gpu, ACCELERATE_CONFIG=config)
        assert line == f"launch.sh: ACCELERATE_CONFIG='{config}' asks for MULTI_CPU with {procs} processes, but on a " \
                       "node without a GPU accelerate starts one, training alone (it joins several only through an " \
                       "mpirun hostfile); for several CPU processes run ACCELERATE_USE_CPU=true torchrun " \
                       f"--nproc_per_node {procs} loop/train.py ... instead, or leave ACCELERATE_CONFIG unset to " \
                       "train with one CPU process.", line
    # its machines: the nodes' torchrun command, from the file's rendezvous (NNODES's wins over the file's)
    nodes = tmp_path / "nodes.yaml"
    nodes.write_text(yaml_config.read_text().replace("num_machines: 1", "num_machines: 2").replace("num_processes: 2",
                     "num_processes: 4") + "main_process_ip: 10.1.1.1\nmain_process_port: 29700\n")
    line = refused(no_gpu, ACCELERATE_CONFIG=nodes)
    assert "does not join CPU nodes" in line and "ACCELERATE_USE_CPU=true torchrun --nnodes 2 --node_rank 0 " \
        "--master_addr 10.1.1.1 --master_port 29700 --nproc_per_node 2 loop/train.py ..." in line, line
    torchrun_parses(line)
    for null in ("null", "Null", "~"):  # as `accelerate config` writes it, and YAML's other nulls (r F3, r2 R4)
        nodes.write_text(re.sub(r"main_process_ip: .*", f"main_process_ip: {null}", nodes.read_text()))
        line = refused(no_gpu, ACCELERATE_CONFIG=nodes)  # (was '--master_addr null')
        assert "--nnodes 2 --node_rank 0 --master_addr HOST_OF_NODE_0 --master_port 29700" in line, line
    line = refused(no_gpu, ACCELERATE_CONFIG=yaml_config, NNODES=3, NODE_RANK=2, MASTER_ADDR="h0")
    assert "torchrun --nnodes 3 --node_rank 2 --master_addr h0 --master_port 29500 --nproc_per_node 2" in line, line
    # one process, or mpirun (its hostfile), or a GPU node (launch.sh's own process count): runs
    one = tmp_path / "one.yaml"
    one.write_text(yaml_config.read_text().replace("num_processes: 2", "num_processes: 1"))
    mpi = tmp_path / "mpi.yaml"
    mpi.write_text(yaml_config.read_text() + "mpirun_config:\n  mpirun_ccl: '1'\n  mpirun_hostfile: /etc/hosts\n")
    for config in (one, mpi):
        assert flags(dry_run(no_gpu, ACCELERATE_CONFIG=config))["--config_file"] == str(config)
    assert flags(dry_run(fake_bin(tmp_path, [9.0] * 2, "two"), ACCELERATE_CONFIG=yaml_config))["--num_processes"] == "2"


def test_a_batch_script_of_several_nodes_running_launch_sh_itself_is_refused(tmp_path):
    """audit66 S5: launch.sh run in a 2-node sbatch script without srun (the script runs on the first node alone,
    outside any step) started `accelerate launch ... --num_machines 2 --machine_rank 0`, and nothing started node 1.
    Now one line naming srun --ntasks-per-node=1 ./launch.sh. A one-node batch script, an srun step (srun sets
    SLURM_STEP_NUM_TASKS) and NNODES=1 given run as before."""
    two_gpus = fake_bin(tmp_path, [9.0, 9.0])
    batch = dict(SLURM_JOB_ID=77, SLURM_NNODES=2, SLURM_JOB_NODELIST="cn[07-08]", SLURM_NODEID=0, SLURM_PROCID=0,
                 SLURM_LOCALID=0, SLURM_NTASKS=2, SLURM_TASKS_PER_NODE="1(x2)")
    assert refused(two_gpus, **batch) == \
        "launch.sh: this SLURM job has 2 nodes, but launch.sh runs outside an srun step (in the batch script " \
        "itself), so it would start node 0 alone and nothing would start the others; run it with srun " \
        "--ntasks-per-node=1 ./launch.sh ... (one task per node), or with NNODES=1 to train on this node alone."
    f = flags(dry_run(two_gpus, **batch, SLURM_STEP_ID=0, SLURM_STEP_NUM_TASKS=2))
    assert (f["--num_machines"], f["--machine_rank"], f["--main_process_ip"]) == ("2", "0", "cn07")
    f = flags(dry_run(two_gpus, **{**batch, "SLURM_NNODES": 1, "SLURM_JOB_NODELIST": "cn07", "SLURM_NTASKS": 1}))
    assert (f["--num_processes"], f["--num_machines"], f["--main_process_port"]) == ("2", "1", str(20000 + 77))
    f = flags(dry_run(two_gpus, **batch, NNODES=1))
    assert (f["--num_processes"], f["--num_machines"]) == ("2", "1")


def test_a_signal_to_the_training_processes_alone_still_exits_75(tmp_path):
    """SIGTERM sent to a rank, not to launch.sh (an admin's kill, a cluster agent): the rank saves and
    exits 75, the launcher turns that into 1; the rank's `preempted` mark makes launch.sh exit 75."""
    from loop.errors import Preempted, run_cli

    marks = tmp_path / "marks"
    marks.mkdir()
    os.environ["LOOP_PID_DIR"] = str(marks)
    try:
        with pytest.raises(SystemExit) as e:
            run_cli(lambda argv: (_ for _ in ()).throw(Preempted("out/checkpoints/step_3")), [])
    finally:
        del os.environ["LOOP_PID_DIR"]
    assert e.value.code == 75 and os.listdir(marks) == ["preempted"]
    # the stop signals are ignored only as the process exits: a caller that goes on (this test process)
    # keeps its handlers, and the processes it starts can still be signalled
    assert signal.getsignal(signal.SIGTERM) is not signal.SIG_IGN

    bin_dir = fake_bin(tmp_path, [9.0, 9.0])  # two processes: under accelerate's launcher
    fake_accelerate(tmp_path, """bash -c 'touch "$LOOP_PID_DIR/$$"; sleep 0.2; touch "$LOOP_PID_DIR/preempted"; exit 75' &
wait $! || exit 1  # like accelerate's launchers: a failed training process is exit code 1
""")
    p = subprocess.run([LAUNCH, "--", "--output_dir", "x"], env=launch_env(bin_dir), capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 75, p.stderr
    assert "a training process was stopped by a signal and saved a checkpoint" in p.stderr
    fake_accelerate(tmp_path, "bash -c 'exit 3' & wait $! || exit 1\n")  # a plain failure
    p = subprocess.run([LAUNCH, "--", "--output_dir", "x"], env=launch_env(bin_dir), capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 1, p.stderr
    # one process: train.py itself, with no launcher to turn its 75 into 1
    one = fake_bin(tmp_path, [], "one")
    fake_python(tmp_path, 'touch "$LOOP_PID_DIR/$$"; sleep 0.2; touch "$LOOP_PID_DIR/preempted"; exit 75\n', "one")
    p = subprocess.run([LAUNCH, "--", "--output_dir", "x"], env=launch_env(one),
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 75 and "saved a checkpoint" in p.stderr, p.stderr


def test_signal_reaches_ranks_in_sessions_of_their_own(tmp_path):
    """torch elastic (accelerate launch --multi_gpu) starts each rank with a session of its own: the
    launcher's process group holds none of them, and signalling the launcher instead lets torchrun
    SIGKILL the ranks 30 s later, mid-save. Ranks list their pids in LOOP_PID_DIR; launch.sh signals
    those, and the launcher itself (which would exit 1 at once on a signal) is left alone. A listed pid
    that is now another process's (a rank that ended, its pid reused) is not signalled."""
    d = tmp_path / "bin"
    bin_dir = fake_bin(tmp_path, [9.0, 9.0])  # two processes: under accelerate's (torch elastic's) launcher
    log = tmp_path / "log"
    bystander = subprocess.Popen(["bash", "-c", f'trap "echo bystander got TERM >> {log}; exit 0" TERM; '
                                                'for i in $(seq 600); do sleep 0.1; done'],  # (at most a minute)
                                 start_new_session=True)
    (d / "accelerate").write_text(f"""#!/bin/bash
trap "echo launcher got TERM >> {log}; exit 1" TERM
touch "$LOOP_PID_DIR/{bystander.pid}"  # as a rank that listed itself, ended, and whose pid went to another
pids=()
for rank in 0 1; do
  setsid bash -c 'trap "echo rank $0 got TERM >> {log}; sleep 1; touch $LOOP_PID_DIR/preempted; exit 75" TERM
                  touch "$LOOP_PID_DIR/$$"; echo rank $0 started >> {log}; while :; do sleep 0.1; done' $rank &
  pids+=($!)
done
rc=0
for p in "${{pids[@]}}"; do wait $p || rc=1; done  # like torch elastic: a failed rank is exit code 1
exit $rc
""")
    (d / "accelerate").chmod(0o755)
    proc = subprocess.Popen([LAUNCH, "--", "--output_dir", "x"], env=launch_env(bin_dir),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 30
    while not (log.exists() and log.read_text().count("started") == 2):
        assert time.time() < deadline, "fake ranks never started"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert bystander.poll() is None, "launch.sh signalled a process that was not a rank of its own"
    bystander.terminate()
    bystander.wait(timeout=30)
    lines = log.read_text().splitlines()
    assert sorted(x for x in lines if "got TERM" in x) == ["bystander got TERM", "rank 0 got TERM",
                                                           "rank 1 got TERM"], lines
    assert lines.index("bystander got TERM") == len(lines) - 1, lines  # from the test itself, not launch.sh
    assert "launcher got TERM" not in lines
    assert proc.returncode == 75, err
    assert "saved a checkpoint: resume with --resume_from_checkpoint latest" in err


def step_processes(pid):
    """`pid` and every process below it: what SLURM signals at a time limit, a preemption or `scancel` (every
    process of the job step: launch.sh, the launcher and the ranks, in sessions of their own or not)."""
    children = {}
    for p in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{p}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):  # gone meanwhile
            continue
        children.setdefault(ppid, []).append(int(p))
    found, todo = [], [pid]
    while todo:
        found.append(todo.pop())
        todo += children.get(found[-1], [])
    return found


def signal_the_step(pid, sig):
    for p in step_processes(pid):
        try:
            os.kill(p, sig)
        except ProcessLookupError:
            pass


def test_a_launcher_killed_by_the_signal_leaves_its_ranks_to_finish_saving(tmp_path):
    """SLURM's SIGUSR1 (--signal=USR1@90) reaches every process of the step, and torch elastic's agent dies of it at
    once (it handles SIGTERM, SIGINT, SIGHUP and SIGQUIT): launch.sh waited for the launcher's process group only,
    which holds none of the ranks (sessions of their own), and exited while they were saving, saying nothing was
    saved (under SLURM the ranks are then killed mid-save). Now it waits for every rank that holds its LOOP_PID_DIR.
    The launcher is also told (PET_SIGNALS_TO_HANDLE, torch 2.9+) to leave SIGTERM to the ranks in the same way,
    instead of passing it on and SIGKILLing them 30 s later."""
    bin_dir = fake_bin(tmp_path, [9.0, 9.0])
    log = tmp_path / "log"
    fake_accelerate(tmp_path, f"""echo "launcher handles $PET_SIGNALS_TO_HANDLE" >> {log}
for rank in 0 1; do  # a rank takes the signal (SLURM's, and launch.sh's SIGTERM) once, and saves for 2 s
  setsid bash -c 'stop() {{ [[ -z "$stopping" ]] || return 0; stopping=1
                           sleep 2; echo rank $0 saved >> {log}; touch $LOOP_PID_DIR/preempted; exit 75; }}
                  trap stop USR1 TERM
                  touch "$LOOP_PID_DIR/$$"; echo rank $0 started >> {log}; while :; do sleep 0.1; done' $rank &
done
wait
""")
    proc = subprocess.Popen([LAUNCH, "--", "--output_dir", "x"], env=launch_env(bin_dir),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 30
    while not (log.exists() and log.read_text().count("started") == 2):
        assert time.time() < deadline, "fake ranks never started"
        time.sleep(0.05)
    signal_the_step(proc.pid, signal.SIGUSR1)
    _, err = proc.communicate(timeout=30)
    lines = log.read_text().splitlines()  # as launch.sh exited
    assert proc.returncode == 75, err
    assert "launcher handles SIGINT" in lines
    assert sorted(x for x in lines if "saved" in x) == ["rank 0 saved", "rank 1 saved"], lines
    assert "the training processes saved a checkpoint" in err and "without saving" not in err, err


def read_cmdline(pid):
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read()


ELASTIC = {"TORCHELASTIC_RUN_ID": "none", "WORLD_SIZE": "2"}  # a rank of torch elastic's agent


@pytest.mark.parametrize("env, parent, drops", [
    (dict(ELASTIC, TORCHELASTIC_SIGNALS_TO_HANDLE="SIGINT"), ["-m", "torch.distributed.run"], True),  # launch.sh's
    (dict(ELASTIC, TORCHELASTIC_SIGNALS_TO_HANDLE="SIGTERM,SIGINT,SIGHUP,SIGQUIT"), [], False),  # torch's default
    (dict(ELASTIC, TORCHELASTIC_SIGNALS_TO_HANDLE="SIGINT, SIGTERM"), [], False),
    (ELASTIC, [], False),  # torch before 2.9: its agent passes every stop on
    ({"WORLD_SIZE": "2"}, ["accelerate", "launch"], False),  # several processes: torch elastic's agent (above)
    ({}, ["/venv/bin/accelerate", "launch", "--cpu"], True),  # accelerate's one-process launcher
    ({"WORLD_SIZE": "1"}, ["-m", "accelerate.commands.launch"], True),
    ({}, ["launch.sh"], False),  # launch.sh, or a shell: `nohup python loop/train.py &` must outlive it
    (dict(TORCHELASTIC_SIGNALS_TO_HANDLE="SIGINT"), ["launch.sh"], False),  # no torch elastic rank
    ({}, ["-m", "torch.distributed.launch"], False),  # a launcher, not accelerate's (mutation audit m2: `and` -> `or`)
    ({}, ["/venv/bin/accelerate", "env"], False),  # accelerate, not its launcher
], ids=["elastic-sigint", "elastic-default", "elastic-spaced", "elastic-old", "several", "accelerate-launch",
        "accelerate-module", "shell", "not-elastic", "torch-launch", "accelerate-env"])
def test_which_launchers_end_without_passing_a_stop_on(monkeypatch, env, parent, drops):
    """preemption._launcher_drops_stops decides whether a training process asks for a SIGTERM when its launcher
    exits (PR_SET_PDEATHSIG): under torch elastic's agent told to leave SIGTERM to the ranks (launch.sh's
    PET_SIGNALS_TO_HANDLE=SIGINT) and under accelerate's one-process launcher, each of which can end without passing
    a stop on; not under an agent that passes it on, nor a shell. Nothing tested it (audit46 F3)."""
    from loop.preemption import _launcher_drops_stops

    for k in ("TORCHELASTIC_RUN_ID", "TORCHELASTIC_SIGNALS_TO_HANDLE", "WORLD_SIZE"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    launcher = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", *parent])  # its command line
    try:
        deadline = time.time() + 30
        while not read_cmdline(launcher.pid):  # empty until its exec has set it up
            assert time.time() < deadline, "the stand-in launcher never started"
            time.sleep(0.01)
        assert _launcher_drops_stops(launcher.pid) is drops
    finally:
        launcher.kill()
        launcher.wait()
    assert _launcher_drops_stops(launcher.pid) is (drops and "TORCHELASTIC_RUN_ID" in env)  # gone: no command line


# A training process under a stand-in launcher (the launcher's argv[1:] its command line): it installs the stop
# handlers, says 'ready', then reports a stop signal taken while the launcher lives ('early: ...'), else the one
# taken within 3 s of the launcher's end ('none' if none came).
TRAINING_UNDER_LAUNCHER = """
import os, sys, time
from loop.preemption import StopSignals
signals = StopSignals()
signals.install()
parent, mark = os.getppid(), sys.argv[1]
open(mark + '.ready', 'w').close()
while os.getppid() == parent:
    if signals.signum:
        open(mark, 'w').write('early: ' + signals.name)
        sys.exit(0)
    time.sleep(0.05)
deadline = time.monotonic() + 3
while signals.signum is None and time.monotonic() < deadline:
    time.sleep(0.05)
open(mark, 'w').write(signals.name if signals.signum else 'none')
"""
STAND_IN_LAUNCHER = ("import os, subprocess, sys, time; "
                     "subprocess.Popen([sys.executable, '-c', os.environ['TRAINING'], os.environ['MARK']]); "
                     "time.sleep(60)")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
@pytest.mark.parametrize("parent, expect", [(["/venv/bin/accelerate", "launch", "--cpu"], "SIGTERM"),
                                            (["launch.sh"], "none")], ids=["accelerate-launch", "shell"])
def test_a_launcher_that_drops_stops_ending_is_a_sigterm_to_training_and_a_shell_ending_is_not(tmp_path, parent,
                                                                                                 expect):
    """(mutation audit m2: preemption.stop_with_launcher was reached only by the slow end-to-end tests) Under
    accelerate's one-process launcher, which can end without passing a stop on, training takes the launcher's end
    as a SIGTERM (so it saves a checkpoint), and no signal while the launcher lives; under a shell (`nohup python
    loop/train.py &`) it outlives its parent with no signal."""
    mark = tmp_path / "mark"
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("TORCHELASTIC_", "WORLD_SIZE"))}
    launcher = subprocess.Popen([sys.executable, "-c", STAND_IN_LAUNCHER, *parent],
                                env={**environ, "MARK": str(mark), "TRAINING": TRAINING_UNDER_LAUNCHER,
                                     "PYTHONPATH": ROOT})
    try:
        deadline = time.time() + 60
        while not os.path.exists(f"{mark}.ready"):
            assert time.time() < deadline and launcher.poll() is None, "the training stand-in never started"
            time.sleep(0.05)
        time.sleep(0.5)
        assert not mark.exists(), mark.read_text()  # no signal while the launcher runs
    finally:
        launcher.kill()
        launcher.wait()
    deadline = time.time() + 30
    while not mark.exists() or not mark.read_text():
        assert time.time() < deadline, "the training stand-in never reported"
        time.sleep(0.05)
    assert mark.read_text() == expect


def test_a_missing_tmpdir_is_no_failure(tmp_path):
    """A per-job TMPDIR that a prolog made on another node (a requeue lands elsewhere) ended launch.sh at once:
    exit 1 and a bare mktemp error. Its LOOP_PID_DIR now goes to /tmp then."""
    log, bin_dir = tmp_path / "log", fake_bin(tmp_path, [])
    fake_python(tmp_path, f'echo "started, LOOP_PID_DIR=$LOOP_PID_DIR" >> {log}\n')
    p = subprocess.run([LAUNCH, "--", "--output_dir", "x"], capture_output=True, text=True, timeout=60,
                       env=launch_env(bin_dir, TMPDIR=str(tmp_path / "no" / "such" / "dir")))
    assert p.returncode == 0, p.stderr
    assert log.read_text().startswith("started, LOOP_PID_DIR=/tmp/loop-pids."), log.read_text()


BROKEN_STDERR_RUN = """
import os, signal, sys
from loop.errors import Preempted, UserError, run_cli
from loop.preemption import StopSignals

def fit(argv):
    if argv == ["user_error"]:
        raise UserError("a bad flag")
    signals = StopSignals()
    signals.install()
    os.kill(os.getpid(), signal.SIGUSR1)  # the handler writes its line into the broken pipe
    raise Preempted("out/checkpoints/step_3")

run_cli(fit, sys.argv[1:])
"""


@pytest.mark.slow  # ~9 s each: a launcher of its own
@pytest.mark.parametrize("case, code, mark", [("preempted", 75, "preempted"), ("user_error", 2, "user_error")])
def test_a_stderr_whose_reader_is_gone_keeps_the_exit_code_and_mark(tmp_path, case, code, mark):
    """accelerate 1.16's one-process launcher pipes train.py's stderr through itself, and SLURM's SIGUSR1 kills it at
    once: the stop handler's line, then run_cli's `preempted:` line, went into the broken pipe, and the
    BrokenPipeError ended the run with a traceback and exit 1, before the `preempted` mark was written (launch.sh
    then said no checkpoint was saved). The mark now comes first, and the lines are dropped if stderr is gone."""
    marks = tmp_path / "marks"
    marks.mkdir()
    r, w = os.pipe()
    os.close(r)  # the reader is gone
    try:
        p = subprocess.run([sys.executable, "-c", BROKEN_STDERR_RUN, case], stderr=w, timeout=120,
                           env={**os.environ, "LOOP_PID_DIR": str(marks), "PYTHONPATH": ROOT})
    finally:
        os.close(w)
    assert p.returncode == code
    assert mark in os.listdir(marks)


def start_and_signal(tmp_path, bin_dir, ready, sig=signal.SIGTERM, group=False):
    """Start launch.sh (in a session of its own), wait until `ready()`, send it `sig` (to its whole
    process group with `group`, as SLURM and a terminal's Ctrl-C do); returns (exit code, stderr)."""
    proc = subprocess.Popen([LAUNCH, "--", "--output_dir", "x"], env=launch_env(bin_dir), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 30
    while not ready():
        assert time.time() < deadline and proc.poll() is None, "never got ready"
        time.sleep(0.05)
    if group:
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    return proc.returncode, err


def fake_accelerate(tmp_path, body):
    (tmp_path / "bin" / "accelerate").write_text("#!/bin/bash\n" + body)
    (tmp_path / "bin" / "accelerate").chmod(0o755)


@pytest.mark.parametrize("group", [False, True], ids=["to-launch.sh", "to-its-process-group"])
def test_a_signal_while_probing_the_gpus_starts_nothing_and_exits_75(tmp_path, group):
    """The GPU probe (nvidia-smi, or importing torch) can take seconds: a signal then used to end
    launch.sh with 143 (no trap yet), which a job script that requeues on 75 took for a failure. Now
    nothing is started, and launch.sh says no checkpoint was saved and exits 75 (requeue: the job was
    stopped, not broken), without the `latest` advice that would fail (there is no checkpoint)."""
    bin_dir = fake_bin(tmp_path, [])
    probing, log = tmp_path / "probing", tmp_path / "log"
    (tmp_path / "bin" / "nvidia-smi").write_text(f"#!/bin/sh\ntouch {probing}\nsleep 3\nexit 9\n")
    fake_python(tmp_path, f"echo started >> {log}\n")
    rc, err = start_and_signal(tmp_path, bin_dir, probing.exists, group=group)
    assert rc == 75, err
    assert not log.exists(), "the training was started after the signal"
    assert "before the training processes had started: no checkpoint was saved" in err, err
    assert "--resume_from_checkpoint auto" in err and "resume_from_checkpoint latest" not in err, err


def test_a_signal_before_train_py_has_its_handlers_says_no_checkpoint(tmp_path):
    """train.py still importing (no stop handlers, no pid listed): the signal kills it and nothing is
    saved. launch.sh used to exit 75 with "resume with --resume_from_checkpoint latest", which then
    failed (no checkpoint); now it says no checkpoint was saved and names `auto` (exit 75: requeue)."""
    bin_dir = fake_bin(tmp_path, [])
    log = tmp_path / "log"
    fake_python(tmp_path, f"echo started >> {log}; while :; do sleep 0.1; done\n")
    rc, err = start_and_signal(tmp_path, bin_dir, lambda: log.exists() and "started" in log.read_text())
    assert rc == 75, err
    assert "before the training processes had started: no checkpoint was saved" in err, err
    assert "--resume_from_checkpoint auto" in err and "resume_from_checkpoint latest" not in err, err


def test_a_signal_before_the_ranks_have_their_handlers_ends_them_too(tmp_path):
    """Several processes, signalled while the ranks still start (no stop handlers, no pid listed): launch.sh used to
    signal the launcher's process group, and torch elastic shut its ranks down. Told now to leave the stop signals
    to the ranks, it dies at once, and its ranks (sessions of their own) would go on starting, then train unseen:
    launch.sh ends every process of the launch then."""
    bin_dir = fake_bin(tmp_path, [9.0, 9.0])
    log = tmp_path / "log"
    fake_accelerate(tmp_path, f"""for rank in 0 1; do
  setsid bash -c 'echo rank $0 $$ started >> {log}; while :; do sleep 0.1; done' $rank &
done
wait
""")
    rc, err = start_and_signal(tmp_path, bin_dir, lambda: log.exists() and log.read_text().count("started") == 2)
    assert rc == 75, err
    assert "before the training processes had started: no checkpoint was saved" in err, err
    ranks = [int(line.split()[2]) for line in log.read_text().splitlines()]
    deadline = time.time() + 10
    while any(os.path.exists(f"/proc/{r}") for r in ranks):
        assert time.time() < deadline, "a rank went on after launch.sh exited"
        time.sleep(0.05)


def test_a_signal_that_saved_nothing_does_not_advise_latest(tmp_path):
    """The training processes had their handlers in but exited without the `preempted` mark (a second
    signal exits at once; a save that failed): launch.sh says so instead of "resume ... latest"."""
    bin_dir = fake_bin(tmp_path, [])
    log = tmp_path / "log"
    fake_python(tmp_path, f"""trap "exit 143" TERM; touch "$LOOP_PID_DIR/$$"; echo started >> {log}
while :; do sleep 0.1; done
""")
    rc, err = start_and_signal(tmp_path, bin_dir, lambda: log.exists() and "started" in log.read_text())
    assert rc == 75, err
    assert "without saving a checkpoint" in err and "--resume_from_checkpoint auto" in err, err
    assert "resume_from_checkpoint latest" not in err, err


@pytest.mark.slow  # ~5 s: a launcher of its own
def test_a_user_error_of_one_process_is_its_line_and_exit_2(tmp_path):
    """One process runs without a launcher (accelerate's made train.py's exit 2 its own 1, under a traceback that
    repeated the line): train.py's own exit 2, its `error:` line once and last."""
    p = subprocess.run([LAUNCH, "--output_dir", str(tmp_path / "out"), "--no_such_flag"],
                       env=launch_env(fake_bin(tmp_path, []), PYTHON=sys.executable, PYTHONPATH=ROOT),
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stderr
    assert p.stderr.splitlines()[-1].startswith("error: unrecognized argument '--no_such_flag'"), p.stderr
    assert p.stderr.count("error:") == 1 and "Traceback" not in p.stderr, p.stderr


@pytest.mark.parametrize("config, said", [
    ("compute_environment: LOCAL_MACHINE\nmixed_precision: [\n", "expected the node content, but found '<stream end>', line 3"),
    ("distributed_type: BOGUS\nmixed_precision: 'no'\nnum_processes: 1\n", "'BOGUS' is not a valid DistributedType"),
    ("compute_environment: LOCAL_MACHINE\nmixed_precision: 'no'\n", "A `distributed_type` must be specified in the config file"),
    # an empty file (a half-written default_config.yaml), a list, a word, values of the wrong type: were tracebacks,
    # exit 1 (audit58 a1)
    ("", "it is empty"), ("- 1\n- 2\n", "it holds a list, not a mapping of settings"),
    ("hello\n", "it holds text, not a mapping of settings"),
    ("compute_environment: LOCAL_MACHINE\ndistributed_type: NO\nnum_processes: 1\nmixed_precision: 3\n",
     "'int' object has no attribute 'lower'"),
    ("compute_environment: LOCAL_MACHINE\ndistributed_type: NO\nnum_processes: one\n",
     "'>' not supported between instances of 'str' and 'int'"),
    # an unknown compute_environment: accelerate builds a SageMaker config that lacks its fields (a TypeError)
    ("compute_environment: BOGUS\ndistributed_type: NO\n", None)])
def test_an_accelerate_config_it_cannot_use_is_one_line_naming_it(tmp_path, config, said):
    """A broken ACCELERATE_CONFIG (or default config) was accelerate's traceback out of loop/accelerate_launch.py,
    exit 1 (audit57 c F3): one line naming the file and what is wrong, exit 2, before any process starts."""
    path = tmp_path / "accelerate.yaml"
    path.write_text(config)
    p = subprocess.run([LAUNCH, "--output_dir", str(tmp_path / "out")], capture_output=True, text=True, timeout=120,
                       env=launch_env(fake_bin(tmp_path, []), PYTHON=sys.executable, ACCELERATE_CONFIG=path))
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    if said is None:
        assert p.stderr.splitlines()[-1].startswith(f"error: accelerate cannot use the config {path} ("), p.stderr
        return
    assert p.stderr.splitlines()[-1] == (f"error: accelerate cannot use the config {path} ({said}); correct it, or "
                                         f"write a new one with `accelerate config`."), p.stderr


def test_a_launch_this_machine_cannot_run_is_one_line(monkeypatch, capsys):
    """MIXED_PRECISION=fp8 without its hardware: accelerate's RuntimeError was a traceback from run_in_place."""
    from loop import accelerate_launch

    def no_fp8(args):
        raise RuntimeError("FP8 is not available on this machine. Please install torchao.")

    monkeypatch.setattr(accelerate_launch, "prepare_simple_launcher_cmd_env", no_fp8)
    with pytest.raises(SystemExit) as e:
        accelerate_launch.run_in_place(None)
    assert e.value.code == 2
    assert capsys.readouterr().err == ("error: accelerate cannot start this run (FP8 is not available on this machine. "
                                       "Please install torchao); change the flag or config value it names.\n")


def test_launch_flags_accelerate_refuses_without_a_config_file_name_no_file(monkeypatch, tmp_path, capsys):
    """No config file read (none given, no default one): the flags are named as the cause, not a missing file."""
    from types import SimpleNamespace

    import accelerate.commands.config as accelerate_config

    from loop import accelerate_launch

    def validate(args):
        raise ValueError("You can only use one of `--cpu`, `--multi_gpu`.")

    monkeypatch.setattr(accelerate_config, "default_config_file", str(tmp_path / "none.yaml"))
    with pytest.raises(SystemExit) as e:
        accelerate_launch.read_config(validate)(SimpleNamespace(config_file=None))
    assert e.value.code == 2
    assert capsys.readouterr().err == ("error: accelerate cannot launch with these flags (You can only use one of "
                                       "`--cpu`, `--multi_gpu`); change the one it names.\n")


def test_a_user_error_exits_2_and_a_crash_keeps_the_launchers_code(tmp_path):
    """train.py's one-line user error exits 2, but accelerate's launcher turns it into its own failure (1, under
    a traceback): a job script could not tell "fix your flags" from a crash. train.py leaves a `user_error`
    mark in LOOP_PID_DIR, and launch.sh exits 2 for it; a failure without the mark keeps the launcher's code."""
    bin_dir = fake_bin(tmp_path, [9.0, 9.0])  # two processes: under accelerate's launcher
    # the launcher's part: drop its flags, run train.py, fail as accelerate launch does (1)
    fake_accelerate(tmp_path, f'while [[ "$1" != *train.py ]]; do shift; done\n{sys.executable} "$@" || exit 1\n')
    p = subprocess.run([LAUNCH, "--output_dir", str(tmp_path / "out"), "--no_such_flag"], env=launch_env(bin_dir),
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stderr
    assert "train.py stopped on this error" in p.stderr, p.stderr
    last = p.stderr.splitlines()[-1]  # said again last, under the launcher's traceback
    assert last.startswith("error: unrecognized argument '--no_such_flag'") and p.stderr.count(last) == 2, p.stderr
    fake_accelerate(tmp_path, "exit 1\n")  # a crash: no mark
    p = subprocess.run([LAUNCH, "--output_dir", str(tmp_path / "out")], env=launch_env(bin_dir),
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and "stopped on this error" not in p.stderr, p.stderr


@pytest.mark.slow
def test_launch_sh_preemption_end_to_end(tiny_model, tiny_data, tmp_path):
    """The real thing on CPU: launch.sh -> accelerate launch -> train.py. SIGTERM to launch.sh while
    it trains: the training process saves a complete checkpoint, launch.sh exits 75, and
    `--resume_from_checkpoint latest` finishes the run."""
    from conftest import env, evals, tiny_args
    from loop import checkpoint_folders as ckpt

    out = str(tmp_path / "out")
    args = tiny_args(tiny_model, tiny_data, out, num_train_epochs=2, max_train_samples=320, logging_steps=1)
    e = env(PATH=fake_bin(tmp_path, []) + os.pathsep + os.environ["PATH"])
    for k in CLEAR:
        e.pop(k, None)
    proc = subprocess.Popen([LAUNCH, "--", *args], env=e, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    lines = []
    for line in proc.stdout:  # wait until it trains
        lines.append(line)
        if '"step": 3' in line or "step=3 " in line:
            break
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=300)
    assert proc.returncode == 75, "".join(lines) + rest
    latest = ckpt.resolve_resume("latest", out)
    state = ckpt.read_state(latest)["state"]
    assert 3 <= state["global_step"] < 40  # 20 steps per epoch
    p = subprocess.run([LAUNCH, "--", *args, "--resume_from_checkpoint", "latest"], env=e, capture_output=True,
                       text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert f"step {state['global_step']}" in p.stdout
    assert [r["epoch"] for r in evals(out)] == [1, 2]
    assert "were not passed" not in p.stderr + "".join(lines) + rest  # launch.sh gives accelerate every value


def _train_until_step_3(cmd, out):
    """Start `cmd` (a training with --logging_steps 1 into `out`) and return it once it logged step 3."""
    from conftest import env

    proc = subprocess.Popen([sys.executable, *cmd], cwd=ROOT, env=env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if "step=3 " in line:
            return proc
    raise AssertionError(proc.stderr.read()[-3000:])


def _training_runs(out):
    """Whether a process whose command line names `out` is still running."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if out.encode() in f.read():
                    return True
        except OSError:
            pass
    return False


@pytest.mark.slow
def test_a_signal_to_the_one_process_accelerate_launcher_still_saves_a_checkpoint(tiny_model, tiny_data, tmp_path):
    """accelerate launch's one-process launcher passes no signal on: SIGTERM to it ended it at once and left
    training running without a parent, to train all its epochs with no checkpoint at the stop. The training
    process now asks for SIGTERM when its launcher exits."""
    from conftest import tiny_args
    from loop import checkpoint_folders as ckpt

    out = str(tmp_path / "out")
    args = tiny_args(tiny_model, tiny_data, out, num_train_epochs=50, logging_steps=1)
    proc = _train_until_step_3(["-m", "accelerate.commands.launch", "--num_processes", "1", "--cpu",
                                os.path.join(ROOT, "loop", "train.py"), *args], out)
    proc.send_signal(signal.SIGTERM)  # the launcher alone
    proc.communicate(timeout=60)
    deadline = time.time() + 120
    while _training_runs(out) and time.time() < deadline:
        time.sleep(0.2)
    assert not _training_runs(out), "training outlived its launcher"
    state = ckpt.read_state(ckpt.resolve_resume("latest", out))["state"]
    assert 3 <= state["global_step"] < 40 * 50 / 10  # stopped, far from the 50 epochs' end


@pytest.mark.slow
def test_a_repeated_signal_while_exiting_after_the_checkpoint_keeps_exit_75(tiny_model, tiny_data, tmp_path):
    """Python puts the default handlers back while it shuts down (a second or more with torch loaded): a
    scheduler's or launcher's repeat of the signal then ended the preempted run with 143, which a requeue
    script does not requeue. Once the checkpoint is saved the stop signals are ignored."""
    from conftest import tiny_args

    out = str(tmp_path / "out")
    proc = _train_until_step_3([os.path.join(ROOT, "loop", "train.py"),
                                *tiny_args(tiny_model, tiny_data, out, num_train_epochs=50, logging_steps=1)], out)
    proc.send_signal(signal.SIGTERM)
    for line in proc.stderr:
        if line.startswith("preempted:"):
            break
    time.sleep(0.3)  # into the shutdown (right after the line, our handler was still there)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == 75


FINISHED_THEN_SIGNALLED = """
import atexit, os, signal, sys, time
sys.path.insert(0, {root!r})
# registered before loop's own exit handler, so it runs after it: a stop signal in the shutdown of a finished run
atexit.register(lambda: (os.kill(os.getpid(), signal.SIGTERM), time.sleep(0.5), print("survived", flush=True)))
import loop
loop.main()
"""


@pytest.mark.slow  # a process of its own (~10 s)
def test_a_signal_while_a_finished_run_exits_keeps_exit_0(tiny_model, tiny_data, tmp_path):
    """audit53 F3: a job's time limit (or scancel) landing in the second or more a finished run takes to shut down
    ended it with 143 though every file was written, which a pipeline checking for 0 takes for a failure. The
    stop signals are ignored from the start of the shutdown, as after a preemption; the signal here is sent from
    the shutdown itself (an exit handler that runs after loop's), so the test does not race the clock."""
    from conftest import env, tiny_args

    script = tmp_path / "finished.py"
    script.write_text(FINISHED_THEN_SIGNALLED.format(root=ROOT))
    out = str(tmp_path / "out")
    proc = subprocess.run([sys.executable, str(script), *tiny_args(tiny_model, tiny_data, out, num_train_epochs=1)],
                          env=env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "survived" in proc.stdout, (proc.returncode, proc.stderr[-2000:])
    assert os.path.isfile(os.path.join(out, "best", "model.safetensors"))


def launch_sh_with_faults(tmp_path):
    """A copy of launch.sh whose loop/train.py is tests/fault_train.py (its LOOP_TEST_* faults), for a real run."""
    import shutil

    (tmp_path / "loop").mkdir()
    shutil.copy(LAUNCH, tmp_path / "launch.sh")
    os.symlink(IN_PLACE, tmp_path / "loop" / "accelerate_launch.py")
    (tmp_path / "loop" / "train.py").write_text(
        f"import runpy\nrunpy.run_path({os.path.join(ROOT, 'tests', 'fault_train.py')!r}, run_name='__main__')\n")
    return str(tmp_path / "launch.sh")


def real_run_env(bin_dir, **extra):
    """The environment of a real run through launch.sh: this node's as `bin_dir` fakes it, one thread a process."""
    from conftest import env

    e = {k: v for k, v in env(**extra).items() if k not in CLEAR and not k.startswith("SLURM_")}
    e.update(PATH=bin_dir + os.pathsep + os.environ["PATH"], OMP_NUM_THREADS="1")
    return e


def run_and_signal_the_step(launch, args, env, sig, when="sleeping at step 3"):
    """Run launch.sh, and once its output shows `when`, send `sig` to every process of it (as SLURM does); returns
    (exit code, stdout, stderr)."""
    proc = subprocess.Popen([launch, "--", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if when in line:
            signal_the_step(proc.pid, sig)
            break
    out, err = proc.communicate(timeout=300)
    return proc.returncode, "".join(lines) + out, err


@pytest.mark.slow  # ~20 s: a run whose step 3 takes 8 s
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
def test_slurm_signals_every_process_of_a_one_process_run_and_a_slow_step_still_saves(tiny_model, tiny_data,
                                                                                       tmp_path, sig):
    """SLURM signals every process of the step. accelerate 1.16's one-process launcher, which stood between
    launch.sh and train.py, takes a SIGTERM as "SIGTERM the training, SIGKILL it 5 s later": a step (or a
    checkpoint save) longer than that was killed, no checkpoint, a lock left. A SIGUSR1 killed it at once, and
    train.py's lines and its `preempted` mark were lost in its broken stderr pipe: launch.sh said nothing was
    saved, under the launcher's traceback. One process now runs without a launcher."""
    from conftest import tiny_args
    from loop import checkpoint_folders as ckpt

    out = str(tmp_path / "out")
    e = real_run_env(fake_bin(tmp_path, []), LOOP_TEST_SLEEP_AT_STEP="3:8")
    rc, stdout, err = run_and_signal_the_step(launch_sh_with_faults(tmp_path), tiny_args(
        tiny_model, tiny_data, out, num_train_epochs=50, logging_steps=1), e, sig)
    assert rc == 75, stdout[-2000:] + err[-3000:]
    assert ckpt.read_state(ckpt.resolve_resume("latest", out))["state"]["global_step"] == 3
    assert "the training processes saved a checkpoint" in err, err
    assert f"[loop] {sig.name}: finishing the current step" in err and "\npreempted: " in err, err
    assert "Traceback" not in err, err


@pytest.mark.slow  # ~40 s: two CPU processes under torch elastic
def test_slurm_signals_every_process_of_a_torch_elastic_run_and_a_slow_save_is_not_killed(tiny_model, tiny_data,
                                                                                          tmp_path):
    """Several processes run under torch elastic (accelerate's multi-GPU launcher), whose agent, signalled by
    SLURM with its ranks, passed SIGTERM on and SIGKILLed the ranks 30 s later (here 2 s:
    TORCH_ELASTIC_SHUTDOWN_TIMEOUT), mid-step or mid-save. launch.sh now tells it to leave the stop signals to the
    ranks (it dies of them at once, its ranks take a SIGTERM for it), and waits for the ranks. `accelerate` is a
    stand-in that runs torch's elastic agent over 2 CPU processes, as `accelerate launch --multi_gpu` does."""
    from conftest import free_port, tiny_args
    from loop import checkpoint_folders as ckpt

    bin_dir = fake_bin(tmp_path, [9.0, 9.0])
    fake_accelerate(tmp_path, f"""while [[ $# -gt 0 && "$1" != *train.py ]]; do shift; done
ACCELERATE_USE_CPU=true exec {sys.executable} -m torch.distributed.run --nproc_per_node 2 --master_port {free_port()} "$@"
""")
    out = str(tmp_path / "out")
    e = real_run_env(bin_dir, LOOP_TEST_SLEEP_AT_STEP="3:6", TORCH_ELASTIC_SHUTDOWN_TIMEOUT=2)
    rc, stdout, err = run_and_signal_the_step(launch_sh_with_faults(tmp_path), tiny_args(
        tiny_model, tiny_data, out, num_train_epochs=50, logging_steps=1, per_device_train_batch_size=8), e,
        signal.SIGTERM)
    assert rc == 75, stdout[-2000:] + err[-3000:]
    assert ckpt.read_state(ckpt.resolve_resume("latest", out))["state"]["global_step"] == 3
    assert "the training processes saved a checkpoint" in err, err


@pytest.mark.slow  # ~30 s: two CPU processes under torch elastic
def test_sigterm_to_the_torch_elastic_agent_alone_still_saves(tiny_model, tiny_data, tmp_path):
    """torch elastic's agent, told by launch.sh to leave SIGTERM to the ranks, dies of one sent to it alone (a `kill`
    aimed at it, the OOM killer): its ranks, in sessions of their own, would train on with no parent and no
    checkpoint at the stop. Each rank asks for a SIGTERM when the agent exits (preemption.stop_with_launcher), so it
    saves and launch.sh exits 75. The tests above signal every process, which hides a rank that does not ask
    (audit46 F3: with _launcher_drops_stops False for torch elastic ranks they passed, this one fails with 143)."""
    from conftest import free_port, tiny_args
    from loop import checkpoint_folders as ckpt

    bin_dir = fake_bin(tmp_path, [9.0, 9.0])
    fake_accelerate(tmp_path, f"""while [[ $# -gt 0 && "$1" != *train.py ]]; do shift; done
ACCELERATE_USE_CPU=true exec {sys.executable} -m torch.distributed.run --nproc_per_node 2 --master_port {free_port()} "$@"
""")
    out = str(tmp_path / "out")
    args = tiny_args(tiny_model, tiny_data, out, num_train_epochs=50, logging_steps=1, per_device_train_batch_size=8)
    proc = subprocess.Popen([launch_sh_with_faults(tmp_path), "--", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env=real_run_env(bin_dir, LOOP_TEST_SLEEP_AT_STEP="3:6"))
    for line in proc.stdout:
        if "sleeping at step 3" in line:
            break
    agent = [p for p in step_processes(proc.pid) if b"torch.distributed.run" in read_cmdline(p)]
    assert len(agent) == 1, agent
    os.kill(agent[0], signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        signal_the_step(proc.pid, signal.SIGKILL)
        pytest.fail("launch.sh still runs 120 s after the agent was killed: its ranks train on without it")
    assert proc.returncode == 75, err[-3000:]
    assert ckpt.read_state(ckpt.resolve_resume("latest", out))["state"]["global_step"] in (3, 4)


def test_a_tpu_config_without_torch_xla_is_one_line(monkeypatch, capsys):
    """accelerate_launch.py with a config whose launcher needs a package that is not installed (a TPU's torch_xla,
    DeepSpeed's deepspeed): one `error:` line naming the config and the module, exit 2, not accelerate's traceback
    (audit60 round-2 mutant al1)."""
    pytest.importorskip("accelerate")
    import importlib.util

    if importlib.util.find_spec("torch_xla") is not None:
        pytest.skip("torch_xla is installed here")
    from accelerate.commands import launch

    from loop import accelerate_launch

    monkeypatch.setattr(launch, "simple_launcher", launch.simple_launcher)  # main() replaces them: put back after
    if hasattr(launch, "_validate_launch_command"):
        monkeypatch.setattr(launch, "_validate_launch_command", launch._validate_launch_command)
    config = os.path.join(ROOT, "configs", "accelerate", "tpu.yaml")
    with pytest.raises(SystemExit) as e:
        accelerate_launch.main(["--config_file", config, os.path.join(ROOT, "loop", "train.py"), "--help"])
    assert e.value.code == 2
    assert capsys.readouterr().err == (f"error: accelerate cannot launch with {config} (No module named 'torch_xla'); "
                                       f"install what it names, or choose another config.\n")
