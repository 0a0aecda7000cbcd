"""The one translation table of the UI (Chinese and English) and the helpers that use it.

The core raises typed errors with a ``code`` and ``params``; they are translated here. A code with no entry
falls back to the core's English sentence, so a new error is never shown empty.
"""

from __future__ import annotations

from typing import Any

LANGS = ("zh", "en")
DEFAULT_LANG = "en"

TEXT: dict[str, dict[str, str]] = {
    # header
    "title": {"en": "# Simple LoRA", "zh": "# 简易 LoRA"},
    "subtitle": {
        "en": "Fine-tune a language model with LoRA in your browser: upload a dataset, train, chat with the adapter.",
        "zh": "在浏览器里用 LoRA 微调语言模型：上传数据集、训练、与适配器对话。",
    },
    "language": {"en": "Language / 语言", "zh": "语言 / Language"},
    "error_title": {"en": "Error", "zh": "错误"},
    # dataset tab
    "tab_dataset": {"en": "1. Dataset", "zh": "1. 数据集"},
    "dataset_intro": {
        "en": "Upload an instruction dataset (Alpaca, ShareGPT or OpenAI messages; JSON or JSONL). Every row is "
        "checked, and you see exactly which tokens will be trained.",
        "zh": "上传指令数据集（Alpaca、ShareGPT 或 OpenAI messages 格式；JSON 或 JSONL）。每一行都会被检查，"
        "并显示哪些 token 会被训练。",
    },
    "upload": {"en": "Dataset file (.json / .jsonl)", "zh": "数据集文件（.json / .jsonl）"},
    "format": {"en": "Format", "zh": "格式"},
    "use_sample": {"en": "Use the bundled sample dataset", "zh": "使用内置示例数据集"},
    "report": {"en": "Validation", "zh": "校验结果"},
    "problems": {"en": "Problems by row", "zh": "逐行问题"},
    "preview": {"en": "First rows", "zh": "前几行预览"},
    "col_row": {"en": "row", "zh": "行"},
    "col_field": {"en": "field", "zh": "字段"},
    "col_problem": {"en": "problem", "zh": "问题"},
    "col_role": {"en": "role", "zh": "角色"},
    "col_text": {"en": "text", "zh": "内容"},
    "role_user": {"en": "user", "zh": "用户"},
    "role_assistant": {"en": "assistant", "zh": "助手"},
    "role_system": {"en": "system", "zh": "系统"},
    "tokens_header": {"en": "### Tokens for a base model", "zh": "### 基座模型下的 token"},
    "base_model": {"en": "Base model (Models/LLM/)", "zh": "基座模型（Models/LLM/）"},
    "refresh": {"en": "Refresh", "zh": "刷新"},
    "max_length": {"en": "Max length (tokens)", "zh": "最大长度（token）"},
    "analyze": {"en": "Show tokens", "zh": "查看 token"},
    "highlight": {
        "en": "Rendered examples: trained tokens highlighted",
        "zh": "渲染后的样本：高亮部分为参与训练的 token",
    },
    "trained": {"en": "trained", "zh": "训练"},
    "masked": {"en": "prompt (not trained)", "zh": "提示（不训练）"},
    "histogram": {"en": "Token lengths", "zh": "token 长度分布"},
    "hist_x": {"en": "tokens per example", "zh": "每个样本的 token 数"},
    "hist_y": {"en": "examples", "zh": "样本数"},
    "hist_limit": {"en": "max length", "zh": "最大长度"},
    "no_dataset": {"en": "Upload a dataset first.", "zh": "请先上传数据集。"},
    "no_valid_rows": {
        "en": "'{name}' has no valid row to show; fix the rows listed above first.",
        "zh": "“{name}”中没有可显示的有效行，请先修正上面列出的行。",
    },
    "bad_max_length": {
        "en": "Max length must be a whole number of at least {min} tokens.",
        "zh": "最大长度必须是不小于 {min} 的整数（token 数）。",
    },
    "dataset_refused": {
        "en": "This file cannot be used (the message at the top right says why). Fix it, or upload another file.",
        "zh": "无法使用该文件（原因见右上角的提示）。请修正后重新上传，或换一个文件。",
    },
    "no_base": {
        "en": "No base model in Models/LLM/ yet. Put a model folder there, then press Refresh.",
        "zh": "Models/LLM/ 中还没有基座模型。放入模型文件夹后点击“刷新”。",
    },
    # report sentences
    "report_ok": {
        "en": "**{name}**: {fmt} format, {rows} rows, all valid. Next: choose a base model and open the Train tab.",
        "zh": "**{name}**：{fmt} 格式，共 {rows} 行，全部有效。下一步：选择基座模型，然后打开“训练”页。",
    },
    "report_bad": {
        "en": "**{name}**: {fmt} format, {rows} rows, **{invalid} invalid**, {valid} valid. Fix the rows listed "
        "below, or train with \u201cskip invalid rows\u201d to use only the valid rows.",
        "zh": "**{name}**：{fmt} 格式，共 {rows} 行，**{invalid} 行无效**，{valid} 行有效。请修正下表列出的行，"
        "或在训练时选择“跳过无效行”，只使用 {valid} 行有效数据。",
    },
    "report_none": {
        "en": "**{name}**: {fmt} format, {rows} rows, **none of them valid**. Fix the rows listed below.",
        "zh": "**{name}**：{fmt} 格式，共 {rows} 行，**没有一行有效**。请修正下表列出的行。",
    },
    "style_chat_template": {"en": "the model's own chat template", "zh": "模型自带的聊天模板"},
    "style_alpaca": {
        "en": "built-in Alpaca template (the model has no chat template)",
        "zh": "内置 Alpaca 模板（该模型没有聊天模板）",
    },
    "token_stats": {
        "en": "{total} examples, {tokens} tokens in all ({trained} trained). With max length {max_length}: "
        "{truncated} truncated (oldest prompt tokens cut), {dropped} dropped (nothing left to train). "
        "Prompt format: {style}.",
        "zh": "共 {total} 个样本，{tokens} 个 token（其中 {trained} 个参与训练）。最大长度 {max_length} 时："
        "{truncated} 个被截断（从最早的提示 token 开始截），{dropped} 个被丢弃（没有可训练的 token）。"
        "提示格式：{style}。",
    },
    # row problems by code (the table's third column)
    "problem_missing_field": {"en": "field is missing", "zh": "缺少该字段"},
    "problem_empty_field": {"en": "field is empty", "zh": "该字段为空"},
    "problem_not_string": {"en": "value is not text", "zh": "值不是文本"},
    "problem_unknown_role": {"en": "unknown role", "zh": "未知角色"},
    "problem_no_assistant": {"en": "no assistant turn", "zh": "没有助手回复"},
    "problem_not_alternating": {"en": "turns do not alternate user / assistant", "zh": "用户与助手的轮次没有交替"},
    "problem_last_not_assistant": {"en": "does not end with an assistant turn", "zh": "最后一轮不是助手回复"},
    "problem_system_not_first": {"en": "system turn is not the first", "zh": "系统提示不在第一轮"},
    "problem_mixed_format": {"en": "row is in another format than the file", "zh": "该行格式与文件其他行不同"},
    "problem_not_object": {"en": "row is not a JSON object", "zh": "该行不是 JSON 对象"},
    "problem_unknown_format": {"en": "row matches no known format", "zh": "该行不符合任何已知格式"},
    "problem_not_list": {"en": "value is not a list", "zh": "值不是列表"},
    # errors of the core, by code; params come from the error. English falls back to the core's own sentence.
    "err_file_missing": {"zh": "文件“{file}”不存在。"},
    "err_not_a_file": {"zh": "“{file}”是文件夹，不是数据集文件。"},
    "err_too_large": {"zh": "文件“{file}”超过了上传大小上限。"},
    "err_unreadable": {"zh": "无法读取文件“{file}”。"},
    "err_empty": {"zh": "文件“{file}”是空的。"},
    "err_binary": {"zh": "文件“{file}”是二进制文件，不是文本数据集（第 {line} 行第 {column} 列有 NUL 字节）。"},
    "err_not_utf8": {"zh": "文件“{file}”不是 UTF-8 编码（问题在第 {line} 行第 {column} 列），请另存为 UTF-8。"},
    "err_invalid_json": {"zh": "文件“{file}”不是有效的 JSON：第 {line} 行第 {column} 列出错。"},
    "err_too_deep": {"zh": "文件“{file}”的嵌套层级太深，无法读取。"},
    "err_top_level_object": {"zh": "文件“{file}”的顶层是一个对象，应为由各行组成的列表（JSON 数组或 JSONL）。"},
    "err_top_level_scalar": {"zh": "文件“{file}”只有一个值，应为由各行组成的列表。"},
    "err_no_rows": {"zh": "文件“{file}”中没有任何数据行。"},
    "err_unknown_format": {
        "zh": "文件“{file}”中没有一行符合已知格式（需要 Alpaca 的 instruction 和 output、ShareGPT 的 "
        "conversations 或 OpenAI 的 messages）。"
    },
    "err_invalid_rows": {
        "zh": "“{file}”共 {total_rows} 行，其中 {invalid_rows} 行无效（第一处：第 {row} 行，字段 {field}）。"
        "请修正，或选择“跳过无效行”。"
    },
    "err_no_valid_rows": {"zh": "“{file}”中没有可用的行。"},
    "err_model_missing": {"zh": "模型文件夹 {path} 不存在。"},
    "err_model_no_config": {"zh": "文件夹 {path} 不是模型：缺少 config.json。"},
    "err_tokenizer_failed": {"zh": "无法加载 {path} 中的分词器。"},
    "err_template_not_prefix": {"zh": "聊天模板在加入后续轮次后改变了第 {turn} 轮的渲染结果，无法区分回复与提示。"},
    "err_path_outside": {"zh": "路径 {path} 不在允许的文件夹 {root} 之内。"},
    "err_bad_name": {"zh": "名称“{name}”中没有可用的字符。"},
    "err_bad_format_option": {"zh": "未知的数据集格式“{format}”，可选：auto、alpaca、sharegpt、messages。"},
    "err_no_template": {"zh": "该分词器没有聊天模板，但适配器是用聊天模板训练的。"},
    "err_no_eos": {"zh": "该分词器既没有聊天模板，也没有结束符（EOS），无法标出回复的结尾。"},
    "err_template_failed": {"zh": "分词器的聊天模板无法渲染这段对话：{detail}"},
    "err_template_token_prefix": {
        "zh": "用该分词器的聊天模板时，提示的 token 不是“提示 + 回复”的 token 的前缀，无法精确地只训练回复。"
    },
    "err_not_offered": {"zh": "“{value}”不在可选列表中。"},
    # train tab
    "tab_train": {"en": "2. Train", "zh": "2. 训练"},
    "train_intro": {
        "en": "Pick a base model, check the detected LoRA target modules, set the hyper-parameters and press Start. "
        "Training runs in the background: you can close this page and come back.",
        "zh": "选择基座模型，确认检测到的 LoRA 目标模块，设置超参数后点击“开始训练”。"
        "训练在后台运行：可以关闭页面稍后再回来。",
    },
    "task_name": {"en": "Task name", "zh": "任务名称"},
    "target_preset": {"en": "Target preset", "zh": "目标模块预设"},
    "targets": {"en": "LoRA target modules", "zh": "LoRA 目标模块"},
    "targets_info": {
        "en": "Detected for this model; add or remove layers to override (none chosen: the preset's).",
        "zh": "根据模型自动检测；可增删以覆盖（全部删除则使用预设）。",
    },
    "model_info": {
        "en": "**{model_type}** on {device}, {quant}. LoRA on `{targets}`: {reason}. Trainable: {lora} of {total} "
        "parameters ({pct}%). Memory needed: about {memory}.",
        "zh": "**{model_type}**，设备 {device}，{quant}。LoRA 作用于 `{targets}`：{reason}。"
        "可训练参数 {lora} / {total}（{pct}%）。预计内存：约 {memory}。",
    },
    "quant_name_none_cpu": {"en": "float32, no quantization", "zh": "float32，不量化"},
    "quant_name_none_cuda": {"en": "16-bit, no quantization", "zh": "16 位，不量化"},
    "quant_name_4bit": {"en": "4-bit NF4 (QLoRA)", "zh": "4 位 NF4（QLoRA）"},
    "quant_name_8bit": {"en": "8-bit", "zh": "8 位"},
    "reason_all-linear": {
        "en": "all {n} kinds of linear layer, except the LM head",
        "zh": "全部 {n} 种线性层（不含输出层 LM head）",
    },
    "reason_peft": {
        "en": "PEFT's own target modules for the {model_type} architecture",
        "zh": "PEFT 为 {model_type} 架构给出的目标模块",
    },
    "reason_remote-code": {
        "en": "the known attention projection of the {model_type} architecture",
        "zh": "{model_type} 架构已知的注意力投影层",
    },
    "reason_scan": {
        "en": "no known target list fits {model_type}, so the attention layers were found by name",
        "zh": "没有适用于 {model_type} 的已知目标列表，按名称找到了注意力层",
    },
    "reason_default": {
        "en": "no attention layer was recognised, so this is the LLaMA default",
        "zh": "未识别出注意力层，使用 LLaMA 的默认值",
    },
    "reason_default_missing": {
        "en": "no attention layer was recognised and the LLaMA default is missing too: pick the targets from the list",
        "zh": "未识别出注意力层，模型中也没有 LLaMA 的默认模块：请从列表中选择目标模块",
    },
    "reason_user": {"en": "chosen by you", "zh": "由你选择"},
    "estimate_needs_numbers": {
        "en": "Set the LoRA rank, the batch size and the max length (at least 8) to see the trainable parameters "
        "and the memory needed.",
        "zh": "填写 LoRA 秩、批大小和最大长度（至少 8）后，即可看到可训练参数和所需内存。",
    },
    "hyper": {"en": "Hyper-parameters", "zh": "超参数"},
    "epochs": {"en": "Epochs", "zh": "训练轮数"},
    "max_steps": {"en": "Max steps (0 = by epochs)", "zh": "最大步数（0 = 按轮数）"},
    "learning_rate": {"en": "Learning rate", "zh": "学习率"},
    "scheduler": {"en": "LR schedule", "zh": "学习率调度"},
    "warmup_ratio": {"en": "Warm-up ratio", "zh": "预热比例"},
    "rank": {"en": "LoRA rank r", "zh": "LoRA 秩 r"},
    "alpha": {"en": "LoRA alpha", "zh": "LoRA alpha"},
    "dropout": {"en": "LoRA dropout", "zh": "LoRA dropout"},
    "batch_size": {"en": "Batch size", "zh": "批大小"},
    "grad_accum": {"en": "Gradient accumulation", "zh": "梯度累积步数"},
    "val_split": {"en": "Validation split", "zh": "验证集比例"},
    "seed": {"en": "Seed", "zh": "随机种子"},
    "quantization": {"en": "Quantization", "zh": "量化"},
    "quant_cpu": {
        "en": "No CUDA GPU here: the model trains in float32 (4-/8-bit need a GPU).",
        "zh": "未检测到 CUDA GPU：以 float32 训练（4/8 位量化需要 GPU）。",
    },
    "quant_gpu": {"en": "auto = 4-bit NF4 (QLoRA) on this GPU.", "zh": "auto = 在此 GPU 上使用 4 位 NF4（QLoRA）。"},
    "gradient_checkpointing": {
        "en": "Gradient checkpointing (less memory, slower)",
        "zh": "梯度检查点（省内存，较慢）",
    },
    "skip_invalid": {"en": "Skip invalid rows", "zh": "跳过无效行"},
    "demo_settings": {"en": "Use demo settings", "zh": "使用演示设置"},
    "start": {"en": "Start training", "zh": "开始训练"},
    "stop_save": {"en": "Stop and save", "zh": "停止并保存"},
    "stop_discard": {"en": "Stop and discard", "zh": "停止并丢弃"},
    "loss_plot": {
        "en": "Loss: blue line = training, red line = validation (when a validation split is set)",
        "zh": "损失：蓝线为训练损失，红线为验证损失（设置了验证集比例时）",
    },
    "history": {"en": "Training runs", "zh": "训练记录"},
    "plot_step": {"en": "step", "zh": "步数"},
    "col_run": {"en": "run", "zh": "任务"},
    "col_state": {"en": "state", "zh": "状态"},
    "col_step": {"en": "step", "zh": "步数"},
    "col_loss": {"en": "last loss", "zh": "最终损失"},
    "col_started": {"en": "started", "zh": "开始时间"},
    "col_adapter": {"en": "adapter / error", "zh": "适配器 / 错误"},
    "started": {"en": "Training **{task}** started.", "zh": "训练 **{task}** 已开始。"},
    "nothing_running": {"en": "No training is running.", "zh": "当前没有正在运行的训练。"},
    "stopping_save": {
        "en": "Stopping after this step; the adapter will be saved and marked stopped.",
        "zh": "将在本步结束后停止，适配器会被保存并标记为“已停止”。",
    },
    "stopping_discard": {
        "en": "Stopping after this step; nothing will be saved.",
        "zh": "将在本步结束后停止，不保存任何内容。",
    },
    "no_training": {"en": "No training yet in this session of the app.", "zh": "本次启动后还没有训练。"},
    "progress": {
        "en": "**{task}**: {state} · step {step} / {total} · epoch {epoch}",
        "zh": "**{task}**：{state} · 第 {step} / {total} 步 · 第 {epoch} 轮",
    },
    "speed": {"en": "ETA {eta} · {tps} tokens/s", "zh": "预计剩余 {eta} · 每秒 {tps} 个 token"},
    "eval_before_after": {
        "en": "Eval loss: base {before} → adapter {after}",
        "zh": "验证损失：基座 {before} → 适配器 {after}",
    },
    "adapter_saved": {
        "en": "Adapter saved in `{path}`. It is already listed in the Models tab: activate it there, then chat.",
        "zh": "适配器已保存到 `{path}`，并已出现在“模型”页：在那里激活后即可对话。",
    },
    "discarded": {"en": "Stopped; nothing was saved.", "zh": "已停止，未保存任何内容。"},
    "nothing_saved": {"en": "nothing saved", "zh": "未保存"},
    "took": {"en": "took {time}", "zh": "用时 {time}"},
    "bad_number": {"en": "“{label}” needs a number.", "zh": "“{label}”需要填写数字。"},
    "bad_setting": {"en": "“{label}” = {value} is out of range.", "zh": "“{label}” = {value} 超出范围。"},
    "failed": {"en": "Training failed: {error}", "zh": "训练失败：{error}"},
    "state_queued": {"en": "queued", "zh": "排队中"},
    "state_loading": {"en": "loading", "zh": "加载中"},
    "state_running": {"en": "running", "zh": "训练中"},
    "state_stopping": {"en": "stopping", "zh": "正在停止"},
    "state_completed": {"en": "completed", "zh": "已完成"},
    "state_stopped": {"en": "stopped", "zh": "已停止"},
    "state_failed": {"en": "failed", "zh": "失败"},
    "state_interrupted": {"en": "interrupted", "zh": "已中断"},
    "err_busy": {"zh": "已有训练在运行：{task}。"},
    "err_bad_setting": {"zh": "设置 {setting} = {value} 超出范围。"},
    "err_quantization_needs_cuda": {"zh": "{quantization} 量化需要 CUDA GPU；在 CPU 上以 float32 训练。"},
    "err_nothing_to_train": {"zh": "在最大长度 {max_length} 下，没有任何样本留有可训练的 token。"},
    "err_no_checkpoint": {"zh": "没有可恢复的检查点。"},
    "err_unknown_target": {"zh": "模型中没有这些模块：{unknown}。"},
    "err_model_load_failed": {"zh": "无法加载 {path} 中的基座模型。"},
    "err_config_invalid": {"zh": "无法根据 {folder} 中的 config.json 构建模型。"},
    "err_out_of_memory": {"zh": "内存不足：请减小批大小或最大长度，或开启梯度检查点。"},
    "err_disk_full": {"zh": "磁盘已满，请释放空间后重新训练。"},
    "err_model_pickle_only": {
        "zh": "{folder} 中的模型只有 pickle 权重（{files}），出于安全不会加载；请先转换为 safetensors。"
    },
    "err_model_no_weights": {"zh": "{folder} 中的模型没有权重文件（*.safetensors）。"},
    "err_no_tokenizer": {"zh": "文件夹 {path} 中没有分词器（tokenizer.json 或 tokenizer_config.json）。"},
    "err_unknown_preset": {"zh": "未知的目标模块预设 {preset}。"},
    "err_adapter_exists": {"zh": "适配器文件夹 {path} 已存在，不会覆盖。"},
    "err_out_not_model": {"zh": "{out} 已存在且不是模型文件夹；请为演示模型选择一个空文件夹或新文件夹。"},
    "err_remote_code_required": {
        "zh": "{folder} 中的模型（model_type {model_type}）需要运行其自带的代码；"
        "只有信任该文件夹时才能允许 trust_remote_code。"
    },
    "err_no_linear_layers": {"zh": "该模型没有可供 LoRA 适配的线性层。"},
    "err_no_target": {"zh": "没有指定目标模块。"},
    # models tab
    "tab_models": {"en": "3. Models", "zh": "3. 模型"},
    "models_intro": {
        "en": "Every folder in Models/LoRA/ is listed, valid or not (with the reason). Activate an adapter to use it "
        "in chat; its base model is loaded for you. A new training is listed as soon as it ends.",
        "zh": "列出 Models/LoRA/ 中的每个文件夹，无论是否有效（附原因）。激活适配器后即可在对话中使用，"
        "会自动加载其基座模型。训练结束后，新适配器会立即列在这里。",
    },
    "scan": {"en": "Scan", "zh": "扫描"},
    "scanned": {
        "en": "Models/LoRA/: {valid} usable, {invalid} invalid (folders: {n}).",
        "zh": "Models/LoRA/ 中共 {n} 个文件夹：{valid} 个可用，{invalid} 个无效。",
    },
    "choose_adapter": {"en": "Choose an adapter in the list first.", "zh": "请先在列表中选择一个适配器。"},
    "need_prompt": {"en": "Type a prompt first.", "zh": "请先输入提示。"},
    "adapters": {"en": "Adapters in Models/LoRA/", "zh": "Models/LoRA/ 中的适配器"},
    "adapter": {"en": "Adapter", "zh": "适配器"},
    "activate": {"en": "Activate", "zh": "激活"},
    "deactivate": {"en": "Deactivate (pure base)", "zh": "停用（仅基座）"},
    "quick_test": {"en": "Quick test: ask the chosen adapter", "zh": "快速测试：向所选适配器提问"},
    "quick_test_hint": {
        "en": "e.g. a question from your dataset; Enter sends (the adapter is activated first)",
        "zh": "例如数据集中的一个问题；按回车发送（会先激活该适配器）",
    },
    "send": {"en": "Send", "zh": "发送"},
    "reply": {"en": "Reply", "zh": "回复"},
    "merge_header": {"en": "Merge and export", "zh": "合并并导出"},
    "merge_intro": {
        "en": "Merge the adapter into a 16-bit copy of its base model and save it as a new model folder in "
        "Models/LLM/ (usable without PEFT).",
        "zh": "将适配器合并进基座模型的 16 位副本，另存为 Models/LLM/ 中的新模型文件夹（无需 PEFT 即可使用）。",
    },
    "merge_name": {"en": "New model folder name", "zh": "新模型文件夹名"},
    "merge_name_hint": {"en": "empty: <adapter>-merged", "zh": "留空则为 <适配器名>-merged"},
    "merge": {"en": "Merge", "zh": "合并"},
    "merged": {
        "en": "Merged model saved in `{path}`. It is a base model now: choose **{name}** as the base model in the "
        "other tabs.",
        "zh": "合并后的模型已保存到 `{path}`，现在它是一个基座模型：可在其他页中选择 **{name}** 作为基座模型。",
    },
    "delete_header": {"en": "Delete", "zh": "删除"},
    "delete_intro": {
        "en": "Deletes the folder chosen above from Models/LoRA/ for good (an invalid folder too).",
        "zh": "从 Models/LoRA/ 中永久删除上面所选的文件夹（无效的文件夹也可删除）。",
    },
    "delete_confirm": {"en": "Yes, delete this adapter for good", "zh": "确认永久删除此适配器"},
    "delete": {"en": "Delete", "zh": "删除"},
    "confirm_first": {"en": "Tick the confirmation box to delete {name}.", "zh": "要删除 {name}，请先勾选确认框。"},
    "deleted": {"en": "Deleted {name}.", "zh": "已删除 {name}。"},
    "valid": {"en": "valid", "zh": "有效"},
    "external": {"en": "valid (external)", "zh": "有效（外部）"},
    "invalid": {"en": "invalid", "zh": "无效"},
    "engine_empty": {"en": "No model is loaded for chat yet.", "zh": "对话尚未加载模型。"},
    "engine_status": {
        "en": "Chat uses base model **{base}** with adapter **{adapter}**.",
        "zh": "对话使用基座模型 **{base}**，适配器 **{adapter}**。",
    },
    "no_adapter": {"en": "none (pure base)", "zh": "无（仅基座）"},
    "col_adapter_name": {"en": "adapter", "zh": "适配器"},
    "col_valid": {"en": "valid", "zh": "有效性"},
    "col_status": {"en": "status", "zh": "状态"},
    "col_base": {"en": "base model", "zh": "基座模型"},
    "col_rank": {"en": "rank", "zh": "秩"},
    "col_targets": {"en": "targets", "zh": "目标模块"},
    "col_size": {"en": "size", "zh": "大小"},
    "col_date": {"en": "date", "zh": "日期"},
    "col_train_loss": {"en": "train loss", "zh": "训练损失"},
    "col_eval_loss": {"en": "eval loss", "zh": "验证损失"},
    "col_reason": {"en": "reason", "zh": "原因"},
    # chat tab
    "tab_chat": {"en": "4. Chat", "zh": "4. 对话"},
    "chat_intro": {
        "en": "Choose an adapter (its base model is chosen with it) or a base model alone, and press Load. "
        "Questions are rendered exactly as in training. Compare shows the base model and the adapter answering "
        "the same prompt.",
        "zh": "选择适配器（会同时选好其基座模型）或只选基座模型，然后点击“加载”。提问的渲染方式与训练时完全一致。"
        "“对比”会并排显示基座模型与适配器对同一问题的回答。",
    },
    "load": {"en": "Load", "zh": "加载"},
    "load_first": {"en": "Load a model first (Load button above).", "zh": "请先加载模型（点击上方“加载”）。"},
    "chat": {"en": "Chat", "zh": "对话"},
    "chat_placeholder": {
        "en": "Ask something below (load a model above first).",
        "zh": "在下方提问（先在上方加载模型）。",
    },
    "message": {"en": "Message", "zh": "消息"},
    "message_hint": {"en": "Ask something and press Enter", "zh": "输入问题后按回车"},
    "clear": {"en": "Clear", "zh": "清空"},
    "prompt_sent": {"en": "Exact prompt sent to the model", "zh": "发送给模型的完整提示"},
    "system_prompt": {"en": "System prompt", "zh": "系统提示"},
    "system_prompt_info": {
        "en": "Optional, sent before the conversation. Answers are best with the system prompt used in training "
        "(the demo dataset has none).",
        "zh": "可选，在对话之前发送。使用与训练时相同的系统提示效果最好（演示数据集没有系统提示）。",
    },
    "temperature": {"en": "Temperature", "zh": "温度"},
    "temperature_info": {"en": "0 = greedy (always the same answer)", "zh": "0 = 贪心解码（回答固定）"},
    "top_p": {"en": "Top-p", "zh": "Top-p"},
    "top_p_info": {"en": "Used only when the temperature is above 0", "zh": "仅在温度大于 0 时生效"},
    "max_new_tokens": {"en": "Max new tokens", "zh": "最大生成 token 数"},
    "repetition_penalty": {"en": "Repetition penalty", "zh": "重复惩罚"},
    "assistants": {"en": "Assistants", "zh": "助手"},
    "assistant": {"en": "Saved assistant", "zh": "已保存的助手"},
    "assistant_name": {"en": "Name for a new assistant", "zh": "新助手名称"},
    "save_assistant": {"en": "Save current setup", "zh": "保存当前设置"},
    "delete_assistant": {"en": "Delete", "zh": "删除"},
    "assistant_saved": {"en": "Assistant {name} saved.", "zh": "助手 {name} 已保存。"},
    "assistant_deleted": {"en": "Assistant {name} deleted.", "zh": "助手 {name} 已删除。"},
    "assistant_missing": {"en": "Choose a saved assistant.", "zh": "请选择一个已保存的助手。"},
    "compare_header": {"en": "Compare base and adapter", "zh": "对比基座与适配器"},
    "compare_prompt": {"en": "Prompt", "zh": "提示"},
    "compare_hint": {
        "en": "One prompt for both, with the system prompt and settings above; Enter compares",
        "zh": "两者使用同一提示以及上方的系统提示和设置；按回车对比",
    },
    "compare": {"en": "Compare", "zh": "对比"},
    "base_reply": {"en": "Base model", "zh": "基座模型"},
    "adapter_reply": {"en": "With the adapter", "zh": "加载适配器后"},
    "replay_intro": {
        "en": "**Replay**: the first rows of the dataset loaded in the Dataset tab, answered by the adapter and by "
        "the base model, next to the reference answer.",
        "zh": "**重放**：用“数据集”页中已加载数据集的前几行提问，把适配器和基座模型的回答与参考答案并排显示。",
    },
    "replay_no_dataset": {
        "en": "Load a dataset in the Dataset tab first (the bundled sample works).",
        "zh": "请先在“数据集”页加载数据集（可使用内置示例）。",
    },
    "bad_replay_n": {
        "en": "Rows to replay must be a whole number from 1 to {max}.",
        "zh": "重放行数必须是 1 到 {max} 之间的整数。",
    },
    "replay_n": {"en": "Dataset rows to replay", "zh": "重放的数据集行数"},
    "replay": {"en": "Replay dataset rows", "zh": "重放数据集行"},
    "replay_table": {"en": "Replayed rows", "zh": "重放结果"},
    "col_prompt": {"en": "prompt", "zh": "提示"},
    "col_reference": {"en": "reference answer", "zh": "参考答案"},
    "col_base_reply": {"en": "base", "zh": "基座"},
    "col_adapter_reply": {"en": "adapter", "zh": "适配器"},
    "col_match": {"en": "match", "zh": "一致"},
    "err_adapter_missing": {"zh": "没有名为 {name} 的适配器。"},
    "err_adapter_no_config": {"zh": "该文件夹缺少 adapter_config.json。"},
    "err_adapter_pickle_only": {"zh": "该适配器只有 pickle 格式的权重（.bin），出于安全只加载 safetensors。"},
    "err_adapter_corrupt": {"zh": "适配器权重文件已截断或损坏。"},
    "err_adapter_no_weights": {"zh": "该文件夹缺少 adapter_model.safetensors。"},
    "err_adapter_empty": {"zh": "适配器权重为空。"},
    "err_adapter_not_finite": {"zh": "适配器权重中有 NaN 或无穷大的值。"},
    "err_adapter_full_model": {"zh": "该文件夹包含完整模型，而不是适配器。"},
    "err_adapter_bad_config": {"zh": "adapter_config.json 无法读取，或不是 PEFT 适配器配置。"},
    "err_adapter_bad_meta": {"zh": "training_meta.json 无法读取。"},
    "err_adapter_mismatch": {"zh": "保存的权重与训练得到的适配器不一致。"},
    "err_adapter_base_mismatch": {
        "zh": "适配器 {adapter} 是在基座模型 {trained_on} 上训练的，不能用于基座模型 {base}。"
    },
    "err_adapter_does_not_fit": {"zh": "适配器 {adapter} 与基座模型 {base} 不匹配。"},
    "err_adapter_base_unknown": {"zh": "{name} 的基座模型不在 Models/LLM/ 中；请先在“对话”页加载其基座模型。"},
    "err_no_base_loaded": {"zh": "对话尚未加载基座模型。"},
    "err_no_active_adapter": {"zh": "请先激活一个适配器，再与基座模型对比。"},
    "err_busy_training": {"zh": "GPU 正在训练 {task}；训练结束后才能加载对话模型。"},
    "err_chat_busy": {"zh": "对话模型正忙，请稍后再试。"},
    "err_merge_quantized_base": {"zh": "基座模型 {base} 以量化形式存储，合并需要其全精度权重。"},
    "err_merge_out_exists": {"zh": "文件夹 {path} 不为空，请换一个新文件夹。"},
    "err_assistant_bad_name": {"zh": "助手名称需为 1 到 80 个字符。"},
    "err_assistant_no_base": {"zh": "助手需要指定基座模型。"},
    "err_assistant_missing": {"zh": "没有名为 {name} 的助手。"},
    "err_bad_generation_setting": {"zh": "生成参数超出范围。"},
}


def t(key: str, lang: str, **params: Any) -> str:
    entry = TEXT.get(key)
    if entry is None:
        return key
    text = entry.get(lang) or entry.get(DEFAULT_LANG, key)
    return text.format(**params) if params else text


def normalize_lang(value: str | None) -> str:
    """A browser language ('zh-CN', 'en-US', ...) or a UI choice to one of LANGS."""
    return "zh" if (value or "").lower().startswith("zh") else "en"


def problem_text(code: str, message: str, lang: str) -> str:
    """A row problem for the table: translated by code; the core's sentence when English or unknown."""
    key = f"problem_{code}"
    if lang == "en" or key not in TEXT:
        return message
    return TEXT[key]["zh"]
