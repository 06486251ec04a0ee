"""The docs cannot drift: every hook, config setting, data object and module is documented, and the
plugin guide's code runs."""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from medgr2 import hookspecs
from medgr2.kinds import KIND_NAMES
from medgr2.config import reference_rows
from medgr2.data import DATA_OBJECTS
from medgr2.plugins import load_registry
from medgr2.registry import KindRegistry
from medgr2.testing import make_context, make_sample

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"


def doc(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def hookspec_functions() -> list:
    marker = f"{hookspecs.PROJECT}_spec"
    return [f for name, f in vars(hookspecs).items() if name.startswith("medgr2_") and hasattr(f, marker)]


def code_block_after(text: str, marker: str) -> str:
    """The fenced code block that follows ``<!-- test: marker -->``."""
    match = re.search(rf"<!-- test: {marker} -->\s*```\w*\n(.*?)```", text, re.DOTALL)
    assert match, f"no code block marked {marker!r}"
    return match.group(1)


def test_there_are_hooks_to_document():
    assert len(hookspec_functions()) >= len(hookspecs.REGISTRAR_HOOKS) + 1


@pytest.mark.parametrize("hook", hookspec_functions(), ids=lambda f: f.__name__)
def test_every_hook_is_documented_with_its_signature(hook):
    args = ", ".join(inspect.signature(hook).parameters)
    headings = [ln for ln in doc("plugin-hooks.md").splitlines() if ln.startswith("#")]
    assert f"### {hook.__name__}({args})" in headings, (
        f"docs/plugin-hooks.md needs a heading '### {hook.__name__}({args})' describing this hook")


def test_the_registrar_add_signature_is_documented():
    heading = next((ln for ln in doc("plugin-hooks.md").splitlines() if ln.startswith("### registry.add(")), "")
    params = [p for p in inspect.signature(KindRegistry.add).parameters if p != "self"]
    missing = [p for p in params if not re.search(rf"\b{p}\b", heading)]
    assert heading and not missing, f"docs/plugin-hooks.md: registry.add heading lacks {missing}"


def test_every_kind_is_documented():
    text = doc("plugin-hooks.md") + doc("writing-a-plugin.md")
    assert [k for k in KIND_NAMES if f"`{k}`" not in text] == []


def test_every_config_setting_is_in_the_reference():
    text = doc("config.md")
    missing = [path for path, *_ in reference_rows() if f"`{path}`" not in text]
    assert not missing, (f"docs/config.md lacks {missing}; regenerate its reference with "
                         "`medgr2 config reference --update docs/config.md`")


def test_config_reference_is_not_stale():
    from medgr2.cli.config_cmd import reference_with_components, replace_generated

    text = doc("config.md")
    assert replace_generated(text, reference_with_components(load_registry())) == text, (
        "docs/config.md is stale: run `medgr2 config reference --components --update docs/config.md`")


def test_config_reference_is_between_the_markers():
    from medgr2.cli.config_cmd import BEGIN_MARK, END_MARK, replace_generated

    text = doc("config.md")
    assert text.count(BEGIN_MARK) == 1 and text.count(END_MARK) == 1
    assert replace_generated("a\n" + BEGIN_MARK + "\nold\n" + END_MARK + "\nb", "new") == \
        "a\n" + BEGIN_MARK + "\n\nnew\n\n" + END_MARK + "\nb"


def test_plugin_hooks_doc_is_generated_from_the_kinds_table():
    from medgr2.kinds import replace_hooks_markdown

    text = doc("plugin-hooks.md")
    assert replace_hooks_markdown(text) == text, (
        "docs/plugin-hooks.md is stale: run `medgr2 plugins docs --update docs/plugin-hooks.md`")


def test_every_registrar_hook_comes_from_the_kinds_table():
    from medgr2.kinds import KINDS

    assert {f.__name__ for f in hookspec_functions()} == {k.hook for k in KINDS} | {"medgr2_register_commands"}
    assert "function" not in KIND_NAMES


def test_architecture_names_every_data_object_protocol_and_module():
    text = doc("architecture.md")
    names = [cls.__name__ for cls in DATA_OBJECTS]
    names += ["Modality", "QuestionType", "SeedSet", "StageContext"]
    names += [k.protocol for k in __import__("medgr2.kinds").kinds.KINDS]
    assert [n for n in names if f"`{n}`" not in text and n not in text] == []
    modules = [p.name for p in (REPO / "medgr2").iterdir()
               if (p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists()))]
    plugins = [p.name for p in (REPO / "plugins").iterdir() if p.is_dir() and p.name.startswith("medgr2_")]
    missing = [m for m in modules + plugins if not re.search(rf"^\s+{re.escape(m)}/?\s", text, re.MULTILINE)]
    assert not missing, f"add {missing} to the module map in docs/architecture.md"


def test_relative_links_between_docs_resolve():
    for path in DOCS.glob("*.md"):
        for target in re.findall(r"\]\(([^)#:]+\.md)\)", path.read_text(encoding="utf-8")):
            assert (path.parent / target).is_file(), f"{path.name} links to missing {target}"


def test_the_guide_plugin_file_works(tmp_path):
    (tmp_path / "my_filters.py").write_text(code_block_after(doc("writing-a-plugin.md"), "plugin-file"))
    registry = load_registry([str(tmp_path / "my_filters.py")], autoload=False, strict=True, env=False)
    keep = registry.create("filter", "min_rationale", {"words": 2})
    samples = [make_sample(rationale="clear consolidation"), make_sample(rationale="")]
    decisions = keep.apply(samples, [], make_context(tmp_path))
    assert [(d.keep, d.reason) for d in decisions] == [(True, "rationale_ok"), (False, "rationale_too_short")]


def test_the_guide_test_example_passes(tmp_path):
    """The guide's pytest example runs against its plugin file with only medgr2's pytest11 fixtures."""
    guide = doc("writing-a-plugin.md")
    (tmp_path / "my_filters.py").write_text(code_block_after(guide, "plugin-file"))
    (tmp_path / "test_my_filters.py").write_text(code_block_after(guide, "plugin-test"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDGR2_")}
    env["PYTHONPATH"] = str(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_my_filters.py"],
                          cwd=tmp_path, env=env, check=False, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout
