#!/usr/bin/env python3
"""Collect MoE routing statistics for MoE Studio: the `moe-studio.routing/1` file.

Runs where the model runs (a machine with the weights and a GPU); needs Python 3.9+, PyTorch and
transformers >= 5, nothing else. It never edits the model: it only observes which experts the
router chooses for each token of each prompt.

    python scripts/collect_routing.py MODEL PROMPTS.jsonl --set refusal -o refusal.routing.json
        [--generate N] [--count prompt|generated|both] [--chat-template] [--loss] [--append]
        [--max-prompts N] [--dtype auto|bfloat16|float16|float32] [--device cuda] [--trust-remote-code]

PROMPTS.jsonl holds one prompt per line: a JSON string, or an object with "prompt" (or "text"),
or "messages" (a chat, formatted with the tokenizer's chat template).

How routing is observed, per MoE layer (the layer number is read from the module's name,
`...layers.N...`):
- transformers >= 5: every MoE family's experts module is called as
  experts(hidden_states, top_k_index, top_k_weights); a forward pre-hook reads the chosen experts
  and their routing weights there.
- otherwise, the router's output: a tuple holding an integer [tokens, k] tensor (the chosen
  experts) and a float tensor of the same shape (their weights); a router that returns only its
  logits [tokens, experts] is read as softmax + top-k of the logits, which is exact only for
  routers without a selection bias or group limits (the file then says "hook": "router-logits").

For every prompt, batch size 1 (no padding is ever counted). `selected[i][e]` counts the tokens
that had expert e among their top-k at layers[i]; `gate_weight[i][e]` sums the routing weights it
received. Saliency (REAP) needs each expert's own output and is not measured: it is written as
null.
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import re
import sys
from typing import Any, Iterable, Optional

import torch

FORMAT = "moe-studio.routing/1"
LAYER_RE = re.compile(r"(?:^|\.)layers\.(\d+)\.")
EXPERT_KEYS = ("n_routed_experts", "num_local_experts", "num_experts", "moe_num_experts")
TOP_K_KEYS = ("num_experts_per_tok", "moe_k", "top_k", "moe_topk")


class RoutingCounter:
    """Per MoE layer: tokens routed, tokens per expert among the top-k, routing weight per expert."""

    def __init__(self, experts: int, top_k: int) -> None:
        self.experts = experts
        self.top_k = top_k
        self.tokens: dict[int, int] = {}
        self.selected: dict[int, list[int]] = {}
        self.gate_weight: dict[int, list[float]] = {}
        # Which forward pass is running ("prompt", "generated", or "off") and which ones count.
        self.phase = "prompt"
        self.counting: set[str] = {"prompt"}
        # Where routing was read: "experts", "router-output" or "router-logits" (see the docstring).
        self.hook = ""

    def add(self, layer: int, top_k_index: torch.Tensor, top_k_weights: Optional[torch.Tensor]) -> None:
        if self.phase not in self.counting:
            return
        idx = top_k_index.detach().reshape(-1, top_k_index.shape[-1]).long().cpu()
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= self.experts):
            raise ValueError(f"layer {layer}: expert index outside 0..{self.experts - 1}")
        hit = torch.zeros(idx.shape[0], self.experts, dtype=torch.bool)
        hit.scatter_(1, idx, True)
        counts = hit.sum(0).tolist()
        sel = self.selected.setdefault(layer, [0] * self.experts)
        for e, c in enumerate(counts):
            sel[e] += int(c)
        self.tokens[layer] = self.tokens.get(layer, 0) + int(idx.shape[0])
        if top_k_weights is not None:
            w = top_k_weights.detach().reshape(idx.shape).double().cpu()
            sums = torch.zeros(self.experts, dtype=torch.float64)
            sums.index_add_(0, idx.reshape(-1), w.reshape(-1))
            g = self.gate_weight.setdefault(layer, [0.0] * self.experts)
            for e, v in enumerate(sums.tolist()):
                g[e] += v

    def layers(self) -> list[int]:
        return sorted(self.tokens)


def _forward_params(module: torch.nn.Module) -> list[str]:
    try:
        return list(inspect.signature(module.forward).parameters)
    except (TypeError, ValueError):
        return []


def _layer_of(name: str) -> Optional[int]:
    m = LAYER_RE.search(name + ".")
    return int(m.group(1)) if m else None


def attach(model: torch.nn.Module, counter: RoutingCounter) -> list[Any]:
    """Registers the hooks (sets counter.hook); returns their handles."""
    experts = [(n, m) for n, m in model.named_modules() if "top_k_index" in _forward_params(m) and _layer_of(n) is not None]
    handles: list[Any] = []
    if experts:
        seen: dict[int, str] = {}
        for name, _ in experts:
            layer = _layer_of(name)
            if layer in seen:
                raise RuntimeError(f"two experts modules in layer {layer}: {seen[layer]} and {name}")
            seen[layer] = name
        counter.hook = "experts"
        for name, module in experts:
            handles.append(_experts_hook(module, _layer_of(name), counter))
        return handles
    # Routers: a module named …gate / …router / …wg, or whose class says Router; per layer the
    # outermost one (Hunyuan's mlp.gate holds mlp.gate.wg).
    routers: dict[int, tuple[str, torch.nn.Module]] = {}
    for name, module in model.named_modules():
        layer = _layer_of(name)
        last = name.rsplit(".", 1)[-1]
        if layer is None or not (last in ("gate", "router", "wg") or "router" in type(module).__name__.lower()):
            continue
        if layer not in routers or len(name) < len(routers[layer][0]):
            routers[layer] = (name, module)
    if not routers:
        raise RuntimeError("found no MoE layer: no experts module taking top_k_index and no router module (…layers.N….gate / .router)")
    counter.hook = "router-output"
    for layer, (name, module) in routers.items():

        def post(mod: Any, args: tuple, output: Any, layer: int = layer, name: str = name) -> None:
            idx, w = _routing_from_output(output, counter.top_k, counter.experts)
            if idx is None:
                raise RuntimeError(f"{name}: cannot read the chosen experts from the router's output")
            if w is None:
                counter.hook = "router-logits"
            counter.add(layer, idx, w)

        handles.append(module.register_forward_hook(post))
    return handles


def _experts_hook(module: torch.nn.Module, layer: int, counter: RoutingCounter) -> Any:
    """A forward pre-hook reading top_k_index (and top_k_weights) from the experts module's call."""
    params = _forward_params(module)
    i_idx = params.index("top_k_index")
    i_w = params.index("top_k_weights") if "top_k_weights" in params else None

    def pre(mod: Any, args: tuple, kwargs: Optional[dict] = None) -> None:
        kwargs = kwargs or {}
        idx = args[i_idx] if len(args) > i_idx else kwargs.get("top_k_index")
        w = None
        if i_w is not None:
            w = args[i_w] if len(args) > i_w else kwargs.get("top_k_weights")
        if idx is None:
            raise RuntimeError(f"layer {layer}: the experts module was called without top_k_index")
        counter.add(layer, idx, w)

    try:
        return module.register_forward_pre_hook(pre, with_kwargs=True)
    except TypeError:  # PyTorch < 2.0: positional arguments only
        return module.register_forward_pre_hook(lambda mod, args: pre(mod, args))


def _routing_from_output(output: Any, top_k: int, experts: int) -> tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
    """The chosen experts (and their weights) in a router's output, or top-k of its logits."""
    tensors = [t for t in (output if isinstance(output, (tuple, list)) else [output]) if isinstance(t, torch.Tensor)]
    idx = next((t for t in tensors if not t.is_floating_point() and t.shape[-1] == top_k), None)
    if idx is not None:
        w = next((t for t in tensors if t.is_floating_point() and t.shape == idx.shape), None)
        return idx, w
    logits = next((t for t in tensors if t.is_floating_point() and t.shape[-1] == experts), None)
    if logits is None:
        return None, None
    return torch.topk(logits.reshape(-1, experts).float(), top_k, dim=-1).indices, None


def config_counts(config: Any) -> tuple[str, int, int]:
    """model_type, routed experts per layer and top-k from a transformers config (text_config first)."""
    for c in (getattr(config, "text_config", None), config):
        if c is None:
            continue
        e = next((getattr(c, k) for k in EXPERT_KEYS if isinstance(getattr(c, k, None), int)), None)
        k = next((getattr(c, k) for k in TOP_K_KEYS if isinstance(getattr(c, k, None), int)), None)
        if e and k:
            return str(getattr(config, "model_type", "")), e, k
    raise RuntimeError("the config states no routed expert count and top-k: is this a MoE model?")


def run_prompts(
    model: Any,
    prompts: Iterable[torch.Tensor],
    counter: RoutingCounter,
    generate: int = 0,
    loss: bool = False,
) -> tuple[int, Optional[float]]:
    """Runs each prompt's token ids [1, n]; returns the prompts run and the mean next-token loss."""
    count = 0
    loss_sum = 0.0
    loss_tokens = 0
    calls = {"n": 0}

    def phase(mod: Any, args: Any) -> None:
        # The first forward of a generate call reads the prompt; later ones one new token each.
        counter.phase = "prompt" if calls["n"] == 0 else "generated"
        calls["n"] += 1

    with torch.no_grad():
        for ids in prompts:
            count += 1
            if generate > 0:
                calls["n"] = 0
                h = model.register_forward_pre_hook(phase)
                try:
                    model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=generate, do_sample=False)
                finally:
                    h.remove()
            if loss or generate == 0:
                counter.phase = "prompt" if generate == 0 else "off"
                out = model(input_ids=ids, labels=ids if loss else None)
                if loss and ids.shape[-1] > 1:
                    loss_sum += float(out.loss) * (ids.shape[-1] - 1)
                    loss_tokens += ids.shape[-1] - 1
    return count, (loss_sum / loss_tokens if loss_tokens else None)


def routing_set(name: str, prompts: int, counted: str, counter: RoutingCounter, loss: Optional[float]) -> dict[str, Any]:
    layers = counter.layers()
    return {
        "name": name,
        "prompts": prompts,
        "counted": counted,
        "tokens": [counter.tokens[l] for l in layers],
        "selected": [counter.selected[l] for l in layers],
        "gate_weight": [[round(v, 6) for v in counter.gate_weight[l]] for l in layers] if counter.gate_weight else None,
        "saliency": None,
        "loss": loss,
    }


def routing_document(model_type: str, experts: int, top_k: int, source: str, layers: list[int], sets: list[dict[str, Any]], hook: str) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "model": {"model_type": model_type, "layers": layers, "experts": experts, "top_k": top_k, "source": source},
        "sets": sets,
        "collector": {"script": "scripts/collect_routing.py", "hook": hook, "torch": torch.__version__},
    }


def merge_into(path: str, doc: dict[str, Any]) -> dict[str, Any]:
    """`doc`'s set appended to the file at `path`, which must describe the same model."""
    with open(path, encoding="utf-8") as f:
        old = json.load(f)
    if old.get("format") != FORMAT:
        raise SystemExit(f"{path}: not a {FORMAT} file")
    for key in ("model_type", "layers", "experts", "top_k"):
        if old["model"].get(key) != doc["model"][key]:
            raise SystemExit(f"{path}: model.{key} is {old['model'].get(key)!r} there, {doc['model'][key]!r} here: cannot append")
    names = {s["name"] for s in old["sets"]}
    for s in doc["sets"]:
        if s["name"] in names:
            raise SystemExit(f"{path}: already holds a set named {s['name']!r}")
    old["sets"].extend(doc["sets"])
    return old


def read_prompts(path: str, tokenizer: Any, chat: bool, limit: Optional[int]) -> list[torch.Tensor]:
    out: list[torch.Tensor] = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            item = json.loads(line)
            if isinstance(item, str):
                item = {"prompt": item}
            messages = item.get("messages")
            text = item.get("prompt", item.get("text"))
            if messages is None and text is None:
                raise SystemExit(f"{path}:{n}: expected a string or an object with \"prompt\", \"text\" or \"messages\"")
            if chat or messages is not None:
                msgs = messages if messages is not None else [{"role": "user", "content": text}]
                ids = tokenizer.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt")
                if not isinstance(ids, torch.Tensor):
                    ids = ids["input_ids"]
            else:
                ids = tokenizer(text, return_tensors="pt")["input_ids"]
            out.append(ids)
            if limit and len(out) >= limit:
                break
    if not out:
        raise SystemExit(f"{path}: no prompts")
    return out


def load_model(name: str, dtype_name: str, device: str, trust_remote_code: bool) -> tuple[Any, Any]:
    """The tokenizer and the model, in eval mode on `device`; vision-language MoE models (Qwen3-VL,
    GLM-4.5V) through the image-text-to-text class when the causal-LM one does not take them."""
    import transformers  # only here: the counting above needs only torch

    tokenizer = transformers.AutoTokenizer.from_pretrained(name, trust_remote_code=trust_remote_code)
    dtype = dtype_name if dtype_name == "auto" else getattr(torch, dtype_name)
    errors = []
    for cls in (transformers.AutoModelForCausalLM, transformers.AutoModelForImageTextToText):
        try:
            try:
                model = cls.from_pretrained(name, dtype=dtype, device_map=device, trust_remote_code=trust_remote_code)
            except ImportError:  # device_map needs accelerate: load, then move
                model = cls.from_pretrained(name, dtype=dtype, trust_remote_code=trust_remote_code).to(device)
            return tokenizer, model.eval()
        except ValueError as e:  # "Unrecognized configuration class …" for this auto class
            errors.append(str(e).split("\n")[0])
    raise SystemExit(f"{name}: transformers has no causal-LM or image-text-to-text model for it: {'; '.join(errors)}")


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="a model folder or Hub id, as transformers' from_pretrained takes it")
    ap.add_argument("prompts", help="JSONL: one prompt per line")
    ap.add_argument("--set", required=True, help="the prompt set's name (e.g. refusal, baseline)")
    ap.add_argument("-o", "--output", required=True, help="the statistics file to write")
    ap.add_argument("--generate", type=int, default=0, help="also generate N tokens per prompt (greedy)")
    ap.add_argument("--count", choices=["prompt", "generated", "both"], help="which tokens to count (default: prompt; both with --generate)")
    ap.add_argument("--chat-template", action="store_true", help="format plain prompts as a user turn of the chat template")
    ap.add_argument("--loss", action="store_true", help="record the mean next-token loss on the prompts")
    ap.add_argument("--append", action="store_true", help="add this set to an existing statistics file of the same model")
    ap.add_argument("--max-prompts", type=int, help="use only the first N prompts")
    ap.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float16", "float32"])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--trust-remote-code", action="store_true")
    a = ap.parse_args(argv)
    counted = a.count or ("both" if a.generate else "prompt")
    if counted != "prompt" and a.generate <= 0:
        raise SystemExit(f"--count {counted} needs --generate N")
    if os.path.exists(a.output) and not a.append:
        raise SystemExit(f"{a.output} exists: use --append to add a set to it, or another name")

    tokenizer, model = load_model(a.model, a.dtype, a.device, a.trust_remote_code)
    model_type, experts, top_k = config_counts(model.config)
    counter = RoutingCounter(experts, top_k)
    counter.counting = {"prompt", "generated"} if counted == "both" else {counted}
    handles = attach(model, counter)
    prompts = [ids.to(a.device) for ids in read_prompts(a.prompts, tokenizer, a.chat_template, a.max_prompts)]
    try:
        n, loss = run_prompts(model, prompts, counter, a.generate, a.loss)
    finally:
        for h in handles:
            h.remove()
    if not counter.layers():
        raise SystemExit("no routing was observed: no MoE layer ran")
    doc = routing_document(model_type, experts, top_k, a.model, counter.layers(), [routing_set(a.set, n, counted, counter, loss)], counter.hook)
    if a.append and os.path.exists(a.output):
        doc = merge_into(a.output, doc)
    tmp = a.output + ".partial"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(doc, f)
    os.replace(tmp, a.output)
    total = sum(counter.tokens.values()) // max(1, len(counter.layers()))
    print(f"{a.output}: set {a.set!r}, {n} prompts, {total} tokens per layer over {len(counter.layers())} MoE layers (read from the {counter.hook})" + (f", mean loss {loss:.4f}" if loss is not None else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
