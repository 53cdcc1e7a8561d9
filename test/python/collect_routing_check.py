"""Runs scripts/collect_routing.py's counting on tiny PyTorch models with known routing and writes
what it collected, for test/collect-routing.test.ts to check against counts it computes itself.

The tiny models route token t at MoE layer l to experts (t + l) % E (weight 0.75) and
(2t + l + 1) % E (0.25; the next expert when both are equal). Three interfaces:
- "experts": transformers >= 5 style, experts(hidden_states, top_k_index, top_k_weights);
- "router-output": the experts module takes something else; the router returns (logits, weights, index);
- "router-logits": the router returns only logits (top-2 of them are the same two experts).
Their generate() calls forward once on the prompt, then once per new token (as a KV cache does),
the next token being (5 · last + 3) % V. Their loss is the input's length (a known value).

    python3 test/python/collect_routing_check.py OUT_DIR
"""
import importlib.util
import json
import os
import sys
from types import SimpleNamespace

import torch
from torch import nn

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
spec = importlib.util.spec_from_file_location("collect_routing", os.path.join(ROOT, "scripts", "collect_routing.py"))
cr = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cr)

E, K, H, V = 8, 2, 4, 50
MOE_LAYERS = [1, 2, 3]


def route(t: torch.Tensor, layer: int) -> torch.Tensor:
    i0 = (t + layer) % E
    i1 = (2 * t + layer + 1) % E
    i1 = torch.where(i1 == i0, (i1 + 1) % E, i1)
    return torch.stack([i0, i1], -1)


class Router(nn.Module):
    def __init__(self, layer: int, kind: str) -> None:
        super().__init__()
        self.layer, self.kind = layer, kind

    def forward(self, h: torch.Tensor):
        idx = route(h[:, 0].round().long(), self.layer)
        w = torch.tensor([0.75, 0.25]).expand(idx.shape[0], 2)
        logits = torch.zeros(idx.shape[0], E)
        logits.scatter_(1, idx, torch.tensor([2.0, 1.0]).expand(idx.shape[0], 2))
        if self.kind == "router-logits":
            return logits
        return logits, w, idx


class Experts(nn.Module):
    """transformers >= 5: called with the chosen experts."""

    def forward(self, hidden_states, top_k_index, top_k_weights):
        return torch.zeros_like(hidden_states)


class OldExperts(nn.Module):
    """Another interface: the block hands over its own routing object."""

    def forward(self, hidden_states, routing):
        return torch.zeros_like(hidden_states)


class MoeBlock(nn.Module):
    def __init__(self, layer: int, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.gate = Router(layer, kind)
        self.experts = Experts() if kind == "experts" else OldExperts()

    def forward(self, h):
        flat = h.reshape(-1, H)
        r = self.gate(flat)
        if self.kind == "experts":
            _, w, idx = r
            return h + self.experts(flat, idx, w).reshape(h.shape)  # as transformers >= 5 calls it
        return h + self.experts(flat, r).reshape(h.shape)


class Layer(nn.Module):
    def __init__(self, layer: int, kind: str) -> None:
        super().__init__()
        self.mlp = MoeBlock(layer, kind) if layer in MOE_LAYERS else nn.Identity()

    def forward(self, h):
        return self.mlp(h)


class Tiny(nn.Module):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.model = nn.Module()
        self.model.layers = nn.ModuleList([Layer(i, kind) for i in range(4)])

    def forward(self, input_ids, labels=None, attention_mask=None):
        h = torch.zeros(*input_ids.shape, H)
        h[..., 0] = input_ids.float()
        for layer in self.model.layers:
            h = layer(h)
        return SimpleNamespace(loss=torch.tensor(float(input_ids.shape[-1])) if labels is not None else None, logits=h)

    def generate(self, input_ids, attention_mask=None, max_new_tokens=1, do_sample=False):
        out = input_ids
        self(input_ids)
        nxt = (input_ids[:, -1:] * 5 + 3) % V
        for _ in range(max_new_tokens - 1):
            out = torch.cat([out, nxt], -1)
            self(nxt)
            nxt = (nxt * 5 + 3) % V
        return torch.cat([out, nxt], -1)


PROMPTS = [[3, 17, 4, 44], [9], [21, 0, 5, 5, 30, 2], [49, 12]]


def collect(kind: str, generate: int, counted: str, loss: bool) -> dict:
    model = Tiny(kind)
    counter = cr.RoutingCounter(E, K)
    counter.counting = {"prompt", "generated"} if counted == "both" else {counted}
    handles = cr.attach(model, counter)
    n, mean_loss = cr.run_prompts(model, [torch.tensor([p]) for p in PROMPTS], counter, generate, loss)
    for h in handles:
        h.remove()
    s = cr.routing_set(f"{kind}-{counted}", n, counted, counter, mean_loss)
    return cr.routing_document("tiny_moe", E, K, "test/python/collect_routing_check.py", counter.layers(), [s], counter.hook)


def main() -> None:
    out = sys.argv[1]
    runs = {
        "experts-prompt": collect("experts", 0, "prompt", True),
        "experts-both": collect("experts", 3, "both", False),
        "experts-generated": collect("experts", 3, "generated", True),
        "router-output": collect("router-output", 0, "prompt", False),
        "router-logits": collect("router-logits", 0, "prompt", False),
    }
    for name, doc in runs.items():
        with open(os.path.join(out, f"{name}.routing.json"), "w", encoding="utf-8") as f:
            json.dump(doc, f)
    # --append semantics: a second set of the same model joins the file; another model is refused.
    first = os.path.join(out, "experts-prompt.routing.json")
    merged = cr.merge_into(first, runs["router-output"])
    with open(os.path.join(out, "appended.routing.json"), "w", encoding="utf-8") as f:
        json.dump(merged, f)
    other = dict(runs["router-output"], model=dict(runs["router-output"]["model"], experts=16))
    try:
        cr.merge_into(first, other)
        refused = ""
    except SystemExit as e:
        refused = str(e)
    json.dump({"prompts": PROMPTS, "E": E, "layers": MOE_LAYERS, "V": V, "refused": refused, "torch": torch.__version__}, open(os.path.join(out, "manifest.json"), "w"))


main()
