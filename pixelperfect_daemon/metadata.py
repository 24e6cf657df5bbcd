"""Verdicts into XMP through one long-lived ExifTool process.

The tags live in a custom namespace (``XMP-pixelperfect``, defined by the ExifTool config file
shipped next to this module) plus keywords every DAM reads: ``XMP-lr:HierarchicalSubject``
(``PixelPerfect|Poor|Blur``) and the flat ``XMP-dc:Subject`` words Lightroom writes for it.
Earlier PixelPerfect keywords are replaced; the user's own keywords are left alone. The native
cull flags (rating, colour label, pick label) are set only where ``[metadata]`` asks for them, and
the user's own values are remembered and restored (``cull_flags.py`` decides).

ExifTool writes the tagged copy to a scratch file of ours (``file_replace``), which replaces the
original only if that is still the file analysed and nobody is writing it; a failed or refused
write leaves the original as it was, and only the metadata segment changes (the image data is
copied verbatim; for a JPEG without XMP ExifTool tags its header alone, ``header_tagging``).
Every path reaches ExifTool through ``exiftool_arguments`` (no name can become an argument), and
the ExifTool process runs under a memory cap.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import logging
import os
import queue
import re
import resource
import signal
import stat
import subprocess
import threading
import time
from concurrent.futures import Future
from contextlib import nullcontext
from pathlib import Path

import exiftool
import exiftool.exiftool
from exiftool.exceptions import ExifToolException

from . import cull_flags
from .common import one_line
from .config import MetadataSettings
from .exiftool_arguments import ExifToolPaths, option_argument
from .file_replace import (
    FileIdentity,
    ReplaceRefused,
    clear_stale_scratch,
    held_unwritten,
    place_new_file,
    remove_scratch,
    replace_if_unchanged,
    scratch_path_for,
)
from .files import image_suffix
from .header_tagging import HeaderTagging
from .jpeg_segments import jpeg_may_hold_xmp
from .labels import DEFECT_DISPLAY_NAMES, REASON_DISPLAY_NAMES, VERDICT_DISPLAY_NAMES, defect_display_name

logger = logging.getLogger(__name__)

NAMESPACE_URI = "http://ns.pixelperfect.dev/1.0/"
EXIFTOOL_CONFIG = Path(__file__).with_name("pixelperfect.exiftool.config")
KEYWORD_ROOT = "PixelPerfect"

# Formats ExifTool embeds XMP into safely; everything else (proprietary RAW, BMP) gets a sidecar,
# as Lightroom and darktable do.
EMBEDDED_XMP_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".tif", ".tiff", ".png", ".webp", ".heic", ".heif", ".hif", ".dng"}
)

_PP = "XMP-pixelperfect"
_HIERARCHICAL = "XMP-lr:HierarchicalSubject"
_FLAT = "XMP-dc:Subject"
_PP_FIELDS = ("Verdict", "Defect", "Quality", "ModelVersion", "AnalyzedAt", "ReviewedBy", "ReviewedAt", "ReviewReason")
# ExifTool's own name for the file it wrote before renaming it over the original (earlier versions).
_EXIFTOOL_TEMP_SUFFIX = "_exiftool_tmp"
# A temp file older than this cannot belong to a write in progress: a crash left it.
_STALE_TEMP_SECONDS = 60.0
_PR_SET_PDEATHSIG = 1  # from <sys/prctl.h>
# Loaded here, not in the forked child, where loading a library is unsafe.
_LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_PREEXEC_PATCH_LOCK = threading.Lock()
# The one answer that means our copy was written with the new tags (``-o``: "copied" means unchanged).
_WRITTEN = re.compile(r"^\s*1 image files created\s*$")
_COUNT_LINE = re.compile(r"^\s*\d+ (image )?(files|directories)\b")
# How each embedded format's file starts (first bytes, at an offset); a file named otherwise is another
# format, which ExifTool refuses to embed XMP into ("Not a valid JPG").
_CONTAINER_SIGNATURES = {
    "JPEG": ((0, b"\xff\xd8\xff"),),
    "PNG": ((0, b"\x89PNG\r\n\x1a\n"),),
    "TIFF": ((0, b"II*\x00"), (0, b"MM\x00*"), (0, b"II+\x00"), (0, b"MM\x00+")),
    "WebP": ((8, b"WEBP"),),
    "HEIF": ((4, b"ftyp"),),
}
_CONTAINER_OF_EXTENSION = {
    ".jpg": "JPEG", ".jpeg": "JPEG", ".jpe": "JPEG", ".png": "PNG", ".tif": "TIFF", ".tiff": "TIFF",
    ".dng": "TIFF", ".webp": "WebP", ".heic": "HEIF", ".heif": "HEIF", ".hif": "HEIF",
}  # fmt: skip


class MetadataError(Exception):
    """Tags could not be written or read; the original file is unchanged."""


class FileBusyError(MetadataError):
    """The file changed or is being written since it was analysed: nothing was written; look again later."""


def sidecar_file_name(image_path: Path, naming: str) -> Path:
    """``IMG_0001.xmp`` ("basename": Lightroom, Bridge) or ``IMG_0001.CR2.xmp`` ("fullname": darktable, digiKam)."""
    if naming == "fullname" or image_path.suffix != image_path.suffix.rstrip():
        # A name with white space after its extension keeps it whole: "a.jpg .xmp" is not "a.jpg"'s sidecar.
        return image_path.with_name(image_path.name + ".xmp")
    return image_path.with_suffix(".xmp")


def sidecar_path(image_path: Path, settings: MetadataSettings) -> Path | None:
    """Where the tags of ``image_path`` go when not inside it; None when they are embedded."""
    if settings.mode == "embedded" and image_suffix(image_path) in EMBEDDED_XMP_EXTENSIONS:
        return None
    return sidecar_file_name(image_path, settings.sidecar_name)


def is_read_only(path: Path) -> bool:
    """True when the file must not be modified: no write permission, or no write bit at all.

    The write-bit test matters for root, whom ``os.access`` always allows: a user who made a file
    read-only meant it.
    """
    mode = os.stat(path).st_mode
    return not os.access(path, os.W_OK) or not mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)


def pixelperfect_keywords(verdict: str, defect: str | None, reason: str | None = None) -> tuple[list[str], list[str]]:
    """The (hierarchical, flat) keywords for a verdict, as Lightroom writes a keyword path.

    A review reason adds a child of the defect's keyword (``PixelPerfect|Poor|Other|Duplicate``);
    the defect's own keyword stays, so a filter on the defect still finds the image.
    """
    verdict_name = VERDICT_DISPLAY_NAMES[verdict]
    path = [KEYWORD_ROOT, verdict_name]
    if verdict == "poor" and defect is not None:
        path.append(defect_display_name(defect))
    hierarchical = ["|".join(path)]
    if verdict == "poor" and defect is not None and reason is not None:
        path.append(REASON_DISPLAY_NAMES[reason])
        hierarchical.append("|".join(path))
    return hierarchical, path


def is_pixelperfect_keyword(hierarchical_keyword: str) -> bool:
    return hierarchical_keyword == KEYWORD_ROOT or hierarchical_keyword.startswith(KEYWORD_ROOT + "|")


def keyword_arguments(
    existing_hierarchical: list[str],
    existing_flat: list[str],
    previous_verdict: str | None,
    previous_defect: str | None,
    new_hierarchical: list[str],
    new_flat: list[str],
    previous_reason: str | None = None,
) -> list[str]:
    """ExifTool arguments that replace earlier PixelPerfect keywords and keep every other one.

    A flat keyword is ours if an earlier PixelPerfect keyword path (or the earlier verdict/defect
    tags, the earlier review reason) produced it and none of the user's own keyword paths did. ``-TAG-=x -TAG+=x`` adds x
    exactly once however often the write is repeated.
    """
    old_ours = [k for k in existing_hierarchical if is_pixelperfect_keyword(k)]
    user_paths = [k for k in existing_hierarchical if not is_pixelperfect_keyword(k)]
    user_words = {word for k in user_paths for word in k.split("|")}
    our_words = {word for k in old_ours for word in k.split("|")}
    if previous_verdict:
        our_words.update({KEYWORD_ROOT, previous_verdict})
    if previous_defect:
        our_words.add(previous_defect)
    if previous_reason:
        our_words.add(previous_reason)
    stale_flat = [k for k in existing_flat if k in our_words and k not in user_words and k not in new_flat]
    arguments = [f"-{_HIERARCHICAL}-={k}" for k in old_ours if k not in new_hierarchical]
    arguments += [f"-{_FLAT}-={k}" for k in stale_flat]
    for k in new_hierarchical:
        arguments += [f"-{_HIERARCHICAL}-={k}", f"-{_HIERARCHICAL}+={k}"]
    for k in new_flat:
        arguments += [f"-{_FLAT}-={k}", f"-{_FLAT}+={k}"]
    return arguments


_ASSIGNMENT = re.compile(r"-(?P<tag>[A-Za-z0-9-]+:[A-Za-z0-9]+)(?P<remove>-?)=(?P<value>.*)", re.DOTALL)


def without_deleting_absent_tags(arguments: list[str], existing: dict) -> list[str]:
    """``arguments`` less the deletions (``-TAG=``, ``-TAG-=value``) of tags ``existing`` (the file's
    tags as read just before) does not hold: no-ops, yet ExifTool spends a fraction of a millisecond
    on each, and a fresh camera file's first tagging carries a dozen."""
    kept = []
    for argument in arguments:
        assignment = _ASSIGNMENT.fullmatch(argument)
        deletes = assignment is not None and (assignment["remove"] or not assignment["value"])
        if deletes and existing.get(assignment["tag"]) is None:
            continue
        kept.append(argument)
    return kept


def container_of(path: Path) -> str | None:
    """The embedded-XMP format the file's first bytes show (JPEG, PNG, TIFF, WebP, HEIF), or None."""
    with open(path, "rb") as file:
        head = file.read(16)
    for container, signatures in _CONTAINER_SIGNATURES.items():
        if any(head[offset : offset + len(magic)] == magic for offset, magic in signatures):
            return container
    return None


def container_mismatch(path: Path) -> str | None:
    """Why XMP cannot be embedded in ``path`` though its extension allows it (e.g. a PNG named .jpg), or None."""
    expected = _CONTAINER_OF_EXTENSION.get(image_suffix(path))
    if expected is None:
        return None
    try:
        actual = container_of(path)
    except OSError:
        return None  # unreadable: ExifTool's own error will say why
    if actual == expected:
        return None
    return f"named {image_suffix(path)} but {'a ' + actual if actual else 'not a ' + expected} inside"


def _as_list(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v) for v in value]
    return [str(value)]


def _exiftool_failure(stderr: str, stdout: str) -> str:
    lines = [line.strip() for line in (stderr + "\n" + stdout).splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error")]
    return (errors or lines or ["ExifTool failed without a message"])[0]


def _count_lines(stdout: str) -> list[str]:
    """ExifTool's summary lines ("1 image files created", "0 image files updated", ...)."""
    return [line.strip() for line in stdout.splitlines() if _COUNT_LINE.match(line)]


def _wrote_one_file(status: int, stdout: str) -> bool:
    counts = _count_lines(stdout)
    return status == 0 and len(counts) == 1 and bool(_WRITTEN.match(counts[0]))


def _exiftool_preexec(memory_limit_bytes: int) -> None:
    """Runs in the ExifTool child before exec."""
    # Its own process group: Ctrl-C in a terminal reaches the daemon, which stops ExifTool in order.
    os.setpgrp()
    # The daemon killed (even kill -9): SIGINT, on which ExifTool exits (without any signal it would
    # wait on its closed stdin for ever); a half-written scratch copy is cleared at the next write.
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGINT)
    # A metadata bomb makes this one ExifTool run out of memory (and be restarted), not the machine.
    resource.setrlimit(resource.RLIMIT_AS, (memory_limit_bytes, memory_limit_bytes))


def _read_until(fd: int, ending: bytes, block_size: int) -> bytes:
    """pyexiftool's read loop, but an ExifTool that died (killed, out of memory) is an error: its own
    loop would spin on the closed pipe for ever, holding the writer."""
    output = bytearray()
    tail = len(ending) + 4
    while not bytes(output[-tail:]).strip().endswith(ending):
        chunk = os.read(fd, block_size)
        if not chunk:
            raise BrokenPipeError("the ExifTool process ended")
        output += chunk
    return bytes(output)


exiftool.exiftool._read_fd_endswith = _read_until


def run_exiftool(tool: exiftool.ExifTool, memory_limit_bytes: int) -> None:
    """``tool.run()`` with our pre-exec function instead of pyexiftool's (which has no option for it)."""
    module = exiftool.exiftool
    with _PREEXEC_PATCH_LOCK:
        original = module._set_pdeathsig
        module._set_pdeathsig = lambda _signal: lambda: _exiftool_preexec(memory_limit_bytes)
        try:
            tool.run()
        finally:
            module._set_pdeathsig = original


class MetadataWriter:
    """Writes and reads PixelPerfect XMP through one ``exiftool -stay_open`` process; thread-safe."""

    def __init__(self, settings: MetadataSettings, executable: str = "exiftool"):
        self.settings = settings
        self._executable = executable
        self._lock = threading.Lock()
        self._exiftool: exiftool.ExifTool | None = None
        self._spawner: threading.Thread | None = None
        self._spawn_requests: queue.SimpleQueue | None = None
        self._paths = ExifToolPaths()
        self._header_tagging = HeaderTagging()
        # False: ExifTool always writes the whole file (tests compare the two ways).
        self.tag_headers_alone = True

    # -- the ExifTool process ---------------------------------------------------------------

    def _start(self) -> exiftool.ExifTool:
        """A new ExifTool process, started from the writer's own long-lived thread.

        Linux sends the parent-death signal when the *thread* that started a child ends, so a
        process started from a short-lived caller thread would die with that thread.
        """
        if self._spawner is None or not self._spawner.is_alive():
            self._spawn_requests = queue.SimpleQueue()
            self._spawner = threading.Thread(
                target=self._spawn_loop, args=(self._spawn_requests,), name="exiftool-owner", daemon=True
            )
            self._spawner.start()
        request = Future()
        self._spawn_requests.put(request)
        return request.result()

    def _spawn_loop(self, requests: queue.SimpleQueue) -> None:
        while (request := requests.get()) is not None:
            tool = exiftool.ExifTool(
                executable=self._executable,
                common_args=["-charset", "filename=utf8"],
                config_file=EXIFTOOL_CONFIG,
                encoding="utf-8",
            )
            try:
                run_exiftool(tool, self.settings.exiftool_memory_mb * 1024 * 1024)
            except (OSError, RuntimeError, ExifToolException) as error:
                request.set_exception(MetadataError(f"cannot start ExifTool ({self._executable}): {one_line(error)}"))
            else:
                request.set_result(tool)

    def _execute(self, *arguments: str | bytes) -> tuple[int, str, str]:
        """Run one command; a dead ExifTool process is restarted once. Call with the lock held.

        ``str`` arguments are options (made exact by ``option_argument``); file names come as the
        ``bytes`` lines of ``ExifToolPaths``.
        """
        try:
            arguments = tuple(a if isinstance(a, bytes) else option_argument(a) for a in arguments)
        except ValueError as error:
            raise MetadataError(one_line(error)) from None
        for attempt in (1, 2):
            if self._exiftool is None or not self._exiftool.running:
                self._exiftool = self._start()
            try:
                # Bytes: ExifTool's messages quote file names, which need not be UTF-8.
                stdout = self._exiftool.execute(*arguments, raw_bytes=True)
                stderr = self._exiftool.last_stderr
                return self._exiftool.last_status, stdout.decode("utf-8", "replace"), stderr.decode("utf-8", "replace")
            except (OSError, ExifToolException) as error:
                stderr = self._stderr_of_dead_process()
                reason = "ran out of memory (exiftool_memory_mb)" if "Out of memory" in stderr else one_line(error)
                logger.warning("ExifTool process failed (%s); restarting it", reason)
                self._stop()
                if attempt == 2:
                    raise MetadataError(f"ExifTool failed: {reason}") from None
        raise AssertionError("unreachable")

    def _stderr_of_dead_process(self) -> str:
        """What a dead ExifTool process said last ('Out of memory!'), if it is readable without blocking."""
        process = getattr(self._exiftool, "_process", None)
        if process is None or process.stderr is None:
            return ""
        try:
            process.wait(timeout=1.0)  # its output pipe closed: it is ending
        except subprocess.TimeoutExpired:
            return ""
        try:
            os.set_blocking(process.stderr.fileno(), False)
            return (process.stderr.read() or b"").decode("utf-8", "replace")
        except (OSError, ValueError):
            return ""

    def _stop(self) -> None:
        tool, self._exiftool = self._exiftool, None
        if tool is not None:
            try:
                tool.terminate()
            except Exception:  # a process that already died cannot be terminated cleanly
                pass

    def version(self) -> str:
        """ExifTool's version; starts the process, so a missing ExifTool shows at start-up."""
        with self._lock:
            status, stdout, stderr = self._execute("-ver")
        if status != 0:
            raise MetadataError(f"ExifTool does not work: {_exiftool_failure(stderr, stdout)}")
        return stdout.strip()

    def close(self) -> None:
        with self._lock:
            self._stop()
            self._paths.close()
            self._header_tagging.close()
            if self._spawner is not None:
                self._spawn_requests.put(None)
                self._spawner.join()
                self._spawner = None

    def __enter__(self) -> MetadataWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- where the tags go ------------------------------------------------------------------

    def target_for(self, image_path: Path) -> Path:
        """The file the tags of ``image_path`` are written into: the image itself or its sidecar."""
        sidecar = sidecar_path(image_path, self.settings)
        if sidecar is not None:
            return sidecar
        if is_read_only(image_path) or container_mismatch(image_path):
            return sidecar_file_name(image_path, self.settings.sidecar_name)
        return image_path

    # -- reading ----------------------------------------------------------------------------

    def _read_tags(self, file_path: Path) -> dict:
        """Raw PixelPerfect-relevant tags of one file; {} when it does not exist or is a JPEG without XMP."""
        if not file_path.exists() or not jpeg_may_hold_xmp(file_path):
            return {}  # nothing to read: spares ExifTool a read (about 3 ms of its CPU per fresh JPEG)
        with self._paths.arguments(file_path) as (file_argument,):
            status, stdout, stderr = self._execute(
                "-j",
                "-G1",
                "-n",
                "-struct",
                f"-{_PP}:all",
                f"-{_HIERARCHICAL}",
                f"-{_FLAT}",
                *(f"-{tag}" for tag in cull_flags.FIELD_TAGS.values()),
                file_argument,
            )
        if status != 0 or not stdout.strip():
            raise MetadataError(f"cannot read tags of {file_path}: {_exiftool_failure(stderr, stdout)}")
        # Keep numbers as their text ("1.10" must not become 1.1).
        (tags,) = json.loads(stdout, parse_float=str, parse_int=str)
        return tags

    @staticmethod
    def _summarise(tags: dict, file_path: Path) -> dict:
        summary = {name: tags.get(f"{_PP}:{name}") for name in _PP_FIELDS}
        summary = {k: (None if v is None else str(v)) for k, v in summary.items()}
        if summary["Quality"] is not None:
            summary["Quality"] = float(summary["Quality"])
        summary["keywords"] = _as_list(tags.get(_HIERARCHICAL))
        summary["subject"] = _as_list(tags.get(_FLAT))
        for field, tag in cull_flags.FIELD_TAGS.items():
            summary[field] = None if tags.get(tag) is None else str(tags[tag])
        summary["file"] = file_path
        return summary

    def read_verdict(self, image_path: Path) -> dict:
        """What ``write_verdict`` wrote: Verdict, Defect, Quality, ModelVersion, AnalyzedAt,
        ReviewedBy, ReviewedAt, ReviewReason, keywords (hierarchical), subject (flat), Label, Rating, PickLabel, file."""
        image_path = Path(image_path)
        primary = (
            self.target_for(image_path)
            if image_path.exists()
            else (sidecar_path(image_path, self.settings) or image_path)
        )
        # Tags written while the file was writable (or read-only) are in the other place.
        others = [sidecar_file_name(image_path, self.settings.sidecar_name)]
        if image_suffix(image_path) in EMBEDDED_XMP_EXTENSIONS:
            others.insert(0, image_path)
        with self._lock:
            first = self._summarise(self._read_tags(primary), primary)
            if first["Verdict"] is not None:
                return first
            for other in others:
                if other == primary or not other.exists():
                    continue
                try:
                    summary = self._summarise(self._read_tags(other), other)
                except MetadataError:
                    continue
                if summary["Verdict"] is not None:
                    return summary
        return first

    # -- writing ----------------------------------------------------------------------------

    def write_verdict(
        self,
        image_path: Path,
        *,
        verdict: str,
        defect: str | None,
        quality: float | None,
        model_version: str,
        analyzed_at: str,
        reviewed_by: str | None = None,
        reviewed_at: str | None = None,
        reason: str | None = None,
        remember: dict | None = None,
        analysed: FileIdentity | None = None,
    ) -> Path:
        """Write the verdict tags for ``image_path``; return the file written (image or sidecar).

        ``reason``: why a reviewer made it Poor beyond the defect (a key of ``REASON_DISPLAY_NAMES``, e.g.
        "duplicate"); None removes an earlier one. ``remember``, if given, receives the cull-flag memory written (``cull_flags.index_values``)
        for the index. ``analysed``: the image as it was when analysed; nothing is written unless it
        is still that file (FileBusyError). Raises MetadataError, leaving the original untouched.
        """
        image_path = Path(image_path)
        if verdict not in VERDICT_DISPLAY_NAMES:
            raise MetadataError(f"cannot tag {image_path}: verdict must be good or poor, got {verdict!r}")
        if defect is not None and defect not in DEFECT_DISPLAY_NAMES:
            raise MetadataError(f"cannot tag {image_path}: unknown defect {defect!r}")
        if reason is not None and reason not in REASON_DISPLAY_NAMES:
            raise MetadataError(f"cannot tag {image_path}: unknown review reason {reason!r}")
        if verdict == "good":
            defect = None
        if defect is None:
            reason = None  # a reason explains a Poor verdict's defect
        try:
            if not image_path.is_file():
                raise MetadataError(
                    f"cannot tag {image_path}: " + ("not a regular file" if image_path.exists() else "file vanished")
                )
            target = self.target_for(image_path)
        except FileNotFoundError:  # vanished between the two looks
            raise MetadataError(f"cannot tag {image_path}: file vanished") from None
        if target != image_path and sidecar_path(image_path, self.settings) is None:
            mismatch = container_mismatch(image_path)
            why = f"{mismatch}, which cannot hold embedded XMP" if mismatch else "read-only"
            logger.info("%s is %s: writing its tags to the sidecar %s", image_path, why, target)
        self._clear_stale_temp_file(target)
        scratch = scratch_path_for(target)

        new_hierarchical, new_flat = pixelperfect_keywords(verdict, defect, reason)
        values = {
            "Verdict": VERDICT_DISPLAY_NAMES[verdict],
            "Defect": defect_display_name(defect),
            "Quality": None if quality is None else f"{float(quality):.4f}",
            "ModelVersion": model_version,
            "AnalyzedAt": analyzed_at,
            "ReviewedBy": reviewed_by,
            "ReviewedAt": reviewed_at,
            "ReviewReason": None if reason is None else REASON_DISPLAY_NAMES[reason],
        }
        with self._lock:
            clear_stale_scratch(scratch)  # under the lock: never another thread's copy in progress
            try:
                # Captured before ExifTool reads it: what is replaced must be what was read.
                target_before = FileIdentity.of(target)
            except FileNotFoundError:
                target_before = None  # a new sidecar
            if target == image_path and analysed is not None and target_before != analysed:
                raise FileBusyError(f"cannot tag {image_path}: it changed since it was analysed")
            existing = self._read_tags(target)
            previous_verdict = existing.get(f"{_PP}:Verdict")
            previous_defect = existing.get(f"{_PP}:Defect")
            previous_reason = existing.get(f"{_PP}:ReviewReason")
            arguments = ["-P", "-m"]
            arguments += [
                f"-{_PP}:{name}=" + ("" if value is None else one_line(value)) for name, value in values.items()
            ]
            arguments += keyword_arguments(
                _as_list(existing.get(_HIERARCHICAL)),
                _as_list(existing.get(_FLAT)),
                None if previous_verdict is None else str(previous_verdict),
                None if previous_defect is None else str(previous_defect),
                new_hierarchical,
                new_flat,
                None if previous_reason is None else str(previous_reason),
            )
            flags = cull_flags.plan_cull_flags(self.settings, verdict, quality, *cull_flags.state_from_tags(existing))
            arguments += cull_flags.exiftool_arguments(flags)
            arguments = without_deleting_absent_tags(arguments, existing)
            if not self._tag_header_alone(arguments, target, target_before, existing, scratch):
                sources = () if target_before is None else (target,)
                with self._paths.arguments(*sources, output=scratch) as (*source, output):
                    status, stdout, stderr = self._execute(*arguments, "-o", output, *source)
                self._check_written(image_path, scratch, status, stdout, stderr)
            self._put_in_place(image_path, target, scratch, target_before, analysed)
        self._after_write(target, before=existing)
        if remember is not None:
            remember.update(cull_flags.index_values(flags))
        return target

    def _tag_header_alone(
        self, arguments: list[str], target: Path, target_before: FileIdentity | None, existing: dict, scratch: Path
    ) -> bool:
        """Write ``scratch`` through ``header_tagging`` where it applies (a JPEG without XMP); False when it does not."""
        if not self.tag_headers_alone or existing or target_before is None:
            return False  # tags to merge with, or a new sidecar: ExifTool writes the whole file

        def run(header: Path, tagged_header: Path) -> bool:
            with self._paths.arguments(header, output=tagged_header) as (source, output):
                status, stdout, _ = self._execute(*arguments, "-o", output, source)
            return _wrote_one_file(status, stdout) and tagged_header.is_file()

        try:
            return self._header_tagging.tag(target, target_before, scratch, run)
        except OSError as error:
            raise MetadataError(f"cannot tag {target}: {error.strerror or one_line(error)}") from None

    def _after_write(self, target: Path, *, before: dict) -> None:
        """``touch_on_change``: a file whose tags changed gets now as its mtime, so Lightroom offers to read them.

        ExifTool reports a rewrite with the same values as an update, so the tags are read back and compared."""
        if not self.settings.touch_on_change:
            return
        with self._lock:
            after = self._read_tags(target)
        if after != before:
            os.utime(target)

    @staticmethod
    def _check_written(image_path: Path, scratch: Path, status: int, stdout: str, stderr: str) -> None:
        """ExifTool's answer must be exactly "1 image files created" (our tagged copy); anything else
        ("copied": nothing changed, "unchanged", errors) fails the write."""
        if _wrote_one_file(status, stdout) and scratch.is_file():
            return
        remove_scratch(scratch)
        counts = _count_lines(stdout)
        if status == 0 and counts and not any("rror" in line for line in (stderr + stdout).splitlines()):
            raise MetadataError(f"cannot tag {image_path}: ExifTool did not write the tags ({'; '.join(counts)})")
        raise MetadataError(f"cannot tag {image_path}: {_exiftool_failure(stderr, stdout)}")

    @staticmethod
    def _put_in_place(
        image_path: Path,
        target: Path,
        scratch: Path,
        target_before: FileIdentity | None,
        analysed: FileIdentity | None,
    ) -> None:
        """Our tagged copy replaces ``target`` only if nothing changed meanwhile (FileBusyError if it did)."""
        # Tags in a sidecar describe the image analysed: it stays that, unwritten, until they are in place.
        image_held = held_unwritten(image_path, analysed) if analysed and target != image_path else nullcontext()
        try:
            with image_held:
                if target_before is None:
                    place_new_file(scratch, target)
                else:
                    replace_if_unchanged(
                        target, scratch, analysed if target == image_path and analysed else target_before
                    )
        except ReplaceRefused as refusal:
            remove_scratch(scratch)
            raise FileBusyError(f"not tagged, left as it is: {refusal}") from None

    @staticmethod
    def _clear_stale_temp_file(target: Path) -> None:
        """Remove the half-written copy an earlier version's killed ExifTool write left (the original is
        intact); it was ExifTool's own scratch file, never user data."""
        temp = target.with_name(target.name + _EXIFTOOL_TEMP_SUFFIX)
        try:
            age = time.time() - temp.stat().st_mtime
        except OSError:  # none, or a name too long to have one
            return
        if age > _STALE_TEMP_SECONDS:
            logger.warning("removing %s, left by an interrupted ExifTool write", temp)
            temp.unlink(missing_ok=True)
