"""What a Cosmos3 checkpoint folder holds besides weights: pipeline flags, scheduler, distilled sigmas, kind.

Layout (diffusers format)::

    model_index.json            pipeline flags (default_use_system_prompt, use_native_flow_schedule, ...)
    modular_model_index.json    distilled checkpoints: "distilled_sigmas"
    transformer/  vae/  text_tokenizer/  scheduler/scheduler_config.json
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..defaults import CheckpointKind, checkpoint_kind_from_name
from .json_files import read_json_object
from .safetensors import CheckpointError


def _read_json(path: Path) -> dict[str, Any]:
    return read_json_object(path, CheckpointError, "pipeline index")


def _find_distilled_sigmas(data: Any) -> list[float] | None:
    """``distilled_sigmas`` at the top level or nested one level (modular index layouts vary)."""
    if isinstance(data, dict):
        value = data.get("distilled_sigmas")
        if isinstance(value, list) and value:
            return [float(v) for v in value]
        for nested in data.values():
            if isinstance(nested, dict) and isinstance(nested.get("distilled_sigmas"), list):
                return [float(v) for v in nested["distilled_sigmas"]]
    return None


@dataclass
class CheckpointInfo:
    """Flags and side files of a checkpoint folder (all optional; defaults follow the diffusers pipeline)."""

    root: Path
    name: str
    kind: CheckpointKind
    default_use_system_prompt: bool = True
    use_native_flow_schedule: bool = False
    scheduler_config: dict[str, Any] | None = None
    distilled_sigmas: list[float] | None = None
    model_index: dict[str, Any] = field(default_factory=dict)

    @property
    def distilled(self) -> bool:
        return self.kind.distilled or self.distilled_sigmas is not None

    @classmethod
    def read(cls, root: str | Path) -> CheckpointInfo:
        root = Path(root).expanduser()
        if not root.is_dir():
            raise CheckpointError(f"{root}: not a checkpoint folder (expected transformer/, vae/, text_tokenizer/)")
        index = _read_json(root / "model_index.json") if (root / "model_index.json").is_file() else {}
        modular = root / "modular_model_index.json"
        sigmas = _find_distilled_sigmas(_read_json(modular)) if modular.is_file() else None
        sched_path = root / "scheduler" / "scheduler_config.json"
        scheduler = _read_json(sched_path) if sched_path.is_file() else None
        if sigmas is None and scheduler is not None:
            fixed = scheduler.get("fixed_step_sampler_config") or {}
            if isinstance(fixed.get("t_list"), list):
                sigmas = [float(v) for v in fixed["t_list"]]
        kind = checkpoint_kind_from_name(root.name)
        if sigmas is not None and not kind.distilled:
            kind = (
                CheckpointKind.IMAGE2VIDEO_4STEP
                if kind is CheckpointKind.IMAGE2VIDEO
                else CheckpointKind.TEXT2IMAGE_4STEP
            )
        return cls(
            root=root,
            name=root.name,
            kind=kind,
            default_use_system_prompt=bool(index.get("default_use_system_prompt", True)),
            use_native_flow_schedule=bool(index.get("use_native_flow_schedule", False)),
            scheduler_config=scheduler,
            distilled_sigmas=sigmas,
            model_index=index,
        )
