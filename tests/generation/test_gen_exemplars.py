"""The versioned exemplar bank (the self-updating API generator, Algorithm 1 line 14)."""

from __future__ import annotations

import json
import random
import re

import pytest
from medgr2_generation.exemplars import (
    BANK_JSON,
    EXEMPLARS,
    ExemplarBankUpdater,
    load_bank,
    update_bank,
    version_name,
)
from medgr2_generation.options import ExemplarUpdaterOptions
from medgr2_generation.prompts import PromptTemplate, TemplateError, builtin

from medgr2 import __version__
from medgr2.data import (
    ImageRef,
    Modality,
    Provenance,
    QuestionType,
    RewardBreakdown,
    SeedItem,
    VQASample,
)
from medgr2.interfaces import StageContext
from medgr2.testing.fake_servers import FakeGeminiServer, FakeOpenAIServer, default_reply

DD, AI, LG = QuestionType.DISEASE_DIAGNOSIS, QuestionType.ANATOMY_IDENTIFICATION, QuestionType.LESION_GRADING


def sample(sid, reward, modality=Modality.XRAY, qtype=DD, dataset="demo", tags=()):
    return VQASample(
        id=sid,
        images=(ImageRef(path=f"{sid}.png", root="/data/imgs", sha256=f"sha-{sid}"),),
        question=f"Question {sid} about this image?",
        options=(f"answer {sid}", "normal", "fracture"),
        answer=f"answer {sid}",
        rationale=f"Because of {sid}.",
        modality=modality,
        question_type=qtype,
        provenance=Provenance(source_dataset=dataset, source_id=f"item-{sid}"),
        reward=None if reward is None else RewardBreakdown(total=reward),
        tags=tuple(tags),
    )


CYCLE1 = [
    sample("x-e", 7.0), sample("x-c", 7.0), sample("x-a", 9.0), sample("x-d", 7.0), sample("x-b", 2.0),
    sample("x-g", 5.0, qtype=AI),
    sample("c-a", 4.0, modality=Modality.CT, qtype=AI),
]


def ids(path):
    return [json.loads(line)["id"] for line in (path / EXEMPLARS).read_text().splitlines()]


def test_top_per_cell_with_ties_by_id_and_images_by_reference(tmp_path):
    info = update_bank(CYCLE1, tmp_path / "bank", per_cell=3, source_cycle=1)
    folder = tmp_path / "bank" / "v001"
    assert (info.version, info.path, info.previous, info.total, info.added) == ("v001", str(folder), None, 5, 5)
    assert info.counts == {"ct/anatomy_identification": 1, "xray/anatomy_identification": 1,
                           "xray/disease_diagnosis": 3}
    # cells in order, best first; the three 7.0 ties resolved by id (x-c, x-d before x-e); 2.0 dropped
    assert ids(folder) == ["c-a", "x-g", "x-a", "x-c", "x-d"]
    first = json.loads((folder / EXEMPLARS).read_text().splitlines()[2])
    assert first["images"] == [{"path": "x-a.png", "root": "/data/imgs", "loader": "file", "frame": None,
                                "sha256": "sha-x-a", "modality": "other", "width": None, "height": None}]
    assert (first["question"], first["answer"], first["rationale"], first["reward"], first["source_cycle"]) == (
        "Question x-a about this image?", "answer x-a", "Because of x-a.", 9.0, 1)
    meta = json.loads((folder / BANK_JSON).read_text())
    assert meta["version"] == "v001" and meta["counts"] == info.counts and meta["source_cycle"] == 1

    # deterministic: another input order writes byte-identical files
    shuffled = list(CYCLE1)
    random.Random(4).shuffle(shuffled)
    update_bank(shuffled, tmp_path / "other", per_cell=3, source_cycle=1)
    for name in (EXEMPLARS, BANK_JSON):
        assert (tmp_path / "other" / "v001" / name).read_bytes() == (folder / name).read_bytes()


def test_versions_merge_the_best_per_cell_and_reruns_rewrite_the_same(tmp_path):
    bank = tmp_path / "bank"
    update_bank(CYCLE1, bank, per_cell=2, version=1, source_cycle=1)
    v1_bytes = (bank / "v001" / EXEMPLARS).read_bytes()
    cycle2 = [sample("y-a", 8.0), sample("y-b", 1.0), sample("m-a", 6.0, modality=Modality.MRI),
              sample("x-a", 3.0)]  # x-a again, scored lower by a newer R_phi: its best score counts
    info = update_bank(cycle2, bank, per_cell=2, source_cycle=2)
    assert (info.version, info.previous, info.added) == ("v002", "v001", 2)
    assert ids(bank / "v002") == ["c-a", "m-a", "x-g", "x-a", "y-a"]
    assert json.loads((bank / "v002" / EXEMPLARS).read_text().splitlines()[3])["reward"] == 9.0
    assert (bank / "v001" / EXEMPLARS).read_bytes() == v1_bytes  # an old version is never changed

    again = update_bank(cycle2, bank, per_cell=2, version="v002", source_cycle=2)
    assert again == info and ids(bank / "v002") == ["c-a", "m-a", "x-g", "x-a", "y-a"]
    assert load_bank(bank).version == "v002" and load_bank(bank / "v001").version == "v001"

    (bank / "v003").mkdir()  # a crashed update: no bank.json, so not a version
    (bank / "v003" / EXEMPLARS).write_text("")
    assert load_bank(bank).version == "v002"
    assert update_bank([sample("z", 1.0)], bank, per_cell=2).version == "v003"


def test_bad_input_is_refused_with_the_fix(tmp_path):
    with pytest.raises(ValueError, match=r"1 kept sample\(s\) have no reward .*score them"):
        update_bank([sample("a", 1.0), sample("b", None)], tmp_path / "bank")
    with pytest.raises(ValueError, match="test split .*evaluation data"):
        update_bank([sample("a", 1.0).model_copy(update={"split": "test"})], tmp_path / "bank")
    assert not (tmp_path / "bank").exists()
    with pytest.raises(ValueError, match="per_cell must be at least 1"):
        update_bank([], tmp_path / "bank", per_cell=0)
    with pytest.raises(ValueError, match="not a positive number"):
        version_name("latest")
    assert version_name(2) == version_name("v2") == version_name("002") == "v002"
    with pytest.raises(ValueError, match="does not exist"):
        load_bank(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="not an exemplar bank"):
        load_bank(tmp_path / "empty")


def item(modality=Modality.XRAY, labels=None, dataset="demo"):
    return SeedItem(id=f"{modality.value}-1", dataset=dataset, modality=modality, split="train",
                    image=ImageRef(path="i.png", root="/r", sha256="sha-i"),
                    labels=labels or {"diagnosis": "pneumonia"})


def test_prompt_shows_the_exemplars_of_its_modality_only(tmp_path):
    update_bank(CYCLE1, tmp_path / "bank", per_cell=3)
    bank = load_bank(tmp_path / "bank")
    plain = builtin("meta_cognitive")
    with_bank = plain.with_bank(bank, exemplars_per_prompt=3)

    xray = with_bank.render(item())
    assert "Question x-a about this image?" in xray and "Answer: answer x-a" in xray
    assert "Rationale: Because of x-a." in xray and "Options: A. answer x-a | B. normal | C. fracture" in xray
    # round-robin over question types: the best diagnosis, the anatomy one, then the next diagnosis
    shown = re.findall(r"Question (\S+) about", xray)
    assert shown == ["x-a", "x-g", "x-c"]
    assert "c-a" not in xray and "x.png" not in xray and "/data/imgs" not in xray  # no other modality, no images
    # the exemplar block adds no "- key: value" label lines: the item's labels are read as before
    label_lines = re.compile(r"^- (\w+): (.+)$", re.MULTILINE)
    assert label_lines.findall(xray) == label_lines.findall(plain.render(item()))

    ct = with_bank.render(item(Modality.CT))
    assert "Question c-a about" in ct and "x-a" not in ct
    # an item whose labels name its question types sees only those (when the bank has them)
    anatomy = with_bank.render(item(labels={"diagnosis": "x", "question_types": "anatomy identification"}))
    assert re.findall(r"Question (\S+) about", anatomy) == ["x-g"]
    # no exemplars of the modality, or no bank: the prompt of the template without a bank
    assert with_bank.render(item(Modality.MRI)) == plain.render(item(Modality.MRI))
    assert "Examples of high-quality" not in plain.render(item())
    # the hash (provenance.template_hash) and generator version carry the bank version
    mri = plain.render(item(Modality.MRI))
    assert with_bank.hash(mri) != plain.hash(mri)
    assert with_bank.generator_version("1.0") == "1.0+bank.v001" and plain.generator_version("1.0") == "1.0"


def test_restricted_exemplars_stay_home_and_other_templates_refuse_a_bank(tmp_path):
    update_bank([sample("r-a", 9.0, dataset="private"), sample("r-b", 8.0, tags=("restricted",)),
                 sample("ok", 1.0)], tmp_path / "bank")
    bank = load_bank(tmp_path / "bank")
    guarded = builtin("meta_cognitive").with_bank(bank, 3, exclude_datasets=["private"])
    text = guarded.render(item())
    assert "Question ok about" in text and "r-a" not in text and "r-b" not in text
    allowed = builtin("meta_cognitive").with_bank(bank, 3, exclude_datasets=None)
    assert re.findall(r"Question (\S+) about", allowed.render(item())) == ["r-a", "r-b", "ok"]
    with pytest.raises(TemplateError, match=r"no \$exemplars placeholder.*meta_cognitive"):
        builtin("direct").with_bank(bank)
    assert "exemplars" in PromptTemplate.PLACEHOLDERS


FAST = {"backoff_base_s": 0.01, "backoff_max_s": 0.05, "timeout_s": 5.0, "model": "fake-model"}


def test_bank_versions_are_new_requests_and_recorded_in_provenance(gen_registry, items_factory, tmp_path):
    """v1 -> v2 against the fake OpenAI server with one shared reply cache: v2 asks again for every item
    (even those whose prompt is unchanged), exemplars go as text only, and provenance names the version."""
    bank = tmp_path / "bank"
    v1 = update_bank(CYCLE1, bank, per_cell=2, source_cycle=1)
    # v2 adds a better X-ray exemplar; an MRI-only change would leave X-ray prompts unchanged
    v2 = update_bank([sample("y-top", 9.5)], bank, per_cell=2, source_cycle=2)
    items = items_factory(4)
    prompts: list[str] = []

    def reply(prompt):
        prompts.append(prompt)
        return json.dumps(default_reply(prompt))

    def run(server, name, **opts):
        gen = gen_registry.create("generator", "openai", {
            "base_url": server.base_url, **FAST, "strategy": "meta_cognitive",
            "cache_path": str(tmp_path / "requests.jsonl"), **opts})
        return gen.generate(items, StageContext(work_dir=tmp_path / name, registry=gen_registry, cycle=2))

    with FakeOpenAIServer(reply=reply) as server:
        plain = run(server, "plain")
        first = run(server, "v1", exemplar_bank=v1.path)
        assert server.attempts == 8 and server.bodies["images"] == 8  # one image per request: the item's
        repeat = run(server, "v1-again", exemplar_bank=str(bank / "v001"))
        assert server.attempts == 8 and repeat.ledger.extra["cache_hits"] == 4
        second = run(server, "v2", exemplar_bank=str(bank))  # the bank folder: its newest version
        assert server.attempts == 12 and server.bodies["images"] == 12
    assert len(plain.samples) == len(first.samples) == len(second.samples) == 4
    assert all("Examples of high-quality" not in p for p in prompts[:4])
    assert all("Question x-a about" in p and "y-top" not in p for p in prompts[4:8])
    assert all("Question y-top about" in p for p in prompts[8:])

    for result, version in ((plain, None), (first, "v001"), (second, "v002")):
        assert result.ledger.extra["exemplar_bank"] == version
        expected = __version__ + (f"+bank.{version}" if version else "")
        assert result.ledger.extra["generator_version"] == expected
        assert {s.provenance.generator_version for s in result.samples} == {expected}
    assert {s.provenance.template_hash for s in first.samples}.isdisjoint(
        {s.provenance.template_hash for s in second.samples})
    assert (v1.version, v2.version) == ("v001", "v002")


@pytest.mark.parametrize("backend", ["openai", "gemini"])
def test_same_prompt_under_a_new_bank_version_is_still_asked_again(
    backend, gen_registry, items_factory, tmp_path, monkeypatch
):
    monkeypatch.setenv("GEMINI_API_KEY", "test-key")
    bank = tmp_path / "bank"
    update_bank(CYCLE1, bank, per_cell=2)
    update_bank([sample("m-a", 6.0, modality=Modality.MRI)], bank, per_cell=2)  # X-ray exemplars unchanged
    items = items_factory(2)
    with {"openai": FakeOpenAIServer, "gemini": FakeGeminiServer}[backend]() as server:
        for version in ("v001", "v002"):
            gen = gen_registry.create("generator", backend, {
                "base_url": server.base_url, **FAST, "exemplar_bank": str(bank / version),
                "cache_path": str(tmp_path / "requests.jsonl")})
            result = gen.generate(items, StageContext(work_dir=tmp_path / version, registry=gen_registry))
            assert len(result.samples) == 2 and result.ledger.extra["exemplar_bank"] == version
        assert server.attempts == 4 and len({a.prompt_key for a in server.log}) == 2  # same 2 prompts, asked twice


def test_updater_returns_the_next_cycles_generator_options(gen_registry, items_factory, tmp_path):
    updater = ExemplarBankUpdater(ExemplarUpdaterOptions(bank_dir=str(tmp_path / "bank"), per_cell=2))
    out = updater.update(CYCLE1, StageContext(work_dir=tmp_path / "stage", cycle=1))
    assert out["version"] == "v001" and out["path"] == str(tmp_path / "bank" / "v001")
    assert out["options"] == {"exemplar_bank": out["path"], "exemplars_per_prompt": 3}
    assert out["counts"]["xray/disease_diagnosis"] == 2 and out["added"] == 4
    out2 = updater.update([sample("y", 9.9)], StageContext(work_dir=tmp_path / "stage2", cycle=2))
    assert out2["version"] == "v002" and load_bank(out2["path"]).info.previous == "v001"
    # the options are valid generator options as they stand
    gen = gen_registry.create("generator", "openai", {"model": "m", **out2["options"]})
    assert gen.options.exemplar_bank == out2["path"]
    with pytest.raises(Exception, match="exemplar_bank"):
        gen_registry.create("generator", "local", {"model_path": str(tmp_path), **out2["options"]})
