"""Reviewer accounts: password formats, constant-time checks, and the off-loopback rule."""

from __future__ import annotations

import hashlib

import pytest
from click.testing import CliRunner

from review_ui import auth
from review_ui.auth import (
    MIN_PBKDF2_ITERATIONS,
    AuthConfigError,
    check_serving_is_safe,
    hash_password,
    is_loopback,
    load_credentials,
    make_authenticator,
)  # fmt: skip
from tests.ui_support import password_spec


def test_pbkdf2_entries_accept_only_the_right_password():
    check = make_authenticator(load_credentials({"ann": password_spec("s3cret")}))
    assert check("ann", "s3cret") is True
    assert check("ann", "S3cret") is False
    assert check("ann", "") is False
    assert check("bob", "s3cret") is False


def test_pbkdf2_entries_round_trip_with_a_random_salt():
    spec = hash_password("correct horse", iterations=MIN_PBKDF2_ITERATIONS)
    assert spec.startswith(f"pbkdf2:{MIN_PBKDF2_ITERATIONS}:")
    assert spec != hash_password("correct horse", iterations=MIN_PBKDF2_ITERATIONS)  # salted
    check = make_authenticator(load_credentials({"ann": spec}))
    assert check("ann", "correct horse") and not check("ann", "correct horse ")


def test_unsalted_sha256_entries_are_refused_naming_the_file_and_the_helper(tmp_path):
    """Finding 5 of issue 22: `sha256:` (unsalted, fast) hashes were accepted."""
    spec = "sha256:" + hashlib.sha256(b"x").hexdigest()
    with pytest.raises(AuthConfigError) as caught:
        load_credentials({"ann": spec}, source=tmp_path / "config.toml")
    message = str(caught.value)
    assert str(tmp_path / "config.toml") in message and "[ui] users.ann" in message
    assert "pixelperfect hash-password" in message


def test_too_few_pbkdf2_rounds_are_refused():
    with pytest.raises(AuthConfigError, match="too few"):
        load_credentials({"ann": hash_password("x", iterations=1000)})


def test_pbkdf2_matches_an_independent_computation():
    salt = bytes.fromhex("00112233445566778899aabbccddeeff")
    expected = hashlib.pbkdf2_hmac("sha256", b"pw", salt, 10).hex()
    assert hash_password("pw", iterations=10, salt=salt) == f"pbkdf2:10:{salt.hex()}:{expected}"


def test_env_entries_read_the_password_from_the_environment():
    credentials = load_credentials({"ann": "env:PP_ANN"}, environ={"PP_ANN": "from-env"})
    check = make_authenticator(credentials)
    assert check("ann", "from-env") and not check("ann", "env:PP_ANN")
    with pytest.raises(AuthConfigError, match="PP_MISSING is not set"):
        load_credentials({"ann": "env:PP_MISSING"}, environ={})


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("hunter2", "unknown password format"),
        ("sha256:abcd", "unsalted sha256 hashes are not accepted"),
        ("pbkdf2:many:00:11", "pbkdf2:<iterations>"),
        (f"pbkdf2:{MIN_PBKDF2_ITERATIONS}:zz:11", "not hexadecimal"),
        (f"pbkdf2:{MIN_PBKDF2_ITERATIONS}:0011:11", "salt is too short"),
        ("env:", "env:<VARIABLE>"),
    ],
)
def test_malformed_entries_stop_start_up_with_the_user_named(spec, message):
    with pytest.raises(AuthConfigError, match=message) as caught:
        load_credentials({"ann": spec})
    assert "users.ann" in str(caught.value) and "\n" not in str(caught.value)


def test_credentials_never_print_their_secrets():
    credential = load_credentials({"ann": "env:PP_ANN"}, environ={"PP_ANN": "topsecret"})["ann"]
    assert "topsecret" not in repr(credential) and "topsecret" not in str(credential)


def test_comparisons_are_constant_time(monkeypatch):
    calls = []
    real = auth.hmac.compare_digest
    monkeypatch.setattr(auth.hmac, "compare_digest", lambda a, b: calls.append(1) or real(a, b))
    check = make_authenticator(load_credentials({"ann": password_spec("x")}))
    check("ann", "y")
    check("nobody", "y")  # unknown users are compared against a dummy too
    assert len(calls) == 2


def test_no_accounts_means_no_login():
    assert make_authenticator({}) is None


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost", "LOCALHOST"])
def test_loopback_hosts(host):
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5", "10.0.0.1", "example.org", "my-nas"])
def test_other_hosts_are_not_loopback(host):
    assert not is_loopback(host)


def test_serving_off_loopback_needs_accounts():
    check_serving_is_safe("127.0.0.1", {})
    check_serving_is_safe("0.0.0.0", load_credentials({"ann": password_spec("x")}))
    with pytest.raises(AuthConfigError, match="refusing to serve the review UI on 0.0.0.0 without reviewer accounts"):
        check_serving_is_safe("0.0.0.0", {})


def _write_config(tmp_path, body: str):
    path = tmp_path / "config.toml"
    path.write_text(body)
    return path


def test_cli_refuses_to_serve_publicly_without_users(tmp_path):
    from review_ui.cli import ui_command

    config = _write_config(tmp_path, '[ui]\nhost = "0.0.0.0"\n')
    result = CliRunner().invoke(ui_command, ["--config", str(config)])
    assert result.exit_code == 1
    assert "refusing to serve the review UI on 0.0.0.0 without reviewer accounts" in result.output
    assert "Traceback" not in result.output


def test_cli_host_option_is_checked_like_the_config(tmp_path):
    from review_ui.cli import ui_command

    config = _write_config(tmp_path, "[ui]\n")
    result = CliRunner().invoke(ui_command, ["--config", str(config), "--host", "192.168.0.10"])
    assert result.exit_code == 1 and "192.168.0.10 without reviewer accounts" in result.output


def test_cli_rejects_a_malformed_user_entry(tmp_path):
    from review_ui.cli import ui_command

    config = _write_config(tmp_path, '[ui]\nusers = {ann = "plaintext"}\n')
    result = CliRunner().invoke(ui_command, ["--config", str(config)])
    assert result.exit_code == 1 and "users.ann: unknown password format" in result.output


def test_cli_hash_password_prints_a_usable_entry(tmp_path):
    from review_ui.cli import ui_command

    result = CliRunner().invoke(ui_command, ["--hash-password"], input="pa55word\npa55word\n")
    assert result.exit_code == 0, result.output
    spec = result.output.strip().splitlines()[-1]
    check = make_authenticator(load_credentials({"ann": spec}))
    assert check("ann", "pa55word") and not check("ann", "pa55wore")


def test_hash_password_is_a_command_of_its_own():
    from pixelperfect_daemon.cli import main

    result = CliRunner().invoke(main, ["hash-password"], input="pa55word\npa55word\n")
    assert result.exit_code == 0, result.output
    spec = result.output.strip().splitlines()[-1]
    assert spec.startswith("pbkdf2:600000:") and "pa55word" not in spec
    check = make_authenticator(load_credentials({"ann": spec}))
    assert check("ann", "pa55word") and not check("ann", "pa55wore")


def test_cli_refuses_a_sha256_user_naming_the_file_and_the_helper(tmp_path):
    from review_ui.cli import ui_command

    config = _write_config(tmp_path, f'[ui]\nusers = {{ann = "sha256:{hashlib.sha256(b"pw").hexdigest()}"}}\n')
    result = CliRunner().invoke(ui_command, ["--config", str(config)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"{config.resolve()}: [ui] users.ann: unsalted sha256" in result.output
    assert "pixelperfect hash-password" in result.output
