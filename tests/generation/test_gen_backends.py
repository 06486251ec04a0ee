"""The openai and gemini backends against the fake servers on 127.0.0.1 (both SDKs)."""

from __future__ import annotations

import json
import time

import pytest
from medgr2_generation.contract import SAMPLE_SCHEMA, validate_reply

from medgr2.data import Reject, VQASample
from medgr2.testing.fake_servers import FakeGeminiServer, FakeOpenAIServer, FaultPlan
from medgr2.interfaces import StageContext

SERVERS = {"openai": FakeOpenAIServer, "gemini": FakeGeminiServer}
FAST = {"backoff_base_s": 0.01, "backoff_max_s": 0.05, "timeout_s": 5.0, "model": "fake-model"}


@pytest.fixture(autouse=True)
def _gemini_key(monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", "test-key")


def make(registry, backend, server, **options):
    return registry.create("generator", backend, {"base_url": server.base_url, **FAST, **options})


def ctx(tmp_path, registry, name="work", **kw):
    return StageContext(work_dir=tmp_path / name, registry=registry, **kw)


@pytest.mark.parametrize("backend", ["openai", "gemini"])
def test_generates_valid_samples_with_provenance(backend, gen_registry, items_factory, tmp_path):
    items = items_factory(6)
    with SERVERS[backend](latency=0.01) as server:
        result = make(gen_registry, backend, server, strategy="direct").generate(
            items, ctx(tmp_path, gen_registry, cycle=2, seed=5)
        )
        assert server.bodies["structured"] == 6 and server.bodies["images"] == 6
    assert len(result.samples) == 6 and not result.rejects
    for item, s in zip(items, result.samples):
        assert s.answer in s.options and s.images == (item.image,) and s.split == "train"
        p = s.provenance
        assert (p.source_id, p.generator, p.prompt_strategy, p.cycle, p.seed) == (
            item.id,
            backend,
            "direct",
            2,
            5,
        )
        assert p.template_hash and p.model_id == "fake-model"
    assert len({s.provenance.template_hash for s in result.samples}) == 3  # one per distinct label
    ledger = result.ledger
    assert (ledger.requests, ledger.successes, ledger.retries, ledger.failures) == (6, 6, 0, 0)
    assert ledger.input_tokens > 0 and ledger.output_tokens > 0 and ledger.extra["completed"] is True


@pytest.mark.parametrize("backend", ["openai", "gemini"])
@pytest.mark.parametrize(
    "faults", [["429"], ["500", "503"], ["reset", "429", "500"], ["bad_body"], ["timeout"]]
)
def test_k_faults_reach_the_server_as_k_plus_1_attempts(
    backend, faults, gen_registry, items_factory, tmp_path
):
    items = items_factory(3)
    plan = FaultPlan(per_prompt=faults, retry_after=0.05, stall_s=1.0)
    opts = {"max_retries": 4, "timeout_s": 0.5} if "timeout" in faults else {"max_retries": 4}
    with SERVERS[backend](faults=plan) as server:
        result = make(gen_registry, backend, server, **opts).generate(items, ctx(tmp_path, gen_registry))
        assert server.attempts == 3 * (len(faults) + 1)
        assert sorted(a.attempt for a in server.log) == sorted(list(range(len(faults) + 1)) * 3)
    assert len(result.samples) == 3
    assert result.ledger.retries == 3 * len(faults)


@pytest.mark.parametrize("backend", ["openai", "gemini"])
def test_retry_after_is_honoured(backend, gen_registry, items_factory, tmp_path):
    plan = FaultPlan(per_prompt=["429"], retry_after=0.6)
    with SERVERS[backend](faults=plan) as server:
        make(gen_registry, backend, server, backoff_base_s=0.0).generate(
            items_factory(1), ctx(tmp_path, gen_registry)
        )
        first, second = server.log[0].t, server.log[1].t
    assert 0.6 <= second - first < 1.2


def test_gives_up_with_the_error_recorded(gen_registry, items_factory, tmp_path):
    with FakeOpenAIServer(faults=FaultPlan(rates={"500": 1.0})) as server:
        result = make(gen_registry, "openai", server, max_retries=2).generate(
            items_factory(2), ctx(tmp_path, gen_registry)
        )
        assert server.attempts == 6
    assert not result.samples and {r.reason for r in result.rejects} == {"request_failed"}
    assert all("gave up after 3 attempt(s)" in r.detail and "500" in r.detail for r in result.rejects)
    assert result.ledger.failures == 2 and result.ledger.extra["errors"] == {"http_500": 6}


@pytest.mark.parametrize("backend", ["openai", "gemini"])
def test_malformed_replies_never_become_samples(backend, gen_registry, items_factory, tmp_path):
    """20 % malformed replies: every accepted sample validates and every reject has a reason."""
    items = items_factory(40)
    plan = FaultPlan(rates={"malformed": 0.2, "truncated": 0.05, "wrong_answer": 0.05}, seed=3)
    with SERVERS[backend](faults=plan) as server:
        result = make(gen_registry, backend, server, concurrency=8).generate(
            items, ctx(tmp_path, gen_registry)
        )
        reasks = sum(1 for a in server.log if a.prompt_key.startswith("Your previous reply"))
    assert len(result.samples) + len(result.rejects) == 40
    assert reasks >= 4  # some first replies were bad and re-asked once
    assert len(result.samples) >= 30
    for s in result.samples:
        dumped = json.loads(s.model_dump_json())
        validate_reply({k: dumped[k] for k in SAMPLE_SCHEMA["properties"]})
    for r in result.rejects:
        assert r.reason in {"malformed_json", "truncated", "answer_not_in_options"} and r.detail
        assert r.detail.startswith("after one re-ask")
    assert sum(result.ledger.rejects.values()) == len(result.rejects)


def test_an_invalid_reply_is_reasked_once_with_the_error(gen_registry, items_factory, tmp_path):
    from medgr2.testing.fake_servers import default_reply

    def reply(prompt):
        data = default_reply(prompt)
        if not prompt.startswith("Your previous reply"):
            data["answer"] = "none of these"
        return json.dumps(data)

    with FakeOpenAIServer(reply=reply) as server:
        result = make(gen_registry, "openai", server).generate(items_factory(1), ctx(tmp_path, gen_registry))
        follow_up = server.last_body["messages"][0]["content"][0]["text"]
    assert len(result.samples) == 1 and server.attempts == 2
    assert (
        "not one of the options" in follow_up
        and "Previous reply" in follow_up
        and "- diagnosis:" in follow_up
    )


def test_reask_off_rejects_at_once(gen_registry, items_factory, tmp_path):
    with FakeOpenAIServer(faults=FaultPlan(per_prompt=["malformed"])) as server:
        result = make(gen_registry, "openai", server, reask=False).generate(
            items_factory(2), ctx(tmp_path, gen_registry)
        )
        assert server.attempts == 2
    assert [r.reason for r in result.rejects] == ["malformed_json", "malformed_json"]


def test_resume_and_cache_invalidation_by_one_parameter(gen_registry, items_factory, tmp_path):
    items = items_factory(8)
    context = ctx(tmp_path, gen_registry)
    with FakeOpenAIServer() as server:
        first = make(gen_registry, "openai", server).generate(items, context)
        assert server.attempts == 8
        again = make(gen_registry, "openai", server).generate(items, context)
        assert server.attempts == 8 and again.samples == first.samples
        assert (
            again.ledger.requests == 0
            and again.ledger.extra["cache_hits"] == 8
            and again.ledger.cost_usd == 0
        )
        # scheduling options do not change replies: still nothing to request
        make(gen_registry, "openai", server, concurrency=3, rpm=6000, timeout_s=9).generate(items, context)
        assert server.attempts == 8
        # one changed item: only it is requested again
        changed = [*items[:7], items[7].model_copy(update={"labels": {"diagnosis": "fracture"}})]
        make(gen_registry, "openai", server).generate(changed, context)
        assert server.attempts == 9
        # a generation parameter changes every request
        make(gen_registry, "openai", server, temperature=0.2).generate(items, context)
        assert server.attempts == 17
        # so does the prompt strategy
        make(gen_registry, "openai", server, strategy="direct").generate(items, context)
        assert server.attempts == 25


def test_restricted_sources_never_leave_the_machine(gen_registry, items_factory, tmp_path):
    items = items_factory(2) + items_factory(1, start=2, labels={"diagnosis": "x", "restricted": "true"})
    items += items_factory(1, dataset="private")
    with FakeOpenAIServer() as server:
        result = make(gen_registry, "openai", server, restricted_datasets=["private"]).generate(
            items, ctx(tmp_path, gen_registry)
        )
        assert server.attempts == 2
        allowed = make(gen_registry, "openai", server, allow_restricted=True, restricted_datasets=["private"])
        assert len(allowed.generate(items, ctx(tmp_path, gen_registry)).samples) == 4
    assert [r.reason for r in result.rejects] == ["restricted_source", "restricted_source"]
    assert "allow_restricted" in result.rejects[0].detail


def test_images_are_sent_inline_under_the_caps(gen_registry, tmp_path):
    import base64
    import io

    from PIL import Image

    from medgr2.data import ImageRef, Modality, SeedItem

    Image.new("RGB", (1200, 900), (20, 40, 60)).save(tmp_path / "big.png")
    item = SeedItem(
        id="big",
        dataset="demo",
        modality=Modality.CT,
        labels={"diagnosis": "cyst"},
        image=ImageRef(path="big.png", root=str(tmp_path)),
    )
    with FakeOpenAIServer() as server:
        make(gen_registry, "openai", server, max_image_side=256, max_image_pixels=40_000).generate(
            [item], ctx(tmp_path, gen_registry)
        )
        url = server.last_body["messages"][0]["content"][1]["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,")
    img = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert max(img.size) <= 256 and img.size[0] * img.size[1] <= 40_000


def test_unreadable_images_are_rejected(gen_registry, tmp_path):
    from medgr2.data import ImageRef, Modality, SeedItem

    (tmp_path / "broken.png").write_bytes(b"not a png")
    item = SeedItem(
        id="broken",
        dataset="demo",
        modality=Modality.CT,
        image=ImageRef(path="broken.png", root=str(tmp_path)),
    )
    with FakeOpenAIServer() as server:
        result = make(gen_registry, "openai", server).generate([item], ctx(tmp_path, gen_registry))
        assert server.attempts == 0
    assert result.rejects[0].reason in {"image_unreadable", "error"} and result.rejects[0].detail


@pytest.mark.parametrize("backend", ["openai", "gemini"])
def test_complete_json_for_judges(backend, gen_registry, items_factory, tmp_path):
    schema = {
        "type": "object",
        "properties": {"score": {"type": "integer"}, "verdict": {"type": "string"}},
        "required": ["score", "verdict"],
    }
    replies = {
        "good": '{"score": 7, "verdict": "ok"}',
        "prose": 'Sure: ```json\n{"score": 2, "verdict": "no"}\n```',
        "bad": '{"score": "high", "verdict": "x"}',
    }

    def reply(prompt):
        return next(v for k, v in replies.items() if prompt.endswith(k + " one"))

    item = items_factory(1)[0]
    prompts = [("good one", [item.image]), ("prose one", []), ("bad one", [])]
    with SERVERS[backend](reply=reply) as server:
        gen = make(gen_registry, backend, server)
        out = gen.complete_json(prompts, schema, ctx(tmp_path, gen_registry))
        assert server.attempts == 4  # the bad one is re-asked once
        assert server.bodies["images"] == 1 and server.bodies["structured"] == 4
    assert out[0] == {"score": 7, "verdict": "ok"} and out[1] == {"score": 2, "verdict": "no"}
    assert isinstance(out[2], Reject) and out[2].reason == "schema" and "integer" in out[2].detail


def test_gemini_needs_a_key(gen_registry, items_factory, tmp_path, monkeypatch):
    from medgr2_generation.engine import FatalError

    monkeypatch.delenv("GEMINI_API_KEY")
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    gen = gen_registry.create("generator", "gemini", {})
    with pytest.raises(FatalError, match="GEMINI_API_KEY"):
        gen.generate(items_factory(1), ctx(tmp_path, gen_registry))


def test_options_are_validated_and_hold_no_secret(gen_registry):
    from medgr2.registry import OptionsError

    with pytest.raises(OptionsError, match="api_key"):
        gen_registry.create("generator", "openai", {"api_key": "sk-123"})
    with pytest.raises(OptionsError, match="concurrency"):
        gen_registry.create("generator", "gemini", {"concurrency": 0})
    opts = gen_registry.entry("generator", "gemini").validate_options({})
    assert opts.model == "gemini-2.0-flash" and "key" not in json.dumps(opts.model_dump()).lower()


def test_rpm_limit_against_the_server(gen_registry, items_factory, tmp_path):
    with FakeOpenAIServer() as server:
        t = time.monotonic()
        make(gen_registry, "openai", server, rpm=600, concurrency=8).generate(
            items_factory(6), ctx(tmp_path, gen_registry)
        )
        elapsed = time.monotonic() - t
        times = [a.t for a in server.log]
    assert elapsed >= 0.5  # 600 rpm: one start per 0.1 s
    assert times[-1] - times[0] >= 0.45  # five 0.1 s slots, less arrival jitter


def test_samples_are_valid_vqasamples(gen_registry, items_factory, tmp_path):
    with FakeGeminiServer() as server:
        result = make(gen_registry, "gemini", server).generate(items_factory(2), ctx(tmp_path, gen_registry))
    for s in result.samples:
        assert VQASample.model_validate_json(s.model_dump_json()) == s
