"""Typed settings loaded from config.toml.

Every section is a frozen dataclass; unknown keys, wrong types and out-of-range values raise
``ConfigError`` naming the offending key, so a typo in config.toml never silently does nothing.
Relative paths are resolved against the folder holding the config file.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from .cull_flags import COLOR_LABELS
from .verdict import POOR_ABOVE_NOISE

DEFAULT_CONFIG_PATH = Path("config.toml")
PACKAGE_MODELS_DIR = Path(__file__).resolve().parent.parent / "models"


class ConfigError(ValueError):
    """config.toml is missing, malformed, or holds an unknown key or a bad value."""


@dataclass(frozen=True)
class WatchSettings:
    folders: tuple[Path, ...] = (Path("demo/ingest"),)
    # > 0 switches from inotify to polling every N seconds (SMB/NFS shares send no inotify events).
    poll_interval: float = 0.0
    # A file is complete once its size and mtime stayed unchanged this long.
    stable_seconds: float = 2.0
    # Analyse a file while it waits to be complete (inotify only); its tags still wait (early_analysis.py).
    analyse_early: bool = True
    # A full rescan catches anything an event was missed for (0 disables).
    rescan_interval: float = 300.0
    # Extra glob patterns to ignore, on top of the built-in temp/sync-tool patterns.
    ignore: tuple[str, ...] = ()
    # A failure that was not the file's fault (disk full, permission denied, read-only folder, busy
    # file) is retried after this many seconds, doubling after each failed retry up to retry_max_seconds.
    retry_seconds: float = 60.0
    retry_max_seconds: float = 3600.0


@dataclass(frozen=True)
class AnalysisSettings:
    workers: int = 2
    models_dir: Path = PACKAGE_MODELS_DIR
    # Files with more pixels than this are refused (decompression-bomb guard).
    max_pixels: int = 250_000_000
    # P(poor) at or above which the verdict is Poor.
    poor_threshold: float = 0.5
    # A quality score below this is a Poor verdict too, whatever P(poor) says (0 turns it off; verdict.py).
    poor_below_quality: float = 0.35
    # Noise at screen size (screen_noise.py, grey levels) at or above which the verdict is Poor (0 turns it off).
    poor_above_noise: float = POOR_ABOVE_NOISE


@dataclass(frozen=True)
class MetadataSettings:
    # "embedded": XMP inside JPEG/TIFF/PNG/WebP/HEIC/DNG, sidecar for proprietary RAW.
    # "sidecar": never modify any original, always write a sidecar.
    mode: str = "embedded"
    # "basename": IMG_0001.xmp (Lightroom, Bridge); "fullname": IMG_0001.CR2.xmp (darktable, digiKam).
    sidecar_name: str = "basename"
    # Native cull flags, all off by default (cull_flags.py); the user's own values are remembered and restored.
    poor_color_label: str = ""  # one of COLOR_LABELS: xmp:Label on Poor images
    poor_reject_rating: bool = False  # xmp:Rating = -1 (rejected) on Poor images
    pick_label: bool = False  # digiKam:PickLabel: rejected for Poor, accepted for Good unless the user set one
    quality_stars: bool = False  # 1-5 stars from the quality score where the user gave no rating
    touch_on_change: bool = False  # the tagged file's mtime set to now, so Lightroom sees "changed on disk"
    # Address-space cap of the ExifTool process: metadata that would expand beyond it (a compressed
    # text bomb) fails that one file instead of exhausting the machine.
    exiftool_memory_mb: int = 2048


@dataclass(frozen=True)
class IndexSettings:
    # A SQLite file (the default, no server) or postgresql://user@host:port/dbname (no password in it).
    database: Path | str = Path("demo/pixelperfect.sqlite")
    # The environment variable holding the PostgreSQL password; empty: libpq's own PGPASSWORD / ~/.pgpass.
    password_env: str = ""
    # PostgreSQL, several daemons: a claim on a file whose daemon sent no heartbeat for this long is taken over.
    claim_timeout: float = 60.0


@dataclass(frozen=True)
class UISettings:
    host: str = "127.0.0.1"
    port: int = 7860
    # Reviewer accounts: {name = "pbkdf2:..."} (from `pixelperfect hash-password`) or {name = "env:VARIABLE"}.
    # Required off loopback.
    users: dict[str, str] = field(default_factory=dict)
    thumbnail_cache: Path = Path("demo/thumbnails")
    page_size: int = 48
    # How often an open review page looks for new analyses and others' reviews; 0 turns it off.
    refresh_seconds: float = 3.0
    # Frames at most this many seconds apart (and alike) form a burst in the Bursts view.
    burst_gap_seconds: float = 2.0
    # Where "Copy / Move rejects" put the Poor photos of the current filter; outside every watch folder.
    reject_folder: Path = Path("demo/rejects")


@dataclass(frozen=True)
class LearnSettings:
    # Where `pixelperfect learn` keeps the library's adaptation; unset: beside the index (<database stem>-learn).
    folder: Path | None = None
    # > 0: the daemon learns again after this many new reviews and re-tags the files whose verdict changes.
    every_reviews: int = 0


@dataclass(frozen=True)
class LoggingSettings:
    level: str = "INFO"


@dataclass(frozen=True)
class Settings:
    watch: WatchSettings = field(default_factory=WatchSettings)
    analysis: AnalysisSettings = field(default_factory=AnalysisSettings)
    metadata: MetadataSettings = field(default_factory=MetadataSettings)
    index: IndexSettings = field(default_factory=IndexSettings)
    ui: UISettings = field(default_factory=UISettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    learn: LearnSettings = field(default_factory=LearnSettings)
    source: Path | None = None  # the file these settings came from, if any

    @property
    def learn_folder(self) -> Path:
        """The folder of the library adaptation: ``[learn] folder``, or beside the index (beside the config
        file for a PostgreSQL index, which has no folder of its own)."""
        if self.learn.folder is not None:
            return self.learn.folder
        database = self.index.database
        if isinstance(database, Path):
            return database.with_name(f"{database.stem}-learn")
        return (self.source.parent if self.source is not None else Path.cwd()) / "pixelperfect-learn"


_CHOICES = {
    ("metadata", "mode"): ("embedded", "sidecar"),
    ("metadata", "sidecar_name"): ("basename", "fullname"),
    ("logging", "level"): ("DEBUG", "INFO", "WARNING", "ERROR"),
    ("metadata", "poor_color_label"): ("", *COLOR_LABELS),
}
_MINIMUMS = {
    ("watch", "poll_interval"): 0.0,
    ("watch", "stable_seconds"): 0.0,
    ("watch", "rescan_interval"): 0.0,
    ("watch", "retry_seconds"): 1.0,
    ("watch", "retry_max_seconds"): 1.0,
    ("analysis", "workers"): 1,
    ("analysis", "max_pixels"): 1,
    ("metadata", "exiftool_memory_mb"): 256,
    ("ui", "port"): 1,
    ("ui", "page_size"): 1,
    ("index", "claim_timeout"): 5.0,
    ("analysis", "poor_threshold"): 0.0,
    ("analysis", "poor_below_quality"): 0.0,
    ("analysis", "poor_above_noise"): 0.0,
    ("learn", "every_reviews"): 0,
    ("ui", "refresh_seconds"): 0.0,
    ("ui", "burst_gap_seconds"): 0.0,
}
_MAXIMUMS = {
    ("analysis", "poor_threshold"): 1.0,
    ("analysis", "poor_below_quality"): 1.0,
    ("ui", "port"): 65535,
}


def _convert(section: str, key: str, value, annotation, base_dir: Path):
    """Convert one TOML value to the annotated type, or raise ConfigError."""
    where = f"[{section}] {key}"
    origin = typing.get_origin(annotation)
    if annotation == (Path | str):  # a database: a server URL stays as it is, anything else is a file path
        if isinstance(value, str) and "://" in value:
            return _database_url(where, value)
        annotation = Path
    if origin is types.UnionType and set(typing.get_args(annotation)) == {Path, type(None)}:
        return _convert(section, key, value, Path, base_dir)  # TOML has no null: a given value is a path
    if annotation is Path:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a path string, got {value!r}")
        path = Path(value).expanduser()
        return path if path.is_absolute() else (base_dir / path)
    if origin is tuple:
        (item_type, _ellipsis) = typing.get_args(annotation)
        if not isinstance(value, list):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        return tuple(_convert(section, key, item, item_type, base_dir) for item in value)
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise ConfigError(f"{where} must be a table of strings, got {value!r}")
        return dict(value)
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported setting type {annotation!r}")  # a bug in this module, not in config


def _database_url(where: str, value: str) -> str:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError as error:
        raise ConfigError(f"{where} is not a valid URL ({error}): {value!r}") from None
    if parts.scheme not in ("postgresql", "postgres"):
        raise ConfigError(f"{where} must be a SQLite file path or a postgresql:// URL, got scheme {parts.scheme!r}")
    if parts.password is not None:
        raise ConfigError(
            f"{where} must not hold a password (config files get read); set [index] password_env "
            "to the environment variable holding it"
        )
    if not parts.path.strip("/"):
        raise ConfigError(f"{where} must name the database: postgresql://user@host:port/DBNAME")
    return value


def _build_section(section_name: str, section_cls, raw: dict, base_dir: Path):
    if not isinstance(raw, dict):
        raise ConfigError(f"[{section_name}] must be a table")
    hints = typing.get_type_hints(section_cls)
    known = {f.name for f in dataclasses.fields(section_cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(
            f"unknown key(s) in [{section_name}]: {', '.join(unknown)}; known keys: {', '.join(sorted(known))}"
        )
    values = {}
    for key, value in raw.items():
        converted = _convert(section_name, key, value, hints[key], base_dir)
        choices = _CHOICES.get((section_name, key))
        if choices and converted not in choices:
            listed = ", ".join(choice or '""' for choice in choices)
            raise ConfigError(f"[{section_name}] {key} must be one of {listed}, got {value!r}")
        minimum = _MINIMUMS.get((section_name, key))
        maximum = _MAXIMUMS.get((section_name, key))
        if minimum is not None and maximum is not None and not minimum <= converted <= maximum:
            raise ConfigError(f"[{section_name}] {key} must lie between {minimum} and {maximum}, got {value!r}")
        if minimum is not None and converted < minimum:
            raise ConfigError(f"[{section_name}] {key} must be at least {minimum}, got {value!r}")
        values[key] = converted
    defaults = section_cls()
    # Default relative paths are relative to the config file's folder too.
    for f in dataclasses.fields(section_cls):
        if f.name in values:
            continue
        default = getattr(defaults, f.name)
        if isinstance(default, Path) and not default.is_absolute():
            values[f.name] = base_dir / default
        elif isinstance(default, tuple) and default and isinstance(default[0], Path):
            values[f.name] = tuple(p if p.is_absolute() else base_dir / p for p in default)
    return section_cls(**values)


def settings_from_dict(raw: dict, base_dir: Path, source: Path | None = None) -> Settings:
    sections = {f.name: f for f in dataclasses.fields(Settings) if f.name != "source"}
    unknown = sorted(set(raw) - set(sections))
    if unknown:
        raise ConfigError(
            f"unknown section(s): {', '.join('[' + u + ']' for u in unknown)}; "
            f"known sections: {', '.join(sorted(sections))}"
        )
    hints = typing.get_type_hints(Settings)
    built = {name: _build_section(name, hints[name], raw.get(name, {}), base_dir) for name in sections}
    _check_render_cache_apart(built["ui"].thumbnail_cache, built["watch"].folders)
    return Settings(**built, source=source)


def _check_render_cache_apart(cache: Path, watch_folders: tuple[Path, ...]) -> None:
    """The review UI serves files from its cache: strangers who can drop files into a watch folder
    must not be able to drop them there, nor the cache hold the originals."""
    cache = cache.resolve()
    for folder in (f.resolve() for f in watch_folders):
        if cache.is_relative_to(folder) or folder.is_relative_to(cache):
            raise ConfigError(
                f"[ui] thumbnail_cache {cache} overlaps the watch folder {folder} ([watch] folders); "
                "keep the cache outside every watch folder (e.g. next to the index)"
            )


def load_settings(path: Path | str | None = None) -> Settings:
    """Load settings from ``path``; when the default ./config.toml is absent, use the defaults."""
    explicit = path is not None
    path = Path(path) if explicit else DEFAULT_CONFIG_PATH
    if not path.exists():
        if explicit and path != DEFAULT_CONFIG_PATH:
            raise ConfigError(f"config file not found: {path}")
        return settings_from_dict({}, base_dir=Path.cwd())
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror}") from None
    try:
        return settings_from_dict(raw, base_dir=path.resolve().parent, source=path.resolve())
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None


def check_watch_folders(settings: Settings) -> None:
    """ConfigError naming the file, ``[watch] folders`` and each folder that does not exist."""
    missing = [str(folder) for folder in settings.watch.folders if not folder.is_dir()]
    if missing:
        where = f"{settings.source}: " if settings.source else ""
        raise ConfigError(f"{where}[watch] folders: not an existing folder: {', '.join(missing)}")
