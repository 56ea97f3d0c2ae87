"""Keyword blocklist, lemmatiser and LLM judge for prompts."""
