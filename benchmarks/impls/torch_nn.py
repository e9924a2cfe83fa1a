"""PyTorch (CPU, eager): ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` with ``batch_first=True``.

Forward runs under ``torch.no_grad()``; the training step is the forward, the
MSE and ``torch.autograd.grad`` of it with respect to all the layer's parameters.
"""

from __future__ import annotations

import numpy as np
import torch

from ._common import Built, sizes, zrn_to_rzn

MODULES = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}


def torch_weights(cell, w):
    """Reference weights as ``weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0``."""
    if cell == "gru":
        return [
            zrn_to_rzn(w.kernel).T,
            zrn_to_rzn(w.recurrent_kernel).T,
            zrn_to_rzn(w.bias),
            zrn_to_rzn(w.recurrent_bias),
        ]
    return [w.kernel.T, w.recurrent_kernel.T, w.bias, np.zeros_like(w.bias)]


def build(cell, weights, x, target):
    I, H = sizes(weights)
    module = MODULES[cell](I, H, batch_first=True)
    params = list(module.parameters())
    with torch.no_grad():
        for param, value in zip(params, torch_weights(cell, weights), strict=True):
            param.copy_(torch.from_numpy(np.ascontiguousarray(value)))
    x = torch.from_numpy(np.ascontiguousarray(x))
    target = torch.from_numpy(np.ascontiguousarray(target))

    def forward(x):
        with torch.no_grad():
            return module(x)[0]  # (B, T, H)

    def train(x, target):
        loss = torch.mean((module(x)[0] - target) ** 2)
        return torch.autograd.grad(loss, params)

    return Built(forward, (x,), train, (x, target), shares_weights=True, framework="torch")


IMPLS = {"torch": build}
