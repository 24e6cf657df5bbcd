"""Tagging a JPEG without XMP by handing ExifTool its header alone.

ExifTool tags a JPEG by rewriting its header and then copying the image data, most of the file,
verbatim through Perl in 8 KB system calls: for a 24 MP camera file that copy is most of the
write's CPU time. When the JPEG holds no XMP yet and ends with its own end-of-image marker (so
ExifTool finds no trailer to rewrite), ExifTool is given a copy of the header alone, and its new
header is followed by the original image data, copied by the kernel. ExifTool still writes the
XMP segment and chooses its place; we check that its new header is the old one with one XMP
segment added and every other byte as it was. Any other file, or any other answer, and nothing
is written here: ExifTool then writes the whole file as usual.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from .file_replace import FileIdentity, remove_scratch
from .jpeg_segments import scan_start_without_xmp, xmp_segment_added

logger = logging.getLogger(__name__)

_EOI = b"\xff\xd9"
# Camera headers are tens of kilobytes; one this large is left to ExifTool's usual write.
_HEADER_LIMIT = 16 * 1024 * 1024
# Where the kernel cannot copy between these files, the copy goes through this much memory at a time.
_COPY_BLOCK = 1024 * 1024
_NO_KERNEL_COPY = frozenset({errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP})

# run(header, tagged_header) -> True when ExifTool wrote ``tagged_header`` with the tags.
RunExifTool = Callable[[Path, Path], bool]


class HeaderTagging:
    """Owns the private folder where ExifTool tags headers. One write at a time (the writer's lock)."""

    def __init__(self):
        self._folder: Path | None = None

    def tag(self, path: Path, expected: FileIdentity, scratch: Path, run: RunExifTool) -> bool:
        """Write ``scratch``: the JPEG ``path`` (still ``expected``) with the tags ExifTool adds to its
        header. False, with nothing written, when the file is not one for this or ExifTool's header is
        not the one expected; OSError when ``scratch`` cannot be written (a full disk)."""
        try:
            # O_NONBLOCK: a FIFO swapped in for the photo, or a file leased by another process, fails at once.
            source = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return False  # ExifTool's usual write reports it
        try:
            st = os.fstat(source)
            if FileIdentity.from_stat(st) != expected:
                return False
            header = _header_without_xmp(source, st.st_size)
            if header is None:
                return False
            tagged = self._tagged_header(header, run)
            if tagged is None:
                return False
            if not (tagged.endswith(_EOI) and xmp_segment_added(header, tagged[:-2])):
                logger.info("ExifTool changed more than the XMP in the header of %s: it writes the whole file", path)
                return False
            return _write_tagged(scratch, tagged[:-2], source, len(header), st)
        finally:
            os.close(source)

    def _tagged_header(self, header: bytes, run: RunExifTool) -> bytes | None:
        """ExifTool's tagged copy of ``header`` (made whole with an end-of-image marker), or None."""
        header_path = tagged_path = None
        try:
            folder = self._work_folder()
            header_path, tagged_path = folder / "header.jpg", folder / "tagged.jpg"
            tagged_path.unlink(missing_ok=True)
            header_path.write_bytes(header + _EOI)
            if not run(header_path, tagged_path):
                return None
            return tagged_path.read_bytes()
        except OSError as error:  # our temporary folder, not the photo's: ExifTool's usual write may still work
            logger.warning("cannot tag a header in %s (%s): ExifTool writes whole files", self._folder, error)
            return None
        finally:  # the copies hold the photo's EXIF (its GPS position, say): kept no longer than needed
            for path in (header_path, tagged_path):
                if path is not None:
                    path.unlink(missing_ok=True)

    def _work_folder(self) -> Path:
        if self._folder is None or not self._folder.is_dir():
            self._folder = Path(tempfile.mkdtemp(prefix="pixelperfect-headers-"))
        return self._folder

    def close(self) -> None:
        """Remove the private folder (only ever our copies of headers)."""
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None


def _header_without_xmp(source: int, size: int) -> bytes | None:
    """The JPEG's header up to its image data, if it holds no XMP and the file ends with an end-of-image marker."""
    with open(source, "rb", closefd=False) as file:
        scan_start = scan_start_without_xmp(file)
    if scan_start is None or scan_start > _HEADER_LIMIT or size < scan_start + len(_EOI):
        return None
    # Every trailer ExifTool rewrites ends with its own signature, never with a JPEG's last marker.
    if os.pread(source, len(_EOI), size - len(_EOI)) != _EOI:
        return None
    header = os.pread(source, scan_start, 0)
    return header if len(header) == scan_start else None


def _write_tagged(scratch: Path, header: bytes, source: int, scan_start: int, st: os.stat_result) -> bool:
    """``scratch`` := ``header`` + the source's bytes from ``scan_start``, with the source's times (ExifTool's -P)."""
    target = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        _write_all(target, header)
        complete = _copy_range(source, target, scan_start, st.st_size - scan_start)
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    except BaseException:
        os.close(target)
        remove_scratch(scratch)
        raise
    os.close(target)
    if not complete:  # the file shrank meanwhile: ExifTool's usual write meets it as it is now
        remove_scratch(scratch)
    return complete


def _write_all(target: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(target, view) :]


def _copy_range(source: int, target: int, offset: int, count: int) -> bool:
    """Append ``count`` bytes of ``source`` from ``offset`` to ``target``; False if the source ended first."""
    kernel_copy = True
    while count > 0:
        if kernel_copy:
            try:
                copied = os.copy_file_range(source, target, count, offset)
            except OSError as error:
                if error.errno not in _NO_KERNEL_COPY:
                    raise
                kernel_copy = False
                continue
        else:
            block = os.pread(source, min(count, _COPY_BLOCK), offset)
            _write_all(target, block)
            copied = len(block)
        if copied == 0:
            return False
        offset += copied
        count -= copied
    return True
