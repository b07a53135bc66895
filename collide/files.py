"""Every file collide reads and every place it writes, with one line for each thing that goes wrong.

Reading (what the user gave, exit 2): reads are bounded (a config that is `/dev/zero` or a 10 GB
file is refused after `limit` bytes, not read until memory runs out), text must be UTF-8, a
directory, a device or a pipe is named as such (a FIFO would block).

Writing (docs/model.md §4.2), one rule for every output place:

- checked *before* the work (`check_output_file`, `OutputDir`): the folder exists or can be made,
  the name is not a folder, a test write of what the output needs succeeds there; a non-empty
  output is refused unless the command's --overwrite;
- names are resolved (`resolved`): two names for one file are one file, for the lock
  (`OutputLock`, an flock on `<resolved folder>/.<name>.lock`) and for the refusals; a symbolic
  link is never written through (a whole-file writer replaces the link itself);
- a whole file is written beside its place and renamed into it (`atomic_file`, `write_file`); a
  folder of files (`OutputDir`: report, scan, intake) is staged *inside* the folder, so a mount
  point cannot give EXDEV, its files renamed in one by one, only those replaced, listed with their
  SHA-256 in a manifest;
- temporary names carry the writer's pid; the next run clears those whose writer is gone
  (`clear_stale`, `clear_stale_temp`), and temporary folders in TMPDIR (`temp_dir`) go with their
  block.

OS errors are sorted by whose they are (`os_error`): a full disk, a quota, a file too large (exit 3)
against a read-only, forbidden or missing place (exit 2).

For a command that writes a folder of files (intake, for example):

    place = OutputDir(out, "--out", overwrite=overwrite, writer="collide intake")  # before work
    try:
        ...the work...
        with place.writing() as tmp:          # write the files into tmp; renamed in at the end
            (tmp / "scenario.toml").write_text(text)
    finally:
        place.close(ok=False)                 # releases the lock; removes a folder it made empty
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
import shutil
import stat
from pathlib import Path
from typing import Iterator

from .errors import InputError, Unavailable

__all__ = ["read_text", "read_bytes", "iter_line_chunks", "os_error", "check_output_file",
           "check_output_dir", "atomic_file", "write_file", "staging_dir", "clear_stale",
           "OutputLock", "OutputDir", "resolved", "temp_dir", "temp_base", "clear_stale_temp",
           "special_kind", "human_bytes", "MAX_TEXT"]

#: Scenario and sweep files are a few kilobytes; a megabyte of TOML is already a mistake.
MAX_TEXT = 16 * 2 ** 20
#: Kernel pseudo-filesystems: never a place for results.
PSEUDO = ("/proc", "/sys", "/dev")
_MACHINE = {errno.ENOSPC, errno.EDQUOT, errno.ENOMEM, errno.EMFILE, errno.ENFILE}


def human_bytes(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} PiB"


def os_error(exc: OSError, what: str, path, doing: str = "write", kept: str | None = None) -> Exception:
    """The one-line error for an OSError on `path` (named by the user as `what`). `kept` says what
    is already there and stays (a sweep's finished rows); by default nothing was written."""
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        why = "no space left on the device" if exc.errno != errno.EFBIG else \
            "the file has reached the largest size allowed here"
        return Unavailable(f"{what} {path}: {why}; free some space or choose another place "
                           f"({kept or 'nothing was written'})")
    if exc.errno in _MACHINE:
        return Unavailable(f"{what} {path}: cannot {doing} ({reason})")
    return InputError(f"{what} {path}: cannot {doing} there ({reason})")


def special_kind(mode: int) -> str | None:
    """What a file that is not a regular file or a folder is, in words (None for those two)."""
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return None


def cwd_exists() -> bool:
    try:
        os.getcwd()
        return True
    except OSError:
        return False


def no_cwd(what: str, path) -> str:
    return (f"{what} {path}: a relative path, and the current folder no longer exists (deleted?); "
            "cd to a folder that exists, or give an absolute path")


# -- reading ------------------------------------------------------------------------------------------
def _open_for_reading(path, what: str):
    p = Path(path)
    if str(path) == "":
        raise InputError(f"{what} '': an empty path; give a file")
    try:
        st = os.stat(p)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            if not p.is_absolute() and not cwd_exists():
                raise InputError(no_cwd(what, path)) from None
            raise InputError(f"{what} {path}: cannot read (no such file)") from None
        raise os_error(exc, what, path, "read") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"{what} {path}: is a directory, not a file")
    kind = special_kind(st.st_mode)
    if kind is not None:
        raise InputError(f"{what} {path}: {kind}, not a file" + (
            "; save it to a file first" if "pipe" in kind or "socket" in kind else ""))
    try:
        return open(p, "rb"), st
    except OSError as exc:
        raise os_error(exc, what, path, "read") from None


def read_bytes(path, what: str, limit: int = MAX_TEXT, expected: str = "") -> bytes:
    """At most `limit` bytes of a file, or InputError naming the size (works on /dev/zero)."""
    fh, _ = _open_for_reading(path, what)
    with fh:
        try:
            data = fh.read(limit + 1)
        except OSError as exc:
            raise os_error(exc, what, path, "read") from None
    if len(data) > limit:
        raise InputError(f"{what} {path}: larger than {human_bytes(limit)}"
                         + (f"; {expected}" if expected else "") + " (is it the right file?)")
    return data


def _decode(data: bytes, what: str, path, first_line: int = 1) -> str:
    if b"\x00" in data[:65536]:
        raise InputError(f"{what} {path}: a binary file, not text (is it the right file?)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + first_line
        raise InputError(f"{what} {path}: not UTF-8 text (byte 0x{data[exc.start]:02x} on line "
                         f"{line}); save it as UTF-8") from None


def read_text(path, what: str, limit: int = MAX_TEXT, expected: str = "") -> str:
    """A whole UTF-8 text file of at most `limit` bytes; one-line InputError otherwise."""
    text = _decode(read_bytes(path, what, limit, expected), what, path)
    return text[1:] if text.startswith("\ufeff") else text


def read_toml(path, what: str, expected: str, nested: str = "") -> dict:
    """A TOML file (scenario, sweep) as a dict; one-line InputError naming `what` and the path for
    any file, encoding or syntax problem, and for nesting deep enough to exhaust the parser."""
    import tomllib
    text = read_text(path, what, expected=expected)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{what} {path}: not valid TOML ({exc})") from None
    except RecursionError:
        raise InputError(f"{what} {path}: nested too deeply (a value inside thousands of "
                         f"brackets){nested}") from None


def iter_line_chunks(path, what: str, limit: int, max_line: int = 1 << 20,
                     chunk: int = 1 << 22, progress=None) -> Iterator[tuple[int, list[str]]]:
    """Stream a text file as (first line number, [lines]) chunks: constant memory beyond the
    caller's own, at most `limit` bytes, no line longer than `max_line`; `progress(bytes_read,
    size or None)` after each chunk."""
    fh, st = _open_for_reading(path, what)
    size = st.st_size if stat.S_ISREG(st.st_mode) else None
    if size is not None and size > limit:
        fh.close()
        raise InputError(f"{what} {path}: {human_bytes(size)}, more than the {human_bytes(limit)} "
                         "allowed")
    with fh:
        carry = b""
        lineno = 1
        total = 0
        while True:
            try:
                block = fh.read(chunk)
            except OSError as exc:
                raise os_error(exc, what, path, "read") from None
            total += len(block)
            if total > limit:
                raise InputError(f"{what} {path}: more than {human_bytes(limit)} (is it the right "
                                 "file?)")
            data = carry + block
            if block:
                cut = data.rfind(b"\n") + 1
                data, carry = data[:cut], data[cut:]
                if len(carry) > max_line:
                    where = lineno + data.count(b"\n")
                    raise InputError(f"{what} {path}, line {where}: longer than "
                                     f"{human_bytes(max_line)} (is it the right file?)")
            else:
                carry = b""
            if data:
                if lineno == 1 and data.startswith(b"\xef\xbb\xbf"):
                    data = data[3:]
                text = _decode(data, what, path, lineno)
                lines = text.splitlines()
                yield lineno, lines
                lineno += len(lines)
            if progress is not None:
                progress(total, size)
            if not block:
                return


# -- output places ------------------------------------------------------------------------------------
#: Bytes a check writes and syncs in the output's folder: a nearly full disk shows here, not after
#: the work. Commands that know their output's size ask for that much.
PROBE_BYTES = 65536


def _pseudo(path: Path) -> bool:
    """Under /proc, /sys or /dev (a kernel pseudo-filesystem); /dev/shm is a real tmpfs."""
    try:
        resolved = os.path.realpath(path)
    except OSError:
        resolved = str(path)
    if resolved == "/dev/shm" or resolved.startswith("/dev/shm/"):
        return False
    return any(resolved == p or resolved.startswith(p + "/") for p in PSEUDO)


def _write_all(fd: int, data: bytes) -> None:
    """os.write until every byte is written: a short write on a nearly full disk is not success."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        if n <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[n:]


def _probe(folder: Path, what: str, shown, need: int = PROBE_BYTES) -> None:
    """Write and sync `need` bytes in `folder`: read-only, forbidden and full places show here."""
    try:
        st = os.statvfs(folder)
        if st.f_bavail * st.f_frsize < need:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise os_error(exc, what, shown) from None
    probe = folder / f".collide-probe-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            block = b"\0" * min(need, 1 << 20)
            left = need
            while left > 0:
                _write_all(fd, block[:left])
                left -= len(block)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise os_error(exc, what, shown) from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(probe)


def _parent_ready(path: Path, what: str, shown) -> Path:
    parent = path.parent if str(path.parent) else Path(".")
    if parent.exists():
        if not parent.is_dir():
            raise InputError(f"{what} {shown}: {parent} is a file, not a folder")
        return parent
    # the nearest folder that exists must let us make the rest
    anc = parent
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    if not anc.is_dir():
        raise InputError(f"{what} {shown}: {anc} is a file, not a folder")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise os_error(exc, what, shown, "make the folder") from None
    return parent


def _output_path(path, what: str, give: str) -> Path:
    """An output place that is neither empty nor under a kernel pseudo-filesystem, as a Path."""
    if str(path) == "":
        raise InputError(f"{what} '': an empty path; give {give}")
    p = Path(path)
    if not p.is_absolute() and not cwd_exists():
        raise InputError(no_cwd(what, path))
    if _pseudo(p):
        raise InputError(f"{what} {path}: a kernel pseudo-filesystem (/proc, /sys, /dev), not a "
                         "place for files")
    return p


def resolved(path) -> Path:
    """The path a name stands for: its folder with every link resolved, its own name kept (a link
    itself is not followed). Two names for one file give one path; locks and refusals use it."""
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    return Path(os.path.realpath(parent)) / p.name


def _link_target(p: Path) -> str:
    try:
        return os.readlink(p)
    except OSError:
        return "?"


def check_output_file(path, what: str = "--out", overwrite: bool | None = None,
                      append: bool = False, refusal: str | None = None,
                      need: int = PROBE_BYTES) -> Path:
    """Check, before any work, that a file can be written at `path`; returns its resolved path.

    `overwrite=False`: a non-empty file there is refused (exit 2) with `refusal` (default: give
    --overwrite); None leaves that to the caller (the Python API replaces). A symbolic link is
    never written through: an `append` writer refuses it, a whole-file writer replaces the link
    itself (`atomic_file`), which counts as replacing a file."""
    p = _output_path(path, what, "a file name")
    r = resolved(p)
    if os.path.islink(r):
        if append:
            raise InputError(f"{what} {path}: a symbolic link (to {_link_target(r)}); collide does "
                             "not write through links: give the file's own path, or another name")
        if overwrite is False:
            raise InputError(refusal or f"{what} {path}: exists (a symbolic link to "
                             f"{_link_target(r)}); give --overwrite to replace the link with the "
                             "new file, or another name (nothing was run)")
    elif r.exists():
        if r.is_dir():
            raise InputError(f"{what} {path}: is a directory; give a file name")
        if not r.is_file():
            raise InputError(f"{what} {path}: exists and is not a regular file")
        if not os.access(r, os.W_OK):
            raise InputError(f"{what} {path}: exists and cannot be written (permission denied)")
        if overwrite is False and not append and r.stat().st_size > 0:
            raise InputError(refusal or f"{what} {path}: exists; give --overwrite to replace it, "
                             "or another name (nothing was run)")
    parent = _parent_ready(r, what, path)
    clear_stale(r)
    _probe(parent, what, path, need)
    return r


def check_output_dir(path, what: str = "--out", need: int = PROBE_BYTES) -> Path:
    """Check, before any work, that a folder of results can be made or filled at `path` (the
    lab's logs; reports and scans use `OutputDir`, which also locks and stages)."""
    p = _output_path(path, what, "a folder")
    if p.exists() and not p.is_dir():
        raise InputError(f"{what} {path}: exists and is not a directory")
    parent = _parent_ready(p, what, path)
    _probe(parent, what, path, need)
    if p.is_dir():
        _probe(p, what, path, need)
    return p


# -- temporary names beside the output ------------------------------------------------------------------
_TMP = re.compile(r"^\.(?P<name>.+)\.collide-tmp-(?P<pid>\d+)-[0-9a-f]+$")


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.collide-tmp-{os.getpid()}-{secrets.token_hex(4)}")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(path: str) -> bool:
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)
        return True
    except OSError:
        return False


def _entries(folder) -> list:
    """A folder's entries, or none when it cannot be listed."""
    try:
        return list(os.scandir(folder))
    except OSError:
        return []


def _stale_lock(path: str) -> bool:
    """A lock file nobody holds (its holder was killed): remove it."""
    import fcntl
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return False
    try:
        os.unlink(path)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def clear_stale(path) -> int:
    """Remove temporary files and folders beside `path`, and its lock file, left by a collide run
    that was killed (their writer's pid is gone; a lock nobody holds)."""
    p = Path(path)
    removed = 0
    for e in _entries(p.parent if str(p.parent) else Path(".")):
        if e.name == f".{p.name}.lock":
            removed += _stale_lock(e.path)
            continue
        m = _TMP.match(e.name)
        if not m or m.group("name") != p.name or _alive(int(m.group("pid"))):
            continue
        removed += _remove(e.path)
    return removed


def _fsync_path(path, directory: bool = False) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_file(path, what: str = "--out", mode: str = "w"):
    """Yield a temporary path beside `path`; on success it replaces `path` (a symbolic link there
    is replaced itself, never written through), on any error it is removed (the old file, if
    any, is kept)."""
    p = Path(path)
    tmp = _tmp_name(p)
    try:
        yield tmp
        _fsync_path(tmp)
        os.replace(tmp, p)
        _fsync_path(p.parent if str(p.parent) else ".", directory=True)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise os_error(exc, what, path) from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_file(path, data: bytes | str, what: str = "--out") -> None:
    """Write a whole file beside `path` and rename it into place (see `atomic_file`)."""
    blob = data.encode("utf-8") if isinstance(data, str) else data
    with atomic_file(path, what) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            _write_all(fd, blob)
        finally:
            os.close(fd)


@contextlib.contextmanager
def staging_dir(path, what: str = "--out"):
    """Yield a temporary folder inside the folder `path` (made if missing); on success its files
    are renamed into `path`, one by one, replacing files of the same name and nothing else; on any
    error it is removed. Inside, not beside: a mount point cannot be crossed (EXDEV)."""
    with OutputDir(path, what, overwrite=True) as place:
        with place.writing() as tmp:
            yield tmp


def make_temp_dir(near, label: str) -> Path:
    """A private temporary folder named after `near` (beside it), cleared by `clear_stale(near)`."""
    p = Path(near)
    tmp = p.with_name(f".{p.name}.collide-tmp-{os.getpid()}-{secrets.token_hex(4)}")
    tmp.mkdir(parents=True)
    return tmp


# -- temporary folders in TMPDIR -------------------------------------------------------------------------
_TEMP = re.compile(r"^collide-(?P<label>[a-z-]+)-(?P<pid>\d+)-[0-9a-f]{8}$")


def temp_base() -> str:
    """The folder for temporary files: TMPDIR when set (it must be usable), else the system's;
    Unavailable (exit 3) when there is none."""
    import tempfile
    given = os.environ.get("TMPDIR")
    if given:
        if not (os.path.isdir(given) and os.access(given, os.W_OK | os.X_OK)):
            raise Unavailable(f"TMPDIR={given}: not a folder this process can write; set TMPDIR "
                              "to one (or unset it)")
        return given
    try:
        return tempfile.gettempdir()
    except (OSError, FileNotFoundError):
        raise Unavailable("no usable temporary folder (/tmp, /var/tmp, the current folder); set "
                          "TMPDIR to a folder this process can write") from None


def clear_stale_temp(base: str | None = None) -> int:
    """Remove collide's temporary folders in TMPDIR whose process is gone (a kill -9)."""
    base = base or temp_base()
    removed = 0
    for e in _entries(base):
        m = _TEMP.match(e.name)
        if m and not _alive(int(m.group("pid"))):
            removed += _remove(e.path)
    return removed


@contextlib.contextmanager
def temp_dir(label: str):
    """A private folder in TMPDIR for the life of the block, named after this process so that the
    next run clears it if this one is killed (`clear_stale_temp`)."""
    base = temp_base()
    clear_stale_temp(base)
    d = Path(base) / f"collide-{label}-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        d.mkdir(mode=0o700)
    except OSError as exc:
        raise os_error(exc, "TMPDIR", base, "make a temporary folder") from None
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


# -- one writer at a time -----------------------------------------------------------------------------
class OutputLock:
    """An exclusive `flock` on `<resolved folder>/.<name>.lock` (or on `lock_path`); `Unavailable`
    (exit 3) while another process holds it. Two names for one file (a link, a linked folder)
    take one lock. Released by `release()`, or by the kernel when the holder dies; the file it
    leaves then is removed by the next run (`clear_stale`)."""

    def __init__(self, path, what: str = "--out", lock_path=None):
        import fcntl
        self.fd = None
        self.path = Path(path)
        if lock_path is None:
            r = resolved(self.path)
            lock_path = r.with_name(f".{r.name}.lock")
        self.lock_path = Path(lock_path)
        while True:
            try:
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise os_error(exc, what, path) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                try:
                    holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
                except OSError:
                    holder = ""
                os.close(fd)
                raise Unavailable(f"{what} {path}: another collide run is writing it"
                                  + (f" (pid {holder})" if holder.isdigit() else "")
                                  + "; wait for it to finish, or choose another " + what) from None
            # the holder may have removed the file between our open and our lock: lock the one
            # that is there now
            try:
                same = os.fstat(fd).st_ino == os.stat(self.lock_path).st_ino
            except OSError:
                same = False
            if same:
                break
            os.close(fd)
        self.fd = fd
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.lock_path)
        os.close(self.fd)
        self.fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


# -- a folder of results -------------------------------------------------------------------------------
#: Inside an output folder: the list of the files collide wrote there (with their SHA-256), the
#: lock, and the staging folders of runs under way.
MANIFEST = ".collide-manifest.json"
LOCK_NAME = ".collide.lock"
_STAGING = re.compile(r"^\.collide-staging-(?P<pid>\d+)-[0-9a-f]{8}$")
_PROBE = re.compile(r"^\.collide-probe-(?P<pid>\d+)-[0-9a-f]{8}$")


def _sha256(path: Path) -> str:
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class OutputDir:
    """A folder that a command fills with files (`collide report --out DIR`, `collide scan
    --out DIR`, intake), held from its check before the work to the end:

        place = OutputDir(out, "--out", overwrite=overwrite)     # checks, locks (exit 2 / 3)
        ...the work...
        with place.writing() as tmp:                             # a staging folder inside DIR
            (tmp / "index.html").write_text(...)                 # moved in when the block ends
        place.close()                                            # or `with OutputDir(...)`

    - A folder that is not empty is refused (exit 2) unless `overwrite`; then only the files the
      command writes are replaced, each renamed into place, and nothing else is touched. A file
      that an earlier run listed in the manifest, that this run does not write and that is still
      byte for byte what it wrote (its SHA-256) is removed, so no stale file stays beside the new
      ones; a file the user changed is kept.
    - The manifest (`.collide-manifest.json`) lists what was written, and is written last.
    - Staging happens inside the folder (a mount point, a Docker volume: no EXDEV); a kill leaves
      a staging folder that the next run clears. A symbolic link as DIR is refused (collide does
      not write through links). The lock is an flock on `DIR/.collide.lock`.
    - On an error or Ctrl-C nothing is moved in, and a folder the check made is removed again.
    """

    def __init__(self, path, what: str = "--out", overwrite: bool = False,
                 writer: str = "collide", need: int = PROBE_BYTES, names: tuple = ()):
        self.what, self.shown, self.writer = what, path, writer
        self.lock = None
        self.made = False
        p = _output_path(path, what, "a folder")
        if os.path.islink(p):
            raise InputError(f"{what} {path}: a symbolic link (to {_link_target(p)}); collide does "
                             "not write through links: give the folder's own path")
        self.path = Path(os.path.realpath(p))
        if self.path.exists() and not self.path.is_dir():
            raise InputError(f"{what} {path}: exists and is not a directory")
        if not self.path.exists():
            _parent_ready(self.path, what, path)
            try:
                self.path.mkdir()
                self.made = True
            except FileExistsError:
                pass
            except OSError as exc:
                raise os_error(exc, what, path, "make the folder") from None
        try:
            self.lock = OutputLock(self.path, what, lock_path=self.path / LOCK_NAME)
            self._clear_stale()
            entries = sorted(e for e in os.listdir(self.path) if e != LOCK_NAME)
            if entries and not overwrite:
                shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
                raise InputError(f"{what} {path}: a folder that is not empty ({len(entries)} "
                                 f"entries: {shown}); give --overwrite to replace {writer}'s files "
                                 "in it (nothing else is touched), or an empty or new folder "
                                 "(nothing was run)")
            for name in names:           # a folder where a file goes: refused now, not after the work
                q = self.path / name
                if q.is_dir() and not q.is_symlink() and "." in name:
                    raise InputError(f"{what} {path}: {name} is a folder; {writer} writes a file "
                                     "there (move it away, or choose another folder)")
                if name == "figures" and q.exists() and not q.is_dir():
                    raise InputError(f"{what} {path}: {name} is a file; {writer} writes a folder "
                                     "there (move it away, or choose another folder)")
            _probe(self.path, what, path, need)
        except BaseException:
            self.close(ok=False)
            raise

    def _clear_stale(self) -> None:
        for e in _entries(self.path):
            m = _STAGING.match(e.name) or _PROBE.match(e.name)
            if m and not _alive(int(m.group("pid"))):
                _remove(e.path)

    def _old_manifest(self) -> dict:
        try:
            data = json.loads((self.path / MANIFEST).read_text("utf-8"))
            files = data.get("files", {})
            return files if isinstance(files, dict) else {}
        except (OSError, ValueError, AttributeError):
            return {}

    @contextlib.contextmanager
    def writing(self):
        """A staging folder inside DIR; when the block ends its files are moved into DIR."""
        tmp = self.path / f".collide-staging-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            try:
                tmp.mkdir()
            except OSError as exc:
                raise os_error(exc, self.what, self.shown) from None
            try:
                yield tmp
                self._commit(tmp)
            except OSError as exc:
                raise os_error(exc, self.what, self.shown) from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _commit(self, tmp: Path) -> None:
        files = sorted(str(q.relative_to(tmp)) for q in tmp.rglob("*")
                       if q.is_file() or q.is_symlink())
        for rel in files:                # nothing moves unless everything can
            dest = self.path / rel
            if dest.is_dir() and not dest.is_symlink():
                raise InputError(f"{self.what} {self.shown}: {rel} is a folder; {self.writer} "
                                 "writes a file there (move it away, or choose another folder)")
            for parent in Path(rel).parents:
                q = self.path / parent
                if str(parent) != "." and q.exists() and not q.is_dir():
                    raise InputError(f"{self.what} {self.shown}: {parent} is a file; "
                                     f"{self.writer} writes a folder there")
        listed = {rel: _sha256(tmp / rel) for rel in files}
        old = self._old_manifest()
        for rel in files:
            _fsync_path(tmp / rel)
        for rel in files:
            dest = self.path / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp / rel, dest)
        for rel, digest in old.items():   # our own earlier files that this run does not write
            q = self.path / rel
            if (rel in listed or not isinstance(digest, str) or ".." in Path(rel).parts
                    or Path(rel).is_absolute()):
                continue
            with contextlib.suppress(OSError):
                if q.is_file() and not q.is_symlink() and _sha256(q) == digest:
                    q.unlink()
        manifest = {"written_by": self.writer, "files": listed}
        write_file(self.path / MANIFEST, json.dumps(manifest, indent=1) + "\n", self.what)
        _fsync_path(self.path, directory=True)

    def close(self, ok: bool = True) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None
        if not ok and self.made:         # a folder made for a run that wrote nothing goes again
            with contextlib.suppress(OSError):
                self.path.rmdir()
            self.made = False

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        self.close(ok=kind is None)
