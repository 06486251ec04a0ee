"""Fault suite, issue 19 (plugins row): a plugin file that calls ``sys.exit(3)`` at import, or that
registers a name another plugin already took, must not take every command down with it.

Before: ``medgr2 --help`` and every other command exited 3 (the ``SystemExit`` escaped the loader)
or 2 (the duplicate name was a hard error) even in non-strict mode. Now, not strict: one warning
line naming the plugin and the problem, the plugin is skipped, exit 0. Strict mode
(``--strict-plugins`` / ``MEDGR2_STRICT_PLUGINS=1``) still refuses, with exit 2 and no traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from medgr2.plugins import PluginLoadError, PluginWarning, build_registry, load_plugins
from medgr2.registry import RegistryError

EXIT3 = "import sys\nsys.exit(3)\n"
DUPLICATE = (
    "from medgr2 import hookimpl\n\n"
    "@hookimpl\ndef medgr2_register_filters(registry):\n    registry.add('dup_own_filter', 'builtins:dict')\n\n"
    "@hookimpl\ndef medgr2_register_datasets(registry):\n    registry.add('csv', 'builtins:dict')\n"
)


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    """``medgr2 ARGS`` in a fresh interpreter, entry points off (plugins only from the arguments)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MEDGR2_")}
    environ["MEDGR2_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    environ.update(env)
    return subprocess.run([sys.executable, "-c", "from medgr2.cli import main; main()", *args],
                          env=environ, check=False, capture_output=True, text=True, timeout=120)


@pytest.fixture
def exit3(tmp_path: Path) -> Path:
    path = tmp_path / "exit3_plugin.py"
    path.write_text(EXIT3)
    yield path
    sys.modules.pop("medgr2_adhoc_exit3_plugin", None)


@pytest.fixture
def duplicate(tmp_path: Path) -> Path:
    path = tmp_path / "dup_plugin.py"
    path.write_text(DUPLICATE)
    yield path
    sys.modules.pop("medgr2_adhoc_dup_plugin", None)


def _warning_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.startswith("medgr2: warning:")]


@pytest.mark.parametrize("via", ["env", "option"])
@pytest.mark.parametrize("command", [("--help",), ("plugins", "list")])
def test_sys_exit_at_import_is_a_warning_not_an_exit(exit3, via, command):
    args = (*command,) if via == "env" else ("--plugin", str(exit3), *command)
    env = {"MEDGR2_PLUGINS": str(exit3)} if via == "env" else {}
    proc = run_cli(*args, **env)
    assert proc.returncode == 0, proc.stderr  # was 3
    lines = _warning_lines(proc.stderr)
    assert len(lines) == 1, proc.stderr
    assert str(exit3) in lines[0] and "called sys.exit(3) at import" in lines[0] and "skipped" in lines[0]
    assert "Traceback" not in proc.stderr


def test_sys_exit_at_import_is_an_error_in_strict_mode(exit3):
    proc = run_cli("--strict-plugins", "--help", MEDGR2_PLUGINS=str(exit3))
    assert proc.returncode == 2
    assert "called sys.exit(3) at import" in proc.stderr and "strict plugin mode" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = run_cli("--help", MEDGR2_PLUGINS=str(exit3), MEDGR2_STRICT_PLUGINS="1")
    assert proc.returncode == 2 and "called sys.exit(3)" in proc.stderr


def test_sys_exit_at_import_library_level(exit3):
    with pytest.warns(PluginWarning) as record:
        ps = load_plugins([str(exit3)], autoload=False, env=False)
    assert len(record) == 1 and ps.infos == {} and len(ps.failures) == 1
    assert "medgr2_adhoc_exit3_plugin" not in sys.modules
    with pytest.raises(PluginLoadError, match=r"sys.exit\(3\)"):
        load_plugins([str(exit3)], autoload=False, env=False, strict=True)


@pytest.mark.parametrize("command", [("--help",), ("plugins", "list", "--json")])
def test_duplicate_name_skips_that_plugin_with_a_warning(duplicate, command):
    proc = run_cli("--plugin", "datasets", "--plugin", str(duplicate), *command)
    assert proc.returncode == 0, proc.stderr  # was 2
    lines = _warning_lines(proc.stderr)
    assert len(lines) == 1, proc.stderr
    assert "plugin 'dup_plugin'" in lines[0]
    assert "dataset 'csv' is registered twice (by plugin 'datasets' and by 'dup_plugin')" in lines[0]
    if command[0] == "plugins":
        rows = json.loads(proc.stdout)
        assert [r["plugin"] for r in rows if r["kind"] == "dataset" and r["name"] == "csv"] == ["datasets"]
        # skipped whole: its other (non-colliding) entries are gone too
        assert not [r for r in rows if r["plugin"] == "dup_plugin"]


def test_duplicate_name_is_an_error_in_strict_mode(duplicate):
    proc = run_cli("--strict-plugins", "--plugin", "datasets", "--plugin", str(duplicate), "plugins", "list")
    assert proc.returncode == 2
    assert "dataset 'csv' is registered twice" in " ".join(proc.stderr.split())
    assert "Traceback" not in proc.stderr


def test_duplicate_name_library_level(duplicate):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        ps = load_plugins(["datasets", str(duplicate)], autoload=False, env=False)
        registry = build_registry(ps)
    assert [str(w.message) for w in record if issubclass(w.category, PluginWarning)] == [
        f"medgr2: {ps.failures[0]} (skipped)"
    ]
    assert registry.entry("dataset", "csv").plugin == "datasets"
    assert "dup_own_filter" not in registry.names("filter")
    assert "dup_plugin" not in ps.infos and not ps.pm.has_plugin("dup_plugin")
    strict = load_plugins(["datasets", str(duplicate)], autoload=False, env=False, strict=True)
    with pytest.raises(RegistryError, match="registered twice"):
        build_registry(strict)


def test_a_skipped_plugin_gives_back_what_it_overrode(tmp_path):
    path = tmp_path / "greedy_plugin.py"
    path.write_text(
        "from medgr2 import hookimpl\n\n"
        "@hookimpl\ndef medgr2_register_datasets(registry):\n"
        "    registry.add('folders', 'builtins:dict', override=True)\n"
        "    registry.add('csv', 'builtins:dict')\n"
    )
    try:
        with pytest.warns(PluginWarning, match="dataset 'csv' is registered twice"):
            registry = build_registry(load_plugins(["datasets", str(path)], autoload=False, env=False))
    finally:
        sys.modules.pop("medgr2_adhoc_greedy_plugin", None)
    assert registry.entry("dataset", "folders").plugin == "datasets"
    assert registry.entry("dataset", "csv").plugin == "datasets"
    assert not [e for e in registry if e.plugin == "greedy_plugin"]
