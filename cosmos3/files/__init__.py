"""Files on disk: checked safetensors reading, JSON side files, checkpoint folders, media in and out."""
