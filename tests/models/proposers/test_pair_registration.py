"""Registering an edited photo onto its original: residual flow, photometric fit, warp coverage."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pairsmith.models.proposers.dense_registration import ResidualFlowConfig, residual_flow, warp_by_flow
from pairsmith.models.proposers.pair_alignment import Alignment, warp_with_coverage
from pairsmith.models.proposers.photometric import PhotometricConfig, fit_photometry

H, W = 192, 256


def _texture(seed: int = 0) -> np.ndarray:
    """A photo-like RGB texture: smooth blobs at several scales (trackable by optical flow)."""
    import cv2

    rng = np.random.default_rng(seed)
    out = np.zeros((H, W, 3), np.float32)
    for scale in (4, 8, 16, 32):
        small = rng.normal(0, 1, (H // scale + 2, W // scale + 2, 3)).astype(np.float32)
        out += cv2.resize(small, (W + 2 * scale, H + 2 * scale), interpolation=cv2.INTER_CUBIC)[scale:scale + H, scale:scale + W]
    out = (out - out.min()) / (out.max() - out.min())
    return (out * 220 + 15).astype(np.uint8)


def _known_warp(image: np.ndarray, amplitude: float) -> tuple[np.ndarray, np.ndarray]:
    """``image`` sampled at x + d(x): a smooth, known displacement field d (pixels), and d."""
    import cv2

    gy, gx = np.mgrid[:H, :W].astype(np.float32)
    dx = amplitude * np.sin(2 * np.pi * gy / H)
    dy = 0.5 * amplitude * np.cos(2 * np.pi * gx / W)
    warped = cv2.remap(image, gx + dx, gy + dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return warped, np.stack([dx, dy], axis=2)


def test_residual_flow_recovers_a_known_smooth_warp_and_undoes_it():
    """The 'after' image is the 'before' image seen through a known smooth warp of up to 3 px:
    the flow at each before pixel points to where that content sits in the after image."""
    before = _texture()
    # after(x) = before(x + d(x)): the before content at x now sits at about x - d(x)
    after, d = _known_warp(before, amplitude=3.0)
    flow = residual_flow(before, after, ResidualFlowConfig(smooth_fraction=0.02, max_shift_fraction=0.05))
    inner = (slice(20, H - 20), slice(20, W - 20))
    error = np.linalg.norm(flow.flow[inner] + d[inner], axis=2)
    assert np.median(error) < 0.3 and np.percentile(error, 95) < 0.8, (np.median(error), np.percentile(error, 95))
    registered, valid = warp_by_flow(after, np.ones((H, W), bool), flow)
    before_i, after_i, reg_i = (x[inner].astype(int) for x in (before, after, registered))
    assert np.abs(reg_i - before_i).mean() < 0.35 * np.abs(after_i - before_i).mean()
    assert valid[inner].all()


def test_residual_flow_is_capped_and_can_be_switched_off():
    before = _texture()
    after = np.roll(before, 12, axis=1)  # a 12 px shift, beyond a 2 % cap (about 5 px on 256)
    capped = residual_flow(before, after, ResidualFlowConfig(max_shift_fraction=0.02))
    assert capped.max_shift <= 0.02 * W + 1e-3
    off = residual_flow(before, after, ResidualFlowConfig(enabled=False))
    assert off.max_shift == 0.0 and off.flow.shape == (H, W, 2)
    with pytest.raises(ValueError, match="image sizes differ"):
        residual_flow(before, after[:100], ResidualFlowConfig())


def test_warp_by_flow_keeps_pixels_pulled_from_outside_masked():
    image = _texture()
    valid = np.ones((H, W), bool)
    valid[:, :40] = False  # the global warp's fill on the left
    flow = residual_flow(image, image, ResidualFlowConfig(enabled=False))
    flow.flow[..., 0] = -10.0  # every pixel samples 10 px to its left
    _, inside = warp_by_flow(image, valid, flow)
    assert not inside[:, :50].any() and inside[:, 60:].all()


def test_photometric_fit_recovers_a_colour_shift_and_ignores_a_local_edit():
    before = _texture(1)
    gain, offset = np.array([0.9, 1.05, 0.95]), np.array([12.0, -6.0, 4.0])
    shifted = np.clip((before.astype(np.float32) - offset) / gain, 0, 255)  # so before ≈ gain * after + offset
    after = shifted.round().astype(np.uint8)
    after[40:140, 60:200] = (30, 200, 240)  # a recoloured third of the picture must not bend the fit
    valid = np.ones((H, W), bool)
    fit = fit_photometry(before, after, valid, PhotometricConfig(enabled=True))
    assert fit.applied
    assert np.allclose(fit.gain, gain, atol=0.02) and np.allclose(fit.offset, offset, atol=2.0)
    corrected = fit.apply(after).astype(int)
    outside = np.ones((H, W), bool)
    outside[40:140, 60:200] = False
    assert np.abs(corrected[outside] - before[outside].astype(int)).mean() < 1.5
    assert np.abs(corrected[~outside] - before[~outside].astype(int)).mean() > 40  # the edit stays an edit


def test_photometric_fit_off_by_default_and_on_implausible_gains():
    before = _texture(2)
    valid = np.ones((H, W), bool)
    assert not fit_photometry(before, before, valid, PhotometricConfig()).applied  # default: off
    inverted = (255 - before).astype(np.uint8)  # gain -1: no photometric drift does that
    fit = fit_photometry(before, inverted, valid, PhotometricConfig(enabled=True))
    assert not fit.applied and fit.apply(inverted) is inverted
    with pytest.raises(ValueError, match="shapes differ"):
        fit_photometry(before, before[:10], valid, PhotometricConfig(enabled=True))


def test_warp_with_coverage_marks_where_the_after_image_reaches():
    after = np.full((100, 100, 3), 200, np.uint8)
    shift = Alignment("similarity", (1.0, 0.0, 50.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0), 1.0, 0.5, 10)
    warped, covered = warp_with_coverage((200, 100), after, shift)
    assert warped.shape == (100, 200, 3) and covered.shape == (100, 200)
    assert covered[:, 50:150].all() and not covered[:, :50].any() and not covered[:, 151:].any()
    assert (warped[:, 60:140] == 200).all()
    Image.fromarray(warped)  # a plain uint8 image
