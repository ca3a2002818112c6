"""A data file that datasets cannot read, or would read wrong: the checks made before it reads one (a csv's header,
a JSON file's shape, parquet shards that agree) and, when reading fails, the line naming the problem.

datasets' own errors for a bad file are a traceback through pyarrow or pandas that rarely names the file or the
line (an unclosed quote in row 80,000 of a csv is "Error tokenizing data"). diagnose_file streams the file that
failed and returns the first problem it finds with its line or row, which data.load_file puts in its one-line
refusal. Nothing here is called on a file that loads.
"""

import contextlib
import csv
import itertools
import json
import os
import re

from .errors import UserError, short


def check_shard_features(files, flag, pattern):
    """datasets reads every parquet shard with the first one's features: a shard whose ClassLabel names the
    classes in another order, or whose class ids come without names (or with names after a shard of text
    labels) would train on swapped or misread labels. Refuse those, naming both shards; text labels after
    a ClassLabel shard are read by name, which is right."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def classes(feature):  # a ClassLabel's names, also inside a Sequence or list (multi-label)
        if isinstance(feature, dict):
            if "names" in feature:
                return list(feature["names"])
            return next((c for c in map(classes, feature.values()) if c is not None), None)
        if isinstance(feature, list):
            return next((c for c in map(classes, feature) if c is not None), None)
        return None

    def described(f):  # {column: (class names or None, holds text)}
        schema = pq.read_schema(f)
        meta = (schema.metadata or {}).get(b"huggingface")
        features = json.loads(meta)["info"]["features"] if meta else {}
        out = {}
        for field in schema:
            kind = field.type
            while pa.types.is_list(kind) or pa.types.is_large_list(kind):
                kind = kind.value_type
            out[field.name] = (classes(features.get(field.name)), pa.types.is_string(kind) or pa.types.is_large_string(kind))
        return out

    def said(names, is_text):
        return f"classes {', '.join(map(str, names))}" if names else "text labels" if is_text else "ids without names"

    try:
        shards = [(f, described(f)) for f in files]
    except Exception:  # unreadable: the read itself says why
        return
    first, reference = shards[0]
    for f, these in shards[1:]:
        for col in sorted(set(reference) & set(these)):
            (names, _), (other, text) = reference[col], these[col]
            if names == other or (names is not None and other is None and text):
                continue
            raise UserError(f"{flag} '{pattern}': the shards describe column '{col}' differently ({first}: "
                            f"{said(names, reference[col][1])}; {f}: {said(other, text)}), and every shard would be "
                            f"read with the first one's; write every shard with the same features.")


def shard_columns(files, builder):
    """Where shards of one split disagree on their columns: 'a.parquet has text, label; b.parquet has
    review, label; give every file the same columns'; None when they agree (or cannot be read)."""
    import pyarrow.parquet as pq

    def columns(f):
        if builder == "parquet":
            return pq.read_schema(f).names
        with open(f, encoding="utf-8-sig", newline="") as fh:
            if builder == "csv":
                sep = "\t" if f.lower().endswith(".tsv") else ","
                return next(csv.reader(fh, delimiter=sep), [])
            first = fh.readline().strip()  # JSON lines: the first row's keys
            return list(json.loads(first)) if first.startswith("{") else None

    try:
        seen = [(f, columns(f)) for f in files]
    except Exception:
        return None
    first = seen[0]
    other = next(((f, c) for f, c in seen[1:] if c is not None and first[1] is not None and sorted(c) != sorted(first[1])),
                 None)
    if other is None:
        return None
    return (f"{first[0]} has the columns {', '.join(first[1])}; {other[0]} has {', '.join(other[1])}: give every file "
            f"the same columns")


def check_csv_header(path, flag, delimiter, quoting):
    """A csv or tsv header that names a column twice: pandas would rename the second ('text.1') and the
    first would be read without a word; refuse it naming the column. A tsv header (read unquoted: `quoting`
    QUOTE_NONE) whose every name is in quote marks: the file quotes its fields (quoted_tsv)."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            header = next(csv.reader(f, delimiter=delimiter, quoting=quoting), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return  # the read itself says what is wrong
    twice = sorted({n for n in header if n and header.count(n) > 1})
    if twice:
        raise UserError(f"{flag} {path} names the column{'s' if len(twice) > 1 else ''} "
                        f"{', '.join(repr(n) for n in twice)} twice in its header; give each column its own name.")
    named = [n for n in header if n]
    if quoting == csv.QUOTE_NONE and named and all(_in_quotes(n) for n in named):
        raise UserError(quoted_tsv(flag, path, f"its header reads {', '.join(named)}", "every column name"))


def _in_quotes(value):
    return len(value) >= 2 and value[0] == value[-1] == '"'


def quoted_tsv(flag, path, seen, where):
    """The refusal of a .tsv written with its fields in quotes (R's write.table(sep="\\t"), csv.QUOTE_NONNUMERIC):
    read unquoted, its quote marks would be part of `where` and of the texts."""
    return (f"{flag} {path} quotes its fields ({seen}): a .tsv is read unquoted, as GLUE's are (a quote is a "
            f"character of the text), so the quote marks would be part of {where} and of the texts; save it as .csv "
            f"(read with quoting) or without quotes.")


def check_tsv_quoted_labels(ds, flag, path, columns):
    """A .tsv whose header is plain but every non-empty value of a label column (`columns`: those `ds` has) is in
    quote marks ('"pos"', csv.QUOTE_NONNUMERIC): refused as check_csv_header refuses a quoted header. A text that
    holds quotes (GLUE's) is no label, and one label of a column without them is enough to pass."""
    import pyarrow as pa
    import pyarrow.compute as pc

    for name in columns:
        if name not in ds.column_names:
            continue
        values = ds.data.table.column(name)
        if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
            continue
        values = pc.drop_null(values)
        values = values.filter(pc.not_equal(values, ""))
        if len(values) and pc.all(pc.match_substring_regex(values, r'^".*"$')).as_py():
            raise UserError(quoted_tsv(flag, path, f"every label in its column '{name}' is in quote marks, e.g. "
                                                   f"{values[0].as_py()}", "every label"))


MAX_JSON_DEPTH = 500  # brackets open at once in a JSON file: a row is an object of texts and labels (Python's json
# reader, which the shape checks use, gives up at ~1,000 with a RecursionError; pyarrow's crashes at ~50,000)
_BRACKET_STEP = __import__("numpy").zeros(256, dtype="int8")
_BRACKET_STEP[[ord("["), ord("{")]], _BRACKET_STEP[[ord("]"), ord("}")]] = 1, -1


def check_json_depth(path, flag, chunk_bytes=1 << 22):
    """Refuse a JSON or JSON-lines file nested deeper than MAX_JSON_DEPTH: pyarrow's reader (datasets') ends the
    process with a segmentation fault at ~50,000, without a word (exit 139), also when a row's brackets are spread
    over lines. Brackets in strings do not count (a text's unclosed '[' is text): the quotes that are not escaped
    open and close strings. Counted in numpy blocks, carrying the depth, whether a string is open and the
    backslashes that end a block; about 1 s per 100 MB. A UTF-16 file is left to the encoding check."""
    import numpy as np

    depth, in_string, slashes, line = 0, 0, 0, 1
    with open(path, "rb") as f:
        if f.read(2) in (b"\xff\xfe", b"\xfe\xff"):
            return
        f.seek(0)
        while True:
            block = f.read(chunk_bytes)
            if not block:
                return
            b = np.frombuffer(block, dtype=np.uint8)
            pos = np.arange(b.size, dtype=np.int64)
            backslash = b == 92
            last_other = np.maximum.accumulate(np.where(backslash, -1, pos))  # the last byte that is no backslash
            run = pos - last_other + np.where(last_other < 0, slashes, 0)  # backslashes ending at each byte
            before = np.concatenate(([slashes], run[:-1]))  # ...and right before it
            quotes = np.cumsum((b == 34) & (before % 2 == 0)) + in_string  # unescaped quotes up to each byte
            counted = np.where(quotes % 2 == 0, _BRACKET_STEP[b], 0)  # brackets outside strings
            running = depth + np.cumsum(counted, dtype=np.int64)
            deep = np.flatnonzero(running > MAX_JSON_DEPTH)
            if deep.size:
                at_line = line + int(np.count_nonzero(b[:deep[0]] == 10))
                raise UserError(f"{flag} {path} nests its rows more than {MAX_JSON_DEPTH:,} brackets deep (at line "
                                f"{at_line}), which the JSON reader cannot follow (it would crash); a row is an "
                                f"object of texts and labels: fix or drop that row.")
            depth, in_string, slashes = int(running[-1]), int(quotes[-1] % 2), int(run[-1])
            line += int(np.count_nonzero(b == 10))


def check_json_shape(path, flag):
    """A .json file that is one object of columns (pandas' default `to_json()`, or {"text": [...],
    "label": [...]}) would load as one row of dicts or lists; refuse it naming the shape. Cheap: a
    JSON-lines file fails to parse as one document right after its first line."""
    with open(path, "rb") as f:
        head = f.read(4096).removeprefix(b"\xef\xbb\xbf").lstrip()
    if re.fullmatch(rb"\[\s*\]", head.strip()):
        raise UserError(f"{flag} {path} is an empty JSON array: it has no rows; put the examples in it.")
    if re.match(rb"\[\s*\[", head):  # datasets reads [["a text", "pos"], ...] as one column named 'text'
        raise UserError(f"{flag} {path} is a JSON array of arrays, not of row objects; write each row as an object "
                        f'naming its columns, {{"text": "...", "label": "..."}}.')
    if re.fullmatch(rb"\{\s*\}", head.strip()):
        raise UserError(f"{flag} {path} is an empty JSON object: it has no rows; write an array of row objects or "
                        f"JSON lines, one object per line.")
    if not head.startswith(b"{"):
        return
    try:
        with open(path, encoding="utf-8-sig") as f:
            doc = json.loads(f.readline())  # pandas writes its one object on one line
            if f.read(4096).strip():
                return  # more lines: JSON lines, one row each
    except RecursionError:  # 200,000 brackets deep: Python's reader gives up (and datasets' may crash the process)
        raise UserError(f"{flag} {path} nests its first line deeper than a JSON reader can follow; a row is an "
                        f"object of texts and labels: fix or drop that line.") from None
    except (ValueError, UnicodeDecodeError):
        try:
            if os.path.getsize(path) >= 100 * 2**20:
                return
            with open(path, encoding="utf-8-sig") as f:
                doc = json.load(f)
        except (ValueError, UnicodeDecodeError):
            return  # JSON lines, or broken (diagnose_file names the line)
    # {"version": 1, "data": [{row}, ...]}: one row of a version and a list; "--text_column is not in the data" sent
    # the user to the columns (a fresh user's F4). A row of its own may hold a list of objects (spans) beside its
    # text: one object beside a text is taken for that (review rev2 F4)
    rows = (lambda v: isinstance(v, list) and v and all(isinstance(r, dict) for r in v))
    held = [k for k, v in doc.items() if rows(v) and (len(v) > 1 or not any(isinstance(u, str) for u in doc.values()))
            and not any(isinstance(u, list) and not rows(u) for u in doc.values())] \
        if isinstance(doc, dict) and not path.lower().endswith(".jsonl") else []  # (lists of texts: columns, below)
    if held:
        key = f".{held[0]}" if held[0].isidentifier() else f".[{json.dumps(held[0])}]"
        raise UserError(f"{flag} {path} is one JSON object holding its rows under {held[0]!r}, not rows; write that "
                        f"list as the file's top-level array, or as JSON lines, one object per line (jq: "
                        f"jq -c '{key}[]' {os.path.basename(path)} > rows.jsonl).")
    # (a .jsonl of one line is one row, unless its values are pandas' {index: value} columns)
    columns = (dict,) if path.lower().endswith(".jsonl") else (dict, list)
    if isinstance(doc, dict) and doc and all(isinstance(v, columns) for v in doc.values()):
        raise UserError(f"{flag} {path} is one JSON object of columns ({', '.join(repr(k) for k in list(doc)[:4])}), "
                        f"not rows; write an array of row objects or JSON lines, one object per line (pandas: "
                        f"df.to_json(path, orient='records', lines=True)).")


def is_blank(path):
    """True for a file with nothing but whitespace (cheap: reads at most 64 KiB)."""
    with open(path, "rb") as f:
        head = f.read(65536)
    return not head.strip() and len(head) < 65536


def holds_rows(f):
    """Whether data file `f` holds a row (cheap: parquet's metadata, a text file's first two lines): two shards of
    no rows, a header-only csv or a 0-row parquet as Spark and pandas write them, are byte-identical and no copy
    of each other's data."""
    if f.lower().endswith(".parquet"):
        import pyarrow.parquet as pq

        try:
            return pq.ParquetFile(f).metadata.num_rows > 0
        except Exception:  # (read later, and named there when broken)
            return True
    if is_blank(f):
        return False
    if f.lower().endswith((".csv", ".tsv")):
        with open(f, "rb") as fh:
            fh.readline()  # the header
            return any(line.strip() for line in iter(fh.readline, b""))
    return True


# what diagnose_file reads at a time: it streams, so a multi-GB file with one bad line costs this much memory
# (plus its longest line or JSON array element), not the file three times over (bytes, text, lines)
DIAGNOSE_CHUNK = 2**20
JSON_SPACE = " \t\n\r"  # the whitespace JSON allows between values
_JSON_SPACES = re.compile(f"[{JSON_SPACE}]*")


def diagnose_file(path, builder):
    """Find the first problem in a data file that failed to load, naming the line where we can. Streams the file."""
    if builder == "parquet":
        return _parquet_problem(path)
    problem = _utf8_problem(path)
    if problem:
        return problem
    if builder == "json":
        with open(path, encoding="utf-8", newline="") as f:
            head = ""
            while not head.strip(JSON_SPACE) and (chunk := f.read(4096)):
                head += chunk
        if head.lstrip(JSON_SPACE).startswith("["):
            return _json_array_problem(path)
        return _json_lines_problem(path)
    if builder == "csv":
        try:
            return _csv_problem(path)
        except csv.Error:  # any other complaint of the csv module: the load's own error says it
            return None
    return None


def check_csv_rows(path, flag, shown):
    """Refuse a csv or tsv with a row whose fields are more or fewer than its header's, naming the line, before
    pandas reads it: pandas takes a first row with one field more as an index column (every column shifted one
    to the right: ids scored as texts) and pads a short row with empty fields (a text cut at a line break, a .tsv
    has no quoting: its tail read as a row of its own, whose first field may become a label, a class of its own),
    both without a word. One pass of the csv module (0.15 s for IMDb's 33 MB). `shown`: how the refusal names the
    file (the option's path, or the shard among the files it matches)."""
    try:
        problem = _csv_problem(path, rows_needed=False)
    except (OSError, UnicodeDecodeError, csv.Error):
        return  # the read itself says what is wrong
    if problem:
        raise UserError(f"{flag} {shown} could not be read: {problem}.")


def _csv_problem(path, rows_needed=True):
    """The first csv (or tsv) row whose fields do not match the header, an unclosed quote, or (`rows_needed`)
    no rows; a line of spaces and tabs alone is blank (pandas skips it). A file whose rows all begin with a name
    the header does not name (R's write.table) is refused too: pandas reads it right, but it cannot be told from
    an id column and a ',' in every text (or an empty last field, or a tab in a .tsv), which pandas reads shifted."""
    sep = "\t" if path.lower().endswith(".tsv") else ","
    quoting = csv.QUOTE_NONE if sep == "\t" else csv.QUOTE_MINIMAL  # as load_file reads it
    with _long_csv_fields(), open(path, encoding="utf-8-sig", newline="") as f:  # (Excel's BOM before a quote)
        rows = csv.reader(f, delimiter=sep, quoting=quoting)
        width, n_rows, header, end = None, 0, None, 0
        for row in rows:
            i, start, end = rows.line_num, end + 1, rows.line_num  # a quoted text may span lines start..i
            if not row or (len(row) == 1 and i == start and not row[0].strip(" \t")):
                continue
            if width is None:
                width, header = len(row), row
                continue
            n_rows += 1
            if len(row) == width:
                continue
            other = other_separator(header, sep)
            if other:  # a header of one field that holds another separator: a European Excel export
                return (f"its header is one field, {header[0][:60]!r}: the file looks {other!r}-separated; "
                        f"save it with '{sep}' between fields" + (" (or as .tsv)" if other == "\t" else ""))
            if i > start and sep != "\t" and any("\n" in field for field in row) and _ends_inside_quote(path):
                return (f"a quote opened on line {start} is never closed (the text runs on to line {i}); "
                        f"close or remove it")
            counted = (f"{f'line {i}' if i == start else f'the row on lines {start}-{i}'} has {len(row)} "
                       f"field{'s' * (len(row) != 1)} but the header has {width}")
            if len(row) < width:  # the rest of its row on the next line, or a row that lacks a field
                if not header[-1] and n_rows == 1:
                    return f"{counted}, whose last name is empty: remove the '{sep}' at the header's end"
                if i > start:  # (a row over several lines: its line breaks are quoted)
                    return f"{counted}: the row lacks a field (add it)"
                if sep == "\t":
                    return (f"{counted}: a line break cut a text (a .tsv has no quoting: replace line breaks in the "
                            f"texts with spaces), or the row lacks a field (add it)")
                return (f"{counted}: a line break outside quotes cut a text (quote the texts; pandas' to_csv leaves "
                        f"a lone \\r unquoted: pass quoting=csv.QUOTE_ALL), or the row lacks a field (add it)")
            empty_last = len(row) == width + 1 and not row[-1]
            if empty_last:
                counted, fix = f"{counted}, the last one empty", f"remove the '{sep}' at the end of its rows"
            elif sep == "\t":
                fix = "a text holds a tab (a .tsv cannot hold one): replace it with a space"
            else:
                fix = f"quote texts that contain '{sep}'"
            if n_rows == 1 and len(row) == width + 1:  # (on the first row: maybe on every one, R's row names)
                return (f"{counted}: if its first field is a row name the header does not name (R's write.table), "
                        f"write the file without them (R's row.names = FALSE, pandas' index=False); else {fix}")
            return f"{counted}{':' if empty_last else ';'} {fix}"
    if n_rows == 0 and rows_needed:
        return "it has a header but no rows; add at least one example"
    return None


def _parquet_problem(path):
    """A Parquet file that cannot be opened, or has no rows."""
    import pyarrow.parquet as pq

    try:
        rows = pq.read_metadata(path).num_rows
    except Exception as e:
        if "too deeply nested" in str(e):  # a Parquet file whose schema is deeper than the reader's limit
            return _deep_parquet(path, e)
        return f"it is not a Parquet file ({short(e)}); check the file or its extension"
    return "it has no rows; add at least one example" if rows == 0 else None


def _deep_parquet(path, e):
    """A Parquet file the reader refuses as too deeply nested: name the column (read with no depth limit)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def depth(t):
        if pa.types.is_map(t):
            kids = [t.key_type, t.item_type]
        elif pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
            kids = [t.value_type]
        else:
            kids = [f.type for f in t] if pa.types.is_struct(t) else []
        return 1 + max(map(depth, kids)) if kids else 0

    try:
        schema = pq.ParquetFile(path, schema_depth_limit=2**31 - 1).schema_arrow
        deep = max(schema, key=lambda f: depth(f.type))
        which = f"its column '{deep.name}' is nested {depth(deep.type)} levels deep (lists of lists ...)"
    except Exception:  # an older pyarrow without schema_depth_limit: the reader's own words
        which = f"its schema is nested too deeply ({short(e)})"
    return (f"it is a Parquet file, but {which}, more than the Parquet reader accepts; drop or flatten that column "
            f"before saving the file")


def _utf8_problem(path):
    """'it is not UTF-8 text (bad byte at line N)...' for a file that is not UTF-8, else None; in chunks."""
    import codecs

    decoder, lines = codecs.getincrementaldecoder("utf-8")(), 0
    with open(path, "rb") as f:
        while True:
            chunk = f.read(DIAGNOSE_CHUNK)
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as e:  # e.object: the bytes the decoder held back (no newline) + chunk
                line = lines + e.object[: e.start].count(b"\n") + 1
                return f"it is not UTF-8 text (bad byte at line {line}); re-save it as UTF-8"
            if not chunk:
                return None
            lines += chunk.count(b"\n")


def _json_lines_problem(path):
    """The first line of a JSON-lines file that is no JSON object, or a column whose type changes; line by line."""
    types = {}
    # newline="\n": lines end at "\n" only, as JSON lines do (a "\u2028" or "\r" inside a text is no line end)
    with open(path, encoding="utf-8", newline="\n") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line, object_pairs_hook=_pairs_once)
            except json.JSONDecodeError as e:
                return f"invalid JSON at line {i} ({e.msg}); fix or remove that line"
            except _TwiceKey as e:  # Python's reader keeps the last, Arrow's refuses the line ("trailing data")
                return f"line {i} gives the key '{e.args[0]}' twice; keep one"
            if not isinstance(row, dict):
                return f"line {i} is not a JSON object; write one {{...}} object per line"
            bad = next((k for k, v in row.items() if isinstance(v, str) and _lone_surrogate(v)), None)
            if bad is not None:  # "\ud800" alone: valid JSON to Python, no UTF-8 text to Arrow
                return (f"line {i}'s '{bad}' holds half of a character pair (an escape '\\ud800' .. '\\udfff' "
                        f"alone), which has no UTF-8 form; remove it or write the whole character")
            for k, v in row.items():
                if v is not None:
                    t = "number" if isinstance(v, (int, float)) and not isinstance(v, bool) else type(v).__name__
                    first = types.setdefault(k, (t, i))
                    if first[0] != t:
                        return (f"column '{k}' mixes types ({first[0]} at line {first[1]}, {t} at line {i}); "
                                f"use one type per column")
    return None


class _TwiceKey(ValueError):
    pass


def _pairs_once(pairs):
    """json's object_pairs_hook: the object, a key given twice refused (_TwiceKey)."""
    row = dict(pairs)
    if len(row) < len(pairs):
        seen = set()
        raise _TwiceKey(next(k for k, _ in pairs if k in seen or seen.add(k)))
    return row


def _lone_surrogate(text):
    """Whether `text` holds half of a UTF-16 surrogate pair, which has no UTF-8 form."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _json_array_problem(path):
    """The first JSON error, or element that is no row object, of a file holding one JSON array; read element by
    element, so memory is bounded by the largest element (json.loads would hold the file, its text and its rows)."""
    decoder = json.JSONDecoder()
    with open(path, encoding="utf-8", newline="") as f:
        buf, at, line, eof = "", 0, 1, False  # buf[at:] is unread; `line`: the file line buf[0] is on

        def more():
            nonlocal buf, at, line, eof
            line += buf.count("\n", 0, at)
            chunk = f.read(max(DIAGNOSE_CHUNK, len(buf) - at))  # an element longer than a chunk: doubles each time
            buf, at, eof = buf[at:] + chunk, 0, not chunk

        def next_char():  # the next character that is not whitespace ('' at the end), `at` left on it
            nonlocal at
            while True:
                at = _JSON_SPACES.match(buf, at).end()
                if at < len(buf) or eof:
                    return buf[at:at + 1]
                more()

        def error(msg, pos):  # as json.loads' message for the whole file
            where = line + buf.count("\n", 0, pos)
            return f"invalid JSON at line {where} ({msg}); fix that line"

        next_char()
        at += 1  # the '['
        if next_char() == "]":
            at += 1
        else:
            for index in itertools.count():
                while True:
                    next_char()
                    try:
                        row, end = decoder.raw_decode(buf, at)
                    except json.JSONDecodeError as e:
                        # cut short by the chunk's end: an error at the end, or a string not closed before it
                        if not eof and (e.pos >= len(buf) - 8 or e.msg.startswith("Unterminated string")):
                            more()
                            continue
                        return error(e.msg, e.pos)
                    if end >= len(buf) and not eof:  # a number or word may go on in the next chunk
                        more()
                        continue
                    break
                if not isinstance(row, dict):
                    return (f"element {index} of its array is {str(row)[:40]!r}, not a row object; every element "
                            f"must be {{...}}")
                at = end
                c = next_char()
                if c == "]":
                    at += 1
                    break
                if c != ",":
                    return error("Expecting ',' delimiter", at)
                at += 1
        if next_char():
            return error("Extra data", at)
    return None


def other_separator(header, sep=","):
    """The separator a csv header of one field holds instead of `sep` (';' of a European Excel export), or None."""
    return next((c for c in ";\t|" if c != sep and len(header) == 1 and c in header[0]), None)


@contextlib.contextmanager
def _long_csv_fields():
    """Lets the csv module read a field of any length while diagnosing (its default limit, 128 KiB, is less than a
    long document; pandas has none): the limit is process-wide, so it is restored after."""
    old = csv.field_size_limit(2**31 - 1)  # (a C long on every platform)
    try:
        yield
    finally:
        csv.field_size_limit(old)


def _ends_inside_quote(path):
    """True when a csv file ends inside a quoted field (a quote opened and never closed)."""
    try:
        with _long_csv_fields(), open(path, encoding="utf-8", newline="") as f:
            for _ in csv.reader(f, strict=True):
                pass
    except csv.Error as e:
        return "unexpected end of data" in str(e)
    return False
