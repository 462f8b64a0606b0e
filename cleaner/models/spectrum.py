"""Frequency fingerprints: the azimuthally averaged power spectrum of an image.

Generators up-sample, and up-sampling leaves periodic traces that show in the high-frequency
end of the power spectrum (Durall et al., "Watch your up-convolution", CVPR 2020). The feature
of an image is its 2-D log power spectrum averaged over rings of equal frequency: a 1-D profile
from DC to Nyquist. A linear head on it is a detector whose mistakes differ from a CNN's, which
is what a consensus of several prediction files needs.

Pure numpy, no TensorFlow: a batch of 256 x 256 crops costs about a millisecond per image. The
input must keep its native resolution (a resize is a low-pass filter that erases the very
evidence), hence the ``center`` crop policy for this backbone.
"""

from __future__ import annotations

import functools

import numpy as np

LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def n_features(size: int) -> int:
    """Length of the profile of an ``size x size`` image: rings from DC to the corner."""
    return int(np.ceil(size / np.sqrt(2.0))) + 1


@functools.lru_cache(maxsize=8)
def _rings(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For an ``size x size`` rfft2 grid: ring index of each cell, cells per ring, the window."""
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    radius = np.sqrt(fx * fx + fy * fy) * size  # in frequency bins, 0 .. size/sqrt(2)
    ring = np.round(radius).astype(np.int64).ravel()
    counts = np.bincount(ring, minlength=n_features(size)).astype(np.float64)
    hann = np.hanning(size).astype(np.float32)
    return ring, counts, np.outer(hann, hann)


def radial_profile(gray: np.ndarray) -> np.ndarray:
    """Log of the power averaged over each frequency ring: ``(S, S)`` -> ``(n_features(S),)``.

    The log is taken after the ring average, so a periodic peak (one bright cell in its ring,
    the up-sampling trace) stands out instead of being averaged away in log space."""
    size = gray.shape[0]
    if gray.shape != (size, size):
        raise ValueError(f"expected a square image, got {gray.shape}")
    ring, counts, window = _rings(size)
    g = gray.astype(np.float32)
    g = (g - g.mean()) * window
    power = (np.abs(np.fft.rfft2(g)) ** 2).ravel() / (size * size)
    sums = np.bincount(ring, weights=power, minlength=counts.size)
    return np.log(sums / np.maximum(counts, 1.0) + 1e-6).astype(np.float32)


def features(batch: np.ndarray) -> np.ndarray:
    """Spectrum features of a batch of RGB images ``(N, S, S, 3)`` (0..255, any dtype):
    ``(N, n_features(S))`` float32 profiles, each shifted to mean 0 (brightness and contrast move
    the whole profile; its shape is the fingerprint)."""
    arr = np.asarray(batch)
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.shape[1] != arr.shape[2]:
        raise ValueError(f"expected (N, S, S, 3) images, got {arr.shape}")
    gray = arr.astype(np.float32) @ LUMA
    out = (
        np.stack([radial_profile(g) for g in gray])
        if len(gray)
        else np.zeros((0, arr.shape[1] // 2 + 1), np.float32)
    )
    return (out - out.mean(axis=1, keepdims=True)).astype(np.float32)
