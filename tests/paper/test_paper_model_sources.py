"""Hub ids or local folders for policy.model, R_φ's model_path and the local generator (issue 18):
resolved offline from the local Hugging Face cache, never downloaded."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from medgr2.hub import MODEL_FORMS, hub_cache_dir, resolve_model

REPO = "org/tiny-vlm"


def cache_model(cache: Path, repo: str = REPO, commit: str = "a" * 40, ref: str = "main",
                files: dict[str, str] | None = None) -> Path:
    """A Hub-cache layout ``models--org--name/{refs/<ref>, snapshots/<commit>/...}``; the snapshot folder."""
    base = cache / ("models--" + repo.replace("/", "--"))
    snapshot = base / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    for name, text in (files if files is not None else {"config.json": "{}"}).items():
        (snapshot / name).write_text(text)
    (base / "refs").mkdir(exist_ok=True)
    (base / "refs" / ref).write_text(commit)
    return snapshot


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """HF_HUB_OFFLINE=1, a cache of our own, and any socket connection fails the test."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    (tmp_path / "hub").mkdir()

    def refuse(self, address):  # pragma: no cover - only runs when something tries the network
        raise AssertionError(f"network access attempted: {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return tmp_path / "hub"


def test_a_hub_id_resolves_to_its_cached_snapshot(offline):
    snapshot = cache_model(offline)
    assert resolve_model(REPO, what="policy.model") == snapshot
    assert resolve_model(Path(REPO)) == snapshot  # a Path spelled like an id, as configs give it


def test_the_cache_comes_from_hf_home_and_revisions_follow_refs(offline, tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    assert hub_cache_dir() == tmp_path / "home" / "hub"
    main = cache_model(tmp_path / "home" / "hub", commit="b" * 40)
    v1 = cache_model(tmp_path / "home" / "hub", commit="c" * 40, ref="v1")
    assert resolve_model(REPO) == main and resolve_model(REPO, revision="v1") == v1
    with pytest.raises(FileNotFoundError, match=rf"HF_HUB_CACHE={offline}\)"):  # cache_dir wins: empty
        resolve_model(REPO, cache_dir=offline)
    with pytest.raises(FileNotFoundError, match=rf"HF_HUB_CACHE={tmp_path / 'home' / 'hub'}"):
        resolve_model("org/other")


def test_nothing_is_downloaded_even_when_the_hub_is_not_set_offline(offline, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")  # the socket guard of the fixture still refuses any connection
    snapshot = cache_model(offline)
    assert resolve_model(REPO) == snapshot
    with pytest.raises(FileNotFoundError, match="never downloads at run time"):
        resolve_model("org/absent")


def test_an_id_absent_from_the_cache_says_which_forms_are_accepted(offline):
    cache_model(offline)
    with pytest.raises(FileNotFoundError) as err:
        resolve_model("Qwen/Qwen2.5-VL-3B-Instruct", what="policy.model")
    message = str(err.value)
    assert ("policy.model 'Qwen/Qwen2.5-VL-3B-Instruct' is neither a local folder with config.json nor a Hub id "
            f"present in the local Hugging Face cache (HF_HUB_CACHE={offline})") in message
    assert "huggingface-cli download Qwen/Qwen2.5-VL-3B-Instruct" in message and "never downloads" in message


def test_local_folders_and_bad_values(offline, tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    with pytest.raises(FileNotFoundError, match="is a folder without config.json"):
        resolve_model(folder, what="policy.model")
    (folder / "config.json").write_text("{}")
    assert resolve_model(folder) == folder
    assert resolve_model(str(folder)) == folder
    with pytest.raises(FileNotFoundError, match="not spelled like a Hub id"):
        resolve_model(tmp_path / "no such" / "model")
    with pytest.raises(FileNotFoundError, match="is a file, not a model folder"):
        resolve_model(folder / "config.json")
    with pytest.raises(FileNotFoundError, match="is empty"):
        resolve_model(" ")
    cache_model(offline, repo="org/partial", files={"README.md": "weights not fetched"})
    with pytest.raises(FileNotFoundError, match="has no config.json .an incomplete download"):
        resolve_model("org/partial")
    assert "Hub id (owner/name) present in the local Hugging Face cache" in MODEL_FORMS


def test_the_local_generator_resolves_a_hub_id(offline, registry):
    snapshot = cache_model(offline, files={"config.json": "{}", "model.safetensors": "x"})
    gen = registry.create("generator", "local", {"model_path": REPO})
    assert gen.folder() == snapshot
    assert gen.model_id().startswith(f"{snapshot.resolve()}#")
    absent = registry.create("generator", "local", {"model_path": "org/absent"})
    with pytest.raises(FileNotFoundError, match="generation model_path .local generator. 'org/absent' is neither"):
        absent.model_id()


def test_the_reward_backbones_resolve_a_hub_id(offline):
    pytest.importorskip("torch")
    from medgr2_reward.backbones import MiniLMBackbone, VLMBackbone

    for backbone, what in ((VLMBackbone, "VLM R_φ"), (MiniLMBackbone, "MiniLM")):
        with pytest.raises(FileNotFoundError, match=rf"reward model_path \({what}\) 'org/absent' is neither"):
            backbone("org/absent", 64)


@pytest.fixture(scope="module")
def tiny_in_cache(tmp_path_factory):
    """A tiny Qwen2.5-VL saved into a fake Hub cache as ``org/tiny-vlm`` (built offline)."""
    tiny = pytest.importorskip("medgr2_hf.tiny")
    cache = tmp_path_factory.mktemp("hf") / "hub"
    snapshot = cache_model(cache, files={})
    tiny.build_tiny_vlm("qwen2_5_vl", snapshot, seed=0)
    return cache, snapshot


def test_a_tiny_vlm_in_the_cache_loads_as_r_phi_backbone_and_local_generator(tiny_in_cache, monkeypatch,
                                                                             registry):
    from medgr2_reward.backbones import VLMBackbone

    cache, snapshot = tiny_in_cache
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    backbone = VLMBackbone(REPO, 64)
    assert backbone.hidden_size > 0
    model, processor = registry.create("generator", "local", {"model_path": REPO})._model()
    assert Path(model.config._name_or_path) == snapshot and processor.image_processor is not None


def test_ensure_policy_accepts_a_hub_id_from_the_cache(offline, tmp_path):
    from types import SimpleNamespace

    from medgr2.stages.train import ensure_policy

    snapshot = cache_model(offline)
    policy = SimpleNamespace(model=REPO, tiny_arch="qwen2_5_vl")
    assert ensure_policy(policy, tmp_path / "work") == snapshot
    with pytest.raises(FileNotFoundError, match="Hub id present in the local Hugging Face cache"):
        ensure_policy(SimpleNamespace(model="org/absent", tiny_arch="qwen2_5_vl"), tmp_path / "work")
