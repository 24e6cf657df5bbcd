"""File names as ExifTool arguments that can never be read as anything but that one file.

``exiftool -stay_open`` reads its arguments one per line, so a name holding a newline would end
its line and start new arguments (``-if``, ``-all=``, ``-Directory=``, another file): the name of
a file a stranger dropped into a watch folder must never reach ExifTool as plain lines. Every path
ExifTool sees goes through ``ExifToolPaths.argument``:

* The path is made absolute, so it starts with ``/``: never an option (``-x.jpg``), never a comment
  (``#...``), never an assignment (``=x.jpg``), and leading white space is not at the line start.
* Without CR or LF it is sent as its bytes, unchanged: ExifTool only strips a line's trailing
  CR/LF, and opens files so that leading or trailing spaces and shell characters are kept.
* With CR or LF it is sent as an ``#[CSTR]`` line (a C string: ``\\n``, ``\\r``, ``\\\\``, ``\\"``).
  ExifTool 12 cannot express ``$`` or ``@`` in such a line (it leaves a backslash before them), so
  a name with both a line break and ``$``/``@`` is reached through a symbolic link of our own, in a
  private folder, named with plain characters.
* An output file (``-o``) is a format string to ExifTool (``%d`` is the source's folder, and there is
  no escape for ``%``), so an output path holding ``%`` is reached through a link to its folder.

In every case ExifTool opens exactly the file named, and nothing in a name can become an option.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_LINE_BREAKS = (b"\n", b"\r")
# Characters ExifTool's #[CSTR] lines cannot carry (it escapes them for a Perl string never evaluated).
_NOT_IN_CSTR = (b"$", b"@")
_CSTR_ESCAPES = ((b"\\", b"\\\\"), (b'"', b'\\"'), (b"\n", b"\\n"), (b"\r", b"\\r"))
# ExifTool drops white space around the "=" of a plain "-TAG=VALUE" line (and one space after it).
_ALTERED_ASSIGNMENT = re.compile(rb"^-[-:\w]+#?(\s+[-+<]?=|[-+<]?= )")


def plain_line_is_exact(path: bytes) -> bool:
    """True when ``path`` (absolute) reaches ExifTool unchanged as one plain argument line."""
    return not any(c in path for c in _LINE_BREAKS)


def cstr_line(path: bytes) -> bytes | None:
    """``path`` as an ExifTool ``#[CSTR]`` argument line, or None when ExifTool cannot read it back exactly."""
    if any(c in path for c in _NOT_IN_CSTR):
        return None
    for raw, escaped in _CSTR_ESCAPES:
        path = path.replace(raw, escaped)
    return b"#[CSTR]" + path


def option_argument(option: str) -> bytes:
    """An option or a ``-TAG=VALUE`` (whose value may come from a file's own tags) as one argument
    line ExifTool reads back exactly; ValueError when it cannot."""
    data = option.encode("utf-8")
    if not data.startswith(b"-"):
        raise ValueError(f"not an option: {option!r}")  # file names go through ExifToolPaths
    if plain_line_is_exact(data) and not _ALTERED_ASSIGNMENT.match(data):
        return data
    line = cstr_line(data)
    if line is None:
        raise ValueError(f"ExifTool cannot be given this value exactly: {option!r}")
    return line


class ExifToolPaths:
    """Turns paths into safe ExifTool argument lines; owns the private folder of links it needs.

    Thread-safe. ``close()`` removes the private folder (the links only, never what they point to).
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._folder: Path | None = None
        self._numbers = itertools.count()

    @contextmanager
    def arguments(self, *paths: Path | str | bytes, output: Path | None = None) -> Iterator[list[bytes]]:
        """The argument lines naming exactly ``paths``, then ``output`` (a file ExifTool creates, whose
        own name must be plain); any link made for them is removed on leaving."""
        links: list[bytes] = []
        try:
            lines = [self._argument(path, links) for path in paths]
            if output is not None:
                lines.append(self._output_argument(output, links))
            yield lines
        finally:
            for link in links:
                try:
                    os.unlink(link)
                except FileNotFoundError:
                    pass

    def _argument(self, path: Path | str | bytes, links: list[bytes]) -> bytes:
        absolute = os.path.abspath(os.fsencode(path))
        if b"\0" in absolute:
            raise ValueError("a path cannot contain a NUL byte")
        if plain_line_is_exact(absolute):
            return absolute
        line = cstr_line(absolute)
        if line is not None:
            return line
        folder, name = os.path.split(absolute)
        if _plain_and_cstr_safe(name):
            # Only the folder is unrepresentable (an output file we name ourselves lives there).
            return self._link_to(folder, b"", links) + b"/" + name
        suffix = os.path.splitext(name)[1]
        return self._link_to(absolute, suffix if _plain_and_cstr_safe(suffix) else b"", links)

    def _output_argument(self, path: Path | str | bytes, links: list[bytes]) -> bytes:
        folder, name = os.path.split(os.path.abspath(os.fsencode(path)))
        if not _plain_and_cstr_safe(name) or b"%" in name:
            raise ValueError(f"an output file needs a plain name, not {name!r}")
        line = self._argument(os.path.join(folder, name), links)
        if b"%" in line:
            line = self._link_to(folder, b"", links) + b"/" + name
        return line

    def _link_to(self, target: bytes, suffix: bytes, links: list[bytes]) -> bytes:
        """A new symbolic link to ``target`` in our private folder; its name is plain ASCII."""
        with self._lock:
            if self._folder is None or not self._folder.is_dir():
                self._folder = Path(tempfile.mkdtemp(prefix="pixelperfect-exiftool-"))  # mode 0700
            link = os.path.join(os.fsencode(self._folder), b"%d%s" % (next(self._numbers), suffix))
        os.symlink(target, link)
        links.append(link)
        return link

    def close(self) -> None:
        with self._lock:
            folder, self._folder = self._folder, None
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


def _plain_and_cstr_safe(name: bytes) -> bool:
    return plain_line_is_exact(name) and not any(c in name for c in _NOT_IN_CSTR)
