"""The scriptable module the bettertransformer target saves: embeddings, PyTorch's fused encoder, heads.

An encoder model rebuilt around ``torch.nn.TransformerEncoder`` (batch first, post-norm), whose
eval-mode fastpath runs fused kernels and, given a key padding mask, converts the batch to a nested
tensor so padding tokens are skipped (padding positions come back as zeros). ``torch.jit.script``
keeps that path, so plain ``torch.jit.load`` runs it. The embeddings and heads are small modules
of our own because transformers' do not script; they reuse the source's weights as they are.

This module imports torch at the top: import it only inside functions (bettertransformer.py does).
It holds no architecture knowledge (that is the layer maps' job) and builds nothing from a model.
"""

from typing import Final

import torch
from torch import Tensor, nn

NONE, TANH, RELU, GELU = 0, 1, 2, 3
ACTIVATIONS = {"none": NONE, "tanh": TANH, "relu": RELU, "gelu": GELU}


def _activate(x: Tensor, code: int) -> Tensor:
    # literals, not the constants above: TorchScript cannot read module-level Python ints
    if code == 1:  # TANH
        return torch.tanh(x)
    if code == 2:  # RELU
        return torch.relu(x)
    if code == 3:  # GELU
        return nn.functional.gelu(x)
    return x


class Embeddings(nn.Module):
    """Word (+ token type) + position embeddings, layer norm, optional projection (ELECTRA).

    ``padding_offset`` positions count real tokens from ``padding_idx + 1`` (RoBERTa, XLM-RoBERTa);
    otherwise positions are 0..S-1 (BERT, DistilBERT, ELECTRA).
    """

    padding_offset: Final[bool]
    padding_idx: Final[int]

    def __init__(self, word: nn.Embedding, position: nn.Embedding, token_type: list[nn.Embedding], norm: nn.Module,
                 project: list[nn.Linear], padding_offset: bool, padding_idx: int) -> None:
        super().__init__()
        self.word = word
        self.position = position
        self.token_type = nn.ModuleList(token_type)  # zero or one: a ModuleList scripts, an Optional does not
        self.norm = norm
        self.project = nn.ModuleList(project)
        self.padding_offset = padding_offset
        self.padding_idx = padding_idx

    def forward(self, input_ids: Tensor, token_type_ids: Tensor) -> Tensor:
        if self.padding_offset:  # as transformers' create_position_ids_from_input_ids
            real = input_ids.ne(self.padding_idx).int()
            positions = (torch.cumsum(real, dim=1).type_as(real) * real).long() + self.padding_idx
        else:
            positions = torch.arange(input_ids.size(1), device=input_ids.device).unsqueeze(0)
        x = self.word(input_ids)
        for embedding in self.token_type:  # the order transformers adds them in (float sums are not associative)
            x = x + embedding(token_type_ids)
        x = x + self.position(positions)
        x = self.norm(x)
        for linear in self.project:
            x = linear(x)
        return x


class Head(nn.Module):
    """Linear layers with activations, on the first token or on every token; ``split`` cuts the last
    axis into start and end logits (question answering)."""

    first_token: Final[bool]
    split: Final[bool]
    activations: list[int]

    def __init__(self, layers: list[nn.Linear], activations: list[int], first_token: bool, split: bool) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.activations = activations
        self.first_token = first_token
        self.split = split

    def forward(self, hidden: Tensor) -> list[Tensor]:
        x = hidden[:, 0] if self.first_token else hidden
        for i, layer in enumerate(self.layers):
            x = _activate(layer(x), self.activations[i])
        if self.split:
            parts = x.split(1, dim=-1)
            return [parts[0].squeeze(-1).contiguous(), parts[1].squeeze(-1).contiguous()]
        return [x]


class FastpathEncoder(nn.Module):
    """``forward(input_ids, attention_mask=None, token_type_ids=None) -> list of outputs``: the hidden
    states first if ``return_hidden``, then each head's outputs, in the order the config lists them."""

    return_hidden: Final[bool]

    def __init__(self, embeddings: Embeddings, encoder: nn.TransformerEncoder, heads: list[Head],
                 return_hidden: bool) -> None:
        super().__init__()
        self.embeddings = embeddings
        self.encoder = encoder
        self.heads = nn.ModuleList(heads)
        self.return_hidden = return_hidden

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                token_type_ids: Tensor | None = None) -> list[Tensor]:
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        x = self.embeddings(input_ids, token_type_ids)
        padding: Tensor | None = None
        if attention_mask is not None:
            padding = attention_mask == 0  # PyTorch's key padding mask is True where a token is ignored
        hidden = self.encoder(x, src_key_padding_mask=padding)
        out: list[Tensor] = []
        if self.return_hidden:
            out.append(hidden)
        for head in self.heads:
            out.extend(head(hidden))
        return out
