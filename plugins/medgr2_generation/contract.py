"""The output contract of every generator: the JSON schema of a sample, parsing and validation.

A model reply is turned into a :class:`~medgr2.data.VQASample` in two steps:

1. :func:`parse_reply` finds the JSON object in the reply text (inside code fences, after or
   before prose) and decodes it;
2. :func:`validate_reply` checks it against the exact schema sent (:data:`SAMPLE_SCHEMA`: every
   field present, of its type, enums spelled as listed, no other field; nothing is coerced, so a
   missing ``rationale`` or a numeric ``question`` is a reject naming the field), then against
   the contract (question non-empty, 2–8 unique options, answer among them — a bare option
   letter such as ``"B"`` is mapped to its option) and returns the cleaned fields.

Both raise :class:`ContractError` with a ``reason`` (a short key used in ledgers and rejects) and
a message that is fed back to the model when an invalid reply is re-asked.
"""

from __future__ import annotations

import json
import re
from typing import Any

from medgr2.data import LETTERS, Modality, QuestionType

SCHEMA_VERSION = "vqa-sample/1"
"""Version of :data:`SAMPLE_SCHEMA`; part of every cache key, so a change re-requests everything."""

SAMPLE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "question": {"type": "string", "description": "The question about the image."},
        "options": {
            "type": "array",
            "items": {"type": "string"},
            "minItems": 2,
            "maxItems": 8,
            "description": "2 to 8 distinct answer options.",
        },
        "answer": {"type": "string", "description": "The correct option, copied exactly."},
        "rationale": {"type": "string", "description": "Why the answer is correct, from the image."},
        "modality": {"type": "string", "enum": [m.value for m in Modality]},
        "question_type": {"type": "string", "enum": [q.value for q in QuestionType]},
    },
    "required": ["question", "options", "answer", "rationale", "modality", "question_type"],
    "additionalProperties": False,
}
"""JSON schema of one generated sample (sent as the structured-output schema where supported)."""


class ContractError(ValueError):
    """A reply that breaks the output contract; ``reason`` is a short machine-readable key."""

    def __init__(self, reason: str, message: str):
        self.reason = reason
        super().__init__(message)


_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.DOTALL)
_DECODER = json.JSONDecoder()  # stateless: one for every call


def parse_reply(text: str, *, truncated: bool = False) -> dict[str, Any]:
    """Extract and decode the JSON object of a reply.

    Accepts bare JSON, JSON inside a fenced code block, and JSON with prose before or after
    it (the first decodable ``{...}`` object wins).

    >>> parse_reply('Sure!\\n```json\\n{"a": 1}\\n```\\nHope this helps.')
    {'a': 1}
    """
    if not text or not text.strip():
        raise ContractError("empty_reply", "the reply is empty; answer with one JSON object")
    # no fence without three backticks: the common bare reply skips the regex
    candidates = [*(m.group(1) for m in _FENCE.finditer(text)), text] if "```" in text else (text,)
    decoder = _DECODER
    for chunk in candidates:
        chunk = chunk.strip()
        start = chunk.find("{")
        while start != -1:
            try:
                obj, _ = decoder.raw_decode(chunk, start)
            except json.JSONDecodeError:
                start = chunk.find("{", start + 1)
                continue
            if isinstance(obj, dict):
                return obj
            start = chunk.find("{", start + 1)
    if truncated:
        raise ContractError(
            "truncated", "the reply was cut off before the JSON object ended; answer more briefly"
        )
    raise ContractError(
        "malformed_json", "the reply contains no valid JSON object; answer with one JSON object only"
    )


def check_sample_schema(data: dict[str, Any], schema: dict[str, Any] = SAMPLE_SCHEMA) -> None:
    """Check a decoded reply against the sample schema as sent, with a reason naming the field:
    ``missing_<field>`` (absent or null), ``bad_<field>`` (wrong type, not in the enum),
    ``option_count`` (too few / many options) or ``unexpected_field``."""
    if schema is SAMPLE_SCHEMA and _plain_sample(data):
        return
    props = schema["properties"]
    for key in schema["required"]:
        if data.get(key) is None:
            raise ContractError(f"missing_{key}", f"the field {key!r} is required but " + (
                "missing" if key not in data else "null"))
    if schema.get("additionalProperties") is False:
        extra = sorted(set(data) - set(props))
        if extra:
            raise ContractError("unexpected_field", f"the fields {extra} are not in the schema; send only "
                                f"{sorted(props)}")
    for key, sub in props.items():
        if key not in data:
            continue
        value = data[key]
        if _plainly_valid(value, sub):
            continue
        if sub.get("type") == "array" and isinstance(value, list):
            if not sub.get("minItems", 0) <= len(value) <= sub.get("maxItems", len(value)):
                raise ContractError(f"{key[:-1]}_count" if key == "options" else f"bad_{key}",
                                    f"there must be {sub.get('minItems', 0)} to {sub.get('maxItems')} {key}, "
                                    f"not {len(value)}")
        try:
            check_schema(value, sub, key)
        except ContractError as exc:
            if "enum" in sub and isinstance(value, str):
                allowed = ", ".join(sub["enum"])
                raise ContractError(f"bad_{key}", f"{key} {value!r} is not one of: {allowed}") from None
            raise ContractError(f"bad_{key}", f"{exc} (got {json.dumps(value)[:80]})") from None


_SAMPLE_KEYS = frozenset(SAMPLE_SCHEMA["properties"])
_MODALITIES = frozenset(SAMPLE_SCHEMA["properties"]["modality"]["enum"])
_QUESTION_TYPES = frozenset(SAMPLE_SCHEMA["properties"]["question_type"]["enum"])


def _plain_sample(data: dict[str, Any]) -> bool:
    """A quick yes for a reply that plainly satisfies :data:`SAMPLE_SCHEMA` (exactly its fields, each of its
    type, enums as listed, 2-8 string options); ``False`` means "check in full" (not "invalid")."""
    if data.keys() != _SAMPLE_KEYS:
        return False
    modality, qtype, options = data["modality"], data["question_type"], data["options"]
    return (data["question"].__class__ is str and data["answer"].__class__ is str
            and data["rationale"].__class__ is str
            and modality.__class__ is str and modality in _MODALITIES
            and qtype.__class__ is str and qtype in _QUESTION_TYPES
            and options.__class__ is list and 2 <= len(options) <= 8 and all(o.__class__ is str for o in options))


def _plainly_valid(value: Any, sub: dict[str, Any]) -> bool:
    """A quick yes for the common valid cases of the sample schema (a string, in its enum if it has one;
    an array of strings within its item counts); ``False`` means "check in full" (not "invalid")."""
    t = sub.get("type")
    if t == "string":
        return value.__class__ is str and ("enum" not in sub or value in sub["enum"])
    if t == "array" and value.__class__ is list and "enum" not in sub:
        items = sub.get("items", {})
        return (items.get("type") == "string" and items.keys() <= {"type", "description"}
                and sub.get("minItems", 0) <= len(value) <= sub.get("maxItems", len(value))
                and all(v.__class__ is str for v in value))
    return False


_LETTERED = [re.compile(rf"\(?{letter}[).:]\s") for letter in LETTERS[:8]]  # "A. ", "(B) " ...


def _match_answer(answer: str, options: list[str]) -> str:
    if answer in options:
        return answer
    folded = {o.strip().lower(): o for o in options}
    if answer.lower() in folded:
        return folded[answer.lower()]
    m = re.fullmatch(r"\(?([A-Ha-h])[).:]?\s*(.*)", answer)
    if m:
        idx = LETTERS.index(m.group(1).upper())
        rest = m.group(2).strip().lower()
        if idx < len(options) and (not rest or rest == options[idx].strip().lower()):
            return options[idx]
    raise ContractError(
        "answer_not_in_options",
        f"the answer {answer!r} is not one of the options {options}; copy one option exactly",
    )


def validate_reply(data: dict[str, Any]) -> dict[str, Any]:
    """Check a decoded reply against the contract; returns the cleaned sample fields.

    The result has keys ``question, options, answer, rationale, modality, question_type``
    (the last two as :mod:`medgr2.data` enums).
    """
    check_sample_schema(data)
    question = data["question"].strip()
    if not question:
        raise ContractError("empty_question", "the question is empty")
    options = [o.strip() for o in data["options"]]
    if any(not o for o in options):
        raise ContractError("bad_options", "every option must be a non-empty string")
    if all(_LETTERED[i].match(o) for i, o in enumerate(options[:8])):
        options = [re.sub(r"^\(?[A-H][).:]\s+", "", o) for o in options]  # "A. text" -> "text"
    if not 2 <= len(options) <= 8:
        raise ContractError("option_count", f"there must be 2 to 8 options, not {len(options)}")
    if len({o.lower() for o in options}) != len(options):
        raise ContractError("duplicate_options", f"the options are not unique: {options}")
    answer = _match_answer(data["answer"].strip(), options)
    return {
        "question": question,
        "options": tuple(options),
        "answer": answer,
        "rationale": data["rationale"].strip(),
        "modality": _MODALITY.get(data["modality"]) or Modality(data["modality"]),
        "question_type": _QUESTION_TYPE.get(data["question_type"]) or QuestionType(data["question_type"]),
    }


_MODALITY = {m.value: m for m in Modality}  # Modality(value) without the enum call (the same member)
_QUESTION_TYPE = {q.value: q for q in QuestionType}


def check_schema(value: Any, schema: dict[str, Any], path: str = "$") -> None:
    """Check ``value`` against a small JSON-schema subset (type, properties, required, enum,
    items, minItems, maxItems, minimum, maximum, additionalProperties: false); raises :class:`ContractError` naming
    the first problem.

    Used by ``complete_json`` for arbitrary caller schemas (e.g. an LLM judge's verdict).
    """
    types = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}
    t = schema.get("type")
    if t in ("number", "integer"):
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or (t == "integer" and value != int(value))
        ):
            raise ContractError("schema", f"{path} must be {'an integer' if t == 'integer' else 'a number'}")
        if value < schema.get("minimum", value) or value > schema.get("maximum", value):
            raise ContractError("schema", f"{path} must be between {schema.get('minimum', '-inf')} and "
                                f"{schema.get('maximum', 'inf')}, not {value}")
    elif t in types and not isinstance(value, types[t]):
        raise ContractError("schema", f"{path} must be of type {t}")
    if "enum" in schema and value not in schema["enum"]:
        raise ContractError("schema", f"{path} must be one of {schema['enum']}")
    if isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                raise ContractError("schema", f"{path}.{key} is required")
        if schema.get("additionalProperties") is False:
            extra = sorted(set(value) - set(schema.get("properties", {})))
            if extra:
                raise ContractError("schema", f"{path} has fields outside the schema: {extra}")
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                check_schema(value[key], sub, f"{path}.{key}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", len(value)):
            raise ContractError("schema", f"{path} has {len(value)} items, outside the allowed range")
        if "items" in schema:
            for i, item in enumerate(value):
                check_schema(item, schema["items"], f"{path}[{i}]")
