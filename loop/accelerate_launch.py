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

if __package__ in (None, ""):
    # Run as a script: loop/'s modules (config, data, logs...) must not shadow real packages accelerate imports.
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path = [p for p in sys.path if os.path.abspath(p or ".") != here]

from accelerate.commands import launch  # noqa: E402
from accelerate.utils import prepare_simple_launcher_cmd_env  # noqa: E402


def run_in_place(args):
    """accelerate's `simple_launcher` without the launcher: the same command and environment, exec'd."""
    cmd, env = prepare_simple_launcher_cmd_env(args)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvpe(cmd[0], cmd, env)


def main(argv=None):
    args = launch.launch_command_parser().parse_args(argv)
    launch.simple_launcher = run_in_place  # what accelerate's launch_command runs for one process
    launch.launch_command(args)


if __name__ == "__main__":
    main()
