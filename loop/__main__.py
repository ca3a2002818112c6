"""`python -m loop ...` trains, as `loop-train ...` and `python -m loop.train ...` do (`--help` lists the options);
`loop-predict` / `python -m loop.predict` classifies texts with a trained model."""

import sys

from loop import main

if __name__ == "__main__":
    # argparse names the program after sys.argv[0], here .../loop/__main__.py: `usage: __main__.py [-h] ...` (as
    # Python's own `python -m unittest` does, name the command that was typed)
    if sys.argv[0].endswith("__main__.py"):
        sys.argv[0] = "python -m loop"
    main()
