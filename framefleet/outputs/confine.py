"""The one rule for every path an output URL names, and where it may lead.

Every sink operation goes through ``place(url)`` (outputs.registry calls it first): the URL is
normalised without dropping anything silently (a raw ``#`` or ``?``, a NUL, an empty, ``.`` or
``..`` segment, a host on a file URL, text that is not UTF-8 once unquoted: refused), and, when
the agent confines this task (``confined(roots)``), it must lie under one of the roots by whole
segments. The local sink then opens the checked path beneath its root with ``open_dir``:
``openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`` where the kernel has it, else one component at
a time with ``O_NOFOLLOW``; it opens, renames and unlinks relative to that directory's fd, so
nothing can swap a symlink in between the check and the use.

The roots live in a context variable: the agent sets them for each job's task (and everything it
starts inherits them); the coordinator, which writes only URLs it built itself, sets none.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from urllib.parse import unquote, urlparse

from framefleet.core.errors import ErrorClass, FramefleetError

MAX_URL = 2048  # characters: far above any URL the coordinator builds

_ROOTS: ContextVar[tuple[str, ...]] = ContextVar("framefleet_output_roots", default=())


@dataclass(frozen=True)
class Place:
    """A checked output URL: for a file URL, the path's segments under ``root`` ("/" when
    unconfined); for another scheme, its (bucket, key) segments as given."""

    url: str
    scheme: str
    root: str
    parts: tuple[str, ...]
    confined: bool

    @property
    def name(self) -> str:
        return self.parts[-1]


def refuse(url: str, why: str) -> FramefleetError:
    return FramefleetError(ErrorClass.OUTPUT_ERROR, f"output URL {url[:200]!r} refused: {why}")


def segments(url: str) -> tuple[str, str, tuple[str, ...]]:
    """(scheme, authority, path segments) of ``url``, unquoted once, or OUTPUT_ERROR."""
    if len(url) > MAX_URL:
        raise refuse(url, f"longer than {MAX_URL} characters")
    if any(c in url for c in "#?\x00\\") or not url.isprintable():
        raise refuse(url, "no '#', '?', backslash or control characters")
    parsed = urlparse(url)
    if not parsed.scheme:
        raise refuse(url, "no scheme")
    try:
        path = unquote(parsed.path, errors="strict")
    except UnicodeDecodeError:
        raise refuse(url, "not UTF-8 once unquoted") from None
    if "\x00" in path or not path.isprintable():
        raise refuse(url, "no NUL or control characters")
    if not path.startswith("/"):
        raise refuse(url, "not an absolute path")
    parts = tuple(path[1:].split("/"))
    if any(part in ("", ".", "..") for part in parts):
        raise refuse(url, "no empty, '.' or '..' segments")
    return parsed.scheme, parsed.netloc, parts


@functools.lru_cache(maxsize=64)
def _root_parts(root: str) -> tuple[str, str, tuple[str, ...]]:
    """A configured root (the operator's, trusted) as a URL's segments; a trailing "/" is
    allowed, a local path becomes a file URL."""
    from framefleet.core.jobspec import destination_url

    scheme, authority, parts = segments(destination_url(root).rstrip("/") + "/x")
    return scheme, authority, parts[:-1]


def place(url: str) -> Place:
    """Normalises ``url`` and, when this task is confined, finds the root it lies under."""
    scheme, authority, parts = segments(url)
    if scheme == "file" and authority not in ("", "localhost"):
        raise refuse(url, "a file URL names no host")
    roots = _ROOTS.get()
    if not roots:
        return Place(url, scheme, "/" if scheme == "file" else authority, parts, False)
    for root in roots:
        root_scheme, root_authority, root_parts = _root_parts(root)
        n = len(root_parts)
        if (scheme, authority) == (root_scheme, root_authority) and parts[:n] == root_parts:
            if len(parts) == n:
                raise refuse(url, "names the output root itself")
            base = "/" + "/".join(root_parts) if scheme == "file" else authority
            return Place(url, scheme, base, parts[n:] if scheme == "file" else parts, True)
    # Which roots there are is the operator's business: the message does not say.
    raise refuse(url, "outside this agent's --output-root")


def within(url: str, roots: list[str]) -> bool:
    """Whether ``url`` passes ``place`` under ``roots``."""
    token = _ROOTS.set(tuple(roots))
    try:
        place(url)
    except FramefleetError:
        return False
    finally:
        _ROOTS.reset(token)
    return True


@contextlib.contextmanager
def confined(roots: list[str]) -> Iterator[None]:
    """Every output URL used inside (in this task and the tasks and threads it starts) must
    lie under ``roots``; empty: anywhere, still normalised."""
    token = _ROOTS.set(tuple(roots))
    try:
        yield
    finally:
        _ROOTS.reset(token)


def confine_task(roots: list[str]) -> None:
    """``confined`` for the rest of the current task (its context is its own)."""
    _ROOTS.set(tuple(roots))


# --- opening beneath a root -------------------------------------------------------------------

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_RESOLVE_NO_MAGICLINKS, _RESOLVE_NO_SYMLINKS, _RESOLVE_BENEATH = 0x02, 0x04, 0x08
_SYS_OPENAT2 = 437  # the same number on every Linux architecture (added in 5.6)


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def _load_syscall() -> Callable[..., int] | None:
    try:
        syscall: Callable[..., int] = ctypes.CDLL(None, use_errno=True).syscall
    except (OSError, AttributeError):
        return None
    return syscall


_syscall = _load_syscall()
_has_openat2 = _syscall is not None and os.uname().sysname == "Linux"


def _openat2(dir_fd: int, path: str, flags: int) -> int:
    """openat2 beneath ``dir_fd`` following no symlink; OSError as os.open would raise it,
    ENOSYS when the kernel lacks it."""
    how = _OpenHow(flags, 0, _RESOLVE_BENEATH | _RESOLVE_NO_SYMLINKS | _RESOLVE_NO_MAGICLINKS)
    assert _syscall is not None
    fd = int(
        _syscall(
            ctypes.c_long(_SYS_OPENAT2),
            ctypes.c_int(dir_fd),
            ctypes.c_char_p(os.fsencode(path)),
            ctypes.byref(how),
            ctypes.c_size_t(ctypes.sizeof(how)),
        )
    )
    if fd < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), path)
    return fd


def _open_beneath(dir_fd: int, parts: tuple[str, ...], create: bool) -> int:
    """A directory fd for ``parts`` beneath ``dir_fd``, no symlink followed; made when
    ``create``."""
    global _has_openat2
    if not parts:
        return os.dup(dir_fd)
    for _ in range(3 if _has_openat2 else 0):
        try:
            return _openat2(dir_fd, "/".join(parts), _DIR_FLAGS)
        except BlockingIOError:
            continue  # EAGAIN: a rename raced the lookup; the kernel asks to try again
        except OSError as e:
            if e.errno in (errno.ENOSYS, errno.EPERM):
                _has_openat2 = False  # an old kernel, or a seccomp filter: walk instead
            elif not (create and e.errno == errno.ENOENT):
                raise
            break  # walk: making what is missing, or without openat2
    fd = os.dup(dir_fd)
    try:
        for part in parts:
            try:
                step = os.open(part, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, dir_fd=fd)
                step = os.open(part, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = step
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_dir(where: Place, parts: tuple[str, ...], create: bool = False) -> int:
    """An fd of the directory ``parts`` (a prefix of ``where.parts``) under ``where.root``:
    beneath it and through no symlink when confined, as the file system says otherwise. The
    root itself is the operator's and may be reached through links (it is made if missing)."""
    if not where.confined:
        path = "/" + "/".join(parts)
        if create:
            os.makedirs(path, exist_ok=True)
        return os.open(path, _DIR_FLAGS)
    if create:
        os.makedirs(where.root, exist_ok=True)
    root = os.open(where.root, _DIR_FLAGS)
    try:
        return _open_beneath(root, parts, create)
    finally:
        os.close(root)


@contextlib.contextmanager
def parent(where: Place, create: bool = False) -> Iterator[int]:
    """The fd of the directory holding ``where`` (closed after)."""
    fd = open_dir(where, where.parts[:-1], create)
    try:
        yield fd
    finally:
        os.close(fd)
