"""Writes the binding tests' fixtures: a tiny TorchScript module and what
PyTorch computes with it. Run through `make fixtures`."""
import json
import os

import torch

here = os.path.dirname(os.path.abspath(__file__))
torch.manual_seed(0)


class TinyMLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(3, 4)
        self.fc2 = torch.nn.Linear(4, 2)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


m = TinyMLP().eval()
x = torch.tensor([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]])
traced = torch.jit.trace(m, x)
traced.save(os.path.join(here, "tiny_mlp.pt"))
with torch.no_grad():
    y = traced(x)
ref = {
    "input": x.tolist(),
    "output": y.tolist(),
    "parameters": {k: v.flatten().tolist() for k, v in m.state_dict().items()},
    "shapes": {k: list(v.shape) for k, v in m.state_dict().items()},
    "torch_version": torch.__version__,
}
with open(os.path.join(here, "tiny_mlp.json"), "w") as f:
    json.dump(ref, f, indent=1)
print("wrote tiny_mlp.pt and tiny_mlp.json")
