"""Procedural CLEVR-style scenes rendered with Blender (bpy): configs, sampling, ground truth."""

if not __name__.startswith("pairsmith."):  # the folder imported by its bare name from a checkout
    raise ImportError(f"import pairsmith.scenes, not {__name__}: pairsmith installs its packages under 'pairsmith.'")
