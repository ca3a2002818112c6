"""Shared test helpers: tiny models and data made on the spot, and a runner for the real CLI.

Everything is offline: HF_HUB_OFFLINE / HF_DATASETS_OFFLINE are set for this process and
for every subprocess. One-process runs started with `how="python"` are forks of a zygote that
imported the libraries once (tests/zygote.py says what that can and cannot show); set
LOOP_TEST_NO_ZYGOTE=1 to start every run as a process of its own.
"""

import contextlib
import getpass
import json
import os
import re
import signal
import subprocess
import sys
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
os.environ.update(OFFLINE)
# torch.compile's cache where torch keeps it by default, /tmp/torchinductor_<user>, not under the session's
# TMPDIR (subprocess_tmpdir): a warm cache from an earlier session saves each compiled run tens of seconds
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", os.path.join(
    tempfile.gettempdir(), "torchinductor_" + re.sub(r"[\\/:*?\"<>|]", "_", getpass.getuser())))

# A suite started as a background job (`... &` from a script, as a CI script may start it) has SIGINT ignored: bash
# starts such jobs so, and every process the tests start would inherit it (a Ctrl-C test's child slept through its
# signal; audit63 k1). Here SIGINT is what it is in a terminal's foreground process, in the controller and each
# worker, so in every process they start.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

from loop import synthetic  # noqa: E402


MAX_WORKERS = 8
GIB_PER_WORKER = 3  # a pytest worker, its zygote with the libraries imported (~1 GB) and its runs (a DDP sweep's)


def available_gib():
    try:
        with open("/proc/meminfo") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("MemAvailable:")) / 2**20
    except (OSError, StopIteration, ValueError):
        return None


@pytest.hookimpl(optionalhook=True)  # (a hook of pytest-xdist: pytest without it must not reject it)
def pytest_xdist_auto_num_workers(config):
    """`-n auto` (pyproject.toml): one worker per core this process may use, at most MAX_WORKERS and as
    many as the available memory holds; PYTEST_XDIST_AUTO_NUM_WORKERS overrides. Most runs are one
    process with one thread (OMP_NUM_THREADS=1 below): two workers take about 0.6 of one's time on 2 cores."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS", "").isdigit():
        return int(os.environ["PYTEST_XDIST_AUTO_NUM_WORKERS"])
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    gib = available_gib()
    fits = int(gib // GIB_PER_WORKER) if gib is not None else MAX_WORKERS
    return max(1, min(cores, MAX_WORKERS, fits))


def pytest_collection_modifyitems(config, items):
    """The real-data test first: it is the longest (2-4 minutes), and started last it would keep one
    worker busy long after the others finished (--dist worksteal hands out the rest as workers free)."""
    items.sort(key=lambda item: item.nodeid.split("::")[0] != "tests/test_real_data.py")


@pytest.fixture(scope="session", autouse=True)
def subprocess_tmpdir(tmp_path_factory):
    """The runs' temporary files go under this session's pytest folder (pytest keeps the last three
    sessions'), not into /tmp: torchrun leaves a torchelastic_* folder behind per launch, and a run cut
    short by a test its scratch folders."""
    os.environ["TMPDIR"] = tempfile.tempdir = str(tmp_path_factory.mktemp("tmpdir"))
    # this process too: what importing torch sets from it (TORCHINDUCTOR_CACHE_DIR) must be the zygote's
    if ZYGOTE.proc is None:  # it has not started: it starts in this environment (runs differing from it are not forked)
        ZYGOTE.env = env()


# loop/train.py plus deterministic interruptions (LOOP_TEST_* variables), installed from outside the loop
FAULTS = "tests/fault_train.py"


def env(**extra):
    e = dict(os.environ)
    e.update(OFFLINE)
    e["PYTHONPATH"] = ROOT + os.pathsep + e.get("PYTHONPATH", "")
    e.update({k: str(v) for k, v in extra.items()})
    return e


def free_port():
    """A port free now for a run's rendezvous, from this pytest worker's own range below the ephemeral
    ports (the launcher binds it seconds later, after its imports: two workers drawing from one range
    could both be handed the same port in between)."""
    import random
    import socket

    worker = int(re.sub(r"\D", "", os.environ.get("PYTEST_XDIST_WORKER", "")) or 0)
    low = 20000 + 500 * (worker % 20)
    for port in random.sample(range(low, low + 500), 500):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:  # the whole range taken: any port the system hands out
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launcher(nproc=1, how="accelerate"):
    """Command prefix that starts loop/train.py-style scripts with `nproc` CPU processes."""
    if nproc == 1 and how == "python":
        return [sys.executable]
    if nproc == 1:
        return [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--cpu"]
    # accelerate launch with MULTI_CPU needs mpirun; torchrun gives a real gloo DDP run.
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
            "--master_port", str(free_port())]


def rank_envs(nproc):
    """What torchrun sets for each of `nproc` processes on one node (the rendezvous on a free port)."""
    port = str(free_port())
    return [{"RANK": str(r), "LOCAL_RANK": str(r), "WORLD_SIZE": str(nproc), "LOCAL_WORLD_SIZE": str(nproc),
             "GROUP_RANK": "0", "ROLE_RANK": str(r), "ROLE_WORLD_SIZE": str(nproc), "MASTER_ADDR": "127.0.0.1",
             "MASTER_PORT": port, "OMP_NUM_THREADS": "1"} for r in range(nproc)]  # torchrun's threads per rank


def run_cli(args, nproc=1, script="loop/train.py", how="accelerate", timeout=600, check=True, fresh=False,
            **env_extra):
    """Run a script of this repo through a real launcher; returns CompletedProcess (text).

    One process started with `how="python"` is a fork of the zygote (tests/zygote.py: the libraries
    are imported once for the whole session) unless `fresh` asks for a process of its own (a test of
    what a run imports, or of output while importing). Several with `how="fork"` are forks of it too,
    one per rank with torchrun's environment: the output is each rank's in turn, the exit code the
    first failing rank's own (torchrun would say 1 and print its failure table: tests of what the
    launcher prints or does use torchrun, the default for nproc > 1). The output is decoded as written:
    '\r' stays '\r' (text=True would turn it into '\n')."""
    forked = how == "fork" and nproc > 1 and not fresh
    cmd = launcher(nproc, "python" if how == "fork" else how) + [os.path.join(ROOT, script)] + [str(a) for a in args]
    extra = {"ACCELERATE_USE_CPU": "true"} if nproc > 1 else {}
    extra.update(env_extra)
    run_env = env(**extra)
    proc = None
    if (nproc, how, fresh) == (1, "python", False):
        proc = ZYGOTE.run(cmd, run_env, timeout)
    elif forked:  # the ranks forked from the zygote, with torchrun's environment (else torchrun itself)
        proc = ZYGOTE.run([sys.executable] + cmd[-1 - len(args):], run_env, timeout, ranks=rank_envs(nproc))
    if proc is None:
        proc = subprocess.run(cmd, cwd=ROOT, env=run_env, capture_output=True, timeout=timeout)
    proc.stdout, proc.stderr = proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")
    if check and proc.returncode != 0:
        raise AssertionError(f"command failed ({proc.returncode}): {' '.join(cmd)}\n--- stdout\n"
                             f"{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-6000:]}")
    return proc


class Zygote:
    """The pytest side of tests/zygote.py: started at the first run, ended with the session. Any
    trouble (it printed while importing, it died, LOOP_TEST_NO_ZYGOTE=1) turns it off, and runs are
    real processes again."""

    # what a run may set otherwise than the zygote's environment: variables read while running, not while
    # importing (any other difference, e.g. HF_HUB_OFFLINE, TQDM_DISABLE or TZ, gets a real process)
    # PYTEST_CURRENT_TEST: set by pytest during each test; WANDB_*: wandb is not among the zygote's imports, a run
    # that reports to it imports it and reads them then (the zygote says so when it starts: else not forked)
    RUNTIME = ("LOOP_", "PYTEST_", "WANDB_")
    RUNTIME_NAMES = ("ACCELERATE_USE_CPU", "ACCELERATE_MIXED_PRECISION", "RANK", "LOCAL_RANK", "WORLD_SIZE",
                     "LOCAL_WORLD_SIZE", "GROUP_RANK", "ROLE_RANK", "ROLE_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                     "OMP_NUM_THREADS")  # (a fork sets torch's threads from it: tests/zygote.py)

    def __init__(self):
        self.off = os.environ.get("LOOP_TEST_NO_ZYGOTE") == "1"
        self.proc = self.sock = None
        self.dir = None
        self.env = env()  # now, before any test could change os.environ
        self.added = {}
        self.runs = 0

    def start(self):
        import atexit
        import socket
        import tempfile

        self.dir = tempfile.mkdtemp(prefix="loop-zygote-")
        ours, theirs = socket.socketpair()
        try:
            with open(os.path.join(self.dir, "zygote.out"), "w") as out, \
                    open(os.path.join(self.dir, "zygote.err"), "w") as err:
                self.proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "tests", "zygote.py"),
                                              str(theirs.fileno())], pass_fds=[theirs.fileno()], cwd=ROOT,
                                             env=self.env, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
            theirs.close()
            self.sock, self.reader, self.writer = ours, ours.makefile("r"), ours.makefile("w")
            atexit.register(self.stop)
            hello = self._read(300)
            ready, self.added = hello.get("ready"), hello.get("added", {})
            if hello.get("wandb_read", True):  # its imports read WANDB_* (a library upgrade): they set the process
                self.RUNTIME = tuple(p for p in self.RUNTIME if p != "WANDB_")
        except (OSError, EOFError, ValueError):  # it could not start or died importing: real processes
            ready = False
        if not ready:
            self.stop()

    def forkable(self, run_env):
        """The run's environment differs from the zygote's only in variables read at run time, or in
        what importing the libraries sets (torch: TORCHINDUCTOR_CACHE_DIR, also in this process once a
        test imported torch)."""
        keys = set(run_env) | set(self.env)
        return all(k.startswith(self.RUNTIME) or k in self.RUNTIME_NAMES
                   or (k in self.added and run_env.get(k) in (None, self.added[k]))
                   for k in keys if run_env.get(k) != self.env.get(k))

    def stop(self):
        import shutil

        self.restart()
        self.off = True
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def restart(self):
        """End this zygote; the next run starts another."""
        if self.proc is not None:
            if self.sock is not None:
                self.sock.close()
            self.proc.kill()
            self.proc.wait()
            self.proc = self.sock = None

    def _read(self, timeout):
        self.sock.settimeout(timeout)
        line = self.reader.readline()
        if not line:
            raise EOFError("the zygote ended")
        return json.loads(line)

    def run(self, cmd, run_env, timeout, ranks=None):
        """CompletedProcess (bytes) of `cmd` (python script args) forked from the zygote, or None
        where it cannot be: then the caller starts a real process. `ranks`: one environment update per
        process of a multi-process run (each rank's output follows the one before's)."""
        if self.off:
            return None
        if self.proc is None:
            self.start()
            if self.off:
                return None
        if not all(self.forkable({**run_env, **r}) for r in ranks or [{}]):
            return None
        self.runs += 1  # files of its own: output a leftover process writes late cannot reach another run
        files = [tuple(os.path.join(self.dir, f"run{self.runs}.{i}.{s}") for s in ("out", "err"))
                 for i in range(len(ranks or [{}]))]
        req = {"script": cmd[1], "args": cmd[2:], "cwd": ROOT, "env": run_env,
               "stdout": files[0][0], "stderr": files[0][1]}
        if ranks:
            req["ranks"] = [{"env": {**run_env, **r}, "stdout": out, "stderr": err} for r, (out, err) in zip(ranks, files)]
        try:
            self.writer.write(json.dumps(req) + "\n")
            self.writer.flush()
            started = self._read(60)
            pids = started.get("pids") or [started["pid"]]
        except (OSError, EOFError, ValueError):
            self.stop()
            return None

        def output():
            parts = []
            for out, err in files:
                with open(out, "rb") as f, open(err, "rb") as g:
                    parts.append((f.read(), g.read()))
            return b"".join(o for o, _ in parts), b"".join(e for _, e in parts)

        try:
            code = self._read(timeout)["returncode"]
        except TimeoutError:  # as subprocess.run's timeout: the run is killed (a socket that timed out
            for pid in pids:  # cannot be read again: the next run starts a new zygote)
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
            self.restart()
            out, err = output()
            raise subprocess.TimeoutExpired(cmd, timeout, output=out, stderr=err)
        except (OSError, EOFError, ValueError):
            self.stop()
            raise
        out, err = output()
        done = subprocess.CompletedProcess(cmd, code, out, err)
        for pair in files:
            for path in pair:
                os.remove(path)
        return done


ZYGOTE = Zygote()


@contextlib.contextmanager
def pipeline_failing_after(monkeypatch, batches, error=None):
    """A monkeypatch context in which transformers' text-classification pipeline scores `batches` batches,
    then raises `error` (default: a RuntimeError that is no out-of-memory error predict.py knows, so the
    error itself comes out: predict.py's streaming output)."""
    from transformers import TextClassificationPipeline

    forward, calls = TextClassificationPipeline._forward, []

    def failing(self, *args, **kwargs):
        calls.append(1)
        if len(calls) > batches:
            raise error or RuntimeError("CUDA out of memory (simulated)")
        return forward(self, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(TextClassificationPipeline, "_forward", failing)
        yield


def hub_cache_repo(cache, name, files, repo_type="model"):
    """A repository `name` in the hub cache layout under `cache` (what `hf download` leaves, as huggingface_hub's
    try_to_load_from_cache reads it: refs/main naming a snapshot of the files, {filename: text}); its snapshot."""
    import pathlib

    repo = pathlib.Path(cache) / (f"{repo_type}s--" + name.replace("/", "--"))
    sha = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(sha)
    snapshot = repo / "snapshots" / sha
    for filename, text in files.items():
        (snapshot / filename).parent.mkdir(parents=True, exist_ok=True)
        (snapshot / filename).write_text(text)
    return snapshot


def listening_port():
    """A socket listening on 127.0.0.1 (a stand-in for a reachable Hub or proxy: the probe only connects), its port."""
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    listening_port.sockets.append(s)  # kept open for the test session
    return s.getsockname()[1]


listening_port.sockets = []


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def evals(output_dir):
    return [r for r in read_jsonl(os.path.join(output_dir, "metrics.jsonl")) if "eval_samples" in r]


def train_logs(output_dir):
    return [r for r in read_jsonl(os.path.join(output_dir, "metrics.jsonl")) if "loss" in r]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A folder with a word-level tokenizer and a 2-layer, 64-wide DistilBERT config (no weights)."""
    return synthetic.make_model_dir(str(tmp_path_factory.mktemp("tiny_model")))


@pytest.fixture(scope="session")
def tiny_pretrained(tiny_model, tmp_path_factory):
    """tiny_model with random base weights saved, as a pretrained body ships (no head): for runs that start from
    weights (LoRA refuses --from_scratch). Pass `from_scratch=None` to tiny_args."""
    import shutil

    import torch
    from transformers import AutoConfig, AutoModel

    path = str(tmp_path_factory.mktemp("tiny_pretrained") / "model")
    shutil.copytree(tiny_model, path)
    torch.manual_seed(0)
    AutoModel.from_config(AutoConfig.from_pretrained(tiny_model)).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """train.jsonl (600 rows) and validation.jsonl (200 rows) with string labels NEGATIVE/POSITIVE."""
    return write_data(tmp_path_factory.mktemp("tiny_data"), 600, 200)


def write_pair_data(d):
    """train.jsonl (600) and validation.jsonl (200) of a sentence-pair task in folder `d`: a neutral
    premise and a hypothesis whose sentiment is the label; returns `d`."""
    import random

    rng = random.Random(3)

    def rows(n, seed):
        return [{"premise": " ".join(rng.sample(synthetic.NEUTRAL, 4)), "hypothesis": r["text"], "label": r["label"]}
                for r in synthetic.make_rows(n, seed=seed)]

    synthetic.write_jsonl(rows(600, 1), d / "train.jsonl")
    synthetic.write_jsonl(rows(200, 2), d / "validation.jsonl")
    return d


def write_data(d, n_train, n_eval):
    """train.jsonl and validation.jsonl of the synthetic sentiment task in folder `d`; returns `d`."""
    synthetic.write_jsonl(synthetic.make_rows(n_train, seed=1), d / "train.jsonl")
    synthetic.write_jsonl(synthetic.make_rows(n_eval, seed=2), d / "validation.jsonl")
    return d


def tiny_args(model, data, out, **over):
    """Flags for a fast from-scratch run on the tiny model and data; override with keyword args."""
    args = {"model_name_or_path": model, "from_scratch": "true", "train_file": os.path.join(data, "train.jsonl"),
            "validation_file": os.path.join(data, "validation.jsonl"), "max_length": 64,
            "per_device_train_batch_size": 16, "learning_rate": 1e-3, "num_train_epochs": 2,
            "logging_steps": 5, "output_dir": out}
    args.update(over)
    flat = []
    for k, v in args.items():
        if v is not None:
            flat += [f"--{k}", str(v)]
    return flat
