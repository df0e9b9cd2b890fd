"""ArmoRM-style reward model for transformers, written into checkpoints by `armorm train`.

Load with `AutoModelForSequenceClassification.from_pretrained(path, trust_remote_code=True)` in any
dtype (the backbone computes in it; the heads stay in f32, as armorm keeps them). For each row of a
batch (rendered with the checkpoint's chat template; left or right padding, the attention mask says
which tokens are real, and positions count real tokens only):

    rewards      = regression_layer(h[last real token])                 one per objective
    gating       = softmax(mlp(h[gate]) / temperature) * logit_scale    h[gate]: start of the last
                                                                        occurrence of gating_pattern
    coefficients = gating @ reward_transform_matrix.T
    score        = sum(rewards * coefficients)                          also `logits`, shape (batch, 1)

One class per backbone family armorm trains on (Llama, Qwen2, Qwen3, Gemma-2); the backbone is the
family's own transformers model.
"""

from dataclasses import dataclass
from typing import List, Optional

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel, Gemma2Config, LlamaConfig, PreTrainedModel, Qwen2Config, Qwen3Config
from transformers.utils import ModelOutput


class GatingNetwork(nn.Module):
    def __init__(self, in_features: int, out_features: int, temperature: float, hidden_dim: int, n_hidden: int):
        super().__init__()
        widths = [in_features] + [hidden_dim] * n_hidden
        linears = [nn.Linear(a, b) for a, b in zip(widths, widths[1:])]
        self.layers = nn.ModuleList(linears + [nn.Linear(widths[-1], out_features)])
        self.logit_scale = nn.Parameter(torch.ones(1))
        self.temperature = temperature

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x in f32; every product in f32 whatever dtype the weights were loaded in."""
        for i, layer in enumerate(self.layers):
            x = F.linear(x, layer.weight.float(), layer.bias.float())
            if i + 1 < len(self.layers):
                x = F.relu(x)
        return F.softmax(x / self.temperature, dim=-1) * self.logit_scale.float()[0]


@dataclass
class RewardOutput(ModelOutput):
    logits: Optional[torch.FloatTensor] = None
    score: Optional[torch.FloatTensor] = None
    rewards: Optional[torch.FloatTensor] = None
    gating_output: Optional[torch.FloatTensor] = None
    coefficients: Optional[torch.FloatTensor] = None


def last_occurrence(ids: List[int], pattern: List[int]) -> int:
    for start in range(len(ids) - len(pattern), -1, -1):
        if ids[start : start + len(pattern)] == pattern:
            return start
    raise ValueError("the gating pattern (the tokens that open the final assistant turn) is not in the input")


class RewardModelWithGating(PreTrainedModel):
    base_model_prefix = "model"
    # Loaded in bf16 or f16, the heads keep their f32 weights (the strict list covers bf16 too).
    _keep_in_fp32_modules_strict = ["regression_layer", "gating", "reward_transform_matrix"]

    def __init__(self, config):
        super().__init__(config)
        self.model = AutoModel.from_config(config)
        k = config.num_objectives
        self.regression_layer = nn.Linear(config.hidden_size, k, bias=False)
        self.gating = GatingNetwork(
            config.hidden_size, k, config.gating_temperature, config.gating_hidden_dim, config.gating_n_hidden
        )
        self.reward_transform_matrix = nn.Parameter(torch.eye(k), requires_grad=False)
        self.gating_pattern = list(config.gating_pattern)
        self.post_init()

    def forward(self, input_ids: torch.LongTensor, attention_mask: Optional[torch.Tensor] = None, **kwargs):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        # Left padding must not shift the rotary positions: count real tokens only.
        position_ids = (attention_mask.long().cumsum(dim=-1) - 1).clamp(min=0)
        hidden = self.model(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids
        ).last_hidden_state
        last, gate = [], []
        for ids, mask in zip(input_ids.tolist(), attention_mask.tolist()):
            real = [i for i, m in enumerate(mask) if m]
            last.append(real[-1])
            gate.append(real[last_occurrence([ids[i] for i in real], self.gating_pattern)])
        rows = torch.arange(input_ids.shape[0], device=hidden.device)
        h_last = hidden[rows, torch.tensor(last, device=hidden.device)].float()
        h_gate = hidden[rows, torch.tensor(gate, device=hidden.device)].float()
        rewards = F.linear(h_last, self.regression_layer.weight.float())
        gating = self.gating(h_gate)
        coefficients = gating @ self.reward_transform_matrix.float().T
        score = (rewards * coefficients).sum(dim=-1, keepdim=True)
        return RewardOutput(
            logits=score, score=score, rewards=rewards, gating_output=gating, coefficients=coefficients
        )


class LlamaForRewardModelWithGating(RewardModelWithGating):
    config_class = LlamaConfig


class Qwen2ForRewardModelWithGating(RewardModelWithGating):
    config_class = Qwen2Config


class Qwen3ForRewardModelWithGating(RewardModelWithGating):
    config_class = Qwen3Config


class Gemma2ForRewardModelWithGating(RewardModelWithGating):
    config_class = Gemma2Config
