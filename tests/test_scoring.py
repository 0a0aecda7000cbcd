"""The answer scores against values worked out by hand (lora_core/scoring.py says how each is defined)."""

from __future__ import annotations

import pytest

from lora_core.scoring import exact_match, rouge_l, scores, token_f1, words


def test_words_are_lower_case_without_punctuation_and_chinese_is_segmented() -> None:
    assert words("The cat, the MAT.") == ["the", "cat", "the", "mat"]
    assert words("don't stop -- 1987!") == ["don't", "stop", "1987"]
    assert words("我爱北京天安门。") == ["我", "爱", "北京", "天安门"]
    assert words("Lumen Bay 的灯塔") == ["lumen", "bay", "的", "灯塔"]
    assert words("") == words("   \n\t") == words("，。!?") == []


def test_exact_match_ignores_only_the_whitespace_around() -> None:
    assert exact_match(" Paris.\n", "Paris.") == 1.0
    assert exact_match("paris.", "Paris.") == 0.0
    assert exact_match("Paris", "Paris.") == 0.0
    assert exact_match("", "  ") == 1.0


@pytest.mark.parametrize(
    "answer, reference, expected",
    [
        # LCS "the cat on the mat" = 5; precision 5/5, recall 5/6: F = 2 * 1 * 5/6 / (1 + 5/6) = 10/11
        ("the cat on the mat", "The cat sat on the mat.", 10 / 11),
        # the same words in reverse order: LCS 1 of 3 each way: F = 1/3
        ("c b a", "a b c", 1 / 3),
        ("a b c", "a b c", 1.0),
        ("x y", "a b c", 0.0),
        # 我 / 爱 / 北京 against 我 / 爱 / 北京 / 天安门: LCS 3, precision 1, recall 3/4: F = 6/7
        ("我爱北京", "我爱北京天安门", 6 / 7),
        # 林青禾 / 她 / 连任 / 三届 against 林青禾 / 她 / 已经 / 连任 / 三届: LCS 4, P = 1, R = 4/5: F = 8/9
        ("林青禾，她连任三届。", "林青禾，她已经连任三届。", 8 / 9),
        ("", "", 1.0),
        ("   ", "a", 0.0),
        ("a", "", 0.0),
    ],
)
def test_rouge_l(answer: str, reference: str, expected: float) -> None:
    assert rouge_l(answer, reference) == pytest.approx(expected)


@pytest.mark.parametrize(
    "answer, reference, expected",
    [
        # common a, b: precision 2/3, recall 2/4: F1 = 2 * (1/3) / (7/6) = 4/7
        ("a b x", "a b c d", 4 / 7),
        # order does not count, repetition does: common {a: 1, b: 1} of a a b / b a: P = 2/3, R = 1: F1 = 4/5
        ("a a b", "b a", 4 / 5),
        ("c b a", "a b c", 1.0),
        # 北京 and 天安门 shared: P = 2/2, R = 2/4: F1 = 2/3
        ("北京天安门", "我爱北京天安门", 2 / 3),
        ("", "", 1.0),
        (" \t", "word", 0.0),
    ],
)
def test_token_f1(answer: str, reference: str, expected: float) -> None:
    assert token_f1(answer, reference) == pytest.approx(expected)


def test_scores_gives_all_three() -> None:
    assert scores("Paris.", "Paris.") == {"exact_match": 1.0, "rouge_l": 1.0, "token_f1": 1.0}
    assert scores("paris", "Paris.") == {"exact_match": 0.0, "rouge_l": 1.0, "token_f1": 1.0}
