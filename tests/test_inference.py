"""ChatEngine on the demo model: activate / switch / deactivate, base mismatch, compare, merge, assistants."""

import json
import os
import shutil

import pytest
import torch

from lora_core import assistants, models
from lora_core.adapters import AdapterError
from lora_core.chat import ChatEngine, ChatError, GenerationSettings, load_model
from lora_core.data import load_records
from lora_core.demo import DEMO_TRAINING, SAMPLE_DATASET, sample_rows
from lora_core.errors import ModelError
from lora_core.export import merge_adapter
from lora_core.masking import encode_messages, prompt_ids
from lora_core.training import State, TrainConfig, TrainingError, TrainingJob

GREEDY = GenerationSettings(max_new_tokens=24)
SLOW_FIXTURES = ("adapter_a", "adapter_b")  # they train, or take the session's demo training (marked slow)


@pytest.fixture(scope="module")
def home(module_home):
    return module_home


@pytest.fixture(scope="module")
def base(home, install_demo):
    return install_demo(home / "Models" / "LLM" / "demo")


def train(base, task, steps, seed=42):
    settings = {**DEMO_TRAINING, "epochs": 1.0, "samples": 0, "eval_rows": 0}  # its adapter is what is tested
    config = TrainConfig(base=str(base), data=str(SAMPLE_DATASET), task=task, max_steps=steps, seed=seed, **settings)
    snap = TrainingJob(config).run()
    assert snap["state"] == State.COMPLETED, snap["error"]
    return snap["adapter_dir"]


@pytest.fixture(scope="module")
def adapter_a(base, home, demo_training):
    return str(demo_training.copy_to(home, "a_" + demo_training.adapter.name.split("_", 1)[1]))  # the demo training's


@pytest.fixture(scope="module")
def adapter_b(base):
    return train(base, "b", 30, seed=7)


@pytest.fixture()
def engine(base):
    chat = ChatEngine()
    chat.load_base(base)
    return chat


QUESTION = [{"role": "user", "content": sample_rows()[0]["instruction"]}]


def test_activate_switch_and_deactivate_restores_the_base_exactly(engine, base, adapter_a, adapter_b):
    plain = engine.generate(QUESTION, GREEDY)
    reference = load_model(base)
    ids = torch.tensor([prompt_ids(engine.tokenizer, QUESTION)])
    with torch.no_grad():
        base_logits = reference(ids).logits

    engine.activate(adapter_a)
    with_a = engine.generate(QUESTION, GREEDY)
    engine.activate(adapter_b)
    with_b = engine.generate(QUESTION, GREEDY)
    engine.activate(adapter_a)  # back again: loaded once, switched, not reloaded
    assert engine.generate(QUESTION, GREEDY) == with_a
    assert sorted(engine.adapters) == sorted([adapter_a.rsplit("/", 1)[1], adapter_b.rsplit("/", 1)[1]])
    assert len({plain, with_a, with_b}) == 3

    engine.deactivate()
    assert engine.generate(QUESTION, GREEDY) == plain
    with torch.no_grad(), engine._adapter_mode(None):
        assert torch.equal(engine.model(ids).logits, base_logits)


def test_stream_yields_the_reply_in_pieces(engine, adapter_a):
    engine.activate(adapter_a)
    pieces = list(engine.stream(QUESTION, GREEDY))
    assert len(pieces) > 1 and "".join(pieces) == engine.generate(QUESTION, GREEDY)


def test_a_character_the_token_limit_cut_short_does_not_end_the_reply() -> None:
    from lora_core.chat import reply_pieces

    cut = "\ufffd"
    streamed = ["\n ", "灯塔", cut, cut + "镇", " is", " teal" + cut + cut]
    assert list(reply_pieces(streamed)) == ["灯塔", cut * 2 + "镇", " is", " teal"]
    assert list(reply_pieces(["  ", cut, cut])) == [cut * 2]  # nothing else to show: shown as it is
    assert "".join(reply_pieces(["ab", cut * 5])) == "ab" + cut * 2  # a character has at most 4 bytes


def test_an_adapter_folder_with_dots_in_its_name_loads_answers_and_is_forgotten(
    engine, home, adapter_a, demo_training
):
    """PEFT refuses a '.' in an adapter's name (a module name to torch): a task named "v1.2", or an imported
    "llama-3.1-lora" folder, must still load, answer merged and unmerged, mix with the base in one batch, and go."""
    name = "v1.2_lumen.bay"
    dotted = demo_training.copy_to(home, name)  # the same weights as adapter_a under another name
    engine.activate(adapter_a)
    expected = engine.generate(QUESTION, GREEDY)
    loaded = engine.activate(dotted)
    assert loaded.name == engine.active == name and name in engine.adapters
    assert engine.generate(QUESTION, GREEDY) == expected and engine.merged == name
    assert engine._batches_both(name)
    base, tuned = engine.answer_both([QUESTION], GREEDY)
    assert tuned == [expected] and base != tuned
    assert engine.compare(QUESTION, GREEDY)["adapter"] == expected
    engine.remove(name)
    assert engine.active is None and sorted(engine.adapters) == [adapter_a.rsplit("/", 1)[1]]
    assert engine.generate(QUESTION, GREEDY) == base[0]  # the base again


def test_compare_gives_two_different_answers_after_training(engine, adapter_a):
    engine.activate(adapter_a)
    answers = engine.compare(QUESTION, GREEDY)
    assert answers["base"] != answers["adapter"]
    assert answers["adapter"] == engine.generate(QUESTION, GREEDY)
    assert engine.active  # compare leaves the adapter active
    engine.deactivate()
    with pytest.raises(ChatError, match="Activate an adapter"):
        engine.compare(QUESTION, GREEDY)


def mixed_prompts() -> list[list[dict]]:
    """Prompts of many lengths, Chinese and English: the forgetting probe's and every sixth sample row's."""
    from lora_core.evaluation import probe_prompts

    rows = [r["instruction"] + ("\n\n" + r["input"] if r.get("input") else "") for r in sample_rows()[::6]]
    return [[{"role": "user", "content": text}] for text in [p["prompt"] for p in probe_prompts()] + rows]


def test_replies_in_batches_are_the_replies_one_by_one_in_the_order_asked(engine, adapter_a, monkeypatch):
    """``answer_all`` batches prompts of similar lengths (padded on the left), and ``answer_both`` the base's rows
    with the adapter's: the same greedy replies as one by one, base and adapter, each in its place. In float64: in
    float32 batches of other shapes round differently, and where two tokens are nearly tied (often, on the random
    demo model) a greedy reply may go either way; a mistake of the batching changes replies in any precision."""
    from lora_core import chat

    engine.activate(adapter_a)
    engine.model.double()
    prompts = mixed_prompts()
    base_alone = [engine.compare(p, GREEDY)["base"] for p in prompts]
    adapter_alone = [engine.generate(p, GREEDY) for p in prompts]
    assert len(set(adapter_alone)) > 1 and base_alone != adapter_alone
    calls = []
    batches = chat.reply_batches
    monkeypatch.setattr(chat, "reply_batches", lambda *a, **k: calls.append(batches(*a, **k)) or calls[-1])
    assert engine.answer_all(prompts, GREEDY, None) == base_alone
    assert engine.answer_all(prompts, GREEDY) == adapter_alone
    assert len(calls) == 2 and len(calls[0]) < len(prompts)  # in batches, not one by one
    assert engine.answer_both(prompts, GREEDY) == (base_alone, adapter_alone)
    n = len(prompts)
    assert len(calls) == 3 and any(min(b) < n <= max(b) for b in calls[2])  # base and adapter rows in one batch
    assert engine.generate(prompts[0], GREEDY) == adapter_alone[0] and engine.merged == engine.active  # merged again
    monkeypatch.setattr(chat.ChatEngine, "_batches_both", lambda self, name: False)  # an adapter PEFT cannot mix
    assert engine.answer_both(prompts, GREEDY) == (base_alone, adapter_alone) and len(calls) == 5


def test_each_reply_keeps_its_own_budget_and_a_stop_ends_between_batches(engine, adapter_a, monkeypatch):
    """Prompts with different new-token budgets share a batch, each reply as long as it would be alone (a prompt
    that the largest budget would take past the model's context is batched with its own budget's only); a stop set
    while a batch runs ends the call before the next batch, with no replies."""
    import threading

    from lora_core import chat

    engine.activate(adapter_a)
    engine.model.double()  # replies that do not depend on how float32 rounds a near-tie in other batch shapes
    prompts = mixed_prompts()[:4]
    ids = [prompt_ids(engine.tokenizer, p, None) for p in prompts]
    budgets = [3, 12, 3, 12]
    generate = type(engine.model).generate
    calls = []

    def counted(self, *args, **kwargs):
        calls.append(kwargs["max_new_tokens"])
        return generate(self, *args, **kwargs)

    monkeypatch.setattr(type(engine.model), "generate", counted)
    with engine._adapter_mode(None):
        alone = [chat._replies(engine.model, engine.tokenizer, [p], [b], GREEDY)[0]
                 for p, b in zip(ids, budgets, strict=True)]  # fmt: skip
        calls.clear()
        assert chat._replies(engine.model, engine.tokenizer, ids, budgets, GREEDY) == alone
        assert calls == [12]  # one batch
        assert chat._replies(engine.model, engine.tokenizer, ids[:1], [12], GREEDY)[0] != alone[0]  # 3 tokens
        calls.clear()
        near_the_end = len(ids[0]) + 3  # the first prompt fits with its own 3 new tokens, not with 12
        assert (
            chat._replies(engine.model, engine.tokenizer, ids[:2], budgets[:2], GREEDY, context=near_the_end)
            == (alone[:2])
        )
        assert sorted(calls) == [3, 12]
    monkeypatch.setattr(type(engine.model), "generate", generate)
    done = chat._row_budgets(5, [3, 12], "cpu")(torch.zeros((2, 8), dtype=torch.long), None)
    assert done.tolist() == [True, False]  # after 3 new tokens the first row is done, the second goes on
    each = [GenerationSettings(max_new_tokens=b) for b in budgets]
    base = [engine.compare(p, s)["base"] for p, s in zip(prompts, each, strict=True)]
    tuned = [engine.generate(p, s) for p, s in zip(prompts, each, strict=True)]
    assert engine.answer_both(prompts, GREEDY, budgets=budgets) == (base, tuned)  # through the engine too

    stop = threading.Event()
    calls = []

    def generate_then_stop(self, *args, **kwargs):
        calls.append(1)
        stop.set()  # Stop pressed while this batch runs
        return generate(self, *args, **kwargs)

    monkeypatch.setattr(chat, "reply_batches", lambda lengths, *a, **k: [[i] for i in range(len(lengths))])
    monkeypatch.setattr(type(engine.model), "generate", generate_then_stop)
    assert engine.answer_both(prompts, GREEDY, stop=stop) is None and len(calls) == 1
    assert engine.replay(load_records(SAMPLE_DATASET).records[:3], GREEDY, stop=stop) == [] and len(calls) == 1
    assert engine.answer_all(prompts, GREEDY, stop=None) is not None  # the engine is free again


def test_rows_that_have_ended_leave_the_batch_and_every_reply_stays_its_own(engine, adapter_a, monkeypatch):
    """The demo adapter's answers to the sample questions end (their end-of-turn token) after 5 to 40 tokens: looked
    at every 4 steps, the rows that have ended leave the batch and its cache (PEFT's mixed batches too, each row
    with its own adapter), the steps after compute fewer rows, and every reply is the one alone, each row with its
    own budget too. A stop between two stretches ends the call with no replies."""
    import threading

    from lora_core import chat

    engine.activate(adapter_a)
    engine.model.double()  # as above: replies that do not depend on how float32 rounds a near-tie
    prompts = [[{"role": "user", "content": row["instruction"]}] for row in sample_rows()[::5]]
    settings = GenerationSettings(max_new_tokens=48)
    base_alone = [engine.compare(p, settings)["base"] for p in prompts]
    adapter_alone = [engine.generate(p, settings) for p in prompts]  # streamed one by one, not through _decode
    budgets = [3 + 5 * (i % 7) for i in range(len(prompts))]  # 3 to 33 tokens: ends in many stretches
    each = [GenerationSettings(max_new_tokens=b) for b in budgets]
    tuned = [engine.generate(p, s) for p, s in zip(prompts, each, strict=True)]
    base = [engine.compare(p, s)["base"] for p, s in zip(prompts, each, strict=True)]
    generate = type(engine.model).generate
    rows = []  # each generate call's rows and new tokens

    def counted(self, *args, **kwargs):
        out = generate(self, *args, **kwargs)
        rows.append((kwargs["input_ids"].shape[0], out.sequences.shape[1] - kwargs["input_ids"].shape[1]))
        return out

    monkeypatch.setattr(type(engine.model), "generate", counted)
    monkeypatch.setattr(chat, "LEAVE_EVERY", 4)
    assert engine.answer_all(prompts, settings) == adapter_alone
    sizes = [n for n, _ in rows]
    assert sizes[0] == len(prompts) and sizes == sorted(sizes, reverse=True) and sizes[-1] < len(prompts) / 2, rows
    computed, longest = sum(n * steps for n, steps in rows), sum(steps for _, steps in rows)
    assert computed < 0.75 * len(prompts) * longest, rows  # what one stretch to the longest reply computes
    rows.clear()
    assert engine.answer_both(prompts, settings) == (base_alone, adapter_alone)
    assert rows[0][0] == 2 * len(prompts) and rows[-1][0] < rows[0][0], rows  # one batch of both, rows left it

    rows.clear()
    assert engine.answer_both(prompts, settings, budgets=budgets) == (base, tuned)
    assert len(rows) > 3 and rows[-1][0] < rows[0][0], rows

    monkeypatch.setattr(chat, "LEAVE_EVERY", 0)  # one stretch: as generate alone, the same replies
    rows.clear()
    assert engine.answer_all(prompts, settings) == adapter_alone and [n for n, _ in rows] == [len(prompts)]

    monkeypatch.setattr(chat, "LEAVE_EVERY", 4)
    stop = threading.Event()
    monkeypatch.setattr(type(engine.model), "generate", lambda self, *a, **k: stop.set() or generate(self, *a, **k))
    assert engine.answer_all(prompts, settings, stop=stop) is None


def test_a_beginning_the_prompts_share_is_computed_once_per_adapter(engine, adapter_a, monkeypatch):
    """Prompts that begin with the same system prompt (of many lengths after it, Chinese too): each batch computes
    that beginning once for each adapter in it (one row for the base, one for the adapter, with both in one batch),
    the rows' padding goes after it, and every reply is the one streamed alone. Prompts sharing less than
    ``SHARED_PREFIX_MIN`` tokens are computed whole, padded on the left."""
    from lora_core import chat

    engine.activate(adapter_a)
    engine.model.double()  # as above: replies that do not depend on how float32 rounds a near-tie
    system = {"role": "system", "content": "You are a careful assistant of the Lumen Bay harbour office."}
    prompts = [[system, *p] for p in mixed_prompts()]
    settings = GenerationSettings(max_new_tokens=12)
    base_alone = [engine.compare(p, settings)["base"] for p in prompts]
    adapter_alone = [engine.generate(p, settings) for p in prompts]
    assert chat._stretches(engine.model) == (True, True)
    prefilled = chat._prefilled
    made = []  # each batch's beginning, the rows' adapters, and the cache's shape when made

    def spied(model, begin, names):
        cache = prefilled(model, begin, names)  # generate extends it: its size now
        made.append((begin, names, cache.get_seq_length(), cache.layers[0].keys.shape[0]))
        return cache

    monkeypatch.setattr(chat, "_prefilled", spied)
    assert engine.answer_all(prompts, settings) == adapter_alone
    assert engine.answer_all(prompts, settings, None) == base_alone
    assert engine.answer_both(prompts, settings) == (base_alone, adapter_alone)
    ids = [prompt_ids(engine.tokenizer, p, None) for p in prompts]
    everyone = len(os.path.commonprefix(ids))
    assert len(made) >= 3 and everyone >= chat.SHARED_PREFIX_MIN
    for begin, names, columns, rows in made:
        assert len(begin) >= everyone and columns == len(begin) and rows == len(names)
        assert sum(p[: len(begin)] == begin for p in ids) >= rows / len(set(names))  # each of the batch's prompts'
    assert any(len(set(names)) == 2 for _, names, _, _ in made)  # base and adapter rows in one batch

    assert chat._shared_beginning(ids[:1]) == 0  # one prompt: nothing to share
    alike = [prompt_ids(engine.tokenizer, p, None) for p in mixed_prompts()[:4]]  # "<|im_start|>user\n" alike
    assert len(os.path.commonprefix(alike)) < chat.SHARED_PREFIX_MIN and chat._shared_beginning(alike) == 0
    made.clear()
    assert engine.answer_all(mixed_prompts(), settings) == [engine.generate(p, settings) for p in mixed_prompts()]
    assert made == []


def test_stretches_and_a_shared_beginning_only_where_generate_would_answer_the_same(engine, monkeypatch):
    """Decided before any batch, from what ``generate`` would do with the model: a plain key/value cache both;
    a sliding window's layers rows that leave but no shared beginning; a cache of the model's own (Mamba), a
    ``cache_implementation`` or a length setting counted per ``generate`` call in its generation config, neither
    (one stretch, the same replies); a forward without ``position_ids`` no shared beginning. A cache that turns out
    unable to drop rows after all is decoded again in one stretch, with the same replies."""
    from transformers import MambaConfig, MambaForCausalLM, MistralConfig, MistralForCausalLM
    from transformers.cache_utils import DynamicCache, QuantizedLayer

    from lora_core import chat

    engine.model.double()
    prompts = mixed_prompts()[:6]
    settings = GenerationSettings(max_new_tokens=20)
    alone = [engine.generate(p, settings) for p in prompts]
    steps = []
    generate = type(engine.model).generate

    def counted(self, *args, **kwargs):
        steps.append(kwargs["max_new_tokens"])
        return generate(self, *args, **kwargs)

    monkeypatch.setattr(type(engine.model), "generate", counted)
    monkeypatch.setattr(chat, "LEAVE_EVERY", 4)
    config = engine.model.get_base_model().generation_config if hasattr(engine.model, "get_base_model") else (
        engine.model.generation_config)  # fmt: skip
    for setting, value in [("cache_implementation", "dynamic"), ("min_new_tokens", 2), ("forced_eos_token_id", 0),
                           ("num_beams", 2), ("num_return_sequences", 2)]:  # fmt: skip
        kept = getattr(config, setting)
        monkeypatch.setattr(config, setting, value)
        assert chat._stretches(engine.model) == (False, False), setting
        if setting in ("cache_implementation", "min_new_tokens", "num_beams"):  # (the others change what is asked)
            steps.clear()
            replies = engine.answer_all(prompts, settings, None)
            assert steps == [20] and (setting == "num_beams" or replies == alone), setting
        monkeypatch.setattr(config, setting, kept)
    assert chat._stretches(engine.model) == (True, True)

    tiny = dict(vocab_size=64, hidden_size=32, num_hidden_layers=2)
    mamba = MambaForCausalLM(MambaConfig(**tiny, state_size=4))
    assert chat._stretches(mamba) == (False, False)
    sliding = MistralForCausalLM(MistralConfig(**tiny, intermediate_size=64, num_attention_heads=2,
                                               num_key_value_heads=1, sliding_window=8))  # fmt: skip
    assert chat._stretches(sliding) == (True, False)
    with torch.no_grad():  # the same Mamba answers in a batch as alone (no stretches, no shared beginning)
        rows = [[5] * 10 + [7, 9], [5] * 10 + [8], [5] * 10 + [11, 12, 13]]
        tokenizer = engine.tokenizer
        one = [chat._replies(mamba.double(), tokenizer, [r], [6], GREEDY)[0] for r in rows]
        assert chat._replies(mamba, tokenizer, rows, [6] * 3, GREEDY) == one

    class OwnCode(torch.nn.Module):  # a model of its own code, whose forward counts positions by itself
        generation_config = config

        def forward(self, input_ids, past_key_values=None, logits_to_keep=0):
            raise AssertionError("not reached")

    class NoCache(OwnCode):  # and one that keeps no cache at all
        def forward(self, input_ids, position_ids=None, logits_to_keep=0):
            raise AssertionError("not reached")

    for own in (OwnCode, NoCache):
        monkeypatch.setattr(own, "config", engine.model.config, raising=False)
        monkeypatch.setattr(own, "_supports_default_dynamic_cache", staticmethod(lambda: True), raising=False)
    assert chat._stretches(OwnCode()) == (True, False) and chat._stretches(NoCache()) == (False, False)

    assert chat._can_leave(DynamicCache()) and not chat._can_leave(object())

    class Quantized(QuantizedLayer):  # keeps quantized keys and values beside the ones it selects
        _quantize = _dequantize = None

    quantized = DynamicCache()
    quantized.layers.append(Quantized.__new__(Quantized))
    assert not chat._can_leave(quantized)
    monkeypatch.setattr(chat, "_stretches", lambda model: (True, False))
    monkeypatch.setattr(chat, "_can_leave", lambda cache: False)  # not foreseen: found after the first stretch
    steps.clear()
    assert engine.answer_all(prompts, settings, None) == alone
    assert steps == [4, 20]  # the first stretch, then the whole batch again in one


def test_a_dora_adapter_answers_both_in_two_passes(engine, base, home, monkeypatch):
    """PEFT cannot batch a DoRA adapter with the base: two passes, the same replies as one by one."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from lora_core import chat

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32),
                           LoraConfig(r=4, use_dora=True, target_modules=["q_proj", "v_proj"]))  # fmt: skip
    torch.manual_seed(0)
    for name, param in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.05)
    model.save_pretrained(home / "dora")
    engine.activate(home / "dora")
    engine.model.double()  # as above: replies that do not depend on how float32 rounds a near-tie
    assert not engine._batches_both(engine.active)
    mixed = []
    replies = chat._replies
    monkeypatch.setattr(chat, "_replies", lambda *a, **k: mixed.append(a[5]) or replies(*a, **k))
    prompts = mixed_prompts()[:3]
    both = engine.answer_both(prompts, GREEDY)
    assert mixed == [None, None]  # two passes, neither mixed
    alone = [engine.compare(p, GREEDY)["base"] for p in prompts], [engine.generate(p, GREEDY) for p in prompts]
    assert both == alone


def test_reply_batches_hold_every_prompt_once_by_length_within_their_bounds() -> None:
    from lora_core.chat import reply_batches

    lengths = [30, 5, 400, 12, 12, 90, 7000, 60, 1, 33] * 5
    batches = reply_batches(lengths, 64, rows=8, tokens=2048)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    order = [lengths[i] for b in batches for i in b]
    assert order == sorted(lengths)  # similar lengths together: little padding
    for batch in batches:
        longest = max(lengths[i] for i in batch)
        assert len(batch) <= 8 and (len(batch) * (longest + 64) <= 2048 or len(batch) == 1), batch
    assert all(len(b) == 1 for b in batches if lengths[b[0]] == 7000)  # too long for company: alone
    assert reply_batches([], 64) == [] and reply_batches([10] * 3, 64) == [[0, 1, 2]]
    assert [len(b) for b in reply_batches([10] * 70, 8)] == [35, 35]  # shared evenly, not 64 and 6


def test_replay_puts_dataset_rows_next_to_their_references(engine, adapter_a):
    engine.activate(adapter_a)
    records = load_records(SAMPLE_DATASET).records[:2]
    rows = engine.replay(records, GREEDY)
    assert [r["row"] for r in rows] == [1, 2]
    for row, record in zip(rows, records, strict=True):  # in batches, the answers of one by one
        asked = [{"role": m.role, "content": m.content} for m in record.messages[:-1]]
        assert {k: row[k] for k in ("base", "adapter")} == engine.compare(asked, GREEDY)
    assert rows[0]["reference"] == sample_rows()[0]["output"]
    assert all({"prompt", "base", "adapter"} <= set(r) for r in rows)


def test_the_chat_prompt_has_the_tokens_of_the_training_prompt(engine, adapter_a):
    engine.activate(adapter_a)
    row = load_records(SAMPLE_DATASET).records[30]
    messages = [{"role": m.role, "content": m.content} for m in row.messages]
    trained = encode_messages(engine.tokenizer, messages)
    chat_text = engine.prompt_text(messages[:-1])
    chat_ids = engine.tokenizer(chat_text, add_special_tokens=False)["input_ids"]
    n = len(chat_ids)
    assert trained.input_ids[:n] == chat_ids
    assert all(label == -100 for label in trained.labels[:n]) and trained.labels[n] != -100


def test_an_adapter_of_another_base_is_refused_naming_both(home, base, adapter_a):
    other = home / "Models" / "LLM" / "other"
    shutil.copytree(base, other)
    config = json.loads((other / "config.json").read_text())
    config["rms_norm_eps"] = 1e-5  # a different model with the same shapes
    (other / "config.json").write_text(json.dumps(config))
    chat = ChatEngine()
    chat.load_base(other)
    with pytest.raises(ModelError, match="trained on the base model demo, but the base model is other") as err:
        chat.activate(adapter_a)
    assert err.value.code == "adapter_base_mismatch"


def test_a_pickle_only_adapter_is_refused_without_unpickling(home, engine, adapter_a, monkeypatch):
    folder = home / "Models" / "LoRA" / "pickled"
    shutil.copytree(adapter_a, folder)
    (folder / "adapter_model.safetensors").unlink()
    torch.save({"x": torch.zeros(1)}, folder / "adapter_model.bin")
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("an adapter pickle was loaded"))
    with pytest.raises(AdapterError, match="pickle"):
        engine.activate(folder)


def test_merged_model_answers_like_base_plus_adapter(home, base, adapter_a):
    out = merge_adapter(adapter_a, home / "Models" / "LLM" / "merged")
    assert len({p.stat().st_mode & 0o777 for p in out.iterdir()}) == 1  # safetensors' 0600 made like the rest
    assert (out / "model.safetensors").is_file() and not list(out.glob("adapter_*"))
    merged, tuned = load_model(out), load_model(base, adapter_a)
    assert merged.dtype == torch.float32  # loaded for CPU inference; stored as bfloat16
    ids = torch.tensor([prompt_ids(_tok(base), QUESTION)])
    with torch.no_grad():
        a, b = merged(ids).logits, tuned(ids).logits
    assert torch.allclose(a, b, atol=0.1), (a - b).abs().max()
    assert (a.argmax(-1) == b.argmax(-1)).float().mean() > 0.9
    with pytest.raises(ChatError, match="not empty"):
        merge_adapter(adapter_a, out)


def _tok(base):
    from lora_core.models import load_tokenizer

    return load_tokenizer(base)


def quantized_copy(base, folder):
    """The demo model as a folder whose config says its weights are stored 4-bit by bitsandbytes."""
    if not folder.exists():
        shutil.copytree(base, folder)
        config = json.loads((folder / "config.json").read_text())
        config["quantization_config"] = {"quant_method": "bitsandbytes", "load_in_4bit": True}
        (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_merge_refuses_a_quantized_base(home, base, adapter_a):
    quantized = quantized_copy(base, home / "Models" / "LLM" / "quantized")
    with pytest.raises(ChatError, match="stored quantized"):
        merge_adapter(adapter_a, home / "out_q", base=quantized)
    assert not (home / "out_q").exists()


@pytest.mark.skipif(models.device_kind() == "cuda", reason="CUDA loads it")
def test_a_base_stored_quantized_by_bitsandbytes_is_refused_on_a_cpu_in_one_sentence(home, base, monkeypatch):
    """bitsandbytes' 4- and 8-bit weights need CUDA here (and bitsandbytes is hidden on a CPU): chat and training
    say so in one sentence, naming the folder, and write nothing."""
    monkeypatch.setenv("SIMPLE_LORA_HOME", str(home))
    quantized = quantized_copy(base, home / "Models" / "LLM" / "quantized")
    said = f"The base model in {quantized} is stored quantized by bitsandbytes, which needs a CUDA GPU"
    with pytest.raises(TrainingError, match=said) as refused:
        ChatEngine().load_base(quantized)
    assert refused.value.code == "quantized_base_needs_cuda"
    config = TrainConfig(base=str(quantized), data=str(SAMPLE_DATASET), task="quantized", max_steps=1, samples=0,
                         eval_rows=0)  # fmt: skip
    snap = TrainingJob(config).run()
    assert snap["state"] == State.FAILED and snap["error_code"] == "quantized_base_needs_cuda", snap["error"]
    assert said in snap["error"] and not list((home / "Models" / "LoRA").glob("quantized_*"))


def test_assistants_survive_a_restart(home):
    saved = assistants.save(
        assistants.Assistant(
            name="Harbour guide",
            base_model="demo",
            adapter="a_x",
            system_prompt="Answer like a sailor.",
            settings={"temperature": 0.0, "max_new_tokens": 32},
        )
    )
    assert saved.name == "Harbour guide"
    again = assistants.load_all()  # what a new process reads from disk
    assert again["Harbour guide"].system_prompt == "Answer like a sailor."
    assert again["Harbour guide"].settings["max_new_tokens"] == 32
    assistants.delete("Harbour guide")
    assert "Harbour guide" not in assistants.load_all()
    with pytest.raises(assistants.AssistantError):
        assistants.save(assistants.Assistant(name="  ", base_model="demo"))


def test_a_corrupt_assistant_store_is_kept_aside(home):
    path = assistants.store_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("[{broken")
    assert assistants.load_all() == {}
    assert path.with_suffix(".json.corrupt").read_text() == "[{broken"


def test_an_active_adapter_runs_merged_and_answers_as_the_unmerged_one(engine, adapter_a, monkeypatch):
    from peft.tuners.lora import LoraLayer

    engine.activate(adapter_a)
    name = adapter_a.rsplit("/", 1)[1]
    ids = torch.tensor([prompt_ids(engine.tokenizer, QUESTION)])
    with monkeypatch.context() as patch:  # PEFT's own LoRA path: base output + B(A(x)), nothing merged
        patch.setattr(engine._merge, "merge", lambda model, adapter: False)
        reply_unmerged = engine.generate(QUESTION, GREEDY)
        with torch.no_grad():
            unmerged = engine.model(ids).logits
        assert engine.merged is None
    reply_merged = engine.generate(QUESTION, GREEDY)
    assert engine.merged == name
    layers = [m for m in engine.model.modules() if isinstance(m, LoraLayer)]
    assert layers and all(m.merged for m in layers)  # every LoRA layer runs its base layer alone
    with torch.no_grad():
        merged = engine.model(ids).logits
    assert torch.allclose(merged, unmerged, atol=1e-4) and not torch.equal(merged, unmerged)
    assert reply_merged == reply_unmerged
