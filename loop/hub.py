"""The Hub check: before anything loads, make sure every Hub name we were given can be had.

Owns one question: are the model, tokenizer and dataset either local, already in the Hugging
Face cache (as the libraries read it offline), or on a Hub we can reach (directly or through the
proxy the libraries use)? If not, fail in seconds with one line naming every flag that takes a
local path, instead of the libraries' minute of "Retrying in 8s [Retry 5/5]" and an error that
names only the first of them. If the Hub cannot be reached and everything is cached, put the
libraries offline for this process (go_offline), which spares them those retries for every cached
file. Also the start-time check of --push_to_hub (push_problem). Does not own loading (`models.py`,
`data.py`).
"""

import errno
import json
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
    """[(flag, name, repo_type, probe files)] for the options that name something on the Hub (a name is cached
    when any of its probe files is)."""
    names = []
    if not os.path.isdir(cfg.model_name_or_path):
        names.append(("--model_name_or_path", cfg.model_name_or_path, "model", ("config.json",)))
    tok = cfg.tokenizer_name
    if tok and not os.path.isdir(tok):  # a tokenizer repo may ship only tokenizer.json or its vocabulary files
        names.append(("--tokenizer_name", tok, "model", ("tokenizer_config.json", "tokenizer.json", "vocab.txt",
                                                         "vocab.json", "tokenizer.model", "spiece.model")))
    if not (cfg.train_file or cfg.validation_file) and cfg.dataset_name and not os.path.exists(cfg.dataset_name):
        names.append(("--dataset_name", cfg.dataset_name, "dataset", ()))
    return names


def cached(name, repo_type, filenames, config_name=None):
    """Whether `name` can be loaded offline: a model (or tokenizer) whose hub cache holds one of `filenames`; a
    dataset that datasets has prepared in its own cache (offline, load_dataset reads only that copy, not the hub
    cache's files), for `config_name` when given."""
    if repo_type == "dataset":
        return datasets_cache(name, config_name)[0]
    try:
        from huggingface_hub import try_to_load_from_cache

        return any(isinstance(try_to_load_from_cache(name, f, repo_type=repo_type), str) for f in filenames)
    except Exception:  # a name that is not a valid repo id: not cached
        return False


def hub_name(name):
    """Whether `name` (not a folder here) can be a Hub id (NAME or USER/NAME); './best', '/runs/t/best' or 'a//b'
    cannot: a path meant, mistyped."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return not name.startswith((".", os.sep))


def check_readable(path, flag):
    """Refuse a path this user cannot reach (a folder above it they may not enter: another user's home, mode 700),
    or a folder they may not list or enter (another user's, mode 700 or 711): it was "not a folder", "does not
    exist" (review rev F6), "no config.json", a PermissionError traceback from listing it, or (711: config.json
    readable, the folder not listable) the tokenizer files' fault (helper env nits)."""
    shut = unreachable(path)
    if shut:
        raise UserError(f"{flag} '{path}' {shut}; fix its permissions, or run as a user who may read it.")


def unreachable(path):
    """Why this user cannot reach `path`, as a clause, or None."""
    try:
        os.stat(path)
    except PermissionError:
        above = os.path.realpath(path)  # (a link: the folders above its target)
        folders = []
        while os.path.dirname(above) != above:
            above = os.path.dirname(above)
            folders.append(above)
        shut = next((f for f in reversed(folders) if not os.access(f, os.X_OK)), None)
        return (f"cannot be reached: the folder '{shut}' above it cannot be entered (permission denied)" if shut
                else "cannot be reached (permission denied)")
    except (OSError, ValueError):  # not there (a Hub name), or not a path at all
        return None
    if os.path.isdir(path) and not os.access(path, os.R_OK | os.X_OK):
        return "cannot be read (permission denied)"
    return None


def dangling(name):
    """Whether `name` is a link to nothing: its target is not there (not merely out of this user's reach, which
    check_readable names: review rev3 F1)."""
    try:
        os.stat(name)
    except FileNotFoundError:
        return os.path.islink(name)
    except (OSError, ValueError):
        return False
    return False


def check_link(name, flag, what="folder"):
    """Refuse a name that is a symbolic link to nothing (a run moved or deleted since the link was made): it was said
    not to be a folder (or not to exist), or, a valid Hub id ('best'), looked for on the Hub; or a link in a loop of
    links."""
    if dangling(name):
        raise UserError(f"{flag} '{name}' is a link to '{os.path.realpath(name)}', which does not exist; point the "
                        f"link at the {what}, or pass the {what} itself.")
    try:
        os.stat(name)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise UserError(f"{flag} '{name}' is a link in a loop of links, which never reaches a {what}; point it at "
                            f"the {what}, or pass the {what} itself.") from None
    except ValueError:
        pass


def folder_typo(name):
    """" (though 'out' is a folder here)" for a name whose first part is a folder here ('out/bets', a typo of
    out/best), else "": such a name is a mistyped path more likely than a Hub id, and a Hub repository of that name
    would supply the model (with --trust_remote_code, its code)."""
    under = name.split("/")[0]
    return f" (though '{under}' is a folder here)" if "/" in name and os.path.isdir(under) else ""


def datasets_cache(name, config_name=None):
    """(found, problem) for Hub dataset `name` in the datasets cache, where load_dataset reads it offline
    (namespace___snake_name/config/version/hash, each copy with its dataset_info.json): found, a copy (of
    `config_name` when given) is there; problem, why load_dataset would still fail on it (one phrase with its fix),
    or None. As datasets picks (packaged_modules/cache: _find_hash_in_cache): it reads the dataset_info.json of
    every copy it considers, takes the newest, and then of every configuration at that copy's version and hash,
    refusing several of them when no configuration is named; a copy cut short (a warm-up killed before it
    finished: no dataset_info.json) fails the load even beside a whole one."""
    import glob

    try:
        root = glob.escape(datasets_cache_root(name))
    except ImportError:
        return False, None

    def copies(config, version="*", hash_="*"):
        """[(copy, whole)] as datasets filters them: a copy whose dataset_info.json names another configuration
        (default-<hash>: made with other arguments) is not one; one without it (cut short) is kept, not whole."""
        found = []
        for p in glob.glob(os.path.join(root, config, version, hash_)):
            if not os.path.isdir(p):
                continue
            try:
                with open(os.path.join(p, "dataset_info.json"), encoding="utf-8") as f:
                    named, whole = json.load(f).get("config_name"), True
            except OSError:
                named, whole = None, False
            except (ValueError, AttributeError):  # there, but unreadable: datasets' own error then says so
                named, whole = None, True
            if named in (None, p.split(os.sep)[-3]):
                found.append((p, whole))
        return found

    def cut_short(found):
        cut = next((p for p, whole in found if not whole), None)
        return cut and (f"the datasets cache holds a copy of '{name}' cut short ('{cut}', without its "
                        f"dataset_info.json), which load_dataset fails on: delete that folder")

    considered = copies(glob.escape(config_name) if config_name else "*")
    problem = cut_short(considered)
    if problem or not considered:
        return any(whole for _, whole in considered), problem
    version, hash_ = max((p for p, _ in considered), key=os.path.getmtime).split(os.sep)[-2:]
    alike = copies("*", glob.escape(version), glob.escape(hash_))
    problem = cut_short(alike)
    if problem:
        return True, problem
    configs = sorted(p.split(os.sep)[-3] for p, _ in alike)
    if not config_name and len(configs) > 1:
        return True, (f"the datasets cache holds {len(configs)} configurations of '{name}' ({', '.join(configs)}), "
                      f"which load_dataset will not choose between: pass --dataset_config_name {configs[0]} (or "
                      f"another of them)")
    return True, None


def datasets_cache_root(name):
    """The datasets cache's folder of Hub dataset `name` (its prepared copies: namespace___snake_name)."""
    from datasets import config
    from datasets.naming import camelcase_to_snakecase

    parts = name.split("/")
    parts[-1] = camelcase_to_snakecase(parts[-1])
    return os.path.join(str(config.HF_DATASETS_CACHE), "___".join(parts))


def hub_snapshot(name, repo_type):
    """The hub cache's folder of `name`'s files (its main revision, else the newest snapshot), or None."""
    try:
        from huggingface_hub import constants
    except ImportError:
        return None
    repo = os.path.join(constants.HF_HUB_CACHE, f"{repo_type}s--" + name.replace("/", "--"))
    try:
        with open(os.path.join(repo, "refs", "main"), encoding="utf-8") as f:
            main = os.path.join(repo, "snapshots", f.read().strip())
        if os.path.isdir(main):
            return main
    except OSError:
        pass
    try:
        shots = [e.path for e in os.scandir(os.path.join(repo, "snapshots")) if e.is_dir()]
    except OSError:
        return None
    return max(shots, key=os.path.getmtime) if shots else None


def probe_address():
    """(host, port) a connection to the Hub goes to first: the endpoint (HF_ENDPOINT, default huggingface.co),
    or the proxy the libraries take for it (HTTPS_PROXY/ALL_PROXY, unless NO_PROXY names the host): on a
    cluster that reaches the Hub only through its proxy, a direct connection fails while downloads work."""
    import urllib.request

    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
    proxies = urllib.request.getproxies()
    proxy = proxies.get(url.scheme or "https") or proxies.get("all")
    if proxy and not urllib.request.proxy_bypass(host):
        via = urlparse(proxy if "://" in proxy else "http://" + proxy)
        if via.hostname:
            return via.hostname, via.port or (443 if via.scheme == "https" else 1080 if via.scheme.startswith("socks")
                                              else 80)
    return host, port


def reachable(timeout=PROBE_TIMEOUT_S):
    """True when a TCP connection to the Hub endpoint (or its proxy) opens within `timeout` (DNS included)."""
    host, port = probe_address()
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


def _true(value):
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def offline_variable(repo_type):
    """The environment variable that keeps the library loading a `repo_type` name off the Hub, or None:
    huggingface_hub (models, tokenizers) reads HF_HUB_OFFLINE, or TRANSFORMERS_OFFLINE when that is unset;
    datasets is offline with HF_DATASETS_OFFLINE too (and downloads through huggingface_hub: its variable holds
    datasets back as well, whatever HF_DATASETS_OFFLINE says)."""
    var = "HF_HUB_OFFLINE" if os.environ.get("HF_HUB_OFFLINE") else "TRANSFORMERS_OFFLINE"
    if _true(os.environ.get(var)):
        return var
    if repo_type == "dataset" and _true(os.environ.get("HF_DATASETS_OFFLINE")):
        return "HF_DATASETS_OFFLINE"
    return None


def go_offline():
    """Put this process's huggingface_hub (which transformers asks) and datasets in offline mode, as
    HF_HUB_OFFLINE=1 would have at their import: with the Hub unreachable they would otherwise retry every
    lookup of a cached name 5 times (1 + 2 + 4 + 8 + 8 s: minutes a start). The environment is left as it is
    (push_problem reads the user's own setting)."""
    import huggingface_hub.constants

    huggingface_hub.constants.HF_HUB_OFFLINE = True
    try:
        import datasets.config
    except ImportError:
        return
    for attr in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        if hasattr(datasets.config, attr):
            setattr(datasets.config, attr, True)


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
    why, var = None, offline_variable("model")  # (TRANSFORMERS_OFFLINE too, where HF_HUB_OFFLINE is unset)
    if var:
        why = f"offline mode is on ({var}); unset it"
    else:
        from huggingface_hub import get_token

        if not get_token():
            why = "no Hugging Face token is set; run `hf auth login` or set HF_TOKEN"
        elif not reachable():
            why = "the Hub cannot be reached from here; push best/ later with `hf upload`"
    return f"--push_to_hub would fail after training: {why}, or drop --push_to_hub." if why else None


def check(cfg):
    """Before anything loads: each Hub name is cached or the Hub reachable (within ~4 s), else one UserError naming
    them all. Every name cached and the Hub unreachable (an offline node without HF_HUB_OFFLINE): the libraries are
    put offline (go_offline) and the line saying so is returned; else None."""
    names = hub_names(cfg)
    for flag, name, kind, _ in names:
        check_link(name, flag)
        check_readable(name, flag)
        if kind == "model" and not hub_name(name):  # no Hub to ask: a path, mistyped
            raise UserError(f"{flag} '{name}' is not a folder (nor a Hub name, NAME or USER/NAME); check the path.")
    online = [kind for _, _, kind, _ in names if not offline_variable(kind)]
    if online and reachable():  # the libraries fetch what is missing, and check what is cached
        return None
    missing, problems = [], []
    for flag, name, kind, probes in names:
        if kind == "dataset":
            found, problem = datasets_cache(name, cfg.dataset_config_name)
            if problem:
                problems.append(problem)
        else:
            found = cached(name, kind, probes)
        if not found:
            missing.append((flag, name, kind))
    if problems:
        raise UserError(f"{'; '.join(problems)}.")
    if missing:
        raise UserError(not_fetchable(cfg, missing, online))
    if not online:
        return None
    go_offline()
    return (f"the Hugging Face Hub cannot be reached: {' and '.join(repr(name) for _, name, _, _ in names)} "
            f"read from the cache, offline (set HF_HUB_OFFLINE=1 on nodes without internet to skip this check)")


def not_fetchable(cfg, missing, probed):
    """The refusal of `missing` [(flag, name, repo_type)] names: where they were looked for, why not fetched,
    and the flags of local copies for the kinds missing."""
    from huggingface_hub import constants

    named = " and ".join(f"{flag} '{name}'{folder_typo(name)}" for flag, name, _ in missing)
    kinds = {kind for _, _, kind in missing}
    why = ("the Hub cannot be reached" if probed and any(not offline_variable(kind) for kind in kinds) else
           f"offline mode is on: {', '.join(sorted({offline_variable(kind) for kind in kinds} - {None}))}")
    where = [f"the hub cache '{constants.HF_HUB_CACHE}'"] if "model" in kinds else []
    if "dataset" in kinds:
        from datasets import config

        where.append(f"the datasets cache '{config.HF_DATASETS_CACHE}'")
    flags = {flag for flag, _, _ in missing}
    advice = []
    if "--model_name_or_path" in flags:
        advice.append("--model_name_or_path /path/to/model" + (" (and --tokenizer_name if separate)"
                                                               if "--tokenizer_name" not in flags else ""))
    if "--tokenizer_name" in flags:
        advice.append("--tokenizer_name /path/to/tokenizer")
    if "dataset" in kinds:
        shot = hub_snapshot(next(name for _, name, kind in missing if kind == "dataset"), "dataset")
        if shot and not set(os.listdir(shot)) - {"README.md", ".gitattributes"}:
            shot = None  # its card alone: no data files to read
        advice.append(f"--dataset_name {shot} (its files, in the hub cache)" if shot else local_files(cfg))
    ignored = ("; TRANSFORMERS_CACHE is set, which transformers no longer reads: set HF_HUB_CACHE to that folder"
               if os.environ.get("TRANSFORMERS_CACHE") and "model" in kinds else "")
    return (f"{named} {'is' if len(missing) == 1 else 'are'} neither a local folder nor in {' nor '.join(where)}, and "
            f"cannot be fetched from the Hugging Face Hub ({why}){ignored}; pass local copies: {', '.join(advice)}.")
