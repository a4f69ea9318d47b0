"""The files smtptop writes: the ``-w`` capture, the ``-o`` report, the failure log.

They hold what crossed the wire, AUTH secrets included, and smtptop may make them as root in a
folder other users can write to (``/tmp``).  So a file is always made anew, mode 0600, under a
name nobody else can have planted (``O_CREAT|O_EXCL|O_NOFOLLOW``: a temporary file beside the
target, renamed over it), and it belongs to the user who ran smtptop (the sudo caller), never
to the user it drops to.  An existing target is replaced only when it is a regular file of
that user's: renaming replaces the name, so a link planted between the check and the write is
replaced too, never written through.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import stat
import tempfile
from dataclasses import dataclass
from typing import TextIO

TEMP_PREFIX = ".smtptop-"


class OutputError(Exception):
    """An output cannot be made safely; the message is one line that says why."""


@dataclass(frozen=True, slots=True)
class Owner:
    """Who the files are for."""

    uid: int
    gid: int
    name: str


def invoking_user() -> Owner:
    """The sudo caller when root came through sudo, else whoever runs smtptop.  Read it
    before root is given up: afterwards smtptop runs as someone else."""
    if os.geteuid() == 0 and os.environ.get("SUDO_USER"):
        try:
            entry = pwd.getpwnam(os.environ["SUDO_USER"])
            return Owner(entry.pw_uid, entry.pw_gid, entry.pw_name)
        except KeyError:
            pass
    return Owner(os.geteuid(), os.getegid(), _name(os.geteuid()))


def _name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _check_replaceable(path: str, owner: Owner) -> None:
    """Refuse an existing ``path`` unless it is a regular file of ``owner``'s."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode):
        raise OutputError(f"{path} is a symbolic link: refusing to write through it")
    if not stat.S_ISREG(info.st_mode):
        raise OutputError(f"{path} exists and is not a regular file: refusing to replace it")
    if info.st_uid != owner.uid:
        raise OutputError(
            f"{path} belongs to {_name(info.st_uid)}, not {owner.name}: refusing to replace it"
        )


def _temporary(path: str, owner: Owner) -> tuple[int, str]:
    """A new 0600 file of ``owner``'s beside ``path`` (mkstemp: O_EXCL|O_NOFOLLOW)."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd, temporary = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=folder)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write in {folder} ({exc.strerror})") from None
    if os.geteuid() == 0:
        os.fchown(fd, owner.uid, owner.gid)
    return fd, temporary


def create(path: str, owner: Owner) -> int:
    """A new, empty file at ``path`` open for writing (a descriptor that stays usable after
    root is given up), for files written as they go such as ``-w``."""
    _check_replaceable(path, owner)
    fd, temporary = _temporary(path, owner)
    try:
        os.replace(temporary, path)
    except OSError as exc:
        os.close(fd)
        os.unlink(temporary)
        raise OutputError(f"{path}: cannot write ({exc.strerror})") from None
    return fd


def is_stream(path: str) -> bool:
    """Whether ``path`` is a stream to write into as it is: a pipe, /dev/null or smtptop's own
    stdout or stderr (``-o /dev/stdout``).  Only root's links are followed to find out, as
    the kernel's protected_symlinks would; a device is never written as root by name."""
    try:
        link = os.lstat(path)
        info = os.stat(path)
    except OSError:
        return False
    if stat.S_ISLNK(link.st_mode) and link.st_uid != 0:
        return False
    if stat.S_ISFIFO(info.st_mode) or stat.S_ISSOCK(info.st_mode):
        return True
    return any(os.path.samestat(info, mine) for mine in _streams())


def _streams() -> list[os.stat_result]:
    """/dev/null and smtptop's own stdout and stderr, wherever they lead."""
    found = [os.stat(os.devnull)]
    for fd in (1, 2):
        try:
            found.append(os.fstat(fd))
        except OSError:
            continue
    return found


class Report:
    """The ``-o`` file, made before the work starts (so that a report that cannot be written
    fails at once, not after a ten-minute capture) and completed at the end.

    The report goes to a temporary file renamed over the target at the end: all of it or
    none.  That rename is done by whoever smtptop runs as by then; when that is not the file's
    owner (root gave way to nobody), it could not rename the owner's file in a sticky folder
    such as /tmp, nor should the file become nobody's: ``made_now`` then makes the target
    itself at once, empty, and fills it at the end.  A stream (a pipe, ``/dev/stdout``) is
    opened now and written to as it is."""

    def __init__(self, path: str, owner: Owner, *, made_now: bool = False) -> None:
        self.path = path
        self._temporary: str | None = None
        self._text: TextIO | None = None
        if is_stream(path):
            try:
                self._fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_NOCTTY | os.O_CLOEXEC)
            except OSError as exc:
                raise OutputError(f"{path}: cannot write ({exc.strerror})") from None
        elif made_now:
            self._fd = create(path, owner)
        else:
            _check_replaceable(path, owner)
            self._fd, self._temporary = _temporary(path, owner)

    @property
    def text(self) -> TextIO:
        """The report's text stream, written as the report is made (UTF-8)."""
        if self._text is None:
            self._text = os.fdopen(self._fd, "w", encoding="utf-8", closefd=False)
        return self._text

    def commit(self, text: str = "") -> None:
        """Write ``text`` after what :attr:`text` was given, then put the report in place."""
        try:
            self.text.write(text)
            self.text.flush()
            if self._temporary is not None:
                os.replace(self._temporary, self.path)
                self._temporary = None
        finally:
            self.discard()

    def discard(self) -> None:
        """Close it; a report not renamed into place leaves the target as it was."""
        if self._text is not None:
            with contextlib.suppress(OSError):  # what did not reach the file is not wanted
                self._text.close()
            self._text = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._temporary is not None:
            os.unlink(self._temporary)
            self._temporary = None


def writable_problem(path: str, *, folder_only: bool = False) -> str | None:
    """Why the current user could not make or append to ``path`` (None when it could):
    checked with the effective ids, so that root can ask on behalf of the user it becomes."""
    check = os.path.abspath(path)
    if not folder_only and os.path.islink(check):
        return "would not write through the symbolic link there"
    if not folder_only and os.path.lexists(check):
        return None if os.access(check, os.W_OK, effective_ids=True) else "cannot write it"
    folder = os.path.dirname(check)
    while not os.path.isdir(folder):  # the missing folders will be made
        folder = os.path.dirname(folder)
    if not os.access(folder, os.W_OK | os.X_OK, effective_ids=True):
        return f"cannot write in {os.path.dirname(check)}"
    return None
