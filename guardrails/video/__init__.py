"""Face pixelation (RetinaFace) and the optional content classifier for frames."""
