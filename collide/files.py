"""Every file collide reads and every place it writes, with one line for each thing that goes wrong.

Reading (what the user gave, exit 2): reads are bounded (a config that is `/dev/zero` or a 10 GB
file is refused after `limit` bytes, not read until memory runs out), text must be UTF-8, a
directory or a device is named as such.

Writing (docs/model.md §4.2): an output place is checked *before* the work (`check_output_file`,
`check_output_dir`: the folder exists or can be made, the name is not a folder, a test file can be
written and synced there), and written through a temporary name beside it that is renamed into place
at the end (`atomic_file`, `staging_dir`), so a failure or a kill leaves the old output or none, never
a partial one. Temporary names carry the writer's pid; the next run clears those whose writer is
gone (`clear_stale`). `OutputLock` is an `flock` beside the output: a second writer is refused with
one line, and the kernel drops the lock when its holder dies however it dies.

OS errors are sorted by whose they are (`os_error`): a full disk, a quota (exit 3) against a read-only,
forbidden or missing place (exit 2).
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import shutil
import stat
from pathlib import Path
from typing import Iterator

from .errors import InputError, Unavailable

__all__ = ["read_text", "read_bytes", "iter_line_chunks", "os_error", "check_output_file",
           "check_output_dir", "atomic_file", "staging_dir", "clear_stale", "OutputLock",
           "human_bytes", "MAX_TEXT"]

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


def os_error(exc: OSError, what: str, path, doing: str = "write") -> Exception:
    """The one-line error for an OSError on `path` (named by the user as `what`)."""
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return Unavailable(f"{what} {path}: no space left on the device; free some space or "
                           f"choose another place (nothing was written)")
    if exc.errno in _MACHINE:
        return Unavailable(f"{what} {path}: cannot {doing} ({reason})")
    return InputError(f"{what} {path}: cannot {doing} there ({reason})")


# -- reading ------------------------------------------------------------------------------------------
def _open_for_reading(path, what: str):
    p = Path(path)
    if str(path) == "":
        raise InputError(f"{what} '': an empty path; give a file")
    try:
        st = os.stat(p)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise InputError(f"{what} {path}: cannot read (no such file)") from None
        raise os_error(exc, what, path, "read") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"{what} {path}: is a directory, not a file")
    if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        raise InputError(f"{what} {path}: a device, not a file")
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
def _pseudo(path: Path) -> bool:
    try:
        resolved = str(path.resolve())
    except OSError:
        resolved = str(path.absolute())
    return any(resolved == p or resolved.startswith(p + "/") for p in PSEUDO)


def _probe(folder: Path, what: str, shown) -> None:
    """Write and sync a small file in `folder`: read-only, forbidden and full places show here."""
    probe = folder / f".collide-probe-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, b"\0" * 65536)
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
    if _pseudo(p):
        raise InputError(f"{what} {path}: a kernel pseudo-filesystem (/proc, /sys, /dev), not a "
                         "place for files")
    return p


def check_output_file(path, what: str = "--out") -> Path:
    """Check, before any work, that a file can be written at `path`; returns it as a Path."""
    p = _output_path(path, what, "a file name")
    if p.exists() or p.is_symlink():
        if p.is_dir():
            raise InputError(f"{what} {path}: is a directory; give a file name")
        if not p.is_file():
            raise InputError(f"{what} {path}: exists and is not a regular file")
        if not os.access(p, os.W_OK):
            raise InputError(f"{what} {path}: exists and cannot be written (permission denied)")
    parent = _parent_ready(p, what, path)
    clear_stale(p)
    _probe(parent, what, path)
    return p


def check_output_dir(path, what: str = "--out") -> Path:
    """Check, before any work, that a folder of results can be made or replaced at `path`."""
    p = _output_path(path, what, "a folder")
    if p.exists() and not p.is_dir():
        raise InputError(f"{what} {path}: exists and is not a directory")
    parent = _parent_ready(p, what, path)
    clear_stale(p)
    _probe(parent, what, path)
    if p.is_dir():
        _probe(p, what, path)
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


def clear_stale(path) -> int:
    """Remove temporary files and folders beside `path` left by a collide run that was killed."""
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    removed = 0
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return 0
    for e in entries:
        m = _TMP.match(e.name)
        if not m or m.group("name") != p.name or _alive(int(m.group("pid"))):
            continue
        with contextlib.suppress(OSError):
            if e.is_dir(follow_symlinks=False):
                shutil.rmtree(e.path)
            else:
                os.unlink(e.path)
            removed += 1
    return removed


@contextlib.contextmanager
def atomic_file(path, what: str = "--out", mode: str = "w"):
    """Yield a temporary path beside `path`; on success it replaces `path`, on any error it is
    removed (the old file, if any, is kept)."""
    p = Path(path)
    tmp = _tmp_name(p)
    try:
        yield tmp
        with contextlib.suppress(OSError):
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, p)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise os_error(exc, what, path) from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def staging_dir(path, what: str = "--out"):
    """Yield a temporary folder beside the folder `path`; on success its entries replace those of
    the same name in `path` (made if missing); on any error it is removed."""
    p = Path(path)
    tmp = _tmp_name(p)
    try:
        tmp.mkdir()
        yield tmp
        p.mkdir(parents=True, exist_ok=True)
        for item in tmp.iterdir():
            dest = p / item.name
            if dest.is_dir() and not dest.is_symlink():
                shutil.rmtree(dest)
            os.replace(item, dest)
    except OSError as exc:
        raise os_error(exc, what, path) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def make_temp_dir(near, label: str) -> Path:
    """A private temporary folder named after `near` (beside it), cleared by `clear_stale(near)`."""
    p = Path(near)
    tmp = p.with_name(f".{p.name}.collide-tmp-{os.getpid()}-{secrets.token_hex(4)}")
    tmp.mkdir(parents=True)
    return tmp


# -- one writer at a time -----------------------------------------------------------------------------
class OutputLock:
    """An exclusive `flock` on a lock file beside `path`; `Unavailable` (exit 3) while another
    process holds it. Released by `release()`, or by the kernel when the holder dies."""

    def __init__(self, path, what: str = "--out"):
        import fcntl
        self.path = Path(path)
        self.lock_path = self.path.with_name(f".{self.path.name}.lock")
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
