"""Response-only masking, with expected token ids written by hand (see tiny.WORDS for the vocabulary)."""

import pytest
from tiny import ID, WORD_TEMPLATE, ids, word_tokenizer

from lora_core.errors import TemplateError
from lora_core.masking import (
    IGNORE_INDEX,
    Encoded,
    collate,
    encode_messages,
    encode_records,
    pad_id_of,
    prompt_ids,
    special_prefix,
    trained_spans,
    truncate,
)
from lora_core.prompts import PromptStyle, render

M = IGNORE_INDEX
EOS = ID["</s>"]


def msgs(*pairs):
    return [{"role": role, "content": content} for role, content in pairs]


ALPACA_PROMPT = ids("### Instruction: hello world ### Response:")


def test_alpaca_without_input_trains_reply_and_eos_only():
    enc = encode_messages(word_tokenizer(), msgs(("user", "hello world"), ("assistant", "hi there")))
    assert enc.input_ids == ALPACA_PROMPT + ids("hi there") + [EOS]
    assert enc.labels == [M] * 6 + ids("hi there") + [EOS]


def test_alpaca_with_input_joins_instruction_and_input():
    from lora_core.data import Message

    # data.py turns {"instruction": "hello", "input": "world"} into one user turn "hello\n\nworld"
    messages = [Message("user", "hello\n\nworld"), Message("assistant", "hi")]
    enc = encode_messages(word_tokenizer(), messages)
    assert enc.input_ids == ALPACA_PROMPT + [ID["hi"], EOS]
    assert enc.labels == [M] * 6 + [ID["hi"], EOS]


def test_tokenizer_that_adds_bos_gets_it_once_and_masked():
    tok = word_tokenizer(bos=True)
    assert special_prefix(tok) == [ID["<s>"]]
    enc = encode_messages(tok, msgs(("user", "hello world"), ("assistant", "hi")))
    assert enc.input_ids == [ID["<s>"]] + ALPACA_PROMPT + [ID["hi"], EOS]
    assert enc.labels == [M] * 7 + [ID["hi"], EOS]


def test_tokenizer_without_bos_gets_no_prefix():
    assert special_prefix(word_tokenizer()) == []


SHAREGPT = msgs(("system", "be brief"), ("user", "hello"), ("assistant", "hi"), ("user", "more"), ("assistant", "ok"))


def test_multi_turn_with_system_without_template_trains_every_reply():
    enc = encode_messages(word_tokenizer(), SHAREGPT)
    first_prompt = ids("be brief ### Instruction: hello ### Response:")
    second_prompt = ids("### Instruction: more ### Response:")
    assert enc.input_ids == first_prompt + [ID["hi"], EOS] + second_prompt + [ID["ok"], EOS]
    assert enc.labels == [M] * 7 + [ID["hi"], EOS] + [M] * 5 + [ID["ok"], EOS]


def test_multi_turn_with_chat_template_trains_each_reply_and_its_end_of_turn():
    tok = word_tokenizer(template=WORD_TEMPLATE)
    enc = encode_messages(tok, SHAREGPT)
    assert enc.input_ids == ids(
        "<|system|> be brief <|end|> <|user|> hello <|end|> <|assistant|> hi <|end|> "
        "<|user|> more <|end|> <|assistant|> ok <|end|>"
    )
    assert enc.labels == [M] * 8 + ids("hi <|end|>") + [M] * 4 + ids("ok <|end|>")


def test_openai_messages_with_template_and_bos_from_the_template_is_not_doubled():
    template = "<s> " + WORD_TEMPLATE
    tok = word_tokenizer(bos=True, template=template)
    enc = encode_messages(tok, msgs(("user", "hello"), ("assistant", "hi")))
    assert enc.input_ids == ids("<s> <|user|> hello <|end|> <|assistant|> hi <|end|>")
    assert enc.labels == [M] * 5 + ids("hi <|end|>")


def test_chat_prompt_is_the_training_prompt():
    """What chat sends for a dataset question is token for token the masked prefix of the training example."""
    for tok in (word_tokenizer(), word_tokenizer(bos=True), word_tokenizer(template=WORD_TEMPLATE)):
        conversation = msgs(("system", "be brief"), ("user", "hello world"), ("assistant", "hi there"))
        enc = encode_messages(tok, conversation)
        prompt = prompt_ids(tok, conversation[:-1])
        assert enc.input_ids[: len(prompt)] == prompt
        assert all(label == M for label in enc.labels[: len(prompt)])
        assert enc.labels[len(prompt)] != M


def test_template_whose_earlier_turns_change_is_refused_clearly():
    # renders a marker before the last turn only: the prompt is then not a prefix of prompt + reply
    bad = (
        "{% for m in messages %}{% if loop.last %}sys {% endif %}<|{{ m['role'] }}|> {{ m['content'] }} <|end|> "
        "{% endfor %}{% if add_generation_prompt %}<|assistant|> {% endif %}"
    )
    with pytest.raises(TemplateError, match="turn 2") as err:
        encode_messages(word_tokenizer(template=bad), msgs(("user", "hello"), ("assistant", "hi")))
    assert err.value.code == "template_not_prefix"


def test_pad_equal_to_eos_keeps_the_final_eos_label():
    tok = word_tokenizer(pad_is_eos=True)
    assert pad_id_of(tok) == EOS
    long = encode_messages(tok, msgs(("user", "hello world"), ("assistant", "hi there")))
    short = encode_messages(tok, msgs(("user", "hello"), ("assistant", "ok")))
    batch = collate([long.__dict__, short.__dict__], pad_id_of(tok))
    n = len(short.input_ids)
    assert batch["input_ids"][1].tolist() == short.input_ids + [EOS] * (len(long.input_ids) - n)
    assert batch["labels"][1].tolist() == [M] * 5 + [ID["ok"], EOS] + [M] * (len(long.input_ids) - n)
    assert batch["attention_mask"][1].tolist() == [1] * n + [0] * (len(long.input_ids) - n)
    assert batch["labels"][0].tolist()[-1] == EOS  # the longest row's own EOS is trained too


def test_truncation_cuts_the_oldest_prompt_tokens_and_keeps_bos_and_reply():
    tok = word_tokenizer(bos=True)
    enc = encode_messages(tok, msgs(("user", "hello world"), ("assistant", "hi there")))  # 10 tokens
    cut = truncate(enc, 8, keep_prefix=1)
    assert cut.input_ids == [ID["<s>"]] + ids("hello world ### Response: hi there") + [EOS]
    assert cut.labels == [M] * 5 + ids("hi there") + [EOS]


def test_truncation_into_the_reply_leaves_nothing_to_train_and_drops():
    tok = word_tokenizer(bos=True)
    enc = encode_messages(tok, msgs(("user", "hello world"), ("assistant", "hi there")))
    assert truncate(enc, 5, keep_prefix=1) is not None  # one prompt token (Response:) is still there
    assert truncate(enc, 4, keep_prefix=1) is None  # the window would start at the reply: no prompt left
    assert truncate(enc, 3, keep_prefix=1) is None


def test_truncation_of_multi_turn_masks_a_reply_whose_prompt_was_cut():
    labels = [M, M, 5, 6, M, M, 7, 8]
    enc = Encoded(list(range(8)), labels)
    cut = truncate(enc, 5)  # window starts inside the first reply
    assert cut.input_ids == [3, 4, 5, 6, 7]
    assert cut.labels == [M, M, M, 7, 8]


def test_encode_records_counts_dropped_and_truncated_rows():
    from lora_core.data import Message, Record

    tok = word_tokenizer()
    records = [
        Record(1, (Message("user", "hello"), Message("assistant", "hi"))),  # 7 tokens
        Record(2, (Message("user", "hello world hello world"), Message("assistant", "hi"))),  # 10 tokens
        # the reply and its EOS alone fill all 9 positions: no prompt could be kept, so nothing is trained
        Record(3, (Message("user", "hello"), Message("assistant", "hi there more ok hi there more ok"))),
    ]
    examples, rows, stats = encode_records(records, tok, max_length=9)
    assert rows == [1, 2]
    assert stats.total == 3 and stats.kept == 2 and stats.truncated == 1
    assert stats.dropped == {"nothing_to_train": 1} and stats.dropped_rows == [3]
    assert stats.lengths == [7, 10, 14]
    assert all(len(e.input_ids) <= 9 for e in examples)
    assert examples[1].labels[-2:] == [ID["hi"], EOS]


def test_prompt_style_follows_the_tokenizer():
    assert render(word_tokenizer(), msgs(("user", "hello"))).style is PromptStyle.ALPACA
    assert render(word_tokenizer(template=WORD_TEMPLATE), msgs(("user", "hello"))).style is PromptStyle.CHAT_TEMPLATE


def test_trained_spans_show_prompt_and_reply_apart():
    tok = word_tokenizer()
    enc = encode_messages(tok, msgs(("user", "hello"), ("assistant", "hi")))
    spans = trained_spans(tok, enc)
    assert [trained for _, trained in spans] == [False, True]
    assert "hello" in spans[0][0] and "hi" in spans[1][0]
