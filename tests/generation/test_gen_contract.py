"""The output contract (parsing, validation, schema) and the prompt templates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from medgr2_generation.contract import SAMPLE_SCHEMA, ContractError, check_schema, parse_reply, validate_reply
from medgr2_generation.prompts import PromptTemplate, TemplateError, resolve_template

from medgr2.data import Modality, QuestionType

GOOD = {
    "question": "Which finding?",
    "options": ["normal", "pneumonia", "effusion"],
    "answer": "pneumonia",
    "rationale": "opacity",
    "modality": "xray",
    "question_type": "disease_diagnosis",
}


@pytest.mark.parametrize(
    "text",
    [
        json.dumps(GOOD),
        "```json\n" + json.dumps(GOOD) + "\n```",
        "Here is the sample:\n" + json.dumps(GOOD, indent=2) + "\nLet me know if you need more.",
        "Thinking {not json} first. " + json.dumps(GOOD),
        "```\n" + json.dumps(GOOD) + "\n```\ntrailing",
    ],
)
def test_parse_reply_finds_the_object(text):
    assert parse_reply(text) == GOOD


@pytest.mark.parametrize(
    "text,truncated,reason",
    [
        ("", False, "empty_reply"),
        ("no json here", False, "malformed_json"),
        ('{"question": "Which', True, "truncated"),
        ('{"question": "Which', False, "malformed_json"),
    ],
)
def test_parse_reply_errors_have_reasons(text, truncated, reason):
    with pytest.raises(ContractError) as e:
        parse_reply(text, truncated=truncated)
    assert e.value.reason == reason and str(e.value)


def test_validate_accepts_and_normalises():
    out = validate_reply(GOOD)
    assert out["options"] == ("normal", "pneumonia", "effusion") and out["answer"] == "pneumonia"
    assert out["modality"] is Modality.XRAY and out["question_type"] is QuestionType.DISEASE_DIAGNOSIS
    assert validate_reply({**GOOD, "answer": "B"})["answer"] == "pneumonia"
    assert validate_reply({**GOOD, "answer": "(B) pneumonia"})["answer"] == "pneumonia"
    assert validate_reply({**GOOD, "answer": "Pneumonia"})["answer"] == "pneumonia"
    lettered = validate_reply({**GOOD, "options": ["A. normal", "B. pneumonia"], "answer": "B. pneumonia"})
    assert lettered["options"] == ("normal", "pneumonia") and lettered["answer"] == "pneumonia"



@pytest.mark.parametrize(
    "change,reason",
    [
        ({"modality": "X-ray"}, "bad_modality"),  # the schema sent lists "xray": no alias mapping
        ({"question_type": "Disease Diagnosis"}, "bad_question_type"),
        ({"question": 42}, "bad_question"),  # no coercion of numbers to strings
        ({"rationale": None}, "missing_rationale"),
        ({"options": ["a", 2], "answer": "a"}, "bad_options"),
        ({"extra": "x"}, "unexpected_field"),
    ],
)
def test_validate_follows_the_exact_schema_sent(change, reason):
    with pytest.raises(ContractError) as e:
        validate_reply({**GOOD, **change})
    assert e.value.reason == reason
    field = reason.split("_", 1)[1]
    assert field in str(e.value) or reason == "unexpected_field" and "extra" in str(e.value)


def test_a_missing_field_is_named():
    with pytest.raises(ContractError) as e:
        validate_reply({k: v for k, v in GOOD.items() if k != "rationale"})
    assert e.value.reason == "missing_rationale" and "'rationale'" in str(e.value)


@pytest.mark.parametrize(
    "change,reason",
    [
        ({"question": "  "}, "empty_question"),
        ({"options": ["only one"], "answer": "only one"}, "option_count"),
        ({"options": [f"o{i}" for i in range(9)], "answer": "o1"}, "option_count"),
        ({"options": ["a", "A", "b"], "answer": "a"}, "duplicate_options"),
        ({"options": "a, b"}, "bad_options"),
        ({"options": ["a", ""], "answer": "a"}, "bad_options"),
        ({"answer": "none of these"}, "answer_not_in_options"),
        ({"answer": "E"}, "answer_not_in_options"),
        ({"modality": "xray-ct"}, "bad_modality"),
        ({"question_type": "trivia"}, "bad_question_type"),
        ({"question": None}, "missing_question"),
    ],
)
def test_validate_rejects_with_a_reason(change, reason):
    with pytest.raises(ContractError) as e:
        validate_reply({**GOOD, **change})
    assert e.value.reason == reason


def test_schema_matches_the_contract_and_checker():
    check_schema(GOOD, SAMPLE_SCHEMA)
    assert set(SAMPLE_SCHEMA["required"]) == set(GOOD)
    for bad in (
        {**GOOD, "options": ["x"]},
        {k: v for k, v in GOOD.items() if k != "answer"},
        {**GOOD, "modality": "radio"},
        {**GOOD, "question": 3},
    ):
        with pytest.raises(ContractError):
            check_schema(bad, SAMPLE_SCHEMA)
    check_schema(
        {"score": 3, "ok": True},
        {
            "type": "object",
            "properties": {"score": {"type": "integer"}, "ok": {"type": "boolean"}},
            "required": ["score"],
        },
    )
    with pytest.raises(ContractError, match="integer"):
        check_schema({"score": 2.5}, {"type": "object", "properties": {"score": {"type": "integer"}}})
    bounded = {"type": "object", "properties": {"score": {"type": "integer", "minimum": 0, "maximum": 10}}}
    check_schema({"score": 10}, bounded)
    with pytest.raises(ContractError, match="between 0 and 10"):
        check_schema({"score": 11}, bounded)
    with pytest.raises(ContractError, match="outside the schema"):
        check_schema({"score": 1, "x": 2}, {**bounded, "additionalProperties": False})


@pytest.mark.parametrize("strategy", ["direct", "step_by_step", "meta_cognitive"])
def test_builtin_templates_render(strategy, gen_registry, items_factory):
    item = items_factory(1)[0]
    template = resolve_template(strategy, None, gen_registry)
    assert template.strategy == strategy and template.version == "1"
    text = template.render(item)
    assert "- diagnosis: pneumonia" in text and "X-ray" in text and '"question_type"' in text
    assert "$" not in text.replace("$$", "")
    assert template.hash(text) == template.hash(text) != template.hash(text + " ")


def test_meta_cognitive_reflects_before_writing(gen_registry, items_factory):
    text = resolve_template("meta_cognitive", None, gen_registry).render(items_factory(1)[0])
    assert "Which question types" in text and "well-formed answer" in text


def test_template_path_overrides_the_strategy(tmp_path, gen_registry, items_factory):
    path = tmp_path / "mine.txt"
    path.write_text("# strategy: mine\n# version: 7\n---\nAsk about $modality from $dataset.\n$schema\n")
    template = resolve_template("direct", str(path), gen_registry)
    assert template.name == "mine@7"
    assert template.render(items_factory(1)[0]).startswith("Ask about X-ray from demo.")


def test_plugin_override_replaces_a_builtin(tmp_path, items_factory):
    from medgr2.plugins import load_registry

    path = tmp_path / "direct.txt"
    path.write_text("# strategy: direct\n# version: 2\n---\nShort: $labels\n")
    registry = load_registry(disabled=["reward", "trl"])
    registry.registrar("prompt", "mine").add("direct", Path(path), override=True)
    template = resolve_template("direct", None, registry)
    assert (
        template.version == "2" and template.render(items_factory(1)[0]) == "Short: - diagnosis: pneumonia\n"
    )


def test_bad_templates_are_explained(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("no header here")
    with pytest.raises(TemplateError, match="---"):
        PromptTemplate.from_file(bad)
    bad.write_text("# strategy: x\n---\nbody")
    with pytest.raises(TemplateError, match="version"):
        PromptTemplate.from_file(bad)
    with pytest.raises(TemplateError, match="unknown placeholder"):
        PromptTemplate("x", "1", "Hello $patient_name")
    with pytest.raises(TemplateError, match="does not exist"):
        PromptTemplate.from_file(tmp_path / "missing.txt")


def test_the_quick_sample_check_agrees_with_the_full_one():
    """check_sample_schema's fast path (SAMPLE_SCHEMA only) never accepts what the full check refuses."""
    import copy

    from medgr2_generation.contract import SAMPLE_SCHEMA, ContractError, check_sample_schema

    good = {"question": "Q?", "options": ["a", "b"], "answer": "a", "rationale": "r", "modality": "xray",
            "question_type": "disease_diagnosis"}
    variants = [good, {**good, "options": ["a"]}, {**good, "options": ["a"] * 9}, {**good, "options": ["a", 2]},
                {**good, "modality": "X-ray"}, {**good, "modality": ["xray"]}, {**good, "question": 42},
                {**good, "rationale": None}, {k: v for k, v in good.items() if k != "answer"},
                {**good, "extra": 1}, {**good, "question_type": "diagnosis"}, {**good, "options": ("a", "b")}]
    slow_schema = copy.deepcopy(SAMPLE_SCHEMA)  # equal, but not the same object: always the full check
    for data in variants:
        results = []
        for schema in (SAMPLE_SCHEMA, slow_schema):
            try:
                check_sample_schema(data, schema)
                results.append("ok")
            except ContractError as exc:
                results.append(exc.reason)
        assert results[0] == results[1], (data, results)
    assert check_sample_schema(good) is None
