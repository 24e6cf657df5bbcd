"""The service units run PixelPerfect as a dedicated unprivileged user in a read-only system.

Parsed as systemd reads them (a key may repeat; an empty value resets it), plus
``systemd-analyze security --offline`` where it is installed. ``systemd-analyze verify`` runs in
test_daemon_integration.py.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from conftest import REPO_ROOT

UNITS = ["pixelperfect-daemon.service", "pixelperfect-ui.service"]
# Where the units may write: the watch folders (the example path) and StateDirectory.
WATCH_FOLDER_EXAMPLE = "-/srv/photos"


def service_section(unit: str) -> dict[str, list[str]]:
    """{key: [values in order]} of the [Service] section; an empty assignment clears earlier ones."""
    values: dict[str, list[str]] = {}
    section = None
    for raw in (REPO_ROOT / "systemd" / unit).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        if section != "Service":
            continue
        key, _, value = line.partition("=")
        values[key] = [] if value == "" else [*values.get(key, []), value]
    return values


def one(values: dict[str, list[str]], key: str) -> str | None:
    found = values.get(key)
    return found[-1] if found else None


@pytest.mark.parametrize("unit", UNITS)
def test_the_unit_runs_as_a_dedicated_unprivileged_user(unit):
    service = service_section(unit)
    assert one(service, "User") == "pixelperfect" and one(service, "Group") == "pixelperfect"
    assert "DynamicUser" not in service  # the watch folders' permissions name a fixed user
    assert one(service, "NoNewPrivileges") == "yes"
    assert "CapabilityBoundingSet" in service and service["CapabilityBoundingSet"] == []  # no capabilities at all
    assert service.get("AmbientCapabilities", []) == []


@pytest.mark.parametrize("unit", UNITS)
def test_the_unit_can_write_only_the_watch_folders_and_its_state(unit):
    service = service_section(unit)
    assert one(service, "ProtectSystem") == "strict"
    assert one(service, "ProtectHome") in ("yes", "read-only", "tmpfs")
    assert one(service, "PrivateTmp") == "yes" and one(service, "PrivateDevices") == "yes"
    writable = [path for value in service.get("ReadWritePaths", []) for path in value.split()]
    assert writable == [WATCH_FOLDER_EXAMPLE], writable
    assert one(service, "StateDirectory") == "pixelperfect" and one(service, "StateDirectoryMode") == "0750"
    assert one(service, "WorkingDirectory") == "/var/lib/pixelperfect"


@pytest.mark.parametrize("unit", UNITS)
def test_the_unit_restricts_the_kernel_surface(unit):
    service = service_section(unit)
    for key in (
        "ProtectKernelTunables",
        "ProtectKernelModules",
        "ProtectKernelLogs",
        "ProtectControlGroups",
        "ProtectClock",
        "RestrictSUIDSGID",
        "RestrictNamespaces",
        "LockPersonality",
        "RestrictRealtime",
    ):
        assert one(service, key) == "yes", key
    assert "@system-service" in service.get("SystemCallFilter", [])


def test_only_the_ui_may_use_the_network():
    assert one(service_section("pixelperfect-daemon.service"), "RestrictAddressFamilies") == "AF_UNIX"
    assert one(service_section("pixelperfect-ui.service"), "RestrictAddressFamilies") == "AF_UNIX AF_INET AF_INET6"


def _supports_offline_security() -> bool:
    if shutil.which("systemd-analyze") is None:
        return False
    help_text = subprocess.run(["systemd-analyze", "--help"], capture_output=True, text=True).stdout
    return "--offline" in help_text


@pytest.mark.skipif(not _supports_offline_security(), reason="systemd-analyze security --offline is not available")
@pytest.mark.parametrize("unit", UNITS)
def test_systemd_rates_the_unit_ok(tmp_path, unit):
    local = tmp_path / unit
    local.write_text((REPO_ROOT / "systemd" / unit).read_text().replace("/opt/pixelperfect/venv/bin/pixelperfect",
                                                                        shutil.which("true")))  # fmt: skip
    output = subprocess.run(["systemd-analyze", "security", "--offline=true", "--no-pager", str(local)],
                            capture_output=True, text=True)  # fmt: skip
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", output.stdout + output.stderr)
    assert match, output.stdout + output.stderr
    # systemd's scale: 0 (locked down) to 10 (unprotected); below 2 is rated "OK". Before: 7.7 "EXPOSED".
    assert float(match.group(1)) < 2.0, output.stdout
