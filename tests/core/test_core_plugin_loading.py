"""Plugin loading: order, blocking, entry points, env, --plugin specs, failures and check_pending."""

from __future__ import annotations

import importlib.metadata as md
import sys
import textwrap
import uuid
import warnings

import pytest

from medgr2 import plugins
from medgr2.plugins import PluginLoadError, PluginWarning, build_registry, load_plugins, load_registry
from medgr2.registry import RegistryError


class PluginDir:
    """Writes uniquely named plugin modules into a folder on sys.path and forgets them afterwards."""

    def __init__(self, path, monkeypatch):
        self.path, self.names = path, []
        monkeypatch.syspath_prepend(str(path))

    def module(self, body: str = "", *, registers: str | None = None, prefix: str = "plug") -> str:
        """A plugin module; by default it registers a generator named after the module."""
        name = f"{prefix}_{uuid.uuid4().hex[:8]}"
        if registers is None:
            body = body or f'''
                @hookimpl
                def medgr2_register_generators(registry):
                    registry.add("{name}", "builtins:dict")
            '''
        (self.path / f"{name}.py").write_text("from medgr2 import hookimpl\n" + textwrap.dedent(body))
        self.names.append(name)
        return name

    def cleanup(self) -> None:
        for name in self.names:
            sys.modules.pop(name, None)
            sys.modules.pop(f"medgr2_adhoc_{name}", None)


@pytest.fixture
def pdir(tmp_path, monkeypatch):
    d = PluginDir(tmp_path, monkeypatch)
    monkeypatch.delenv("MEDGR2_PLUGINS", raising=False)
    monkeypatch.delenv("MEDGR2_STRICT_PLUGINS", raising=False)
    monkeypatch.delenv("MEDGR2_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    yield d
    d.cleanup()


@pytest.fixture
def entry_points(monkeypatch):
    """Replace the installed ``medgr2`` entry points with the given ``name -> module`` pairs."""

    def install(**pairs: str) -> None:
        eps = [md.EntryPoint(name=n, value=v, group=plugins.ENTRY_POINT_GROUP) for n, v in pairs.items()]
        monkeypatch.setattr(plugins.md, "entry_points", lambda group=None, **kw: [e for e in eps if e.group == group])

    install()
    return install


def test_loading_order_blocked_entry_points_env_specs(pdir, entry_points, monkeypatch):
    mod_a, mod_b, mod_blocked, mod_env, mod_spec = (pdir.module() for _ in range(5))
    file_stem = pdir.module()
    entry_points(zeta=mod_b, alpha=mod_a, blocked=mod_blocked)
    monkeypatch.setenv("MEDGR2_PLUGINS", f" {mod_env} ,")
    ps = load_plugins([mod_spec, str(pdir.path / f"{file_stem}.py")], disabled=["blocked"])
    assert list(ps.infos) == ["alpha", "zeta", mod_env, mod_spec, file_stem]
    assert [i.source for i in ps.infos.values()][:4] == ["entry-point", "entry-point", "module", "module"]
    assert ps.infos[file_stem].source.startswith("file ")
    assert mod_blocked not in sys.modules  # a blocked plugin is never imported
    assert ps.failures == []
    registry = build_registry(ps)
    owners = {e.name: e.plugin for e in registry}
    assert owners == {mod_a: "alpha", mod_b: "zeta", mod_env: mod_env, mod_spec: mod_spec, file_stem: file_stem}


def test_plugin_spec_may_name_an_entry_point(pdir, entry_points):
    mod = pdir.module()
    entry_points(mine=mod)
    ps = load_plugins(["mine"], autoload=False)
    assert list(ps.infos) == ["mine"] and ps.infos["mine"].source == "entry-point"


def test_autoload_can_be_disabled_by_env_but_specs_still_load(pdir, entry_points, monkeypatch):
    auto, spec = pdir.module(), pdir.module()
    entry_points(auto=auto)
    monkeypatch.setenv("MEDGR2_DISABLE_PLUGIN_AUTOLOAD", "1")
    ps = load_plugins([spec])
    assert list(ps.infos) == [spec] and auto not in sys.modules


def test_a_spec_already_loaded_is_not_registered_twice(pdir, entry_points):
    mod = pdir.module()
    entry_points(mine=mod)
    ps = load_plugins(["mine", "mine"])
    assert list(ps.infos) == ["mine"]
    assert len(list(build_registry(ps))) == 1


def test_blocking_applies_to_specs_too(pdir):
    mod = pdir.module()
    ps = load_plugins([mod], disabled=[mod], autoload=False)
    assert ps.infos == {} and mod not in sys.modules


def test_broken_plugin_degrades_to_one_warning(pdir, entry_points):
    good = pdir.module()
    broken = pdir.module("raise ImportError('needs the frobnicate package')\n", registers="")
    entry_points(good=good, broken=broken)
    with pytest.warns(PluginWarning) as record:
        ps = load_plugins()
    assert len(record) == 1
    msg = str(record[0].message)
    assert "'broken'" in msg and "ImportError: needs the frobnicate package" in msg and "skipped" in msg
    assert "\n" not in msg
    assert list(ps.infos) == ["good"] and len(ps.failures) == 1
    registry = build_registry(ps)
    assert registry.names("generator") == [good]
    assert registry.warnings == ps.failures


@pytest.mark.parametrize("how", ["argument", "env"])
def test_strict_mode_makes_a_broken_plugin_an_error(pdir, entry_points, monkeypatch, how):
    broken = pdir.module("import no_such_module_xyz\n", registers="")
    entry_points(broken=broken)
    kwargs = {}
    if how == "env":
        monkeypatch.setenv("MEDGR2_STRICT_PLUGINS", "1")
    else:
        kwargs["strict"] = True
    with pytest.raises(PluginLoadError, match="ModuleNotFoundError: No module named 'no_such_module_xyz'"):
        load_plugins(**kwargs)


def test_missing_plugin_file_and_module_warn(pdir):
    with pytest.warns(PluginWarning) as record:
        ps = load_plugins(["no/such/file.py", "no_such_plugin_module_xyz"], autoload=False)
    assert len(record) == 2 and ps.infos == {}
    assert "no plugin file 'no/such/file.py'" in ps.failures[0]
    assert "No module named 'no_such_plugin_module_xyz'" in ps.failures[1]


def test_unknown_hook_is_caught_with_a_suggestion(pdir):
    good = pdir.module()
    typo = pdir.module('''
        @hookimpl
        def medgr2_register_generator(registry):
            registry.add("typo", "builtins:dict")
    ''', registers="")
    with pytest.warns(PluginWarning) as record:
        ps = load_plugins([good, typo], autoload=False)
    assert len(record) == 1
    msg = str(record[0].message)
    assert "unknown hook(s) medgr2_register_generator" in msg
    assert "Did you mean 'medgr2_register_generators'?" in msg
    assert list(ps.infos) == [good] and not ps.pm.has_plugin(typo)
    assert build_registry(ps).names("generator") == [good]


def test_unknown_hook_is_an_error_in_strict_mode(pdir):
    typo = pdir.module('''
        @hookimpl
        def medgr2_register_widgets(registry):
            pass
    ''', registers="")
    with pytest.raises(PluginLoadError, match="unknown hook"):
        load_plugins([typo], autoload=False, strict=True)


def test_wrong_hook_argument_is_caught(pdir):
    bad = pdir.module('''
        @hookimpl
        def medgr2_register_generators(reg):
            pass
    ''', registers="")
    with pytest.warns(PluginWarning, match="PluginValidationError"):
        ps = load_plugins([bad], autoload=False)
    assert ps.infos == {}


def test_a_failing_registrar_hook_degrades_to_one_warning(pdir):
    good = pdir.module()
    failing = pdir.module('''
        @hookimpl
        def medgr2_register_filters(registry):
            registry.add("ok_filter", "builtins:dict")

        @hookimpl
        def medgr2_register_generators(registry):
            raise RuntimeError("no config found")
    ''', registers="")
    with pytest.warns(PluginWarning) as record:
        registry = load_registry([good, failing], autoload=False)
    assert len(record) == 1 and "failed in medgr2_register_generators: RuntimeError: no config found" in str(
        record[0].message)
    assert registry.names("generator") == [good]
    assert registry.names("filter") == ["ok_filter"]
    with pytest.raises(PluginLoadError):
        load_registry([failing], autoload=False, strict=True)


def test_a_name_registered_by_two_plugins_skips_the_later_one_with_a_warning(pdir):
    body = '''
        @hookimpl
        def medgr2_register_filters(registry):
            registry.add("{own}", "builtins:dict")

        @hookimpl
        def medgr2_register_generators(registry):
            registry.add("same", "builtins:dict")
    '''
    one = pdir.module(body.replace("{own}", "own_one"), registers="")
    two = pdir.module(body.replace("{own}", "own_two"), registers="")
    with pytest.warns(PluginWarning) as record:
        ps = load_plugins([one, two], autoload=False)
        registry = build_registry(ps)
    assert len(record) == 1 and "registered twice" in str(record[0].message)
    assert f"by plugin {one!r} and by {two!r}" in str(record[0].message)
    # the later plugin is skipped whole: no entry of it is left, its hooks are unregistered
    assert registry.entry("generator", "same").plugin == one
    assert registry.names("filter") == ["own_one"]
    assert list(ps.infos) == [one] and not ps.pm.has_plugin(two)
    assert registry.warnings == ps.failures and len(ps.failures) == 1


def test_a_name_registered_by_two_plugins_is_an_error_in_strict_mode(pdir):
    body = '''
        @hookimpl
        def medgr2_register_generators(registry):
            registry.add("same", "builtins:dict")
    '''
    one, two = pdir.module(body, registers=""), pdir.module(body, registers="")
    with pytest.raises(RegistryError, match="registered twice"):
        load_registry([one, two], autoload=False, strict=True)


def test_a_plugin_may_override_on_purpose(pdir):
    one = pdir.module('''
        @hookimpl
        def medgr2_register_prompts(registry):
            registry.add("direct", "builtins:dict")
    ''', registers="")
    two = pdir.module('''
        @hookimpl(trylast=True)
        def medgr2_register_prompts(registry):
            registry.add("direct", "builtins:list", override=True)
    ''', registers="")
    registry = load_registry([one, two], autoload=False)
    assert registry.entry("prompt", "direct").plugin == two
    assert registry.get("prompt", "direct") is list


def test_file_plugin_can_use_lazy_targets_in_itself(pdir):
    stem = pdir.module('''
        class Gen:
            """A generator defined in an ad hoc file."""
            def __init__(self, options):
                self.options = options

        @hookimpl
        def medgr2_register_generators(registry):
            registry.add("adhoc", "medgr2_adhoc_''' + "{stem}" + ''':Gen")
    ''', registers="")
    path = pdir.path / f"{stem}.py"
    path.write_text(path.read_text().replace("{stem}", stem))
    registry = load_registry([str(path)], autoload=False)
    assert type(registry.create("generator", "adhoc")).__name__ == "Gen"


def test_a_file_plugin_that_fails_is_not_left_in_sys_modules(pdir):
    stem = pdir.module("raise RuntimeError('boom')\n", registers="")
    with pytest.warns(PluginWarning, match="RuntimeError: boom"):
        load_plugins([str(pdir.path / f"{stem}.py")], autoload=False)
    assert f"medgr2_adhoc_{stem}" not in sys.modules


def test_each_failure_is_warned_once(pdir):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        ps = load_plugins(["no_such_plugin_module_xyz", "no_such_plugin_module_xyz"], autoload=False)
    assert len(ps.failures) == 1 and len([w for w in record if w.category is PluginWarning]) == 1


def test_process_wide_registry_is_built_once_per_configuration(pdir, monkeypatch):
    monkeypatch.setattr(plugins, "_default", None)
    monkeypatch.setattr(plugins, "_default_args", {})
    mod = pdir.module()
    monkeypatch.setenv("MEDGR2_DISABLE_PLUGIN_AUTOLOAD", "1")
    plugins.configure([mod])
    first = plugins.get_registry()
    assert first is plugins.get_registry()
    assert first.names("generator") == [mod]
    plugins.configure([])
    assert plugins.get_registry().names("generator") == []


def test_a_later_plugin_overrides_an_earlier_one(pdir, entry_points):
    builtin = pdir.module('''
        @hookimpl
        def medgr2_register_prompts(registry):
            registry.add("direct", "builtins:dict")
    ''', registers="")
    mine = pdir.module('''
        @hookimpl
        def medgr2_register_prompts(registry):
            registry.add("direct", "builtins:list", override=True)
    ''', registers="")
    entry_points(builtin=builtin)
    registry = load_registry([mine])  # --plugin loads after the entry points, so it is called after them
    assert registry.entry("prompt", "direct").plugin == mine
    assert registry.get("prompt", "direct") is list


def test_registrars_run_in_load_order(pdir, entry_points):
    names = [pdir.module() for _ in range(3)]
    entry_points(b=names[1], a=names[0])
    registry = load_registry([names[2]])
    order = [e.plugin for e in registry.entries["generator"].values()]
    assert order == ["a", "b", names[2]]


def test_registrar_hooks_are_called_through_pluggy_so_wrappers_and_tracing_work():
    from medgr2 import hookimpl
    from medgr2.testing import make_registry

    seen: list[str] = []

    class Tracer:
        @hookimpl(wrapper=True)
        def medgr2_register_filters(self, registry):
            seen.append(registry.plugin)
            return (yield)

    class First:
        @hookimpl
        def medgr2_register_filters(self, registry):
            registry.add("first", "medgr2.testing:FakeFilter")

    registry = make_registry(Tracer(), First())
    assert sorted(seen) == ["First", "medgr2.testing"]  # once per plugin that registers filters
    assert registry.entry("filter", "first").plugin == "First"
