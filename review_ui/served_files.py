"""What the browser may download: only files the app rendered itself, never an original, the index or the config.

Gradio's file route (``/gradio_api/file=PATH``, and the older ``/gradio_api/file/PATH``) serves whatever lies under its allowed folders, by
path. A watch folder holds files that strangers name and link: a symbolic or hard link
``dblink.jpg`` to the index database would be served as the database. So the route is guarded in
front of Gradio: a file is served only when, after resolving every link, it is a regular file under
the render cache (thumbnails, previews, crops as JPEG/PNG, CSV and Lightroom zip exports) or Gradio's upload folder
(the reviewer's own upload), has no other hard link, and is not the index or the config under
another name (compared by inode).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from starlette.responses import PlainTextResponse

# Gradio's file route and its deprecated twin; both take the rest of the URL as the path.
FILE_ROUTE_MARKERS = ("/gradio_api/file=", "/gradio_api/file/")
# What the app renders into its cache: nothing a browser would run (HTML, SVG, scripts).
RENDER_SUFFIXES = frozenset({".jpg", ".png", ".csv", ".zip"})


def file_route_target(request_path: str) -> str | None:
    """The file a request to Gradio's file route names (already percent-decoded), or None for other routes."""
    for marker in FILE_ROUTE_MARKERS:
        position = request_path.find(marker)
        if position >= 0:
            return request_path[position + len(marker) :]
    return None


def _inode(path: Path) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


class ServedFilePolicy:
    """The rule, independent of the web server: ``allows(path)`` is True only for the app's own renders."""

    def __init__(self, render_roots: Iterable[Path | str], upload_roots: Iterable[Path | str],
                 protected: Iterable[Path | str]):  # fmt: skip
        self.render_roots = tuple(Path(os.path.realpath(root)) for root in render_roots)
        self.upload_roots = tuple(Path(os.path.realpath(root)) for root in upload_roots)
        self.protected = tuple(Path(p) for p in protected)

    def allows(self, requested: str) -> bool:
        if "://" in requested:
            return False  # Gradio would fetch a URL for the caller: not ours to hand out
        real = Path(os.path.realpath(os.path.abspath(requested)))
        # The upload folder may lie inside the render cache (``pixelperfect ui`` puts it there).
        uploaded = any(real.is_relative_to(root) for root in self.upload_roots)
        rendered = any(real.is_relative_to(root) for root in self.render_roots)
        if not uploaded and not (rendered and real.suffix.lower() in RENDER_SUFFIXES):
            return False
        try:
            info = os.stat(real)
        except OSError:
            return False
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            return False  # a second name for the same bytes was not made by the app
        # Checked at each request: the -wal and -shm files come and go.
        protected_inodes = {inode for inode in map(_inode, self.protected) if inode is not None}
        return (info.st_dev, info.st_ino) not in protected_inodes


class ServedFileGuard:
    """ASGI middleware: a request to the file route for anything the policy refuses gets a 403."""

    def __init__(self, app, policy: ServedFilePolicy):
        self.app = app
        self.policy = policy

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            target = file_route_target(scope.get("path", ""))
            if target is not None and not self.policy.allows(target):
                await PlainTextResponse("File not allowed.", status_code=403)(scope, receive, send)
                return
        await self.app(scope, receive, send)
