"""loop's version: `loop.__version__`, the `--version` of train and predict, the model card's framework versions
and the opening line of a run; and what best/training_args.json records of the software (library_versions).

A source tree (a clone, run from its root or installed editable) reads its own pyproject.toml: the installed
metadata can be another copy's (an older install, or a stale editable one of another folder) or missing. An
installed wheel has no pyproject.toml beside the package and reads its metadata.
"""

import functools
import importlib.metadata
import os
import platform
import re
import subprocess
import sys

UNKNOWN = "0+unknown"  # a copy of the package with neither (PEP 440: version 0, a local label saying why)
HERE = os.path.dirname(os.path.abspath(__file__))


def source_tree_version(pyproject):
    """The version in the [project] table of `pyproject` when it names the project "loop", else None (no such
    file, or another project's: loop copied into someone else's tree)."""
    try:
        with open(pyproject, encoding="utf-8") as f:
            text = f.read()
    except OSError:
        return None
    table = re.search(r"^\[project\][^\n]*\n(.*?)(?=^\[|\Z)", text, re.M | re.S)
    body = table.group(1) if table else ""
    name = re.search(r"""^name\s*=\s*["']([^"']*)["']""", body, re.M)
    version = re.search(r"""^version\s*=\s*["']([^"']*)["']""", body, re.M)
    return version.group(1) if name and version and name.group(1) == "loop" else None


def find_version():
    version = source_tree_version(os.path.join(os.path.dirname(HERE), "pyproject.toml"))
    if version:
        return version
    try:
        return importlib.metadata.version("loop")
    except importlib.metadata.PackageNotFoundError:
        return UNKNOWN


__version__ = find_version()


def version_line():
    """`--version`'s line: the version and the folder it was imported from (which of several copies runs)."""
    return f"loop {__version__} from {HERE}"


# the libraries a run's numbers depend on, recorded in best/training_args.json (those installed)
LIBRARIES = ("torch", "transformers", "accelerate", "datasets", "tokenizers", "evaluate", "peft", "numpy",
             "huggingface_hub")


@functools.lru_cache(maxsize=None)
def library_versions():
    """{name: version} of python, loop (and, in a git clone, its commit) and the LIBRARIES installed: an imported
    module's own __version__, else the installed metadata (no import: evaluate takes seconds to import). Once a
    process: best/ is written again at every improvement."""
    out = {"python": platform.python_version(), "loop": __version__}
    commit = source_commit()
    if commit:
        out["loop_commit"] = commit
    for lib in LIBRARIES:
        version = getattr(sys.modules.get(lib), "__version__", None)
        if version is None:
            try:
                version = importlib.metadata.version(lib)
            except importlib.metadata.PackageNotFoundError:
                continue
        out[lib] = str(version)
    return out


def source_commit():
    """The git commit of a source tree's loop (a clone, run from it or installed editable), '+modified' when its
    loop/ differs from that commit; None for an installed wheel, or without git. Every build says the same
    __version__, so this is what tells two clones apart."""
    root = os.path.dirname(HERE)
    if not os.path.exists(os.path.join(root, ".git")):
        return None
    try:
        git = ["git", "--no-optional-locks", "-C", root]  # status must not rewrite the user's index
        commit = subprocess.run(git + ["rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if commit.returncode != 0:
            return None
        changed = subprocess.run(git + ["status", "--porcelain", "--untracked-files=no", "--", "loop"],
                                 capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return commit.stdout.strip() + ("+modified" if changed.returncode == 0 and changed.stdout.strip() else "")
