"""The typed registry: add/get/create, lazy targets, collisions, suggestions, options validation."""

from __future__ import annotations

import sys
import textwrap
import uuid

import pytest
from pydantic import BaseModel, ConfigDict, Field

from medgr2.registry import (
    INSTANTIATED_KINDS,
    NoOptions,
    OptionsError,
    Registry,
    RegistryError,
    UnknownComponentError,
    import_target,
    suggest,
)


class GenOptions(BaseModel):
    """Options of :class:`Gen`."""

    model_config = ConfigDict(extra="forbid")
    temperature: float = Field(default=0.0, ge=0, le=2, description="Sampling temperature.")
    n: int = Field(default=1, ge=1, description="Questions per item.")


class Gen:
    """A generator for tests."""

    def __init__(self, options: GenOptions):
        self.options = options


def length_term(completions, scale: float = 1.0, **kwargs):
    """Length of each completion times ``scale``."""
    return [scale * len(c) for c in completions]


@pytest.fixture
def reg() -> Registry:
    return Registry()


@pytest.fixture
def lazy_module(tmp_path, monkeypatch):
    """A uniquely named module on sys.path (not imported yet) with a generator and its options."""
    name = f"lazy_gen_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent('''
        from pydantic import BaseModel, ConfigDict

        class LazyOptions(BaseModel):
            model_config = ConfigDict(extra="forbid")
            size: int = 2

        class LazyGen:
            """A lazily imported generator."""
            def __init__(self, options):
                self.options = options
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_add_get_create_instantiated_kind(reg):
    reg.registrar("generator", plugin="p").add("gen", Gen, config=GenOptions)
    assert reg.names("generator") == ["gen"]
    assert ("generator", "gen") in reg and ("generator", "nope") not in reg
    assert reg.get("generator", "gen") is Gen
    g = reg.create("generator", "gen", {"temperature": 0.7})
    assert isinstance(g, Gen) and g.options == GenOptions(temperature=0.7, n=1)
    entry = reg.entry("generator", "gen")
    assert entry.plugin == "p" and entry.summary() == "A generator for tests."


def test_create_accepts_an_options_instance_and_none(reg):
    reg.registrar("generator").add("gen", Gen, config=GenOptions)
    opts = GenOptions(n=3)
    assert reg.create("generator", "gen", opts).options is opts
    assert reg.create("generator", "gen").options == GenOptions()


def test_function_kind_is_returned_with_options_bound(reg):
    class TermOptions(BaseModel):
        model_config = ConfigDict(extra="forbid")
        scale: float = 1.0

    reg.registrar("reward_term").add("length", length_term, config=TermOptions)
    assert "reward_term" not in INSTANTIATED_KINDS
    defaults = reg.create("reward_term", "length")  # nothing set: the options model's defaults are bound
    assert defaults.keywords == {"scale": 1.0} and defaults(["ab"]) == [2.0]
    reg.registrar("reward_term").add("plain", length_term)  # no options model: the function itself
    assert reg.create("reward_term", "plain") is length_term
    bound = reg.create("reward_term", "length", {"scale": 2.0})
    assert bound(["ab", "abc"]) == [4.0, 6.0]
    assert bound.__name__ == "length_term" and "Length of each" in bound.__doc__


def test_lazy_target_is_not_imported_until_used(reg, lazy_module):
    reg.registrar("generator", plugin="lazy").add(
        "lazy", f"{lazy_module}:LazyGen", config=f"{lazy_module}:LazyOptions", description="Lazy one."
    )
    # listing, looking up, describing and suggesting import nothing
    assert reg.names("generator") == ["lazy"]
    assert [e.name for e in reg] == ["lazy"]
    assert reg.entry("generator", "lazy").summary() == "Lazy one."
    with pytest.raises(UnknownComponentError):
        reg.entry("generator", "lazzy")
    assert lazy_module not in sys.modules
    obj = reg.create("generator", "lazy", {"size": 5})
    assert lazy_module in sys.modules
    assert type(obj).__name__ == "LazyGen" and obj.options.size == 5
    assert reg.entry("generator", "lazy").target is type(obj)  # imported once, then cached


def test_lazy_options_model_is_not_imported_by_validation_of_other_entries(reg, lazy_module):
    reg.registrar("generator").add("lazy", f"{lazy_module}:LazyGen", config=f"{lazy_module}:LazyOptions")
    reg.registrar("generator").add("eager", Gen, config=GenOptions)
    reg.entry("generator", "eager").validate_options({"n": 2})
    assert lazy_module not in sys.modules
    assert reg.entry("generator", "lazy").options_model().__name__ == "LazyOptions"


@pytest.mark.parametrize("spec", ["no_colon", ":attr", "mod:", ""])
def test_malformed_lazy_target(spec):
    with pytest.raises(RegistryError, match="package.module:attribute"):
        import_target(spec)


def test_import_target_resolves_dotted_attributes():
    assert import_target("medgr2.registry:Registry.create") is Registry.create
    assert import_target(len) is len


def test_collision_is_an_error_naming_both_plugins(reg):
    reg.registrar("generator", plugin="first").add("gen", Gen)
    with pytest.raises(RegistryError, match=r"registered twice.*'first'.*'second'.*override=True"):
        reg.registrar("generator", plugin="second").add("gen", Gen)
    assert reg.entry("generator", "gen").plugin == "first"


def test_override_replaces_on_purpose(reg):
    reg.registrar("generator", plugin="first").add("gen", Gen)
    reg.registrar("generator", plugin="second").add("gen", "x.y:Z", override=True)
    assert reg.entry("generator", "gen").plugin == "second"


def test_same_name_in_different_kinds_is_fine(reg):
    reg.registrar("generator").add("fake", Gen)
    reg.registrar("filter").add("fake", Gen)
    assert reg.names("generator") == reg.names("filter") == ["fake"]


def test_unknown_name_suggests_close_names(reg):
    for name in ("gemini", "openai", "labels"):
        reg.registrar("generator").add(name, Gen)
    with pytest.raises(UnknownComponentError) as info:
        reg.create("generator", "gemni")
    msg = str(info.value)
    assert "unknown generator 'gemni'" in msg and "Did you mean 'gemini'?" in msg
    assert "Known: gemini, labels, openai." in msg
    assert isinstance(info.value, KeyError)  # usable as a KeyError too


def test_unknown_name_without_close_match_has_no_suggestion(reg):
    reg.registrar("filter").add("threshold", Gen)
    with pytest.raises(UnknownComponentError) as info:
        reg.entry("filter", "zzz")
    assert "Did you mean" not in str(info.value) and "Known: threshold." in str(info.value)


def test_unknown_kind_suggests(reg):
    with pytest.raises(RegistryError, match="Did you mean 'generator'"):
        reg.registrar("generators")
    with pytest.raises(RegistryError, match="unknown component kind"):
        reg.names("nope")


@pytest.mark.parametrize("bad", ["", "has space", "semi;colon", "slash/name"])
def test_invalid_names_are_refused(reg, bad):
    with pytest.raises(RegistryError, match="invalid generator name"):
        reg.registrar("generator").add(bad, Gen)


@pytest.mark.parametrize("good", ["a", "gemini-2.5", "step_by_step", "v1.0"])
def test_valid_names(reg, good):
    reg.registrar("generator").add(good, Gen)
    assert good in reg.names("generator")


def test_options_validation_errors_name_the_component_and_field(reg):
    reg.registrar("generator").add("gen", Gen, config=GenOptions)
    with pytest.raises(OptionsError) as info:
        reg.create("generator", "gen", {"temperature": 9, "colour": "red"})
    err = info.value
    assert err.kind == "generator" and err.name == "gen"
    locs = {e["loc"][0] for e in err.error.errors()}
    assert locs == {"temperature", "colour"}
    assert "generator 'gen': invalid options" in str(err)


def test_components_without_options_accept_none_and_refuse_any(reg):
    reg.registrar("filter").add("plain", Gen)
    assert reg.entry("filter", "plain").options_model() is NoOptions
    assert isinstance(reg.create("filter", "plain").options, NoOptions)
    with pytest.raises(OptionsError):
        reg.create("filter", "plain", {"x": 1})


def test_iteration_is_by_kind_then_name(reg):
    reg.registrar("filter").add("b", Gen)
    reg.registrar("generator").add("z", Gen)
    reg.registrar("generator").add("a", Gen)
    assert [(e.kind, e.name) for e in reg] == [("generator", "a"), ("generator", "z"), ("filter", "b")]


def test_suggest():
    assert suggest("treshold", ["threshold", "dedup"]) == " Did you mean 'threshold'?"
    assert suggest("xyz", ["threshold", "dedup"]) == ""  # nothing close
    assert suggest("dedupe", ["dedup", "dedupe_exact", "threshold"]) == " Did you mean 'dedup' or 'dedupe_exact'?"
    assert suggest("x", []) == ""
