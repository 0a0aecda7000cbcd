"""The CPU training paths of the attention, each against transformers' own, in one process, interleaved.

A decoder of SmolLM2-135M's shapes (hidden 576, 9 query heads and 3 key/value heads of 64, SwiGLU 1536; random
weights, frozen; ``--layers`` of them) runs forward and backward on a padded batch (so transformers builds an
attention mask, as in a CPU training step's pieces), three ways in turn, ``--repeats`` times each:

- transformers' own (the key/value heads repeated for each query head, ``rotate_half`` for the rotary embedding);
- grouped key/value heads given to torch as they are (``lora_core/grouped_attention.py``);
- that and the rotary embedding in one autograd step (``lora_core/rotary.py``).

Interleaving the three within seconds keeps the machine's drift out of the ratios; medians are reported, with
the ratio to transformers' own.

    .venv/bin/python bench/attention_paths.py [--layers 6] [--repeats 10] [--rows 3] [--length 340]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--rows", type=int, default=3)
    parser.add_argument("--length", type=int, default=340)
    args = parser.parse_args()
    if min(args.layers, args.repeats, args.rows) < 1 or args.length < 4:
        parser.exit(2, "--layers, --repeats and --rows must be at least 1, --length at least 4\n")

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.integrations import sdpa_attention
    from transformers.models.llama import modeling_llama

    from lora_core import grouped_attention, rotary

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=1000, hidden_size=576, intermediate_size=1536, num_hidden_layers=args.layers,
                         num_attention_heads=9, num_key_value_heads=3, head_dim=64,
                         attn_implementation="sdpa")  # fmt: skip
    model = LlamaForCausalLM(config).requires_grad_(False)
    own = (modeling_llama.apply_rotary_pos_emb, sdpa_attention.use_gqa_in_sdpa)
    own = tuple(getattr(f, "__wrapped__", f) for f in own)
    grouped_attention.use_grouped_kv_on_cpu()
    rotary.use_fused_rotary_on_cpu()
    ours = (modeling_llama.apply_rotary_pos_emb, sdpa_attention.use_gqa_in_sdpa)
    ways = {
        "transformers' own": own,
        "grouped key/value heads": (own[0], ours[1]),
        "grouped heads and the rotary embedding in one step": ours,
    }
    ids = torch.randint(0, config.vocab_size, (args.rows, args.length))
    mask = torch.ones_like(ids)
    for row in range(1, args.rows):  # the other rows shorter: padding, so an attention mask
        mask[row, args.length * (args.rows - row) // args.rows :] = 0
    embedded = model.model.embed_tokens(ids).detach()

    def step() -> torch.Tensor:
        inputs = embedded.clone().requires_grad_()
        model.model(inputs_embeds=inputs, attention_mask=mask).last_hidden_state.square().mean().backward()
        return inputs.grad

    times: dict[str, list[float]] = {name: [] for name in ways}
    grads = {}
    for repeat in range(args.repeats + 1):  # the first round warms up
        for name, (rope, gqa) in ways.items():
            modeling_llama.apply_rotary_pos_emb, sdpa_attention.use_gqa_in_sdpa = rope, gqa
            start = time.perf_counter()
            grads[name] = step()
            if repeat:
                times[name].append(time.perf_counter() - start)
    modeling_llama.apply_rotary_pos_emb, sdpa_attention.use_gqa_in_sdpa = ours
    first = next(iter(grads.values()))
    gap = max(float((g - first).abs().max()) for g in grads.values())
    peer = statistics.median(times["transformers' own"])
    print(f"{args.layers} layers of SmolLM2's shapes, batch [{args.rows}, {args.length}] padded, forward and "
          f"backward, {torch.get_num_threads()} threads, {args.repeats} interleaved runs each")  # fmt: skip
    print("| way | ms (median) | min | max | ratio to transformers' own |\n|---|---:|---:|---:|---:|")
    for name, seconds in times.items():
        median = statistics.median(seconds)
        print(f"| {name} | {median * 1000:.1f} | {min(seconds) * 1000:.1f} | {max(seconds) * 1000:.1f} "
              f"| {peer / median:.3f}x |")  # fmt: skip
    print(f"largest difference of the input gradients between the ways: {gap:.1e}")


if __name__ == "__main__":
    main()
