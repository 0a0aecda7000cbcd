"""DPO and ORPO on preference pairs, on TRL's ``DPOTrainer``: its collator, its DPO loss and its reference model
(the base with the adapter disabled: no second copy of the model is loaded).

The pairs come encoded by ``pairs.py`` (the token view's ids, the prompt once and both answers), so TRL's own
tokenization is skipped. ORPO (Hong et al., 2024, "ORPO: Monolithic Preference Optimization without Reference
Model") is written here: TRL's ORPO trainer computes its language-model loss over the prompt as well as the chosen
answer, which would train the prompt; the paper's loss is over the answer only. ``orpo_loss`` follows the paper's
equations (4)-(7) and is tested against them.

Imports TRL at the top: ``training.py`` imports this module only when a preference training starts.
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch
import torch.nn.functional as F
from trl import DPOConfig, DPOTrainer

from .config import TrainConfig
from .trainer import GroupedByLength, KeepsOptimizerOptions, training_settings


def preference_arguments(cfg: TrainConfig, output_dir: str, steps: int, device: str, checkpointing: bool,
                         has_eval: bool) -> DPOConfig:  # fmt: skip
    """TRL's config for the run: the same settings as an instruction run, plus the method's own."""
    losses, weights = ["sigmoid"], [1.0]
    if cfg.method == "dpo" and cfg.sft_weight > 0:  # DPO plus the chosen answers' own loss (RPO)
        losses, weights = ["sigmoid", "sft"], [1.0, cfg.sft_weight]
    return DPOConfig(
        **training_settings(cfg, output_dir, steps, device, checkpointing, has_eval),
        beta=cfg.beta,
        loss_type=losses,
        loss_weights=weights,
        max_length=None,  # pairs.fit_pair already fitted each pair into the run's max_length
        pad_to_multiple_of=None,
        precompute_ref_log_probs=False,
    )


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x < 0, accurate near 0 and far below it (x is kept below 0: a certain answer would make
    its odds infinite)."""
    x = x.clamp(max=-1e-6)
    return torch.where(x > -0.6931, torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def orpo_loss(chosen_logps: torch.Tensor, rejected_logps: torch.Tensor, chosen_nll: torch.Tensor,
              beta: float) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """ORPO's loss from each answer's mean per-token log-probability and the chosen answers' NLL.

    odds(y|x) = P(y|x) / (1 - P(y|x)) with P(y|x) = exp(mean log-prob of y's tokens) (eq. 4); the odds ratio's log
    is log odds(y_w|x) - log odds(y_l|x) (eq. 5); L_OR = -log sigmoid(log odds ratio) (eq. 7); the loss is
    L_SFT + beta * L_OR, averaged over the pairs (eq. 6, beta is the paper's lambda). Returns the loss and the
    per-pair log odds ratios."""
    chosen_logps, rejected_logps = chosen_logps.float(), rejected_logps.float()
    log_odds = (chosen_logps - rejected_logps) - (log1mexp(chosen_logps) - log1mexp(rejected_logps))
    return chosen_nll - beta * F.logsigmoid(log_odds).mean(), log_odds


def pair_keys(inputs: dict) -> list[bytes]:
    """One key per pair of a collated batch ([chosen..., rejected...]): digests of each row's tokens without its
    padding and of where its answer begins (two pairs with the same tokens split otherwise into prompt and answer
    have other reference log-probabilities)."""
    ids, mask, completion = inputs["input_ids"], inputs["attention_mask"], inputs["completion_mask"]
    digests = []
    for row in range(ids.size(0)):
        real = mask[row].bool()
        data = ids[row][real].cpu().numpy().tobytes() + completion[row][real].cpu().numpy().tobytes()
        digests.append(hashlib.blake2b(data, digest_size=16).digest())
    half = ids.size(0) // 2
    return [digests[i] + digests[half + i] for i in range(half)]


class PreferenceTrainer(KeepsOptimizerOptions, GroupedByLength, DPOTrainer):
    """TRL's ``DPOTrainer`` on pairs encoded by ``pairs.py``, with batches grouped by length; ``method="orpo"``
    replaces the DPO loss with ``orpo_loss`` (no reference model is run).

    DPO's reference log-probabilities are computed once per pair and kept (``reference``): the reference (the base,
    the adapter disabled) never changes, so from the second epoch on a step runs the policy alone, as TRL's own
    ``precompute_ref_log_probs`` would, without its pass over the dataset before training, its cache files or its
    hash of the model."""

    def __init__(self, *args: Any, method: str = "dpo", **kwargs: Any) -> None:
        self.method = method
        self.references: dict[bytes, tuple[float, float]] = {}  # a pair's digest -> its reference log-probs
        super().__init__(*args, **kwargs)
        # Given a PEFT model, TRL copies its adapter as a frozen "ref" adapter (the reference for an adapter that was
        # trained before). Ours is new, its update zero: the base with the adapter disabled is the same reference,
        # without the copy (TRL then disables the adapters), and the saved folder holds only the trained adapter.
        if "ref" in getattr(self.model, "peft_config", {}):
            self.model.delete_adapter("ref")

    def _prepare_dataset(self, dataset: Any, processing_class: Any, args: Any, dataset_name: str) -> Any:
        return dataset  # already encoded (prompt_ids, chosen_ids, rejected_ids) by pairs.py

    def reference(self, inputs: dict) -> dict[str, torch.Tensor]:
        """The batch's reference log-probabilities (chosen, rejected), from those kept for its pairs; the pairs not
        seen yet are computed together by TRL's ``compute_ref_log_probs`` (the base, the adapter disabled, in eval
        mode: what dropout the base model has does not blur the reference) and kept. A pair is known by a digest of
        its two rows' tokens and where their answers begin."""
        ids = inputs["input_ids"]
        half = ids.size(0) // 2  # the batch is [chosen..., rejected...]
        keys = pair_keys(inputs)
        missing = [i for i, key in enumerate(keys) if key not in self.references]
        if missing:
            index = torch.tensor(missing + [half + i for i in missing], device=ids.device)
            part = {name: value[index] for name, value in inputs.items()}
            training = self.model.training
            self.model.eval()
            try:
                chosen, rejected = self.compute_ref_log_probs(self.model, part)
            finally:
                self.model.train(training)
            for i, c, r in zip(missing, chosen.tolist(), rejected.tolist(), strict=True):
                self.references[keys[i]] = (c, r)
        kept = torch.tensor([self.references[key] for key in keys], device=ids.device, dtype=torch.float32)
        return {"ref_chosen_logps": kept[:, 0], "ref_rejected_logps": kept[:, 1]}

    def _keeps_references(self, inputs: dict) -> bool:
        """Whether ``reference`` may serve this batch: DPO with the base as its reference (no reference model of its
        own, nor TRL's precomputation), a batch of token rows only (nothing else a pair's digest would miss), and no
        sharded model (FSDP, DeepSpeed ZeRO-3), whose forward passes all processes must run together, where a kept
        reference would let one process skip a pass the others run."""
        sharded = self.is_fsdp_enabled or (self.is_deepspeed_enabled and getattr(
            self.accelerator.state.deepspeed_plugin, "zero_stage", 0) == 3)  # fmt: skip
        plain = set(inputs) <= {"input_ids", "attention_mask", "completion_mask"}
        return self.ref_model is None and not self.precompute_ref_logps and plain and not sharded

    def _compute_loss(self, model: Any, inputs: dict, return_outputs: bool) -> Any:
        if self.method != "orpo":
            if not self._keeps_references(inputs):  # TRL's own ways
                return super()._compute_loss(model, inputs, return_outputs)
            self.precompute_ref_logps = True  # read from the batch, as after TRL's precomputation
            try:
                return super()._compute_loss(model, {**inputs, **self.reference(inputs)}, return_outputs)
            finally:
                self.precompute_ref_logps = False
        mode = "train" if self.model.training else "eval"
        completion = inputs["completion_mask"]
        labels = inputs["input_ids"].masked_fill(completion == 0, -100)
        outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], labels=labels,
                        use_cache=False, fused_lm_head=True)  # fmt: skip
        mask = completion[:, 1:].to(outputs.log_probs.dtype)
        per_token = outputs.log_probs[:, -mask.size(1) :]
        sums, counts = (per_token * mask).sum(dim=1), mask.sum(dim=1).clamp(min=1)
        chosen_sum, _ = sums.chunk(2, dim=0)
        chosen_count, _ = counts.chunk(2, dim=0)
        chosen_mean, rejected_mean = (sums / counts).chunk(2, dim=0)  # the batch is [chosen..., rejected...]
        nll = -chosen_sum.sum() / chosen_count.sum()
        loss, log_odds = orpo_loss(chosen_mean, rejected_mean, nll, self.beta)
        gather = self.accelerator.gather_for_metrics
        metrics = self._metrics[mode]
        metrics["log_odds"].append(gather(log_odds.detach()).mean().item())
        metrics["rewards/accuracies"].append(gather((log_odds.detach() > 0).float()).mean().item())
        metrics["rewards/margins"].append(gather(self.beta * (chosen_mean - rejected_mean).detach()).mean().item())
        metrics["nll_loss"].append(gather(nll.detach()).mean().item())
        if return_outputs:
            return loss, outputs
        return loss
