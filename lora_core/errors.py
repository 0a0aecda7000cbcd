"""Typed errors of the core, and the one registry of their codes.

Every error a user can cause or fix is raised as ``SomeError("code", **params)``: the ``code`` names it, the
``params`` locate it (row, field, file, ...), and ``ERRORS[code]`` is its English sentence with exactly those
params as placeholders. The CLI and the logs show that sentence; the UI translates the code with the same params
(``webui/i18n/``). The core never returns UI text. A test checks that every raise site passes exactly the params
of its code and that every code has a text in every language of the UI.

Placeholders may carry a format spec of our own: ``{size:bytes}`` shows a byte count as ``1.2 MB``; a list param
is shown as its items joined by ", ".
"""

from __future__ import annotations

import string
from typing import Any

ERRORS: dict[str, str] = {
    # --- dataset files (data.py) ---
    "no_rows": "File '{file}' contains no rows.",
    "bad_format_option": "Unknown dataset format '{format}' for '{file}'; expected {expected}.",
    "not_a_file": "'{file}' is a folder, not a dataset file.",
    "file_missing": "File '{file}' does not exist.",
    "too_large": "File '{file}' is {size:bytes}, larger than the {max_bytes:bytes} limit.",
    "unreadable": "File '{file}' cannot be read ({reason}).",
    "empty": "File '{file}' is empty.",
    "utf16": "File '{file}' is not UTF-8 but looks like UTF-16 (first bad byte at line {line}, column {column}); "
    "save it as UTF-8.",
    "not_utf8": "File '{file}' is not UTF-8: byte {byte} at line {line}, column {column} is not valid UTF-8 (save "
    "the file as UTF-8).",
    "binary": "File '{file}' is binary, not a text dataset (NUL byte at line {line}, column {column}).",
    "invalid_json": "File '{file}' is not valid {kind}: {reason} at line {line}, column {column}.",
    "json_constant": "File '{file}' contains {constant} at line {line}, column {column}, which is not valid JSON "
    "(use null or a number).",
    "json_value": "File '{file}' is not valid {kind}: {reason}.",
    "too_deep": "File '{file}' nests lists or objects too deeply to read, in the value at line {line}.",
    "top_level_object": "File '{file}' is a top-level object (keys: {keys}), expected a list of rows: a JSON array "
    "[{{...}}, {{...}}] or one JSON object per line.",
    "top_level_scalar": "File '{file}' holds a single {found} value, expected a list of rows.",
    "unknown_format": "File '{file}' has no row in a known format (expected {expected}); row 1 has keys {keys}.",
    "rows_not_objects": "File '{file}' has no row in a known format (expected {expected}); row 1 is a {found}.",
    "invalid_rows": "{invalid_rows} of {total_rows} rows in '{file}' are invalid; first: {first_message}",
    "no_valid_rows": "No row of '{file}' is usable ({invalid_rows} of {total_rows} rows are invalid).",
    # --- CSV, Parquet and Excel files (tables.py), column mappings (columns.py) ---
    "csv_ragged": "File '{file}' has {found} cells in the row at line {line}, but its header has {expected} columns.",
    "csv_invalid": "File '{file}' is not valid CSV at line {line}: {reason}.",
    "duplicate_column": "File '{file}' has two columns named '{column}' (columns {first} and {second}, line {line}).",
    "too_many_columns": "File '{file}' has {count} columns; at most {max} are read.",
    "parquet_unreadable": "File '{file}' cannot be read as Parquet (cut short or corrupt?): {detail}",
    "not_excel": "File '{file}' is not an Excel workbook (.xlsx): {detail}.",
    "excel_old": "File '{file}' is an old Excel .xls workbook; save it as .xlsx or CSV.",
    "excel_no_sheet": "File '{file}' has no sheet '{sheet}'; its sheets are {sheets}.",
    "excel_too_many_rows": "Sheet '{sheet}' of '{file}' has more than {max} rows; split it or save it as CSV.",
    "excel_ragged": "File '{file}' has cells beyond its {expected} named columns in sheet '{sheet}', row {line}.",
    "sheet_not_excel": "A sheet ('{sheet}') was chosen, but '{file}' is not an Excel workbook.",
    "unpacks_too_large": "File '{file}' unpacks to {size:bytes}, more than the {max_bytes:bytes} that is read.",
    "needs_columns": "File '{file}' is in none of the three formats (its columns: {columns}); map its columns to "
    "instruction and output, or to a conversation.",
    "columns_bad": "The column mapping part '{part}' is not key=column with a key among {expected}.",
    "columns_key_twice": "The column mapping gives '{key}' twice.",
    "columns_twice": "The column '{column}' is mapped twice, to {first} and to {second}.",
    "columns_mixed": "A column mapping takes a conversation column or instruction / input / output columns, not both.",
    "columns_no_output": "The column mapping leaves no output: map a column to output (or a conversation column).",
    "columns_no_instruction": "The column mapping has an output but no instruction: map a column to instruction.",
    "columns_missing": "File '{file}' has no column '{column}'; its columns are {columns}.",
    "column_unmappable": "The column name '{column}' holds ',', '=' or '|', which a column mapping cannot name; "
    "rename the column in the file.",
    "columns_format": "The column mapping '{columns}' makes rows of another format than the '{format}' chosen for "
    "'{file}'.",
    # --- prompts and masking ---
    "no_template": "This tokenizer has no chat template, but the adapter was trained with one.",
    "template_failed": "The tokenizer's chat template failed to render this conversation: {detail}",
    "template_not_prefix": "The chat template renders turn {turn} differently once later turns are added, so the "
    "reply cannot be told apart from the prompt; use a template whose earlier turns stay unchanged.",
    "template_token_prefix": "The tokens of the prompt are not a prefix of the tokens of prompt + reply with this "
    "tokenizer's chat template, so the reply cannot be masked exactly.",
    "no_eos": "The tokenizer has neither a chat template nor an EOS token.",
    # --- paths and names ---
    "path_outside": "The path {path} is outside {root}.",
    "bad_name": "The name '{name}' has no usable characters.",
    "not_offered": "'{value}' is not one of the models in Models/LLM/.",
    "out_not_model": "{path} exists and is not a model folder; choose an empty or new folder for the demo model.",
    # --- base models (models.py, targets.py) ---
    "model_missing": "The model folder {path} does not exist.",
    "model_no_config": "The folder {path} is not a model: it has no config.json.",
    "config_invalid": "The config.json in {folder} cannot be read or used: {detail}",
    "remote_code_required": "The model in {folder} (model_type {model_type}) needs code that transformers lacks; "
    "allow trust_remote_code to use it.",
    "model_pickle_only": "The model in {folder} has only pickle weights ({files}), which are never loaded; convert "
    "them to safetensors.",
    "model_no_weights": "The model in {folder} has no weights (*.safetensors).",
    "no_tokenizer": "The folder {path} has no tokenizer (tokenizer.json or tokenizer_config.json).",
    "tokenizer_failed": "The tokenizer in {path} cannot be loaded ({detail}).",
    "model_load_failed": "The base model in {path} cannot be loaded: {detail}",
    "model_exists": "A model named {name} is in Models/LLM/ already; choose another name.",
    "not_gguf": "'{file}' is not a GGUF file (it does not start with GGUF).",
    "gguf_unreadable": "'{file}' cannot be read as a GGUF model (cut short or corrupt?): {detail}",
    "gguf_unsupported": "'{file}' holds a {architecture} model, which transformers cannot read from GGUF; it reads "
    "{supported}.",
    "quantization_needs_cuda": "{quantization} quantization needs a CUDA GPU; on this CPU the model trains in "
    "float32.",
    "quantized_base_needs_cuda": "The base model in {path} is stored quantized by bitsandbytes, which needs a CUDA "
    "GPU; on this CPU use its full-precision version.",
    "unknown_preset": "Unknown target preset '{preset}'; choose {valid}.",
    "no_linear_layers": "The {model_type} model has no linear layers for LoRA to adapt.",
    "no_target": "No target modules were given. This model's linear layers are: {valid}.",
    "unknown_target": "Unknown target modules: {unknown}. This model's linear layers are: {valid}.",
    # --- training ---
    "setting_range": "The setting {setting} must be between {low} and {high}; it is {value}.",
    "setting_choice": "The setting {setting} must be one of {choices}; it is '{value}'.",
    "setting_not_number": "The setting {setting} needs a finite number (a whole one where it counts things); it is "
    "'{value}'.",
    "nothing_to_evaluate": "'{file}' has no valid row to evaluate on.",
    "bad_data_name": "A dataset's name has at most {max} characters.",
    "bad_mix_entry": "Each dataset of a mix is an object with a path and some of the keys {keys}.",
    "too_many_datasets": "{count} datasets were chosen; a run mixes at most {max}.",
    "mix_twice": "{name} is in the mix already (as {first}); give it a weight instead of adding it twice.",
    "bad_sample_rows": "Sample rows '{value}' is not a list of up to {max} row numbers like 3, 7.",
    "sample_row_missing": "Sample row {row} is not a usable row of '{file}'.",
    "no_length": "Set epochs or max steps above 0 (epochs = {epochs}, max steps = {max_steps}).",
    "bad_task_name": "A task name needs 1 to {max} characters.",
    "busy": "A training is already running: {task}.",
    "busy_other": "Another user's training is running on this machine; start yours when it has ended.",
    "not_enough_memory": "This training would need about {needed:bytes} of memory on the {device}, and "
    "{available:bytes} is free: lower the rank, the batch size or the max length.",
    "no_checkpoint": "There is no checkpoint of task {task} to resume.",
    "needs_pairs": "Method {method} learns from preference pairs, and {file} holds instruction rows: give a file of "
    "pairs ('prompt', 'chosen', 'rejected'), or train with method sft.",
    "pairs_need_method": "{file} holds preference pairs: train it with method dpo or orpo.",
    "nothing_to_train": "No example has anything left to train at max length {max_length}.",
    "out_of_memory": "Out of memory: lower the batch size or the max length, or enable gradient checkpointing.",
    "disk_full": "The disk is full; free some space and train again.",
    "crashed": "The training stopped on an unexpected error: {detail}",
    # --- adapter folders (adapters.py, manifest.py) ---
    "adapter_exists": "The adapter folder {name} already exists.",
    "adapter_missing": "There is no adapter named {name}.",
    "adapter_no_config": "{name} has no adapter_config.json.",
    "adapter_bad_config": "{name}: adapter_config.json is not a readable PEFT adapter config.",
    "adapter_no_weights": "{name} has no adapter_model.safetensors.",
    "adapter_pickle_only": "{name} has only pickle weights (adapter_model.bin); only safetensors are loaded.",
    "adapter_corrupt": "{name}: adapter_model.safetensors is truncated or corrupt.",
    "adapter_empty": "{name}: the adapter weights are empty.",
    "adapter_not_finite": "{name}: adapter weight {key} has NaN or infinite values.",
    "adapter_full_model": "{name} holds a full model ({file}).",
    "adapter_mismatch": "{name}: saved weight {key} differs from the trained one.",
    "adapter_bad_meta": "{name}: training_meta.json is unreadable or not a manifest.",
    "adapter_bad_eval": "{name}: eval.json is unreadable or not an evaluation.",
    "adapter_base_mismatch": "The adapter {adapter} was trained on the base model {trained_on}, but the base model "
    "is {base}.",
    "adapter_base_unknown": "The base model of {name} is not in Models/LLM/; load its base model in the Chat tab "
    "first.",
    # --- chat, merge and export ---
    "adapter_does_not_fit": "The adapter {adapter} does not fit the base model {base}: {detail}",
    "no_base_loaded": "No base model is loaded for chat.",
    "no_active_adapter": "Activate an adapter to compare it with the base model.",
    "compare_needs_adapter": "--compare needs --adapter: it answers with the base model and with the adapter.",
    "busy_training": "The GPU is busy training {task}; chat can load a model when it ends.",
    "chat_busy": "The chat model is busy; try again in a moment.",
    "adapter_not_loaded": "The adapter {name} is not loaded on this chat model.",
    "adapter_deleted": "The adapter {name} was deleted; this chat now answers with the base model alone.",
    "message_too_long": "The message has {chars} characters; the most a message may have is {max}.",
    "prompt_too_long": "The message needs {tokens} tokens, more than the {limit} the model can read while leaving "
    "room for its reply.",
    "bad_generation_setting": "The generation setting {setting} = {value} is out of range.",
    "merge_quantized_base": "The base model {base} is stored quantized; merging needs its full-precision weights.",
    "merge_out_exists": "The folder {path} is not empty; choose a new folder.",
    # --- stored uploads and merged models (storage.py) ---
    "uploads_quota": "Stored datasets take {used:bytes}; adding {adding:bytes} would pass the {quota:bytes} quota. "
    "Delete some in the Dataset tab first.",
    "merged_quota": "Merged models take {used:bytes}; another of about {adding:bytes} would pass the {quota:bytes} "
    "quota. Delete one in the Models tab first.",
    "no_such_upload": "There is no stored dataset named {name}.",
    "no_such_merged": "There is no merged model named {name}.",
    # --- the Hub (hub.py) ---
    "hub_bad_repo": "'{repo}' is not a repository id such as owner/name.",
    "hub_not_found": "There is no model repository {repo} (or no such revision) on the Hub.",
    "hub_unreachable": "The Hub cannot be reached for {repo}: {detail}",
    "hub_no_safetensors": "{repo} has no safetensors weights (it has {files}); pickle weights are never fetched.",
    "hub_gated": "{repo} is gated: accept its terms on the Hub and give an access token with read access.",
    "hub_no_config": "{repo} has no config.json: it is not a model repository transformers can load.",
    "hub_no_space": "{repo} needs {needed:bytes} of disk and {free:bytes} is free.",
    "hub_interrupted": "The download of {repo} broke off at {file} ({detail}); start it again to resume.",
    "hub_push_token": "Pushing to {repo} needs an access token with write access.",
    "hub_push_failed": "The push to {repo} failed: {detail}",
    # --- datasets from the Hub (hub_datasets.py) ---
    "hub_dataset_not_found": "There is no dataset repository {repo} (or no such revision) on the Hub.",
    "hub_dataset_no_config": "{repo} has no config '{config}'; its configs: {configs}.",
    "hub_no_split": "{repo} has no data files for split '{split}' (config '{config}'); its data files: {files}.",
    "hub_dataset_too_large": "{repo} ({split}) is {size:bytes}, larger than the {max_bytes:bytes} limit.",
    # --- adapters as zip files (bundles.py) ---
    "not_a_zip": "'{file}' is not a zip file.",
    "zip_link": "'{file}' holds '{entry}', which is a link or a device, not a file; nothing was unpacked.",
    "zip_path": "'{file}' holds '{entry}', whose path leaves the adapter folder; nothing was unpacked.",
    "zip_too_many": "'{file}' holds {count} entries; an adapter has at most {max}.",
    "zip_too_large": "'{file}' unpacks to more than {max:bytes}; nothing was kept.",
    "zip_not_adapter": "'{file}' holds no usable adapter: {reason}",
    "merged_too_large": "The merged model {name} takes {size:bytes}; only a model of at most {max:bytes} can be "
    "downloaded or pushed from the page.",
    # --- saved assistants ---
    "assistant_bad_name": "An assistant needs a name of 1 to {max} characters.",
    "assistant_no_base": "An assistant needs a base model.",
    "assistant_missing": "There is no assistant named {name}.",
    # --- saved training settings (saved_settings.py) ---
    "saved_settings_bad_name": "Saved settings need a name of 1 to {max} characters.",
    "saved_settings_too_many": "At most {max} sets of settings can be saved; delete one first.",
    "saved_settings_missing": "There are no saved settings named {name}.",
    "saved_settings_bad_targets": "Saved target modules must be a preset's name or a comma list of module names "
    "(at most {max} characters).",
}


def placeholders(template: str) -> set[str]:
    """The param names a template uses (``{size:bytes}`` counts as ``size``)."""
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def human_size(size: int) -> str:
    """``812 bytes``, ``4.0 KB``, ``1.2 MB``, ``27.9 GB``."""
    if size < 1024:
        return f"{size} bytes"
    for unit, scale in (("KB", 1024), ("MB", 1024**2), ("GB", 1024**3)):
        if size < scale * 1024 or unit == "GB":
            return f"{size / scale:.1f} {unit}"
    return f"{size} bytes"  # unreachable


class _Formatter(string.Formatter):
    def format_field(self, value: Any, format_spec: str) -> str:
        if format_spec == "bytes":
            return human_size(int(value))
        if isinstance(value, list | tuple):
            return ", ".join(str(v) for v in value)
        return super().format_field(value, format_spec)


def render(template: str, params: dict[str, Any]) -> str:
    """``template`` with ``params`` (lists joined, ``:bytes`` sizes made readable)."""
    return _Formatter().format(template, **params)


class SimpleLoraError(Exception):
    """Base of all errors a user can cause or fix. ``str(err)`` is one readable English sentence."""

    code = "error"

    def __init__(self, code: str | None = None, /, **params: Any) -> None:
        code = code or self.code
        template = ERRORS.get(code)
        if template is None:
            raise TypeError(f"unknown error code {code!r}: add it to lora_core.errors.ERRORS")
        if set(params) != placeholders(template):
            raise TypeError(f"error {code!r} takes params {sorted(placeholders(template))}, got {sorted(params)}")
        self.code = code
        self.params = params
        super().__init__(render(template, params))

    @property
    def message(self) -> str:
        return str(self.args[0])

    def __reduce__(self) -> tuple:  # copy and pickle rebuild it from its code and params, not its sentence
        return _rebuild, (type(self), self.code, self.params)


def _rebuild(cls: type, code: str, params: dict[str, Any]) -> SimpleLoraError:
    return cls(code, **params)


class DatasetError(SimpleLoraError):
    """A dataset file cannot be read or used as a whole (not JSON, empty, wrong shape, invalid rows...)."""


class TemplateError(SimpleLoraError):
    """A tokenizer's chat template cannot be used for response-only masking."""


class PathError(SimpleLoraError):
    """A name or path would leave its root folder, or does not exist where it must."""


class ModelError(SimpleLoraError):
    """A base model folder cannot be used."""


class AdapterError(ModelError):
    """An adapter folder cannot be used (missing, truncated, foreign, for another base)."""


class ChatError(ModelError):
    """Chat cannot answer as asked (no model loaded, busy, a setting out of range)."""


class TrainingError(SimpleLoraError):
    """A training cannot start or could not finish."""


class HubError(SimpleLoraError):
    """A model cannot be fetched from the Hub as asked."""


class BundleError(SimpleLoraError):
    """An uploaded adapter zip cannot be taken in."""


class StorageError(SimpleLoraError):
    """Stored uploads or merged models would pass their quota."""


class AssistantError(SimpleLoraError):
    """A saved assistant cannot be saved or found."""


def plain_params(params: dict[str, Any]) -> dict[str, Any]:
    """An error's params as JSON-able text and numbers (for a run record, from which it is translated later)."""

    def plain(value: Any) -> Any:
        if isinstance(value, str | int | float | bool):
            return value
        if isinstance(value, list | tuple | set):
            return ", ".join(str(v) for v in value)
        return str(value)

    return {key: plain(value) for key, value in params.items()}


def unexpected(exc: BaseException) -> TrainingError:
    """An error nobody raised on purpose, as the error a user reads: out of memory and a full disk get their own
    advice; anything else is named by its type and message."""
    import errno

    if "out of memory" in str(exc).lower() or type(exc).__name__ == "OutOfMemoryError":
        return TrainingError("out_of_memory")
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return TrainingError("disk_full")
    return TrainingError("crashed", detail=f"{type(exc).__name__}: {exc}")
