"""Login timing: does the answer to a wrong password reveal whether the user name exists?

Serves the review app on a free loopback port with one reviewer whose hash is made by
``pixelperfect hash-password`` (its default rounds), then times POST /login with a wrong password
for that reviewer and for unknown names, interleaved, and reports the medians and their ratio
(1.0: indistinguishable). It stays under the throttle's free failures (5 per name, 20 per address),
so the figures are the password check's, not the back-off's.

Usage: .venv/bin/python bench/bench_logins.py [--repeat 4]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=4, help="logins per kind (at most 4: the free failures)")
    args = parser.parse_args()
    repeat = max(1, min(args.repeat, 4))

    from review_ui.auth import hash_password, load_credentials
    from tests.ui_support import review_setup, served_app

    with tempfile.TemporaryDirectory() as work:
        setup = review_setup(Path(work), users={"ann": hash_password("the-real-password")})
        try:
            with served_app(setup.settings, setup.service, load_credentials(setup.settings.ui.users)) as url:
                known, unknown = [], []
                for i in range(repeat):
                    for user, samples in (("ann", known), (f"nobody{i}", unknown)):
                        start = time.perf_counter()
                        response = httpx.post(f"{url}/login", data={"username": user, "password": "wrong"}, timeout=60)
                        samples.append(time.perf_counter() - start)
                        assert response.status_code == 400, response.status_code
        finally:
            setup.close()
    known_ms, unknown_ms = statistics.median(known) * 1000, statistics.median(unknown) * 1000
    print("| login with a wrong password | median ms |")
    print("|---|---|")
    print(f"| existing user | {known_ms:.1f} |")
    print(f"| unknown user | {unknown_ms:.1f} |")
    print(f"| ratio unknown / existing | {unknown_ms / known_ms:.2f} |")


if __name__ == "__main__":
    main()
