"""Preference pairs: each form read and validated row by row, and encoded with expected ids written by hand (see
tiny.WORDS for the vocabulary); ORPO's loss against the paper's formula."""

import json
import math

import pytest
import torch
from tiny import ID, WORD_TEMPLATE, ids, word_tokenizer

from lora_core.data import Message, load_records
from lora_core.masking import IGNORE_INDEX
from lora_core.pairs import EncodedPair, encode_pair, encode_pairs, fit_pair, pair_spans, to_pair_dataset

EOS = ID["</s>"]
CHAT = word_tokenizer(template=WORD_TEMPLATE)


def load(tmp_path, rows, name="pairs.jsonl"):
    path = tmp_path / name
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    return load_records(path)


def turns(*pairs, keys=("role", "content")):
    return [{keys[0]: role, keys[1]: text} for role, text in pairs]


STANDARD = {"prompt": "hello world", "chosen": "hi there", "rejected": "ok"}
CONVERSATIONAL = {
    "prompt": turns(("system", "be brief"), ("user", "hello"), ("assistant", "hi"), ("user", "more")),
    "chosen": turns(("assistant", "ok")),
    "rejected": turns(("assistant", "hi there")),
}
SHAREGPT = {
    "conversations": turns(("human", "hello"), ("gpt", "hi"), ("human", "more"), keys=("from", "value")),
    "chosen": {"from": "gpt", "value": "ok"},
    "rejected": {"from": "gpt", "value": "hi there"},
    "system": "be brief",
}


def test_the_standard_form_is_a_user_turn_and_two_answers_each_trained_through_its_end_of_turn(tmp_path):
    report = load(tmp_path, [STANDARD, {**STANDARD, "system": "be brief"}])
    assert report.format == "preference" and report.ok and report.valid_rows == 2
    plain, with_system = report.records
    assert plain.messages == (Message("user", "hello world"), Message("assistant", "hi there"))
    assert plain.rejected == "ok" and plain.is_pair
    pair = encode_pair(CHAT, plain.messages, plain.rejected)
    assert pair.prompt_ids == ids("<|user|> hello world <|end|> <|assistant|>")
    assert pair.chosen_ids == ids("hi there <|end|>")
    assert pair.rejected_ids == ids("ok <|end|>")
    pair = encode_pair(CHAT, with_system.messages, with_system.rejected)
    assert pair.prompt_ids == ids("<|system|> be brief <|end|> <|user|> hello world <|end|> <|assistant|>")
    assert pair.chosen_ids == ids("hi there <|end|>") and pair.rejected_ids == ids("ok <|end|>")


@pytest.mark.parametrize("row", [CONVERSATIONAL, SHAREGPT], ids=["conversational", "sharegpt"])
def test_a_conversation_prompt_is_encoded_once_with_its_earlier_reply_untrained(tmp_path, row):
    report = load(tmp_path, [row])
    assert report.ok, report.problems
    record = report.records[0]
    assert [m.role for m in record.messages] == ["system", "user", "assistant", "user", "assistant"]
    pair = encode_pair(CHAT, record.messages, record.rejected)
    # the earlier assistant turn ("hi") is context: it is in the prompt, which is never trained
    assert pair.prompt_ids == ids(
        "<|system|> be brief <|end|> <|user|> hello <|end|> <|assistant|> hi <|end|> <|user|> more <|end|> "
        "<|assistant|>"
    )
    assert pair.chosen_ids == ids("ok <|end|>")
    assert pair.rejected_ids == ids("hi there <|end|>")
    spans = pair_spans(CHAT, pair)
    assert [trained for _, trained in spans["prompt"]] == [False]
    assert [trained for _, trained in spans["chosen"]] == [True] and "ok" in spans["chosen"][0][0]
    assert "hi there" in spans["rejected"][0][0]


def test_without_a_chat_template_the_answers_end_with_eos_and_bos_stays_first():
    tok = word_tokenizer(bos=True)
    pair = encode_pair(tok, (Message("user", "hello world"), Message("assistant", "hi")), "ok")
    assert pair.prompt_ids == [ID["<s>"]] + ids("### Instruction: hello world ### Response:")
    assert pair.chosen_ids == [ID["hi"], EOS] and pair.rejected_ids == [ID["ok"], EOS]


def test_an_answer_may_be_a_string_a_turn_or_a_list_of_one_turn(tmp_path):
    forms = ["ok", {"role": "assistant", "content": "ok"}, [{"role": "assistant", "content": "ok"}],
             {"from": "gpt", "value": "ok"}]  # fmt: skip
    report = load(tmp_path, [{"prompt": "hello", "chosen": form, "rejected": "hi"} for form in forms])
    assert report.ok and [r.messages[-1].content for r in report.records] == ["ok"] * 4


BAD_ROWS = [
    ({"prompt": "hello", "chosen": "hi", "rejected": " hi "}, [("rejected", "same_answers")]),
    ({"prompt": "hello", "chosen": "", "rejected": "hi"}, [("chosen", "empty_field")]),
    ({"prompt": "hello", "chosen": "hi"}, [("rejected", "missing_field")]),
    ({"chosen": "hi", "rejected": "ok"}, [("prompt", "missing_field")]),
    ({"prompt": turns(("system", "s")), "chosen": "hi", "rejected": "ok"}, [("prompt", "no_user")]),
    ({"prompt": turns(("user", "a"), ("assistant", "b")), "chosen": "hi", "rejected": "ok"},
     [("prompt[1].role", "last_not_user")]),
    ({"prompt": "hello", "chosen": turns(("assistant", "a"), ("assistant", "b")), "rejected": "ok"},
     [("chosen", "reply_turns")]),
    ({"prompt": "hello", "chosen": "hi", "rejected": {"role": "user", "content": "ok"}},
     [("rejected.role", "reply_role")]),
    ({"prompt": "hello", "chosen": 3, "rejected": "ok"}, [("chosen", "not_reply")]),
    ({"conversations": turns(("gpt", "hi"), keys=("from", "value")), "chosen": {"from": "gpt", "value": "a"},
      "rejected": {"from": "gpt", "value": "b"}}, [("conversations[0].from", "not_alternating"),
                                                   ("conversations", "no_user")]),
]  # fmt: skip


@pytest.mark.parametrize(("row", "expected"), BAD_ROWS)
def test_each_bad_pair_is_named_by_row_and_field_and_nothing_is_kept(tmp_path, row, expected):
    report = load(tmp_path, [STANDARD, row])
    assert [(p.row, p.field, p.code) for p in report.problems] == [(2, f, c) for f, c in expected]
    assert all(p.message.startswith("Row 2: field") for p in report.problems)
    assert [r.row for r in report.records] == [1]


def test_instruction_rows_in_a_file_of_pairs_are_named_as_another_format(tmp_path):
    report = load(tmp_path, [STANDARD, STANDARD, {"instruction": "hello", "output": "hi"}])
    assert report.format == "preference"
    assert [(p.row, p.code) for p in report.problems] == [(3, "mixed_format")]
    assert "preference pairs format" in report.problems[0].message


def test_a_csv_file_with_prompt_chosen_and_rejected_columns_is_read_as_pairs(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text('prompt,chosen,rejected\nhello,hi there,ok\n"hello world",ok,hi\n', encoding="utf-8")
    report = load_records(path)
    assert report.format == "preference" and report.valid_rows == 2
    assert report.records[1].rejected == "hi"


def test_a_long_pair_loses_its_oldest_prompt_tokens_first_and_keeps_bos():
    pair = EncodedPair([1, 10, 11, 12, 13, 14], [20, 21], [30])
    assert fit_pair(pair, 8) is pair
    assert fit_pair(pair, 6, keep_prefix=1) == EncodedPair([1, 12, 13, 14], [20, 21], [30])
    # answers longer than half the window: the prompt keeps half, the answers lose their ends
    long = EncodedPair([1, 10, 11, 12, 13, 14], [20, 21, 22, 23, 24, 25], [30, 31, 32, 33, 34, 35, 36])
    assert fit_pair(long, 8, keep_prefix=1) == EncodedPair([1, 12, 13, 14], [20, 21, 22, 23], [30, 31, 32, 33])
    assert fit_pair(EncodedPair([1], [2, 3, 4, 5], [6]), 2, keep_prefix=1) is None


def test_encoding_counts_dropped_and_truncated_pairs_and_builds_the_collators_columns(tmp_path):
    report = load(tmp_path, [STANDARD, {"prompt": "hello world hello world", "chosen": "hi", "rejected": "ok"}])
    pairs, rows, stats = encode_pairs(report.records, CHAT, max_length=8)
    assert rows == [1, 2] and stats.kept == 2 and stats.truncated == 1
    assert all(p.length <= 8 for p in pairs)
    dataset = to_pair_dataset(pairs, rows)
    assert dataset.column_names == ["prompt_ids", "chosen_ids", "rejected_ids", "length", "row"]
    assert dataset[0]["chosen_ids"] == ids("hi there <|end|>")
    assert IGNORE_INDEX not in dataset[0]["prompt_ids"]


def test_orpo_loss_is_the_papers_formula():
    pytest.importorskip("trl")
    from lora_core.preference_trainer import orpo_loss

    chosen = torch.tensor([-0.2, -1.5, -3.0, -1e-3], dtype=torch.float64)
    rejected = torch.tensor([-0.9, -0.4, -6.0, -2.0], dtype=torch.float64)
    nll, beta = torch.tensor(1.25, dtype=torch.float64), 0.3
    loss, log_odds = orpo_loss(chosen, rejected, nll, beta)

    def odds(logp):
        p = math.exp(logp)
        return p / (1 - p)

    expected_log_odds = [math.log(odds(c) / odds(r)) for c, r in zip(chosen.tolist(), rejected.tolist(), strict=True)]
    l_or = [-math.log(1 / (1 + math.exp(-x))) for x in expected_log_odds]
    assert log_odds.tolist() == pytest.approx(expected_log_odds, rel=1e-6)
    assert float(loss) == pytest.approx(1.25 + beta * sum(l_or) / len(l_or), rel=1e-6)
    # the gradient pushes the chosen answer up and the rejected one down
    chosen.requires_grad_(True)
    rejected.requires_grad_(True)
    orpo_loss(chosen, rejected, nll, beta)[0].backward()
    assert (chosen.grad < 0).all() and (rejected.grad > 0).all()
