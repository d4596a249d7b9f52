"""The shipped documents stay true: README config table, example config, systemd unit."""

from __future__ import annotations

from pathlib import Path

from archive_node.config import SETTINGS, example_toml

ROOT = Path(__file__).resolve().parents[2]


def test_readme_documents_every_setting():
    readme = (ROOT / "README.md").read_text()
    missing = [s.name for s in SETTINGS if f"`{s.name}`" not in readme]
    assert missing == []


def test_readme_starts_with_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    first_section = readme.split("\n## ", 2)[1]
    assert first_section.startswith("The two commands")
    assert "scripts/run" in first_section and "scripts/test" in first_section


def test_ci_runs_the_readme_test_command():
    assert "scripts/test" in (ROOT / ".ci" / "run").read_text()


def test_example_config_is_current():
    assert (ROOT / "config" / "archive-node.example.toml").read_text() == example_toml()


def test_systemd_unit_is_hardened():
    unit = (ROOT / "systemd" / "archive-node.service").read_text()
    lines = {line.strip() for line in unit.splitlines()}
    for directive in (
        "User=archive-node",
        "Restart=on-failure",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "ReadWritePaths=/var/lib/archive-node",
        "KillSignal=SIGTERM",
    ):
        assert directive in lines, directive
    assert any(
        line.startswith("ExecStart=") and line.endswith("archive-node serve") for line in lines
    )
