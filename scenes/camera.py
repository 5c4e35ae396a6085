"""Where the renderer's camera stands, and where it sees each object, computed without Blender.

The renderer (``pairsmith.scenes.blender_render``) places a perspective camera at
``CAMERA_LOCATION`` looking at ``CAMERA_TARGET`` with a ``CAMERA_LENS_MM`` lens on Blender's
default 36 mm sensor (sensor fit AUTO: the sensor spans the longer image side), oriented as
Blender's ``to_track_quat('-Z', 'Y')`` orients it: looking down its -Z axis, its Y axis as close to
the world's up as possible. ``project`` repeats that pinhole projection in plain Python, so
captions can say where an object is (left or right in the image, in front of or behind another
object) from the scene graph alone, before or without a render. A slow test checks it against
Blender's own ``world_to_camera_view``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pairsmith.scenes.scene_config import SceneObject

CameraJitter = tuple[float, float, float, float]  # dx, dy, dz, yaw degrees

CAMERA_LOCATION = (7.2, -7.2, 6.0)
CAMERA_TARGET = (0.0, 0.0, 0.2)
CAMERA_LENS_MM = 45.0
SENSOR_MM = 36.0  # Blender's default camera sensor width


@dataclass(frozen=True)
class ImagePoint:
    """A 3D point as the camera sees it: ``x`` 0–1 across the image (left to right), ``y`` 0–1 down
    the image (top to bottom), ``depth`` in scene units along the camera's viewing axis."""

    x: float
    y: float
    depth: float


def camera_location(jitter: CameraJitter | None = None) -> tuple[float, float, float]:
    """The camera position: the fixed one, or a distractor's (rotated by yaw about the vertical
    axis through the origin, then shifted by dx, dy, dz)."""
    x, y, z = CAMERA_LOCATION
    if jitter:
        dx, dy, dz, yaw = jitter
        c, s = math.cos(math.radians(yaw)), math.sin(math.radians(yaw))
        x, y = x * c - y * s + dx, x * s + y * c + dy
        z += dz
    return (x, y, z)


def _sub(a, b):
    return (a[0] - b[0], a[1] - b[1], a[2] - b[2])


def _dot(a, b) -> float:
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def _cross(a, b):
    return (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])


def _unit(a):
    n = math.sqrt(_dot(a, a))
    return (a[0] / n, a[1] / n, a[2] / n)


def project(point: tuple[float, float, float], width: int, height: int,
            jitter: CameraJitter | None = None) -> ImagePoint:
    """Where ``point`` (world x, y, z) lands in a ``width`` x ``height`` render."""
    eye = camera_location(jitter)
    forward = _unit(_sub(CAMERA_TARGET, eye))
    right = _unit(_cross(forward, (0.0, 0.0, 1.0)))
    up = _cross(right, forward)
    rel = _sub(point, eye)
    depth = _dot(rel, forward)
    if depth <= 0:
        raise ValueError(f"point {point} is behind the camera")
    focal = CAMERA_LENS_MM / SENSOR_MM  # focal length in units of the sensor's fitted side
    fit = max(width, height)
    x = 0.5 + focal * _dot(rel, right) / depth * fit / width
    y = 0.5 - focal * _dot(rel, up) / depth * fit / height
    return ImagePoint(x, y, depth)


def object_centre(obj: SceneObject) -> tuple[float, float, float]:
    """The centre of the object's mesh as the renderer scales and places it (it stands on z = 0)."""
    half_height = obj.radius / math.sqrt(2.0) if obj.shape == "cube" else obj.radius
    return (obj.position[0], obj.position[1], half_height)


def see(obj: SceneObject, width: int, height: int, jitter: CameraJitter | None = None) -> ImagePoint:
    """Where the camera sees the object's centre."""
    return project(object_centre(obj), width, height, jitter)
