"""loop's version: `loop.__version__`, the `--version` of train and predict, the model card's framework versions
and the opening line of a run.

A source tree (a clone, run from its root or installed editable) reads its own pyproject.toml: the installed
metadata can be another copy's (an older install, or a stale editable one of another folder) or missing. An
installed wheel has no pyproject.toml beside the package and reads its metadata.
"""

import importlib.metadata
import os
import re

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
