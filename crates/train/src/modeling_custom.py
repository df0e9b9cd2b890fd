"""ArmoRM-style reward model for transformers, written into checkpoints by `armorm train`.

Load with `AutoModelForSequenceClassification.from_pretrained(path, trust_remote_code=True)`. For each
conversation (rendered with the checkpoint's chat template, one sequence per row, right padding):

    rewards      = regression_layer(h[last token])                      one per objective
    gating       = softmax(mlp(h[gate]) / temperature) * logit_scale    h[gate]: start of the last
                                                                        occurrence of gating_pattern
    coefficients = gating @ reward_transform_matrix.T
    score        = sum(rewards * coefficients)
"""

from dataclasses import dataclass
from typing import List, Optional

import torch
import torch.nn.functional as F
from torch import nn
from transformers import LlamaModel, LlamaPreTrainedModel
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
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i + 1 < len(self.layers):
                x = F.relu(x)
        return F.softmax(x / self.temperature, dim=-1) * self.logit_scale[0]


@dataclass
class RewardOutput(ModelOutput):
    score: Optional[torch.FloatTensor] = None
    rewards: Optional[torch.FloatTensor] = None
    gating_output: Optional[torch.FloatTensor] = None
    coefficients: Optional[torch.FloatTensor] = None


def last_occurrence(ids: List[int], pattern: List[int]) -> int:
    for start in range(len(ids) - len(pattern), -1, -1):
        if ids[start : start + len(pattern)] == pattern:
            return start
    raise ValueError("the gating pattern (the tokens that open the final assistant turn) is not in the input")


class LlamaForRewardModelWithGating(LlamaPreTrainedModel):
    def __init__(self, config):
        super().__init__(config)
        self.model = LlamaModel(config)
        k = config.num_objectives
        self.regression_layer = nn.Linear(config.hidden_size, k, bias=False)
        self.gating = GatingNetwork(
            config.hidden_size, k, config.gating_temperature, config.gating_hidden_dim, config.gating_n_hidden
        )
        self.reward_transform_matrix = nn.Parameter(torch.eye(k), requires_grad=False)
        self.gating_pattern = list(config.gating_pattern)
        self.post_init()

    def forward(self, input_ids: torch.LongTensor, attention_mask: Optional[torch.Tensor] = None, **kwargs):
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if attention_mask is None:
            lengths = [input_ids.shape[1]] * input_ids.shape[0]
        else:
            lengths = attention_mask.sum(dim=1).tolist()
        rows = torch.arange(input_ids.shape[0], device=hidden.device)
        last = torch.tensor([n - 1 for n in lengths], device=hidden.device)
        gate = torch.tensor(
            [last_occurrence(ids[:n], self.gating_pattern) for ids, n in zip(input_ids.tolist(), lengths)],
            device=hidden.device,
        )
        rewards = self.regression_layer(hidden[rows, last].float())
        gating = self.gating(hidden[rows, gate].float())
        coefficients = gating @ self.reward_transform_matrix.float().T
        score = (rewards * coefficients).sum(dim=-1, keepdim=True)
        return RewardOutput(score=score, rewards=rewards, gating_output=gating, coefficients=coefficients)
