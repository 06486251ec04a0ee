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
from dataclasses import dataclass, field

from medgr2.answers import last_boxed
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
        extracted: What the protocol's rule read out of the answer before mapping it to an option
            (a normalised text, a tag token, a letter, a parsed string), when it reads one.
    """

    correct: bool
    valid: bool
    chosen: str | None = None
    index: int | None = None
    extracted: str | None = field(default=None, repr=False)


INVALID = Verdict(False, False)


def _verdict(index: int | None, options: Sequence[str], gt: int | None) -> Verdict:
    if index is None:
        return INVALID
    return Verdict(gt is not None and index == gt, True, options[index], index)


# ------------------------------------------------------------------------------ medgr2


def medgr2(model_answer: str, options: Sequence[str], gt_answer: str) -> Verdict:
    """MedGR2 authors' rule: normalised exact match of the answer text with the gt option text.

    Source: the MedGR2 authors' released evaluation script and its ``normalize_answer`` (Zhi, Guo
    and Li 2025), no commit named: no public copy of the script was found, so the rule is
    transcribed from the published description of the protocol. It uses
    option-text answers, the prompt "Please choose one of the following: X or Y or Z. You must
    pick only one answer." and greedy decoding. Both sides are normalised as ``normalize_answer``
    does (:func:`medgr2_eval.parsing.normalize`: lowercase, ASCII punctuation removed, ends
    trimmed; inner whitespace is kept, so "Stage  C" with two spaces is no option); the answer
    is correct when it equals the ground-truth option. An answer equal to no option is
    *invalid* (the report gives accuracy with invalid answers counted wrong and with them
    skipped). Without options, any non-empty answer is valid and compared with the ground truth.

    >>> medgr2("Pneumonia.", ["normal", "pneumonia"], "pneumonia")
    Verdict(correct=True, valid=True, chosen='pneumonia', index=1)
    """
    a = normalize(model_answer)
    if not options:
        return Verdict(bool(a) and a == normalize(gt_answer), bool(a), model_answer.strip() or None, None, a)
    gt = gt_index(options, gt_answer)
    for i, o in enumerate(options):
        if normalize(o) == a:
            return Verdict(gt is not None and i == gt, True, options[i], i, a)
    return Verdict(False, False, extracted=a)


# ------------------------------------------------------------------------------ med-r1

_MED_R1 = re.compile(r"<answer>\s*(\w+)\s*</answer>")


def med_r1(model_answer: str, options: Sequence[str], gt_answer: str) -> Verdict:
    r"""Med-R1 rule: ``<answer>\s*(\w+)\s*</answer>`` from prediction and ground truth, exact equality.

    Source: Med-R1 (Lai et al. 2025) ``src/eval_vqa/test_qwen2_5vl_vqa_nothink.py``
    (``extract_option_answer`` and its scoring loop), Yuxiang-Lai117/Med-R1 at commit 88d76c7. When the
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
        token == gt_token,
        valid or token == gt_token,
        options[index] if index is not None else token,
        index,
        token,
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

    Source: OmniMedVQA (Hu et al., CVPR 2024) official evaluation code, OpenGVLab/Multi-Modality-Arena
    ``MedicalEval/Question-answering_Score/utils/medicalqa.py`` (``MedicalEval``,
    ``find_most_similar_index``) at commit 76d6302. It computes
    ``difflib.SequenceMatcher(None, option, output).ratio()`` for every option; the highest ratio
    wins (the first one on ties), and the choice is correct when it is the ground-truth option.
    Strings are compared as they are (case-sensitive, unstripped). An empty output, or one with
    zero similarity to every option, chooses nothing: the official script then fails on that
    item and counts it wrong; here it is invalid (and wrong). Without options nothing can be
    chosen.

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
"""``parse_response``'s markers, in its order: the text after the last occurrence of each is kept."""

MEDEVALKIT_MAX_OPTIONS = 4
"""MedEvalKit's ``construct_messages`` reads ``option_A`` .. ``option_D`` only."""


def _tag_contents(text: str, tag: str) -> str:
    """Every ``<tag>...</tag>`` content (first closing tag after each opening one), joined by a space."""
    parts = re.findall(rf"<{tag}>(.*?)</{tag}>", text, flags=re.DOTALL)
    return " ".join(parts).strip()


def _answer_tag_or_text(text: str) -> str:
    """MedEvalKit ``extract(text, "answer")`` (``hard=True``): the ``<answer>`` contents, else the
    whole text; ``""`` for an empty text. Tags are matched case-sensitively."""
    if not text:
        return ""
    return _tag_contents(text, "answer") or text


def boxed_or_none(text: str) -> str:
    """mathruler ``extract_boxed_content`` as MedEvalKit calls it: the last ``\\boxed{}`` contents,
    stripped (an empty box gives ``""``), or the string ``"None"`` when there is no closed box."""
    content = last_boxed(text)
    return "None" if content is None else content.strip()


def _medevalkit_parse(response: str) -> str:
    """MedEvalKit ``parse_response``."""
    response = response.lower()
    if "boxed" in response:
        response = boxed_or_none(response)
    elif "<answer>" in response:
        response = _answer_tag_or_text(response)
    for pattern in _ANSWER_PATTERNS:
        if pattern in response:
            response = response.split(pattern)[-1]
    return response


def medevalkit(model_answer: str, options: Sequence[str], gt_answer: str) -> Verdict:
    """MedEvalKit rule (OmniMedVQA ``cal_metrics`` + ``judge_multi_choice``): tags, letter, then difflib.

    Source: MedEvalKit (alibaba-damo-academy/MedEvalKit) ``utils/OmniMedVQA/OmniMedVQA.py``
    (``construct_messages``, ``cal_metrics``) and ``utils/utils.py`` (``extract``,
    ``judge_multi_choice``, ``parse_response``) at commit 9b12e3b, with ``extract_boxed_content``
    of hiyouga/MathRuler ``mathruler/grader.py`` at commit 14dadeb. As there, only the first
    four options exist (``option_A`` .. ``option_D``); the ground truth becomes the letter of the
    option whose text equals it exactly, and when texts repeat the *last* equal option's letter
    wins (each match overwrites it); a ground truth equal to no option stays its own text. The
    choices are written ``"B. pneumonia"``. The response is reduced to its ``<answer>`` contents
    (when present) and lowercased; a bare letter paragraph (first, or start of the last) is taken
    as is; otherwise the last ``\\boxed{}`` contents are used (stripped; an empty box is ``""``,
    a text saying "boxed" without a closed box is ``"none"``) and the text is cut after
    "answer:" / "answer is" and similar markers. Newlines are removed, the text is cut at its
    first "." and after its last ":". That string is correct when it equals the ground truth
    (letter or text); another letter is wrong; anything else goes to the fallback, the choice
    most similar to the whole parsed response by ``SequenceMatcher``. MedEvalKit never yields an
    invalid answer: when nothing is similar (an empty box, say) the fallback picks option A
    (scored as choosing A). Only an empty option list gives an invalid verdict here.

    >>> medevalkit("The answer is B.", ["normal", "pneumonia"], "pneumonia").correct
    True
    >>> dup = ["yes", "no", "yes"]
    >>> [medevalkit(letter, dup, "yes").correct for letter in "ABC"]
    [False, False, True]
    """
    if not options:
        return INVALID
    shown = tuple(options[:MEDEVALKIT_MAX_OPTIONS])
    gt_letter = None
    for i, o in enumerate(shown):
        if gt_answer == o:
            gt_letter = LETTERS[i]
    answer = (gt_letter or gt_answer).strip().lower()
    alphas = [c.lower() for c in LETTERS[: len(shown)]]
    choices = tuple(f"{LETTERS[i]}. {o}".lower() for i, o in enumerate(shown))

    response = _answer_tag_or_text(model_answer).lower()
    paragraphs = response.split("\n\n")
    if paragraphs[0] in alphas:
        response = paragraphs[0]
    elif paragraphs[-1].split(".")[0] in alphas:
        response = paragraphs[-1].split(".")[0]
    response = _medevalkit_parse(response).strip().lower().replace("\n", "")
    parsed = response.split(".")[0].split(":")[-1]

    if parsed == answer:
        i = alphas.index(answer) if answer in alphas else None
        return Verdict(True, True, shown[i] if i is not None else parsed, i, parsed)
    if parsed in alphas:
        i = alphas.index(parsed)
        return Verdict(choices[i] == answer, True, shown[i], i, parsed)
    if parsed in choices:
        i = choices.index(parsed)
        ok = answer in alphas and parsed == choices[alphas.index(answer)]
        return Verdict(ok, True, shown[i], i, parsed)
    i = _most_similar_cached(choices, response, 0)
    return Verdict(alphas[i] == answer or choices[i] == answer, True, shown[i], i, parsed)


# ------------------------------------------------------------------------------ vlmevalkit

_VLM_STRIP = str.maketrans({c: " " for c in ".()[],:;!*#{}"})
VLM_REFUSALS = (
    "Sorry, I can't help with images of people yet.",
    "I can't process this file.",
    "I'm sorry, but without the image provided",
    "Cannot determine the answer",
)
"""Refusals VLMEvalKit maps to the non-answer ``Z``."""
VLM_API_FAILURE = "Failed to obtain answer via API"
"""An answer holding this infers no letter (current VLMEvalKit; the text may still match)."""
_VLM_ANSWER_IS = re.compile(r"(?:correct\s+)?answer\s+is\s+\**([ABCD])\**", re.IGNORECASE)
"""VLMEvalKit's June 2026 "the answer is X" pattern: case-insensitive, no word boundary after the
letter (so "the answer is clearly ..." reads C), letters A-D only."""


def can_infer_option(answer: str, n_options: int) -> int | str | None:
    """Current VLMEvalKit ``can_infer_option`` with ``VERBOSE`` unset.

    Returns the option index, ``"Z"`` (a refusal, or a bare ``Z`` token with no letter:
    VLMEvalKit's "none of the options") or ``None``. The characters ``.()[],:;!*#{}`` become
    spaces and the answer is split into tokens. Exactly one option letter among the tokens is
    the choice only when its first occurrence is among the last four tokens (Aug 2025).
    Failing that (no letter, several, or one too early), the first "answer is X" / "correct
    answer is X" (X in A-D, any case, ``**`` allowed around it) that names an option is the
    choice (June 2026). "A" is never treated as an article (that needs ``VERBOSE``).
    """
    if VLM_API_FAILURE in answer:
        return None
    if any(r in answer for r in VLM_REFUSALS):
        return "Z"
    letters = LETTERS[:n_options]
    tokens = answer.translate(_VLM_STRIP).split()
    found = [c for c in letters if c in tokens]
    if len(found) == 1:
        if tokens.index(found[0]) > len(tokens) - 5:
            return letters.index(found[0])
    elif not found and "Z" in tokens:
        return "Z"
    m = _VLM_ANSWER_IS.search(answer)
    if m and m.group(1).upper() in letters:
        return letters.index(m.group(1).upper())
    return None


def can_infer_text(answer: str, options: Sequence[str]) -> int | None:
    """Current VLMEvalKit ``can_infer_text``: the only option whose lowercased text is contained in
    the lowercased answer; nothing when the answer is longer than twice the options' total
    length (Aug 2025: long answers get no option-text matching)."""
    low = answer.lower()
    if len(low) > 2 * sum(len(o) for o in options):
        return None
    hits = [i for i, o in enumerate(options) if o.lower() in low]
    return hits[0] if len(hits) == 1 else None


def can_infer(answer: str, options: Sequence[str]) -> int | str | None:
    """Current VLMEvalKit ``can_infer``: :func:`can_infer_option`, else :func:`can_infer_text`."""
    letter = can_infer_option(answer, len(options))
    return letter if letter is not None else can_infer_text(answer, options)


def infer_option_letter(answer: str, n_options: int) -> int | str | None:
    """VLMEvalKit 2024-03 ``can_infer_option`` run with ``VERBOSE=1`` (``vlmevalkit-2024``).

    Returns ``"Z"`` for a refusal or a bare ``Z`` (VLMEvalKit's "none of the options"), ``None``
    when no single letter is found. When "A" is a token of an answer longer than three tokens it
    may be the article, and no letter is inferred at all. The letter may stand anywhere. An
    answer holding ``VLM_API_FAILURE`` infers no letter (as in that commit).
    """
    if VLM_API_FAILURE in answer:
        return None
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
    """VLMEvalKit 2024-03 ``can_infer_text``: the index of the only option whose text is in the
    answer, whatever the answer's length (``vlmevalkit-2024``)."""
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


def _vlm_verdict(
    infer: Callable[[str, Sequence[str]], int | str | None],
    read_reply: Callable[[str, Sequence[str]], int | str | None],
    model_answer: str,
    options: Sequence[str],
    gt_answer: str,
    judge: Callable[[str], str] | None,
    question: str,
) -> Verdict:
    """Rules first; a configured judge only for answers the rules leave unmatched (not for "Z")."""
    if not options:
        return INVALID
    choice = infer(model_answer, options)
    if choice is None and judge is not None and model_answer.strip():
        listed = "\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(options))
        reply = judge(
            JUDGE_PROMPT.format(
                letters=", ".join(LETTERS[: len(options)]),
                question=question,
                options=listed,
                answer=model_answer,
            )
        )
        choice = read_reply(reply.strip(), options)
    if not isinstance(choice, int):
        return Verdict(False, False, extracted=choice)
    v = _verdict(choice, options, gt_index(options, gt_answer))
    return Verdict(v.correct, v.valid, v.chosen, v.index, LETTERS[choice])


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
    """VLMEvalKit rule (current ``can_infer``): a late letter or "answer is X", else a unique option text.

    Source: VLMEvalKit (open-compass/VLMEvalKit) ``vlmeval/utils/matching_util.py``
    (``can_infer_option``, ``can_infer_text``, ``can_infer``; last changed by a67ace5 of 2026-06-17)
    and ``vlmeval/dataset/utils/multiple_choice.py`` (``extract_answer_from_item``) at commit
    e8e78f0, rule-based path (``exact_matching``, no judge) with ``VERBOSE`` unset. The
    characters ``.()[],:;!*#{}`` become spaces and the answer is split into tokens; exactly one
    option letter among the tokens is the choice when it stands among the last four tokens;
    otherwise "answer is X" / "correct answer is X" (case-insensitive, X in A-D, so "The answer
    is clearly Benign." reads C from "clearly") decides. A refusal ("Cannot determine the
    answer" ...) or a bare "Z" is VLMEvalKit's non-answer: invalid, with no text matching.
    Failing a letter, exactly one option text contained in the lowercased answer is the choice,
    unless the answer is longer than twice the options' total length. Otherwise the answer is
    invalid (VLMEvalKit scores it "Z"), unless a judge is configured (``judge_base_url`` of an
    OpenAI-compatible server, or a ``judge`` callable prompt -> reply): it is then asked once to
    map the answer to a letter, read with the same rules (VLMEvalKit retries and then guesses at
    random; here an unreadable reply stays invalid). For the 2024 rule see ``vlmevalkit-2024``.

    >>> opts = ["normal", "pneumonia", "edema"]
    >>> vlmevalkit("A lesion is visible, so the answer is C", opts, "edema").correct
    True
    >>> vlmevalkit("C. Because of the findings.", opts, "edema").valid
    False
    """
    if judge is None and judge_base_url:
        judge = openai_judge(judge_base_url, judge_model, judge_api_key_env)
    return _vlm_verdict(can_infer, can_infer, model_answer, options, gt_answer, judge, question)


def _letter_only(answer: str, options: Sequence[str]) -> int | str | None:
    return infer_option_letter(answer, len(options))


def _infer_2024(answer: str, options: Sequence[str]) -> int | str | None:
    letter = infer_option_letter(answer, len(options))
    return letter if letter is not None else infer_option_text(answer, options)


def vlmevalkit_2024(
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
    """VLMEvalKit rule of March 2024 (``VERBOSE=1``): a unique letter, else a unique option text.

    For comparisons with older papers.

    Source: VLMEvalKit (open-compass/VLMEvalKit) ``vlmeval/utils/matching_util.py`` at commit
    c6bdffd (2024-03-19), run with ``VERBOSE=1``. The characters ``.()[],:;!*#{}`` are replaced
    by spaces and the answer split into tokens; exactly one option letter among the tokens is
    the choice, wherever it stands, except that an "A" token in an answer of more than three
    tokens may be the article ("A small lesion is visible"), so then no letter is inferred. A
    refusal or a bare "Z" is the non-answer: invalid, with no text matching. Failing a letter,
    exactly one option text contained in the lowercased answer is the choice, at any answer
    length. Otherwise invalid, unless a judge is configured (as for ``vlmevalkit``; its reply is
    read for a letter only).

    >>> vlmevalkit_2024("(B) pneumonia", ["normal", "pneumonia"], "pneumonia").correct
    True
    >>> vlmevalkit_2024("A normal lung would look different", ["normal", "pneumonia", "edema"], "edema").index
    0
    """
    if judge is None and judge_base_url:
        judge = openai_judge(judge_base_url, judge_model, judge_api_key_env)
    return _vlm_verdict(_infer_2024, _letter_only, model_answer, options, gt_answer, judge, question)


Scorer = Callable[[str, Sequence[str], str], Verdict]

SCORERS: dict[str, Scorer] = {
    "medgr2": medgr2,
    "med-r1": med_r1,
    "omnimedvqa": omnimedvqa,
    "medevalkit": medevalkit,
    "vlmevalkit": vlmevalkit,
    "vlmevalkit-2024": vlmevalkit_2024,
}
"""Built-in scorers by registered name."""


def source_rule(fn: Callable[..., object]) -> str:
    """The first line of a scorer's docstring plus its "Source:" sentence, for listings."""
    doc = (getattr(fn, "__doc__", None) or "").strip()
    first = doc.splitlines()[0] if doc else ""
    m = re.search(r"Source:\s*(.+?)(?<!al)\.(?:\s+[A-Z]|$)", " ".join(doc.split()))
    return first + (f" — source: {m.group(1)}" if m else "")
