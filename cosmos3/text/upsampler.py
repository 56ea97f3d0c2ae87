"""Offline prompt upsampler: a short prompt (+ the I2V image) -> the structured JSON caption the Cosmos3
checkpoints were trained on, written by a local instruct model loaded with ``transformers`` from a folder
(``local_files_only``, safetensors only; nothing is downloaded).

Any folder ``transformers`` can load as a chat model works: NVIDIA's Cosmos3 ``*-Reasoner`` checkpoints
(Qwen3-VL), Qwen3-VL / Qwen3 instruct models. A folder whose ``config.json`` has a ``vision_config`` loads
with ``AutoModelForImageTextToText`` and reads the I2V image through the folder's image processor (Qwen-VL
style: ``pixel_values`` + ``image_grid_thw``, one ``<|image_pad|>`` per merged patch); other folders load with
``AutoModelForCausalLM`` (I2V then runs on the text alone, with a warning in the result).

Decoding is greedy by default (``temperature=0``), so the same inputs give the same caption; with
``temperature > 0`` it samples from ``seed``. The answer is validated by
:func:`cosmos3.text.structured_prompt.finalize_answer` (repairs, schema fields, visible fallback).
``transformers`` is imported on first load, never at import time.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import torch

from .structured_prompt import UpsampledPrompt, finalize_answer
from .upsampler_instructions import UpsamplerError, UpsampleTarget, build_messages, fit_image

log = logging.getLogger("cosmos3_mot")

DEFAULT_MAX_NEW_TOKENS = 2048
MAX_NEW_TOKENS_LIMIT = 32768
_LM_SUFFIXES = ("ForCausalLM", "ForConditionalGeneration", "ForImageTextToText", "LMHeadModel")

__all__ = ["DEFAULT_MAX_NEW_TOKENS", "PromptUpsampler", "UpsamplerError", "UpsampleTarget", "folder_problems",
           "load_upsampler"]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UpsamplerError(f"{path} cannot be read as JSON: {exc}") from None
    return data if isinstance(data, dict) else {}


def chat_template_of(folder: Path) -> str | None:
    """The folder's chat template: ``chat_template.jinja``, ``chat_template.json``, then
    ``tokenizer_config.json`` (processor files first: a VLM's tokenizer template may be text-only)."""
    if (folder / "chat_template.jinja").is_file():
        return (folder / "chat_template.jinja").read_text(encoding="utf-8")
    for name in ("chat_template.json", "tokenizer_config.json"):
        if (folder / name).is_file():
            template = _read_json(folder / name).get("chat_template")
            if isinstance(template, str) and template.strip():
                return template
    return None


def folder_problems(folder: str | Path) -> list[str]:
    """Why ``folder`` cannot be used as an upsampler (empty list when it looks loadable)."""
    folder = Path(folder)
    if not folder.is_dir():
        return [f"folder {folder} does not exist"]
    if (folder / "model_index.json").is_file() or (folder / "transformer" / "config.json").is_file():
        return [f"{folder} is a Cosmos3 generation checkpoint, not an instruct language model; use a "
                "Cosmos3 *-Reasoner, Qwen3-VL or Qwen3 instruct folder"]
    if not (folder / "config.json").is_file():
        return [f"{folder / 'config.json'} is missing (not a transformers model folder)"]
    problems = []
    architectures = _read_json(folder / "config.json").get("architectures") or []
    if not any(str(a).endswith(_LM_SUFFIXES) for a in architectures):
        problems.append(f"{folder} is not a causal language model or vision-language model "
                        f"(config.json architectures: {architectures or 'none'})")
    if not any(folder.glob("*.safetensors")):
        pickles = sorted(p.name for p in folder.glob("*.bin"))
        hint = f" (found {', '.join(pickles)}: pickle weights are not loaded)" if pickles else ""
        problems.append(f"{folder}: no *.safetensors weights{hint}")
    has_tokenizer = (folder / "tokenizer.json").is_file() or (folder / "tokenizer.model").is_file() or (
        (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file())
    if not has_tokenizer:
        problems.append(f"{folder}: no tokenizer (tokenizer.json, tokenizer.model or vocab.json + merges.txt)")
    elif chat_template_of(folder) is None:
        problems.append(f"{folder}: no chat template (chat_template.jinja, chat_template.json or "
                        "tokenizer_config.json 'chat_template'); an instruct/chat model is needed")
    return problems


def _context_length(config: Any) -> int | None:
    for cfg in (getattr(config, "text_config", None), config):
        value = getattr(cfg, "max_position_embeddings", None) if cfg is not None else None
        if isinstance(value, int) and value > 0:
            return value
    return None


class PromptUpsampler:
    """A loaded instruct model that writes structured prompts.

    ``model`` is a ``transformers`` generation model; ``tokenizer`` renders ``chat_template`` and decodes;
    ``image_processor`` is ``None`` for text-only models. :meth:`generate_text` runs where the model's weights
    are (the node lets ComfyUI move them); with ``run_device`` set, :meth:`upsample` moves the model there for
    the call and back to ``rest_device`` afterwards (what the library and CLI use on a GPU).
    """

    def __init__(self, model: Any, tokenizer: Any, *, folder: Path | None = None, chat_template: str | None = None,
                 image_processor: Any = None, context_length: int | None = None):
        self.model, self.tokenizer, self.image_processor = model, tokenizer, image_processor
        self.folder = Path(folder) if folder is not None else None
        self.chat_template = chat_template or getattr(tokenizer, "chat_template", None)
        if not self.chat_template:
            where = self.folder or "the tokenizer"
            raise UpsamplerError(f"{where}: no chat template; an instruct/chat model is needed")
        if context_length is None:
            context_length = _context_length(getattr(model, "config", None))
        self.context_length = context_length
        self.run_device: torch.device | None = None
        self.rest_device: torch.device = torch.device("cpu")

    @property
    def name(self) -> str:
        return self.folder.name if self.folder is not None else type(self.model).__name__

    @property
    def device(self) -> torch.device:
        try:
            return next(self.model.parameters()).device
        except (StopIteration, AttributeError):
            return torch.device("cpu")

    @property
    def takes_images(self) -> bool:
        return self.image_processor is not None

    # ------------------------------------------------------------------ tokens
    def render(self, messages: list[dict[str, Any]]) -> str:
        """The chat as text, ending with the assistant turn (thinking switched off where the template can)."""
        try:
            return self.tokenizer.apply_chat_template(messages, chat_template=self.chat_template, tokenize=False,
                                                      add_generation_prompt=True, enable_thinking=False)
        except Exception as exc:  # jinja errors: a template that cannot render our messages
            raise UpsamplerError(f"{self.name}: the chat template cannot render the request ({exc})") from exc

    def _image_inputs(self, text: str, image: Any) -> tuple[str, dict[str, torch.Tensor]]:
        processed = self.image_processor(images=[image], return_tensors="pt")
        grid = processed.get("image_grid_thw")
        if grid is None:
            raise UpsamplerError(f"{self.name}: its image processor is not Qwen-VL style (no image_grid_thw); "
                                 "use a Qwen3-VL / Cosmos3 Reasoner folder or mode t2v")
        merge = int(getattr(self.image_processor, "merge_size", 2))
        count = int(grid.prod()) // (merge * merge)
        token_id = getattr(self.model.config, "image_token_id", None)
        token = self.tokenizer.convert_ids_to_tokens(token_id) if token_id is not None else "<|image_pad|>"
        if text.count(token) != 1:
            raise UpsamplerError(f"{self.name}: the chat template did not place exactly one {token} for the image")
        text = text.replace(token, token * count)
        return text, {"pixel_values": processed["pixel_values"], "image_grid_thw": grid}

    def encode(self, messages: list[dict[str, Any]], image: Any = None,
               max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS) -> dict[str, torch.Tensor]:
        """Model inputs (``input_ids``, ``attention_mask`` and, with an image, ``pixel_values`` /
        ``image_grid_thw``); :class:`UpsamplerError` when prompt + ``max_new_tokens`` exceed the context."""
        text = self.render(messages)
        extra: dict[str, torch.Tensor] = {}
        if image is not None:
            text, extra = self._image_inputs(text, image)
        batch = self.tokenizer([text], return_tensors="pt", add_special_tokens=False)
        length = int(batch["input_ids"].shape[1])
        if self.context_length is not None and length + max_new_tokens > self.context_length:
            raise UpsamplerError(
                f"the upsampler request is {length} tokens; with max_new_tokens {max_new_tokens} it exceeds the "
                f"context of {self.name} ({self.context_length} tokens, config.json max_position_embeddings): "
                "shorten the prompt or lower max_new_tokens")
        return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], **extra}

    # ------------------------------------------------------------------ generation
    def generate_text(self, messages: list[dict[str, Any]], image: Any = None, *, seed: int = 0,
                      max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, temperature: float = 0.0) -> str:
        """The model's answer to ``messages`` (new tokens only, special tokens removed)."""
        if not isinstance(max_new_tokens, int) or not 1 <= max_new_tokens <= MAX_NEW_TOKENS_LIMIT:
            raise UpsamplerError(f"max_new_tokens must be an integer from 1 to {MAX_NEW_TOKENS_LIMIT}, "
                                 f"got {max_new_tokens!r}")
        if not temperature >= 0.0:
            raise UpsamplerError(f"temperature must be >= 0 (0 = greedy), got {temperature!r}")
        from transformers import GenerationConfig

        device = self.device
        inputs = {k: v.to(device) for k, v in self.encode(messages, image, max_new_tokens).items()}
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(next(self.model.parameters()).dtype)
        eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        eos = eos if eos is not None else self.tokenizer.eos_token_id
        pad = self.tokenizer.pad_token_id
        pad = pad if pad is not None else (eos[0] if isinstance(eos, list) else eos)
        sampling = dict(do_sample=True, temperature=float(temperature), top_p=0.8, top_k=20) if temperature > 0 else (
            dict(do_sample=False))
        config = GenerationConfig(max_new_tokens=max_new_tokens, eos_token_id=eos, pad_token_id=pad, **sampling)
        devices = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.inference_mode():
            torch.manual_seed(int(seed))
            out = self.model.generate(**inputs, generation_config=config)
        new_tokens = out[0, inputs["input_ids"].shape[1]:].tolist()
        return self.tokenizer.decode(new_tokens, skip_special_tokens=True)

    def upsample(self, prompt: str, mode: str = "t2v", *, width: int = 832, height: int = 480, frames: int = 121,
                 fps: float = 24.0, image: Any = None, audio_description: str | None = None, seed: int = 0,
                 max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, temperature: float = 0.0) -> UpsampledPrompt:
        """Write the structured prompt for ``prompt``. ``mode`` is t2v / i2v / t2i; ``width`` / ``height`` /
        ``frames`` / ``fps`` describe the clip (as in Text Encode); ``image`` (i2v) is the first frame;
        ``audio_description`` (sound checkpoints) is asked for and kept verbatim.

        Never returns an empty prompt: an unusable answer gives ``{"temporal_caption": prompt}`` with a warning.
        """
        if not isinstance(prompt, str) or not prompt.strip():
            raise UpsamplerError("the prompt to upsample is empty")
        target = UpsampleTarget(mode, int(width), int(height), int(frames), float(fps))
        notes: list[str] = []
        pil = None
        if mode == "i2v":
            if image is None:
                raise UpsamplerError("mode i2v needs the conditioning image")
            if self.takes_images:
                pil = fit_image(image, target.width, target.height)
            else:
                notes.append(f"{self.name} is a text-only model: the image was not shown to it")
        elif image is not None:
            notes.append(f"the image is used in mode i2v only (mode is {mode})")
        messages = build_messages(prompt, target, with_image=pil is not None, audio_description=audio_description)
        if self.run_device is not None:
            self.model.to(self.run_device)
        try:
            answer = self.generate_text(messages, pil, seed=seed, max_new_tokens=max_new_tokens,
                                        temperature=temperature)
        finally:
            if self.run_device is not None and self.run_device != self.rest_device:
                self.model.to(self.rest_device)
                if self.run_device.type == "cuda":
                    torch.cuda.empty_cache()
        result = finalize_answer(answer, prompt, mode, metadata=target.metadata(), audio_description=audio_description)
        if notes:
            result = dataclasses.replace(result, warnings=(*notes, *result.warnings))
        for warning in result.warnings:
            log.warning("[Cosmos3 MoT] prompt upsampler: %s", warning)
        return result


def load_upsampler(folder: str | Path, *, device: torch.device | str = "cpu", dtype: torch.dtype | None = None,
                   offload_device: torch.device | str | None = None) -> PromptUpsampler:
    """Load an instruct model folder offline onto ``device``; with ``offload_device`` the weights rest there and
    visit ``device`` only while upsampling. ``dtype`` defaults to bf16 on CUDA, fp32 elsewhere.

    :class:`UpsamplerError` names the folder and every problem (not a causal LM / VLM, no safetensors, no
    tokenizer, no chat template, or transformers failing to read it)."""
    folder = Path(folder)
    problems = folder_problems(folder)
    if problems:
        raise UpsamplerError("cannot use the prompt upsampler folder: " + "; ".join(problems))
    device = torch.device(device)
    dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
    is_vlm = "vision_config" in _read_json(folder / "config.json")
    try:
        import transformers

        tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        auto = transformers.AutoModelForImageTextToText if is_vlm else transformers.AutoModelForCausalLM
        model = auto.from_pretrained(str(folder), local_files_only=True, use_safetensors=True, dtype=dtype)
        image_processor = None
        if is_vlm and (folder / "preprocessor_config.json").is_file():
            image_processor = transformers.AutoImageProcessor.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, KeyError, ImportError) as exc:
        raise UpsamplerError(f"transformers cannot load {folder} as a chat model: {exc}") from exc
    rest = torch.device(offload_device) if offload_device is not None else device
    model.eval().requires_grad_(False).to(rest)
    upsampler = PromptUpsampler(model, tokenizer, folder=folder, chat_template=chat_template_of(folder),
                                image_processor=image_processor)
    if offload_device is not None:
        upsampler.run_device, upsampler.rest_device = device, rest
    return upsampler
