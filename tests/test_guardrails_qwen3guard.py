"""Qwen3Guard judge: output parsing, fail-closed decisions, and a real tiny-model run (offline)."""

from __future__ import annotations

import pytest
import torch

from guardrails.text.qwen3guard import Qwen3GuardChecker, parse_guard_output, required_files_problems


@pytest.mark.parametrize(
    "answer, label, categories",
    [
        ("Safety: Safe\nCategories: None", "Safe", ("None",)),
        ("Safety: Unsafe\nCategories: Violent", "Unsafe", ("Violent",)),
        (
            "Safety: Unsafe\nCategories: Violent, Sexual Content or Sexual Acts",
            "Unsafe",
            ("Violent", "Sexual Content or Sexual Acts"),
        ),
        (
            "Safety: Controversial\nCategories: Politically Sensitive Topics",
            "Controversial",
            ("Politically Sensitive Topics",),
        ),
        ("  safety : unsafe\ncategories: jailbreak", "Unsafe", ("Jailbreak",)),
        ("**Safety:** Safe", "Safe", ()),
        ("Safety: Safe\nSafety: Unsafe", "Unsafe", ()),  # conflicting labels → most severe
        ("The prompt looks safe to me.", None, ()),  # no label line
        ("Safety: Fine", None, ()),
        ("Safety: Safest", None, ()),
        ("", None, ()),
        ("hum hum hum", None, ()),
    ],
)
def test_parse_guard_output(answer, label, categories):
    parsed = parse_guard_output(answer)
    assert parsed.label == label
    assert parsed.categories == categories


@pytest.mark.parametrize(
    "answer, block_controversial, status",
    [
        ("Safety: Safe\nCategories: None", False, "pass"),
        ("Safety: Unsafe\nCategories: Violent", False, "block"),
        ("Safety: Controversial\nCategories: Unethical Acts", False, "pass"),
        ("Safety: Controversial\nCategories: Unethical Acts", True, "block"),
        ("I cannot help with that.", False, "error"),  # unreadable output is never "safe"
        ("", False, "error"),
    ],
)
def test_decisions_with_stubbed_generation(answer, block_controversial, status):
    seen = []
    judge = Qwen3GuardChecker(
        None, generate=lambda text: seen.append(text) or answer, block_controversial=block_controversial
    )
    result = judge.check("a robot in a park")
    assert seen == ["a robot in a park"]
    assert result.status == status
    assert result.blocks == (status in ("block", "error"))
    if status == "error":
        assert "unreadable" in result.detail


def test_required_files(tmp_path):
    assert "does not exist" in required_files_problems(tmp_path / "nope")[0]
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"\0")
    problems = " | ".join(required_files_problems(tmp_path))
    assert "tokenizer_config.json" in problems and "tokenizer.json" in problems
    assert "pickle weights are not loaded" in problems


def test_tiny_model_end_to_end(tiny_qwen3_dir, monkeypatch):
    """Real transformers load (local_files_only) + real Qwen3 tokenizer + real generate on a random model:
    its output is gibberish, which must block (fail closed)."""
    import transformers

    calls = []
    for cls in (transformers.AutoTokenizer, transformers.AutoModelForCausalLM):
        original = cls.from_pretrained.__func__

        def spy(klass, *args, _original=original, **kwargs):
            calls.append(kwargs)
            return _original(klass, *args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", classmethod(spy))

    judge = Qwen3GuardChecker(tiny_qwen3_dir, max_new_tokens=8)
    result = judge.check("a robot walks through a park")
    assert len(calls) == 2 and all(c.get("local_files_only") is True for c in calls)
    assert calls[1].get("use_safetensors") is True
    assert result.status == "error" and "unreadable" in result.detail

    # Same loaded model and tokenizer; make generate emit a known answer to exercise decoding.
    tok = judge._tokenizer
    for answer, status in (
        ("Safety: Unsafe\nCategories: Violent", "block"),
        ("Safety: Safe\nCategories: None", "pass"),
    ):
        answer_ids = tok(answer, return_tensors="pt")["input_ids"]

        def fake_generate(input_ids=None, _ids=answer_ids, **kwargs):
            assert kwargs["generation_config"].do_sample is False
            return torch.cat([input_ids, _ids, torch.tensor([[tok.convert_tokens_to_ids("<|im_end|>")]])], dim=1)

        monkeypatch.setattr(judge._model, "generate", fake_generate)
        assert judge.check("a robot").status == status
