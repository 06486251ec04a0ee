"""The generation client's shortcuts give what the long way gives: a sample built from checked fields equals
the validated construction (and defers to it for anything it does not vouch for), the prompt's JSON made
part by part equals ``json.dumps``, and the ASCII secret pre-check agrees with the regex."""

from __future__ import annotations

import json
import random
import re
from datetime import datetime, timezone

import pytest
from medgr2_generation.backend_support import build_sample, checked_sample
from medgr2_generation.contract import validate_reply
from medgr2_generation.prompts import builtin, json_str
from medgr2_generation.reply_cache import _HINTS, Reply, might_hold_secret

from medgr2.data import ImageRef, Modality, Provenance, QuestionType, Reject, SeedItem, VQASample
from medgr2.interfaces import StageContext

WHEN = "2026-12-06T10:00:00.123456+00:00"


def _item(**kw) -> SeedItem:
    base = {"id": "it-1", "dataset": "demo", "modality": Modality.XRAY, "split": "train",
            "image": ImageRef(path="a.png", root="/r", sha256="sha-1"), "labels": {"diagnosis": "normal"}}
    return SeedItem(**{**base, **kw})


def _fields(**kw) -> dict:
    reply = {"question": "Which finding is shown?", "options": ["Effusion", "normal", "pneumonia"],
             "answer": "normal", "rationale": "Clear lungs.", "modality": "xray",
             "question_type": "disease_diagnosis"}
    return validate_reply({**reply, **kw})


def _prov(item: SeedItem, **kw) -> dict:
    base = {"source_dataset": item.dataset, "source_id": item.id, "generator": "openai",
            "generator_version": "0.1.0", "model_id": "m", "prompt_strategy": "direct",
            "template_hash": "0123456789abcdef", "cycle": 2, "seed": 7, "created_at": datetime.fromisoformat(WHEN)}
    return {**base, **kw}


def _validated(item: SeedItem, fields: dict, prov: dict) -> VQASample:
    return VQASample(images=(item.image,), provenance=Provenance(**prov), split=item.split,
                     subject_id=item.subject_id, **fields)


def _same(fast: VQASample, slow: VQASample) -> None:
    assert fast == slow and fast.id == slow.id == slow.content_id
    assert fast.model_fields_set == slow.model_fields_set
    assert fast.provenance.model_fields_set == slow.provenance.model_fields_set
    assert list(fast.__dict__) == list(slow.__dict__)
    assert list(fast.provenance.__dict__) == list(slow.provenance.__dict__)
    assert fast.model_dump_json() == slow.model_dump_json() and repr(fast) == repr(slow)
    assert hash(fast.images) == hash(slow.images) and fast.model_copy(update={"tags": ("x",)}).tags == ("x",)
    assert VQASample.model_validate_json(fast.model_dump_json()) == fast


@pytest.mark.parametrize("item_kw, field_kw, prov_kw", [
    ({}, {}, {}),
    ({"subject_id": "patient-9", "split": "val"}, {}, {}),
    ({"split": None}, {}, {"model_id": None, "prompt_strategy": None, "template_hash": None, "seed": None}),
    ({"dataset": "données é"}, {"question": "Quelle anomalie ? é ü 中", "rationale": "  spaced  "}, {"cycle": 0}),
    ({}, {"options": ["A. effusion", "B. normal"], "answer": "B"}, {"generator_version": "0.1.0+bank.v003"}),
    ({}, {"options": [f"option {i}" for i in range(8)], "answer": "option 7"}, {}),
])
def test_a_sample_from_checked_fields_equals_the_validated_one(item_kw, field_kw, prov_kw):
    item = _item(**item_kw)
    fields, prov = _fields(**field_kw), _prov(_item(**item_kw), **prov_kw)
    fast = checked_sample(item, fields, prov)
    assert fast is not None
    _same(fast, _validated(item, fields, prov))
    assert checked_sample(item, fields, dict(reversed(prov.items()))) is None  # another order: validation decides


@pytest.mark.parametrize("change", [
    lambda f, p: f.update(question="\ud800 a lone surrogate"),  # pydantic refuses it: so must the sample
    lambda f, p: f.update(rationale="bad \udfff"),
    lambda f, p: f.update(options=("a", "A ")),  # not unique once stripped and lower-cased
    lambda f, p: f.update(options=("a", " ")),
    lambda f, p: f.update(options=("only",), answer="only"),
    lambda f, p: f.update(options=tuple("abcdefghi"), answer="a"),
    lambda f, p: f.update(answer="absent"),
    lambda f, p: f.update(question="   "),
    lambda f, p: p.update(cycle=-1),
    lambda f, p: p.update(seed=True),
    lambda f, p: p.update(created_at=WHEN),  # a string pydantic would parse
    lambda f, p: f.update(options=["Effusion", "normal", "pneumonia"]),  # a list pydantic would make a tuple
    lambda f, p: f.update(extra="field"),
    lambda f, p: f.update(modality="xray"),
])
def test_anything_the_check_does_not_vouch_for_goes_to_validation_with_the_same_outcome(change):
    item, fields = _item(), dict(_fields())
    prov = _prov(item)
    change(fields, prov)
    assert checked_sample(item, fields, prov) is None
    template = builtin("direct")
    reply = Reply(text="{}", created_at=WHEN)
    context = StageContext(work_dir=".", cycle=prov["cycle"], seed=prov["seed"])
    got = build_sample(item, fields, reply, generator="openai", model="m", template=template, prompt="p",
                       context=context, template_hash=prov["template_hash"])
    try:
        want: VQASample | str = _validated(item, fields, {**prov, "generator_version": got.provenance.generator_version}
                                           if isinstance(got, VQASample) else prov)
    except ValueError:
        want = "invalid_sample"
    if isinstance(want, str):
        assert isinstance(got, Reject) and got.reason == want
    else:
        assert isinstance(got, VQASample) and got.id == want.id


def test_build_sample_takes_the_quick_way_for_a_checked_reply_and_matches_the_long_way():
    item, fields = _item(subject_id="s-1"), _fields()
    template = builtin("direct")
    context = StageContext(work_dir=".", cycle=1, seed=3)
    reply = Reply(text="{}", created_at=WHEN)
    got = build_sample(item, fields, reply, generator="openai", model="m", template=template, prompt="the prompt",
                       context=context)
    from medgr2 import __version__

    prov = _prov(item, generator_version=template.generator_version(__version__), prompt_strategy="direct",
                 template_hash=template.hash("the prompt"), cycle=1, seed=3)
    _same(got, _validated(item, fields, prov))


def test_the_prompt_json_made_part_by_part_is_json_dumps():
    item = SeedItem(id="x", dataset='d"a\\t\u00e9\x01', modality=Modality.CT, image=ImageRef(path="a.png"),
                    labels={"diagnosis": 'quo"te\nnew\u2028line', "z": "\x1f\t"}, text='rep"ort \u00e9 \\')
    for name in ("direct", "step_by_step", "meta_cognitive"):
        template = builtin(name)
        prompt = template.render_encoded(item)
        assert prompt == template.render(item)
        assert json_str(prompt) == json.dumps(prompt, ensure_ascii=False)
        assert template.hash(prompt) == template.hash(template.render(item))


def test_the_ascii_secret_pre_check_agrees_with_the_regex():
    rng = random.Random(5)
    alphabet = "abkAKIiSs-ze rpyBEARERuthoizn:=_0123"
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        assert might_hold_secret(text) == bool(_HINTS.search(text)), text
    for text in ("\u017fk-abcdefgh", "ap\u0131 key", "x\u212aey", "caf\u00e9 sk-", "caf\u00e9"):
        assert might_hold_secret(text) == bool(_HINTS.search(text)), text  # non-ASCII: the regex decides
    assert might_hold_secret("\u017fk-abcdefghij") and "sk-" not in "\u017fk-abcdefghij".lower()
    assert re.search("(?i)sk-", "\u017fk-")  # re.IGNORECASE folds the long s into "s"; str.lower does not


def test_module_constants_are_what_the_quick_sample_assumes():
    from medgr2_generation import backend_support

    assert backend_support._FAST, "VQASample / Provenance changed: update checked_sample (it now always validates)"
    assert Modality("xray") is Modality.XRAY and QuestionType("disease_diagnosis") is QuestionType.DISEASE_DIAGNOSIS
    assert datetime.fromisoformat(WHEN).tzinfo == timezone.utc


def test_a_new_rule_on_the_sample_is_seen_by_the_quick_sample_guard():
    from medgr2_generation import backend_support
    from pydantic import Field, field_validator

    from medgr2.data import VQASample

    class Stricter(VQASample):
        @field_validator("rationale")
        @classmethod
        def _short(cls, v: str) -> str:
            return v

    class Capped(VQASample):
        rationale: str = Field(default="", max_length=500)

    assert backend_support._rules(VQASample) == backend_support._SAMPLE_RULES
    for changed in (Stricter, Capped):  # the quick sample would not check these: the guard must differ
        assert backend_support._rules(changed) != backend_support._SAMPLE_RULES


def test_a_cache_record_is_the_json_every_version_wrote():
    from medgr2_generation.reply_cache import _record

    for text in ('{"a": 1}', 'quo"te \\ back \n new \u00e9 \u2028 \x01', ""):
        reply = Reply(text=text, input_tokens=3, output_tokens=5, finish_reason="stop", created_at=WHEN)
        want = json.dumps({"key": "k\u00e9y", "reply": vars(reply)}, default=str, ensure_ascii=False) + "\n"
        assert _record("k\u00e9y", reply) == want.encode("utf-8")


def test_progress_is_given_in_batches_with_the_same_totals(gen_registry, items_factory, tmp_path):
    """Outcomes hands the progress task its counts at each refresh and at the end: the totals are those of one
    advance per result (samples done, content rejects, transport failures)."""
    from medgr2.progress import SilentReporter
    from medgr2.testing.fake_servers import FakeOpenAIServer, FaultPlan

    reporter = SilentReporter()
    items = items_factory(12)
    with FakeOpenAIServer(faults=FaultPlan(rates={"malformed": 0.5}, seed=1)) as server:
        gen = gen_registry.create("generator", "openai", {"base_url": server.base_url, "reask": False,
                                                          "concurrency": 3, "strategy": "direct"})
        result = gen.generate(items, StageContext(work_dir=tmp_path, registry=gen_registry, reporter=reporter))
    (task,) = reporter.tasks
    assert task.done == 12 and task.counts["done"] == len(result.samples) and result.rejects
    assert task.counts["rejected"] == len(result.rejects) and "failed" not in task.counts


def test_the_group_commit_on_callbacks_writes_every_reply_before_its_put_returns(tmp_path):
    """ResponseCache.put's group commit (a timer, the writer thread, one callback back): each put returns once its
    line is in the file, replies arriving within the window share a commit, every line is the record ``add``
    would write, and a reload finds them all."""
    import asyncio

    from medgr2_generation.reply_cache import ResponseCache, _record

    path = tmp_path / "cache.jsonl"
    cache = ResponseCache(path)
    writes: list[int] = []
    plain_write = cache._write
    cache._write = lambda records: (writes.append(len(records)), plain_write(records))[1]  # type: ignore[method-assign]

    async def one(i: int) -> None:
        await asyncio.sleep(0.0005 * (i % 8))
        stored = await cache.put(f"k{i}", Reply(text=f"t{i}", created_at=WHEN))
        assert _record(f"k{i}", stored) in path.read_bytes().splitlines(keepends=True)  # on disk already
        assert cache.get(f"k{i}") == stored

    async def main() -> None:
        await asyncio.gather(*(one(i) for i in range(40)))

    asyncio.run(main())
    asyncio.run(main())  # a second loop on the same cache (the commit state is per loop): no hang, same answers
    cache.close()
    assert sum(writes) == 80 and len(writes) < 80  # grouped: fewer writes (and fsyncs) than replies
    again = ResponseCache(path)
    assert sorted(again.keys()) == sorted(f"k{i}" for i in range(40))
    assert again.get("k7") == Reply(text="t7", created_at=WHEN)
    again.close()


def test_a_disk_error_in_a_group_commit_reaches_every_waiter_and_the_next_commit_still_runs(tmp_path):
    import asyncio

    from medgr2_generation.reply_cache import ResponseCache

    cache = ResponseCache(tmp_path / "cache.jsonl")
    plain_write = cache._write
    fail = [True]

    def write(records):
        if fail[0]:
            raise OSError("disk full")
        return plain_write(records)

    cache._write = write  # type: ignore[method-assign]

    async def main() -> list:
        return await asyncio.gather(*(cache.put(f"k{i}", Reply(text="t")) for i in range(5)), return_exceptions=True)

    outcomes = asyncio.run(main())
    assert all(isinstance(o, OSError) and "disk full" in str(o) for o in outcomes)
    fail[0] = False
    assert all(isinstance(o, Reply) for o in asyncio.run(main())) and len(cache) == 5
    cache.close()
