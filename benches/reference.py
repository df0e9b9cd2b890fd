"""PyTorch reference throughput: the same checkpoint and token ids as armorm's bench, through
transformers' own decoder of the checkpoint's family (LlamaModel, Qwen3Model, Gemma2Model) + the
ArmoRM heads, in padded batches, on 2 threads.

Run by `cargo bench -p armorm-server --bench throughput` (which writes the inputs file) with
ARMORM_REFERENCE_PYTHON pointing at a Python that has torch + transformers, and by the GPU check
(`armorm-gpu-check bench`, `--device cuda`: the model built on the GPU, sdpa attention, timings
synchronised); prints one JSON line per (workload, dtype, batching), plus the device's GEMM
throughput on the model's linear shapes.

Each configuration is warmed up (one untimed pass over its first batch, which pays PyTorch's
one-time costs), then timed `--repeats` times; the median is reported. Batchings: batches of 8 and
32 in arrival order, and batches of 8 after sorting by length (less padding: what a throughput-minded
PyTorch user would do). The bench compares armorm with the best of them.
"""

import argparse
import json
import statistics
import time

import torch
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModel


def load(model_dir, dtype, device, attn):
    cfg = json.load(open(f"{model_dir}/config.json"))
    keep = {k: v for k, v in cfg.items() if k not in ("architectures", "torch_dtype", "pad_token_id", "model_type")}
    config = AutoConfig.for_model(cfg["model_type"], pad_token_id=None, **keep)
    # Built in its dtype on its device: an 8B model built in f32 on the host would take 32 GB first.
    with torch.device(device):
        backbone = AutoModel.from_config(config, dtype=dtype, attn_implementation=attn).eval()
    state = load_file(f"{model_dir}/model.safetensors", device=device)
    backbone.load_state_dict({k[len("model."):]: v for k, v in state.items() if k.startswith("model.")})
    heads = {k: v.float() for k, v in state.items() if not k.startswith("model.")}
    del state
    return backbone, heads, cfg


def sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def head_forward(heads, cfg, last, gate):
    rewards = last @ heads["regression_layer.weight"].T
    x = gate
    n = cfg["gating_n_hidden"] + 1
    for i in range(n):
        x = x @ heads[f"gating.layers.{i}.weight"].T + heads[f"gating.layers.{i}.bias"]
        if i < n - 1:
            x = torch.relu(x)
    gating = torch.softmax(x / cfg["gating_temperature"], dim=-1) * heads["gating.logit_scale"][0]
    t = heads["reward_transform_matrix"]
    return (gating * (rewards @ t)).sum(-1)


def forward_all(backbone, heads, cfg, items, batch, device):
    """The bare forward loop: right-padded batches in the order given."""
    with torch.inference_mode(), torch.device(device):
        for b in range(0, len(items), batch):
            chunk = items[b : b + batch]
            longest = max(len(it["ids"]) for it in chunk)
            ids = torch.zeros(len(chunk), longest, dtype=torch.long)
            mask = torch.zeros(len(chunk), longest, dtype=torch.long)
            for i, it in enumerate(chunk):
                ids[i, : len(it["ids"])] = torch.tensor(it["ids"])
                mask[i, : len(it["ids"])] = 1
            h = backbone(input_ids=ids, attention_mask=mask).last_hidden_state.float()
            rows = torch.arange(len(chunk))
            last = h[rows, torch.tensor([len(it["ids"]) - 1 for it in chunk])]
            gate = h[rows, torch.tensor([it["gate"] for it in chunk])]
            head_forward(heads, cfg, last, gate)


def run(backbone, heads, cfg, items, batch, repeats, device):
    """Median conversations/s over `repeats` timed passes, after a warm-up batch."""
    forward_all(backbone, heads, cfg, items[:batch], batch, device)
    sync(device)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        forward_all(backbone, heads, cfg, items, batch, device)
        sync(device)
        rates.append(len(items) / (time.perf_counter() - start))
    return statistics.median(rates)


def gemm_gflops(cfg, dtype, device, tokens=1024, repeats=5):
    h, i = cfg["hidden_size"], cfg["intermediate_size"]
    hd = cfg.get("head_dim") or h // cfg["num_attention_heads"]
    qkv = (cfg["num_attention_heads"] + 2 * cfg["num_key_value_heads"]) * hd
    flops, seconds = 0.0, 0.0
    for k, n in ((h, qkv), (cfg["num_attention_heads"] * hd, h), (h, 2 * i), (i, h)):
        a, w = torch.randn(tokens, k, dtype=dtype, device=device), torch.randn(k, n, dtype=dtype, device=device)
        a @ w
        sync(device)
        t = time.perf_counter()
        for _ in range(repeats):
            a @ w
        sync(device)
        seconds += time.perf_counter() - t
        flops += 2.0 * tokens * k * n * repeats
    return flops / seconds / 1e9


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--inputs", required=True)
    p.add_argument("--dtypes", default="f32,bf16")
    p.add_argument("--batchings", default="8,32,8-sorted")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--attn", default=None, help="attn_implementation (default: transformers' choice)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    workloads = json.load(open(args.inputs))["workloads"]
    for name in args.dtypes.split(","):
        dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[name]
        backbone, heads, cfg = load(args.model, dtype, args.device, args.attn)
        print(json.dumps({"gemm_gflops": gemm_gflops(cfg, dtype, args.device), "dtype": name}), flush=True)
        for w in workloads:
            for batching in args.batchings.split(","):
                batch, _, order = batching.partition("-")
                items = w["items"]
                if order == "sorted":
                    items = sorted(items, key=lambda it: len(it["ids"]))
                cps = run(backbone, heads, cfg, items, int(batch), args.repeats, args.device)
                line = {"workload": w["name"], "dtype": name, "batching": batching, "conv_per_s": cps}
                print(json.dumps(line), flush=True)
        # Free this dtype's model before the next one loads (a 2B-shaped model in f32 is 10 GB).
        del backbone, heads


if __name__ == "__main__":
    main()
