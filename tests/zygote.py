"""A process that imports the heavy libraries once and forks one child per command-line run.

Most tests run the real command line (`python loop/train.py ...`) in a process of its own, and on the
2-core test machine importing torch, datasets, transformers, accelerate, evaluate and peft takes 4-9
of the 6-15 seconds such a run takes. This process imports them once; each run is then a fork of it
that sets its own working directory, environment, argv and output files and executes the script as
`__main__`, exactly as `python script args` would after those imports. Exit codes are the same as a
subprocess's (negative for a signal).

What a forked run cannot show, a real one does (conftest.run_cli falls back to one by itself):
- output printed while importing (this process refuses to serve if its imports printed anything);
- environment variables libraries read at import time (a run whose environment differs from this
  process's in anything but a few variables read at run time gets a real process: conftest.Zygote);
- which libraries a run imports, and the quieting of a library imported late in a run: tests of those
  ask for a real process (`fresh=True`), and LOOP_TEST_NO_ZYGOTE=1 makes every run a real one;
- the interpreter's teardown (objects' __del__, "Exception ignored" lines at exit): a fork runs the
  atexit functions and flushes its streams, then _exits; the runs through a launcher (accelerate
  launch, torchrun, launch.sh) and the `fresh` ones show a real exit;
- the string-hash seed, which every fork shares (the determinism tests run one leg `fresh`).
A traceback of an uncaught exception has one frame of this file on top.

Protocol, one JSON line each way over the socket inherited as file descriptor argv[1]: this process
says {"ready", "added": what its imports set in the environment}; then per run {"script", "args",
"cwd", "env", "stdout", "stderr"} in, {"pid"} and then {"returncode"} out. A run of several
processes adds "ranks", one {"env", "stdout", "stderr"} per process (each rank's environment as
torchrun sets it): the reply's "pids" has them all, and "returncode" is the first failure's code.
"""

import json
import os
import socket
import sys

PRELOAD = ("torch", "datasets", "transformers", "accelerate", "evaluate", "peft", "safetensors", "tqdm",
           "transformers.modeling_utils", "transformers.models.auto.modeling_auto")


def run_child(req, added):
    """In the forked child: become `python script args` in req's directory and environment. Never
    returns: the script's end, sys.exit or an uncaught exception ends the interpreter as it would
    end a fresh one (atexit handlers, flushed streams, a traceback and exit 1)."""
    os.chdir(req["cwd"])
    os.environ.clear()
    os.environ.update(req["env"])
    for k, v in added.items():  # what the imports set (torch: TORCHINDUCTOR_CACHE_DIR), as in a fresh process
        os.environ.setdefault(k, v)
    for fd, path in ((1, req["stdout"]), (2, req["stderr"])):
        f = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(f, fd)
        os.close(f)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    reseed()
    threads = req["env"].get("OMP_NUM_THREADS")
    if threads and threads.isdigit():  # torchrun's 1 per rank: read at import in a fresh process, set here
        import torch

        torch.set_num_threads(int(threads))
    script = os.path.abspath(req["script"])
    sys.argv = [req["script"], *req["args"]]
    sys.path[0] = os.path.dirname(script)  # as for `python script`: the script's folder first
    import builtins
    import types

    main = types.ModuleType("__main__")
    main.__file__, main.__builtins__, main.__spec__ = script, builtins, None
    sys.modules["__main__"] = main
    with open(script, "rb") as f:
        code = compile(f.read(), script, "exec")
    try:
        exec(code, main.__dict__)
        status = 0
    except SystemExit as e:  # as the interpreter reads it: None is 0, a number itself, anything else printed, 1
        status = e.code
        if not (status is None or isinstance(status, int)):
            print(status, file=sys.stderr)
            status = 1
    except KeyboardInterrupt:  # the interpreter ends by SIGINT itself (exit -2), after the traceback
        sys.excepthook(*sys.exc_info())
        end(None)
    except BaseException:  # an uncaught exception: the traceback, exit 1
        sys.excepthook(*sys.exc_info())
        status = 1
    end(status or 0)


def reseed():
    """Random generators a fresh process seeds from the system, which a fork would share with every
    other fork: numpy's global one (unseeded shuffles) and the one datasets names its cache files
    with when a transform cannot be hashed (the same name in two runs would load one run's result in
    the other). Python's `random` reseeds itself at a fork; torch starts from a fixed seed anyway."""
    import numpy as np

    np.random.seed()
    fingerprint = sys.modules.get("datasets.fingerprint")
    if fingerprint is not None:
        fingerprint.fingerprint_rng.seed()


def end(status):
    """End the child as the interpreter ends a process: wait for its non-daemon threads, run the
    atexit functions, flush the streams. Then _exit: tearing down the modules it inherited from the
    zygote would write to every object they hold (reference counts) and copy all their memory, a
    second or two per run, for objects no run made."""
    import atexit
    import threading

    threading._shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    if status is None:
        import signal

        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    os._exit(status & 0xFF)  # as the interpreter: sys.exit(-1) is 255


def serve(sock):
    reader, writer = sock.makefile("r"), sock.makefile("w")

    def say(**msg):
        writer.write(json.dumps(msg) + "\n")
        writer.flush()

    before = dict(os.environ)
    for name in PRELOAD:
        __import__(name)
    added = {k: v for k, v in os.environ.items() if k not in before}
    sys.stdout.flush()
    sys.stderr.flush()
    printed = os.fstat(1).st_size + os.fstat(2).st_size  # both are files: anything the imports printed
    # the modules that read WANDB_* when imported: while the imports above load neither, a run's WANDB_*
    # are read in the run itself and it may be forked (conftest.Zygote.RUNTIME)
    wandb_read = [m for m in ("wandb", "transformers.integrations.integration_utils") if m in sys.modules]
    say(ready=printed == 0, printed=printed, added=added, wandb_read=wandb_read)
    import gc

    gc.freeze()  # the imported objects: no collection in a child walks (and so copies) them
    for line in reader:
        req = json.loads(line)
        ranks = req.pop("ranks", None) or [{}]  # a run of several processes: one fork per rank, as torchrun
        pids = []
        for rank in ranks:
            pid = os.fork()
            if pid == 0:  # the child: leave the protocol to the parent
                reader.close(), writer.close(), sock.close()
                run_child({**req, **rank}, added)
            pids.append(pid)
        say(pid=pids[0], pids=pids)
        say(returncode=wait_all(pids))


# A rank that failed while others still run: as torchrun's agent, which looks every 0.1 s, the others get
# SIGTERM, and SIGKILL 30 s later.
GRACE_S, KILL_S = 0.1, 30


def wait_all(pids):
    """Wait for every rank; the exit code of the first that failed (0 when none did). Ranks still running
    after another failed are stopped as torchrun stops them (SIGTERM, then SIGKILL), after a grace period."""
    import signal
    import time

    running, first, failed_at, termed = set(pids), 0, None, False
    while running:
        pid, status = os.waitpid(-1, os.WNOHANG) if failed_at is not None else os.waitpid(-1, 0)
        if pid == 0:  # some still run after a failure
            waited = time.monotonic() - failed_at
            if waited > GRACE_S + KILL_S:
                for p in running:
                    os.kill(p, signal.SIGKILL)
            elif waited > GRACE_S and not termed:
                for p in running:
                    os.kill(p, signal.SIGTERM)
                termed = True
            time.sleep(0.1)
            continue
        if pid not in running:
            continue
        running.discard(pid)
        code = os.waitstatus_to_exitcode(status)
        if code and not first:
            first, failed_at = code, time.monotonic()
    return first


if __name__ == "__main__":
    serve(socket.socket(fileno=int(sys.argv[1])))
