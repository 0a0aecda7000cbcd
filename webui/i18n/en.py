"""English texts of the UI, by key (see webui/i18n/__init__.py)."""

NAME = "English"

TEXT: dict[str, str] = {
    # header
    "title": "# Simple LoRA",
    "subtitle": (
        "Fine-tune a language model with LoRA in your browser: upload a dataset, train, chat with the adapter."
    ),
    "language": "Language / 语言",
    "error_title": "Error",
    "warning_title": "Warning",
    "info_title": "Note",
    # dataset tab
    "tab_dataset": "1. Dataset",
    "dataset_intro": (
        "Upload an instruction dataset: Alpaca, ShareGPT or OpenAI messages as JSON or JSONL, or any table (CSV, TSV, "
        "Parquet, Excel .xlsx, JSON with other keys) whose columns you map below. Every row is checked, and you see "
        "exactly which tokens will be trained."
    ),
    "upload": "Dataset file (.json / .jsonl / .csv / .tsv / .parquet / .xlsx)",
    "sheet": "Sheet",
    "needs_mapping": (
        "**{name}**: {rows} rows in columns that are none of the three formats ({columns}). The mapping below is "
        "guessed from their names: check it, then press **Use these columns**."
    ),
    "needs_mapping_unguessed": (
        "**{name}**: {rows} rows in columns that are none of the three formats ({columns}). Choose below which "
        "column holds the instruction and which the output (or the conversation), then press **Use these columns**."
    ),
    "mapped_columns": "Columns used: {columns}.",
    "mix_format": "mixed",
    "columns_intro": (
        "### Columns\nWhich column holds what. Instruction and output are needed (input and system are optional), or "
        "one conversation column holding a list of turns with a role and a text; role names other than user / human "
        "and assistant / gpt are listed below, separated by |."
    ),
    "column_values": "Columns and their first values",
    "col_column": "column",
    "col_values": "first values",
    "map_instruction": "Instruction",
    "map_input": "Input (optional)",
    "map_output": "Output",
    "map_system": "System (optional)",
    "map_conversation": "Conversation (instead of instruction / output)",
    "map_role": "A turn's role key (empty: role or from)",
    "map_content": "A turn's text key (empty: content or value)",
    "map_user": "Role names meaning user",
    "map_assistant": "Role names meaning assistant",
    "apply_columns": "Use these columns",
    "hub_data_header": "A dataset from the Hugging Face Hub",
    "hub_data_intro": (
        "A dataset id such as owner/name, with its configuration (empty: its default) and split. Its files are "
        "fetched into your stored datasets, then read like an upload. An access token, when needed, is the server's "
        "HF_TOKEN."
    ),
    "hub_dataset": "Dataset id",
    "hub_config": "Configuration",
    "hub_split": "Split",
    "fetch_dataset": "Fetch",
    "fetching": "Fetching the dataset",
    "mix_header": "Several datasets in one training",
    "mix_intro": (
        "Add the dataset shown above to the mix, with a row limit (its first valid rows; 0: all) and a weight (2: "
        "each row twice; 0.5: a random half). Then load another dataset and add it too. While the mix has datasets, "
        "the Train tab trains on all of them."
    ),
    "mix_limit": "Row limit (0: all)",
    "mix_weight": "Weight",
    "mix_add": "Add to the mix",
    "mix_clear": "Clear the mix",
    "mix_table": "The mix",
    "col_mix_dataset": "dataset",
    "col_mix_valid": "valid rows",
    "col_limit": "limit",
    "col_weight": "weight",
    "col_used": "rows used",
    "mix_empty": "The mix is empty: the Train tab trains on the dataset shown above.",
    "mix_summary": "The Train tab will train on the mix: {rows} rows from {n} of your datasets.",
    "mix_needs_dataset": "Load a dataset whose rows are all valid above first, then add it to the mix.",
    "mix_full": "A mix holds at most {max} datasets.",
    "mix_bad_numbers": "The row limit must be a whole number from 0 to {max_limit}, the weight above 0 and at most "
    "{max_weight}.",
    "format": "Format",
    "use_sample": "Use the bundled sample dataset",
    "report": "Validation",
    "problems": "Problems by row",
    "preview": "First rows",
    "col_row": "row",
    "col_field": "field",
    "col_problem": "problem",
    "col_role": "role",
    "col_text": "text",
    "role_user": "user",
    "role_assistant": "assistant",
    "role_system": "system",
    "tokens_header": "### Tokens for a base model",
    "base_model": "Base model (Models/LLM/)",
    "refresh": "Refresh",
    "max_length": "Max length (tokens)",
    "analyze": "Show tokens",
    "highlight": "Rendered examples: trained tokens highlighted",
    "trained": "trained",
    "masked": "prompt (not trained)",
    "histogram": "Token lengths",
    "hist_x": "tokens per example",
    "hist_y": "examples",
    "hist_limit": "max length",
    "hist_limit_beyond": "max length {n}: longer than every example",
    "no_dataset": "Upload a dataset first.",
    "no_valid_rows": "'{name}' has no valid row to show; fix the rows listed above first.",
    "bad_max_length": "Max length must be a whole number of at least {min} tokens.",
    "dataset_refused": "This file cannot be used. Fix it, or upload another file.",
    "no_base": "No base model in Models/LLM/ yet. Put a model folder there, then press Refresh.",
    # report sentences
    "report_ok": "**{name}**: {fmt} format, {rows} rows, all valid. Next: choose a base model and open the Train tab.",
    "report_bad": (
        "**{name}**: {fmt} format, {rows} rows, **{invalid} invalid**, {valid} valid. Fix the rows listed below, or "
        "train with “skip invalid rows” to use only the valid rows."
    ),
    "report_none": "**{name}**: {fmt} format, {rows} rows, **none of them valid**. Fix the rows listed below.",
    "style_chat_template": "the model's own chat template",
    "style_alpaca": "built-in Alpaca template (the model has no chat template)",
    "token_stats": (
        "{total} examples, {tokens} tokens in all ({trained} trained). With max length {max_length}: {truncated} "
        "truncated (oldest prompt tokens cut), {dropped} dropped (nothing left to train). Prompt format: {style}."
    ),
    # train tab
    "tab_train": "2. Train",
    "train_intro": (
        "Pick a base model, check the detected LoRA target modules, set the hyper-parameters and press Start. "
        "Training runs in the background: you can close this page and come back."
    ),
    "task_name": "Task name",
    "target_preset": "Target preset",
    "targets": "LoRA target modules",
    "targets_info": "Detected for this model; add or remove layers to override (none chosen: the preset's).",
    "model_info": (
        "**{model_type}** on {device}, {quant}. LoRA on `{targets}`: {reason}. Trainable: {lora} of {total} "
        "parameters ({pct}%). Memory needed: about {memory}."
    ),
    "quant_name_none_cpu": "float32, no quantization",
    "quant_name_none_cuda": "16-bit, no quantization",
    "quant_name_4bit": "4-bit NF4 (QLoRA)",
    "quant_name_8bit": "8-bit",
    "reason_all-linear": "all {n} kinds of linear layer, except the LM head",
    "reason_peft": "PEFT's own target modules for the {model_type} architecture",
    "reason_remote-code": "the known attention projection of the {model_type} architecture",
    "reason_scan": "no known target list fits {model_type}, so the attention layers were found by name",
    "reason_default": "no attention layer was recognised, so this is the LLaMA default",
    "reason_default_missing": (
        "no attention layer was recognised and the LLaMA default is missing too: pick the targets from the list"
    ),
    "reason_user": "chosen by you",
    "estimate_needs_numbers": (
        "Set the LoRA rank, the batch size and the max length (at least 8) to see the trainable parameters and the "
        "memory needed."
    ),
    "hyper": "Hyper-parameters",
    "epochs": "Epochs",
    "max_steps": "Max steps (0 = by epochs)",
    "learning_rate": "Learning rate",
    "scheduler": "LR schedule",
    "warmup_ratio": "Warm-up ratio",
    "rank": "LoRA rank r",
    "alpha": "LoRA alpha",
    "dropout": "LoRA dropout",
    "batch_size": "Batch size",
    "grad_accum": "Gradient accumulation",
    "val_split": "Validation split",
    "seed": "Seed",
    "quantization": "Quantization",
    "quant_cpu": "No CUDA GPU here: the model trains in float32 (4-/8-bit need a GPU).",
    "quant_gpu": "auto = 4-bit NF4 (QLoRA) on this GPU.",
    "gradient_checkpointing": "Gradient checkpointing (less memory, slower)",
    "skip_invalid": "Skip invalid rows",
    "samples": "Samples during the run (0 = none)",
    "samples_info": "times the adapter answers the sample rows while it trains",
    "sample_rows": "Sample rows (up to 3, e.g. 3, 7)",
    "sample_rows_info": "empty: the first held-out row, else the first row",
    "eval_rows": "Evaluation rows after the run (0 = none)",
    "eval_rows_info": "rows answered by base and adapter for the evaluation card",
    "samples_table": "Samples during training: the adapter's answer beside the reference",
    "demo_settings": "Use demo settings",
    "use_last": "Use the last dataset again: {name}",
    "no_last_dataset": "There is no earlier dataset to use again; upload one.",
    "saved_settings": "Saved settings",
    "settings_name": "Name to save the settings above under",
    "save_settings": "Save settings",
    "settings_pick": "Load saved settings",
    "settings_saved": "Settings saved as **{name}**.",
    "settings_loaded": "Settings **{name}** loaded into the form.",
    "settings_deleted": "Settings **{name}** deleted.",
    "start": "Start training",
    "stop_save": "Stop and save",
    "stop_discard": "Stop and discard",
    "confirm_discard": "Stop the training and throw away what it has learnt so far?",
    "discard_cancelled": "The training goes on.",
    "loss_plot": "Loss: blue line = training, red line = validation (when a validation split is set)",
    "history": "Training runs",
    "plot_step": "step",
    "col_run": "run",
    "col_state": "state",
    "col_step": "step",
    "col_loss": "last loss",
    "col_started": "started",
    "col_dataset": "dataset",
    "col_adapter": "adapter / error",
    "started": "Training **{task}** started.",
    "nothing_running": "No training is running.",
    "stopping_save": "Stopping after this step; the adapter will be saved and marked stopped.",
    "stopping_discard": "Stopping after this step; nothing will be saved.",
    "no_training": "No training yet in this session of the app.",
    "progress": "**{task}**: {state} · step {step} / {total} · epoch {epoch}",
    "run_dataset": "Dataset: **{name}**",
    "run_dataset_detail": "Dataset: **{name}**, {rows} rows, sha256 `{sha}…`",
    "speed": "ETA {eta} · {tps} tokens/s",
    "eval_before_after": "Eval loss: base {before} → adapter {after}",
    "adapter_saved": (
        "Adapter saved in `{path}`. It is already listed in the Models tab: activate it there, then chat."
    ),
    "discarded": "Stopped; nothing was saved.",
    "nothing_saved": "nothing saved",
    "took": "took {time}",
    "evaluating": "Evaluating the adapter: base and adapter answer the dataset rows and the general prompts…",
    "eval_done": (
        "Evaluation ({kind}, {rows} rows): exact match base {base_em} → adapter {tuned_em}, ROUGE-L {base_rl} → "
        "{tuned_rl}; general prompts: {changed} of {total} answers changed, right {base_right} → {tuned_right}."
    ),
    "eval_see_card": "The full card is in the Models tab.",
    "eval_failed": "The adapter is saved, but its evaluation failed: {error}",
    "eval_stopped": "The adapter is saved; its evaluation was stopped.",
    "rows_held_out": "held-out rows",
    "rows_trained": "trained rows: no validation split, so these rows were trained on",
    "rows_other": "rows of another dataset",
    "card_title": "Evaluation card",
    "card_choose": "Choose an adapter above to see its evaluation card.",
    "card_none": "**{name}** has no evaluation yet: press Evaluate (on its own dataset, or upload one).",
    "card_header": "**{name}** on **{dataset}**, evaluated {when}.",
    "card_scores": "Scores: base vs adapter",
    "card_curve": "Loss of its training (blue: training, red: validation)",
    "card_rows": "Best and worst rows",
    "card_probe": "Forgetting probe: general prompts (similarity 1 = the adapter answers like the base)",
    "card_data": "Dataset to evaluate on (empty: the adapter's own)",
    "card_rows_n": "Rows to evaluate",
    "card_evaluate": "Evaluate",
    "card_export": "Export card (Markdown + PNG)",
    "card_files": "Card files",
    "card_needs_data": "The dataset **{name}** was trained on is not here any more: upload one to evaluate on.",
    "card_best": "best",
    "card_worst": "worst",
    "compare_title": "Runs side by side",
    "compare_pick": "Adapters to compare (2 or more)",
    "compare_choose": "Choose 2 to {max} adapters to compare.",
    "compare_no_manifest": "**{name}** has no training record (training_meta.json) to compare.",
    "compare_diff": "Settings that differ",
    "compare_curves": "Training loss, one line per adapter, numbered as in the tables",
    "compare_scores": "Scores (the adapter's, on its evaluation rows)",
    "col_score": "score",
    "col_which": "best / worst",
    "col_rouge": "ROUGE-L",
    "col_similarity": "similarity",
    "col_base_right": "base right",
    "col_adapter_right": "adapter right",
    "col_rows_kind": "rows",
    "col_probe_changed": "general prompts changed",
    "col_probe_right": "general prompts right: base → adapter",
    "col_line": "#",
    "col_setting": "setting",
    "score_exact_match": "exact match",
    "score_rouge_l": "ROUGE-L",
    "score_token_f1": "token F1",
    "score_eval_loss": "eval loss",
    "setting_not_number": "“{label}” needs a number (a whole number where it counts something); it is “{value}”.",
    "setting_range": "“{label}” must be between {low} and {high}; it is {value}.",
    "setting_choice": "“{label}” must be one of {choices}; it is “{value}”.",
    "failed": "Training failed: {error}",
    "state_queued": "queued",
    "state_loading": "loading",
    "state_running": "running",
    "state_stopping": "stopping",
    "state_completed": "completed",
    "state_stopped": "stopped",
    "state_failed": "failed",
    "state_interrupted": "interrupted",
    # models tab
    "tab_models": "3. Models",
    "models_intro": (
        "Every folder in Models/LoRA/ is listed, valid or not (with the reason). Activate an adapter to use it in "
        "chat; its base model is loaded for you. A new training is listed as soon as it ends."
    ),
    "scan": "Scan",
    "scanned": "Models/LoRA/: {valid} usable, {invalid} invalid (folders: {n}).",
    "choose_adapter": "Choose an adapter in the list first.",
    "need_prompt": "Type a prompt first.",
    "adapters": "Adapters in Models/LoRA/",
    "adapter": "Adapter",
    "activate": "Activate",
    "deactivate": "Deactivate (pure base)",
    "quick_test": "Quick test: ask the chosen adapter",
    "quick_test_hint": "e.g. a question from your dataset; Enter sends (the adapter is activated first)",
    "send": "Send",
    "reply": "Reply",
    "hub_header": "Get a base model: from the Hugging Face Hub, or a GGUF file",
    "hub_need_repo": "Type a repository first, such as owner/name.",
    "hub_intro": (
        "Only safetensors weights, configs, tokenizer files and chat templates are fetched (never pickle files), into "
        "Models/LLM/. List the files first to see the size. A token is needed for gated models; it is used for this "
        "download only and never stored. An interrupted download resumes when started again."
    ),
    "hub_repo": "Repository",
    "hub_repo_hint": "owner/name, e.g. HuggingFaceTB/SmolLM2-135M-Instruct",
    "hub_revision": "Revision (empty: main)",
    "hub_name": "Folder name (empty: the repository's)",
    "hub_token": "Access token (gated models only)",
    "hub_list": "List files",
    "hub_download": "Download",
    "hub_files": "Files that would be fetched",
    "hub_plan": "{repo}: {n} files, {size} in all.",
    "hub_downloading": "Downloading",
    "hub_downloaded": "Downloaded {name}: it is a base model now (Refresh the lists in the other tabs).",
    "col_file": "file",
    "transfer_header": "Take an adapter home, or bring one in",
    "transfer_intro": (
        "Download the adapter chosen above as a .zip of exactly its folder, or upload a .zip of an adapter (one of "
        "ours, or a PEFT adapter from elsewhere): it is checked before it is listed. Push sends exactly its files to "
        "a Hub repository (private unless unticked) with a model card: base model, dataset and its sha256, rows, "
        "settings, loss curve, eval loss before and after, and how to load it. The token is used for that push only."
    ),
    "download_zip": "Download as .zip",
    "download_file": "Adapter .zip",
    "upload_zip": "Upload an adapter (.zip)",
    "choose_zip": "Choose a .zip file first.",
    "adapter_uploaded": "Adapter {name} added; it is listed above.",
    "upload_gguf": "Import a GGUF model (.gguf, as Ollama and LM Studio keep them)",
    "choose_gguf": "Choose a .gguf file first.",
    "gguf_imported": "Imported {name}: it is a base model now (Refresh the lists in the other tabs).",
    "push_repo": "Push to the Hub: repository",
    "push_token": "Access token (write)",
    "push_private": "Private",
    "push": "Push",
    "pushed": "Pushed to {repo} with a model card: {url}",
    "merge_header": "Merge and export",
    "merge_intro": (
        "Merge the adapter into a 16-bit copy of its base model and save it as a new model folder in Models/LLM/ "
        "(usable without PEFT)."
    ),
    "merge_name": "New model folder name",
    "merge_name_hint": "empty: <adapter>-merged",
    "merge": "Merge",
    "merged": (
        "Merged model saved in `{path}`. It is a base model now: choose **{name}** as the base model in the other "
        "tabs."
    ),
    "uploads_header": "Stored datasets",
    "uploads_intro": "Every dataset you uploaded is kept here (under a name the app chooses) until you delete it.",
    "uploads_list": "Stored dataset",
    "merged_header": "Merged models",
    "merged_intro": "Models made with Merge above. One of at most 2 GB can be downloaded as a .zip or pushed to the "
    "Hub (private by default). Deleting one removes its folder for good.",
    "merged_list": "Merged model",
    "confirm_stored_box": "Yes, delete it for good",
    "choose_stored": "Choose one in the list first.",
    "confirm_stored": "Tick the confirmation box first.",
    "stored_deleted": "Deleted {name}.",
    "delete_header": "Delete",
    "delete_intro": "Deletes the folder chosen above from Models/LoRA/ for good (an invalid folder too).",
    "delete_confirm": "Yes, delete this adapter for good",
    "delete": "Delete",
    "confirm_first": "Tick the confirmation box to delete {name}.",
    "deleted": "Deleted {name}.",
    "valid": "valid",
    "external": "valid (external)",
    "invalid": "invalid",
    "engine_empty": "No model is loaded for chat yet.",
    "engine_status": "Chat uses base model **{base}** with adapter **{adapter}**.",
    "no_adapter": "none (pure base)",
    "col_adapter_name": "adapter",
    "col_valid": "valid",
    "col_status": "status",
    "col_base": "base model",
    "col_rank": "rank",
    "col_targets": "targets",
    "col_size": "size",
    "col_date": "date",
    "col_train_loss": "train loss",
    "col_eval_loss": "eval loss",
    "invalid_because": "invalid: {reason}",
    # chat tab
    "tab_chat": "4. Chat",
    "chat_intro": (
        "Choose an adapter (its base model is chosen with it) or a base model alone, and press Load. Questions are "
        "rendered exactly as in training. Compare shows the base model and the adapter answering the same prompt."
    ),
    "load": "Load",
    "load_first": "Load a model first (Load button above).",
    "chat": "Chat",
    "chat_placeholder": "Ask something below. The line above says which model and adapter answer.",
    "message": "Message",
    "message_hint": "Ask something and press Enter",
    "stop_reply": "Stop",
    "chat_waiting": "*Waiting: another answer is being generated…*",
    "chat_stopped": "*Stopped.*",
    "clear": "Clear",
    "turns_dropped": (
        "The conversation was too long for the model: its {n} oldest turns were left out ({tokens} tokens sent)."
    ),
    "prompt_sent": "Exact prompt sent to the model",
    "system_prompt": "System prompt",
    "system_prompt_info": (
        "Optional, sent before the conversation. Answers are best with the system prompt used in training (the demo "
        "dataset has none)."
    ),
    "temperature": "Temperature",
    "temperature_info": "0 = greedy (always the same answer)",
    "top_p": "Top-p",
    "top_p_info": "Used only when the temperature is above 0",
    "max_new_tokens": "Max new tokens",
    "repetition_penalty": "Repetition penalty",
    "assistants": "Assistants",
    "assistant": "Saved assistant",
    "assistant_name": "Name for a new assistant",
    "save_assistant": "Save current setup",
    "delete_assistant": "Delete",
    "assistant_saved": "Assistant {name} saved.",
    "assistant_deleted": "Assistant {name} deleted.",
    "assistant_missing": "Choose a saved assistant.",
    "compare_header": "Compare base and adapter",
    "compare_prompt": "Prompt",
    "compare_hint": "One prompt for both, with the system prompt and settings above; Enter compares",
    "compare": "Compare",
    "base_reply": "Base model",
    "adapter_reply": "With the adapter",
    "replay_intro": (
        "**Replay**: the first rows of the dataset loaded in the Dataset tab, answered by the adapter and by the "
        "base model, next to the reference answer."
    ),
    "replay_no_dataset": "Load a dataset in the Dataset tab first (the bundled sample works).",
    "bad_replay_n": "Rows to replay must be a whole number from 1 to {max}.",
    "replay_n": "Dataset rows to replay",
    "replay": "Replay dataset rows",
    "replay_table": "Replayed rows",
    "col_prompt": "prompt",
    "col_reference": "reference answer",
    "col_base_reply": "base",
    "col_adapter_reply": "adapter",
    "col_match": "match",
}
