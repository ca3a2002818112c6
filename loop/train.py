"""Fine-tune a text classifier: `accelerate launch loop/train.py --config configs/imdb.yaml`.

Also runs as `python loop/train.py ...` (one process) or `torchrun ... loop/train.py ...`.
"""

import os
import sys

try:
    os.getcwd()
except FileNotFoundError:  # a shell in a folder deleted since (every relative path, and transformers' import, fail)
    print("error: the current folder no longer exists; cd into one that does and run again.", file=sys.stderr)
    sys.exit(2)
if __package__ in (None, ""):
    # Run as a script: put the repository root (not loop/) on the path so `import loop` works
    # even without `pip install -e .`, and loop/'s modules cannot shadow real packages.
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path = [p for p in sys.path if os.path.abspath(p or ".") != here]
    sys.path.insert(0, os.path.dirname(here))

from loop import main  # noqa: E402

if __name__ == "__main__":
    main()
    from loop.distributed import exit_past_gloo_workers

    exit_past_gloo_workers(0)  # the process ends here: under gloo's workers, without finalizing the interpreter
