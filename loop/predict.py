"""Classify texts with a trained model folder (e.g. output/best).

    python loop/predict.py --model output/best "A wonderful film." "Dull and far too long."
    python loop/predict.py --model output/best --file reviews.txt     # one text per line
    some-command | python loop/predict.py --model output/best --file -   # one text per line, from stdin
    python loop/predict.py --model output/best --pairs $'A man sleeps.\\tSomeone rests.'   # sentence pairs (a tab)
    python loop/predict.py --model output/best --file new.parquet     # a table: csv, tsv, json, jsonl, parquet
    python loop/predict.py --model user/model "A wonderful film."       # a model on the Hub (or in its cache)

(`loop-predict ...` or `python -m loop.predict ...` where loop is pip-installed: the same command.)

Prints one JSON line per text, as each batch is scored: {"text": ..., "label": ..., "score": ...}, plus "line" (its
line number) for a text from --file (--file - reads standard input); blank lines of the file are skipped (their
count goes to stderr). A text --file is read as it is scored, a few hundred lines at a time (a file of any size in
bounded memory), every line of it checked before the model loads; input that arrives as it is written (standard
input, a pipe) is read once, scored and checked as its lines come (`tail -f log | loop-predict --model m --file
-`). With --pairs each input is two non-blank texts separated by one tab, and "text_pair" holds the second; a first
line of --file naming the model's columns (its second field the pair column in best_metrics.json, e.g.
premise<TAB>hypothesis) is a header, skipped with a note on stderr. A table --file (csv, tsv, json, jsonl, parquet;
a .tsv with --pairs is lines) is read as training reads it: its --text_column (default: the model's, from
best_metrics.json, else "text") and a pair model's pair column are classified, each line with "row" (0-based in the
file) instead of "line" (a quoted pattern of shards, 'new-*.parquet', is read as one table in name order, rows
counted across them); rows with an empty text are skipped (counted on stderr). A multi-label model gives {"text":
..., "labels": [every label whose sigmoid score is above 0.5], "scores": {label: score}} instead; a regression
model's "score" is the predicted number itself. --all_scores adds "scores", {label: probability} for every label,
to a single-label model's lines. A reader that stops early (`| head -1`) ends it quietly with exit code 141, as it
ends cat or grep. Texts are cut at the tokenizer's model_max_length, capped at the model's position limit (a
tokenizer saying 1e30, as many on the Hub do, beside a model of 512 positions: 512, said on stderr).
"""

import argparse
import collections
import errno
import io
import itertools
import json
import os
import re
import sys
import unicodedata

try:
    os.getcwd()
except FileNotFoundError:  # a shell in a folder deleted since (every relative path, and transformers' import, fail)
    print("error: the current folder no longer exists; cd into one that does and run again.", file=sys.stderr)
    sys.exit(2)
if __package__ in (None, ""):
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path = [p for p in sys.path if os.path.abspath(p or ".") != here]
    sys.path.insert(0, os.path.dirname(here))

from loop.errors import UserError, run_cli, short  # noqa: E402
from loop.storage import read_best_record  # noqa: E402
from loop.version import version_line  # noqa: E402


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one `error:` line (exit 2) rather than usage + message; options by their whole
    names only, as train.py's (a prefix, --all for --all_scores, is no option)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, allow_abbrev=False, **kwargs)

    def error(self, message):
        unknown = re.match(r"unrecognized arguments: (-\S+)", message)
        hint = unknown and option_hint(unknown.group(1), [o for o in self._option_string_actions if o[:2] == "--"])
        raise UserError(f"{message.rstrip('.')}; {hint + '; ' if hint else ''}see --help.")


_TEXTS = ("text", "texts", "input_text", "sentence", "sentences", "inputs")
_FILES = ("input", "input_file", "infile", "data", "data_file", "test_file", "validation_file", "files", "path")
_MODELS = ("model_name_or_path", "model_dir", "model_path", "checkpoint", "ckpt", "best", "output_dir")
_OUTPUTS = ("output", "output_file", "outfile", "out", "o", "save", "save_to")


def option_hint(flag, options):
    """What another tool's name for an input of ours is here, else the nearest option ('' if none is near): how the
    one line an unknown option gets says the fix (--text 'a review' was 'unrecognized arguments: --text' alone)."""
    import difflib

    name = flag.split("=")[0]
    bare = name.lstrip("-").replace("-", "_")
    if bare in _TEXTS:
        return 'texts are given without a flag (--model DIR "a text" "another")'
    if bare in _FILES:
        return f"for {name} use --file (a text file, one per line, or a table)"
    if bare in _MODELS:
        return f"for {name} use --model"
    if bare in _OUTPUTS:
        return "the results are JSON lines on standard output: redirect them (... > predictions.jsonl)"
    if bare in ("bs", "batch", "batchsize"):
        return f"for {name} use --batch_size"
    close = ([o for o in options if o.startswith("--" + bare)][:1] if len(bare) > 1 else []) or \
        difflib.get_close_matches("--" + bare, options, n=1, cutoff=0.75)  # (not --bs: --verbose, --json: --version)
    return f"the nearest option is {close[0]}" if close else ""


def load_for(args):
    """load() for the command line: --sdpa_backends set first (its batches, sorted by length, have many widths),
    after every check of the input (torch and transformers take seconds to import)."""
    import torch

    from loop.models import set_sdpa_backends

    set_sdpa_backends(args, torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    return load(args.model, trust_remote_code=args.trust_remote_code)


def _sdpa_backends(text):
    from loop.config import parse_sdpa_backends

    try:
        return parse_sdpa_backends(text)
    except UserError as e:
        raise argparse.ArgumentTypeError(str(e).replace("--sdpa_backends ", "", 1))


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    if not 1 <= value <= 2**20:
        raise argparse.ArgumentTypeError(f"expected a positive integer up to {2**20}, got {value}")
    return value


def is_table(path):
    """Whether --file is read as a table (csv, tsv, json, jsonl, parquet: training's formats) rather
    than one text per line."""
    from loop.config import FILE_EXTENSIONS

    return bool(path) and os.path.splitext(path)[1].lower() in FILE_EXTENSIONS


def load_table(args, model_dir):
    """(text or {"text", "text_pair"}, row) of a table --file, read as they are taken, and the model's pair column:
    the text column (and the pair column of a pair model) read as training reads the file; rows with a blank text
    are skipped (counted on stderr, in Arrow, before any is scored), and `row` stays the row's 0-based position in
    the file (as --eval_only's predictions files). Checked before the model loads: the columns, and that a row has
    text."""
    from loop import data as D
    from loop.labels import is_number_text

    for flag in ("text_column", "text_pair_column"):
        if getattr(args, flag) is not None and not getattr(args, flag).strip():  # (was the default, silently)
            raise UserError(f"--{flag} is empty; name a column of --file, or leave the option out.")
    record = read_best_record(model_dir) or {}
    text_col = args.text_column or record.get("text_column") or "text"
    pair_col = args.text_pair_column or record.get("text_pair_column") or None
    import glob

    # a quoted pattern of shards is read as training reads one: in name order, rows counted across them
    if not os.path.isfile(args.file) and not (glob.has_magic(args.file) and glob.glob(args.file)):
        what = "is a folder, not a file" if os.path.isdir(args.file) else "does not exist"
        raise UserError(f"--file '{args.file}' {what}; check the path.")
    if text_col == pair_col:
        raise UserError(f"--text_column and --text_pair_column are both '{text_col}', so each text would be paired "
                        f"with itself; point them at different columns.")
    ds = D.load_file(args.file, "--file", csv_as_text=True)
    have = ", ".join(repr(c) for c in ds.column_names if not c.startswith("__index_level_"))  # pandas' own
    for col, flag in ((text_col, "--text_column"), (pair_col, "--text_pair_column")):
        if col is None or col in ds.column_names:
            continue
        if col == pair_col and not args.text_pair_column:
            lines = " (a .tsv of 'first<TAB>second' lines without a header: add --pairs)" \
                if args.file.lower().endswith(".tsv") else ""
            raise UserError(f"--file has no column '{col}', where the model reads the second text of each pair (it "
                            f"was trained with --text_pair_column {col}); its columns are {have}: name the column "
                            f"of the second texts with --text_pair_column{lines}.")
        whose = "" if getattr(args, flag[2:]) else \
            " (the model's text column)" if record.get("text_column") else " (the default)"
        raise UserError(f"--file has no column '{col}'{whose}; its columns are {have}: name the column to classify "
                        f"with {flag}.")
    columns = [c for c in (text_col, pair_col) if c]
    for col, flag in zip(columns, ("text_column", "text_pair_column")):
        if D.empty_texts(ds, col)[0] == len(ds):  # said as what it is (not as a column of another type)
            raise UserError(f"--file '{args.file}' has no text to classify: its column '{col}' is empty in every row; "
                            f"check --{flag}.")
        ds = D.text_as_strings(ds, col, "--file", flag)
        # read until a text that is not a number (a csv's columns are read as text): the first, as a rule
        texts = (v for (v,), blank in table_rows(ds, [col]) if not blank)
        first = next(texts, None)
        if first is not None and is_number_text(first) and all(is_number_text(v) for v in texts):
            raise UserError(f"--file text column '{col}' holds only numbers (first {first!r}), not text; is it the "
                            f"right column? check --{flag}.")  # (numbers a csv or a JSON string writes as text too)

    def rows():  # (blank: by the rule that counts them below)
        for row, (values, blank) in enumerate(table_rows(ds, columns)):
            if not blank:
                yield values[0] if pair_col is None else {"text": values[0], "text_pair": values[1]}, row
    read = rows()
    first = next(read, None)
    if first is None:  # (a pair model: each row lacks one of its two texts)
        raise UserError(f"--file '{args.file}' has no text to classify: every row lacks its text in column "
                        f"'{text_col}' or in '{pair_col}'; check --text_column and --text_pair_column.")
    blank, first_blank = D.empty_texts(ds, *columns)  # said before the scoring, which a reader may cut short
    if blank:
        where = f"'{text_col}'" + (f" or '{pair_col}'" if pair_col else "")
        across = " (counted across the files in name order)" if not os.path.isfile(args.file) else ""
        print(f"[loop] --file: skipped {blank} row(s) with an empty text in {where} (first at row {first_blank}); "
              f"each output's \"row\" is its row in the file{across}", file=sys.stderr, flush=True)
    return itertools.chain([first], read), pair_col


# rows of a table --file converted to Python at a time: a table of millions of rows is never held whole
TABLE_SLICE = 4096


def table_rows(ds, columns):
    """(a row's values of `columns`, whether any of them is blank: data.blank_rows), converted a slice of
    TABLE_SLICE rows at a time by Arrow (splits.column_values' one pass). The columns are text (text_as_strings)."""
    from loop import data as D

    for piece in ds.select_columns(columns).with_format("arrow").iter(batch_size=TABLE_SLICE):
        parts = [piece[c] for c in columns]
        yield from zip(zip(*(part.to_pylist() for part in parts)), D.blank_rows(parts).to_pylist())


def load_texts(args):
    """The texts to classify, (text, line number or None), as they are read: the arguments, then the non-blank
    lines of a --file read as text. The file's first text is read now (an empty file, or with --pairs one
    holding only its header, is refused before the model loads); the rest as the scoring asks for them, so a
    long file, or standard input that never ends, is scored as it comes, in bounded memory. The count of blank
    lines skipped goes to stderr at the end."""
    check_argument_texts(args.texts, args.file)
    texts = [(t, None) for t in args.texts]
    if not args.file:
        if not texts:
            raise UserError("no texts given; pass them as arguments or with --file FILE (one per line).")
        return iter(texts)
    lines = open_lines(args.file)
    blank = 0

    def next_text():
        nonlocal blank
        for n, line in lines:
            if not blank_text(line):
                return line, n
            blank += 1
        return None

    first = next_text()
    if first is None and not texts:  # said as what it is, not as "no texts given"
        what = " (standard input)" if args.file == "-" else ""
        holds = "only blank lines" if blank else "it is empty"
        raise UserError(f"--file '{args.file}'{what} holds no text ({holds}); give it one text per line.")
    if first is not None and args.pairs and args.file.lower().endswith(".tsv") and first[0].count("\t") > 1:
        # a labelled table (premise<TAB>hypothesis<TAB>label): "keep only the two texts, e.g. with cut -f2,3" was
        # the advice, while without --pairs it is read as a table by the model's columns (a fresh user's F5)
        pair_column = trained_on_pairs(args.model)
        text_column = (read_best_record(args.model) or {}).get("text_column") or "text"
        fields = [half.strip() for half in first[0].split("\t")]
        if pair_column and pair_column in fields and text_column in fields:
            raise UserError(f"--file '{args.file}' is a table whose header names the model's columns "
                            f"('{text_column}', '{pair_column}'); leave out --pairs: a .tsv is then read as a table, "
                            f"each row's pair from those columns.")
    if first is not None and args.pairs and is_header(first[0], args.model):
        (name, pair), line = (half.strip() for half in first[0].split("\t")), first[1]
        first = next_text()
        if first is None and not texts:
            raise UserError(f"--file '{args.file}' holds only a header line ('{name}<TAB>{pair}'); add the pairs to "
                            f"classify below it.")
        print(f"[loop] --file: skipped line {line} ('{name}<TAB>{pair}'), a header naming the model's text columns; "
              f"each output's \"line\" is its line in the file", file=sys.stderr, flush=True)

    def rest():
        yield from texts
        text = first
        while text is not None:
            yield text
            text = next_text()
        if blank:
            print(f"[loop] --file: skipped {blank} blank line(s); each output's \"line\" is its line in the file",
                  file=sys.stderr, flush=True)
    return rest()


def blank_text(text):
    """Whether `text` holds no character but whitespace and invisible ones (a zero-width space, a BOM, bidi marks):
    as training counts a text empty (data.BLANK_TEXT)."""
    return all(c.isspace() or unicodedata.category(c) in ("Zs", "Zl", "Zp", "Cc", "Cf") for c in text)


def check_argument_texts(texts, file=None):
    """The texts given as arguments: each holds words, in UTF-8 (a byte that is not arrives as a lone surrogate,
    '\\udce9', which the tokenizer refused with a TypeError after the model had loaded), and none is the name of
    a file (`--file new/part-*.parquet` unquoted: the shell gave the second shard as a text, whose name was scored
    and exit 0, its rows never read; `loop-predict --model best reviews.txt`: the name scored, not its lines)."""
    from loop.config import not_utf8
    from loop.option_hints import shell_pattern

    for i, text in enumerate(texts, 1):
        if blank_text(text):
            raise UserError(f"text {i} of the arguments is empty; give each text some words.")
        if os.path.isfile(text):
            if file == "-":
                raise UserError(f"text {i} of the arguments, '{text}', is a file's name, which would be classified "
                                f"as a text; --file reads standard input here: classify the file in a run of its "
                                f"own with --file '{text}'.")
            if file is not None:
                files = [file] + [t for t in texts if os.path.isfile(t)]
                head, tail = shell_pattern(files)
                # (two names that share no start, valid.jsonl train.jsonl, are a list more likely than a pattern)
                pattern = is_table(file) and not (len(files) == 2 and len(os.path.basename(head)) < 2)
                fix = (f"quote the pattern (e.g. --file '{head}*{tail}'), or classify one file at a time" if pattern
                       else "classify one file at a time" if is_table(file) else  # (a pattern reads table shards)
                       "classify one file at a time, or their lines together with "
                       "`cat FILES | loop-predict ... --file -`")
                raise UserError(f"--file was given {len(files)} files ('{text}' came as a text to classify"
                                + (": the shell expands an unquoted pattern" if pattern else "") + f"); {fix}.")
            raise UserError(f"text {i} of the arguments, '{text}', is a file's name, which would be classified as "
                            f"a text; pass --file '{text}' to classify what it holds.")
        bad = not_utf8(text)
        if bad:
            raise UserError(f"text {i} of the arguments is not UTF-8 text ({bad}); pass UTF-8 text (e.g. convert it "
                            f"with iconv).")


def open_lines(path):
    """The lines of a text --file as they are read, (line number, text without its line end); '-' reads standard
    input. Opened now (a file that cannot be read is one line before anything else); read a line at a time."""
    if path == "-":  # read as a file is (its line ends, its byte-order mark), whatever the locale's encoding
        if sys.stdin is None:  # started with stdin closed (`<&-`)
            raise UserError(f"--file '{path}' could not be read (standard input is closed).")
        stream = getattr(sys.stdin, "buffer", None)
        try:  # a reader of its own on fd 0: a thread blocked reading sys.stdin's holds its lock, which the interpreter
            # takes as it shuts down (an exit while waiting for input aborted: "Fatal Python error", exit 134)
            stream = open(os.dup(sys.stdin.fileno()), "rb") if stream is not None else None
        except (OSError, ValueError, AttributeError):  # no file descriptor (replaced in-process): read it as it is
            pass
        if stream is None:  # a text-only stand-in (replaced in-process)
            import io

            stream = io.BytesIO(sys.stdin.read().encode("utf-8"))
        return read_lines(stream, path)
    try:
        return read_lines(open(path, "rb"), path)
    except OSError as e:
        import glob

        if glob.has_magic(path) and not os.path.exists(path):
            raise UserError(f"--file '{path}' is a pattern; a pattern reads table shards: end it in their extension "
                            f"(csv, tsv, json, jsonl, parquet), e.g. 'new-*.parquet'.") from e
        raise UserError(f"--file '{path}' could not be read ({e.strerror}).") from None


def read_lines(stream, path):
    """(line number, text) for each line of the binary `stream` (closed at the end), without its line end; a
    UTF-8 byte-order mark (Notepad) is not text. Lines end at '\\n' ('\\r\\n' too), as wc, sed and grep count them:
    a stray '\\r' inside a text (a web form's) is not a line end (universal newlines made it one: two texts, every
    later line number off); a file with no '\\n' at all that ends in '\\r' is classic Mac OS's: its lines are what
    they were. A line that is not UTF-8 is one line naming it (with the lines before it scored, on standard input
    read as it comes)."""
    what = " (standard input)" if path == "-" else ""
    with stream:
        raws = iter(stream)
        for n in itertools.count(1):  # a binary stream splits at b'\\n' only (never inside a UTF-8 character)
            try:
                raw = next(raws, None)
            except OSError as e:  # a disk or a network filesystem failing mid-file
                raise UserError(f"--file '{path}'{what} could not be read at line {n} "
                                f"({e.strerror or short(e)}).") from None
            if raw is None:
                return
            try:
                text = raw.decode("utf-8-sig" if n == 1 else "utf-8")
            except UnicodeDecodeError:
                if path == "-":
                    raise UserError(f"--file '-' (standard input) is not UTF-8 text (line {n}); convert it to UTF-8 "
                                    f"(e.g. with iconv).") from None
                raise UserError(f"--file '{path}' is not UTF-8 text (line {n}); re-save it as UTF-8.") from None
            if not text:  # a byte-order mark alone: no line (wc counts none)
                return
            if n == 1 and not text.endswith("\n") and text.endswith("\r"):  # the whole file, Mac OS's lines
                for m, line in enumerate(text[:-1].split("\r"), 1):
                    yield m, line
                return
            yield n, text.removesuffix("\n").removesuffix("\r")


def arrives(path):
    """Whether --file `path` is read as it is written (standard input, a pipe, a terminal, /dev/fd/N): read once,
    and scored as its lines come; a regular file can be read twice (its every line checked first)."""
    import stat

    try:
        return path == "-" or not stat.S_ISREG(os.stat(path).st_mode)
    except OSError:  # (said when it is opened)
        return False


class Texts:
    """The texts to score, taken a group at a time (`take`). Read here; or, for input that arrives as it is written
    (`arriving`: a pipe, a terminal), by a thread of its own, so that a group is what has arrived (at least one
    text: `tail -f log | loop-predict --file -` prints as lines come), never more than `ahead` texts held. An error
    reading them is raised once the texts before it are taken."""

    def __init__(self, items, arriving=False, ahead=1024):
        import queue
        import threading

        self.items, self.ended, self.error = iter(items), False, None
        self.queue = queue.Queue(maxsize=ahead) if arriving else None
        if arriving:
            threading.Thread(target=self._read, name="loop-predict-input", daemon=True).start()

    def _read(self):
        try:
            for item in self.items:
                self.queue.put((item, None))
            self.queue.put((None, StopIteration()))
        except Exception as e:
            self.queue.put((None, e))

    def take(self, n):
        """Up to `n` texts, [] at the end; the error that ended them, raised once those before it are taken."""
        import queue

        out = []
        while len(out) < n and not self.ended:
            try:
                item, end = (next(self.items), None) if self.queue is None else self.queue.get(block=not out)
            except StopIteration:
                item, end = None, StopIteration()
            except queue.Empty:  # what has arrived: scored without waiting for more
                break
            except Exception as e:
                item, end = None, e
            if end is None:
                out.append(item)
            else:
                self.ended, self.error = True, (None if isinstance(end, StopIteration) else end)
        if not out and self.error is not None:
            error, self.error = self.error, None
            raise error
        return out


def as_input(text, line, pairs, i=None):
    """The pipeline input of one text: the text, or with --pairs {"text", "text_pair"}: split at its one tab,
    both halves non-blank (a second tab would put the rest into the second text, or score an id column). `i`:
    its place among the arguments, for a text not from --file."""
    if not pairs:
        return text
    where = f"line {line} of --file" if line else f"text {i} of the arguments ({text[:40]!r})"
    tabs = text.count("\t")
    if not tabs:
        # (a fresh user's F6: the help's '<TAB>' typed as five letters; a shell's "\t" is two)
        typed = " (a tab character: in bash $'first text\\tsecond text')" if not line else ""
        raise UserError(f"--pairs: {where} has no tab; give each input as 'first text<TAB>second text'{typed}.")
    if tabs > 1:
        raise UserError(f"--pairs: {where} has {tabs} tabs, not one; give each input as 'first text<TAB>second "
                        f"text' (a file with more columns, e.g. id<TAB>text<TAB>text: keep only the two texts, "
                        f"e.g. with cut -f2,3).")
    first, second = text.split("\t")
    for half, name in ((first, "first"), (second, "second")):
        if blank_text(half):
            raise UserError(f"--pairs: {where} has an empty {name} text; give each input as 'first "
                            f"text<TAB>second text', both with some words.")
    return {"text": first, "text_pair": second}


def is_header(text, model_dir):
    """--pairs --file: whether the file's first line is a header naming the model's columns (its second field is
    the pair column best_metrics.json records, and its first the text column where that is recorded too); scored,
    it would be one more made-up example."""
    pair_column = trained_on_pairs(model_dir)
    if not pair_column or text.count("\t") != 1:
        return False
    name, pair = (half.strip() for half in text.split("\t"))
    text_column = (read_best_record(model_dir) or {}).get("text_column")
    return pair == pair_column and not (text_column and name != text_column)


def trained_on_pairs(model_dir):
    """The pair column a loop run trained this model with (best_metrics.json): its name, False when
    best_metrics.json says the run had none, None when there is no (readable) best_metrics.json or it does not
    say (a loop version before 2026-11-30 wrote text_pair_column only for a pair model: its --text_pair_column
    or --pairs is the user's to give)."""
    record = read_best_record(model_dir)
    if record is None or "text_pair_column" not in record:
        return None
    return record["text_pair_column"] or False


# What a classifier's folder holds (config, weights, tokenizer, best_metrics.json, training_args.json): what a Hub
# --model fetches, from the repository's top level only (a Trainer repository's checkpoint-500/ is not the model).
# Python files (custom code) only with --trust_remote_code; pytorch_model*.bin only where there are no safetensors.
HUB_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken"]
HUB_SUBFOLDERS = ["*/*"]


def hub_model(name, trust_remote_code=False, revision=None):
    """--model as a Hub id (a loop run's best/ pushed with --push_to_hub, or any sequence classifier): the folder of
    its files in the Hugging Face cache, fetched unless they are there (offline: only the cache is read), said on
    stderr with its commit. A name whose first part is a folder here is a mistyped path, not a Hub id: refused, as a
    repository of that name on the Hub would supply the model (and with --trust_remote_code its code)."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import (GatedRepoError, IncompleteSnapshotError, RepositoryNotFoundError,
                                        RevisionNotFoundError)
    from loop.hub import check_link, check_readable, folder_typo, hub_name, offline_variable

    fix = "pass a model folder (e.g. output/best) or a model id on the Hub (user/model)"
    check_link(name, "--model")
    check_readable(name, "--model")
    typo = folder_typo(name)
    if typo:
        raise UserError(f"--model '{name}' is not a folder{typo}; pass a model folder, e.g. output/best (to read a Hub "
                        f"model of that name, run from another folder).")
    if not hub_name(name):
        raise UserError(f"--model '{name}' is not a folder; {fix}.")
    patterns = HUB_PATTERNS + (["*.py"] if trust_remote_code else [])

    def fetch(local):
        folder = snapshot_download(name, revision=revision, allow_patterns=patterns, ignore_patterns=HUB_SUBFOLDERS,
                                   local_files_only=local)
        if not any(n.endswith(".safetensors") for n in os.listdir(folder)):  # an older repository's weights
            folder = snapshot_download(name, revision=revision, allow_patterns=patterns + ["pytorch_model*.bin"],
                                       ignore_patterns=HUB_SUBFOLDERS, local_files_only=local)
        return folder

    def cached():
        try:
            return fetch(True)
        except Exception:
            return None

    try:
        # offline, from the cache alone: huggingface_hub 1.26-2.1 (what transformers < 5.18 installs) went to the
        # Hub for a commit id given as --revision and refused it offline, though cached (helper floors F2), and
        # did not fall back to the cache where the Hub cannot be reached (rev2 F1: cached() below)
        folder = fetch(constants.HF_HUB_OFFLINE)
    except RevisionNotFoundError:
        raise UserError(f"--model '{name}' has no revision '{revision}' on the Hub; pass a branch, tag or commit of "
                        f"it to --revision, or drop --revision for its main branch.") from None
    except (RepositoryNotFoundError, GatedRepoError) as e:
        why = ("is gated: accept its terms on the Hub and log in (hf auth login)" if isinstance(e, GatedRepoError)
               else "is not a model on the Hub (a private one needs hf auth login)")
        raise UserError(f"--model '{name}' is not a folder and {why}; {fix}.") from None
    except IncompleteSnapshotError:
        raise UserError(f"--model '{name}': the Hugging Face cache ({constants.HF_HUB_CACHE}) holds only part of its "
                        f"files (a download cut short, or fetched without --trust_remote_code), and offline the rest "
                        f"cannot be fetched; run it once with the Hub reachable.") from None
    except Exception as e:
        folder = None if constants.HF_HUB_OFFLINE else cached()
        if folder is None:
            what, where = "its model", f"could not be fetched from the Hub ({short(e)})"
            if constants.HF_HUB_OFFLINE:
                what = f"its revision '{revision}'" if revision else what
                where = (f"is not in the Hugging Face cache ({constants.HF_HUB_CACHE}), and offline mode "
                         f"({offline_variable('model') or 'HF_HUB_OFFLINE'}) keeps the Hub from being asked")
            raise UserError(f"--model '{name}' is not a folder, and {what} {where}; {fix}.") from None
    print(f"model: {name} from the Hugging Face Hub, commit {os.path.basename(folder)[:12]} ({folder})",
          file=sys.stderr, flush=True)
    return folder


def check_folder(model_dir, flag="--model"):
    """Refuse, naming the folder to pass instead, what is not a model folder: a run's --output_dir (its model
    is in best/), one of its resumable checkpoints (checkpoints/step_N: accelerate's training state, no
    config.json), or any other folder without config.json or weights. `flag`: the option that named it."""
    def has(*names):
        return os.path.exists(os.path.join(model_dir, *names))

    from loop.hub import check_readable

    check_readable(model_dir, flag)
    parent = os.path.basename(os.path.dirname(os.path.abspath(model_dir)))
    if has("loop_state.json") or (not has("config.json") and parent == "checkpoints"
                                  and re.fullmatch(r"step_\d+", os.path.basename(os.path.abspath(model_dir)))):
        best = os.path.normpath(os.path.join(model_dir, os.pardir, os.pardir, "best"))
        fix = (f"pass its run's model, {flag} {best}" if os.path.isfile(os.path.join(best, "config.json"))
               else f"its run has no model folder yet ({best} is written at the first evaluation)")
        raise UserError(f"{flag} '{model_dir}' is a training checkpoint (for resuming training with "
                        f"--resume_from_checkpoint, not a model folder); {fix}.")
    if not has("config.json") and os.path.isdir(os.path.join(model_dir, "best")):
        raise UserError(f"{flag} '{model_dir}' is a run folder (an --output_dir of loop/train.py); its model is in "
                        f"{os.path.join(model_dir, 'best')}: pass {flag} {os.path.join(model_dir, 'best')}.")
    if not has("config.json") and (has("checkpoints") or has("metrics.jsonl")):
        raise UserError(f"{flag} '{model_dir}' is a run folder (an --output_dir of loop/train.py) with no best/ yet "
                        f"(it is written at the first evaluation); pass a model folder, e.g. output/best.")
    if not has("config.json") and has("adapter_config.json"):  # a LoRA run's best/adapter/
        above = os.path.dirname(os.path.normpath(model_dir)) or os.curdir
        raise UserError(f"{flag} '{model_dir}' holds a LoRA adapter, not a model; pass the folder above it, {above} (a "
                        f"run's best/, which holds the merged model).")
    if not has("config.json"):
        raise UserError(f"{flag} '{model_dir}' is not a model folder (no config.json); pass e.g. output/best.")
    if not any(n.endswith((".safetensors", ".bin")) for n in os.listdir(model_dir)):
        raise UserError(f"{flag} '{model_dir}' has no weights (no .safetensors or .bin file); pass a folder written by "
                        f"loop/train.py, e.g. output/best.")


def check_tokenizer(model_dir, tokenizer):
    """Refuse a tokenizer that holds nothing but its special tokens: in transformers 5 a model folder
    without tokenizer files still loads one (an empty vocabulary), every word becomes the unknown
    token (or nothing), and every text would get the same label (train.py refuses it likewise,
    data.check_unknown_tokens)."""
    added = getattr(tokenizer, "added_tokens_decoder", None) or {}
    special = set(tokenizer.all_special_tokens) | {str(t) for t in added.values()}
    if not set(tokenizer.get_vocab()) - special:
        raise UserError(f"--model '{model_dir}' has no tokenizer of its own (its vocabulary holds only the "
                        f"{len(tokenizer)} special tokens): every text would get the same label; copy the "
                        f"tokenizer files of the model it was trained from (tokenizer.json, vocab.txt, ...) into it.")


def check_head(model_dir, model, missing):
    """Refuse a model whose classification head is not in the checkpoint's weights (a plain pretrained
    encoder, e.g. bert-base-uncased): transformers initialises the head at random, and every label
    and score would be noise. `missing`: from_pretrained's missing_keys."""
    prefix = getattr(model, "base_model_prefix", "") or ""
    head = sorted(k for k in missing or () if not (prefix and k.startswith(prefix + ".")))
    if head:
        names = ", ".join(head[:4]) + (", ..." if len(head) > 4 else "")
        raise UserError(f"--model '{model_dir}' has no trained classification head (not in its weights: {names}); "
                        f"its labels would be random: pass a folder written by loop/train.py, e.g. output/best, "
                        f"or train one from this model first.")


def problem_type(model_dir):
    """The model folder's config problem_type (None when it says none or cannot be read)."""
    try:
        with open(os.path.join(model_dir, "config.json")) as f:
            return json.load(f).get("problem_type")
    except (OSError, ValueError, AttributeError):
        return None


def is_multi_label(model_dir):
    """Whether the model folder's config says multi_label_classification (sigmoid per label)."""
    return problem_type(model_dir) == "multi_label_classification"


def custom_code(model_dir):
    """The Python files of a model folder (a custom architecture's code, which its config's auto_map names)."""
    try:
        return sorted(n for n in os.listdir(model_dir) if n.endswith(".py"))
    except OSError:
        return []


def load(model_dir, device=None, trust_remote_code=False):
    """The text-classification pipeline of a model folder, after the checks above (one `error:` line each).
    A folder with custom code (a --trust_remote_code run's best/) loads only with `trust_remote_code`: it is
    passed to every from_pretrained as False otherwise, which refuses at once (left unset, transformers asks
    "Do you wish to run the custom code? [y/N]" on stdout, into the JSON lines, and waits for a terminal)."""
    import io

    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    from loop import logs

    logs.quiet_weight_report()  # if quiet_libraries() ran

    check_folder(model_dir)
    if device is None:
        import torch
        device = 0 if torch.cuda.is_available() else -1
    # our "new head: ..." line (logs.quiet_weight_report) is held back while the model loads: a missing
    # head is refused in one line below; any other weight it names is shown after that check
    report, held = logs._REPORT_FILE[0], io.StringIO()
    logs._REPORT_FILE[0] = held
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
        check_tokenizer(model_dir, tokenizer)
        # as pipeline(model=model_dir) loads it (dtype "auto"), with the report of which weights were missing
        model, info = AutoModelForSequenceClassification.from_pretrained(
            model_dir, dtype="auto", output_loading_info=True, trust_remote_code=trust_remote_code)
        check_head(model_dir, model, info.get("missing_keys"))
        cut_within_positions(model_dir, tokenizer, model.config)
        pad_as_training_did(tokenizer, model.config)
        split_as_training_did(tokenizer, model.config)
        if held.getvalue():
            print(held.getvalue(), end="", file=report or sys.stdout, flush=True)
        clf = pipeline("text-classification", model=model, tokenizer=tokenizer, device=device,
                       trust_remote_code=trust_remote_code)
    except UserError:
        raise
    except Exception as e:  # damaged weights, a broken tokenizer file, a config of another model type
        if not trust_remote_code and "trust_remote_code" in str(e):  # transformers' refusal of custom code
            from loop.models import REMOTE_CODE

            files = ", ".join(custom_code(model_dir)) or "code its config names"
            raise UserError(f"--model '{model_dir}' holds custom code ({files}: a custom architecture, as a "
                            f"--trust_remote_code run saves it), which loads only with --trust_remote_code; "
                            f"{REMOTE_CODE}.") from e
        from loop.models import last_mismatched_keys, mismatched_shapes

        found = last_mismatched_keys() if "ignore_mismatched_sizes" in str(e) else None
        if found:  # a config.json that does not belong to the weights (its label count edited, say)
            shown = mismatched_shapes(found, limit=1, stored="in the weights", built="by the config")
            raise UserError(f"--model '{model_dir}': its weights do not fit the model its config.json builds "
                            f"({shown}); pass a model folder whose config.json belongs to its weights (a label count "
                            f"edited in id2label changes the head's shape).") from e
        raise UserError(f"--model '{model_dir}' could not be loaded ({short(e)}); pass an intact model folder, "
                        f"e.g. output/best.") from e
    finally:
        logs._REPORT_FILE[0] = report
    from loop.models import no_cache, scored_alike

    scored_alike(clf.model)  # UMT5 on transformers < 5.18, T5Gemma
    no_cache(clf.model.config)  # (a Hub model's, or an older loop's best/)
    return clf


def cut_within_positions(model_dir, tokenizer, config):
    """Texts are cut (pipeline(truncation=True)) at the tokenizer's model_max_length: one above the model's
    position limit (1e30, as many Hub tokenizers say, beside a config's 128 positions) let a long text through,
    and it failed with an IndexError in the position embeddings. Cap it at the limit (training and --eval_only
    never cut beyond it: models.max_length), said on stderr; a loop run's best/ that did not record its
    --max_length is said too, whatever its tokenizer's limit (it is not cut where training cut it)."""
    from loop.models import position_limit, unrecorded_max_length

    own, limit = tokenizer.model_max_length, position_limit(config)
    shown = f"{own:.0e}, no limit" if own >= 1e9 else own
    unrecorded = unrecorded_max_length(model_dir, tokenizer)
    if limit is not None and own > limit:
        tokenizer.model_max_length = limit
        if unrecorded:
            print(f"[loop] {unrecorded}, so texts are cut at the model's {limit} positions (its tokenizer's "
                  f"model_max_length, {shown}, is above them), not where training cut them; set \"model_max_length\" "
                  f"in its tokenizer_config.json to that length.", file=sys.stderr, flush=True)
        else:
            print(f"[loop] the tokenizer's model_max_length ({shown}) is above the model's {limit} positions; texts "
                  f"are cut at {limit} tokens (a longer one would not fit).", file=sys.stderr, flush=True)
    elif unrecorded:
        where = "are not cut (neither its tokenizer nor the model sets a length limit)" if own >= 1e9 else \
            f"are cut at the tokenizer's {own} tokens"
        print(f"[loop] {unrecorded}, so texts {where}, not where training cut them; set \"model_max_length\" in its "
              f"tokenizer_config.json to that length.", file=sys.stderr, flush=True)


def pad_as_training_did(tokenizer, config):
    """A decoder classifier saved elsewhere (the Hub, Trainer) may come with a tokenizer that has no pad
    token, or a config without a pad id, and the pipeline then cannot batch: pad with the config's pad id
    if it has one, else as training pads (models.prepare_padding: eos, on the right), said on stderr; a
    config without a pad id takes the tokenizer's (the head finds each text's last token by it). A
    tokenizer that pads on the other side than the head needs (many decoder LMs' pad on the left) pads on
    the head's side, said on stderr: on the left a GPT-2's positions shift with the batch. A config whose pad
    id is not the tokenizer's (a Llama's config saying eos, its tokenizer padding with <unk>) takes the
    tokenizer's, as training and --eval_only do (models.sync_pad_token), said on stderr: the head looked for
    the config's id, and in a batch read a text's padding instead of its last token."""
    from loop.models import padding_side, prepare_padding, sync_pad_token

    side = padding_side(config)
    if tokenizer.padding_side != side:
        print(f"[loop] the tokenizer pads on the {tokenizer.padding_side}; padding on the {side} as training does "
              f"(so a text scores in a batch as it does alone).", file=sys.stderr, flush=True)
        tokenizer.padding_side = side
    configs = (config, config.get_text_config())  # the head reads the text config's
    if tokenizer.pad_token is not None and all(getattr(c, "pad_token_id", None) is not None for c in configs):
        other = next((c.pad_token_id for c in configs if c.pad_token_id != tokenizer.pad_token_id), None)
        if other is not None:  # the head would look for the config's id and read a padding position of a batch
            print(f"[loop] the config's pad id is {other} and the tokenizer pads with {tokenizer.pad_token!r} (id "
                  f"{tokenizer.pad_token_id}); the model reads id {tokenizer.pad_token_id} as padding, as training "
                  f"does (so a text scores in a batch as it does alone).", file=sys.stderr, flush=True)
            sync_pad_token(config, tokenizer)
        return
    if tokenizer.pad_token is None:
        pad_id = next((c.pad_token_id for c in configs if isinstance(getattr(c, "pad_token_id", None), int)), None)
        if pad_id is not None and 0 <= pad_id < len(tokenizer):
            tokenizer.pad_token = tokenizer.convert_ids_to_tokens(pad_id)
        else:
            print(f"[loop] {prepare_padding(tokenizer, config)}", file=sys.stderr, flush=True)
    sync_pad_token(config, tokenizer)  # as training does: the config's pad id is the tokenizer's


def split_as_training_did(tokenizer, config):
    """An encoder-decoder's tokenizer reads the special tokens written in a text as training does
    (models.split_special_tokens): a loop run's best/ that split keeps splitting; a classifier saved
    elsewhere (Trainer, the Hub) gets the rule (it split nothing, and 'good </s> film' beside 'bad' failed the
    batch: 'All examples must have the same number of <eos> tokens')."""
    from loop.models import split_special_tokens

    split_special_tokens(tokenizer, config, keep_saved=True)


def literal_eos(clf):
    """The eos token, when the model is an encoder-decoder whose tokenizer reads it written in a text as a second
    end of text (it keeps special tokens whole: models.split_special_tokens), which the head fails on; else None."""
    if not getattr(clf.model.config, "is_encoder_decoder", False):
        return None
    tokenizer = clf.tokenizer
    return None if tokenizer.split_special_tokens else tokenizer.eos_token


def check_literal_eos(eos, chunk, before):
    """Refuse, in one line, the first input of `chunk` (after `before` others) holding the literal `eos`."""
    for i, item in enumerate(chunk, before + 1):
        texts = (item["text"], item["text_pair"]) if isinstance(item, dict) else (item,)
        if any(eos in t for t in texts if isinstance(t, str)):
            raise UserError(f"text {i} holds the literal {eos!r}, which this encoder-decoder's tokenizer reads as a "
                            f"second end-of-text token (it keeps special tokens written in a text whole, as the model "
                            f"was trained) and the model fails on; remove {eos!r} from that text.")


# Texts are batched by length within groups of this many batches: a batch of texts of similar length pads
# little (1,000 IMDb reviews, MiniLM at max_length 256, 2 CPU cores: 80 s instead of 95 s in file order,
# measured), while the output keeps the input order and still comes out as the texts are scored.
SORT_GROUP_BATCHES = 16


def scores(clf, texts, batch_size=32, multi_label=False, all_scores=False):
    """Yield {"label", "score"} per text, in the order of `texts` (with `all_scores` also "scores",
    {label: probability} for every label in the model's order; multi-label: {"labels": [...],
    "scores": {label: score}}, every label's sigmoid score), each as soon as it and the texts before it
    are scored. `texts` (any iterable, or Texts) is read a group of SORT_GROUP_BATCHES batches at a time, as the
    scoring goes (input that arrives as it is written: what has arrived; an error reading it is raised after the
    texts before it are scored). Within each group the pipeline gets the texts shortest first (less padding: the
    scores are the same up to float rounding), at most a group's outputs held back."""
    group = batch_size * SORT_GROUP_BATCHES

    def length(t):
        return len(t["text"]) + len(t["text_pair"]) if isinstance(t, dict) else len(t)
    # top_k=None: every label's score (sigmoid per label for multi-label, else the softmax), ranked
    kwargs = {"top_k": None} if multi_label or all_scores else {}
    labels = list(clf.model.config.id2label.values())  # the model's label order, not the ranking
    texts = texts if isinstance(texts, Texts) else Texts(texts)
    eos, taken = literal_eos(clf), 0
    while chunk := texts.take(group):
        if eos:  # (the lines before it are printed)
            check_literal_eos(eos, chunk, taken)
        taken += len(chunk)
        order = sorted(range(len(chunk)), key=lambda i: length(chunk[i]))
        clf.call_count = 0  # a call per group, not per text: not the "pipelines sequentially on GPU" warning's case
        outputs = clf((chunk[i] for i in order), batch_size=batch_size, truncation=True, **kwargs)
        done, upto = {}, 0
        for i, out in zip(order, out_of_memory_is_one_line(outputs, batch_size)):
            if multi_label:
                by_label = {r["label"]: r["score"] for r in out}
                out = {"labels": [n for n in labels if by_label[n] > 0.5],  # as evaluation: logit above 0
                       "scores": {n: by_label[n] for n in labels}}
            elif all_scores:
                by_label = {r["label"]: r["score"] for r in out}
                out = {**out[0], "scores": {n: by_label[n] for n in labels}}  # out[0]: the top label
            done[i] = out
            while upto in done:
                yield done.pop(upto)
                upto += 1


def out_of_memory_is_one_line(outputs, batch_size):
    """The pipeline's outputs; running out of device memory stops with one line (the error itself with
    --debug) instead of a traceback."""
    from loop.memory import clip, is_out_of_memory

    try:
        yield from outputs
    except Exception as e:
        if is_out_of_memory(e):
            raise UserError(f"out of memory scoring a batch of {batch_size} texts ({clip(e)}); lower --batch_size (the "
                            f"lines printed before this are complete).") from e
        raise


def predict(model_dir, texts, batch_size=32, device=None, trust_remote_code=False):
    """Return [{"label", "score"}] per text, through the same pipeline users call; for a multi-label
    model [{"labels": [...], "scores": {label: score}}] (every label's sigmoid score). `texts`: strings, or
    {"text": ..., "text_pair": ...} for a pair model (a pair model refuses single texts, as loop-predict does);
    one string is one text (as pipeline() takes it), not a list of its characters."""
    if hasattr(texts, "columns"):  # a DataFrame iterates over its column names
        raise UserError("texts is a table; pass its column of texts as a list, e.g. df['text'].tolist().")
    texts = [texts] if isinstance(texts, (str, bytes, dict)) else list(texts)
    check_folder(model_dir)
    for i, text in enumerate(texts, 1):
        if isinstance(text, dict) and set(text) != {"text", "text_pair"}:
            raise UserError(f"text {i} is a dict with the keys {', '.join(map(str, text)) or 'none'}; a pair is "
                            f"{{'text': first, 'text_pair': second}}.")
        if not isinstance(text, (str, dict)):
            raise UserError(f"text {i} is {type(text).__name__}, not a string; pass strings (bytes decoded, e.g. "
                            f"b.decode('utf-8')), or {{'text': ..., 'text_pair': ...}} for a pair model.")
    pair_column = trained_on_pairs(model_dir)
    if pair_column and not all(isinstance(t, dict) for t in texts):
        raise UserError(f"'{model_dir}' was trained on text pairs (--text_pair_column {pair_column}); pass each input "
                        f"as {{'text': first, 'text_pair': second}}.")
    from loop import logs

    # as loop-predict: the libraries' bars and load report off (transformers' "Loading weights" bar on stderr of a
    # notebook), back as they were after
    settings = None if os.environ.get("LOOP_VERBOSE", "") not in ("", "0") else logs.library_settings()
    if settings:
        logs.quiet_libraries(report_file=sys.stderr)
    try:
        clf = load(model_dir, device, trust_remote_code)
        return list(scores(clf, texts, batch_size, is_multi_label(model_dir)))
    finally:
        logs.restore_libraries(settings)


def build_parser():
    """loop-predict's options."""
    p = _Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                epilog="Trust: the model folder is loaded from safetensors (or a pytorch_model.bin through torch's "
                       "weights-only loader) and JSON; its tokenizer and config are data, not code. A folder with "
                       "custom code (Python files its config names, as a --trust_remote_code run saves them) is "
                       "refused unless --trust_remote_code, which runs that code.")
    p.add_argument("--model", required=True, help="Model folder, e.g. output/best, or a model id on the Hub "
                                                  "(user/model; offline: read from the Hugging Face cache).")
    p.add_argument("--revision", help="With a Hub --model: the branch, tag or commit to read (default: main; the "
                                      "commit read is said on stderr, to pin it here).")
    p.add_argument("--file", help="A table (csv, tsv, json, jsonl, parquet: the column --text_column is classified; "
                                  "or a quoted pattern of such shards) or a text file with one input per line (blank "
                                  "lines are skipped; '-' reads them from standard input).")
    p.add_argument("--text_column", help="A table --file's column to classify (default: the model's, from its "
                                         "best_metrics.json, else 'text').")
    p.add_argument("--text_pair_column", help="A table --file's column of second texts, for a pair model (default: "
                                              "the model's, from its best_metrics.json).")
    p.add_argument("--pairs", action="store_true",
                   help="Sentence-pair inputs: each is two texts separated by a tab (for a model trained with --text_pair_column).")
    p.add_argument("--batch_size", type=_positive_int, default=32,
                   help="Texts per forward pass (default: 32); lower it when the device runs out of memory.")
    p.add_argument("--all_scores", action="store_true",
                   help="Also print every label's probability, {label: p} in the model's label order (a "
                        "multi-label model always does).")
    p.add_argument("--trust_remote_code", action="store_true",
                   help="Load a model folder with custom code (a custom architecture: Python files its config "
                        "names, as a run with --trust_remote_code saves them); this RUNS that Python code on this "
                        "machine, so use it only for folders you trust.")
    p.add_argument("--sdpa_backends", type=_sdpa_backends, default="auto",
                   help="On an NVIDIA GPU, the attention kernels SDPA may pick, as in training: auto (not cuDNN's, "
                        "which builds a kernel graph for every new batch width), torch (PyTorch's own choice), or a "
                        "comma list of flash, efficient, cudnn, math.")
    p.add_argument("texts", nargs="*", help="Texts to classify.")
    p.add_argument("--debug", action="store_true", help="Show tracebacks.")
    p.add_argument("--verbose", action="store_true",
                   help="Show the libraries' own output (progress bars, load reports); also LOOP_VERBOSE=1.")
    p.add_argument("--version", action="version", version=version_line(),
                   help="Print loop's version and the folder it runs from, and exit.")
    return p


def parse(argv):
    """The options and the texts (before, between and after the options, and every word after `--`)."""
    p = build_parser()
    # texts before, between and after the options; after a `--` everything is a text (a text that starts with
    # '-'), which argparse's intermixed reading does not keep apart
    argv = sys.argv[1:] if argv is None else list(argv)
    after = argv.index("--") if "--" in argv else len(argv)
    args = p.parse_intermixed_args(argv[:after])
    args.texts += argv[after + 1:]
    # `--model=~/run/best` (or a quoted '~/...') reaches us unexpanded: the home folder, as train's path flags take it
    args.model = os.path.expanduser(args.model) if args.model.startswith("~") else args.model
    if args.file and args.file.startswith("~"):
        args.file = os.path.expanduser(args.file)
    return args


def run(argv):
    """Classify what the options say, printing one JSON line per input."""
    args = parse(argv)
    if sys.stdout is None:  # `>&-`: print() drops every line, and the exit said success
        raise UserError("standard output is closed (or not open for writing), so the predictions have nowhere to go; "
                        "redirect it to a file (> predictions.jsonl) instead.")
    if not (args.verbose or os.environ.get("LOOP_VERBOSE", "") not in ("", "0")):
        # stdout is the JSON lines, so anything of ours goes to stderr; the libraries' bars not at all
        from loop.logs import quiet_libraries

        quiet_libraries(report_file=sys.stderr)
    check_model_option(args)
    if output_is_file(args.file):
        what = "the file standard input reads (--file -)" if args.file == "-" else f"--file '{args.file}'"
        raise UserError(f"the output goes to {what} itself (redirected to it: `>` emptied it before loop-predict "
                        f"started, `>>` appends to what is read); write the output to another file.")
    pair_column = trained_on_pairs(args.model)
    table = check_input_options(args, pair_column)
    if table:
        return classify_table(args, pair_column)
    texts = load_texts(args)
    # every input checked before the model loads (input that arrives as it is written, read once: as its lines come)
    for i, text in enumerate(args.texts, 1):
        as_input(text, None, args.pairs, i)
    arriving = bool(args.file) and arrives(args.file)
    for n, line in open_lines(args.file) if args.file and not arriving else ():
        if not blank_text(line):
            as_input(line, n, args.pairs)
    clf = load_for(args)
    regression = problem_type(args.model) == "regression"
    pending = collections.deque()  # the texts handed to the pipeline, whose lines are not printed yet

    def inputs():
        for i, (text, line) in enumerate(texts, 1):
            pending.append((text, line, as_input(text, line, args.pairs, i)))
            yield pending[-1][2]
    # printed (and flushed) as each batch is scored: a long file shows progress, and a failure late in it
    # keeps what came before
    for out in scores(clf, Texts(inputs(), arriving), args.batch_size, is_multi_label(args.model), args.all_scores):
        text, line, item = pending.popleft()
        record = {"text": item["text"], "text_pair": item["text_pair"]} if args.pairs else {"text": text}
        if line is not None:
            record["line"] = line
        write_line({**record, **result_fields(out, regression)})


# A reader that stopped reading (`| head -1`): the exit status of a filter that SIGPIPE ended (cat, grep, sort), as
# the shell reports it (128 + 13). Not 0: the texts after it were never scored, and `set -o pipefail` scripts
# already treat 141 from a producer under `head` as they do for those tools.
EXIT_CLOSED_PIPE = 141


def write_line(record):
    """Print one output line, flushed: a long file shows progress, and a failure late in it keeps what came
    before. A reader that closed the pipe ends the run quietly with EXIT_CLOSED_PIPE, as a Unix filter ends; any
    other failure to write (a full disk under `> out.jsonl`) is one line naming the output and the cause."""
    try:
        print(json.dumps(record), flush=True)
    except OSError as e:
        name = output_name()
        try:  # what stays in stdout's buffer goes nowhere: else the flush at exit fails again, with a traceback
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):  # a stdout without a file descriptor (replaced in-process)
            pass
        if isinstance(e, BrokenPipeError):
            sys.exit(EXIT_CLOSED_PIPE)
        full = e.errno in (errno.ENOSPC, errno.EDQUOT)
        fix = "free space (or write to another disk)" if full else "write it elsewhere"
        raise UserError(f"the output{name} could not be written ({e.strerror or short(e)}): its lines before the last "
                        f"are complete, and the texts after them were not scored; {fix} and run again.") from e


def output_name():
    """The output's name for a message: " 'out.jsonl'" when stdout is a file (`> out.jsonl`; Linux names it in
    /proc), else "" (a pipe, a terminal)."""
    try:
        path = os.readlink(f"/proc/self/fd/{sys.stdout.fileno()}")
    except (OSError, ValueError):
        return ""
    return f" '{path}'" if path.startswith("/") and os.path.isfile(path) else ""


def digits(value):
    """A probability to 6 decimals, as --eval_only writes it."""
    return round(float(value), 6)


def result_fields(out, regression=False):
    """An output line's prediction: label and score (to 6 decimals; a regression's number to 6 significant
    digits, as --eval_only writes it: 6 decimals made 7.6e-10 0.0), with --all_scores every label's;
    multi-label: labels and scores."""
    if "labels" in out:
        return {"labels": out["labels"], "scores": {k: digits(v) for k, v in out["scores"].items()}}
    score = float(f"{float(out['score']):.6g}") if regression else digits(out["score"])
    fields = {"label": out["label"], "score": score}
    if "scores" in out:
        fields["scores"] = {k: digits(v) for k, v in out["scores"].items()}
    return fields


def check_model_option(args):
    """--model: a model folder (not a run folder or a checkpoint: check_folder) or a model on the Hub (then
    args.model becomes its folder in the Hugging Face cache), and --all_scores one that has labels; before any text
    is read."""
    if not args.model.strip():
        raise UserError("--model must not be empty; pass a model folder, e.g. output/best.")
    args.model_name = args.model  # as given: what the messages name (a Hub id, not its folder in the cache)
    if not os.path.isdir(args.model):
        args.model = hub_model(args.model, args.trust_remote_code, args.revision)
    elif args.revision is not None:
        raise UserError(f"--revision picks a version of a model on the Hub, and --model '{args.model}' is a folder; "
                        f"drop --revision.")
    check_folder(args.model)
    if args.all_scores and problem_type(args.model) == "regression":
        raise UserError(f"--all_scores gives each label's probability, and --model '{args.model_name}' is a "
                        f"regression model (one number per text, its \"score\"); drop --all_scores.")


def output_is_file(path):
    """Whether standard output is the file `path` reads (`loop-predict --file x.jsonl > x.jsonl`): for `-`, standard
    input's file (`--file - < x >> x`, which read its own output until the disk was full), for a pattern of
    shards, any of them."""
    import glob
    import stat

    def same(a, b):
        return stat.S_ISREG(a.st_mode) and (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
    if not path:
        return False
    try:
        out = os.fstat(sys.stdout.fileno())
        if path == "-":
            return same(out, os.fstat(sys.stdin.fileno()))
        # as the file is read: the name itself where it exists ('r[1].txt'), else the shards the pattern matches
        return any(same(out, os.stat(p)) for p in ([path] if os.path.exists(path) else glob.glob(path)))
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):  # no file there, or no real stdout
        return False


def check_input_options(args, pair_column):
    """Whether --file is a table, after the options that name columns or pairs are checked against it and
    against the model (`pair_column`: its pair column, False for single texts, None when it does not say): pairs
    for a pair model, single texts for the others."""
    # with --pairs a .tsv is 'first<TAB>second' lines, as before tables were read
    table = is_table(args.file) and not (args.pairs and args.file.lower().endswith(".tsv"))
    given = [f for f in ("--text_column", "--text_pair_column") if getattr(args, f[2:]) is not None]
    if given and not table and args.file and is_table(args.file):  # a .tsv read as pairs
        raise UserError(f"with --pairs a .tsv --file is read as 'first<TAB>second' lines, which have no columns to "
                        f"name; drop --pairs to read it as a table with a header (the columns it names), or drop "
                        f"{given[0]}.")
    if given and not table:
        raise UserError(f"{given[0]} names a column of a table --file (csv, tsv, json, jsonl or parquet)"
                        f"{'' if args.file else ', and there is none'}; drop {given[0]}"
                        f"{' or pass the table' if not args.file else ''}.")
    if table and args.pairs:
        raise UserError("--pairs reads 'first<TAB>second' lines of a text or .tsv file; a table --file gives the "
                        "second texts in a column: drop --pairs (the model's own pair column is read; "
                        "--text_pair_column names another).")
    if table and args.text_pair_column and pair_column is False:
        raise UserError(f"--model '{args.model_name}' was trained on single texts (its best_metrics.json names no "
                        f"--text_pair_column); drop --text_pair_column.")
    if not table and pair_column and not args.pairs:
        raise UserError(f"--model '{args.model_name}' was trained on text pairs (--text_pair_column {pair_column}); "
                        f"pass --pairs and give each input as 'first text<TAB>second text'.")
    if not table and pair_column is False and args.pairs:
        raise UserError(f"--model '{args.model_name}' was trained on single texts (its best_metrics.json names no "
                        f"--text_pair_column); drop --pairs.")
    return table


def classify_table(args, pair_column):
    """A table --file (after any argument texts): one line per row with a text, `row` its position. Its rows are read
    as they are scored (a slice at a time), the texts held only until their lines are printed."""
    check_argument_texts(args.texts, args.file)
    rows, pair = load_table(args, args.model)
    if pair and args.texts:
        raise UserError("texts given as arguments are single texts, and this model reads pairs from the table's "
                        "columns; classify them with --pairs (without the table) or add them to the table.")
    clf = load_for(args)
    regression = problem_type(args.model) == "regression"
    pending = collections.deque()  # the rows handed to the pipeline, whose lines are not printed yet

    def inputs():
        for item in itertools.chain(((t, None) for t in args.texts), rows):
            pending.append(item)
            yield item[0]
    for out in scores(clf, inputs(), args.batch_size, is_multi_label(args.model), args.all_scores):
        item, row = pending.popleft()
        record = {"row": row} if row is not None else {}
        record.update(item if isinstance(item, dict) else {"text": item})
        write_line({**record, **result_fields(out, regression)})


def main(argv=None):
    """Command-line entry point (`loop-predict`, `python -m loop.predict`, `python loop/predict.py`): run, with
    errors mapped to exit codes."""
    run_cli(run, argv, interrupted="interrupted (Ctrl-C); the lines printed before it are complete, the rest were "
                                   "not scored.")


if __name__ == "__main__":
    main()
