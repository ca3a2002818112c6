"""`accelerate launch`, except that a one-process launch becomes the training process instead of starting it.

    python loop/accelerate_launch.py [accelerate launch flags] loop/train.py [train args]

launch.sh starts one-process runs (one GPU, or the CPU) with it. accelerate's one-process launcher would stay
between launch.sh and train.py, and since accelerate 1.16 it pipes train.py's stderr through itself and takes a
SIGTERM as "SIGTERM the training, SIGKILL it 5 s later". SLURM signals every process of a job step, so at a
time limit or a preemption that launcher killed train.py in the middle of a step or a checkpoint save longer
than 5 s, and a SIGUSR1 ended the launcher at once, breaking the pipe of train.py's last lines. Here accelerate
itself reads the flags and the config file and works out the command and environment it would give train.py
(mixed precision, CPU, threads, dynamo: `prepare_simple_launcher_cmd_env`); this process then execs it, so it
is train.py, with launch.sh as its parent and nothing in between. Launches of several processes (and FSDP,
DeepSpeed or TPU configs) go to accelerate's own launchers, as `accelerate launch` sends them.
"""

import os
import sys

try:
    os.getcwd()
except FileNotFoundError:  # a shell in a folder deleted since (every relative path, and transformers' import, fail)
    print("error: the current folder no longer exists; cd into one that does and run again.", file=sys.stderr)
    sys.exit(2)

if __package__ in (None, ""):
    # Run as a script: loop/'s modules (config, data, logs...) must not shadow real packages accelerate imports.
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path = [p for p in sys.path if os.path.abspath(p or ".") != here]

import yaml  # noqa: E402
from accelerate.commands import launch  # noqa: E402
from accelerate.utils import prepare_simple_launcher_cmd_env  # noqa: E402


def refuse(what, e, fix):
    """One `error:` line and exit 2, as train.py's own errors (not accelerate's traceback)."""
    mark = getattr(e, "problem_mark", None)  # broken YAML: what and where, not "while parsing a flow node"
    first = f"{e.problem}, line {mark.line + 1}" if mark is not None and getattr(e, "problem", None) else \
        (str(e).strip().splitlines() or [type(e).__name__])[0].rstrip(".")
    print(f"error: {what} ({first}); {fix}.", file=sys.stderr)
    sys.exit(2)


def run_in_place(args):
    """accelerate's `simple_launcher` without the launcher: the same command and environment, exec'd."""
    try:
        cmd, env = prepare_simple_launcher_cmd_env(args)
    except (ValueError, RuntimeError) as e:  # what this machine cannot run: fp8 without its hardware or library
        refuse("accelerate cannot start this run", e, "change the flag or config value it names")
    except (TypeError, AttributeError) as e:  # a value of the wrong type: `num_processes: one`, `mixed_precision: 3`
        refuse_config(args, e)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvpe(cmd[0], cmd, env)


def read_config(validate):
    """accelerate's reading of its config file and flags, a config it cannot read (broken YAML, an unknown
    distributed_type, none at all) said in one line naming the file, before any process starts."""
    def checked(args):
        try:
            return validate(args)
        # (AttributeError: an empty file, or one that is a YAML list or a word, where accelerate expects a mapping;
        # OSError: a --config_file that is missing, a folder or unreadable, which launch.sh checks but `accelerate
        # launch loop/accelerate_launch.py` does not)
        except (yaml.YAMLError, ValueError, KeyError, TypeError, AttributeError, OSError) as e:
            refuse_config(args, e)
    return checked


def refuse_config(args, e):
    """The one line for a config file (or, with none read, the flags) accelerate cannot use."""
    from accelerate.commands.config import default_config_file

    where = args.config_file or (default_config_file if os.path.isfile(default_config_file) else None)
    if where is None:  # no file read: the flags
        refuse("accelerate cannot launch with these flags", e, "change the one it names")
    if isinstance(e, AttributeError):  # accelerate's "'NoneType' object has no attribute 'get'": say what it read
        try:
            with open(where, encoding="utf-8") as f:
                read = yaml.safe_load(f)
            if not isinstance(read, dict):
                kind = {list: "a list", str: "text", int: "a number", float: "a number", bool: "true or false"}
                e = ValueError("it is empty" if read is None else f"it holds {kind.get(type(read), 'no settings')}, "
                               f"not a mapping of settings")
        except (OSError, ValueError, yaml.YAMLError):
            pass
    refuse(f"accelerate cannot use the config {where}", e, "correct it, or write a new one with `accelerate config`")


def main(argv=None):
    args = launch.launch_command_parser().parse_args(argv)
    launch.simple_launcher = run_in_place  # what accelerate's launch_command runs for one process
    if hasattr(launch, "_validate_launch_command"):  # (accelerate's own name: kept as it is where it changed)
        launch._validate_launch_command = read_config(launch._validate_launch_command)
    try:
        launch.launch_command(args)
    except ImportError as e:  # a config for DeepSpeed or a TPU where deepspeed or torch_xla is not installed
        from accelerate.commands.config import default_config_file

        where = args.config_file or (default_config_file if os.path.isfile(default_config_file) else "these flags")
        refuse(f"accelerate cannot launch with {where}", e, "install what it names, or choose another config")


if __name__ == "__main__":
    main()
