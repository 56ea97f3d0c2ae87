"""Offline safety checks for prompts and generated frames (no ComfyUI imports)."""
