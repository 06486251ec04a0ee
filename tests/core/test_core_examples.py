"""The examples: an installed third-party plugin package and an ad hoc single-file plugin."""

from __future__ import annotations

import doctest
import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from medgr2.plugins import load_registry
from medgr2.testing import make_context, make_sample

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "examples" / "thirdparty_plugin"
ADHOC = REPO / "examples" / "adhoc_plugin.py"


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDGR2_") and k != "PYTHONPATH"}
    env.update(extra)
    return env


def cli(*args: str, env: dict[str, str], cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from medgr2.cli import main; main()", *args], env=env, cwd=cwd,
                          check=False, capture_output=True, text=True, timeout=120)


def write_dist_info(src: Path, site: Path) -> None:
    """What ``pip install`` leaves behind, written by hand: the package plus a dist-info with its entry points."""
    import tomllib

    project = tomllib.loads((src / "pyproject.toml").read_text())["project"]
    shutil.copytree(src / "medgr2_yesno", site / "medgr2_yesno")
    info = site / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    groups = "".join(f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items())
                     for group, eps in project["entry-points"].items())
    (info / "entry_points.txt").write_text(groups)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The example package installed (no deps, offline) into a fresh folder; returns that folder.

    ``pip install`` builds it with the environment's setuptools; where setuptools is absent the
    dist-info is written by hand, which importlib.metadata reads the same way.
    """
    tmp = tmp_path_factory.mktemp("thirdparty")
    src = tmp / "src"
    shutil.copytree(PACKAGE, src, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
    site = tmp / "site"
    if importlib.util.find_spec("setuptools") is None:
        write_dist_info(src, site)
    else:
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
             "--disable-pip-version-check", "--target", str(site), str(src)],
            check=False, capture_output=True, text=True, timeout=300,
        )
        assert proc.returncode == 0, proc.stderr
    assert (site / "medgr2_yesno-0.2.0.dist-info" / "entry_points.txt").is_file()
    return site


def test_hand_written_dist_info_matches_what_pip_writes(tmp_path):
    write_dist_info(PACKAGE, tmp_path)
    dist = next(d for d in importlib.metadata.distributions(path=[str(tmp_path)]))
    assert (dist.metadata["Name"], dist.version) == ("medgr2-yesno", "0.2.0")
    assert [(ep.group, ep.name, ep.value) for ep in dist.entry_points] == [("medgr2", "yesno", "medgr2_yesno.plugin")]


def test_installed_package_is_found_through_its_entry_point(installed):
    env = clean_env(PYTHONPATH=str(installed), MEDGR2_DISABLE_PLUGIN_AUTOLOAD="1")
    proc = cli("--plugin", "yesno", "plugins", "list", "--json", env=env)  # an entry-point name as --plugin
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert rows == [{
        "kind": "generator", "name": "yesno", "plugin": "yesno", "distribution": "medgr2-yesno", "version": "0.2.0",
        "target": "medgr2_yesno.generator:YesNoGenerator",
        "description": "Yes/no questions from one label of each seed item",
    }]


def test_installed_package_is_autoloaded_beside_the_builtins(installed):
    proc = cli("plugins", "list", "--json", env=clean_env(PYTHONPATH=str(installed)))
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    mine = [r for r in rows if r["plugin"] == "yesno"]
    assert [(r["kind"], r["name"], r["distribution"]) for r in mine] == [("generator", "yesno", "medgr2-yesno")]
    assert any(r["distribution"] == "medgr2" for r in rows)  # the built-ins are listed too


def test_installed_package_is_used(installed, tmp_path):
    script = textwrap.dedent(f"""
        import json
        from medgr2.plugins import load_registry
        from medgr2.testing import make_context, make_seed_item
        registry = load_registry(["yesno"], autoload=False)
        gen = registry.create("generator", "yesno", {{"negative_ratio": 0.0}})
        result = gen.generate([make_seed_item(i) for i in range(3)], make_context({str(tmp_path)!r}))
        print(json.dumps({{"module": type(gen).__module__, "file": __import__(type(gen).__module__).__file__,
                          "samples": [s.model_dump(mode="json") for s in result.samples]}}))
    """)
    proc = subprocess.run([sys.executable, "-c", script], env=clean_env(PYTHONPATH=str(installed)), cwd=tmp_path,
                          check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["module"] == "medgr2_yesno.generator"
    assert Path(out["file"]).is_relative_to(installed)  # the installed copy, not the source tree
    assert [s["answer"] for s in out["samples"]] == ["yes"] * 3
    assert all(s["options"] == ["yes", "no"] and s["provenance"]["generator"] == "yesno" for s in out["samples"])


def test_the_example_package_tests_itself_with_medgr2_testing(tmp_path):
    """Its tests use the medgr2_* fixtures, which pytest finds through medgr2's pytest11 entry point."""
    src = tmp_path / "src"
    shutil.copytree(PACKAGE, src, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], cwd=src,
                          env=clean_env(PYTHONPATH=str(src)), check=False, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 passed" in proc.stdout


def test_adhoc_plugin_is_listed():
    proc = cli("--plugin", "examples/adhoc_plugin.py", "plugins", "list", "--json",
               env=clean_env(MEDGR2_DISABLE_PLUGIN_AUTOLOAD="1"))
    assert proc.returncode == 0, proc.stderr
    rows = {(r["kind"], r["name"]): r for r in json.loads(proc.stdout)}
    assert set(rows) == {("filter", "max_words"), ("reward_term", "brevity")}
    assert rows[("filter", "max_words")]["plugin"] == "adhoc_plugin"
    assert rows[("filter", "max_words")]["distribution"] is None


def test_adhoc_plugin_is_used(tmp_path):
    registry = load_registry([str(ADHOC)], autoload=False, strict=True, env=False)
    keep_short = registry.create("filter", "max_words", {"limit": 5})
    samples = [make_sample("Is this normal?"), make_sample("Which of these findings is visible in the left lung?")]
    decisions = keep_short.apply(samples, [], make_context(tmp_path, registry))
    assert [(d.keep, d.reason, d.score) for d in decisions] == [(True, "short_enough", 3.0), (False, "too_long", 10.0)]
    brevity = registry.create("reward_term", "brevity", {"limit": 2})
    assert brevity(["a", "a b c", "a b c d"]) == [1.0, 0.5, 0.0]


def test_adhoc_plugin_doctests():
    registry = load_registry([str(ADHOC)], autoload=False, strict=True, env=False)
    module = sys.modules[registry.entry("reward_term", "brevity").target.__module__]
    result = doctest.testmod(module)
    assert result.attempted >= 2 and result.failed == 0
