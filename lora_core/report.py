"""An adapter's evaluation card outside the app: as Markdown (the Hub model card's "Evaluation" section, or a file
to keep) and as a PNG (loss curves, scores, the forgetting probe), and the settings of several runs side by side.
English, like the model card it goes into; the app shows the same numbers in the user's language.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from .evaluation import SCORES, Evaluation, read_evaluation
from .manifest import Manifest

SCORE_NAMES = {"exact_match": "exact match", "rouge_l": "ROUGE-L", "token_f1": "token F1", "eval_loss": "eval loss"}
ROWS_KIND = {
    "held_out": "held-out rows (the validation split, not trained on)",
    "trained": "trained rows (there was no validation split: the adapter was trained on these rows)",
    "other": "rows of another dataset",
}
CELL_MAX = 160
# Settings that differ between any two runs are what a comparison shows; these say nothing about how it trained.
NOT_SETTINGS = ("data_name", "format")


def cell(text: Any, limit: int = CELL_MAX) -> str:
    """Any text as one Markdown table cell: shortened, HTML escaped, pipes and line breaks made harmless."""
    text = str(text)
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return html.escape(text, quote=False).replace("|", "\\|").replace("\r", " ").replace("\n", "<br>")


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def _number(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, int | float) else "n/a"


def card_markdown(evaluation: Evaluation, image: str | None = None) -> str:
    """The "Evaluation" section of a model card: the scores of base and adapter, the forgetting probe, the best
    and worst rows (and ``image``, the card's PNG, when given)."""
    lines = ["## Evaluation", "", f"{len(evaluation.rows)} {ROWS_KIND.get(evaluation.rows_kind, 'rows')} of "
             f"{cell(evaluation.dataset)}, answered greedily (at most {evaluation.max_new_tokens} new tokens) by the "
             "base model and by the adapter.", "", "| score | base | adapter |", "|---|---|---|"]  # fmt: skip
    for name in (*SCORES, "eval_loss"):
        lines.append(f"| {SCORE_NAMES[name]} | {_number(evaluation.base.get(name))} | "
                     f"{_number(evaluation.tuned.get(name))} |")  # fmt: skip
    preference = evaluation.preference  # pairs: the share whose chosen answer is the more likely one
    if preference:
        lines.append(f"| preference accuracy ({preference.get('pairs')} pairs) | {_number(preference.get('base'))} | "
                     f"{_number(preference.get('adapter'))} |")  # fmt: skip
    if image:
        lines += ["", f"![evaluation card]({image})"]
    if evaluation.probe:
        base_right, tuned_right = evaluation.probe_right
        lines += ["", "### Forgetting probe", "", f"{evaluation.probe_changed} of {len(evaluation.probe)} general "
                  "prompts answered differently by the adapter than by the base model; similarity is the ROUGE-L of "
                  f"the adapter's answer against the base's (1 = unchanged). Answered right (the answer has an "
                  f"expected word): base {base_right}, adapter {tuned_right}.", "",
                  "| prompt | base | adapter | similarity | right: base, adapter |",
                  "|---|---|---|---|---|"]  # fmt: skip
        lines += [f"| {cell(p.prompt)} | {cell(p.base)} | {cell(p.adapter)} | {p.similarity:.2f} | "
                  f"{_yes(p.base_right)}, {_yes(p.adapter_right)} |" for p in evaluation.probe]  # fmt: skip
    best, worst = evaluation.best_and_worst(3)
    for title, rows in (("Best rows", best), ("Worst rows", worst)):
        if rows:
            lines += ["", f"### {title}", "", "| row | prompt | reference | base | adapter | ROUGE-L |",
                      "|---|---|---|---|---|---|"]  # fmt: skip
            lines += [f"| {r.row} | {cell(r.prompt)} | {cell(r.reference)} | {cell(r.base)} | {cell(r.adapter)} | "
                      f"{r.adapter_scores['rouge_l']:.2f} |" for r in rows]  # fmt: skip
    return "\n".join(lines) + "\n"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _draw_losses(ax: Any, manifest: Manifest) -> None:
    for history, label, color in ((manifest.loss_history, "train", "#4c78a8"),
                                  (manifest.eval_history, "eval", "#e45756")):  # fmt: skip
        if history:
            ax.plot([p[0] for p in history], [p[1] for p in history], label=label, color=color)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend(loc="upper right")


def _png(fig: Any) -> bytes:
    import io

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    _pyplot().close(fig)
    return buffer.getvalue()


def loss_curve_png(manifest: Manifest) -> bytes:
    """The training (and eval) loss of a run as a small PNG, for its model card."""
    fig, ax = _pyplot().subplots(figsize=(6, 3), dpi=100)
    _draw_losses(ax, manifest)
    return _png(fig)


def card_png(manifest: Manifest | None, evaluation: Evaluation) -> bytes:
    """The card as one picture: the loss curves (when the run's are known), the scores of base and adapter, and
    the forgetting probe's similarity per prompt."""
    panels = 3 if manifest is not None and manifest.loss_history else 2
    fig, axes = _pyplot().subplots(1, panels, figsize=(5 * panels, 3.4), dpi=100)
    if panels == 3:
        _draw_losses(axes[0], manifest)
        axes[0].set_title("loss")
    ax = axes[-2]
    names = list(SCORES)
    xs = range(len(names))
    ax.bar([x - 0.2 for x in xs], [evaluation.base.get(n) or 0 for n in names], 0.4, label="base", color="#9d9d9d")
    ax.bar([x + 0.2 for x in xs], [evaluation.tuned.get(n) or 0 for n in names], 0.4, label="adapter",
           color="#4c78a8")  # fmt: skip
    ax.set_xticks(list(xs), [SCORE_NAMES[n] for n in names])
    ax.set_ylim(0, 1.05)
    ax.set_title(f"scores on {len(evaluation.rows)} {evaluation.rows_kind.replace('_', '-')} rows")
    ax.legend(loc="upper left")
    ax = axes[-1]
    ids = [p.id for p in evaluation.probe]
    ax.barh(range(len(ids)), [p.similarity for p in evaluation.probe], color="#54a24b")
    ax.set_yticks(range(len(ids)), ids)
    ax.set_xlim(0, 1.05)
    ax.invert_yaxis()
    ax.set_title(f"forgetting probe: {evaluation.probe_changed} of {len(ids)} changed")
    ax.set_xlabel("similarity to the base's answer")
    return _png(fig)


def export_card(adapter: str | Path, manifest: Manifest | None, out_dir: str | Path) -> list[Path]:
    """The card of ``adapter`` as ``<name>_eval.md`` and ``<name>_eval.png`` in ``out_dir``; [] without a card."""
    adapter, out_dir = Path(adapter), Path(out_dir)
    evaluation = read_evaluation(adapter)
    if evaluation is None:
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    png = out_dir / f"{adapter.name}_eval.png"
    png.write_bytes(card_png(manifest, evaluation))
    md = out_dir / f"{adapter.name}_eval.md"
    md.write_text(f"# {cell(adapter.name)}\n\n" + card_markdown(evaluation, png.name), encoding="utf-8")
    return [md, png]


def settings_diff(manifests: dict[str, Manifest]) -> list[tuple[str, list[Any]]]:
    """The settings (and base model, dataset, targets) in which the runs differ: ``[(setting, [value per run])]``,
    in the order of the first run's settings."""
    table: dict[str, list[Any]] = {}
    names = list(manifests)
    for index, manifest in enumerate(manifests.values()):
        values = {"base_model": manifest.base_model_name, "dataset": manifest.dataset.name,
                  "target_modules": ", ".join(manifest.target_modules), "steps": manifest.steps,
                  **{k: v for k, v in manifest.hyperparameters.items() if k not in NOT_SETTINGS}}  # fmt: skip
        for key, value in values.items():
            table.setdefault(key, [None] * len(names))[index] = value
    return [(key, values) for key, values in table.items() if len({repr(v) for v in values}) > 1]
