"""The authors' training procedure on the bench's synthetic data, timed, for benches/train.rs.

Stage 1: scikit-learn `Ridge(alpha, fit_intercept=False)` for every objective and every alpha on that
objective's rated rows (the RLHFlow armo-rm stage-1 script's loop), alpha chosen by validation MSE,
on the split armorm documents. Stage 2: the same gating MLP steps in PyTorch (AdamW, batch of pairs).
Prints one JSON object. Run by the bench with ARMORM_REFERENCE_PYTHON (numpy, scikit-learn, torch).
"""

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import Ridge

# The split armorm documents, from the training fixtures' generator (one Python definition of it).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "train"))
from armorm_split import validation_mask  # noqa: E402

ALPHAS = [1e-4, 1e-3, 1e-2, 1e-1, 1.0, 1e1, 1e2, 1e3, 1e4]


def stage1(x, y):
    chosen = []
    start = time.perf_counter()
    for j in range(y.shape[1]):
        rows = np.flatnonzero(~np.isnan(y[:, j]))
        val = validation_mask(0, rows)
        xs, ys = x[rows].astype(np.float64), y[rows, j]
        best = None
        for alpha in ALPHAS:
            clf = Ridge(alpha=alpha, fit_intercept=False).fit(xs[~val], ys[~val])
            mse = float(np.mean((clf.predict(xs[val]) - ys[val]) ** 2))
            if best is None or mse < best[0]:
                best = (mse, alpha)
        chosen.append(best[1])
    return time.perf_counter() - start, chosen


def stage2(d, k, steps, batch, hidden, n_hidden):
    torch.manual_seed(0)
    torch.set_num_threads(2)
    n = 4 * batch
    prompts, chosen, rejected = torch.randn(n, d), torch.randn(n, k), torch.randn(n, k)
    widths = [d] + [hidden] * n_hidden
    layers = torch.nn.ModuleList([torch.nn.Linear(a, b) for a, b in zip(widths, widths[1:])] + [torch.nn.Linear(widths[-1], k)])
    scale = torch.nn.Parameter(torch.ones(1))
    opt = torch.optim.AdamW(list(layers.parameters()) + [scale], lr=1e-3, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)

    def step():
        idx = torch.randint(0, n, (batch,))
        x = prompts[idx]
        for i, layer in enumerate(layers):
            x = layer(x)
            if i < len(layers) - 1:
                x = torch.nn.functional.dropout(torch.relu(x), p=0.2, training=True)
        g = torch.softmax(x / 10.0, dim=-1) * scale[0]
        m = (g * (chosen[idx] - rejected[idx])).sum(-1)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(m, torch.ones_like(m))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()

    step()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps / (time.perf_counter() - start)


def main():
    x_path, y_path, d, k, steps, batch, hidden, n_hidden = sys.argv[1:9]
    x, y = np.load(x_path, mmap_mode="r"), np.load(y_path)
    secs, alphas = stage1(np.asarray(x), y)
    sps = stage2(int(d), int(k), int(steps), int(batch), int(hidden), int(n_hidden))
    print(json.dumps({"stage1_secs": secs, "alphas": alphas, "stage2_steps_per_s": sps}))


if __name__ == "__main__":
    main()
