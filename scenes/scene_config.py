"""Scene configs of design.md §4.1: what a user may write in a scene JSON, and its vocabulary.

A scene is at most 10 objects on a ground plane. Each object has a shape, one of 8 colours with a
fixed RGB, one of 3 sizes, one of 2 materials, a position and a rotation. Validation happens here,
before Blender starts, so a typo in a JSON file costs nothing and says what was wrong.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pairsmith.storage.input_files import json_error, parse_json, read_text_file, text_lines

Shape = Literal["cube", "sphere", "cylinder"]
Color = Literal["blue", "brown", "cyan", "gray", "green", "purple", "red", "yellow"]
Size = Literal["small", "medium", "large"]
Material = Literal["metal", "matte"]

SHAPES: tuple[Shape, ...] = ("cube", "sphere", "cylinder")
# sRGB 0-255, the CLEVR palette; the renderer converts to linear for the shader.
COLOR_RGB: dict[Color, tuple[int, int, int]] = {
    "blue": (42, 75, 215),
    "brown": (129, 74, 25),
    "cyan": (41, 208, 208),
    "gray": (87, 87, 87),
    "green": (29, 105, 20),
    "purple": (129, 38, 192),
    "red": (173, 35, 35),
    "yellow": (255, 238, 51),
}
SIZE_RADIUS: dict[Size, float] = {"small": 0.4, "medium": 0.6, "large": 0.8}
MATERIAL_PBR: dict[Material, tuple[float, float]] = {  # (metallic, roughness)
    "metal": (1.0, 0.2),
    "matte": (0.0, 0.8),
}
MAX_OBJECTS = 10
# Objects stand on a square of this half-width around the origin, which the camera sees whole.
AREA_HALF_EXTENT = 3.0
# Extra clearance between two objects' footprints, so no two objects touch.
MIN_GAP = 0.1


class SceneObject(BaseModel):
    """One object. ``size`` is the footprint radius: a sphere's radius, a cube's half-diagonal."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    shape: Shape
    color: Color
    size: Size
    material: Material
    position: tuple[float, float] = Field(description="x, y on the ground plane")
    rotation: float = Field(0.0, description="degrees about the vertical axis")

    @field_validator("position")
    @classmethod
    def _inside_area(cls, value: tuple[float, float]) -> tuple[float, float]:
        if max(abs(value[0]), abs(value[1])) > AREA_HALF_EXTENT:
            raise ValueError(f"position {list(value)} is outside the ground area |x|, |y| <= {AREA_HALF_EXTENT}")
        return value

    @property
    def radius(self) -> float:
        return SIZE_RADIUS[self.size]

    def describe(self) -> str:
        return f"{self.size} {self.color} {self.material} {self.shape}"


def overlaps(a: SceneObject, b: SceneObject, gap: float = MIN_GAP) -> bool:
    dx, dy = a.position[0] - b.position[0], a.position[1] - b.position[1]
    return math.hypot(dx, dy) < a.radius + b.radius + gap


class Scene(BaseModel):
    """A before-scene; the after-scene is derived from it by a list of changes."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    objects: list[SceneObject] = Field(min_length=1, max_length=MAX_OBJECTS)

    @model_validator(mode="after")
    def _no_overlaps(self) -> "Scene":
        for i, a in enumerate(self.objects):
            for j in range(i + 1, len(self.objects)):
                if overlaps(a, self.objects[j]):
                    raise ValueError(f"objects {i} and {j} overlap")
        return self


def format_validation_error(err: ValidationError, source: str) -> str:
    """One line naming where the bad value is and what is wrong with it."""
    parts, named = [], []
    for e in err.errors():
        where = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in e["loc"]).replace(".[", "[")
        msg = e["msg"].removeprefix("Value error, ")
        shown = {"literal_error", "extra_forbidden", "float_type", "int_type", "bool_type", "string_type", "finite_number"}
        got = f" (got {e['input']!r})" if e["type"] in shown else ""
        parts.append(f"{where}: {msg}{got}" if where else f"{msg}{got}")
        named.append(msg.startswith("--"))
    if source == "options" and all(named):  # command-line options whose messages name the option already
        return "; ".join(e["msg"].removeprefix("Value error, ") for e in err.errors())
    return f"{source}: " + "; ".join(parts)


def load_scenes(path: str | Path) -> list[Scene]:
    """Read scenes from a JSON file (one scene or a list), a JSONL file, or a folder of JSON files.

    Raises ``ValueError`` with one line naming the file, the scene and the bad field.
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"--scenes {str(path)!r}: no such file or folder")
    files = sorted(path.glob("*.json")) if path.is_dir() else [path]
    if not files:
        raise ValueError(f"--scenes {str(path)!r}: folder has no .json files")
    scenes: list[Scene] = []
    for file in files:
        for where, raw in _raw_scenes(file):
            try:  # strict: "1.0" or true is not a coordinate; JSON arrays are the tuples
                scenes.append(Scene.model_validate_json(json.dumps(raw), strict=True))
            except ValidationError as err:
                raise ValueError(format_validation_error(err, f"{file}{where}")) from None
    if not scenes:
        raise ValueError(f"--scenes {str(path)!r}: no scenes in {'the folder' if path.is_dir() else 'the file'}")
    return scenes


def _raw_scenes(file: Path) -> list[tuple[str, object]]:
    text = read_text_file(file, "--scenes")
    if file.suffix == ".jsonl":
        out = []
        for n, line in enumerate(text_lines(text), start=1):
            if line.strip():
                out.append((f" line {n}", _parse_json(line, f"{file} line {n}")))
        return out
    data = _parse_json(text, str(file))
    if isinstance(data, list):
        return [(f" scene {i}", item) for i, item in enumerate(data)]
    return [("", data)]


def _parse_json(text: str, where: str) -> object:
    try:
        return parse_json(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{where}: not valid JSON ({err.msg} at line {err.lineno} column {err.colno})") from None
    except ValueError as err:  # a key written twice
        raise ValueError(f"{where}: {json_error(err)}") from None
