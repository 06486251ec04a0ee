"""Work done once per run and memory flat in N: images encoded once per run, results streamed in input
order (``generate_to``), and a reply cache that keeps an index, not the replies."""

from __future__ import annotations

import json
import random
import tracemalloc

from medgr2.data import ImageRef, Modality, Reject, SeedItem, VQASample
from medgr2.interfaces import StageContext
from medgr2.testing.fake_servers import FakeOpenAIServer, FaultPlan
from medgr2_generation.engine import Reply, ResponseCache

FAST = {"backoff_base_s": 0.01, "backoff_max_s": 0.05, "timeout_s": 5.0, "model": "fake-model"}


def shared_image_items(items_factory, n, images=2):
    """``n`` items with distinct labels over ``images`` image files."""
    base = items_factory(images)
    return [SeedItem(id=f"it-{i}", dataset="demo", modality=Modality.XRAY, split="train",
                     image=base[i % images].image, labels={"diagnosis": f"d{i}"}) for i in range(n)]


def test_each_image_is_encoded_once_per_run(gen_registry, items_factory, tmp_path, monkeypatch):
    import medgr2_generation.api as api

    calls: list[str] = []
    real = api.encode_image
    monkeypatch.setattr(api, "encode_image", lambda ref, **kw: calls.append(ref.key) or real(ref, **kw))
    items = shared_image_items(items_factory, 12)
    plan = FaultPlan(per_prompt=["500"], rates={"malformed": 0.3}, seed=1)  # retries and re-asks too
    with FakeOpenAIServer(faults=plan) as server:
        gen = gen_registry.create("generator", "openai", {"base_url": server.base_url, **FAST, "concurrency": 4})
        result = gen.generate(items, StageContext(work_dir=tmp_path / "w", registry=gen_registry))
        assert server.attempts > 24  # every prompt failed once; some were re-asked
        assert server.bodies["images"] == server.attempts
    assert len(result.samples) + len(result.rejects) == 12
    assert sorted(calls) == sorted({i.image.key for i in items})  # 2 encodings for 12 items and ~30 requests
    calls.clear()
    gen.generate(items, StageContext(work_dir=tmp_path / "w2", registry=gen_registry))
    assert len(calls) == 2  # a new run encodes again (the files may have changed)


def test_an_unreadable_shared_image_rejects_every_item_that_uses_it(gen_registry, tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not a png")
    ref = ImageRef(path="broken.png", root=str(tmp_path))
    items = [SeedItem(id=f"b{i}", dataset="demo", modality=Modality.CT, image=ref, labels={"d": str(i)})
             for i in range(3)]
    with FakeOpenAIServer() as server:
        gen = gen_registry.create("generator", "openai", {"base_url": server.base_url, **FAST})
        result = gen.generate(items, StageContext(work_dir=tmp_path / "w", registry=gen_registry))
        assert server.attempts == 0
    assert [r.reason for r in result.rejects] == ["image_unreadable"] * 3


def test_generate_to_streams_results_in_input_order(gen_registry, items_factory, tmp_path):
    items = items_factory(40)
    plan = FaultPlan(rates={"malformed": 0.15, "wrong_answer": 0.1}, seed=4)
    rng = random.Random(0)
    with FakeOpenAIServer(latency=lambda r: rng.uniform(0.0, 0.05), faults=plan) as server:
        gen = gen_registry.create("generator", "openai", {"base_url": server.base_url, **FAST, "concurrency": 8})
        seen: list[VQASample | Reject] = []
        ledger = gen.generate_to(items, StageContext(work_dir=tmp_path / "a", registry=gen_registry), seen.append)
        whole = gen.generate(items, StageContext(work_dir=tmp_path / "b", registry=gen_registry))
    ids = [r.provenance.source_id if isinstance(r, VQASample) else r.id for r in seen]
    assert ids == [i.id for i in items]  # one result per item, in input order, whatever order they finished in
    samples = [r for r in seen if isinstance(r, VQASample)]
    assert ledger.successes == len(samples) and sum(ledger.rejects.values()) == 40 - len(samples)
    assert ledger.extra["content_rejects"] == 40 - len(samples) and ledger.extra["completed"] is True
    assert [s.id for s in whole.samples] == [s.id for s in samples]  # the same run, collected


def test_generate_to_takes_a_lazy_sequence(gen_registry, items_factory, tmp_path):
    base = items_factory(3)

    class Lazy:
        made = 0

        def __len__(self):
            return 30

        def __getitem__(self, i):
            if not 0 <= i < 30:
                raise IndexError(i)
            Lazy.made += 1
            return base[i % 3].model_copy(update={"id": f"lazy-{i}", "labels": {"diagnosis": f"x{i}"}})

    with FakeOpenAIServer() as server:
        gen = gen_registry.create("generator", "openai", {"base_url": server.base_url, **FAST})
        out: list = []
        gen.generate_to(Lazy(), StageContext(work_dir=tmp_path / "w", registry=gen_registry), out.append)
    assert len(out) == 30 and all(isinstance(r, VQASample) for r in out)
    assert 30 <= Lazy.made <= 40  # items made as the jobs need them (an item is looked up again for an error)


class Colliding(ResponseCache):
    """Every key has the same hash: lookups must still find each key's own reply."""

    _hash = staticmethod(lambda key: 7)


def test_the_cache_index_survives_hash_collisions(tmp_path):
    path = tmp_path / "c.jsonl"
    cache = Colliding(path)
    for k in ("k1", "k2", "k3"):
        cache.add(k, Reply(text=f"text {k}"))
    cache.add("k2", Reply(text="newer k2"))
    assert [cache.get(k).text for k in ("k1", "k2", "k3")] == ["text k1", "newer k2", "text k3"]
    assert cache.get("k4") is None and len(cache) == 3 and "k3" in cache and "k4" not in cache
    cache.close()
    again = Colliding(path)
    assert [again.get(k).text for k in ("k1", "k2", "k3")] == ["text k1", "newer k2", "text k3"]
    assert sorted(again.keys()) == ["k1", "k2", "k3"] and again.entries["k2"].text == "newer k2"
    again.close()
    plain = ResponseCache(path)
    assert plain.get("k2").text == "newer k2" and len(plain) == 3
    plain.close()


def test_the_cache_holds_an_index_not_the_replies(tmp_path):
    """10,000 replies of 4 kB (40 MB of text) cost the cache under 4 MB."""
    text = "x" * 4000
    import numpy  # noqa: F401 - imported by the index's first merge: not the cache's memory

    cache = ResponseCache(tmp_path / "c.jsonl", fsync=False)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(10_000):
        cache.add(f"{i:032x}", Reply(text=text, input_tokens=i))
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert grown < 1_500_000, grown  # the index: under 100 bytes a reply
    assert cache.get(f"{1234:032x}").input_tokens == 1234
    cache.close()
    lines = (tmp_path / "c.jsonl").read_text().splitlines()
    assert len(lines) == 10_000 and json.loads(lines[7])["key"] == f"{7:032x}"


def reference_render(template, item):
    """The prompt as ``string.Template.substitute`` gives it (how render worked before it was compiled)."""
    import string

    from medgr2.data import QuestionType
    from medgr2_generation.contract import SAMPLE_SCHEMA

    labels = "\n".join(f"- {k}: {v}" for k, v in sorted(item.labels.items()) if k != "restricted") or "- (none)"
    return string.Template(template.body).substitute(
        dataset=item.dataset, modality=item.modality.label, labels=labels,
        report=f"\nReport text:\n{item.text}\n" if item.text else "",
        modalities=", ".join(m.value for m in Modality), question_types=", ".join(q.value for q in QuestionType),
        schema=json.dumps(SAMPLE_SCHEMA, indent=1), exemplars=template.exemplars(item))


def test_compiled_templates_render_what_string_template_renders(items_factory):
    import pytest

    from medgr2_generation.prompts import PromptTemplate, builtin

    item = items_factory(1)[0]
    with_text = item.model_copy(update={"text": "Costs $5; see ${dataset}.", "labels": {"restricted": "no"}})
    custom = PromptTemplate("c", "1", "$$5 ${dataset}$modality-$$$labels$$\n$schema$report$$exemplars")
    for template in (*(builtin(s) for s in ("direct", "step_by_step", "meta_cognitive")), custom):
        for it in (item, with_text):
            assert template.render(it) == reference_render(template, it)
    with pytest.raises(ValueError, match="Invalid placeholder"):
        PromptTemplate("bad", "1", "costs $ 5 for $dataset").render(item)


def test_request_keys_are_the_engines_request_key(gen_registry, items_factory):
    """The generator's request keys (JSON encoded once per run but the prompt and image keys) are
    exactly request_key's, so caches written before stay valid."""
    from medgr2_generation.engine import request_key

    items = items_factory(2)
    for options in ({}, {"temperature": 0.25, "image_format": "png", "model": "mødel"}):
        gen = gen_registry.create("generator", "openai", {"base_url": "http://127.0.0.1:9/v1", **options})
        for bank in (None, "v002"):
            gen._bank_version = bank
            for prompt in ("", "plain", "é \x00 \u2028 \"q\" \\ \U0001f600"):
                for refs in ([], [items[0].image], [items[0].image, items[1].image]):
                    for version in ("vqa-sample/1", "json/abc"):
                        expected = request_key(backend="openai", model=gen.options.model, prompt=prompt,
                                               images=[r.key for r in refs], params=gen.params(), schema=version)
                        assert gen._key(prompt, refs, version) == expected


def test_template_hashes_are_stable_hash(tmp_path):
    from medgr2.data import stable_hash
    from medgr2_generation.prompts import builtin

    template = builtin("meta_cognitive")

    class Bank:
        version = "v003"

    for prompt in ("", "x", "é \x00 \u2028 \"q\" \\ \U0001f600"):
        assert template.hash(prompt) == stable_hash(template.name, prompt)
    from dataclasses import replace

    banked = replace(template, bank=Bank())
    assert banked.hash("p é") == stable_hash(banked.name, "p é", "v003")


def test_the_secret_pre_check_never_skips_what_redact_would_change(monkeypatch):
    from medgr2_generation import reply_cache as engine
    from medgr2_generation.errors import redact, register_secret_env

    monkeypatch.setenv("MY_PROXY_KEY", "plainvalue42")
    register_secret_env("MY_PROXY_KEY")
    monkeypatch.setattr(engine, "_SECRETS", [float("-inf"), ()])  # read the environment again
    secrets = ['{"echo": "Authorization: Bearer sk-abcdefghijklmnop"}', "key AIzaSyA1234567890abcdefghijkl here",
               "x-goog-api-key: 0123456789abcdef", "API_KEY=abcdef123456", "BEARER tok3n-abcdef12", "apikey: qwertyuiop",
               "the proxy said plainvalue42 back"]
    for text in secrets:
        assert redact(text) != text and engine.might_hold_secret(text), text
    clean = json.dumps({"question": "What finding is shown?", "options": ["effusion", "normal"],
                        "rationale": "Blunted costophrenic angle."})
    assert not engine.might_hold_secret(clean) and redact(clean) == clean
    assert engine.might_hold_secret("a rapid capillary refill") and redact("a rapid capillary refill") == (
        "a rapid capillary refill")  # a hint is only a reason to run the full redaction


def test_offset_index_matches_a_dict_and_stays_small():
    from medgr2_generation.engine import OffsetIndex

    rng = random.Random(3)
    index, ref = OffsetIndex(), {}
    keys = [rng.getrandbits(64) - 2**63 for _ in range(10_000)]
    for i in range(20_000):  # every key set twice on average: later offsets replace earlier ones
        k = keys[rng.randrange(len(keys))]
        index[k] = ref[k] = i
    assert len(index) == len(ref) and sorted(index.values()) == sorted(ref.values())
    assert all(index.get(k) == ref.get(k) for k in keys[:5000]) and index.get(12345) is None

    tracemalloc.start()  # numpy is imported by now (the merges above)
    before = tracemalloc.get_traced_memory()[0]
    big = OffsetIndex()
    for i in range(50_000):
        big[hash(f"{i:032x}")] = i * 700
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert grown < 2_000_000, grown  # a dict of ints: about 5 MB
    assert big.get(hash(f"{12345:032x}")) == 12345 * 700


def test_loading_a_big_cache_reads_it_line_by_line(tmp_path):
    """Resuming over 20 MB of cached replies indexes them without holding the file or the replies."""
    import numpy  # noqa: F401 - imported by the index's first merge: not the cache's memory

    path = tmp_path / "c.jsonl"
    cache = ResponseCache(path, fsync=False)
    for i in range(5_000):
        cache.add(f"{i:032x}", Reply(text="y" * 4000, output_tokens=i))
    cache.close()
    tracemalloc.start()
    loaded = ResponseCache(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 3_000_000, peak
    assert len(loaded) == 5_000 and loaded.get(f"{4321:032x}").output_tokens == 4321
    loaded.close()
