"""How close an answer is to its reference: exact match, ROUGE-L and token F1. Light to import (``jieba`` is
loaded on the first Chinese text).

Words are what the scores count. Text with Chinese characters is segmented into words with ``jieba`` (a Chinese
sentence has no spaces to split on); other text is split on whitespace. Words are lower-cased, and words made only
of punctuation are left out, so "Paris." and "paris" are the same one word; a comma is not a word.

- ``exact_match``: 1.0 when the answer is the reference, apart from the whitespace around it, else 0.0.
- ``rouge_l``: the F1 of the longest common subsequence of words (precision: its length over the answer's words,
  recall: over the reference's), so the order of the words counts.
- ``token_f1``: the F1 of the words both share, counted with repetition (SQuAD's), in any order.

Both F1 scores are 1.0 when answer and reference have no words at all, and 0.0 when only one of them has none.
"""

from __future__ import annotations

import logging
import re
import threading
import unicodedata
from collections import Counter
from functools import lru_cache

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_JIEBA_LOCK = threading.Lock()


def exact_match(answer: str, reference: str) -> float:
    return 1.0 if (answer or "").strip() == (reference or "").strip() else 0.0


def _is_word(token: str) -> bool:
    return any(not unicodedata.category(ch).startswith(("P", "S", "Z", "C")) for ch in token)


def _strip_punctuation(token: str) -> str:
    """A word without the punctuation at its ends ("Paris." -> "Paris"; "don't" keeps its apostrophe)."""
    start, end = 0, len(token)
    while start < end and unicodedata.category(token[start]).startswith("P"):
        start += 1
    while end > start and unicodedata.category(token[end - 1]).startswith("P"):
        end -= 1
    return token[start:end]


@lru_cache(maxsize=1)
def _jieba():
    import jieba

    jieba.setLogLevel(logging.WARNING)
    return jieba


def words(text: str) -> list[str]:
    """The words of ``text`` as the scores count them (see the module's docstring)."""
    text = (text or "").lower()
    if _CJK.search(text):
        with _JIEBA_LOCK:  # jieba builds its dictionary once, on first use
            pieces = _jieba().lcut(text)
        pieces = [p for piece in pieces for p in piece.split()]
    else:
        pieces = text.split()
    return [w for w in (_strip_punctuation(p) for p in pieces) if w and _is_word(w)]


def _f1(common: int, answer_len: int, reference_len: int) -> float:
    if answer_len == 0 and reference_len == 0:
        return 1.0
    if common == 0:
        return 0.0
    precision, recall = common / answer_len, common / reference_len
    return 2 * precision * recall / (precision + recall)


def _lcs(a: list[str], b: list[str]) -> int:
    """The length of the longest common subsequence of two word lists (one row of the table at a time)."""
    if len(a) < len(b):
        a, b = b, a
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b, 1):
            current.append(previous[j - 1] + 1 if x == y else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def rouge_l(answer: str, reference: str) -> float:
    a, r = words(answer), words(reference)
    return _f1(_lcs(a, r), len(a), len(r))


def token_f1(answer: str, reference: str) -> float:
    a, r = words(answer), words(reference)
    return _f1(sum((Counter(a) & Counter(r)).values()), len(a), len(r))


def scores(answer: str, reference: str) -> dict[str, float]:
    """All three scores of one answer."""
    return {"exact_match": exact_match(answer, reference), "rouge_l": rouge_l(answer, reference),
            "token_f1": token_f1(answer, reference)}  # fmt: skip
