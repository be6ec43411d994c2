"""Rasterise an instance as a cluttered, textured photo and as free-hand sketches (PIL drawing + NumPy).

Both are drawn supersampled and reduced with a box filter (anti-aliasing). What keeps the task hard:
photos carry a random colour and texture over background clutter at a random scale and position;
sketches are sparse wobbly strokes with omissions, drawn under a different pose, a random affine map
and a smooth warp, with no background.
"""

from __future__ import annotations

import colorsys
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

from sbir_bench.data.synthetic.shapes import ShapeParts, rotate

PHOTO_SUPERSAMPLE = 4
SKETCH_SUPERSAMPLE = 2
OMIT_PROBABILITY = 0.2  # chance that a sketch drops a stroke


@dataclass(frozen=True)
class Pose:
    """An instance's orientation, shared (with noise) by its photo and its sketches."""

    angle: float  # radians, counter-clockwise
    mirrored: bool

    @classmethod
    def sample(cls, rng: np.random.Generator) -> Pose:
        return cls(angle=float(rng.uniform(-0.6, 0.6)), mirrored=bool(rng.random() < 0.5))

    def apply(self, points: np.ndarray, extra_angle: float = 0.0) -> np.ndarray:
        if self.mirrored:
            points = points * np.array([-1.0, 1.0])
        return rotate(points, self.angle + extra_angle)


def _fit_to_frame(parts: ShapeParts, frame: int, fill: float, shift: np.ndarray) -> ShapeParts:
    """Map object units to pixels (y down): the bounding box spans ``fill`` of the frame, offset by
    ``shift`` ∈ [-1, 1]² times half the free margin."""
    points = parts.all_points()
    low, high = points.min(axis=0), points.max(axis=0)
    scale = fill * frame / float((high - low).max())
    free = frame - scale * (high - low)
    origin = free / 2.0 * (1.0 + shift)

    def to_pixels(p: np.ndarray) -> np.ndarray:
        q = (p - low) * scale + origin
        return np.stack([q[:, 0], frame - q[:, 1]], axis=1)

    return parts.map(to_pixels)


def _polygon(draw: ImageDraw.ImageDraw, points: np.ndarray, fill: int) -> None:
    draw.polygon([tuple(p) for p in points.tolist()], fill=fill)


def _rgb(hue: float, saturation: float, value: float) -> np.ndarray:
    return np.asarray(colorsys.hsv_to_rgb(hue % 1.0, saturation, value), dtype=np.float32)


def _smooth_field(
    rng: np.random.Generator, xx: np.ndarray, yy: np.ndarray, waves: int, freq: float
) -> np.ndarray:
    """Low-frequency noise in [0, 1]: a sum of random plane waves (``freq`` cycles per frame at most)."""
    angles = rng.uniform(0.0, 2.0 * np.pi, waves).astype(np.float32)
    freqs = (rng.uniform(0.5, freq, waves) * 2.0 * np.pi).astype(np.float32)
    phases = rng.uniform(0.0, 2.0 * np.pi, waves).astype(np.float32)
    along = xx[..., None] * np.cos(angles) + yy[..., None] * np.sin(angles)
    field = np.sin(along * freqs + phases).sum(axis=-1)
    return (field / (2.0 * waves) + 0.5).astype(np.float32)


def _texture(rng: np.random.Generator, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
    """A mixing field in [0, 1] between an object's two colours: stripes, gradient, blotches or checks."""
    kind = rng.integers(4)
    angle = rng.uniform(0.0, np.pi)
    u = xx * np.cos(angle) + yy * np.sin(angle)
    if kind == 0:
        return 0.5 + 0.5 * np.sin(2.0 * np.pi * rng.uniform(3.0, 8.0) * u + rng.uniform(0.0, 2.0 * np.pi))
    if kind == 1:
        return np.clip(u * rng.uniform(0.8, 1.5) + rng.uniform(-0.5, 0.2), 0.0, 1.0)
    if kind == 2:
        return _smooth_field(rng, xx, yy, waves=5, freq=4.0)
    v = -xx * np.sin(angle) + yy * np.cos(angle)
    cells = rng.uniform(4.0, 9.0)
    return ((np.floor(u * cells) + np.floor(v * cells)) % 2).astype(np.float32)


def _clutter(
    rng: np.random.Generator, size: int, avoid_hue: float, xx: np.ndarray, yy: np.ndarray
) -> np.ndarray:
    """Background in [0, 1]^3: a two-colour gradient, noise, and random blobs, lines and polygons whose
    hues stay away from the object's."""

    def colour() -> tuple[int, int, int]:
        hue = avoid_hue + rng.uniform(0.18, 0.82)
        rgb = _rgb(hue, rng.uniform(0.15, 0.9), rng.uniform(0.25, 1.0))
        return tuple(int(c) for c in (rgb * 255).round())

    ramp = np.clip(xx * rng.uniform(-1, 1) + yy * rng.uniform(-1, 1) + 0.5, 0.0, 1.0)[..., None]
    base_a, base_b = (np.asarray(colour(), np.float32) / 255 for _ in range(2))
    background = (1 - ramp) * base_a + ramp * base_b
    background += (_smooth_field(rng, xx, yy, waves=4, freq=6.0)[..., None] - 0.5) * 0.3
    image = Image.fromarray((np.clip(background, 0, 1) * 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(rng.integers(3, 8)):
        centre, radii = rng.uniform(0, size, 2), rng.uniform(0.04, 0.22, 2) * size
        draw.ellipse([*(centre - radii), *(centre + radii)], fill=colour())
    for _ in range(rng.integers(1, 4)):
        corners = rng.uniform(0, size, 2) + rng.uniform(-0.3, 0.3, (int(rng.integers(3, 5)), 2)) * size
        draw.polygon([tuple(p) for p in corners.tolist()], fill=colour())
    for _ in range(rng.integers(2, 7)):
        ends = rng.uniform(0, size, 4)
        draw.line(ends.tolist(), fill=colour(), width=int(rng.integers(1, max(2, size // 20) + 1)))
    return np.asarray(image, dtype=np.float32) / 255.0


def _place_photo(
    parts: ShapeParts, pose: Pose, frame: int, rng: np.random.Generator, fill: tuple[float, float]
) -> ShapeParts:
    """The photo's placement: the first draws of its stream (:func:`render_edge_map` repeats them)."""
    return _fit_to_frame(
        parts.map(pose.apply), frame, fill=float(rng.uniform(*fill)), shift=rng.uniform(-0.9, 0.9, 2)
    )


def _detail_lines(placed: ShapeParts, frame: int, width: int) -> np.ndarray:
    """Coverage (float [H, W] in [0, 1] at ``frame / PHOTO_SUPERSAMPLE``) of the open interior curves."""
    image = Image.new("L", (frame, frame), 0)
    draw = ImageDraw.Draw(image)
    for line in placed.details:
        draw.line([tuple(p) for p in line.tolist()], fill=255, width=width, joint="curve")
    return np.asarray(image.reduce(PHOTO_SUPERSAMPLE), dtype=np.float32) / 255.0


def render_photo(
    parts: ShapeParts,
    pose: Pose,
    image_size: int,
    rng: np.random.Generator,
    fill: tuple[float, float] = (0.5, 0.85),
    clutter: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Return the photo (uint8 [H, W, 3]) and the object's coverage mask (float [H, W] in [0, 1]).

    The object's bounding box spans a random share in ``fill`` of the frame; ``parts.details`` (seams,
    laces: empty for the category-level shapes) are drawn as lines over the object, dark on a light one
    and light on a dark one; ``clutter`` < 1
    fades the background towards white (0: a plain white backdrop, as product shots)."""
    frame = image_size * PHOTO_SUPERSAMPLE
    placed = _place_photo(parts, pose, frame, rng, fill)
    mask_image = Image.new("L", (frame, frame), 0)
    draw = ImageDraw.Draw(mask_image)
    for solid in placed.solids:
        _polygon(draw, solid, 255)
    for cutout in placed.cutouts:
        _polygon(draw, cutout, 0)
    _polygon(draw, placed.body, 255)
    for hole in placed.holes:
        _polygon(draw, hole, 0)
    mask_image = mask_image.reduce(PHOTO_SUPERSAMPLE)
    mask = np.asarray(mask_image, dtype=np.float32) / 255.0
    # shading: darker towards the rim, as a rounded object lit from the front
    inner = mask_image.filter(ImageFilter.GaussianBlur(radius=image_size / 14))
    shade = 0.55 + 0.45 * (np.asarray(inner, dtype=np.float32) / 255.0)

    grid = (np.arange(image_size, dtype=np.float32) + 0.5) / image_size
    xx, yy = np.meshgrid(grid, grid)
    hue = float(rng.random())
    first = _rgb(hue, rng.uniform(0.5, 1.0), rng.uniform(0.6, 1.0))
    second = _rgb(hue + rng.uniform(-0.08, 0.08), rng.uniform(0.3, 1.0), rng.uniform(0.2, 0.6))
    mix = _texture(rng, xx, yy)[..., None]
    obj = ((1 - mix) * first + mix * second) * shade[..., None]
    if placed.details:
        lines = _detail_lines(placed, frame, width=PHOTO_SUPERSAMPLE * max(1, image_size // 48))
        ink = 0.08 if float(first.mean()) > 0.45 else 0.92  # a seam shows dark on light, light on dark
        obj = obj * (1.0 - lines[..., None]) + ink * lines[..., None]
    background = _clutter(rng, image_size, hue, xx, yy)
    if clutter < 1.0:
        background = clutter * background + (1.0 - clutter)
    photo = mask[..., None] * obj + (1 - mask[..., None]) * background
    photo += rng.normal(0.0, 0.02, photo.shape).astype(np.float32)
    return (np.clip(photo, 0.0, 1.0) * 255).round().astype(np.uint8), mask


def _resample(line: np.ndarray, spacing: float, closed: bool) -> np.ndarray:
    """Points every ``spacing`` along a polyline (arc-length resampling)."""
    if closed:
        line = np.concatenate([line, line[:1]])
    lengths = np.linalg.norm(np.diff(line, axis=0), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(lengths)])
    samples = np.linspace(0.0, arc[-1], max(2, int(arc[-1] / spacing) + 1))
    return np.stack([np.interp(samples, arc, line[:, 0]), np.interp(samples, arc, line[:, 1])], axis=1)


def _wobble(stroke: np.ndarray, rng: np.random.Generator, amplitude: float, spacing: float) -> np.ndarray:
    """Displace a stroke along its normals by a smooth random profile plus a small whole-stroke shift."""
    padded = np.concatenate([stroke[:1], stroke, stroke[-1:]])
    tangent = padded[2:] - padded[:-2]
    normal = np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)
    normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-9)
    arc = np.arange(len(stroke)) * spacing
    wavelengths = rng.uniform(12.0, 40.0, 3) * amplitude
    weights = amplitude * rng.uniform(0.3, 1.0, 3)
    profile = np.sin(2 * np.pi * arc[:, None] / wavelengths + rng.uniform(0, 2 * np.pi, 3)) @ weights
    return stroke + profile[:, None] * normal + rng.normal(0.0, amplitude * 0.6, 2)


def _strokes(
    line: np.ndarray, closed: bool, rng: np.random.Generator, frame: int, spacing: float
) -> list[np.ndarray]:
    """Cut an outline into a few pen strokes of similar length (overshooting or leaving gaps at the
    joins), drop some (at most a third of them) and make each wobble."""
    points = _resample(line, spacing, closed)
    count = len(points)
    pieces = 1 + int(count * spacing / (0.45 * frame)) + int(rng.integers(0, 2))
    start = int(rng.integers(count)) if closed else 0
    bounds = np.linspace(0, count, pieces + 1)
    bounds[1:-1] += rng.uniform(-0.25, 0.25, pieces - 1) * count / pieces
    bounds = bounds.round().astype(int)
    dropped = rng.random(pieces) < OMIT_PROBABILITY
    dropped[np.flatnonzero(dropped)[pieces // 3 :]] = False
    strokes = []
    for begin, end in zip(bounds[:-1][~dropped], bounds[1:][~dropped], strict=True):
        begin, end = begin - int(rng.integers(-2, 4)), end + int(rng.integers(-2, 4))
        index = np.arange(begin, end) + start
        index = index % count if closed else np.clip(index, 0, count - 1)
        if len(index) >= 2:
            strokes.append(_wobble(points[index], rng, amplitude=0.01 * frame, spacing=spacing))
    return strokes


def _smooth_warp(rng: np.random.Generator, amplitude: float) -> Callable[[np.ndarray], np.ndarray]:
    """A smooth displacement field p ↦ p + Σ a·sin(ω·p + φ) (two waves per axis)."""
    omegas = rng.normal(0.0, 1.6, (2, 2, 2))  # [wave, axis, xy]
    phases = rng.uniform(0.0, 2 * np.pi, (2, 2))
    amplitudes = rng.uniform(-amplitude, amplitude, (2, 2))

    def warp(points: np.ndarray) -> np.ndarray:
        return points + (amplitudes * np.sin(np.einsum("nk,wak->nwa", points, omegas) + phases)).sum(axis=1)

    return warp


def render_sketch(parts: ShapeParts, pose: Pose, image_size: int, rng: np.random.Generator) -> np.ndarray:
    """A free-hand sketch of the instance: uint8 [H, W], white paper, dark strokes."""
    frame = image_size * SKETCH_SUPERSAMPLE
    affine = np.eye(2) + rng.normal(0.0, 0.07, (2, 2))
    warp = _smooth_warp(rng, amplitude=0.06)
    extra_angle = float(rng.normal(0.0, 0.15))
    if rng.random() < 0.6:  # an interior arc along the outline, as sketchers add shading cues
        count = len(parts.body)
        first, length = int(rng.integers(count)), int(rng.integers(count // 10, count // 4))
        arc = np.take(parts.body, np.arange(first, first + length), axis=0, mode="wrap")
        parts = replace(parts, details=[*parts.details, arc * rng.uniform(0.6, 0.8)])
    distorted = parts.map(lambda p: warp(pose.apply(p, extra_angle) @ affine.T))
    placed = _fit_to_frame(
        distorted, frame, fill=float(rng.uniform(0.7, 0.92)), shift=rng.uniform(-0.4, 0.4, 2)
    )

    def solid(polygons: list[np.ndarray], removed: list[np.ndarray]) -> Image.Image:
        image = Image.new("L", (frame, frame), 0)
        draw = ImageDraw.Draw(image)
        for polygon in polygons:
            _polygon(draw, polygon, 255)
        for polygon in removed:
            _polygon(draw, polygon, 0)
        return image

    width_scale = max(1.0, image_size / 80.0) * SKETCH_SUPERSAMPLE
    spacing = frame / 100.0

    def ink(lines: list[tuple[np.ndarray, bool]]) -> Image.Image:
        image = Image.new("L", (frame, frame), 0)
        draw = ImageDraw.Draw(image)
        for line, closed in lines:
            for stroke in _strokes(line, closed, rng, frame, spacing):
                width = max(1, int(round(rng.uniform(0.8, 1.9) * width_scale)))
                draw.line(
                    [tuple(p) for p in stroke.tolist()],
                    fill=int(rng.integers(190, 256)),
                    width=width,
                    joint="curve",
                )
        return image

    # where parts overlap a sketcher draws their union's outline: each part's strokes are erased inside
    # the other parts
    strokes = ink([(placed.body, True)])
    if placed.solids:
        strokes = ImageChops.subtract(strokes, solid(placed.solids, placed.cutouts))
        appendage = ink([(p, True) for p in placed.solids + placed.cutouts])
        strokes = ImageChops.lighter(strokes, ImageChops.subtract(appendage, solid([placed.body], [])))
    free = [(h, True) for h in placed.holes] + [(d, False) for d in placed.details]
    if free:
        strokes = ImageChops.lighter(strokes, ink(free))
    return np.asarray(ImageChops.invert(strokes).reduce(SKETCH_SUPERSAMPLE))


def render_edge_map(
    parts: ShapeParts,
    pose: Pose,
    image_size: int,
    rng: np.random.Generator,
    fill: tuple[float, float] = (0.5, 0.85),
) -> np.ndarray:
    """The photo's edge map, as the original fine-grained protocol serves photos (edges of product shots
    on a white background): uint8 [H, W], dark lines on white, the object's outline, holes and
    interior curves placed exactly as in :func:`render_photo` given a generator in the same state;
    no clutter, no texture, no wobble."""
    frame = image_size * PHOTO_SUPERSAMPLE
    placed = _place_photo(parts, pose, frame, rng, fill)
    mask = Image.new("L", (frame, frame), 0)
    draw = ImageDraw.Draw(mask)
    for solid in placed.solids:
        _polygon(draw, solid, 255)
    for cutout in placed.cutouts:
        _polygon(draw, cutout, 0)
    _polygon(draw, placed.body, 255)
    for hole in placed.holes:
        _polygon(draw, hole, 0)
    width = PHOTO_SUPERSAMPLE * max(1, image_size // 48)
    outline = ImageChops.subtract(mask.filter(ImageFilter.MaxFilter(2 * width - 1)), mask)
    ink = np.maximum(
        np.asarray(outline.reduce(PHOTO_SUPERSAMPLE), dtype=np.float32) / 255.0,
        _detail_lines(placed, frame, width),
    )
    return (255.0 * (1.0 - ink)).round().astype(np.uint8)
