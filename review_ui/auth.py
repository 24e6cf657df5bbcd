"""Reviewer accounts from ``[ui] users`` and the rule that off-loopback serving needs them.

A user's entry in config.toml is one of:

* ``"pbkdf2:<iterations>:<salt hex>:<hash hex>"``: PBKDF2-HMAC-SHA256, salted, at least
  ``MIN_PBKDF2_ITERATIONS`` rounds (make one with ``pixelperfect hash-password``),
* ``"env:VARIABLE"``: the plain password is read from that environment variable at start-up and
  kept only as a salted PBKDF2 hash.

Unsalted ``sha256:`` entries are refused. Every check costs one PBKDF2 run, for unknown user
names too (against a dummy hash), and compares in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PBKDF2_ITERATIONS = 600_000
# Below this a stolen config's hashes fall to a GPU in hours.
MIN_PBKDF2_ITERATIONS = 100_000
LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")
HASH_HELPER = "pixelperfect hash-password"


class AuthConfigError(ValueError):
    """A ``[ui] users`` entry is malformed, or serving would be unauthenticated off loopback."""


@dataclass(frozen=True)
class Credential:
    """One user's salted PBKDF2 hash, parsed from config; never holds a plain password."""

    digest: bytes
    salt: bytes
    iterations: int

    def __repr__(self) -> str:  # keeps digests out of logs and tracebacks
        return f"Credential(iterations={self.iterations})"

    def matches(self, password: str) -> bool:
        computed = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8", "surrogatepass"), self.salt, self.iterations)
        return hmac.compare_digest(computed, self.digest)


def _hex(text: str, where: str, what: str) -> bytes:
    try:
        value = bytes.fromhex(text)
    except ValueError:
        raise AuthConfigError(f"{where}: {what} is not hexadecimal") from None
    if not value:
        raise AuthConfigError(f"{where}: {what} is empty")
    return value


def _pbkdf2(password: str, salt: bytes, iterations: int) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", password.encode("utf-8", "surrogatepass"), salt, iterations)


def parse_credential(
    user: str, spec: str, environ: Mapping[str, str] = os.environ, source: Path | None = None
) -> Credential:
    where = f"{source}: [ui] users.{user}" if source is not None else f"[ui] users.{user}"
    scheme, _, rest = spec.partition(":")
    if scheme == "sha256":
        raise AuthConfigError(
            f"{where}: unsalted sha256 hashes are not accepted; make a salted one with `{HASH_HELPER}`"
        )
    if scheme == "pbkdf2":
        parts = rest.split(":")
        if len(parts) != 3 or not parts[0].isdigit():
            raise AuthConfigError(f"{where}: expected pbkdf2:<iterations>:<salt hex>:<hash hex> (see `{HASH_HELPER}`)")
        iterations = int(parts[0])
        if iterations < MIN_PBKDF2_ITERATIONS:
            raise AuthConfigError(
                f"{where}: {iterations} pbkdf2 iterations are too few (at least {MIN_PBKDF2_ITERATIONS}); "
                f"make a new hash with `{HASH_HELPER}`"
            )
        salt = _hex(parts[1], where, "the salt")
        if len(salt) < 8:
            raise AuthConfigError(f"{where}: the salt is too short (at least 8 bytes); see `{HASH_HELPER}`")
        return Credential(_hex(parts[2], where, "the hash"), salt, iterations)
    if scheme == "env":
        if not rest:
            raise AuthConfigError(f"{where}: expected env:<VARIABLE>")
        password = environ.get(rest)
        if not password:
            raise AuthConfigError(f"{where}: environment variable {rest} is not set or empty")
        salt = secrets.token_bytes(16)
        return Credential(_pbkdf2(password, salt, DEFAULT_PBKDF2_ITERATIONS), salt, DEFAULT_PBKDF2_ITERATIONS)
    raise AuthConfigError(f"{where}: unknown password format; use pbkdf2:... (from `{HASH_HELPER}`) or env:<VARIABLE>")


def hash_password(password: str, *, iterations: int = DEFAULT_PBKDF2_ITERATIONS, salt: bytes | None = None) -> str:
    """The ``pbkdf2:...`` config value for ``password``."""
    if not password:
        raise AuthConfigError("the password is empty")
    salt = secrets.token_bytes(16) if salt is None else salt
    return f"pbkdf2:{iterations}:{salt.hex()}:{_pbkdf2(password, salt, iterations).hex()}"


def load_credentials(
    users: Mapping[str, str], environ: Mapping[str, str] = os.environ, source: Path | None = None
) -> dict[str, Credential]:
    """Parse every account up front, so a typo stops start-up instead of locking a reviewer out later."""
    credentials = {}
    for user, spec in users.items():
        if not user or any(c.isspace() for c in user):
            where = f"{source}: [ui] users" if source is not None else "[ui] users"
            raise AuthConfigError(f"{where}: bad user name {user!r}")
        credentials[user] = parse_credential(user, spec, environ, source)
    return credentials


def make_authenticator(credentials: Mapping[str, Credential]) -> Callable[[str, str], bool] | None:
    """``check(user, password)``: one PBKDF2 run whether or not the user exists; None without accounts."""
    if not credentials:
        return None
    # Unknown names are checked against a dummy as slow as the slowest account, so timing does not
    # reveal which names exist.
    iterations = max(c.iterations for c in credentials.values())
    salt = secrets.token_bytes(16)
    dummy = Credential(_pbkdf2(secrets.token_hex(16), salt, iterations), salt, iterations)

    def check(username: str, password: str) -> bool:
        credential = credentials.get(username)
        matched = (credential or dummy).matches(password or "")
        return credential is not None and matched

    return check


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
            f'add [ui] users to the config (see `{HASH_HELPER}`) or use host = "127.0.0.1"'
        )
