"""Import ultralytics without its process-wide side effects.

On import, ultralytics replaces ``PIL.Image.open`` with a wrapper that, the first time Pillow cannot
identify a file, runs ``check_requirements("pi-heif")`` — a ``pip install`` in the middle of a run
on a machine with internet — and registers a HEIF opener. pairsmith decides itself what a broken
source file is (a reason row), so the original ``Image.open`` is put back and auto-install is off.
"""

from __future__ import annotations

import os


def import_ultralytics(offline: bool = False):
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    if offline:  # ultralytics' own switch: no settings sync or online probe on import
        os.environ.setdefault("YOLO_OFFLINE", "1")
    import ultralytics
    from PIL import Image

    from ultralytics.utils import patches

    original = getattr(patches, "_image_open", None)
    if original is not None and Image.open is not original:
        Image.open = original
    return ultralytics
