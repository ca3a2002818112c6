"""--config files: a YAML (or JSON) file's options read into flags, as if given on the command line.

Owns: reading each `--config FILE` (a duplicate key, text that is not UTF-8, a file that is not YAML, unknown
keys refused in one line each), the layering of several files (a later file's key wins), and each value's
turning into flags checked against its option's type: the text as written (`010` stays '010', `NO` is not
false for a text option), lists, mappings (`--class_weights`' pairs, `--lr_scheduler_kwargs`' JSON), a `~`
that no flag can say. Does not own: the options and their checks, the parser that reads these flags with the
command line's, or a data option's files (`config.py`: `TrainConfig`, `parse_args`, `data_files`); the hint
for an unknown key (`option_hints.py`).
"""

import dataclasses
import json
import math
import os
import re
import stat
import typing

import yaml

from .config import TrainConfig, _option_type, control_character
from .errors import UserError, short
from .option_hints import option_hint

# comma-list options whose YAML may be a mapping: {A: 1, B: 4} is A=1,B=4
PAIR_MAPPINGS = ("class_weights", "extra_eval_files", "extra_eval_splits")
JSON_MAPPINGS = ("lr_scheduler_kwargs",)  # options whose YAML may be a mapping, passed on as JSON


class _Typed:
    """A YAML 1.1 boolean or number with the text it was written as: `NO` reads as false and `010` as 8, so a
    text option takes the text (or, for a boolean, refuses it) rather than str() of the value."""

    __slots__ = ("value", "text")

    def __init__(self, value, text):
        self.value, self.text = value, text

    def __str__(self):
        return self.text


def _plain(value):
    return value.value if isinstance(value, _Typed) else value


class _DuplicateKey(Exception):
    def __init__(self, key, first, second):
        super().__init__(key)
        self.key, self.first, self.second = key, first, second


class _ConfigLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in a mapping (PyYAML keeps the last silently) and keeps
    the written text of booleans and numbers (_Typed)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = {}
            for key_node, _ in node.value:  # before merge keys (<<) are flattened: only keys written here
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = _plain(self.construct_object(key_node))
                line = key_node.start_mark.line + 1
                if (type(key), key) in seen:
                    raise _DuplicateKey(key, seen[(type(key), key)], line)
                seen[(type(key), key)] = line
        return super().construct_mapping(node, deep)


def _keep_text(construct):
    return lambda loader, node: _Typed(construct(loader, node), node.value)


for _tag, _construct in (("bool", yaml.SafeLoader.construct_yaml_bool), ("int", yaml.SafeLoader.construct_yaml_int),
                         ("float", yaml.SafeLoader.construct_yaml_float)):
    _ConfigLoader.add_constructor(f"tag:yaml.org,2002:{_tag}", _keep_text(_construct))


def yaml_to_argv(paths, config_cls=TrainConfig, values=None, sources=None):
    """The options of `--config` YAML files as flags (`--key value`), checked against each option's type. Several
    files (a list) are layered: a key in a later file replaces the earlier one's value, whatever either is (a base
    config and an experiment's changes; each key goes in once, so a `~` or `[]` later is not undone by an earlier
    value). A value no flag can give (an empty list, None for a variant's own option) goes into the dict `values`,
    if passed: the parser's defaults (the command line still wins). The dict `sources`, if passed, gets each key's
    file (the last that sets it)."""
    merged = {}
    for path in [paths] if isinstance(paths, str) else paths:
        for key, value in _read_yaml(path, config_cls).items():
            merged[key] = (path, value)
    if sources is not None:
        sources.update((key, path) for key, (path, _) in merged.items())
    hints = typing.get_type_hints(config_cls)
    argv = []
    for key, (path, value) in merged.items():
        argv += _yaml_option(path, key, value, hints.get(key), key in getattr(config_cls, "COMMA_LISTS", ()),
                             {} if values is None else values, config_cls)
    return argv


MAX_YAML_VALUES = 100_000  # values in one mapping option of a --config file, aliases expanded (schedule kwargs: ~10)


def yaml_error(path, e):
    """The refusal of a --config file PyYAML cannot read (`e`): where (the line its problem starts on: an unclosed
    '[' is found at the end of the file) and, where a value begins with a character YAML reads as syntax (an alias
    '*.jsonl', a list '[1].jsonl'), the quoting that fixes it."""
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError:
        lines = []
    marks = [m for m in (getattr(e, "problem_mark", None), getattr(e, "context_mark", None)) if m is not None]
    mark = next((m for m in marks if m.line < len(lines)), marks[0] if marks else None)
    if mark is None:
        return f"--config {path} is not valid YAML ({problem})."
    text = lines[mark.line] if mark.line < len(lines) else ""
    value = text.partition(":")[2].strip()
    hint = (f"; quote a value that begins with one of * & ! [ {{ | > % @ ` (e.g. {text.partition(':')[0].strip()}: "
            f"'{value}')" if value[:1] in tuple("*&![{|>%@`") else
            "; YAML allows no tab there: use spaces" if "'\\t'" in problem else "")
    return f"--config {path} is not valid YAML at line {mark.line + 1} ({problem}){hint}."


def _load_yaml(text):
    """A --config file's text as YAML; a JSON file indented with tabs (JSON allows them, YAML does not outside a
    string, and in a JSON string a tab is written \\t) is read with the tabs as spaces, as the same values."""
    try:
        return yaml.load(text, Loader=_ConfigLoader)
    except yaml.YAMLError:
        if "\t" not in text or not _is_json(text):
            raise
    return yaml.load(text.replace("\t", " "), Loader=_ConfigLoader)


def _is_json(text):
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _read_yaml(path, config_cls):
    """One `--config` file's mapping of option names to values, its keys checked against the options."""
    path = os.path.expanduser(path)  # `--config=~/x.yaml` or a quoted '~/x.yaml' reaches us unexpanded, as a path flag's
    if os.path.isdir(path):
        raise UserError(f"--config {path} is a folder; name the YAML file in it.")
    if os.path.exists(path) and not os.path.isfile(path):  # `--config <(echo 'seed: 3')`, /dev/stdin: read once
        kind = "a pipe" if stat.S_ISFIFO(os.stat(path).st_mode) else "a device or socket"
        raise UserError(f"--config {path} is {kind}, not a regular file; write the YAML to a file and name that "
                        f"(each process of a run reads it).")
    if not os.path.isfile(path):
        raise UserError(f"--config {path} does not exist; check the path.")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        data = _load_yaml(text)
    except UnicodeDecodeError as e:  # latin-1, UTF-16 or a binary file (YAMLError covers only what PyYAML reads)
        raise UserError(f"--config {path} is not UTF-8 text ({short(e)}); save it as UTF-8.") from None
    except _DuplicateKey as e:
        raise UserError(f"--config {path} sets {e.key} twice (lines {e.first} and {e.second}); keep one.")
    except yaml.YAMLError as e:
        raise UserError(yaml_error(path, e)) from None
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise UserError(f"--config {path} must be a mapping of option names to values.")
    known = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted({str(k) for k in data if not (isinstance(k, str) and k in known)})
    if "options" in unknown and isinstance(data.get("options"), dict):  # best/training_args.json: a run's record
        raise UserError(f"--config {path} is a run record (training_args.json), whose options are under `options`; "
                        f"write the ones to reuse to a YAML file of their own and give that.")
    if unknown:
        hints = "; ".join(h for h in (option_hint(k, config_cls, yaml=True) for k in unknown) if h)
        raise UserError(f"--config {path} has unknown keys: {', '.join(unknown)}; {hints + '; ' if hints else ''}see "
                        f"--help for the options.")
    return data


NEGATIVE_NUMBER = re.compile(r"-\d+|-\d*\.\d+")  # argparse reads these as values, not options


def _flag(key, text):
    """One option's flags: ['--key', text], or ['--key=text'] for a text that begins with '-' (`run_name: -exp`,
    `label_names: ['-1', '1']`), which argparse would take for an option and refuse ("expected one argument")."""
    return [f"--{key}={text}"] if text.startswith("-") else [f"--{key}", text]


def _yaml_option(path, key, value, kind, comma_list, values, paths_of=TrainConfig):
    """One YAML key as flags: [] (not given, or given in `values`), or ['--key', text]."""
    base, optional = _option_type(kind)
    if key in getattr(paths_of, "PATHS", ()) + ("extra_eval_files",):
        texts = value.items() if isinstance(value, dict) else value if isinstance(value, list) else [value]
        for text in (t for item in texts for t in (item if isinstance(item, tuple) else [item])):
            bad = control_character(text)
            if bad:
                raise UserError(f"--config {path} sets {key} to {text!r}, which holds a control character ({bad}); "
                                f"a backslash inside double quotes is a YAML escape: use / or single quotes.")
    if base not in (int, float, str, bool):  # a type of a subclass's own: passed on as before
        if value is None:  # `key: ~`: no flag can say None, so it goes in as the parser's default
            if not optional:
                raise UserError(f"--config {path} gives {key} no value (null), but --{key} needs one; write a value or "
                                f"delete the line.")
            values[key] = None
            return []
        if typing.get_origin(base) is list:  # List[str]: HfArgumentParser's nargs="+", one token per item
            items = value if isinstance(value, list) else [value]
            if not items or any(str(v).startswith("-") and not NEGATIVE_NUMBER.fullmatch(str(v)) for v in items):
                # nargs="+" takes no empty list (the field's default was kept, silently), and an item that begins
                # with '-' reads as an option (not a negative number): the parser's default, which a flag still
                # replaces, each item of the list's type
                item, texts = (typing.get_args(base) or (str,))[0], [str(v) for v in items]
                try:
                    values[key] = [item(t) if item in (int, float) else t for t in texts]
                except ValueError as e:
                    raise UserError(f"--config {path} sets {key} to {texts}, but --{key} takes a list of "
                                    f"{item.__name__} values ({short(e)}).") from None
                return []
            return [f"--{key}", *(str(v) for v in items)]
        return _flag(key, ",".join(str(v) for v in value) if isinstance(value, list) else str(value))
    if value is None:  # `key: ~` or `key:`
        if not optional:
            raise UserError(f"--config {path} gives {key} no value (null), but --{key} needs one; write a value or "
                            f"delete the line.")
        return _flag(key, "") if base is str else []  # unset: '' means "not given" for a text option
    comma_list = comma_list and base is str
    if isinstance(value, dict) and key in PAIR_MAPPINGS and all(not isinstance(v, (list, dict)) for v in value.values()):
        value = [f"{_yaml_text(path, key, k, 'maps')}={_yaml_text(path, key, v, 'maps')}"  # {A: 1} is 'A=1'
                 for k, v in value.items()]
    if isinstance(value, dict) and key in JSON_MAPPINGS:
        count = [0]

        def plain(v):  # YAML 1.1's numbers and booleans as read (min_lr_rate: 0.1 is the number 0.1)
            count[0] += 1
            if count[0] > MAX_YAML_VALUES:  # aliases of aliases: 500 bytes that expand to 10**9 values (2.5 GB, 50 s)
                raise UserError(f"--config {path} sets {key} to more than {MAX_YAML_VALUES:,} values (aliases, *name, "
                                f"repeating other values); write the values it takes out.")
            v = _plain(v)
            return {str(_plain(k)): plain(x) for k, x in v.items()} if isinstance(v, dict) else \
                [plain(x) for x in v] if isinstance(v, list) else v
        return _flag(key, json.dumps(plain(value)))
    if isinstance(value, dict):
        takes, example = ("a list", "[a, b]") if comma_list else ("one value", "value")
        raise UserError(f"--config {path} sets {key} to a mapping, but --{key} takes {takes}; write it as "
                        f"'{key}: {example}'.")
    if isinstance(value, list) and not comma_list:
        first = f" ({key}: {value[0]})" if value and isinstance(value[0], (str, _Typed)) else ""
        raise UserError(f"--config {path} sets {key} to a list, but --{key} takes one value; keep one{first}.")
    if isinstance(value, list):
        items = []
        for item in value:
            if isinstance(item, (list, dict)):
                raise UserError(f"--config {path} has {'a list' if isinstance(item, list) else 'a mapping'} inside "
                                f"the list of {key}; write each entry as text (quoted if it holds [ ] or : ).")
            text = _yaml_text(path, key, item, "lists")
            parts = re.split(r",(?![^\[{]*[\]}])", text) if key == "config_overrides" else text.split(",")
            if len(parts) > 1:
                raise UserError(f"--config {path} lists '{text}' under {key}, but --{key} is split at commas, so it "
                                f"would become {len(parts)} entries; remove the comma from it.")
            items.append(text)
        return _flag(key, ",".join(items))
    if base is str:
        return _flag(key, _yaml_text(path, key, value, "sets"))
    if isinstance(value, _Typed) and isinstance(value.value, bool):
        # true/yes/on for a switch; for a number the text as written, which the parser refuses by name
        return _flag(key, str(value.value).lower() if base is bool else value.text)
    if isinstance(value, _Typed) and base in (int, float) and not (isinstance(value.value, float)
                                                                   and not math.isfinite(value.value)):
        # a number as written, read as its flag reads it: YAML 1.1 reads `seed: 0042` as octal 34, `010` as 8,
        # `1:30` as 90 (the flag: 42, 10, refused); `1_000` and `.5` read alike either way. (YAML's .inf and .nan
        # go on as inf and nan, which the flag reads)
        return _flag(key, value.text)
    return _flag(key, str(_plain(value)))


def _yaml_text(path, key, value, verb):
    """A YAML value for a text option: as written (`010` stays '010'); a YAML boolean is refused."""
    if value is None:
        return ""
    if isinstance(value, _Typed):
        if isinstance(value.value, bool):
            where = f"{key} to {value.text}" if verb == "sets" else f"{value.text} under {key}"
            if key == "resume_from_checkpoint":  # Trainer's resume_from_checkpoint=True (the newest) or False
                fix = ("for the newest checkpoint in --output_dir write 'latest' (Trainer's resume_from_checkpoint="
                       "True), or 'auto' to start afresh when there is none" if value.value else
                       "leave resume_from_checkpoint out (or null) to start without resuming")
                raise UserError(f"--config {path} sets resume_from_checkpoint to {value.text}; {fix}.")
            raise UserError(f"--config {path} {verb} {where}, which YAML reads as {str(value.value).lower()} and not "
                            f"as text; write '{value.text}' in quotes.")
        return value.text
    return str(value)
