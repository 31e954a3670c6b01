"""torch.optim.AdamW on fixed gradients, for tunebook's optimizer parity test.

Prints JSON: the initial weight and bias, the gradient of every step, and the values after
the steps, with weight decay on the matrix only (tunebook never decays biases).
"""
import json

import torch

torch.manual_seed(0)
weight = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
bias = torch.randn(4, dtype=torch.float64, requires_grad=True)
start = {"weight": weight.detach().tolist(), "bias": bias.detach().tolist()}
opt = torch.optim.AdamW([{"params": [weight], "weight_decay": 0.1}, {"params": [bias], "weight_decay": 0.0}],
                        lr=0.01, betas=(0.9, 0.99), eps=1e-8)
grads = []
for _ in range(5):
    gw, gb = torch.randn(3, 4, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
    grads.append({"weight": gw.tolist(), "bias": gb.tolist()})
    weight.grad, bias.grad = gw.clone(), gb.clone()
    opt.step()
print(json.dumps({"start": start, "grads": grads, "end": {"weight": weight.detach().tolist(), "bias": bias.detach().tolist()}}))
