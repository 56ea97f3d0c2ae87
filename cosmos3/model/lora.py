"""LoRA files for Cosmos3: which transformer weight each low-rank update belongs to.

Accepted key styles (safetensors only): ``<module>.lora_A.weight`` / ``.lora_B.weight`` (PEFT / diffusers) and
``<module>.lora_down.weight`` / ``.lora_up.weight`` with an optional ``<module>.alpha`` (kohya / ComfyUI), where
``<module>`` is a diffusers name (``layers.3.self_attn.add_q_proj``), an original cosmos-framework name
(``language_model.model.layers.3.self_attn.q_proj_moe_gen``), either under a ``transformer.``,
``base_model.model.``, ``diffusion_model.``, ``model.diffusion_model.`` or ``net.`` prefix, the name in a
ComfyUI MODEL (``diffusion_model.layers.3.add_q_proj``) or its underscore form (``lora_unet_layers_3_add_q_proj``).

An update ``W += strength * (alpha / rank) * up @ down`` (``alpha`` absent: scale 1). Keys that match no
Cosmos3 weight raise one :class:`LoraError` listing them; updates of weights generation never uses (the LM
head, the text tower's final norm, the last text layer's query/output/MLP) are skipped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import Cosmos3Error
from .loading import _unused_key_shapes, checkpoint_key, normalize_key

PAIR_SUFFIXES = (
    (".lora_B.weight", ".lora_A.weight"),
    (".lora_up.weight", ".lora_down.weight"),
)
ALPHA_SUFFIX = ".alpha"
LORA_PREFIXES = ("base_model.model.", "transformer.")
UNDERSCORE_PREFIXES = ("lora_unet_", "lora_transformer_")
MAX_LISTED = 20


class LoraError(Cosmos3Error):
    """A LoRA file that cannot be applied (unreadable, unknown keys, wrong shapes, unsupported weights)."""


@dataclass(frozen=True)
class LoraUpdate:
    """One low-rank update: ``target`` is the :class:`Cosmos3Transformer` parameter name
    (``gen_tower.layers.0.add_q_proj.weight``); ``up`` ``[out, r]``, ``down`` ``[r, in]``; ``alpha`` or ``None``."""

    target: str
    up: torch.Tensor
    down: torch.Tensor
    alpha: float | None
    key: str  # the module name in the file

    @property
    def rank(self) -> int:
        return int(self.down.shape[0])

    @property
    def scale(self) -> float:
        return 1.0 if self.alpha is None else float(self.alpha) / self.rank

    @property
    def tower(self) -> str:
        return self.target.partition(".")[0]

    def delta(self) -> torch.Tensor:
        """``(alpha / rank) * up @ down`` in float32 ``[out, in]``."""
        return self.scale * (self.up.float() @ self.down.float())


def read_lora_file(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` LoRA file (other formats are refused: they would be unpickled)."""
    from safetensors.torch import load_file

    path = Path(path)
    if path.suffix.lower() not in (".safetensors", ".sft"):
        raise LoraError(f"{path.name}: only .safetensors LoRA files are loaded")
    if not path.is_file():
        raise LoraError(f"{path}: no such LoRA file")
    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types
        raise LoraError(f"{path.name}: not a readable safetensors file ({exc})") from None


def _split(key: str) -> tuple[str, str] | None:
    """``(module name, role)`` with role ``up``/``down``/``alpha``; ``None`` when not a LoRA tensor name."""
    for up, down in PAIR_SUFFIXES:
        if key.endswith(up):
            return key[: -len(up)], "up"
        if key.endswith(down):
            return key[: -len(down)], "down"
    if key.endswith(ALPHA_SUFFIX):
        return key[: -len(ALPHA_SUFFIX)], "alpha"
    return None


class _Names:
    """Resolves a LoRA module name to a transformer parameter name (``...weight``) or ``None``."""

    def __init__(self, model) -> None:
        params = [name for name, _ in model.named_parameters()]
        self.params = dict(model.named_parameters())
        self.by_checkpoint = {checkpoint_key(p): p for p in params}
        self.underscored = {}
        for p in params:
            stem = p[: -len(".weight")] if p.endswith(".weight") else p
            self.underscored[checkpoint_key(p)[: -len(".weight")].replace(".", "_")] = p
            if p.startswith("gen_tower."):
                self.underscored[stem[len("gen_tower."):].replace(".", "_")] = p
        self.unused = set(_unused_key_shapes(model.config, _AllKeys()))

    def resolve(self, module: str) -> str | None:
        for prefix in UNDERSCORE_PREFIXES:
            if module.startswith(prefix):
                return self.underscored.get(module[len(prefix):])
        for prefix in LORA_PREFIXES:
            if module.startswith(prefix):
                module = module[len(prefix):]
                break
        if module.startswith(("gen_tower.", "text_tower.")) and f"{module}.weight" in self.params:
            return f"{module}.weight"
        name = normalize_key(f"{module}.weight")
        if name is None:
            return None
        if name in self.by_checkpoint:
            return self.by_checkpoint[name]
        if f"gen_tower.{name}" in self.params:  # a ComfyUI MODEL name: diffusion_model.<generation-tower name>
            return f"gen_tower.{name}"
        return None

    def is_unused(self, module: str) -> bool:
        for prefix in LORA_PREFIXES:
            if module.startswith(prefix):
                module = module[len(prefix):]
        name = normalize_key(f"{module}.weight")
        return name in self.unused


class _AllKeys(dict):
    def __contains__(self, key) -> bool:
        return True


def _listing(items: list[str]) -> str:
    shown = "\n  ".join(items[:MAX_LISTED])
    more = f"\n  … and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else ""
    return f"\n  {shown}{more}"


def parse_lora(state: Mapping[str, torch.Tensor], model, source: str = "LoRA") -> list[LoraUpdate]:
    """The updates of a LoRA state dict for ``model`` (a :class:`Cosmos3Transformer`), in file order.

    Raises :class:`LoraError` (summary line first, then a capped list) for keys that match no weight, unpaired
    up/down tensors, shapes that do not fit the weight, and fp8- or integer-stored (quantised) weights."""
    names = _Names(model)
    parts: dict[str, dict[str, torch.Tensor]] = {}
    unknown: list[str] = []
    for key, tensor in state.items():
        split = _split(key)
        if split is None:
            unknown.append(key)
            continue
        parts.setdefault(split[0], {})[split[1]] = tensor
    updates: list[LoraUpdate] = []
    problems: list[str] = []
    for module, found in parts.items():
        if names.is_unused(module):
            continue
        target = names.resolve(module)
        if target is None:
            unknown.extend(f"{module}.{role}" for role in sorted(found))
            continue
        if "up" not in found or "down" not in found:
            problems.append(f"{module}: has {', '.join(sorted(found))} but needs both up and down tensors")
            continue
        up, down = found["up"], found["down"]
        weight = names.params[target]
        if weight.dtype in (torch.float8_e4m3fn, torch.float8_e5m2):
            problems.append(f"{module}: {target} is stored as fp8; load the model with weight_storage 'default'")
            continue
        if not weight.dtype.is_floating_point:  # int8 / int4 / GGUF blocks: a LoRA cannot be added to packed data
            problems.append(f"{module}: {target} is stored quantised ({weight.dtype}); load an unquantised "
                            "checkpoint with weight_storage 'default'")
            continue
        if weight.ndim != 2 or up.ndim != 2 or down.ndim != 2 or up.shape[1] != down.shape[0] or (
            up.shape[0], down.shape[1]) != tuple(weight.shape):
            problems.append(f"{module}: up {list(up.shape)} @ down {list(down.shape)} does not fit {target} "
                            f"{list(weight.shape)}")
            continue
        alpha = float(found["alpha"]) if "alpha" in found else None
        updates.append(LoraUpdate(target=target, up=up, down=down, alpha=alpha, key=module))
    if unknown:
        raise LoraError(f"{source}: {len(unknown)} LoRA key(s) match no Cosmos3 transformer weight (accepted: "
                        f"lora_A/lora_B or lora_down/lora_up(+alpha) on diffusers or cosmos-framework module names)"
                        + _listing(sorted(unknown)))
    if problems:
        raise LoraError(f"{source}: {len(problems)} LoRA update(s) cannot be applied" + _listing(problems))
    if not updates:
        raise LoraError(f"{source}: no LoRA updates found (empty file)")
    return updates


def merge_lora(model, updates: list[LoraUpdate], strength: float = 1.0, towers: tuple[str, ...] = ("gen_tower",
               "text_tower")) -> None:
    """Add ``strength * delta`` to the targeted weights of ``model`` in place (fp32 arithmetic, then the
    weight's dtype): the reference the ComfyUI loaders are tested against."""
    params = dict(model.named_parameters())
    with torch.no_grad():
        for update in updates:
            if update.tower not in towers:
                continue
            weight = params[update.target]
            merged = weight.float() + strength * update.delta().to(weight.device)
            weight.copy_(merged.to(weight.dtype))
