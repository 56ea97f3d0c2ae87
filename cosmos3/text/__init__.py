"""Prompt handling: formatting templates, the checkpoint's tokenizer, and prompt -> cached text K/V."""
