"""Procedural 3D models for ``synthetic_3d``: 24 classes of triangle meshes built from primitives.

Every class is a function of a random generator that assembles boxes, frustums (cylinders and cones),
ellipsoids and tori into its structure (a chair's seat, back and legs; a mug's body and handle; a
plane's fuselage, wings and tail) with instance-level variation: proportions, part counts (legs,
shelves, wheels), optional parts (armrests, stretchers, pillows). Meshes stay small (a few hundred to
about two thousand faces) so that rendering them is fast. Coordinates: y up, the object standing on (or
centred over) the ground plane; the renderer normalises scale and position.

Each class also carries a set of structural attributes (:data:`ATTRIBUTE_NAMES`): what it is made of and
how (legs, a back, wheels, a radial symmetry, ...). Their 0/1 vectors are the dataset's class semantics
(the prototypes a method such as open cross-domain search maps into); classes listed last in
:data:`CLASSES` are the zero-shot split's unseen ones by default.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sbir_bench.data.mesh import Mesh

ATTRIBUTE_NAMES = (
    "legs",
    "back",
    "flat_top",
    "seat",
    "wheels",
    "wings",
    "handle",
    "container",
    "shelves",
    "round_body",
    "cone_part",
    "thin_pole",
    "tall",
    "long",
    "flat",
    "radial_symmetry",
    "stacked",
    "openings",
)


def rotation(axis: str, angle: float) -> np.ndarray:
    """The 3x3 rotation by ``angle`` radians about the x, y or z axis."""
    c, s = math.cos(angle), math.sin(angle)
    if axis == "x":
        return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])
    if axis == "y":
        return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


class Parts:
    """Accumulates primitives (each a closed triangle mesh) into one mesh."""

    def __init__(self) -> None:
        self._vertices: list[np.ndarray] = []
        self._faces: list[np.ndarray] = []
        self._count = 0

    def _add(self, vertices: np.ndarray, faces: np.ndarray) -> None:
        self._vertices.append(np.asarray(vertices, dtype=np.float64))
        self._faces.append(np.asarray(faces, dtype=np.int64) + self._count)
        self._count += len(vertices)

    def box(self, centre, size, rot: np.ndarray | None = None) -> None:
        """An axis-aligned box of ``size`` (x, y, z) at ``centre``, optionally rotated about its centre."""
        corners = np.array([[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)])
        corners = corners * np.asarray(size, dtype=np.float64)
        if rot is not None:
            corners = corners @ rot.T
        quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
        faces = [(a, b, c) for a, b, c, d in quads] + [(a, c, d) for a, b, c, d in quads]
        self._add(corners + np.asarray(centre, dtype=np.float64), faces)

    def frustum(self, start, end, r_start: float, r_end: float, segments: int = 16) -> None:
        """A capped cylinder / cone / frustum from ``start`` to ``end`` (radii at either end; 0 = apex)."""
        start, end = np.asarray(start, dtype=np.float64), np.asarray(end, dtype=np.float64)
        axis = end - start
        axis /= np.linalg.norm(axis)
        helper = np.array([1.0, 0.0, 0.0]) if abs(axis[0]) < 0.9 else np.array([0.0, 0.0, 1.0])
        u = np.cross(axis, helper)
        u /= np.linalg.norm(u)
        v = np.cross(axis, u)
        angles = np.arange(segments) * 2 * math.pi / segments
        ring = np.cos(angles)[:, None] * u + np.sin(angles)[:, None] * v
        vertices = np.concatenate([start + r_start * ring, end + r_end * ring, [start, end]])
        i = np.arange(segments)
        j = (i + 1) % segments
        faces = np.concatenate(
            [
                np.stack([i, j, segments + j], axis=1),
                np.stack([i, segments + j, segments + i], axis=1),
                np.stack([np.full(segments, 2 * segments), j, i], axis=1),
                np.stack([np.full(segments, 2 * segments + 1), segments + i, segments + j], axis=1),
            ]
        )
        if r_start == 0 or r_end == 0:  # a cone: the triangles collapsed onto its apex are dropped
            corners = vertices[faces]
            area = np.linalg.norm(
                np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1
            )
            faces = faces[area > 1e-12]
        self._add(vertices, faces)

    def ellipsoid(
        self, centre, radii, rot: np.ndarray | None = None, rings: int = 8, segments: int = 14
    ) -> None:
        """An ellipsoid with semi-axes ``radii`` (x, y, z), optionally rotated about its centre."""
        theta = np.linspace(0.0, math.pi, rings + 1)[1:-1]
        phi = np.arange(segments) * 2 * math.pi / segments
        t, p = np.meshgrid(theta, phi, indexing="ij")
        body = np.stack([np.sin(t) * np.cos(p), np.cos(t), np.sin(t) * np.sin(p)], axis=-1).reshape(-1, 3)
        vertices = np.concatenate([[[0.0, 1.0, 0.0]], body, [[0.0, -1.0, 0.0]]]) * np.asarray(radii, float)
        if rot is not None:
            vertices = vertices @ rot.T
        n = segments
        j = np.arange(n)
        k = (j + 1) % n
        faces = [np.stack([np.zeros(n, int), 1 + k, 1 + j], axis=1)]
        for r in range(rings - 2):
            a, b = 1 + r * n + j, 1 + r * n + k
            faces += [np.stack([a, b, b + n], axis=1), np.stack([a, b + n, a + n], axis=1)]
        last = 1 + (rings - 2) * n
        faces.append(np.stack([np.full(n, len(vertices) - 1), last + j, last + k], axis=1))
        self._add(vertices + np.asarray(centre, dtype=np.float64), np.concatenate(faces))

    def torus(
        self, centre, major: float, minor: float, rot: np.ndarray | None = None, segments=(16, 8)
    ) -> None:
        """A torus around the y axis (before ``rot``) with ring radius ``major`` and tube radius ``minor``."""
        n_major, n_minor = segments
        a = np.arange(n_major) * 2 * math.pi / n_major
        b = np.arange(n_minor) * 2 * math.pi / n_minor
        aa, bb = np.meshgrid(a, b, indexing="ij")
        radius = major + minor * np.cos(bb)
        vertices = np.stack([radius * np.cos(aa), minor * np.sin(bb), radius * np.sin(aa)], axis=-1)
        vertices = vertices.reshape(-1, 3)
        if rot is not None:
            vertices = vertices @ rot.T
        i, j = np.meshgrid(np.arange(n_major), np.arange(n_minor), indexing="ij")
        p = i * n_minor + j
        q = ((i + 1) % n_major) * n_minor + j
        r = ((i + 1) % n_major) * n_minor + (j + 1) % n_minor
        s = i * n_minor + (j + 1) % n_minor
        faces = np.concatenate(
            [np.stack([p, q, r], -1).reshape(-1, 3), np.stack([p, r, s], -1).reshape(-1, 3)]
        )
        self._add(vertices + np.asarray(centre, dtype=np.float64), faces)

    def mesh(self) -> Mesh:
        return Mesh(vertices=np.concatenate(self._vertices), faces=np.concatenate(self._faces))


def _u(rng: np.random.Generator, low: float, high: float) -> float:
    return float(rng.uniform(low, high))


def _legs(
    parts: Parts, rng, width: float, depth: float, height: float, inset: float, round_legs: bool
) -> None:
    """Four legs under a ``width`` x ``depth`` top at ``height``."""
    thick = _u(rng, 0.03, 0.06)
    for sx in (-1, 1):
        for sz in (-1, 1):
            x, z = sx * (width / 2 - inset), sz * (depth / 2 - inset)
            if round_legs:
                parts.frustum((x, 0, z), (x, height, z), thick * 0.8, thick, segments=8)
            else:
                parts.box((x, height / 2, z), (thick, height, thick))


# --- the classes -----------------------------------------------------------------------------------
def chair(rng: np.random.Generator) -> Parts:
    parts = Parts()
    width, depth, seat = _u(rng, 0.4, 0.55), _u(rng, 0.4, 0.55), _u(rng, 0.4, 0.5)
    thick = _u(rng, 0.04, 0.08)
    _legs(parts, rng, width, depth, seat, 0.04, bool(rng.random() < 0.4))
    parts.box((0, seat + thick / 2, 0), (width, thick, depth))
    back = _u(rng, 0.35, 0.6)
    tilt = rotation("x", -_u(rng, 0.0, 0.25))
    parts.box((0, seat + thick + back / 2, -depth / 2 + 0.03), (width, back, 0.05), tilt)
    if rng.random() < 0.4:  # armrests
        for sx in (-1, 1):
            parts.box((sx * width / 2, seat + 0.22, 0), (0.04, 0.04, depth * 0.9))
            parts.box((sx * width / 2, seat + 0.11, depth * 0.35), (0.03, 0.22, 0.03))
    return parts


def table(rng: np.random.Generator) -> Parts:
    parts = Parts()
    width, depth, height = _u(rng, 0.9, 1.6), _u(rng, 0.6, 0.9), _u(rng, 0.65, 0.8)
    thick = _u(rng, 0.03, 0.07)
    if rng.random() < 0.3:  # a round top on a pedestal
        parts.frustum((0, height - thick, 0), (0, height, 0), width / 2.5, width / 2.5, segments=24)
        parts.frustum((0, 0, 0), (0, height - thick, 0), 0.06, 0.04, segments=10)
        parts.frustum((0, 0, 0), (0, 0.04, 0), width / 5, width / 6, segments=16)
    else:
        parts.box((0, height - thick / 2, 0), (width, thick, depth))
        _legs(parts, rng, width, depth, height - thick, 0.06, bool(rng.random() < 0.4))
    return parts


def stool(rng: np.random.Generator) -> Parts:
    parts = Parts()
    height, radius = _u(rng, 0.55, 0.8), _u(rng, 0.15, 0.22)
    legs = int(rng.integers(3, 5))
    parts.frustum((0, height, 0), (0, height + 0.05, 0), radius, radius, segments=20)
    for k in range(legs):
        a = 2 * math.pi * k / legs
        top = np.array([math.cos(a), 0, math.sin(a)]) * radius * 0.7 + [0, height, 0]
        foot = np.array([math.cos(a), 0, math.sin(a)]) * radius * _u(rng, 1.0, 1.4)
        parts.frustum(foot, top, 0.02, 0.02, segments=6)
    if rng.random() < 0.6:  # a foot ring
        parts.torus((0, height * 0.35, 0), radius * 0.95, 0.012, segments=(16, 4))
    return parts


def bench(rng: np.random.Generator) -> Parts:
    parts = Parts()
    width, depth, height = _u(rng, 1.4, 2.0), _u(rng, 0.3, 0.45), _u(rng, 0.4, 0.5)
    parts.box((0, height, 0), (width, 0.05, depth))
    for sx in (-1, 1):
        parts.box((sx * (width / 2 - 0.1), height / 2, 0), (0.06, height, depth * 0.9))
    if rng.random() < 0.5:  # a back rest
        parts.box((0, height + 0.3, -depth / 2), (width, 0.2, 0.04))
        for sx in (-1, 1):
            parts.box((sx * (width / 2 - 0.1), height + 0.15, -depth / 2), (0.05, 0.3, 0.04))
    return parts


def bed(rng: np.random.Generator) -> Parts:
    parts = Parts()
    width, length = _u(rng, 0.9, 1.6), _u(rng, 1.9, 2.2)
    base, mattress = _u(rng, 0.2, 0.35), _u(rng, 0.15, 0.25)
    parts.box((0, base / 2, 0), (width, base, length))
    parts.box((0, base + mattress / 2, 0.02), (width * 0.96, mattress, length * 0.95))
    parts.box((0, _u(rng, 0.45, 0.6), -length / 2), (width, _u(rng, 0.9, 1.2), 0.06))
    if rng.random() < 0.6:
        parts.box((0, 0.25, length / 2), (width, 0.5, 0.06))
    for k in range(int(rng.integers(1, 3))):
        x = 0 if width < 1.2 else (k - 0.5) * width / 2
        parts.ellipsoid((x, base + mattress + 0.05, -length / 2 + 0.25), (0.22, 0.06, 0.14))
    return parts


def sofa(rng: np.random.Generator) -> Parts:
    parts = Parts()
    width, depth = _u(rng, 1.5, 2.3), _u(rng, 0.8, 1.0)
    seat = _u(rng, 0.35, 0.45)
    parts.box((0, seat / 2, 0), (width, seat, depth))
    parts.box((0, seat + 0.3, -depth / 2 + 0.1), (width, 0.6, 0.2))
    arm = _u(rng, 0.15, 0.25)
    for sx in (-1, 1):
        parts.box((sx * (width / 2 - arm / 2), seat + 0.12, 0), (arm, 0.24, depth))
    cushions = int(rng.integers(2, 4))
    for k in range(cushions):
        span = (width - 2 * arm) / cushions
        parts.box((-width / 2 + arm + span * (k + 0.5), seat + 0.05, 0.08), (span * 0.95, 0.1, depth * 0.7))
    return parts


def bookshelf(rng: np.random.Generator) -> Parts:
    parts = Parts()
    width, height, depth = _u(rng, 0.6, 1.2), _u(rng, 1.2, 2.0), _u(rng, 0.25, 0.4)
    for sx in (-1, 1):
        parts.box((sx * width / 2, height / 2, 0), (0.04, height, depth))
    parts.box((0, height / 2, -depth / 2), (width, height, 0.02))
    shelves = int(rng.integers(3, 6))
    for k in range(shelves + 1):
        parts.box((0, height * k / shelves + 0.02 * (k == 0), 0), (width, 0.04, depth))
    return parts


def lamp(rng: np.random.Generator) -> Parts:
    parts = Parts()
    height = _u(rng, 0.8, 1.6)
    base = _u(rng, 0.12, 0.2)
    parts.frustum((0, 0, 0), (0, 0.04, 0), base, base * 0.9, segments=20)
    parts.frustum((0, 0.04, 0), (0, height, 0), 0.015, 0.015, segments=8)
    shade = _u(rng, 0.15, 0.28)
    parts.frustum(
        (0, height - 0.12, 0), (0, height + _u(rng, 0.15, 0.3), 0), shade, shade * _u(rng, 0.4, 0.7), 20
    )
    return parts


def mug(rng: np.random.Generator) -> Parts:
    parts = Parts()
    radius, height = _u(rng, 0.3, 0.45), _u(rng, 0.7, 1.1)
    parts.frustum((0, 0, 0), (0, height, 0), radius * _u(rng, 0.85, 1.0), radius, segments=24)
    handle = height * _u(rng, 0.25, 0.35)
    parts.torus((radius, height / 2, 0), handle, _u(rng, 0.04, 0.07), rotation("x", math.pi / 2), (16, 8))
    return parts


def bottle(rng: np.random.Generator) -> Parts:
    parts = Parts()
    radius, body = _u(rng, 0.25, 0.4), _u(rng, 0.8, 1.4)
    neck_r, neck = radius * _u(rng, 0.25, 0.4), _u(rng, 0.3, 0.6)
    shoulder = _u(rng, 0.15, 0.35)
    parts.frustum((0, 0, 0), (0, body, 0), radius, radius, segments=20)
    parts.frustum((0, body, 0), (0, body + shoulder, 0), radius, neck_r, segments=20)
    parts.frustum((0, body + shoulder, 0), (0, body + shoulder + neck, 0), neck_r, neck_r, segments=12)
    parts.frustum(
        (0, body + shoulder + neck, 0), (0, body + shoulder + neck + 0.06, 0), neck_r * 1.2, neck_r * 1.2, 12
    )
    return parts


def wine_glass(rng: np.random.Generator) -> Parts:
    parts = Parts()
    foot, stem = _u(rng, 0.25, 0.35), _u(rng, 0.4, 0.8)
    bowl_r, bowl_h = _u(rng, 0.25, 0.4), _u(rng, 0.4, 0.7)
    parts.frustum((0, 0, 0), (0, 0.03, 0), foot, foot * 0.9, segments=20)
    parts.frustum((0, 0.03, 0), (0, stem, 0), 0.03, 0.03, segments=8)
    parts.ellipsoid((0, stem + bowl_h * 0.45, 0), (bowl_r, bowl_h / 2, bowl_r), segments=18)
    return parts


def airplane(rng: np.random.Generator) -> Parts:
    parts = Parts()
    length, radius = _u(rng, 2.5, 3.5), _u(rng, 0.15, 0.25)
    parts.ellipsoid((0, 0, 0), (radius, radius, length / 2), rings=10, segments=12)
    span, chord = _u(rng, 2.2, 3.5), _u(rng, 0.35, 0.6)
    sweep = rotation("y", _u(rng, 0.0, 0.35))
    for sx in (-1, 1):
        wing = sweep if sx > 0 else sweep.T
        parts.box((sx * span / 4, 0, 0.1), (span / 2, 0.04, chord), wing)
    parts.box((0, 0, -length / 2 + 0.2), (span * 0.35, 0.03, chord * 0.6))
    parts.box((0, radius + 0.2, -length / 2 + 0.2), (0.03, 0.45, chord * 0.7))
    if rng.random() < 0.6:  # engines under the wings
        for sx in (-1, 1):
            x = sx * span * _u(rng, 0.15, 0.25)
            parts.frustum((x, -0.12, 0.45), (x, -0.12, -0.05), 0.08, 0.07, segments=10)
    return parts


def car(rng: np.random.Generator) -> Parts:
    parts = Parts()
    length, width = _u(rng, 1.8, 2.4), _u(rng, 0.8, 1.0)
    body_h, wheel = _u(rng, 0.3, 0.45), _u(rng, 0.16, 0.22)
    parts.box((0, wheel + body_h / 2, 0), (width, body_h, length))
    cabin = length * _u(rng, 0.4, 0.6)
    parts.box((0, wheel + body_h + 0.17, -_u(rng, 0.0, 0.2)), (width * 0.85, 0.34, cabin))
    for sx in (-1, 1):
        for sz in (-1, 1):
            z = sz * length * 0.32
            parts.frustum(
                (sx * width / 2 - 0.05 * sx, wheel, z),
                (sx * width / 2 + 0.06 * sx, wheel, z),
                wheel,
                wheel,
                14,
            )
    return parts


def guitar(rng: np.random.Generator) -> Parts:
    parts = Parts()
    lower, upper = _u(rng, 0.35, 0.45), _u(rng, 0.25, 0.33)
    thick = _u(rng, 0.08, 0.12)
    parts.ellipsoid((0, lower, 0), (lower, lower, thick), segments=16)
    parts.ellipsoid((0, 2 * lower + upper * 0.6, 0), (upper, upper, thick), segments=16)
    neck = _u(rng, 0.8, 1.1)
    top = 2 * lower + upper * 1.4
    parts.box((0, top + neck / 2, 0), (0.07, neck, 0.04))
    parts.box((0, top + neck + 0.1, 0), (0.1, 0.2, 0.04), rotation("z", _u(rng, -0.2, 0.2)))
    return parts


def bicycle(rng: np.random.Generator) -> Parts:
    parts = Parts()
    wheel, base = _u(rng, 0.3, 0.38), _u(rng, 1.0, 1.2)
    for z in (-base / 2, base / 2):
        parts.torus((0, wheel, z), wheel, 0.025, rotation("z", math.pi / 2), (20, 6))
    seat = np.array([0, wheel + _u(rng, 0.45, 0.6), -base * 0.15])
    bars = np.array([0, wheel + _u(rng, 0.5, 0.7), base * 0.35])
    crank = np.array([0, wheel, 0.0])
    for a, b in ((crank, seat), (crank, bars), (seat, bars), (crank, [0, wheel, -base / 2])):
        parts.frustum(a, b, 0.02, 0.02, segments=6)
    parts.frustum(bars, [0, wheel, base / 2], 0.02, 0.02, segments=6)
    parts.box(seat + [0, 0.03, 0], (0.1, 0.04, 0.22))
    parts.frustum(bars + [-0.25, 0.05, 0], bars + [0.25, 0.05, 0], 0.02, 0.02, segments=6)
    return parts


def tree(rng: np.random.Generator) -> Parts:
    parts = Parts()
    trunk = _u(rng, 0.4, 0.8)
    parts.frustum((0, 0, 0), (0, trunk, 0), 0.1, 0.07, segments=10)
    if rng.random() < 0.5:  # a conifer: stacked cones
        tiers = int(rng.integers(2, 4))
        for k in range(tiers):
            r = _u(rng, 0.5, 0.7) * (1 - 0.25 * k)
            y = trunk + k * 0.4
            parts.frustum((0, y, 0), (0, y + 0.7, 0), r, 0.0, segments=16)
    else:  # a round crown
        r = _u(rng, 0.5, 0.8)
        parts.ellipsoid((0, trunk + r * 0.8, 0), (r, r * _u(rng, 0.8, 1.2), r), segments=16)
    return parts


def house(rng: np.random.Generator) -> Parts:
    parts = Parts()
    width, depth, height = _u(rng, 1.0, 1.6), _u(rng, 0.9, 1.3), _u(rng, 0.7, 1.1)
    parts.box((0, height / 2, 0), (width, height, depth))
    roof = _u(rng, 0.4, 0.8)
    # a four-sided pyramid roof (a frustum of 4 segments, turned to line up with the walls)
    ridge = Parts()
    ridge.frustum((0, 0, 0), (0, roof, 0), 1.0, 0.0, segments=4)
    mesh = ridge.mesh()
    vertices = mesh.vertices @ rotation("y", math.pi / 4).T * [width * 0.75, 1.0, depth * 0.75]
    parts._add(vertices + [0, height, 0], mesh.faces)
    if rng.random() < 0.6:  # a chimney
        parts.box((width * 0.25, height + roof * 0.6, 0), (0.12, roof * 0.8, 0.12))
    parts.box((0, 0.25, depth / 2), (0.25, 0.5, 0.03))  # the door
    return parts


def rocket(rng: np.random.Generator) -> Parts:
    parts = Parts()
    radius, body = _u(rng, 0.15, 0.25), _u(rng, 1.4, 2.2)
    parts.frustum((0, 0.2, 0), (0, body, 0), radius, radius, segments=16)
    parts.frustum((0, body, 0), (0, body + _u(rng, 0.4, 0.7), 0), radius, 0.0, segments=16)
    parts.frustum((0, 0, 0), (0, 0.2, 0), radius * 0.7, radius * 0.9, segments=12)
    fins = int(rng.integers(3, 5))
    for k in range(fins):
        a = 2 * math.pi * k / fins
        parts.box(
            (math.cos(a) * radius * 1.6, 0.45, math.sin(a) * radius * 1.6),
            (radius * 1.4, 0.5, 0.03),
            rotation("y", -a),
        )
    return parts


def umbrella(rng: np.random.Generator) -> Parts:
    parts = Parts()
    height, radius = _u(rng, 1.0, 1.4), _u(rng, 0.6, 0.9)
    parts.frustum(
        (0, height - _u(rng, 0.2, 0.4), 0), (0, height, 0), radius, 0.02, segments=int(rng.integers(6, 10))
    )
    parts.frustum((0, 0.15, 0), (0, height + 0.08, 0), 0.015, 0.015, segments=6)
    parts.torus((0.07, 0.15, 0), 0.07, 0.018, rotation("x", math.pi / 2), (12, 5))
    return parts


def dumbbell(rng: np.random.Generator) -> Parts:
    parts = Parts()
    bar, weight = _u(rng, 0.5, 0.9), _u(rng, 0.15, 0.25)
    parts.frustum((-bar / 2, 0, 0), (bar / 2, 0, 0), 0.04, 0.04, segments=10)
    for sx in (-1, 1):
        if rng.random() < 0.5:
            parts.ellipsoid((sx * bar / 2, 0, 0), (weight, weight, weight), segments=14)
        else:
            parts.frustum(
                (sx * bar / 2 - 0.06, 0, 0), (sx * bar / 2 + 0.06, 0, 0), weight, weight, segments=16
            )
    return parts


def hammer(rng: np.random.Generator) -> Parts:
    parts = Parts()
    handle = _u(rng, 0.8, 1.2)
    parts.frustum((0, 0, 0), (0, handle, 0), 0.035, 0.03, segments=10)
    head = _u(rng, 0.3, 0.45)
    parts.box((0, handle + 0.05, 0), (head, 0.1, 0.1))
    if rng.random() < 0.5:  # a claw
        parts.box((-head / 2 - 0.08, handle + 0.02, 0), (0.16, 0.05, 0.06), rotation("z", 0.4))
    return parts


def boat(rng: np.random.Generator) -> Parts:
    parts = Parts()
    length, width = _u(rng, 2.0, 3.0), _u(rng, 0.6, 0.9)
    hull = Parts()
    hull.box((0, 0, 0), (1, 1, 1))
    mesh = hull.mesh()
    vertices = mesh.vertices.copy()
    bottom = vertices[:, 1] < 0
    vertices[bottom, 0] *= 0.4  # a tapered hull
    vertices[bottom, 2] *= 0.8
    parts._add(vertices * [width, 0.4, length] + [0, 0.2, 0], mesh.faces)
    parts.ellipsoid((0, 0.3, length / 2), (width / 2, 0.1, length * 0.2), segments=12)  # the bow
    parts.box((0, 0.6, -length * 0.15), (width * 0.6, 0.4, length * 0.3))
    if rng.random() < 0.6:  # a mast
        mast = _u(rng, 1.0, 1.6)
        parts.frustum((0, 0.4, length * 0.15), (0, 0.4 + mast, length * 0.15), 0.03, 0.02, segments=6)
    return parts


def snowman(rng: np.random.Generator) -> Parts:
    parts = Parts()
    y = 0.0
    balls = int(rng.integers(2, 4))
    radius = _u(rng, 0.4, 0.55)
    for _ in range(balls):
        parts.ellipsoid((0, y + radius, 0), (radius, radius, radius), rings=10, segments=16)
        y += radius * 1.7
        radius *= _u(rng, 0.6, 0.8)
    parts.frustum((0, y + radius * 0.4, 0), (0, y + radius * 0.4 + 0.3, 0), radius * 0.9, radius * 0.9, 14)
    parts.frustum((0, y + radius * 0.4, 0), (0, y + radius * 0.4 + 0.03, 0), radius * 1.4, radius * 1.4, 14)
    return parts


def helicopter(rng: np.random.Generator) -> Parts:
    parts = Parts()
    body = _u(rng, 0.4, 0.55)
    parts.ellipsoid((0, 0.5, 0), (body * 0.8, body * 0.8, body * 1.3), segments=14)
    tail = _u(rng, 1.0, 1.4)
    parts.frustum((0, 0.55, -body), (0, 0.65, -body - tail), 0.1, 0.04, segments=8)
    parts.box((0, 0.8, -body - tail), (0.03, 0.35, 0.15))
    rotor = _u(rng, 1.4, 2.0)
    parts.frustum((0, 0.5 + body * 0.7, 0), (0, 0.5 + body * 0.7 + 0.15, 0), 0.04, 0.04, segments=6)
    for angle in (0.0, math.pi / 2):
        parts.box(
            (0, 0.5 + body * 0.7 + 0.16, 0), (rotor, 0.02, 0.08), rotation("y", angle + _u(rng, 0, 0.5))
        )
    for sx in (-1, 1):  # skids
        parts.frustum((sx * 0.3, 0.05, -body), (sx * 0.3, 0.05, body), 0.025, 0.025, segments=6)
        parts.frustum((sx * 0.3, 0.05, 0), (sx * 0.2, 0.3, 0), 0.02, 0.02, segments=6)
    return parts


def monitor(rng: np.random.Generator) -> Parts:
    parts = Parts()
    width, height = _u(rng, 0.9, 1.4), _u(rng, 0.55, 0.85)
    stand = _u(rng, 0.2, 0.35)
    parts.box((0, stand + height / 2, 0), (width, height, 0.05))
    parts.box((0, stand / 2 + 0.02, -0.05), (0.08, stand, 0.04))
    parts.box((0, 0.015, -0.05), (_u(rng, 0.3, 0.5), 0.03, _u(rng, 0.2, 0.3)))
    return parts


def cabinet(rng: np.random.Generator) -> Parts:
    parts = Parts()
    width, height, depth = _u(rng, 0.6, 1.0), _u(rng, 0.8, 1.4), _u(rng, 0.4, 0.6)
    parts.box((0, height / 2 + 0.08, 0), (width, height, depth))
    drawers = int(rng.integers(2, 5))
    for k in range(drawers):
        y = 0.08 + height * (k + 0.5) / drawers
        parts.box((0, y, depth / 2 + 0.01), (width * 0.9, height / drawers * 0.85, 0.02))
        parts.box((0, y, depth / 2 + 0.04), (0.12, 0.03, 0.04))
    _legs(parts, rng, width, depth, 0.08, 0.05, False)
    return parts


@dataclass(frozen=True)
class MeshClass:
    """A class of procedural models: its name, its generator and its structural attributes."""

    name: str
    make: Callable[[np.random.Generator], Parts]
    attributes: tuple[str, ...]

    def vector(self) -> np.ndarray:
        """The class's 0/1 attribute vector over :data:`ATTRIBUTE_NAMES`."""
        return np.array([name in self.attributes for name in ATTRIBUTE_NAMES], dtype=np.float32)


CLASSES = (
    MeshClass("chair", chair, ("legs", "back", "seat", "flat_top")),
    MeshClass("table", table, ("legs", "flat_top", "flat")),
    MeshClass("stool", stool, ("legs", "seat", "radial_symmetry", "tall", "thin_pole")),
    MeshClass("bench", bench, ("legs", "seat", "long", "flat_top")),
    MeshClass("bed", bed, ("back", "flat_top", "long", "flat", "round_body")),
    MeshClass("sofa", sofa, ("back", "seat", "long")),
    MeshClass("bookshelf", bookshelf, ("shelves", "tall", "openings", "stacked")),
    MeshClass("lamp", lamp, ("thin_pole", "cone_part", "tall", "radial_symmetry")),
    MeshClass("mug", mug, ("handle", "container", "radial_symmetry")),
    MeshClass("bottle", bottle, ("container", "tall", "radial_symmetry", "stacked")),
    MeshClass("wine_glass", wine_glass, ("container", "thin_pole", "round_body", "radial_symmetry")),
    MeshClass("airplane", airplane, ("wings", "long", "round_body")),
    MeshClass("car", car, ("wheels", "long", "stacked")),
    MeshClass("guitar", guitar, ("round_body", "thin_pole", "flat", "long")),
    MeshClass("bicycle", bicycle, ("wheels", "thin_pole", "seat", "openings")),
    MeshClass("tree", tree, ("cone_part", "round_body", "tall", "radial_symmetry")),
    MeshClass("house", house, ("cone_part", "openings", "stacked")),
    MeshClass("rocket", rocket, ("wings", "cone_part", "tall", "radial_symmetry")),
    MeshClass("umbrella", umbrella, ("cone_part", "thin_pole", "handle", "radial_symmetry")),
    MeshClass("dumbbell", dumbbell, ("round_body", "thin_pole", "long", "radial_symmetry")),
    MeshClass("hammer", hammer, ("handle", "thin_pole", "tall")),
    MeshClass("boat", boat, ("long", "container", "thin_pole")),
    MeshClass("snowman", snowman, ("round_body", "stacked", "tall", "radial_symmetry")),
    MeshClass("helicopter", helicopter, ("wings", "round_body", "long", "thin_pole")),
    MeshClass("monitor", monitor, ("flat", "thin_pole", "openings")),
    MeshClass("cabinet", cabinet, ("legs", "shelves", "stacked", "flat_top")),
)


def make_model(mesh_class: MeshClass, rng: np.random.Generator) -> Mesh:
    """One model of ``mesh_class`` drawn with ``rng``, turned by a small random angle about the up axis."""
    mesh = mesh_class.make(rng).mesh()
    turn = rotation("y", float(rng.normal(0.0, 0.15)))
    return Mesh(vertices=mesh.vertices @ turn.T, faces=mesh.faces)
