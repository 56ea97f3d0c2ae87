"""The shipped workflows' media, drawn with Pillow (no external assets): template thumbnails and the example
inputs of the I2V / V2V graphs.

* :func:`scene` — an 832x480 country-road picture (sky, sun, hills, road, a tree); ``t`` moves the sun down and
  the tree towards the viewer, so consecutive values make a short camera glide;
* :func:`example_image` / :func:`example_clip` — the I2V start frame (``scene(0)``, PNG) and the V2V source clip
  (``scene(0..8)``, a 9-frame animated PNG: ComfyUI's LoadImage returns every frame of an animated image);
* :func:`thumbnail` — a 384x216 JPEG card per workflow (what it does, drawn as input → output boxes).

Drawing is deterministic; the encoded bytes may differ between Pillow versions, so checks compare sizes and
frame counts (:func:`media_problems`), not bytes.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

SCENE_SIZE = (832, 480)
CLIP_FRAMES = 9
THUMB_SIZE = (384, 216)


def scene(t: float = 0.0) -> Image.Image:
    w, h = size = SCENE_SIZE
    img = Image.new("RGB", size)
    d = ImageDraw.Draw(img)
    horizon = int(h * 0.55)
    for y in range(horizon):  # sky gradient, warmer towards the horizon
        k = y / horizon
        d.line([(0, y), (w, y)], fill=(int(90 + 140 * k), int(150 + 70 * k), int(230 - 60 * k)))
    sun_y = int(h * (0.22 + 0.03 * t))
    d.ellipse([int(w * 0.70) - 34, sun_y - 34, int(w * 0.70) + 34, sun_y + 34], fill=(255, 226, 120))
    d.polygon([(0, horizon), (w * 0.25, horizon - 70), (w * 0.55, horizon - 20), (w * 0.8, horizon - 85),
               (w, horizon - 30), (w, horizon), (0, horizon)], fill=(86, 140, 84))
    d.rectangle([0, horizon, w, h], fill=(104, 170, 92))
    vanish = (w * 0.5, horizon)
    d.polygon([vanish, (w * 0.12, h), (w * 0.88, h)], fill=(92, 92, 96))
    for i in range(6):  # centre line dashes, moving towards the viewer with t
        a = ((i + t / 3.0) % 6) / 6.0
        b = a + 0.07
        ya, yb = horizon + (h - horizon) * a * a, horizon + (h - horizon) * b * b
        d.line([(w * 0.5, ya), (w * 0.5, yb)], fill=(240, 230, 180), width=max(1, int(1 + 5 * b)))
    tx = int(w * (0.18 - 0.012 * t))
    scale = 1.0 + 0.04 * t
    trunk_top = horizon - int(40 * scale)
    d.rectangle([tx - int(7 * scale), trunk_top, tx + int(7 * scale), horizon + int(40 * scale)], fill=(96, 64, 40))
    r = int(58 * scale)
    d.ellipse([tx - r, trunk_top - int(1.6 * r), tx + r, trunk_top + int(0.4 * r)], fill=(46, 110, 52))
    return img


def example_image() -> Image.Image:
    return scene(0.0)


def example_clip() -> list[Image.Image]:
    return [scene(float(i)) for i in range(CLIP_FRAMES)]


def _font(size: int):
    try:
        return ImageFont.load_default(size)
    except TypeError:  # Pillow < 10.1: one bitmap size only
        return ImageFont.load_default()


THUMB_KINDS = {  # workflow name -> (input label, output label, accent colour)
    "cosmos3_t2v": ("prompt", "video", (63, 120, 158)),
    "cosmos3_i2v": ("image + prompt", "video", (110, 88, 160)),
    "cosmos3_t2i": ("prompt", "image", (60, 140, 110)),
    "cosmos3_v2v": ("clip + prompt", "video", (170, 100, 60)),
    "cosmos3_t2v_sound": ("prompt", "video + sound", (150, 70, 110)),
    "cosmos3_t2v_ksampler_lora": ("prompt + LoRA", "video", (90, 130, 60)),
}


def thumbnail(name: str, title: str) -> Image.Image:
    source, target, accent = THUMB_KINDS[name]
    w, h = THUMB_SIZE
    img = Image.new("RGB", THUMB_SIZE, (28, 30, 36))
    d = ImageDraw.Draw(img)
    d.rectangle([0, 0, w, 8], fill=accent)
    d.text((16, 20), "Cosmos3 MoT", font=_font(18), fill=(200, 205, 215))
    d.text((16, 44), title, font=_font(26), fill=(255, 255, 255))
    box = (112, 70)
    left, right, top = 24, w - 24 - box[0], 110
    if "image" in source or "clip" in source:
        d.rectangle([left, top, left + box[0], top + box[1]], outline=(180, 180, 190))
        img.paste(scene(0.0).resize(box, Image.LANCZOS), (left, top))
    else:
        d.rectangle([left, top, left + box[0], top + box[1]], fill=(48, 52, 62), outline=(180, 180, 190))
        for i in range(4):
            d.line([(left + 10, top + 14 + 13 * i), (left + box[0] - 10 - 14 * (i % 2), top + 14 + 13 * i)],
                   fill=(170, 176, 190), width=3)
    d.text((left, top + box[1] + 6), source, font=_font(14), fill=(200, 205, 215))
    mid = top + box[1] // 2
    d.line([(left + box[0] + 14, mid), (right - 14, mid)], fill=accent, width=4)
    d.polygon([(right - 14, mid - 8), (right - 2, mid), (right - 14, mid + 8)], fill=accent)
    frames = 3 if target == "video" else 1
    for i in reversed(range(frames)):
        off = 6 * i
        tile = scene(2.0 * i).resize(box, Image.LANCZOS)
        img.paste(tile, (right + off, top - off))
        d.rectangle([right + off, top - off, right + off + box[0], top - off + box[1]], outline=(220, 220, 230))
    d.text((right, top + box[1] + 6), target, font=_font(14), fill=(200, 205, 215))
    return img


def write_media(workflow_dir: Path, titles: dict[str, str], input_dir: Path, image_name: str, clip_name: str,
                only_missing: bool = True) -> list[Path]:
    """Write the thumbnails and example inputs (only the missing ones unless ``only_missing`` is false)."""
    written = []
    targets = {workflow_dir / f"{name}.jpg": (lambda n=name: thumbnail(n, titles[n])) for name in titles}
    input_dir.mkdir(parents=True, exist_ok=True)
    for path, make in targets.items():
        if only_missing and path.is_file():
            continue
        make().save(path, "JPEG", quality=85, optimize=True)
        written.append(path)
    image_path, clip_path = input_dir / image_name, input_dir / clip_name
    if not (only_missing and image_path.is_file()):
        example_image().save(image_path, "PNG", optimize=True)
        written.append(image_path)
    if not (only_missing and clip_path.is_file()):
        first, *rest = example_clip()
        first.save(clip_path, "PNG", save_all=True, append_images=rest, duration=1000 // 24, loop=0, optimize=True)
        written.append(clip_path)
    return written


def media_problems(workflow_dir: Path, names, input_dir: Path, image_name: str, clip_name: str) -> list[str]:
    """What is missing or wrong among the shipped media (sizes and frame counts)."""
    problems = []
    expected = {workflow_dir / f"{n}.jpg": ("JPEG", THUMB_SIZE, 1) for n in names}
    expected[input_dir / image_name] = ("PNG", SCENE_SIZE, 1)
    expected[input_dir / clip_name] = ("PNG", SCENE_SIZE, CLIP_FRAMES)
    for path, (fmt, size, frames) in expected.items():
        if not path.is_file():
            problems.append(f"{path.name} missing")
            continue
        with Image.open(path) as img:
            got = (img.format, img.size, getattr(img, "n_frames", 1))
        if got != (fmt, size, frames):
            problems.append(f"{path.name}: {got} instead of {(fmt, size, frames)}")
        if path.stat().st_size > 200_000:
            problems.append(f"{path.name} is {path.stat().st_size} bytes (keep shipped media small)")
    return problems
