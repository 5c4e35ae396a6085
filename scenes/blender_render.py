"""Render scenes with Blender Cycles through the ``bpy`` wheel.

Two renders per image:

* ``render_color``: the training image, N path-traced samples with a fixed seed, so before and
  after share their noise wherever the change does not reach;
* ``render_index``: one camera ray per pixel through an emission override that writes each
  object's id (``pass_index``) into the red channel. It costs a few milliseconds and gives the
  per-pixel object ownership that ground-truth boxes are cut from, occlusion included.

bpy holds one Blender session per process, so the session builds the static world (ground,
lights, camera, meshes, materials) once and afterwards only syncs the objects that changed.
Blender writes progress lines to the C-level stdout; they are silenced during renders so the
CLI's progress bar stays readable.

Blender runs in a child process (``pairsmith.scenes.render_worker``), never in the caller's: a
Cycles render holds Python signal handlers off for as long as it takes (minutes at high samples),
so Ctrl-C could not stop a run. ``BlenderRenderer`` is the caller's handle: every call goes to
the worker's ``BlenderSession`` and waits for the answer in a way a stop interrupts at once, and
a stop kills the worker.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from pairsmith.scenes.camera import CAMERA_LENS_MM, CAMERA_TARGET, CameraJitter, camera_location
from pairsmith.scenes.scene_config import COLOR_RGB, MATERIAL_PBR, SceneObject
from pairsmith.scenes.scene_sampler import ObjectMap
from pairsmith.storage.ids import NOT_CONTENT

# (location, power in W, size): key, fill and back light, as in CLEVR.
LIGHTS = (((4.0, -3.0, 6.5), 350.0, 3.0), ((-5.0, -2.0, 4.0), 120.0, 3.0), ((-1.0, 6.0, 5.0), 180.0, 3.0))
GROUND_GRAY = 0.45
WORLD_GRAY = 0.55
GPU_BACKENDS = ("OPTIX", "CUDA", "HIP", "ONEAPI", "METAL")  # RenderSettings.gpu_backend


class RenderSettings(BaseModel):
    """How images are rendered; changing any of these changes the pixels, hence the pair ids."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    width: int = Field(320, ge=32, le=4096, description="image width in pixels")
    height: int = Field(240, ge=32, le=4096, description="image height in pixels")
    samples: int = Field(8, ge=1, le=4096, description="Cycles samples per pixel of the color render")
    denoise: bool = Field(False, description="OpenImageDenoise; ~0.8 s per 320x240 image on 2 CPU cores")
    max_bounces: int = Field(4, ge=0, le=32)
    device: Literal["cpu", "gpu"] = Field("cpu", description="Cycles device", json_schema_extra=NOT_CONTENT)
    gpu_backend: Literal["OPTIX", "CUDA", "HIP", "ONEAPI", "METAL"] = Field("CUDA", description="GPU API",
                                                                          json_schema_extra=NOT_CONTENT)
    threads: int = Field(0, ge=0, description="render threads; 0 = all cores", json_schema_extra=NOT_CONTENT)


@dataclass
class RenderTimer:
    """Wall time spent inside Blender's renderer, so benchmarks can separate it from overhead."""

    seconds: float = 0.0
    renders: int = 0


def srgb_to_linear(c: float) -> float:
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


@contextlib.contextmanager
def _quiet_stdout():
    """Send the C-level stdout to /dev/null while Blender renders (it prints a line per tile)."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, ValueError, io.UnsupportedOperation):
        yield  # stdout captured by a harness: nothing to silence at fd level
        return
    sys.stdout.flush()
    saved = os.dup(fd)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
        yield
    finally:
        os.dup2(saved, fd)
        os.close(devnull)
        os.close(saved)


class BlenderRenderer:
    """Renders through the process's Blender worker; cheap to construct and picklable.

    Blender starts in the worker on the first call. Errors raised in Blender come back as the same
    exception (a ``RuntimeError`` with its message where it cannot be pickled); a worker that dies
    (a Blender crash) raises ``RenderWorkerDied`` and the next call starts a new one. A stop
    (Ctrl-C, SIGTERM) interrupts a call at once and kills the worker.
    """

    def __init__(self, settings: RenderSettings):
        self.settings = settings
        self.timer = RenderTimer()

    def __getstate__(self):
        return {"settings": self.settings}

    def __setstate__(self, state):
        self.__init__(state["settings"])

    def _call(self, method: str, *args):
        from pairsmith.scenes.render_worker import call

        value, seconds, renders = call(self.settings, method, *args)
        self.timer.seconds += seconds
        self.timer.renders += renders
        return value

    def prepare(self) -> None:
        """Start Blender and pick the device now, so a missing GPU fails the run, not each pair."""
        self._call("prepare")

    def render_color(self, objects: ObjectMap, seed: int, camera: CameraJitter | None = None) -> bytes:
        """PNG bytes of the scene as the model will see it."""
        return self._call("render_color", objects, seed, camera)

    def render_index(self, objects: ObjectMap, camera: CameraJitter | None = None) -> np.ndarray:
        """(H, W) uint8 map: object id + 1 where an object is the first thing a pixel sees, else 0."""
        return self._call("render_index", objects, camera)

    def image_positions(self, points: list[tuple[float, float, float]],
                        camera: CameraJitter | None = None) -> list[tuple[float, float, float]]:
        """Blender's own projection of world points (``world_to_camera_view``): (x 0–1 left to right,
        y 0–1 top to bottom, depth along the view axis). Renders nothing."""
        return self._call("image_positions", points, camera)


class BlenderSession:
    """Blender itself (bpy), in this process: what the render worker runs. Use ``BlenderRenderer``
    everywhere else; a session here keeps Python's signal handlers waiting while Cycles renders."""

    def __init__(self, settings: RenderSettings):
        self.settings = settings
        self.timer = RenderTimer()
        self._ready = False

    # -- public ---------------------------------------------------------------------------
    def prepare(self) -> None:
        """Start Blender and pick the device now, so a missing GPU fails the run, not each pair."""
        self._ensure_ready()

    def render_color(self, objects: ObjectMap, seed: int, camera: CameraJitter | None = None) -> bytes:
        """PNG bytes of the scene as the model will see it."""
        self._ensure_ready()
        self._sync(objects)
        self._place_camera(camera)
        self._configure_color(seed)
        path = self._render("color.png")
        return path.read_bytes()

    def render_index(self, objects: ObjectMap, camera: CameraJitter | None = None) -> np.ndarray:
        """(H, W) uint8 map: object id + 1 where an object is the first thing a pixel sees, else 0."""
        self._ensure_ready()
        self._sync(objects)
        self._place_camera(camera)
        self._configure_index()
        path = self._render("index.png")
        rgba = np.asarray(Image.open(path))
        return np.where(rgba[..., 3] > 0, rgba[..., 0], 0).astype(np.uint8)

    def image_positions(self, points: list[tuple[float, float, float]],
                        camera: CameraJitter | None = None) -> list[tuple[float, float, float]]:
        """Blender's own projection of world points (``world_to_camera_view``): (x 0–1 left to right,
        y 0–1 top to bottom, depth along the view axis). Renders nothing; the check on
        ``pairsmith.scenes.camera.project``."""
        self._ensure_ready()
        self._place_camera(camera)
        from bpy_extras.object_utils import world_to_camera_view
        from mathutils import Vector

        self._bpy.context.view_layer.update()
        out = []
        for point in points:
            co = world_to_camera_view(self._scene, self._camera, Vector(point))
            out.append((co.x, 1.0 - co.y, co.z))
        return out

    # -- setup ----------------------------------------------------------------------------
    def _ensure_ready(self) -> None:
        global _ACTIVE
        if self._ready and _ACTIVE is self:
            return
        import bpy

        self._bpy = bpy
        with _quiet_stdout():
            bpy.ops.wm.read_factory_settings(use_empty=True)
        self._scene = bpy.context.scene
        self._tmp = Path(tempfile.mkdtemp(prefix="pairsmith-render-"))
        self._setup_engine()
        self._setup_world()
        self._meshes = self._build_meshes()
        self._materials: dict[tuple[str, str], object] = {}
        self._index_material = self._build_index_material()
        self._objects: dict[int, object] = {}
        self._ready = True
        _ACTIVE = self

    def _setup_engine(self) -> None:
        bpy, sc, s = self._bpy, self._scene, self.settings
        sc.render.engine = "CYCLES"
        sc.render.resolution_x, sc.render.resolution_y = s.width, s.height
        sc.render.resolution_percentage = 100
        sc.render.image_settings.file_format = "PNG"
        sc.render.use_persistent_data = True
        sc.cycles.use_adaptive_sampling = False
        if s.threads:
            sc.render.threads_mode = "FIXED"
            sc.render.threads = s.threads
        if s.device == "gpu":
            # Cycles renders on the preference's device type with every listed device whose `use`
            # is set, and silently on the CPU when none is: so check first, then switch the CPU off.
            if not cycles_gpu_devices(s.gpu_backend):
                found = {b: cycles_gpu_devices(b) for b in GPU_BACKENDS if b != s.gpu_backend}
                listed = "; ".join(f"{b}: {', '.join(names)}" for b, names in found.items() if names) or "none"
                raise RuntimeError(f"Blender sees no {s.gpu_backend} device (other GPU backends: {listed}); "
                                   "render with device 'cpu' or pick another gpu_backend")
            prefs = bpy.context.preferences.addons["cycles"].preferences
            prefs.compute_device_type = s.gpu_backend
            for d in prefs.devices:
                d.use = d.type == s.gpu_backend
            sc.cycles.device = "GPU"
        else:
            sc.cycles.device = "CPU"

    def _setup_world(self) -> None:
        bpy, sc = self._bpy, self._scene
        world = bpy.data.worlds.new("world")
        sc.world = world
        bg = world.node_tree.nodes["Background"]
        bg.inputs["Color"].default_value = (WORLD_GRAY, WORLD_GRAY, WORLD_GRAY, 1.0)
        bg.inputs["Strength"].default_value = 0.6

        cam = bpy.data.cameras.new("camera")
        cam.lens = CAMERA_LENS_MM
        self._camera = bpy.data.objects.new("camera", cam)
        sc.collection.objects.link(self._camera)
        sc.camera = self._camera

        import bmesh

        bm = bmesh.new()
        bmesh.ops.create_grid(bm, x_segments=1, y_segments=1, size=60.0)
        mesh = bpy.data.meshes.new("ground")
        bm.to_mesh(mesh)
        bm.free()
        mesh.materials.append(self._principled("ground", (GROUND_GRAY,) * 3, metallic=0.0, roughness=0.9))
        ground = bpy.data.objects.new("ground", mesh)
        ground.pass_index = 0
        sc.collection.objects.link(ground)

        for n, (location, power, size) in enumerate(LIGHTS):
            light = bpy.data.lights.new(f"light-{n}", "AREA")
            light.energy, light.size = power, size
            obj = bpy.data.objects.new(f"light-{n}", light)
            obj.location = location
            obj.rotation_euler = self._look_at(location, (0.0, 0.0, 0.0))
            sc.collection.objects.link(obj)

    def _build_meshes(self) -> dict[str, object]:
        """Unit meshes: cube of half-side 1, sphere of radius 1, cylinder of radius 1 and height 2."""
        import bmesh

        bpy = self._bpy
        builders = {
            "cube": lambda bm: bmesh.ops.create_cube(bm, size=2.0),
            "sphere": lambda bm: bmesh.ops.create_uvsphere(bm, u_segments=48, v_segments=24, radius=1.0),
            "cylinder": lambda bm: bmesh.ops.create_cone(
                bm, cap_ends=True, segments=48, radius1=1.0, radius2=1.0, depth=2.0
            ),
        }
        meshes = {}
        for shape, build in builders.items():
            bm = bmesh.new()
            build(bm)
            mesh = bpy.data.meshes.new(shape)
            bm.to_mesh(mesh)
            bm.free()
            if shape == "sphere":
                for poly in mesh.polygons:
                    poly.use_smooth = True
            elif shape == "cylinder":  # smooth the side, keep the caps flat
                for poly in mesh.polygons:
                    poly.use_smooth = abs(poly.normal.z) < 0.5
            mesh.materials.append(None)  # one slot, filled per object
            meshes[shape] = mesh
        return meshes

    def _principled(self, name: str, rgb: tuple[float, float, float], metallic: float, roughness: float):
        mat = self._bpy.data.materials.new(name)
        bsdf = mat.node_tree.nodes["Principled BSDF"]
        bsdf.inputs["Base Color"].default_value = (*rgb, 1.0)
        bsdf.inputs["Metallic"].default_value = metallic
        bsdf.inputs["Roughness"].default_value = roughness
        return mat

    def _material(self, color: str, material: str):
        key = (color, material)
        if key not in self._materials:
            rgb = tuple(srgb_to_linear(c / 255.0) for c in COLOR_RGB[color])
            metallic, roughness = MATERIAL_PBR[material]
            self._materials[key] = self._principled(f"{color}-{material}", rgb, metallic, roughness)
        return self._materials[key]

    def _build_index_material(self):
        """Emission of (object index / 255): with the Raw view transform the PNG stores the id."""
        mat = self._bpy.data.materials.new("object-index")
        nodes, links = mat.node_tree.nodes, mat.node_tree.links
        for node in list(nodes):
            nodes.remove(node)
        info = nodes.new("ShaderNodeObjectInfo")
        scale = nodes.new("ShaderNodeMath")
        scale.operation = "DIVIDE"
        scale.inputs[1].default_value = 255.0
        emission = nodes.new("ShaderNodeEmission")
        out = nodes.new("ShaderNodeOutputMaterial")
        links.new(info.outputs["Object Index"], scale.inputs[0])
        links.new(scale.outputs[0], emission.inputs["Color"])
        links.new(emission.outputs[0], out.inputs["Surface"])
        return mat

    # -- per render -----------------------------------------------------------------------
    def _sync(self, objects: ObjectMap) -> None:
        """Make Blender's objects match ``objects``; unchanged ones are left alone."""
        bpy, sc = self._bpy, self._scene
        for object_id in list(self._objects):
            if object_id not in objects:
                bpy.data.objects.remove(self._objects.pop(object_id), do_unlink=True)
        for object_id, spec in objects.items():
            if not 0 <= object_id < 255:
                raise ValueError(f"object id {object_id} does not fit the 8-bit index map")
            obj = self._objects.get(object_id)
            if obj is None:
                obj = bpy.data.objects.new(f"object-{object_id}", self._meshes[spec.shape])
                sc.collection.objects.link(obj)
                obj.material_slots[0].link = "OBJECT"
                obj.pass_index = object_id + 1
                self._objects[object_id] = obj
            self._apply(obj, spec)

    def _apply(self, obj, spec: SceneObject) -> None:
        if obj.data is not self._meshes[spec.shape]:
            obj.data = self._meshes[spec.shape]
            obj.material_slots[0].link = "OBJECT"
        scale = spec.radius / math.sqrt(2.0) if spec.shape == "cube" else spec.radius
        obj.scale = (scale, scale, scale)
        obj.location = (spec.position[0], spec.position[1], scale)
        obj.rotation_euler = (0.0, 0.0, math.radians(spec.rotation))
        material = self._material(spec.color, spec.material)
        if obj.material_slots[0].material is not material:
            obj.material_slots[0].material = material

    def _place_camera(self, jitter: CameraJitter | None) -> None:
        location = camera_location(jitter)
        self._camera.location = location
        self._camera.rotation_euler = self._look_at(location, CAMERA_TARGET)

    @staticmethod
    def _look_at(location, target):
        from mathutils import Vector

        return (Vector(target) - Vector(location)).to_track_quat("-Z", "Y").to_euler()

    def _configure_color(self, seed: int) -> None:
        sc, s = self._scene, self.settings
        self._bpy.context.view_layer.material_override = None
        sc.cycles.samples = s.samples
        sc.cycles.seed = seed % (2**31)
        sc.cycles.use_denoising = s.denoise
        sc.cycles.max_bounces = s.max_bounces
        sc.cycles.filter_width = 1.5
        sc.render.film_transparent = False
        sc.render.dither_intensity = 1.0
        sc.view_settings.view_transform = "AgX"
        sc.render.image_settings.color_mode = "RGB"

    def _configure_index(self) -> None:
        sc = self._scene
        self._bpy.context.view_layer.material_override = self._index_material
        sc.cycles.samples = 1
        sc.cycles.seed = 0
        sc.cycles.use_denoising = False
        sc.cycles.max_bounces = 0
        sc.cycles.filter_width = 0.01  # one ray through each pixel centre: no blended ids
        sc.render.film_transparent = True
        sc.render.dither_intensity = 0.0
        sc.view_settings.view_transform = "Raw"
        sc.render.image_settings.color_mode = "RGBA"

    def _render(self, name: str) -> Path:
        path = self._tmp / name
        self._scene.render.filepath = str(path)
        start = time.perf_counter()
        with _quiet_stdout():
            self._bpy.ops.render.render(write_still=True)
        self.timer.seconds += time.perf_counter() - start
        self.timer.renders += 1
        return path


def cycles_gpu_devices(backend: str) -> list[str]:
    """Names of the GPUs Cycles can render on with ``backend`` here (never the CPU); empty when the
    driver, the GPU or this bpy build lacks that backend (METAL exists only on macOS)."""
    import bpy

    prefs = bpy.context.preferences.addons["cycles"].preferences
    return [d.name for d in prefs.get_devices_for_type(backend) if d.type == backend]


_ACTIVE: BlenderSession | None = None
_SESSIONS: dict[str, BlenderSession] = {}
_RENDERERS: dict[str, BlenderRenderer] = {}


def get_session(settings: RenderSettings) -> BlenderSession:
    """One Blender session per process and settings (in the render worker), so Blender's world is
    built once per worker."""
    key = settings.model_dump_json()
    if key not in _SESSIONS:
        _SESSIONS[key] = BlenderSession(settings)
    return _SESSIONS[key]


def get_renderer(settings: RenderSettings) -> BlenderRenderer:
    """The handle for ``settings`` (one per process and settings; they share one worker)."""
    key = settings.model_dump_json()
    if key not in _RENDERERS:
        _RENDERERS[key] = BlenderRenderer(settings)
    return _RENDERERS[key]
