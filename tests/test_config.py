from pathlib import Path

import pytest

from pixelperfect_daemon.config import ConfigError, check_watch_folders, load_settings


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_repo_config_loads_and_resolves_paths_against_its_folder():
    repo = Path(__file__).resolve().parent.parent
    settings = load_settings(repo / "config.toml")
    assert settings.watch.folders == (repo / "demo" / "ingest",)
    assert settings.index.database == repo / "demo" / "pixelperfect.sqlite"
    assert settings.ui.host == "127.0.0.1" and settings.ui.port == 7860


def test_values_are_typed(tmp_path):
    settings = load_settings(
        write(tmp_path, '[watch]\nfolders = ["/in", "rel"]\nstable_seconds = 3\n[analysis]\nworkers = 4\n')
    )
    assert settings.watch.folders == (Path("/in"), tmp_path / "rel")
    assert settings.watch.stable_seconds == 3.0 and isinstance(settings.watch.stable_seconds, float)
    assert settings.analysis.workers == 4


@pytest.mark.parametrize(
    "text, message",
    [
        ("[watch]\nfolderz = []\n", "unknown key(s) in [watch]: folderz"),
        ("[wach]\n", "unknown section(s): [wach]"),
        ("[analysis]\nworkers = 0\n", "[analysis] workers must be at least 1"),
        ("[analysis]\nworkers = 'two'\n", "[analysis] workers must be an integer"),
        ("[metadata]\nmode = 'inline'\n", "[metadata] mode must be one of embedded, sidecar"),
        ("[watch]\nfolders = 'x'\n", "[watch] folders must be a list"),
        ("[ui]\nusers = { a = 1 }\n", "[ui] users must be a table of strings"),
        ("[metadata]\npoor_reject_rating = 1\n", "must be true or false"),
        ("not toml = = =", "not valid TOML"),
        ("[analysis]\npoor_threshold = 1.5\n", "[analysis] poor_threshold must lie between 0.0 and 1.0, got 1.5"),
        ("[analysis]\npoor_threshold = -0.1\n", "[analysis] poor_threshold must lie between 0.0 and 1.0"),
        ("[analysis]\npoor_below_quality = 35\n", "[analysis] poor_below_quality must lie between 0.0 and 1.0, got 35"),
        ("[analysis]\npoor_above_noise = -1\n", "[analysis] poor_above_noise must be at least 0.0"),
        ("[ui]\nport = 70000\n", "[ui] port must lie between 1 and 65535, got 70000"),
        ("[ui]\nport = 0\n", "[ui] port must lie between 1 and 65535, got 0"),
        (
            "[metadata]\npoor_color_label = 'red'\n",
            "[metadata] poor_color_label must be one of \"\", Red, Yellow, Green, Blue, Purple, got 'red'",
        ),
        ("[metadata]\npick_label = 'yes'\n", "[metadata] pick_label must be true or false"),
        ("[metadata]\nquality_stars = 1\n", "[metadata] quality_stars must be true or false"),
        ("[metadata]\ntouch_on_change = 'no'\n", "[metadata] touch_on_change must be true or false"),
    ],
)
def test_bad_config_gives_a_clear_error(tmp_path, text, message):
    with pytest.raises(ConfigError) as error:
        load_settings(write(tmp_path, text))
    assert message in str(error.value)
    assert str(tmp_path / "config.toml") in str(error.value)
    assert "\n" not in str(error.value)


def test_explicit_missing_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "nope.toml")


def test_absent_default_config_gives_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert settings.watch.folders == (tmp_path / "demo" / "ingest",)
    assert settings.source is None


def test_index_database_is_a_file_path_or_a_postgresql_url_without_a_password(tmp_path):
    settings = load_settings(write(tmp_path, '[index]\ndatabase = "state/index.sqlite"\n'))
    assert settings.index.database == tmp_path / "state" / "index.sqlite"
    assert (settings.index.password_env, settings.index.claim_timeout) == ("", 60.0)
    url = "postgresql://pixelperfect@db.example.org:5432/pixelperfect"
    settings = load_settings(
        write(tmp_path, f'[index]\ndatabase = "{url}"\npassword_env = "PP_DB_PASSWORD"\nclaim_timeout = 30\n')
    )
    assert (settings.index.database, settings.index.password_env, settings.index.claim_timeout) == (
        url,
        "PP_DB_PASSWORD",
        30.0,
    )
    for bad, message in [
        ("postgresql://pixelperfect:secret@db/pixelperfect", "must not hold a password"),
        ("mysql://db/pixelperfect", "postgresql:// URL"),
        ("postgresql://pixelperfect@db:port/pixelperfect", "not a valid URL"),
        ("postgresql://pixelperfect@db/", "must name the database"),
    ]:
        with pytest.raises(ConfigError, match=rf"config.toml: \[index\] database .*{message}"):
            load_settings(write(tmp_path, f'[index]\ndatabase = "{bad}"\n'))
    with pytest.raises(ConfigError, match=r"\[index\] claim_timeout must be at least 5"):
        load_settings(write(tmp_path, "[index]\nclaim_timeout = 1\n"))


def test_cull_flag_settings_load(tmp_path):
    settings = load_settings(
        write(
            tmp_path,
            (
                '[metadata]\npoor_color_label = "Purple"\npoor_reject_rating = true\npick_label = true\n'
                "quality_stars = true\ntouch_on_change = true\n"
            ),
        )
    )
    metadata = settings.metadata
    assert (metadata.poor_color_label, metadata.poor_reject_rating, metadata.pick_label) == ("Purple", True, True)
    assert metadata.quality_stars and metadata.touch_on_change
    defaults = load_settings(write(tmp_path, ""))
    assert not (defaults.metadata.pick_label or defaults.metadata.quality_stars or defaults.metadata.touch_on_change)


def test_missing_watch_folder_names_file_section_and_key(tmp_path):
    (tmp_path / "there").mkdir()
    there = tmp_path / "there"
    path = write(tmp_path, f'[watch]\nfolders = ["{there}", "gone"]\n')
    settings = load_settings(path)
    with pytest.raises(ConfigError) as error:
        check_watch_folders(settings)
    gone = tmp_path / "gone"
    assert str(error.value) == f"{path}: [watch] folders: not an existing folder: {gone}"
    check_watch_folders(load_settings(write(tmp_path, f'[watch]\nfolders = ["{there}"]\n')))
