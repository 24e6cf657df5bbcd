"""Guessing passwords is slow and seen: per-user and per-address throttling with back-off, and a log line per failure.

``LoginThrottle`` counts failed logins per user name (known or not: a lock-out must not reveal
which names exist) and per client address. After a few free failures each key must wait, the wait
doubling with every further failure up to a cap; the counts are forgotten after a quiet period. An
attempt counts as a failure from the moment it starts, so parallel guesses are throttled too; a
success takes its own count back and clears the user's record.

``LoginGate.authenticate`` is Gradio's ``auth=`` callable: it refuses a throttled attempt with HTTP 429 before
looking at the password, runs the PBKDF2 check off the event loop, and logs every failure with the
user name and the address, never the password. ``ClientAddressMiddleware`` tells it the address
(Gradio passes only the user name and password).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import HTTPException

log = logging.getLogger(__name__)

# Set per request by ClientAddressMiddleware; "unknown" when the server was called without one.
client_address: contextvars.ContextVar[str] = contextvars.ContextVar("client_address", default="unknown")
# User names are chosen by whoever types them: bounded before they become keys or log text.
_NAME_LIMIT = 64


def printable_name(username: str) -> str:
    """A user name as one bounded, printable log token (its repr: no newlines, no escapes into the log)."""
    return repr(username[:_NAME_LIMIT]) + ("..." if len(username) > _NAME_LIMIT else "")


@dataclass
class _Failures:
    count: int
    last: float  # clock time of the latest failure


@dataclass(frozen=True)
class ThrottlePolicy:
    free_failures: int  # failures allowed before any wait
    first_wait: float = 1.0  # seconds after the first failure beyond the free ones; doubles after each
    max_wait: float = 300.0
    forget_after: float = 3600.0  # a key's failures are forgotten after this long without one

    def wait(self, failures: int) -> float:
        if failures < self.free_failures:
            return 0.0
        return min(self.max_wait, self.first_wait * 2 ** (failures - self.free_failures))


# A reviewer mistyping a few times is not slowed; many people behind one NAT share an address.
USER_POLICY = ThrottlePolicy(free_failures=5)
ADDRESS_POLICY = ThrottlePolicy(free_failures=20)


class LoginThrottle:
    """Failed-login counts per user name and per address (thread-safe, bounded in memory)."""

    def __init__(
        self,
        user_policy: ThrottlePolicy = USER_POLICY,
        address_policy: ThrottlePolicy = ADDRESS_POLICY,
        *,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._policies = {"user": user_policy, "address": address_policy}
        self._clock = clock
        self._max_keys = max_keys
        self._failures: OrderedDict[tuple[str, str], _Failures] = OrderedDict()
        self._lock = threading.Lock()

    def _current(self, key: tuple[str, str], now: float) -> _Failures | None:
        entry = self._failures.get(key)
        if entry is not None and now - entry.last > self._policies[key[0]].forget_after:
            del self._failures[key]
            return None
        return entry

    def retry_after(self, username: str, address: str) -> float:
        """Seconds until an attempt for ``username`` from ``address`` is allowed (0: now)."""
        now = self._clock()
        with self._lock:
            waits = [0.0]
            for key in (("user", username[:_NAME_LIMIT]), ("address", address)):
                entry = self._current(key, now)
                if entry is not None:
                    waits.append(entry.last + self._policies[key[0]].wait(entry.count) - now)
            return max(waits)

    def begin(self, username: str, address: str) -> float:
        """Count an attempt as failed unless ``succeeded`` says otherwise; returns ``retry_after``
        (0 means the attempt may go on; otherwise nothing is counted)."""
        wait = self.retry_after(username, address)
        if wait > 0:
            return wait
        now = self._clock()
        with self._lock:
            for key in (("user", username[:_NAME_LIMIT]), ("address", address)):
                entry = self._current(key, now)
                if entry is None:
                    entry = self._failures[key] = _Failures(0, now)
                entry.count, entry.last = entry.count + 1, now
                self._failures.move_to_end(key)
            while len(self._failures) > self._max_keys:
                self._failures.popitem(last=False)  # the longest quiet key goes first
        return 0.0

    def succeeded(self, username: str, address: str) -> None:
        with self._lock:
            self._failures.pop(("user", username[:_NAME_LIMIT]), None)
            entry = self._failures.get(("address", address))
            if entry is not None:
                entry.count = max(0, entry.count - 1)

    def failures(self, username: str, address: str) -> tuple[int, int]:
        """(failures counted for the user name, for the address), for logs and tests."""
        with self._lock:
            user = self._failures.get(("user", username[:_NAME_LIMIT]))
            by_address = self._failures.get(("address", address))
            return (user.count if user else 0), (by_address.count if by_address else 0)


class LoginGate:
    """``authenticate`` is Gradio's ``auth=``: throttle, check the password off the event loop, log.

    It must be a coroutine function, not an object with an async ``__call__``: Gradio awaits only what
    ``inspect.iscoroutinefunction`` recognises, and would take the unawaited coroutine for a yes.
    """

    def __init__(self, check: Callable[[str, str], bool], throttle: LoginThrottle | None = None):
        self.check = check
        self.throttle = throttle or LoginThrottle()

    async def authenticate(self, username: str, password: str) -> bool:
        address = client_address.get()
        wait = self.throttle.begin(username, address)
        if wait > 0:
            log.warning("login refused for user %s from %s: too many failed logins, retry in %d s",
                        printable_name(username), address, math.ceil(wait))  # fmt: skip
            raise HTTPException(
                status_code=429,
                detail=f"Too many failed logins: try again in {math.ceil(wait)} s.",
                headers={"Retry-After": str(math.ceil(wait))},
            )
        matched = await asyncio.to_thread(self.check, username, password)
        if matched:
            self.throttle.succeeded(username, address)
            log.info("login: user %s from %s", printable_name(username), address)
        else:
            user_failures, address_failures = self.throttle.failures(username, address)
            log.warning("failed login for user %s from %s (%d failure(s) for the user, %d from the address)",
                        printable_name(username), address, user_failures, address_failures)  # fmt: skip
        return matched


class ClientAddressMiddleware:
    """ASGI middleware: the connecting address of each request, for ``LoginGate`` (behind a reverse
    proxy this is the proxy's address)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        token = client_address.set(client[0] if client else "unknown")
        try:
            await self.app(scope, receive, send)
        finally:
            client_address.reset(token)
