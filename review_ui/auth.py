"""Reviewer accounts from ``[ui] users`` and the rule that off-loopback serving needs them.

A user's entry in config.toml is one of:

* ``"pbkdf2:<iterations>:<salt hex>:<hash hex>"``: PBKDF2-HMAC-SHA256 (preferred; make one with
  ``pixelperfect ui --hash-password``),
* ``"sha256:<hex>"``: the SHA-256 of the password (unsalted: prefer pbkdf2),
* ``"env:VARIABLE"``: the plain password is read from that environment variable at start-up.

Passwords are compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass

DEFAULT_PBKDF2_ITERATIONS = 600_000
LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")


class AuthConfigError(ValueError):
    """A ``[ui] users`` entry is malformed, or serving would be unauthenticated off loopback."""


@dataclass(frozen=True)
class Credential:
    """One user's password check, parsed from config; never holds a plain password in a printable field."""

    scheme: str  # "pbkdf2" | "sha256" | "plain" (from the environment)
    digest: bytes
    salt: bytes = b""
    iterations: int = 0

    def __repr__(self) -> str:  # keeps digests and env passwords out of logs and tracebacks
        return f"Credential(scheme={self.scheme!r})"

    def matches(self, password: str) -> bool:
        candidate = password.encode("utf-8")
        if self.scheme == "pbkdf2":
            computed = hashlib.pbkdf2_hmac("sha256", candidate, self.salt, self.iterations)
        elif self.scheme == "sha256":
            computed = hashlib.sha256(candidate).digest()
        else:
            computed = candidate
        return hmac.compare_digest(computed, self.digest)


def _hex(text: str, user: str, what: str) -> bytes:
    try:
        value = bytes.fromhex(text)
    except ValueError:
        raise AuthConfigError(f"[ui] users.{user}: {what} is not hexadecimal") from None
    if not value:
        raise AuthConfigError(f"[ui] users.{user}: {what} is empty")
    return value


def parse_credential(user: str, spec: str, environ: Mapping[str, str] = os.environ) -> Credential:
    scheme, _, rest = spec.partition(":")
    if scheme == "sha256":
        digest = _hex(rest, user, "the sha256 hash")
        if len(digest) != 32:
            raise AuthConfigError(f"[ui] users.{user}: a sha256 hash has 64 hex digits, got {len(rest)}")
        return Credential("sha256", digest)
    if scheme == "pbkdf2":
        parts = rest.split(":")
        if len(parts) != 3 or not parts[0].isdigit() or int(parts[0]) < 1:
            raise AuthConfigError(
                f"[ui] users.{user}: expected pbkdf2:<iterations>:<salt hex>:<hash hex>"
            )
        return Credential("pbkdf2", _hex(parts[2], user, "the hash"), _hex(parts[1], user, "the salt"), int(parts[0]))
    if scheme == "env":
        if not rest:
            raise AuthConfigError(f"[ui] users.{user}: expected env:<VARIABLE>")
        password = environ.get(rest)
        if not password:
            raise AuthConfigError(f"[ui] users.{user}: environment variable {rest} is not set or empty")
        return Credential("plain", password.encode("utf-8"))
    raise AuthConfigError(
        f"[ui] users.{user}: unknown password format; use pbkdf2:..., sha256:<hex> or env:<VARIABLE>"
    )


def hash_password(password: str, *, iterations: int = DEFAULT_PBKDF2_ITERATIONS, salt: bytes | None = None) -> str:
    """The ``pbkdf2:...`` config value for ``password``."""
    if not password:
        raise AuthConfigError("the password is empty")
    salt = secrets.token_bytes(16) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    return f"pbkdf2:{iterations}:{salt.hex()}:{digest.hex()}"


def load_credentials(users: Mapping[str, str], environ: Mapping[str, str] = os.environ) -> dict[str, Credential]:
    """Parse every account up front, so a typo stops start-up instead of locking a reviewer out later."""
    credentials = {}
    for user, spec in users.items():
        if not user or any(c.isspace() for c in user):
            raise AuthConfigError(f"[ui] users: bad user name {user!r}")
        credentials[user] = parse_credential(user, spec, environ)
    return credentials


def make_authenticator(credentials: Mapping[str, Credential]) -> Callable[[str, str], bool] | None:
    """Gradio's ``auth=`` callable, or None when no accounts are configured."""
    if not credentials:
        return None
    # Checked against a dummy when the user is unknown, so timing does not reveal which names exist.
    dummy = Credential("sha256", hashlib.sha256(secrets.token_bytes(16)).digest())

    def authenticate(username: str, password: str) -> bool:
        credential = credentials.get(username)
        matched = (credential or dummy).matches(password or "")
        return credential is not None and matched

    return authenticate


def is_loopback(host: str) -> bool:
    host = host.strip().strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # any other name may resolve to a public interface


def check_serving_is_safe(host: str, credentials: Mapping[str, Credential]) -> None:
    if not credentials and not is_loopback(host):
        raise AuthConfigError(
            f"refusing to serve the review UI on {host} without reviewer accounts: "
            "add [ui] users to the config (see `pixelperfect ui --hash-password`) or use host = \"127.0.0.1\""
        )
