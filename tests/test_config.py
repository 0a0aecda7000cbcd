"""TrainConfig is the one source of the training settings: the CLI flags, the Train tab's form, its API parameters
and the demo settings are generated from or checked against its fields."""

from __future__ import annotations

import inspect
from dataclasses import fields

from lora_core.cli import build_parser
from lora_core.config import TrainConfig, settings_where
from lora_core.demo import DEMO_TRAINING
from webui import train_tab
from webui.i18n import LANGS, TEXT

FIELDS = [f.name for f in fields(TrainConfig)]
# on_start's parameters before the settings: the language, the dataset, the base, the task and the targets.
FIXED = ["lang", "loaded", "base_name", "task", "preset", "targets"]


def test_every_field_says_where_it_is_set_and_has_help() -> None:
    for f in fields(TrainConfig):
        assert f.metadata["where"] in ("run", "form", "targets", "cli"), f.name
        assert f.metadata["help"].strip(), f.name
    assert sorted(sum((settings_where(w) for w in ("run", "form", "targets", "cli")), ())) == sorted(FIELDS)


def test_the_cli_has_a_train_flag_for_every_field() -> None:
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    dests = {action.dest for action in train._actions} - {"help", "limit", "weight"}
    assert dests == set(FIELDS) - {"datasets"}  # several datasets: --data again, each with its own options
    defaults = TrainConfig(base="", data="", task="")
    args = train.parse_args(["--base", "b", "--data", "d", "--task", "t"])
    own = ("base", "data", "task", "columns", "sheet", "datasets")
    assert {name: getattr(args, name) for name in FIELDS if name not in own} == {
        name: getattr(defaults, name) for name in FIELDS if name not in own
    }
    assert args.sources == [{"path": "d"}]


def test_the_train_tab_and_its_api_take_every_form_setting_in_order() -> None:
    assert settings_where("form") == train_tab.HYPER
    assert list(inspect.signature(train_tab.on_start).parameters) == [*FIXED, *train_tab.HYPER, "mix"]  # mix: state
    for name in train_tab.HYPER:  # every setting has a label in every language
        assert set(TEXT[name]) == set(LANGS), name


def test_the_demo_settings_are_settings() -> None:
    assert set(DEMO_TRAINING) <= set(FIELDS)
    values = train_tab.demo_settings()
    assert len(values) == len(train_tab.HYPER) + 1  # the form, then the targets preset
    named = dict(zip(train_tab.HYPER, values, strict=False))
    assert all(named[k] == v for k, v in DEMO_TRAINING.items() if k in named)
