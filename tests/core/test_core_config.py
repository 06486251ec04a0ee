"""Config: merging (defaults < file < --set), YAML/TOML, list indexes, validation, secrets."""

from __future__ import annotations

import copy
import textwrap

import pytest
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from medgr2 import hookimpl
from medgr2.config import (
    ConfigError,
    RunConfig,
    apply_overrides,
    dump_yaml,
    env_secret,
    iter_component_specs,
    load_config,
    parse_override,
    resolved_dict,
    resolved_options,
)
from medgr2.store import RunStore
from medgr2.testing import fake_config_data, make_registry


@pytest.fixture(scope="module")
def fakes():
    return make_registry()


def test_defaults_without_a_file():
    assert load_config() == RunConfig()
    assert RunConfig().run_dir.as_posix() == "runs/quickstart"


def test_yaml_and_toml_load_the_same_tree(tmp_path):
    (tmp_path / "c.yaml").write_text(textwrap.dedent("""
        name: exp
        seed: 7
        generation:
          generator: {name: fake, options: {n_options: 3}}
        filters:
          steps:
            - {name: fake, options: {tau: 2.5}}
    """))
    (tmp_path / "c.toml").write_text(textwrap.dedent("""
        name = "exp"
        seed = 7
        [generation.generator]
        name = "fake"
        options = { n_options = 3 }
        [[filters.steps]]
        name = "fake"
        options = { tau = 2.5 }
    """))
    yaml_cfg, toml_cfg = load_config(tmp_path / "c.yaml"), load_config(tmp_path / "c.toml")
    assert yaml_cfg == toml_cfg
    assert yaml_cfg.generation.generator.options == {"n_options": 3}
    assert [s.name for s in yaml_cfg.filters.steps] == ["fake"]
    assert yaml_cfg.cycles == RunConfig().cycles  # untouched defaults stay


def test_precedence_defaults_file_then_set(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("seed: 1\ncycles: 3\ngeneration: {limit: 10}\n")
    cfg = load_config(path, ["seed=2", "generation.limit=20"])
    assert (cfg.seed, cfg.cycles, cfg.generation.limit) == (2, 3, 20)
    assert cfg.generation.generator == RunConfig().generation.generator  # default kept beside the file's key
    assert load_config(path).seed == 1


def test_data_mapping_sits_between_file_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("seed: 1\nname: from-file\n")
    cfg = load_config(path, ["seed=3"], data={"seed": 2, "cycles": 4})
    assert (cfg.seed, cfg.name, cfg.cycles) == (3, "from-file", 4)


def test_override_into_a_list_of_defaults_by_index():
    cfg = load_config(overrides=["filters.steps.0.options.fraction=0.25", "data.sources.0.name=other"])
    default = RunConfig()
    assert cfg.filters.steps[0].options == {**default.filters.steps[0].options, "fraction": 0.25}
    assert [s.name for s in cfg.filters.steps] == [s.name for s in default.filters.steps]
    assert cfg.data.sources[0].name == "other"


def test_override_replaces_a_whole_list():
    cfg = load_config(overrides=["filters.steps=[{name: fake}]"])
    assert [s.name for s in cfg.filters.steps] == ["fake"]


def test_override_deep_into_options_keeps_the_default_name():
    cfg = load_config(overrides=["generation.generator.options.n_options=3"])
    default = RunConfig().generation.generator
    assert cfg.generation.generator.name == default.name
    assert cfg.generation.generator.options == {**default.options, "n_options": 3}


@pytest.mark.parametrize("overrides, options", [
    (["generation.generator.name=gemini"], {}),
    (["generation.generator.options.model=m", "generation.generator.name=gemini"], {"model": "m"}),
    (["generation.generator.name=gemini", "generation.generator.options.model=m"], {"model": "m"}),
])
def test_renaming_a_default_component_drops_the_defaults_options(overrides, options):
    """The default generator's options (the quickstart's defect rates) do not fit another generator."""
    assert RunConfig().generation.generator.options  # the default has options of its own
    cfg = load_config(overrides=overrides)
    assert (cfg.generation.generator.name, cfg.generation.generator.options) == ("gemini", options)


@pytest.mark.parametrize("item, path, value", [
    ("seed=3", ["seed"], 3),
    ("reward.replay_fraction=0.25", ["reward", "replay_fraction"], 0.25),
    ("policy.model=null", ["policy", "model"], None),
    ("data.seed_set=true", ["data", "seed_set"], True),
    ("name=a=b", ["name"], "a=b"),
    ("name=", ["name"], ""),
    ("plugins=[a, b]", ["plugins"], ["a", "b"]),
    ("name=[unclosed", ["name"], "[unclosed"),
])
def test_override_values_are_yaml_scalars(item, path, value):
    assert parse_override(item) == (path, value)


@pytest.mark.parametrize("item", ["seed", "=3", " =3"])
def test_malformed_override(item):
    with pytest.raises(ConfigError, match="must look like key.path=value"):
        apply_overrides({}, [item])


def test_override_index_out_of_range_is_reported():
    with pytest.raises(ConfigError, match=r"'9' is not an index of a 3-item list"):
        load_config(overrides=["filters.steps.9.name=x"])
    with pytest.raises(ConfigError, match=r"'first' is not an index"):
        load_config(overrides=["filters.steps.first.name=x"])


def test_overrides_do_not_mutate_their_input():
    data = {"seed": 1, "filters": {"steps": [{"name": "a"}]}}
    before = copy.deepcopy(data)
    apply_overrides(data, ["seed=2", "filters.steps.0.name=b"])
    assert data == before


def test_missing_unparsable_and_non_mapping_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("seed: [1, 2\n")
    with pytest.raises(ConfigError, match="cannot parse"):
        load_config(tmp_path / "bad.yaml")
    (tmp_path / "bad.toml").write_text("seed = \n")
    with pytest.raises(ConfigError, match="cannot parse"):
        load_config(tmp_path / "bad.toml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(tmp_path / "list.yaml")


def test_an_empty_file_gives_the_defaults(tmp_path):
    (tmp_path / "empty.yaml").write_text("")
    assert load_config(tmp_path / "empty.yaml") == RunConfig()


def test_three_mistakes_are_reported_at_once(tmp_path, fakes):
    data = fake_config_data()
    data["seedd"] = 3                                  # unknown key
    data["cycles"] = "many"                            # wrong type
    data["generation"]["generator"]["name"] = "fakee"  # misspelt component
    path = tmp_path / "bad.yaml"
    path.write_text(dump_yaml(data))
    with pytest.raises(ConfigError) as info:
        load_config(path, registry=fakes)
    err = info.value
    assert len(err.problems) == 3, err.problems
    text = str(err)
    assert text.startswith(f"3 problem(s) in the configuration {path}")
    assert "seedd: unknown key. Did you mean 'seed'?" in text
    assert "cycles: Input should be a valid integer" in text and "(got 'many')" in text
    assert "generation.generator.name: unknown generator 'fakee'. Did you mean 'fake'?" in text


def test_bad_option_values_are_reported_with_the_component(fakes):
    data = fake_config_data()
    data["filters"]["steps"][0]["options"] = {"tau": "high", "tua": 1}
    data["generation"]["generator"]["options"] = {"n_options": 1}
    with pytest.raises(ConfigError) as info:
        load_config(data=data, registry=fakes)
    problems = info.value.problems
    assert len(problems) == 3
    assert any(p.startswith("filters.steps.0.options.tau: Input should be a valid number") and "(got 'high')" in p
               and "(filter 'fake')" in p for p in problems)
    assert "filters.steps.0.options.tua: unknown option. Did you mean 'tau'? (filter 'fake')" in problems
    assert any(p.startswith("generation.generator.options.n_options: Input should be greater than or equal to 2")
               for p in problems)


def test_default_components_are_checked_too(fakes):
    """Names that come from the defaults must exist as well: they are what the run will use."""
    with pytest.raises(ConfigError) as info:
        load_config(overrides=["generation.generator.name=fake"], registry=fakes)
    problems = info.value.problems
    assert not any(p.startswith("generation.") for p in problems)
    assert any(p.startswith("data.sources.0.name: unknown dataset") for p in problems)


def test_component_shape_errors_do_not_crash_phase_two(fakes):
    data = fake_config_data()
    data["generation"]["generator"] = "fake"
    data["filters"]["steps"][0]["options"] = 3
    data["reward"]["model"] = {"options": {}}
    with pytest.raises(ConfigError) as info:
        load_config(data=data, registry=fakes)
    locs = sorted(p.split(":")[0] for p in info.value.problems)
    assert locs == ["filters.steps.0.options", "generation.generator", "reward.model.name"]


def test_a_valid_config_resolves_option_defaults(fakes):
    cfg = load_config(data=fake_config_data(), overrides=["filters.steps.0.options.tau=3"], registry=fakes)
    resolved = resolved_dict(cfg, fakes)
    assert resolved["filters"]["steps"][0]["options"] == {"tau": 3.0}
    assert resolved["generation"]["generator"]["options"] == {"n_options": 4, "reject_every": 0,
                                                               "label": "diagnosis"}
    assert resolved_dict(cfg)["generation"]["generator"]["options"] == {}  # unresolved: as written
    assert resolved_options(cfg.filters.steps[0], fakes).tau == 3.0


# ------------------------------------------------------------------------------------------ secrets


class KeyedOptions(BaseModel):
    """Options of a component that needs an API key."""

    model_config = ConfigDict(extra="forbid")
    model: str = Field(default="m-1", description="Model id.")
    api_key: SecretStr | None = Field(default_factory=lambda: env_secret("MEDGR2_TEST_KEY", "MEDGR2_TEST_KEY2"),
                                      exclude=True, description="From $MEDGR2_TEST_KEY.")


class KeyedGenerator:
    """Keeps its options."""

    def __init__(self, options: KeyedOptions):
        self.options = options


class KeyedPlugin:
    @hookimpl
    def medgr2_register_generators(self, registry):
        registry.add("keyed", KeyedGenerator, config=KeyedOptions)


SECRET = "sk-test-0123456789-secret"


def test_env_secret(monkeypatch):
    monkeypatch.delenv("MEDGR2_TEST_KEY", raising=False)
    monkeypatch.delenv("MEDGR2_TEST_KEY2", raising=False)
    assert env_secret("MEDGR2_TEST_KEY") is None
    monkeypatch.setenv("MEDGR2_TEST_KEY2", "second")
    monkeypatch.setenv("MEDGR2_TEST_KEY", "")
    assert env_secret("MEDGR2_TEST_KEY", "MEDGR2_TEST_KEY2").get_secret_value() == "second"
    monkeypatch.setenv("MEDGR2_TEST_KEY", "first")
    value = env_secret("MEDGR2_TEST_KEY", "MEDGR2_TEST_KEY2")
    assert isinstance(value, SecretStr) and value.get_secret_value() == "first" and "first" not in repr(value)


def test_secrets_come_from_env_and_are_never_written(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDGR2_TEST_KEY", SECRET)
    registry = make_registry(KeyedPlugin())
    data = fake_config_data()
    data["generation"]["generator"] = {"name": "keyed", "options": {"model": "m-2"}}
    cfg = load_config(data=data, registry=registry)
    gen = registry.create("generator", "keyed", cfg.generation.generator.options)
    assert gen.options.api_key.get_secret_value() == SECRET
    assert SECRET not in repr(gen.options) and SECRET not in gen.options.model_dump_json()

    resolved = resolved_dict(cfg, registry)
    assert resolved["generation"]["generator"]["options"] == {"model": "m-2"}
    store = RunStore(tmp_path / "run")
    store.save_config(resolved, {"medgr2": "0"})
    written = "".join(p.read_text() for p in (tmp_path / "run").rglob("*") if p.is_file())
    assert "m-2" in written and SECRET not in written and "api_key" not in written


def test_a_secret_in_a_config_file_is_refused(tmp_path, monkeypatch):
    monkeypatch.delenv("MEDGR2_TEST_KEY", raising=False)
    registry = make_registry(KeyedPlugin())
    data = fake_config_data()
    data["generation"]["generator"] = {"name": "keyed", "options": {"api_key": SECRET}}
    with pytest.raises(ConfigError) as info:
        load_config(data=data, registry=registry)
    (problem,) = info.value.problems
    assert problem.startswith("generation.generator.options.api_key: secrets are never read from config files")
    assert "$MEDGR2_TEST_KEY" in problem and SECRET not in str(info.value)


def test_optional_component_specs_are_validated(fakes):
    """``X | None`` specs (policy.sft, reward.judge ...) are checked like the others."""
    locs = [loc for loc, _, _ in iter_component_specs(RunConfig, RunConfig().model_dump(mode="json"))]
    assert {"policy.sft", "policy.grpo", "evaluation.evaluator"} <= set(locs)
    data = fake_config_data()
    data["policy"]["sft"] = {"name": "sfft"}
    data["reward"]["judge"] = {"name": "fake", "options": {"bogus": 1}}
    with pytest.raises(ConfigError) as info:
        load_config(data=data, registry=fakes)
    assert sorted(p.split(":")[0] for p in info.value.problems) == ["policy.sft.name", "reward.judge.options.bogus"]
    data["policy"]["sft"] = None  # switched off: nothing to check
    data["reward"]["judge"] = None
    assert load_config(data=data, registry=fakes).policy.sft is None


# ------------------------------------------------------------------------------ the config's plugins

PLUGIN_FILE = '''
from medgr2 import hookimpl

class Shout:
    """Upper-cases nothing; exists to be found."""
    def __init__(self, options):
        self.options = options

@hookimpl
def medgr2_register_generators(registry):
    registry.add("shout", Shout)
'''


def test_plugins_listed_in_the_config_are_loaded_before_validation(tmp_path, monkeypatch):
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "shout_plugin.py").write_text(PLUGIN_FILE)
    data = fake_config_data()
    data["plugins"] = ["shout_plugin.py"]  # beside the config file
    data["generation"]["generator"] = {"name": "shout"}
    (tmp_path / "conf" / "run.yaml").write_text(dump_yaml(data))
    monkeypatch.chdir(tmp_path)  # not where the plugin is
    registry = make_registry()
    cfg = load_config(tmp_path / "conf" / "run.yaml", registry=registry)
    assert cfg.plugins == ["shout_plugin.py"]
    assert registry.entry("generator", "shout").plugin == "shout_plugin"
    load_config(tmp_path / "conf" / "run.yaml", registry=registry)  # loading again is harmless
    assert registry.names("generator") == ["fake", "shout"]


def test_a_config_plugin_that_fails_is_a_config_problem(tmp_path):
    data = fake_config_data()
    data["plugins"] = ["no_such_plugin_module_xyz"]
    data["generation"]["generator"] = {"name": "shout"}
    with pytest.raises(ConfigError) as info:
        load_config(data=data, registry=make_registry())
    problems = info.value.problems
    assert len(problems) == 2
    assert problems[0].startswith("plugins: plugin 'no_such_plugin_module_xyz' failed to load: ModuleNotFoundError")
    assert problems[1].startswith("generation.generator.name: unknown generator 'shout'")


def test_an_unknown_name_mentions_plugins_that_failed_to_load():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from medgr2.plugins import build_registry, load_plugins

        registry = build_registry(load_plugins(["medgr2.testing", "no_such_plugin_module_xyz"], autoload=False))
    data = fake_config_data()
    data["generation"]["generator"] = {"name": "gemini"}
    with pytest.raises(ConfigError) as info:
        load_config(data=data, registry=registry)
    (problem,) = info.value.problems
    assert "unknown generator 'gemini'" in problem
    assert "1 plugin(s) failed to load: plugin 'no_such_plugin_module_xyz' failed to load" in problem


def test_override_of_a_yaml_alias_changes_only_that_place(tmp_path):
    from medgr2.config import apply_overrides

    shared = {"name": "x"}
    data = {"a": {"spec": shared}, "b": {"spec": shared}}
    out = apply_overrides(data, ["a.spec.options.k=3"])
    assert out["a"]["spec"] == {"name": "x", "options": {"k": 3}}
    assert out["b"]["spec"] == {"name": "x"}
    assert shared == {"name": "x"}


def test_override_under_options_does_not_merge_the_default_components_options():
    from medgr2.config import load_config

    cfg = load_config(data={"policy": {"sft": {"name": "sft"}}}, overrides=["policy.sft.options.max_steps=3"])
    assert cfg.policy.sft.options == {"max_steps": 3}
    # without a file section, the defaults of the section (the quickstart's) are kept and updated
    cfg = load_config(overrides=["policy.sft.options.max_steps=5"])
    assert cfg.policy.sft.options == {**RunConfig().policy.sft.options, "max_steps": 5}
