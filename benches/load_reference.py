"""The PyTorch side of benches/load.rs: load a checkpoint's backbone with transformers and run one
forward pass, printing wall time from process start and peak RSS as one JSON line.

Usage: python benches/load_reference.py CHECKPOINT_DIR bf16|f32
"""

import json
import resource
import sys
import time

STARTED = time.time()

import torch  # noqa: E402
from transformers import AutoModel  # noqa: E402

torch.set_num_threads(2)
dtype = {"bf16": torch.bfloat16, "f32": torch.float32}[sys.argv[2]]
# The bench checkpoint's pad id is outside the embedding; a reward model never pads here.
model = AutoModel.from_pretrained(sys.argv[1], torch_dtype=dtype, pad_token_id=None).eval()
ids = torch.tensor([[128000, 128006, 882, 128007, 271, 3923, 374, 220, 17, 10, 17, 30, 128009]])
with torch.no_grad():
    model(ids)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"seconds": time.time() - STARTED, "peak_bytes": peak}))
