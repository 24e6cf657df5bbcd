"""What the running server hands out: the app's own renders (thumbnails, previews, crops), nothing else.

Every refusal is checked while logged in (a 401 would pass for the wrong reason), next to a
positive control that the same route does serve an allowed file.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import os
import socket
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from pixelperfect_daemon.config import IndexSettings
from review_ui.app import allowed_paths, blocked_paths, launch_options
from review_ui.auth import load_credentials
from tests.ui_support import PASSWORD, make_settings, password_spec, review_setup, served_app


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    root = tmp_path_factory.mktemp("security")
    # Outside every allowed folder, next to the watch folder: must never be served.
    (root / "secret.txt").write_text("top secret")
    # The index inside the watch folder (people do this): it must still not be downloadable.
    config = root / "config.toml"
    config.write_text('[ui]\nusers = {ann = "pbkdf2:..."}\n')
    setup = review_setup(root, users={"ann": password_spec(PASSWORD)},
                         index=IndexSettings(database=root / "watch" / "index.sqlite"), source=config)  # fmt: skip
    watch = root / "watch"
    # A stranger's links in the watch folder to the index and the config, by name and by inode.
    (watch / "dblink.jpg").symlink_to(root / "watch" / "index.sqlite")
    os.link(root / "watch" / "index.sqlite", watch / "dbhard.jpg")
    (watch / "cfglink.toml").symlink_to(config)
    os.link(config, watch / "cfghard.jpg")
    thumbnail = setup.service.renders.thumbnail(setup.files["blurry1.jpg"])
    with served_app(setup.settings, setup.service, load_credentials(setup.settings.ui.users)) as url:
        yield setup, url, thumbnail
    setup.close()


@pytest.fixture(scope="module")
def session(app):
    _, url, _ = app
    with httpx.Client(base_url=url) as client:
        response = client.post("/login", data={"username": "ann", "password": PASSWORD})
        assert response.status_code == 200 and response.json() == {"success": True}
        yield client


def _raw_request(base_url: str, raw_path: str, cookie: str) -> tuple[int, bytes]:
    host, port = httpx.URL(base_url).host, httpx.URL(base_url).port
    request = (f"GET {raw_path} HTTP/1.1\r\nHost: {host}:{port}\r\nCookie: {cookie}\r\n"
               "Connection: close\r\n\r\n").encode()  # fmt: skip
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def cookie_header(session: httpx.Client) -> str:
    return "; ".join(f"{name}={value}" for name, value in session.cookies.items())


def test_renders_are_served_when_logged_in_and_originals_never(app, session):
    setup, url, thumbnail = app
    original = setup.files["blurry1.jpg"]
    response = session.get(f"/gradio_api/file={thumbnail}")
    assert response.status_code == 200 and response.content == thumbnail.read_bytes()
    response = session.get(f"/gradio_api/file={original}")
    assert response.status_code == 403 and response.content != original.read_bytes()


def test_nothing_is_served_without_a_login(app):
    setup, url, thumbnail = app
    assert httpx.get(f"{url}/gradio_api/file={thumbnail}").status_code == 401
    assert httpx.get(f"{url}/gradio_api/file={setup.files['blurry1.jpg']}").status_code == 403  # never served


@pytest.mark.parametrize("name", ["dblink.jpg", "dbhard.jpg", "cfglink.toml", "cfghard.jpg"])
def test_links_in_a_watch_folder_to_the_index_or_config_are_refused(app, session, name):
    """Finding 4 of issue 22: `dbhard.jpg` (a hard link to the index) was served as the database."""
    setup, url, _ = app
    link = setup.files["blurry1.jpg"].parent / name
    response = session.get(f"/gradio_api/file={link}")
    assert response.status_code == 403, response.status_code
    assert b"SQLite format" not in response.content and b"pbkdf2" not in response.content


def test_a_hard_link_into_the_render_cache_is_refused(app, session):
    """Even inside the render cache, a second name for the index's bytes is not the app's render."""
    setup, url, thumbnail = app
    planted = setup.service.renders.cache_dir / "planted.jpg"
    os.link(setup.settings.index.database, planted)
    try:
        for route in ("/gradio_api/file=", "/gradio_api/file/"):  # the second is Gradio's deprecated twin
            response = session.get(f"{route}{planted}")
            assert response.status_code == 403 and b"SQLite format" not in response.content, route
        # Control: the deprecated route does serve a real render.
        assert session.get(f"/gradio_api/file/{thumbnail}").status_code == 200
    finally:
        planted.unlink()


@pytest.mark.parametrize(
    "target",
    ["/etc/passwd", "/etc/hostname", "{root}/secret.txt", "{root}/watch/index.sqlite", "{root}/watch/index.sqlite-wal"],
)
def test_absolute_paths_outside_the_allowed_folders_are_refused(app, session, target):
    setup, url, _ = app
    root = setup.files["blurry1.jpg"].parent.parent
    response = session.get(f"/gradio_api/file={target.format(root=root)}")
    assert response.status_code == 403
    assert (
        b"top secret" not in response.content and b"root:" not in response.content and b"SQLite" not in response.content
    )


@pytest.mark.parametrize(
    "traversal",
    [
        "{watch}/../secret.txt",
        "{watch}/../../../../../../etc/passwd",
        "{watch}/%2e%2e/secret.txt",
        "{watch}/..%2fsecret.txt",
        "{cache}/../../secret.txt",
        "{cache}/%2e%2e/%2e%2e/secret.txt",
    ],
)
def test_dot_dot_traversal_out_of_an_allowed_folder_is_refused(app, session, traversal):
    setup, url, thumbnail = app
    watch = setup.files["blurry1.jpg"].parent
    raw_path = "/gradio_api/file=" + traversal.format(watch=watch, cache=setup.settings.ui.thumbnail_cache)
    status, body = _raw_request(url, raw_path, cookie_header(session))
    assert status == 403, (status, body[:200])
    assert b"top secret" not in body and b"root:" not in body
    # Positive control: the same raw request for a file inside the folder works.
    status, body = _raw_request(url, f"/gradio_api/file={quote(str(thumbnail))}", cookie_header(session))
    assert status == 200


def test_the_index_database_and_config_are_blocked_even_inside_a_watch_folder(tmp_path):
    settings = make_settings(tmp_path)
    watch = settings.watch.folders[0]
    settings = dataclasses.replace(
        settings,
        index=dataclasses.replace(settings.index, database=watch / "index.sqlite"),
        source=watch / "config.toml",
    )
    blocked = blocked_paths(settings)
    for name in ("index.sqlite", "index.sqlite-wal", "index.sqlite-shm", "config.toml"):
        assert str((watch / name).resolve()) in blocked
    assert allowed_paths(settings) == [str(settings.ui.thumbnail_cache.resolve())]


def test_launch_options_carry_auth_and_the_folder_rules(tmp_path):
    settings = make_settings(tmp_path, users={"ann": password_spec(PASSWORD)}, host="0.0.0.0")
    options = launch_options(settings, load_credentials(settings.ui.users))
    assert options["server_name"] == "0.0.0.0"
    # Gradio awaits auth only when it is a coroutine function; anything else returning a coroutine is a yes.
    assert inspect.iscoroutinefunction(options["auth"])
    assert asyncio.run(options["auth"]("ann", PASSWORD)) is True
    assert asyncio.run(options["auth"]("ann", "nope")) is False
    assert options["allowed_paths"] == allowed_paths(settings)
    assert options["blocked_paths"] == blocked_paths(settings)
    assert options["ssr_mode"] is False and options["mcp_server"] is False


def test_wrong_passwords_get_no_session(app):
    _, url, _ = app
    response = httpx.post(f"{url}/login", data={"username": "ann", "password": "guess"})
    assert response.status_code == 400 and not response.cookies


def test_api_paths_outside_the_index_are_refused(app, session):
    """/override looks paths up in the index: a traversal cannot name another file."""
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    setup, url, _ = app
    client = Client(url, auth=("ann", PASSWORD), verbose=False)
    watch = setup.files["blurry1.jpg"].parent
    for path in (f"{watch}/../secret.txt", "/etc/passwd", f"{watch}/blurry1.jpg/../../secret.txt"):
        with pytest.raises(AppError, match="not in the index"):
            client.predict(path, "good", None, api_name="/override")
    assert (watch.parent / "secret.txt").read_text() == "top secret"


@pytest.mark.slow  # starts `pixelperfect ui` in a subprocess
def test_the_ui_command_serves_behind_a_login(tmp_path):
    """`pixelperfect ui` as a user starts it: a login wall, and only the allowed folders."""
    import subprocess
    import sys
    import time

    from tests.ui_support import free_port

    port = free_port()
    (tmp_path / "watch").mkdir()
    (tmp_path / "config.toml").write_text(
        f'[watch]\nfolders = ["watch"]\n[index]\ndatabase = "state/index.sqlite"\n'
        f'[ui]\nport = {port}\nthumbnail_cache = "state/thumbnails"\nusers = {{ann = "env:PP_TEST_PASSWORD"}}\n'
    )
    # PYTHONPATH: this checkout's code, not whatever copy the virtual environment has installed.
    env = {**os.environ, "PP_TEST_PASSWORD": PASSWORD, "GRADIO_ANALYTICS_ENABLED": "False",
           "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}  # fmt: skip
    env.pop("GRADIO_TEMP_DIR", None)
    process = subprocess.Popen(
        [sys.executable, "-c", "import sys; from pixelperfect_daemon.cli import main; sys.exit(main())",
         "ui", "--config", str(tmp_path / "config.toml")],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, process.stdout.read()
            assert time.monotonic() < deadline, "the UI did not start within 60 s"
            time.sleep(0.5)
        assert httpx.get(f"{url}/gradio_api/file=/etc/passwd").status_code == 403  # refused before any login
        with httpx.Client(base_url=url) as client:
            assert client.post("/login", data={"username": "ann", "password": PASSWORD}).status_code == 200
            assert client.get("/gradio_api/file=/etc/passwd").status_code == 403
            assert client.get(f"/gradio_api/file={tmp_path / 'config.toml'}").status_code == 403
            assert client.post("/gradio_api/call/search", json={"data": []}).status_code == 200
    finally:
        process.terminate()
        output = process.communicate(timeout=20)[0]
    assert process.returncode == 0, output  # SIGTERM is a clean stop


def test_an_indexed_file_turned_into_a_link_out_of_the_watch_folder_is_not_rendered(tmp_path):
    """The grid and the loupe decode the original: a row whose file became a symlink to a private
    photo outside the watch folders shows a placeholder, not that photo."""
    from tests.ui_support import make_photo

    setup = review_setup(tmp_path)
    try:
        private = make_photo(tmp_path / "private" / "secret.jpg", kind="noisy", seed=9)
        indexed = setup.files["sharp1.jpg"]
        indexed.unlink()
        indexed.symlink_to(private)
        row = setup.service.row(str(indexed))
        (thumbnail,) = setup.service.thumbnails([row])
        inspection = setup.service.inspect(str(indexed))
        loupe = setup.service.loupe(str(indexed))
        placeholder = setup.service.renders.placeholder("not shown")
        assert thumbnail == placeholder and loupe.image == placeholder and inspection.exif == {}
        assert loupe.heatmap is None
        # Control: a regular file in the watch folder is rendered.
        (rendered,) = setup.service.thumbnails([setup.service.row(str(setup.files["sharp2.jpg"]))])
        assert rendered != placeholder and rendered.parent.parent == setup.service.renders.cache_dir
    finally:
        setup.close()


def test_the_render_cache_serves_only_render_types_and_uploads_anything(app, session):
    """A page a browser would run must not come from the cache, even if something wrote one there."""
    from gradio import utils as gr_utils

    setup, url, thumbnail = app
    page = setup.service.renders.cache_dir / "planted.html"
    page.write_text("<script>alert(1)</script>")
    upload_folder = Path(gr_utils.get_upload_folder()) / "pp-test"
    upload_folder.mkdir(parents=True, exist_ok=True)
    upload = upload_folder / "mine.tif"
    upload.write_bytes(b"II*\0reviewer's own upload")
    try:
        assert session.get(f"/gradio_api/file={page}").status_code == 403
        assert session.get(f"/gradio_api/file={upload}").status_code == 200
    finally:
        page.unlink()
        upload.unlink()


@pytest.mark.parametrize("cache", ["watch/thumbnails", "watch", "."])
def test_a_render_cache_overlapping_a_watch_folder_is_a_config_error(tmp_path, cache):
    from pixelperfect_daemon.config import ConfigError, load_settings

    config = tmp_path / "config.toml"
    config.write_text(f'[watch]\nfolders = ["watch"]\n[ui]\nthumbnail_cache = "{cache}"\n')
    with pytest.raises(ConfigError, match=r"config.toml: \[ui\] thumbnail_cache .* overlaps the watch folder"):
        load_settings(config)


def test_a_vanished_original_still_inspects_with_the_missing_tile(tmp_path):
    setup = review_setup(tmp_path)
    try:
        setup.files["sharp1.jpg"].unlink()
        inspection = setup.service.inspect(str(setup.files["sharp1.jpg"]))
        loupe = setup.service.loupe(str(setup.files["sharp1.jpg"]))
        assert loupe.image == setup.service.renders.placeholder("missing") and inspection.exif == {}
    finally:
        setup.close()
