"""Generation parameters inside PNGs: A1111's `parameters` text chunk plus a JSON chunk of our own."""

from __future__ import annotations

import json
import re
from pathlib import Path

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from lorastudio import __version__
from lorastudio.errors import Invalid
from lorastudio.fileio import write_atomic

OUR_CHUNK = "lorastudio"
_PARAM = re.compile(r'\s*([\w ]+):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')


def a1111_parameters(params: dict) -> str:
    """The text A1111 writes (and reads back with 'PNG Info' / 'Send to txt2img')."""
    lines = [params["prompt_text"]]
    if params.get("negative_prompt"):
        lines.append(f"Negative prompt: {params['negative_prompt']}")
    fields = [
        ("Steps", params["steps"]),
        ("Sampler", params["sampler"]),
        ("CFG scale", params["cfg_scale"]),
        ("Seed", params["seed"]),
        ("Size", f"{params['width']}x{params['height']}"),
        ("Model hash", params.get("model_hash", "")[:10]),
        ("Model", params.get("model", "")),
    ]
    if params.get("variation_seed") is not None and params.get("variation_strength"):
        fields += [
            ("Variation seed", params["variation_seed"]),
            ("Variation seed strength", params["variation_strength"]),
        ]
    if params.get("loras"):
        hashes = ", ".join(f"{lora['name']}: {lora['hash'][:12]}" for lora in params["loras"])
        fields.append(("Lora hashes", f'"{hashes}"'))
        regions = ", ".join(f"{lora['name']}: {lora['region']}" for lora in params["loras"] if lora.get("region"))
        if regions:  # A1111 cannot redo these (its Regional Prompter works differently), but a reader sees them
            fields += [("Lora regions", f'"{regions}"'), ("Region blend", params.get("region_blend"))]
    fields.append(("Version", f"lorastudio {__version__}"))
    lines.append(", ".join(f"{k}: {v}" for k, v in fields if v != ""))
    return "\n".join(lines)


def parse_a1111(text: str) -> dict:
    """Read A1111 `parameters` text back into a dict (prompt, negative_prompt, and each field)."""
    lines = text.strip().split("\n")
    last = lines[-1] if lines and "Steps: " in lines[-1] else ""
    body = lines[:-1] if last else lines
    prompt, negative, in_negative = [], [], False
    for line in body:
        if line.startswith("Negative prompt:"):
            in_negative = True
            line = line[len("Negative prompt:") :].strip()
        (negative if in_negative else prompt).append(line)
    out: dict = {"prompt": "\n".join(prompt).strip(), "negative_prompt": "\n".join(negative).strip()}
    for key, value in _PARAM.findall(last):
        value = value.strip()
        if value.startswith('"') and value.endswith('"'):
            value = value[1:-1]
        out[key.strip()] = value
    return out


def save_png(path: Path, image: Image.Image, params: dict, *, a1111: bool = True) -> Path:
    """Write a PNG (atomically) carrying our JSON record and, for single images, A1111 parameters."""
    info = PngInfo()
    if a1111:
        info.add_text("parameters", a1111_parameters(params))
    info.add_text(OUR_CHUNK, json.dumps(params, sort_keys=True))
    return write_atomic(path, lambda tmp: image.save(tmp, format="PNG", pnginfo=info))


def read_png_parameters(path: Path) -> dict:
    """Our JSON record from a PNG, or what its A1111 `parameters` chunk says (marked source='a1111')."""
    try:
        with Image.open(path) as img:
            text = dict(getattr(img, "text", {}) or img.info)
    except (OSError, ValueError) as exc:
        raise Invalid(f"{path} is not a readable PNG ({exc})") from exc
    except Image.DecompressionBombError as exc:
        raise Invalid(f"{path} is too large to open safely ({exc})") from exc
    if OUR_CHUNK in text:
        try:
            params = json.loads(text[OUR_CHUNK])
        except (ValueError, RecursionError) as exc:
            raise Invalid(
                f"{path.name}: its '{OUR_CHUNK}' record is not valid JSON, so it cannot be reproduced"
            ) from exc
        if not isinstance(params, dict):
            raise Invalid(f"{path.name}: its '{OUR_CHUNK}' record is not a JSON object, so it cannot be reproduced")
        params["source"] = "lorastudio"
        return params
    if isinstance(text.get("parameters"), str):
        parsed = parse_a1111(text["parameters"])
        parsed["source"] = "a1111"
        return parsed
    raise Invalid(f"{path.name} carries no generation parameters (no 'parameters' or '{OUR_CHUNK}' text chunk)")
