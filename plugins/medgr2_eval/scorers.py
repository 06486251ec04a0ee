"""The published answer-scoring protocols for multiple-choice medical VQA.

Every scorer has the same signature::

    score(model_answer: str, options: Sequence[str], gt_answer: str) -> Verdict

``options`` are the option texts in letter order (A, B, ...), possibly empty when unknown;
``gt_answer`` is the ground truth as option text (a bare letter is also understood). A
:class:`Verdict` says whether the answer is correct, whether it was a *valid* answer at all
(it named an option under the protocol's rule), and which option it chose.

Published OmniMedVQA numbers differ by many points between these rules (NOTES §4): always
report the scorer's name with a number. Invariant of every scorer: ``correct`` implies ``valid``.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from medgr2.data import LETTERS
from medgr2_eval.parsing import gt_index, normalize


@dataclass(frozen=True, slots=True)
class Verdict:
    """One scored answer.

    Attributes:
        correct: The protocol counts the answer as right.
        valid: The answer named an option (or a token, for tag-based rules) under the protocol.
        chosen: The option text chosen (or the extracted token when no option matches it).
        index: The chosen option's index, when the answer maps to an option.
    """

    correct: bool
    valid: bool
    chosen: str | None = None
    index: int | None = None


INVALID = Verdict(False, False)


def _verdict(index: int | None, options: Sequence[str], gt: int | None) -> Verdict:
    if index is None:
        return INVALID
    return Verdict(gt is not None and index == gt, True, options[index], index)


# ------------------------------------------------------------------------------ medgr2


def medgr2(model_answer: str, options: Sequence[str], gt_answer: str) -> Verdict:
    """MedGR2 authors' rule: normalised exact match of the answer text with the gt option text.

    Source: the MedGR2 authors' released evaluation script. It uses option-text answers, the
    prompt "Please choose one of the following: X or Y or Z. You must pick only one answer." and
    greedy decoding. Both sides are lowercased, ASCII punctuation is removed and whitespace
    collapsed; the answer is correct when it equals the ground-truth option. An answer equal to no option is *invalid* (the report gives
    accuracy with invalid answers counted wrong and with them skipped). Without options, any
    non-empty answer is valid and compared with the ground truth.

    >>> medgr2("Pneumonia.", ["normal", "pneumonia"], "pneumonia")
    Verdict(correct=True, valid=True, chosen='pneumonia', index=1)
    """
    a = normalize(model_answer)
    if not options:
        return Verdict(bool(a) and a == normalize(gt_answer), bool(a), model_answer.strip() or None)
    gt = gt_index(options, gt_answer)
    for i, o in enumerate(options):
        if normalize(o) == a:
            return _verdict(i, options, gt)
    return INVALID


# ------------------------------------------------------------------------------ med-r1

_MED_R1 = re.compile(r"<answer>\s*(\w+)\s*</answer>")


def med_r1(model_answer: str, options: Sequence[str], gt_answer: str) -> Verdict:
    r"""Med-R1 rule: ``<answer>\s*(\w+)\s*</answer>`` from prediction and ground truth, exact equality.

    Source: Med-R1 (Lai et al. 2025) ``src/eval_vqa/test_qwen2_5vl_vqa_nothink.py``. When the
    output contains the word "answer", the token of the first matching tag is the answer and a
    missing or malformed tag makes it wrong; an output without the word "answer" is compared
    whole, as that script does (a bare ``B`` counts). Equality is exact and case-sensitive. The
    ground truth is the token of its own tag, else its option letter (when it names an option),
    else its stripped text. An answer is valid when it names an option letter in range (without
    options: when a token was read).

    >>> med_r1("<think>...</think><answer> B </answer>", ["normal", "pneumonia"], "pneumonia").correct
    True
    """
    if "answer" in model_answer:
        m = _MED_R1.search(model_answer)
        token = m.group(1) if m else None
    else:
        token = model_answer
    g = _MED_R1.search(gt_answer)
    if g:
        gt_token = g.group(1)
    else:
        idx = gt_index(options, gt_answer) if options else None
        gt_token = LETTERS[idx] if idx is not None else gt_answer.strip()
    if not token:
        return INVALID
    index = LETTERS.index(token) if len(token) == 1 and token in LETTERS[: len(options)] else None
    valid = index is not None if options else True
    return Verdict(
        token == gt_token, valid or token == gt_token, options[index] if index is not None else token, index
    )


# ------------------------------------------------------------------------------ omnimedvqa


def _most_similar(options: tuple[str, ...], text: str, default: int | None) -> int | None:
    """Index of the option with the highest ``SequenceMatcher(None, option, text).ratio()`` (first
    wins ties; a ratio must exceed 0, else ``default``).

    Exact shortcuts keep the result identical while skipping work: an identical option has ratio
    1.0 (options are unique); the matcher indexes ``text`` once; an option whose upper bounds
    (``real_quick_ratio``, ``quick_ratio``) cannot beat the best so far is skipped.
    """
    if text in options:
        return options.index(text)
    matcher = difflib.SequenceMatcher(None, "", text)
    best, best_ratio = default, 0.0
    for i, o in enumerate(options):
        matcher.set_seq1(o)
        if matcher.real_quick_ratio() <= best_ratio or matcher.quick_ratio() <= best_ratio:
            continue
        r = matcher.ratio()
        if r > best_ratio:
            best, best_ratio = i, r
    return best


_most_similar_cached = functools.lru_cache(maxsize=1 << 16)(_most_similar)
"""Model outputs repeat (same answer, same options): difflib runs once per distinct pair."""


def omnimedvqa(model_answer: str, options: Sequence[str], gt_answer: str) -> Verdict:
    """OmniMedVQA official rule: the option most similar to the output is the model's choice.

    Source: OmniMedVQA (Hu et al., CVPR 2024) official evaluation code. It computes
    ``difflib.SequenceMatcher(None, option, output).ratio()`` for every option; the highest ratio
    wins (the first one on ties), and the choice is correct when it is the ground-truth option.
    Strings are compared as they are (case-sensitive, unstripped). An empty output, or one with zero similarity to every option,
    chooses nothing: the official script then fails on that item and counts it wrong; here it is
    invalid (and wrong). Without options nothing can be chosen.

    >>> omnimedvqa("I think it shows pneumonia", ["normal", "pneumonia"], "pneumonia").correct
    True
    """
    if not options:
        return INVALID
    choice = _most_similar_cached(tuple(options), model_answer, None) if model_answer else None
    return _verdict(choice, options, gt_index(options, gt_answer))


# ------------------------------------------------------------------------------ medevalkit

_ANSWER_PATTERNS = (
    "**answer**:",
    "**answer**",
    "*answer*:",
    "**answer:**",
    "answer is",
    "answer:",
    "答案:",
    "final answer",
    "final answer is",
)


def _last_boxed(text: str) -> str | None:
    """Contents of the last ``\\boxed{...}`` (nested braces balanced), or ``None``."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    i, depth = start + len("\\boxed{"), 1
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i:j]
    return None


def _tag_contents(text: str, tag: str) -> str:
    parts = re.findall(rf"<{tag}>(.*?)</{tag}>", text, flags=re.DOTALL)
    return " ".join(p for p in parts).strip()


def _medevalkit_parse(response: str) -> str:
    response = response.lower()
    if "boxed" in response:
        response = _last_boxed(response) or "none"
    elif "<answer>" in response:
        response = _tag_contents(response, "answer") or response
    for pattern in _ANSWER_PATTERNS:
        if pattern in response:
            response = response.split(pattern)[-1]
    return response


def medevalkit(model_answer: str, options: Sequence[str], gt_answer: str) -> Verdict:
    """MedEvalKit rule (OmniMedVQA ``cal_metrics`` + ``judge_multi_choice``): tags, letter, then difflib.

    Source: MedEvalKit (alibaba-damo-academy) ``utils/OmniMedVQA/OmniMedVQA.py`` and
    ``utils/utils.py``. As there, the ground truth is turned into its option letter and the
    choices are written ``"B. pneumonia"``. The response is reduced to its ``<answer>`` tag
    contents (when present) and lowercased; a bare letter paragraph (first, or start of the
    last) is taken as is; otherwise the last ``\\boxed{}`` contents are used and the text is cut
    after "answer:" / "answer is" and similar markers. Newlines are removed, the text is cut at
    its first "." and after its last ":". That string is correct when it equals the ground-truth
    letter; another letter is wrong; anything else goes to the fallback, the choice most similar
    to the whole parsed response by ``SequenceMatcher``. MedEvalKit never yields an invalid
    answer: when nothing is similar the fallback picks option A (scored as choosing A). Only an
    empty option list gives an invalid verdict here.

    >>> medevalkit("The answer is B.", ["normal", "pneumonia"], "pneumonia").correct
    True
    """
    if not options:
        return INVALID
    gt = gt_index(options, gt_answer)
    letters = [c.lower() for c in LETTERS[: len(options)]]
    choices = [f"{LETTERS[i]}. {o}".lower() for i, o in enumerate(options)]
    answer = (LETTERS[gt] if gt is not None else gt_answer).strip().lower()
    response = (_tag_contents(model_answer, "answer") or model_answer).lower()
    paragraphs = response.split("\n\n")
    if paragraphs[0] in letters:
        response = paragraphs[0]
    elif paragraphs[-1].split(".")[0] in letters:
        response = paragraphs[-1].split(".")[0]
    response = _medevalkit_parse(response).strip().lower().replace("\n", "")
    split_response = response.split(".")[0].split(":")[-1]
    if split_response == answer:
        return Verdict(True, True, options[gt], gt) if gt is not None else Verdict(True, True, split_response)
    if split_response in letters:
        i = letters.index(split_response)
        return Verdict(choices[i] == answer, True, options[i], i)
    if split_response in choices:
        i = choices.index(split_response)
        ok = answer in letters and split_response == choices[letters.index(answer)]
        return Verdict(ok, True, options[i], i)
    i = _most_similar_cached(tuple(choices), response, 0)
    return Verdict(letters[i] == answer or choices[i] == answer, True, options[i], i)


# ------------------------------------------------------------------------------ vlmevalkit

_VLM_STRIP = str.maketrans({c: " " for c in ".()[],:;!*#{}"})
VLM_REFUSALS = (
    "Sorry, I can't help with images of people yet.",
    "I can't process this file.",
    "I'm sorry, but without the image provided",
    "Cannot determine the answer",
)
"""Refusals VLMEvalKit maps to the non-answer ``Z``."""


def infer_option_letter(answer: str, n_options: int) -> int | str | None:
    """VLMEvalKit ``can_infer_option``: the index of the only option letter appearing as a token.

    Returns ``"Z"`` for a refusal or a bare ``Z`` (VLMEvalKit's "none of the options"), ``None``
    when no single letter is found. When "A" is a token of an answer longer than three tokens it
    may be the article, and VLMEvalKit infers no letter at all.
    """
    if any(r in answer for r in VLM_REFUSALS):
        return "Z"
    letters = LETTERS[:n_options]
    tokens = answer.translate(_VLM_STRIP).split()
    found = [c for c in letters if c in tokens]
    if len(found) == 1:
        if "A" in tokens and len(tokens) > 3:
            return None
        return letters.index(found[0])
    if not found and "Z" in tokens:
        return "Z"
    return None


def infer_option_text(answer: str, options: Sequence[str]) -> int | None:
    """VLMEvalKit ``can_infer_text``: the index of the only option whose text is in the answer."""
    low = answer.lower()
    hits = [i for i, o in enumerate(options) if o.lower() in low]
    return hits[0] if len(hits) == 1 else None


JUDGE_PROMPT = (
    "You are an AI assistant who will help me to match an answer with several options of a single-choice "
    "question. You are provided with a question, several options, and an answer, and you need to find "
    "which option is most similar to the answer. If the meaning of all options are significantly "
    "different from the answer, output Z. Your should output a single uppercase character in {letters} "
    "(if they are valid options), and Z.\nQuestion: {question}\nOptions:\n{options}\nAnswer: {answer}\n"
    "Your output:"
)
"""The extraction prompt (VLMEvalKit ``build_prompt`` for multiple choice, shortened)."""


@functools.lru_cache(maxsize=8)
def openai_judge(
    base_url: str, model: str, api_key_env: str = "OPENAI_API_KEY", timeout_s: float = 60.0
) -> Callable[[str], str]:
    """A judge callable posting to an OpenAI-compatible ``/chat/completions`` endpoint (greedy).

    The API key is read from the environment variable ``api_key_env`` (never from config).
    """
    import os

    import httpx

    client = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout_s)
    key = os.environ.get(api_key_env, "")

    def ask(prompt: str) -> str:
        reply = client.post(
            "/chat/completions",
            headers={"Authorization": f"Bearer {key}"} if key else {},
            json={"model": model, "temperature": 0, "messages": [{"role": "user", "content": prompt}]},
        )
        reply.raise_for_status()
        return str(reply.json()["choices"][0]["message"]["content"] or "")

    return ask


def vlmevalkit(
    model_answer: str,
    options: Sequence[str],
    gt_answer: str,
    *,
    judge_base_url: str | None = None,
    judge_model: str = "gpt-4o-mini",
    judge_api_key_env: str = "OPENAI_API_KEY",
    question: str = "",
    judge: Callable[[str], str] | None = None,
) -> Verdict:
    """VLMEvalKit rule (``can_infer``): a unique option letter, else a unique option text, else invalid.

    Source: VLMEvalKit ``vlmeval/utils/matching_util.py``. The characters ``.()[],:;!*#{}`` are
    replaced by spaces and the answer split into tokens; exactly one option letter among the
    tokens is the choice, except that an "A" token in an answer of more than three tokens may be
    the article ("A small lesion is visible"), so then no letter is inferred. A refusal
    ("Cannot determine the answer" ...) or a bare "Z" is VLMEvalKit's non-answer: invalid, with
    no text matching. Failing a letter, exactly one option text contained in the lowercased
    answer is the choice. Otherwise the answer is invalid, unless a judge is configured
    (``judge_base_url`` of an OpenAI-compatible server, or a ``judge`` callable prompt -> reply):
    it is then asked to map the answer to a letter, as VLMEvalKit does with its GPT extractor.

    >>> vlmevalkit("(B) pneumonia", ["normal", "pneumonia"], "pneumonia").correct
    True
    >>> vlmevalkit("A normal lung would look different", ["normal", "pneumonia", "edema"], "edema").chosen
    'normal'
    """
    if not options:
        return INVALID
    gt = gt_index(options, gt_answer)
    letter = infer_option_letter(model_answer, len(options))
    if letter == "Z":
        return INVALID
    index = letter if letter is not None else infer_option_text(model_answer, options)
    if judge is None and judge_base_url:
        judge = openai_judge(judge_base_url, judge_model, judge_api_key_env)
    if index is None and judge is not None and model_answer.strip():
        listed = "\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(options))
        reply = judge(
            JUDGE_PROMPT.format(
                letters=", ".join(LETTERS[: len(options)]),
                question=question,
                options=listed,
                answer=model_answer,
            )
        )
        letter = infer_option_letter(reply.strip(), len(options))
        index = letter if isinstance(letter, int) else None
    return _verdict(index, options, gt)


Scorer = Callable[[str, Sequence[str], str], Verdict]

SCORERS: dict[str, Scorer] = {
    "medgr2": medgr2,
    "med-r1": med_r1,
    "omnimedvqa": omnimedvqa,
    "medevalkit": medevalkit,
    "vlmevalkit": vlmevalkit,
}
"""Built-in scorers by registered name."""


def source_rule(fn: Callable[..., object]) -> str:
    """The first line of a scorer's docstring plus its "Source:" sentence, for listings."""
    doc = (getattr(fn, "__doc__", None) or "").strip()
    first = doc.splitlines()[0] if doc else ""
    m = re.search(r"Source:\s*(.+?)(?<!al)\.(?:\s+[A-Z]|$)", " ".join(doc.split()))
    return first + (f" — source: {m.group(1)}" if m else "")
