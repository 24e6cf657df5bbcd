"""Replacing a file with a new version of it only when nobody else's data can be lost.

ExifTool writes the tagged copy to a scratch file of ours (hidden, short, in the same folder);
``replace_if_unchanged`` then renames it over the original, but only after checking, immediately
before the rename, that the original is still the very file that was analysed (same device,
inode, size and mtime) and that no process has it open for writing (a read lease, held through
the rename; a look in /proc where no lease can be had). Otherwise nothing is replaced: the scratch
file is removed and the original stays exactly as it is.

The scratch name depends only on the target's name, so a copy left by a killed write is found
(and removed, being ours) the next time that file is written. Nothing else is ever deleted.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import logging
import os
import signal
import stat
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

SCRATCH_PREFIX = ".pixelperfect-"
_ACCESS_MODE = os.O_ACCMODE


class ReplaceRefused(Exception):
    """The original changed, vanished or is being written: it was left as it is."""


@dataclass(frozen=True)
class FileIdentity:
    """What makes "the same file, unchanged": where it lives on disk, its size and mtime."""

    device: int
    inode: int
    size: int
    mtime_ns: int

    @classmethod
    def from_stat(cls, st: os.stat_result) -> FileIdentity:
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)

    @classmethod
    def of(cls, path: Path) -> FileIdentity:
        return cls.from_stat(os.lstat(path))


def scratch_path_for(target: Path) -> Path:
    """Our scratch file for a new version of ``target``: same folder, hidden, a short name (so a
    255-byte name can still be written). No extension, so ExifTool keeps the source's file type,
    except ``.xmp``, from which it creates a new sidecar."""
    digest = hashlib.sha256(os.fsencode(target.name)).hexdigest()[:20]
    extension = ".xmp" if target.suffix.lower() == ".xmp" else ""
    return target.with_name(f"{SCRATCH_PREFIX}{digest}{extension}")


def is_scratch_name(name: str) -> bool:
    return name.startswith(SCRATCH_PREFIX)


def processes_writing(path: Path, identity: FileIdentity | None = None) -> list[int]:
    """Ids of the processes (that this user may see) holding ``path`` open for writing."""
    if identity is None:
        try:
            identity = FileIdentity.of(path)
        except FileNotFoundError:
            return []
    return writers_of([identity]).get((identity.device, identity.inode), [])


def writers_of(identities) -> dict[tuple[int, int], list[int]]:
    """{(device, inode): ids of the processes holding it open for writing} for those of ``identities``
    that some process (that this user may see) has open for writing; one pass over ``/proc/*/fd``.

    A process of another user is invisible unless we run as root.
    """
    wanted = {(identity.device, identity.inode) for identity in identities}
    writers: dict[tuple[int, int], list[int]] = {}
    if not wanted:
        return writers
    try:
        pids = [entry.name for entry in os.scandir("/proc") if entry.name.isdigit()]
    except FileNotFoundError:
        return writers  # no procfs: the size/mtime checks are all there is
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue  # ended, or not ours to look at
        for fd in fds:
            try:
                st = os.stat(f"/proc/{pid}/fd/{fd}")
                key = (st.st_dev, st.st_ino)
                if key not in wanted or int(pid) in writers.get(key, ()):
                    continue
                with open(f"/proc/{pid}/fdinfo/{fd}") as info:
                    flags = next(int(line.split()[1], 8) for line in info if line.startswith("flags:"))
            except (OSError, StopIteration, ValueError):
                continue
            if flags & _ACCESS_MODE in (os.O_WRONLY, os.O_RDWR):
                writers.setdefault(key, []).append(int(pid))
    return writers


def check_unchanged(path: Path, expected: FileIdentity, *, writers: bool = True) -> os.stat_result:
    """``path`` as it is now; ReplaceRefused unless it is ``expected`` and (``writers``) nobody is writing it."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise ReplaceRefused(f"{path} vanished") from None
    if not stat.S_ISREG(st.st_mode):
        raise ReplaceRefused(f"{path} is no longer a regular file")
    now = FileIdentity.from_stat(st)
    if now != expected:
        what = (
            "replaced by another file"
            if (now.device, now.inode) != (expected.device, expected.inode)
            else ("changed since it was analysed")
        )
        raise ReplaceRefused(f"{path} was {what}")
    found = processes_writing(path, now) if writers else []
    if found:
        raise ReplaceRefused(f"{path} is open for writing by process {', '.join(map(str, found))}")
    return st


def _fsync(path: Path, flags: int = os.O_RDONLY) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy_ownership(st: os.stat_result, new_version: Path) -> None:
    os.chmod(new_version, stat.S_IMODE(st.st_mode))
    new = os.lstat(new_version)
    if (new.st_uid, new.st_gid) != (st.st_uid, st.st_gid):
        try:
            os.chown(new_version, st.st_uid, st.st_gid)
        except PermissionError:
            # Only root may give a file away: the replaced file is then owned by the daemon's user.
            logger.debug("cannot keep the owner of %s (uid %d, gid %d)", new_version, st.st_uid, st.st_gid)


def replace_if_unchanged(original: Path, new_version: Path, expected: FileIdentity) -> None:
    """Rename ``new_version`` over ``original`` if it is still ``expected`` and nobody writes it.

    On ReplaceRefused ``new_version`` is removed and ``original`` is untouched. The file keeps its
    permission bits and, where allowed, its owner.
    """
    try:
        st = check_unchanged(original, expected, writers=False)
        _copy_ownership(st, new_version)
        _fsync(new_version)
        with held_unwritten(original, expected):  # all of it right before the rename: the fsync took time
            os.rename(new_version, original)
    except BaseException:
        remove_scratch(new_version)
        raise
    _fsync(original.parent, os.O_RDONLY | os.O_DIRECTORY)


@contextmanager
def held_unwritten(path: Path, expected: FileIdentity):
    """While this holds, ``path`` is ``expected`` and no process has it open for writing.

    A read lease (``F_SETLEASE``) is granted only while no process of any user has the file open
    for writing, and one that opens it for writing meanwhile waits until the lease is released.
    Where no lease can be had (another user's file, a network share), ``check_unchanged`` looks for
    writers in /proc instead, which sees only this user's processes unless we run as root.
    """
    try:
        # O_NONBLOCK: a file another process holds a lease on (Samba's oplocks) fails at once.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as error:
        check_unchanged(path, expected)  # vanished, replaced by a symlink: it says which
        raise ReplaceRefused(f"{path} could not be opened to check it: {error.strerror}") from None
    try:
        leased = _take_read_lease(fd, path)
        check_unchanged(path, expected, writers=not leased)  # the name leads to the file expected
        if leased and FileIdentity.from_stat(os.fstat(fd)) != expected:
            raise ReplaceRefused(f"{path} changed since it was analysed")  # and so does the file leased
        yield
    finally:
        os.close(fd)  # ends the lease


def _take_read_lease(fd: int, path: Path) -> bool:
    """Take a read lease on ``fd`` (``path``): True, or False where leases are not possible here.

    ReplaceRefused when a process has the file open for writing (the kernel's refusal)."""
    try:
        # A broken lease is reported by a signal: one whose default action is to do nothing.
        fcntl.fcntl(fd, fcntl.F_SETSIG, signal.SIGURG)
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
    except BlockingIOError:
        raise ReplaceRefused(f"{path} is open for writing") from None
    except OSError as error:
        if error.errno in (errno.EACCES, errno.EPERM, errno.EINVAL, errno.ENOSYS, errno.ENOLCK):
            return False  # not our file (no CAP_LEASE), or no leases on this file system
        raise
    return True


def place_new_file(new_version: Path, target: Path) -> None:
    """Give ``new_version`` the name ``target`` only if nothing has that name (a new sidecar)."""
    try:
        _fsync(new_version)
        try:
            os.link(new_version, target)  # fails if the name exists, so a user's file is never replaced
        except FileExistsError:
            raise ReplaceRefused(f"{target} appeared while it was being written") from None
        except OSError:  # no hard links here (FAT, some shares): a plain rename, if the name is still free
            if os.path.lexists(target):
                raise ReplaceRefused(f"{target} appeared while it was being written") from None
            os.rename(new_version, target)
    finally:
        remove_scratch(new_version)
    _fsync(target.parent, os.O_RDONLY | os.O_DIRECTORY)


def remove_scratch(path: Path) -> None:
    """Remove one of our scratch files (never called on anything else)."""
    if not is_scratch_name(path.name):
        raise ValueError(f"not a PixelPerfect scratch file: {path}")
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def clear_stale_scratch(path: Path) -> None:
    """Remove our scratch file ``path`` left by a killed write: it exists but nobody has it open for writing."""
    try:
        identity = FileIdentity.of(path)
    except FileNotFoundError:
        return
    if processes_writing(path, identity):
        return  # a write in progress (another process's): ExifTool will refuse and say so
    logger.warning("removing %s, left by an interrupted write", path)
    remove_scratch(path)
