"""Issue 19, generation rows: each fault as an operator meets it, against the fake servers on 127.0.0.1.

* wrong API key / unknown model / every request invalid: generation stops after the requests in
  flight, raises PermanentError naming the fix, the CLI exits 1, the loop does not mark it complete;
* a content reject is final (cached) unless ``retry_rejects`` / ``--retry-rejects``; a transport
  failure is never final; the ledger counts both;
* a 429 with Retry-After pauses the whole client;
* replies are checked against the exact schema sent;
* secrets echoed by a server never reach anything stored or printed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from medgr2.data import ImageRef, Modality, SeedItem
from medgr2_generation.errors import PermanentError
from medgr2.testing.fake_servers import FakeGeminiServer, FakeOpenAIServer, FaultPlan
from medgr2.interfaces import StageContext
from medgr2.stages.generate import generate
from medgr2.store import read_jsonl

SERVERS = {"openai": FakeOpenAIServer, "gemini": FakeGeminiServer}
FAST = {"backoff_base_s": 0.01, "backoff_max_s": 0.05, "timeout_s": 5.0, "model": "fake-model"}
OPENAI_KEY = "sk-test-" + "A1b2C3d4" * 4
GEMINI_KEY = "AIzaSy" + "Q7r8S9t0" * 4 + "xyz"


@pytest.fixture(autouse=True)
def _keys(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.setenv("GEMINI_API_KEY", GEMINI_KEY)


def make_items(root: Path, n: int, labels: list[str] | None = None) -> list[SeedItem]:
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    items = []
    for i in range(n):
        Image.new("RGB", (48, 32), ((i * 37) % 256, 80, 160)).save(root / f"img{i}.png")
        label = labels[i] if labels else f"finding {i}"
        items.append(SeedItem(id=f"demo-{i}", dataset="demo", modality=Modality.XRAY, split="train",
                              image=ImageRef(path=f"img{i}.png", root=str(root), sha256=f"sha-{i}"),
                              labels={"diagnosis": label}))
    return items


def make(registry, backend, server, **options):
    return registry.create("generator", backend, {"base_url": server.base_url, **FAST, **options})


def ctx(tmp_path, registry, name="gen"):
    return StageContext(work_dir=tmp_path / name, registry=registry)


# ---------------------------------------------------------------------------------- permanent errors


@pytest.mark.parametrize("backend,status,key_var", [("openai", "401", "OPENAI_API_KEY"), ("openai", "403", "OPENAI_API_KEY"),
                                                    ("gemini", "401", "GEMINI_API_KEY")])
def test_wrong_key_stops_after_the_requests_in_flight(backend, status, key_var, registry, tmp_path):
    """Was: all 200 requests sent, 0 samples, exit 0. Now: 4 sent (the 4 in flight), PermanentError."""
    items = make_items(tmp_path / "img", 200)
    context = ctx(tmp_path, registry)
    with SERVERS[backend](latency=0.2, faults=FaultPlan(rates={status: 1.0})) as server:
        gen = make(registry, backend, server, concurrency=4)
        with pytest.raises(PermanentError) as err:
            generate(gen, items, context)
        assert server.attempts == 4
    e = err.value
    assert (e.kind, e.status, e.requests_sent) == ("auth", int(status), 4)
    assert key_var in str(e) and "stopped after 4 request(s)" in str(e)
    assert OPENAI_KEY not in str(e) and GEMINI_KEY not in str(e)
    # nothing of the stage is written as done: no samples/rejects/ledger, an empty reply cache
    assert sorted(p.name for p in context.work_dir.iterdir()) in ([], ["requests.jsonl"])
    assert read_jsonl(context.work_dir / "requests.jsonl") == []


def test_unknown_model_names_the_model_and_the_option(registry, tmp_path):
    items = make_items(tmp_path / "img", 30)
    with FakeOpenAIServer(latency=0.2, faults=FaultPlan(rates={"404": 1.0})) as server:
        gen = make(registry, "openai", server, concurrency=3, model="gpt-4o-mnii")
        with pytest.raises(PermanentError) as err:
            generate(gen, items, ctx(tmp_path, registry))
        assert server.attempts == 3
    assert err.value.kind == "model" and "'gpt-4o-mnii'" in str(err.value)
    assert "generation.generator.options.model" in str(err.value)


def test_invalid_request_on_every_prompt_stops_after_three(registry, tmp_path):
    items = make_items(tmp_path / "img", 50)
    with FakeOpenAIServer(faults=FaultPlan(rates={"400": 1.0})) as server:
        gen = make(registry, "openai", server, concurrency=1)
        with pytest.raises(PermanentError) as err:
            generate(gen, items, ctx(tmp_path, registry))
        assert server.attempts == 3  # abort_after_invalid (3) requests in a row, then nothing
    assert err.value.kind == "invalid" and err.value.requests_sent == 3
    assert "structured_output" in str(err.value) and "'fake-model'" in str(err.value)


class _OnePromptRefused(FaultPlan):
    def transport_fault(self, prompt_key, attempt):
        return "400" if "oversized" in prompt_key else None


class _WholePromptServer(FakeOpenAIServer):
    def prompt_key(self, prompt):  # the whole prompt, so a fault plan can see the labels
        return prompt


def test_invalid_request_on_one_prompt_is_a_final_reject_and_the_rest_go_on(registry, tmp_path):
    labels = ["a", "b", "oversized", "c", "d", "e"]
    items = make_items(tmp_path / "img", 6, labels)
    with _WholePromptServer(faults=_OnePromptRefused()) as server:
        result = make(registry, "openai", server, concurrency=2).generate(items, ctx(tmp_path, registry))
        assert server.attempts == 6  # the refused one is not retried
    assert len(result.samples) == 5
    assert [(r.id, r.reason) for r in result.rejects] == [("demo-2", "request_refused")]
    assert (result.ledger.extra["content_rejects"], result.ledger.extra["transport_failures"]) == (1, 0)


def _cli(args, env_extra=None):
    import os

    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-c", "from medgr2.cli import main; main()", "--plugin",
                           "medgr2.testing", *args], capture_output=True, text=True, timeout=180, env=env)


def _run_config(tmp_path: Path, base_url: str) -> Path:
    import yaml

    cfg = {
        "name": "r", "runs_dir": str(tmp_path / "runs"), "cycles": 1,
        "data": {"sources": [{"name": "fake"}]},
        "generation": {"generator": {"name": "openai", "options": {
            "strategy": "direct", "base_url": base_url, "concurrency": 2, "max_retries": 1, **FAST}}},
        "reward": {"model": {"name": "fake"}, "grade_set": {"name": "fake"}},
        "filters": {"steps": [{"name": "fake"}]},
        "policy": {"sft": {"name": "fake"}, "grpo": None},
        "evaluation": {"evaluator": {"name": "fake"}, "question_builder": {"name": "fake"}},
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_cli_generate_with_a_wrong_key_exits_1_naming_the_variable(tmp_path):
    config = _run_config(tmp_path, "http://127.0.0.1:9/v1")
    with FakeOpenAIServer(latency=0.3, faults=FaultPlan(rates={"401": 1.0})) as server:
        proc = _cli(["generate", str(config), "--set", f"generation.generator.options.base_url={server.base_url}",
                     "--out", str(tmp_path / "out"), "--quiet"])
        assert server.attempts == 2  # concurrency 2: the two in flight
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "OPENAI_API_KEY" in proc.stderr and "authentication failed" in proc.stderr
    assert OPENAI_KEY not in proc.stderr + proc.stdout
    assert not (tmp_path / "out" / "samples.jsonl").exists()


@pytest.mark.parametrize("fault", ["401", "500"])
def test_run_with_a_wrong_key_fails_and_resume_generates_after_the_fix(fault, tmp_path):
    """Was: generate marked complete with 0 samples, exit 0, and --resume skipped it (0 requests).
    Now: a wrong key stops after the 2 requests in flight; transport failures (500 after 1 retry)
    leave the stage not complete either; both exit 1 and --resume generates after the fix."""
    with FakeOpenAIServer(latency=0.2, faults=FaultPlan(rates={fault: 1.0})) as server:
        config = _run_config(tmp_path, server.base_url)
        proc = _cli(["run", str(config), "-q"])
        attempts = server.attempts
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    if fault == "401":
        assert attempts == 2 and "OPENAI_API_KEY" in proc.stderr
    else:
        rejects = read_jsonl(tmp_path / "runs" / "r" / "cycle-001" / "generate" / "rejects.jsonl")
        assert attempts == 2 * len(rejects) and {r["reason"] for r in rejects} == {"request_failed"}
        assert f"{len(rejects)} of {len(rejects)} items failed in transport" in proc.stderr
    stages = json.loads((tmp_path / "runs" / "r" / "manifest.json").read_text())["stages"]
    assert "cycle-001/generate" not in stages and "cycle-000/seed" in stages
    with FakeOpenAIServer() as fixed:
        config = _run_config(tmp_path, fixed.base_url)  # the same config hash is not needed: resume redoes it
        proc = _cli(["run", str(config), "-q", "--resume"])
        path = tmp_path / "runs" / "r" / "cycle-001" / "generate" / "ledger.json"
        assert path.exists(), proc.stdout[-2000:] + proc.stderr[-3000:]
        ledger = json.loads(path.read_text())
        assert fixed.attempts == ledger["extra"]["items"] == ledger["requests"] > 0
    stages = json.loads((tmp_path / "runs" / "r" / "manifest.json").read_text())["stages"]
    assert "cycle-001/generate" in stages
    assert ledger["successes"] == ledger["extra"]["items"]


# ---------------------------------------------------------------------------------- rejects by cause


def test_content_rejects_are_final_unless_retry_rejects(registry, tmp_path):
    """Was: a content-rejected reply was cached for good. Now: final, but retry_rejects re-asks it."""
    items = make_items(tmp_path / "img", 5)
    context = ctx(tmp_path, registry)
    with FakeOpenAIServer(faults=FaultPlan(rates={"malformed": 1.0})) as server:
        first = make(registry, "openai", server).generate(items, context)
        assert server.attempts == 10  # each prompt and its one re-ask
        assert len(first.samples) == 0 and first.ledger.extra["content_rejects"] == 5
        assert first.ledger.extra["transport_failures"] == 0
        again = make(registry, "openai", server).generate(items, context)
        assert server.attempts == 10 and again.ledger.requests == 0  # final: not asked again
        assert [r.reason for r in again.rejects] == ["malformed_json"] * 5
        server.faults = FaultPlan()  # the model behaves now
        retried = make(registry, "openai", server, retry_rejects=True).generate(items, context)
        assert server.attempts == 15 and retried.ledger.requests == 5
    assert len(retried.samples) == 5 and not retried.rejects
    assert retried.ledger.extra["retried_rejects"] == 5 and retried.ledger.extra["content_rejects"] == 0
    # the new replies replaced the rejected ones in the cache: a plain run now keeps all 5, 0 requests
    with FakeOpenAIServer() as server:
        plain = make(registry, "openai", server).generate(items, context)
        assert server.attempts == 0
    assert len(plain.samples) == 5


def test_transport_failures_are_never_final(registry, tmp_path):
    items = make_items(tmp_path / "img", 3)
    context = ctx(tmp_path, registry)
    with FakeOpenAIServer(faults=FaultPlan(rates={"500": 1.0})) as server:
        first = make(registry, "openai", server, max_retries=1).generate(items, context)
        assert server.attempts == 6  # 2 attempts per prompt
    assert [r.reason for r in first.rejects] == ["request_failed"] * 3
    assert (first.ledger.extra["content_rejects"], first.ledger.extra["transport_failures"]) == (0, 3)
    assert read_jsonl(context.work_dir / "requests.jsonl") == []  # nothing cached
    with FakeOpenAIServer() as server:
        second = make(registry, "openai", server).generate(items, context)
        assert server.attempts == 3
    assert len(second.samples) == 3 and second.ledger.extra["transport_failures"] == 0


def test_cli_generate_with_transport_failures_exits_1_and_a_rerun_asks_again(tmp_path):
    config = _run_config(tmp_path, "http://127.0.0.1:9/v1")
    out = tmp_path / "out"
    with FakeOpenAIServer(faults=FaultPlan(rates={"503": 1.0}, retry_after=None)) as server:
        base = ["generate", str(config), "--set", f"generation.generator.options.base_url={server.base_url}",
                "--out", str(out), "--json"]
        first = _cli(base)
        n = len(read_jsonl(out / "rejects.jsonl"))
        assert first.returncode == 1 and f"{n} item(s) failed in transport" in first.stderr
        assert server.attempts == 2 * n  # max_retries 1
        server.faults = FaultPlan()
        second = _cli(base)
        assert second.returncode == 0, second.stderr[-2000:]
        assert server.attempts == 3 * n and json.loads(second.stdout)["successes"] == n


def test_cli_retry_rejects_flag(tmp_path):
    config = _run_config(tmp_path, "http://127.0.0.1:9/v1")
    out = tmp_path / "out"
    with FakeOpenAIServer(faults=FaultPlan(rates={"malformed": 1.0})) as server:
        base = ["generate", str(config), "--set", f"generation.generator.options.base_url={server.base_url}",
                "--set", "generation.generator.options.reask=false", "--out", str(out), "--json"]
        first = _cli(base)
        assert first.returncode == 0, first.stderr[-2000:]
        n = json.loads(first.stdout)["extra"]["items"]
        assert server.attempts == n and json.loads(first.stdout)["extra"]["content_rejects"] == n
        second = _cli(base)
        assert json.loads(second.stdout)["requests"] == 0 and server.attempts == n
        server.faults = FaultPlan()
        third = _cli([*base, "--retry-rejects"])
        assert third.returncode == 0, third.stderr[-2000:]
        ledger = json.loads(third.stdout)
        assert server.attempts == 2 * n and ledger["requests"] == n and ledger["successes"] == n
        assert ledger["extra"]["retried_rejects"] == n
    assert len(read_jsonl(out / "samples.jsonl")) == n and read_jsonl(out / "rejects.jsonl") == []


def test_retry_rejects_flag_on_run_reaches_the_generator(tmp_path):
    """``medgr2 run --retry-rejects`` sets the generator option (visible in the run's resolved config)."""
    with FakeOpenAIServer() as server:
        config = _run_config(tmp_path, server.base_url)
        proc = _cli(["run", str(config), "-q", "--retry-rejects"])
    assert "retry_rejects: true" in (tmp_path / "runs" / "r" / "config.yaml").read_text(), proc.stderr[-2000:]


# ---------------------------------------------------------------------------------- one back-off


class _First429(FaultPlan):
    """A 429 for the very first attempt the server sees, nothing after."""

    def transport_fault(self, prompt_key, attempt):
        self.calls = getattr(self, "calls", 0) + 1
        return "429" if self.calls == 1 else None


def test_a_429_pauses_the_whole_client_for_its_retry_after(registry, tmp_path):
    """Was: only that request waited; a median 125 other attempts went out in the window. Now: none
    starts once the client knows (the 3 others already in flight finish)."""
    items = make_items(tmp_path / "img", 12)
    with FakeOpenAIServer(latency=0.1, faults=_First429(retry_after=0.6)) as server:
        result = make(registry, "openai", server, concurrency=4).generate(items, ctx(tmp_path, registry))
        log = list(server.log)
    assert len(result.samples) == 12 and len(log) == 13  # 12 prompts + 1 retry
    hit = next(a for a in log if a.fault == "429")
    in_window = [a for a in log if hit.done < a.t < hit.done + 0.6]
    # what arrives in the window was already sent: with the 3 still open at the server, at most the 3 other slots
    assert len(in_window) + hit.in_flight <= 3
    assert [a for a in log if hit.done + 0.05 < a.t < hit.done + 0.6] == []  # nothing sent once the client knew
    assert result.ledger.extra["throttled"] == 1
    assert result.ledger.extra["backoff"]["concurrency_decreases"] == 1


def test_adaptive_gate_halves_once_per_round_and_grows_back():
    import asyncio

    from medgr2_generation.engine import AdaptiveGate

    async def main():
        gate = AdaptiveGate(16)
        t0 = await gate.acquire(lambda: None)
        gate.throttle(t0, 0.2)
        gate.throttle(t0, 0.2)  # the same round: no second decrease
        assert gate.limit == 8 and gate.decreases == 1 and gate.paused(asyncio.get_running_loop().time()) > 0.15
        t1 = await gate.acquire(lambda: None)
        gate.throttle(t1, None)  # a later round: halves again, no pause without Retry-After
        assert gate.limit == 4 and gate.decreases == 2
        for _ in range(4):
            gate.success()
        assert 4.9 < gate.limit < 5.0  # +1 per round of `limit` successes
        await gate.release()
        await gate.release()

    asyncio.run(main())


# ---------------------------------------------------------------------------------- exact schema


@pytest.mark.parametrize("backend", ["openai", "gemini"])
@pytest.mark.parametrize("fault,reason,field", [("missing_rationale", "missing_rationale", "'rationale'"),
                                                ("numeric_question", "bad_question", "question")])
def test_replies_are_checked_against_the_schema_sent(backend, fault, reason, field, registry, tmp_path):
    """Was: accepted, coerced to "" / a string. Now: a content reject naming the field."""
    items = make_items(tmp_path / "img", 4)
    with SERVERS[backend](faults=FaultPlan(rates={fault: 1.0})) as server:
        result = make(registry, backend, server, reask=False).generate(items, ctx(tmp_path, registry))
        assert server.attempts == 4
    assert len(result.samples) == 0 and [r.reason for r in result.rejects] == [reason] * 4
    assert all(field in r.detail for r in result.rejects)
    assert result.ledger.rejects == {reason: 4} and result.ledger.extra["content_rejects"] == 4


# ---------------------------------------------------------------------------------- secrets


@pytest.mark.parametrize("backend,key", [("openai", OPENAI_KEY), ("gemini", GEMINI_KEY)])
def test_an_echoed_key_is_redacted_from_everything_stored(backend, key, registry, tmp_path):
    """Was: the full key stored in rejects.jsonl. Now: [REDACTED] in rejects, ledger, cache."""
    items = make_items(tmp_path / "img", 2)
    context = ctx(tmp_path, registry)
    with SERVERS[backend](faults=FaultPlan(rates={"echo_auth": 1.0})) as server:
        result = generate(make(registry, backend, server, max_retries=1), items, context)
        assert server.attempts == 4
    assert [r.reason for r in result.rejects] == ["request_failed"] * 2
    assert all("[REDACTED]" in r.detail for r in result.rejects)
    stored = {p.name: p.read_text() for p in context.work_dir.iterdir() if p.is_file()}
    assert {"rejects.jsonl", "ledger.json", "samples.jsonl"} <= set(stored)
    for name, text in stored.items():
        assert key not in text, name
        assert key[:12] not in text, name


def test_a_configured_key_variable_is_redacted_and_named(registry, tmp_path, monkeypatch):
    """A key that looks like nothing known (a proxy's) is redacted because its variable is configured."""
    monkeypatch.setenv("MY_PROXY_KEY", "proxy-secret-value-42")
    items = make_items(tmp_path / "img", 3)
    plan = FaultPlan(rates={"echo_auth": 1.0}, echo_status=401)
    with FakeOpenAIServer(latency=0.1, faults=plan) as server:
        gen = make(registry, "openai", server, api_key_env="MY_PROXY_KEY", concurrency=1)
        with pytest.raises(PermanentError) as err:
            generate(gen, items, ctx(tmp_path, registry))
        assert server.attempts == 1
    assert "proxy-secret-value-42" not in str(err.value) and "[REDACTED]" in str(err.value)
    assert "MY_PROXY_KEY" in str(err.value)


def test_a_reply_that_echoes_a_key_is_cached_redacted(registry, tmp_path):
    from medgr2.testing.fake_servers import default_reply

    def reply(prompt):
        data = default_reply(prompt)
        data["rationale"] += f" (debug: Authorization: Bearer {OPENAI_KEY})"
        return json.dumps(data)

    context = ctx(tmp_path, registry)
    with FakeOpenAIServer(reply=reply) as server:
        result = generate(make(registry, "openai", server), make_items(tmp_path / "img", 2), context)
    assert len(result.samples) == 2 and all("[REDACTED]" in s.rationale for s in result.samples)
    for name in ("requests.jsonl", "samples.jsonl"):
        assert OPENAI_KEY not in (context.work_dir / name).read_text()
