"""`python -m loop ...` trains, as `loop-train ...` and `python -m loop.train ...` do (`--help` lists the options);
`loop-predict` / `python -m loop.predict` classifies texts with a trained model."""

from loop import main

if __name__ == "__main__":
    main()
