"""The Hub check: before anything loads, make sure every Hub name we were given can be had.

Owns one question: are the model, tokenizer and dataset either local, already in the Hugging
Face cache, or on a Hub we can reach? If not, fail in seconds with one line naming every flag
that takes a local path, instead of the libraries' minute of "Retrying in 8s [Retry 5/5]" and an
error that names only the first of them. Does not own loading (`models.py`, `data.py`).
"""

import os
import socket
import threading
from urllib.parse import urlparse

from .errors import UserError

PROBE_TIMEOUT_S = 3.0


def local_files(cfg):
    """The local-file flags that replace the Hub dataset: with --test_split held out, its file is the
    --test_file (as --validation_file it would pick best/) and --test_split goes."""
    if getattr(cfg, "eval_only", False):  # the labels are then the model's: no training file needed
        return "--validation_file test.parquet" + (" --test_file heldout.parquet, without --test_split"
                                                   if getattr(cfg, "test_split", None) else "")
    if getattr(cfg, "test_split", None):
        return ("--train_file train.parquet --validation_file dev.parquet (or --validation_split_percentage 10) "
                "--test_file test.parquet, without --test_split")
    return "--train_file train.parquet --validation_file test.parquet"


def hub_names(cfg):
    """[(flag, name, repo_type, probe file)] for the options that name something on the Hub."""
    names = []
    if not os.path.isdir(cfg.model_name_or_path):
        names.append(("--model_name_or_path", cfg.model_name_or_path, "model", "config.json"))
    tok = cfg.tokenizer_name
    if tok and not os.path.isdir(tok):
        names.append(("--tokenizer_name", tok, "model", "tokenizer_config.json"))
    if not (cfg.train_file or cfg.validation_file) and cfg.dataset_name and not os.path.exists(cfg.dataset_name):
        names.append(("--dataset_name", cfg.dataset_name, "dataset", "README.md"))
    return names


def cached(name, repo_type, filename):
    try:
        from huggingface_hub import try_to_load_from_cache

        if isinstance(try_to_load_from_cache(name, filename, repo_type=repo_type), str):
            return True
    except Exception:  # a name that is not a valid repo id: not cached
        return False
    return repo_type == "dataset" and in_datasets_cache(name)


def in_datasets_cache(name):
    """Whether `datasets` has a prepared copy of Hub dataset `name` (a datasets cache copied or shared without the
    hub cache, or a repo without a README): load_dataset reads it offline, where datasets' own cache factory
    looks (namespace___snake_name/config/version/hash)."""
    import glob

    try:
        from datasets import config
        from datasets.naming import camelcase_to_snakecase
    except ImportError:
        return False
    parts = name.split("/")
    parts[-1] = camelcase_to_snakecase(parts[-1])
    folder = os.path.join(str(config.HF_DATASETS_CACHE), glob.escape("___".join(parts)))
    return any(os.path.isdir(p) for p in glob.glob(os.path.join(folder, "*", "*", "*")))


def reachable(timeout=PROBE_TIMEOUT_S):
    """True when a TCP connection to the Hub endpoint opens within `timeout` (DNS included)."""
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
    ok = []

    def probe():  # in a thread: name resolution has no timeout of its own
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            ok.append(True)
        except OSError:
            pass

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout + 0.5)
    return bool(ok)


def offline_mode():
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on")
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"))


def repo_id(cfg):
    """The repository --push_to_hub uploads to: --hub_model_id, else the output_dir folder's name."""
    return cfg.hub_model_id or os.path.basename(os.path.abspath(cfg.output_dir))


def push_problem(cfg):
    """Why --push_to_hub would fail after training (a repository id the Hub refuses, offline mode, no token,
    no Hub), or None. Asked by the main process alone, which is the one that pushes. Permissions are the
    Hub's to judge."""
    if not cfg.push_to_hub:
        return None
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    repo = repo_id(cfg)
    try:
        validate_repo_id(repo)
    except HFValidationError:
        given = "--hub_model_id" if cfg.hub_model_id else "the --output_dir folder's name (the default --hub_model_id)"
        return (f"--push_to_hub would fail after training: '{repo}', {given}, is not a Hub repository id; pass "
                f"--hub_model_id NAME or USER/NAME (letters, digits, '-', '_', '.').")
    why = None
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        why = "offline mode is on (HF_HUB_OFFLINE); unset it"
    else:
        from huggingface_hub import get_token

        if not get_token():
            why = "no Hugging Face token is set; run `hf auth login` or set HF_TOKEN"
        elif not reachable():
            why = "the Hub cannot be reached from here; push best/ later with `hf upload`"
    return f"--push_to_hub would fail after training: {why}, or drop --push_to_hub." if why else None


def check(cfg):
    """Raise one UserError when a Hub name is neither cached nor reachable (within ~4 s)."""
    missing = [(flag, name) for flag, name, kind, probe in hub_names(cfg) if not cached(name, kind, probe)]
    if not missing:
        return
    if not offline_mode() and reachable():
        return
    why = "offline mode is on: HF_HUB_OFFLINE" if offline_mode() else "the Hub cannot be reached"
    named = " and ".join(f"{flag} '{name}'" for flag, name in missing)
    verb = "is" if len(missing) == 1 else "are"
    raise UserError(f"{named} {verb} not a local folder and could not be fetched from the Hugging Face Hub "
                    f"({why}); pass local copies: --model_name_or_path /path/to/model (and --tokenizer_name if "
                    f"separate), {local_files(cfg)}.")
