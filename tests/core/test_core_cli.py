"""The CLI shell: light imports, plugin failures as one line, ``plugins list``, ``config validate/show``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from medgr2.config import dump_yaml
from medgr2.testing import fake_config_data

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "transformers", "trl", "accelerate", "peft", "datasets", "openai", "nltk", "google.genai", "sklearn",
         "scipy")
"""Modules that ``--help``, ``plugins list`` and every plugin.py must not import."""


def run_cli(*args: str, cwd: Path | None = None, autoload: bool = False, **env: str) -> subprocess.CompletedProcess:
    """Run ``medgr2 ARGS`` in a fresh interpreter (entry points off unless ``autoload``)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MEDGR2_")}
    environ.update(env)
    if not autoload:
        environ["MEDGR2_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    return subprocess.run([sys.executable, "-c", "from medgr2.cli import main; main()", *args],
                          cwd=cwd or REPO, env=environ, check=False, capture_output=True, text=True, timeout=120)


def heavy_modules_after(code: str) -> dict:
    """Run ``code`` in a fresh interpreter (built-in plugins autoloaded); report heavy modules imported."""
    body = textwrap.indent(textwrap.dedent(code).strip(), "    ")
    script = (
        "import json, sys, warnings\nwarnings.simplefilter('ignore')\nout = {}\n"
        f"try:\n{body}\nexcept SystemExit:\n    pass\n"
        f"heavy = {HEAVY!r}\n"
        "out['heavy'] = sorted(m for m in sys.modules if m in heavy or m.startswith(tuple(h + '.' for h in heavy)))\n"
        "sys.__stderr__.write('\\nRESULT ' + json.dumps(out) + '\\n')\n"
    )
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MEDGR2_")}
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=environ, check=False, capture_output=True, text=True,
                          timeout=120)
    line = [ln for ln in proc.stderr.splitlines() if ln.startswith("RESULT ")]
    assert line, proc.stderr[-3000:]
    return json.loads(line[-1][len("RESULT "):])



def test_help_imports_nothing_heavy():
    result = heavy_modules_after("""
        from medgr2.cli import main
        main(["--help"])
    """)
    assert result["heavy"] == []


def test_plugins_list_imports_nothing_heavy():
    """Listing loads every built-in plugin.py (they must be light: lazy targets only)."""
    result = heavy_modules_after("""
        from medgr2.cli import main
        main(["plugins", "list", "--json"])
    """)
    assert result["heavy"] == []


def test_every_builtin_plugin_loads_and_registers_lightly():
    result = heavy_modules_after("""
        from medgr2.plugins import load_plugins, build_registry
        ps = load_plugins(strict=False)
        reg = build_registry(ps)
        out["failures"] = ps.failures
        out["plugins"] = {n: i.distribution for n, i in ps.infos.items()}
        out["kinds"] = sorted({e.kind for e in reg})
    """)
    assert result["heavy"] == [], "a plugin.py imports a heavy library at module level"
    assert result["failures"] == []
    builtin = {n for n, dist in result["plugins"].items() if dist == "medgr2"}
    assert {"datasets", "generation", "reward", "filters", "hf", "trl", "eval"} <= builtin
    from medgr2.kinds import KIND_NAMES as KINDS

    assert sorted(result["kinds"]) == sorted(KINDS), "every kind has at least one built-in component"


def test_help_lists_the_root_plugin_options():
    proc = run_cli("--help")
    assert proc.returncode == 0, proc.stderr
    for flag in ("--plugin", "--no-plugin", "--strict-plugins", "plugins", "config"):
        assert flag in proc.stdout


def test_plugins_list_json_with_a_plugin_module():
    proc = run_cli("--plugin", "medgr2.testing", "plugins", "list", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert isinstance(rows, list) and rows
    assert {"kind", "name", "plugin", "distribution", "version"} <= set(rows[0])
    fakes = {(r["kind"], r["name"]) for r in rows if r["plugin"] == "medgr2.testing"}
    assert ("generator", "fake") in fakes and ("reward_model", "fake") in fakes
    gen = next(r for r in rows if r["kind"] == "generator" and r["name"] == "fake")
    assert gen["target"] == "medgr2.testing:FakeGenerator"
    assert gen["distribution"] == "medgr2" and gen["version"]  # found for a dotted-module plugin too
    assert proc.stderr == ""


def test_plugins_list_table():
    proc = run_cli("--plugin", "medgr2.testing", "plugins", "list", COLUMNS="160")
    assert proc.returncode == 0, proc.stderr
    header, *lines = proc.stdout.splitlines()
    assert header.split()[:5] == ["kind", "name", "plugin", "distribution", "description"]
    assert any(ln.split()[:3] == ["generator", "fake", "medgr2.testing"] for ln in lines)


def test_a_broken_plugin_prints_one_line_and_the_cli_keeps_working(tmp_path):
    broken = tmp_path / "broken_plugin.py"
    broken.write_text("import definitely_not_installed_xyz\n")
    proc = run_cli("--plugin", str(broken), "--plugin", "medgr2.testing", "plugins", "list", "--json")
    assert proc.returncode == 0, proc.stderr
    assert any(r["name"] == "fake" for r in json.loads(proc.stdout))
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"medgr2: warning: plugin {str(broken)!r} failed to load: ModuleNotFoundError")
    assert "MEDGR2_STRICT_PLUGINS=1" in lines[0]


@pytest.mark.parametrize("how", ["env", "flag"])
def test_strict_plugins_make_a_broken_plugin_an_error(tmp_path, how):
    broken = tmp_path / "broken_plugin.py"
    broken.write_text("raise RuntimeError('half-installed')\n")
    args = ["--plugin", str(broken), "plugins", "list"]
    proc = run_cli(*args, MEDGR2_STRICT_PLUGINS="1") if how == "env" else run_cli("--strict-plugins", *args)
    assert proc.returncode == 2
    assert "error:" in proc.stderr and "RuntimeError: half-installed" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_no_plugin_blocks_a_plugin():
    proc = run_cli("--plugin", "medgr2.testing", "--no-plugin", "medgr2.testing", "plugins", "list", "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout) == []


def test_config_validate_reports_three_mistakes_and_writes_nothing(tmp_path):
    data = fake_config_data()
    data["seedd"] = 3
    data["cycles"] = "many"
    data["generation"]["generator"]["name"] = "fakee"
    (tmp_path / "bad.yaml").write_text(dump_yaml(data))
    before = sorted(p.name for p in tmp_path.rglob("*"))
    proc = run_cli("--plugin", "medgr2.testing", "config", "validate", "bad.yaml", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stdout == ""
    err = " ".join(proc.stderr.split())  # undo console wrapping
    assert "3 problem(s) in the configuration bad.yaml" in err
    assert "seedd: unknown key. Did you mean 'seed'?" in err
    assert "cycles: Input should be a valid integer" in err
    assert "generation.generator.name: unknown generator 'fakee'. Did you mean 'fake'?" in err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_config_validate_ok_and_show(tmp_path):
    (tmp_path / "good.toml").write_text(
        "seed = 5\n" + "\n".join(f"# {k}" for k in ("generated by the test",)) + "\n")
    data = fake_config_data()
    data["seed"] = 5
    (tmp_path / "good.yaml").write_text(dump_yaml(data))
    proc = run_cli("--plugin", "medgr2.testing", "config", "validate", "good.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "good.yaml: OK"
    proc = run_cli("--plugin", "medgr2.testing", "config", "show", "good.yaml", "--resolved",
                   "--set", "filters.steps.0.options.tau=2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    import yaml

    shown = yaml.safe_load(proc.stdout)
    assert shown["seed"] == 5 and shown["filters"]["steps"][0]["options"] == {"tau": 2.0}
    assert shown["generation"]["generator"]["options"]["n_options"] == 4  # defaults filled in


def test_config_validate_missing_file_exits_2(tmp_path):
    proc = run_cli("config", "validate", "nope.yaml", cwd=tmp_path)
    assert proc.returncode == 2 and "does not exist" in proc.stderr


def test_a_name_collision_is_a_clear_error(tmp_path):
    body = ("from medgr2 import hookimpl\n\n@hookimpl\ndef medgr2_register_filters(registry):\n"
            "    registry.add('same', 'builtins:dict')\n")
    (tmp_path / "one.py").write_text(body)
    (tmp_path / "two.py").write_text(body)
    args = ("--plugin", str(tmp_path / "one.py"), "--plugin", str(tmp_path / "two.py"), "plugins", "list")
    proc = run_cli("--strict-plugins", *args)
    assert proc.returncode == 2
    assert "filter 'same' is registered twice (by plugin 'one' and by 'two')" in " ".join(proc.stderr.split())
    assert "Traceback" not in proc.stderr
    proc = run_cli(*args)  # not strict: plugin 'two' is skipped with a warning (issue 19)
    assert proc.returncode == 0, proc.stderr
    assert "registered twice (by plugin 'one' and by 'two')" in " ".join(proc.stderr.split())


def test_no_plugin_skips_a_builtin():
    proc = run_cli("--no-plugin", "hf", "plugins", "list", "--json", autoload=True)
    assert proc.returncode == 0, proc.stderr
    plugins = {r["plugin"] for r in json.loads(proc.stdout)}
    assert "hf" not in plugins and "datasets" in plugins


def test_plugins_list_by_kind():
    proc = run_cli("--plugin", "medgr2.testing", "plugins", "list", "--kind", "filter", "--json")
    assert proc.returncode == 0, proc.stderr
    assert [(r["kind"], r["name"]) for r in json.loads(proc.stdout)] == [("filter", "fake")]
    proc = run_cli("plugins", "list", "--kind", "generators")
    assert proc.returncode == 2 and "Did you mean 'generator'" in proc.stderr
