"""Files and folders on disk, written so that a crash or a full disk never leaves half of one: a file replaced
through a temporary and an atomic rename, a folder built beside its final name, flushed, then renamed over the old
one (`publish`), and a half-finished rename undone at the next start (`recover`); sizes, free space, a file's sha256.
Knows nothing of what the files hold: checkpoint.py decides what goes where.
"""

import hashlib
import json
import os
import shutil


def make_folders(path, parent=False):
    """os.makedirs(path), which it follows step by step: the folders it made (a parent, then `path`), deepest
    first, for a failed start to remove again. '..' resolves as makedirs resolves it (through links)."""
    made = []
    head, tail = os.path.split(path)
    if not tail:
        head, tail = os.path.split(head)
    if head and tail and not os.path.exists(head):
        made = make_folders(head, parent=True)
        if tail == os.curdir:  # xxx/newdir/. exists if xxx/newdir exists
            return made
    try:
        os.mkdir(path)
    except FileExistsError:
        if parent:  # ('new/..', or made meanwhile): there now, as a parent needs
            return made
        raise
    return [os.path.join(os.getcwd(), path)] + made


def free_space(path):
    """Free bytes on the filesystem of `path`, or of its nearest existing parent folder."""
    path = os.path.abspath(path)
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return shutil.disk_usage(path).free


def tree_size(path):
    """Bytes in the files under `path` (a file or a folder; 0 if it is not there)."""
    if os.path.isfile(path):
        return os.path.getsize(path)
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(dirpath, name))
            except OSError:
                pass  # removed meanwhile
    return total


def size_text(n):
    """Bytes for a message: 812 kB, 1.4 GB."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n / 1e3:.0f} kB"


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


_DIGESTS = {}  # {(device, inode, size, mtime, ctime): sha256}: each file hashed once, whatever it is compared with


def file_digest(path):
    """sha256_file(path), kept while the file is unchanged: a data file is read once a process for the copy check
    (data.shared_file), training_args.json and --eval_only's comparison with its run."""
    st = os.stat(path)
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = sha256_file(path)
    return _DIGESTS[key]


def read_best_record(folder):
    """A model folder's best_metrics.json (what a loop run recorded with best/) as a dict, or None when the folder
    or the file is missing or unreadable."""
    try:
        with open(os.path.join(folder, "best_metrics.json"), encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def replace_file(path, data):
    """Write `data` (bytes) to `path` through a temporary file and an atomic rename."""
    tmp = f"{path}.tmp-{os.getpid()}"
    if os.path.lexists(tmp):  # a crashed process's, or a link planted at this predictable name (unlink follows none)
        os.remove(tmp)
    try:
        # O_EXCL: created here, never opened through a link someone put in the folder
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666)
        with open(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    fsync_dir(os.path.dirname(os.path.abspath(path)))


def tmp_sibling(path):
    head, name = os.path.split(os.path.abspath(path))
    return os.path.join(head, f".tmp-{name}")


def write_json(path, obj, atomic=False):
    """`obj` as JSON in `path`; `atomic`: through a temporary file (a full disk leaves the old file or none, not an
    empty one: the finish record, which a re-run reads)."""
    if atomic:
        replace_file(path, json.dumps(obj, indent=2, default=str).encode("utf-8"))
        return
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, default=str)
        f.flush()
        os.fsync(f.fileno())


def _current_umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_current_umask()  # what open() gives a new file in this process


def fsync_tree(folder):
    """Flush every file under `folder` (and the folder itself) to disk, each with the mode a file
    written with open() gets: safetensors writes through a private temporary file (0600), which
    would leave the weights unreadable to the rest of a team sharing the output folder."""
    for dirpath, _, files in os.walk(folder):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                if os.fstat(fd).st_mode & 0o777 != _FILE_MODE:
                    try:
                        os.fchmod(fd, _FILE_MODE)
                    except OSError:  # not ours to change (a shared filesystem's rules): keep what it has
                        pass
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(dirpath)


def fsync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems cannot fsync a directory; the rename is still atomic
        pass
    finally:
        os.close(fd)


def publish(tmp, final):
    """Rename a finished `tmp` folder to `final`, replacing an existing one.

    A directory cannot be renamed over a non-empty one: on Linux the two are swapped in one step
    (renameat2's RENAME_EXCHANGE), so a reader always finds a whole `final`, then the old one (now at `tmp`)
    goes. Where that is not supported the old one is moved aside first; `recover` puts it back if we die
    between the two renames (until then `final` is missing: pipeline() and loop-predict fail on it).
    """
    fsync_tree(tmp)
    if os.path.isdir(final) and _exchange(tmp, final):
        fsync_dir(os.path.dirname(os.path.abspath(final)))
        remove_tree(tmp)  # the old one; a death here leaves it to recover()
        return
    old = final + ".old"
    if os.path.lexists(old):
        remove_tree(old, ignore_errors=False)
    if os.path.lexists(final):
        os.rename(final, old)
    try:
        os.rename(tmp, final)
    except BaseException:  # (an NFS error, say): the old one back now, not only at the next start (recover)
        if os.path.isdir(old) and not os.path.exists(final):
            os.rename(old, final)
        raise
    fsync_dir(os.path.dirname(os.path.abspath(final)))
    if os.path.lexists(old):
        remove_tree(old)


def remove_tree(path, ignore_errors=True):
    """Remove folder `path`; a symbolic link is unlinked, not followed (rmtree refuses links, and with
    ignore_errors left one behind without a word)."""
    if os.path.islink(path):
        try:
            os.unlink(path)
        except OSError:
            if not ignore_errors:
                raise
        return
    shutil.rmtree(path, ignore_errors=ignore_errors)


def _exchange(a, b):
    """Swap folders `a` and `b` atomically (Linux renameat2 with RENAME_EXCHANGE); False where the C library or
    the filesystem cannot (then nothing changed)."""
    import ctypes
    import errno

    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):  # not Linux, or a C library before glibc 2.28
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM, errno.EXDEV):
        return False  # a filesystem without the flag (some network ones), a sandbox that forbids the call
    raise OSError(code, os.strerror(code), b)


def recover(final):
    """Undo a half-finished `publish`: if `final` is gone but `final.old` exists, restore it."""
    old = final + ".old"
    if not os.path.exists(final) and os.path.isdir(old):
        os.rename(old, final)
    tmp = tmp_sibling(final)
    if os.path.lexists(tmp):
        remove_tree(tmp)
    head, name = os.path.split(tmp)
    if os.path.isdir(head):  # per-process temporaries (`.tmp-best-HOST-PID`); we hold the lock
        for other in os.listdir(head):
            if other.startswith(name + "-"):
                remove_tree(os.path.join(head, other))
