"""Shape classes defined by generative attributes, per-instance jitter, and the geometry they produce.

A class is a combination of attribute values (body outline, elongation, rim, appendage, holes). Two values
are *novel*: the concave ``star`` body and the ``wings`` appendage. Seen classes never carry them and every
unseen class carries at least one (:func:`design_classes`), so zero-shot retrieval asks a model to
generalise to part types it never saw, as Sketchy's unseen classes hold objects absent from its seen
ones (``benchmarks/seen_unseen_gap.py`` measures how much better a model does that also trains on the
unseen classes). The side information still describes the novel parts: besides
one entry per body/appendage type, the attribute vector holds shared descriptors (concavity, how many
appendages, where they sit, whether they are pointed), so ``wings`` read as "two pointed parts on the
sides", a mix of what ``horns`` (two, pointed) and ``tail`` / ``handle`` (sides) show in seen classes.

Every class attribute vector lies in [0, 1]^A (:data:`ATTRIBUTE_NAMES`); an instance's vector is the
same function of its jittered parameters (so it strays a little, up to about 1.25), which fine-grained
methods can regress.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

# Superellipse exponents |x|^n + |y|^n = 1 of the body outlines; n < 1 is a concave four-pointed star.
BODY_EXPONENTS = {"diamond": 1.0, "oval": 2.0, "box": 5.0, "star": 0.55}
LONG_ASPECT = 1.8  # width / height of an elongated body
WAVY_AMPLITUDE = 0.16  # radial modulation r(θ)·(1 + a·cos kθ)
SPIKY_AMPLITUDE = 0.5  # radial peaks r(θ)·(1 + a·((1 + cos kθ)/2)^8)
RIM_COUNTS = (3, 6)
APPENDAGES = ("tail", "handle", "horns", "legs", "wings")
# (count, top, bottom, sides, pointed): the shared descriptors of each appendage type
APPENDAGE_DESCRIPTORS = {
    "tail": (1, 0, 0, 1, 1),
    "handle": (1, 0, 0, 1, 0),
    "horns": (2, 1, 0, 0, 1),
    "legs": (3, 0, 1, 0, 0),
    "wings": (2, 0, 0, 1, 1),
}
MAX_APPENDAGE_COUNT = 3
NOVEL_VALUES = ("body=star", "appendage=wings")  # carried by unseen classes only
MAX_HOLES = 2

ATTRIBUTE_NAMES = (
    "boxiness",  # max(0, log n) / log(n_box): diamond and star 0, oval 0.43, box 1
    "concavity",  # max(0, -log n) / -log(n_star): star 1, others 0
    "elongation",  # (aspect - 1) / (LONG_ASPECT - 1)
    "waviness",  # wavy amplitude / WAVY_AMPLITUDE
    "spikiness",  # spiky amplitude / SPIKY_AMPLITUDE
    "rim_count",  # k / max(RIM_COUNTS), 0 for a smooth rim
    *APPENDAGES,  # appendage size relative to nominal, 0 when absent
    "appendage_count",  # parts / MAX_APPENDAGE_COUNT
    "appendage_top",
    "appendage_bottom",
    "appendage_sides",
    "appendage_pointed",
    "holes",  # hole count / MAX_HOLES
)
_CONTOUR_POINTS = 256
_DESIGN_SEED = 20240613  # fixes the class design; independent of the dataset seed


@dataclass(frozen=True)
class ShapeClass:
    """One class: a combination of attribute values."""

    body: str  # a key of BODY_EXPONENTS
    elongated: bool
    rim: str  # "smooth", "wavy" or "spiky"
    rim_count: int  # 0 for a smooth rim, else one of RIM_COUNTS
    appendage: str  # "" or one of APPENDAGES
    holes: int  # 0..MAX_HOLES

    @property
    def name(self) -> str:
        """Readable and unique, e.g. ``long_spiky6_box_horns_2holes``."""
        words = ["long"] if self.elongated else []
        if self.rim != "smooth":
            words.append(f"{self.rim}{self.rim_count}")
        words.append(self.body)
        if self.appendage:
            words.append(self.appendage)
        if self.holes:
            words.append(f"{self.holes}hole" + ("s" if self.holes > 1 else ""))
        return "_".join(words)

    @property
    def novel(self) -> bool:
        """Whether the class carries a value reserved for unseen classes (:data:`NOVEL_VALUES`)."""
        return bool(set(self.categorical_codes()) & set(NOVEL_VALUES))

    def categorical_codes(self) -> tuple[str, ...]:
        """The attribute values, one code each (the class design's distance counts differing codes)."""
        rim = f"{self.rim}{self.rim_count}" if self.rim != "smooth" else "smooth"
        return (
            f"body={self.body}",
            f"long={self.elongated}",
            f"rim={rim}",
            f"appendage={self.appendage}",
            f"holes={self.holes}",
        )

    def nominal(self) -> ShapeInstance:
        """The class prototype: its attribute values without jitter."""
        return ShapeInstance(
            shape_class=self,
            exponent=BODY_EXPONENTS[self.body],
            aspect=LONG_ASPECT if self.elongated else 1.0,
            wavy_amplitude=WAVY_AMPLITUDE if self.rim == "wavy" else 0.0,
            spiky_amplitude=SPIKY_AMPLITUDE if self.rim == "spiky" else 0.0,
            rim_phase=0.0,
            appendage_size=1.0 if self.appendage else 0.0,
            appendage_angle=0.0,
            tail_curl=0.6,
            hole_radius=1.0,
            hole_offset=(0.0, 0.0),
        )

    def attributes(self) -> np.ndarray:
        return self.nominal().attributes()


@dataclass(frozen=True)
class ShapeInstance:
    """A class's parameters after per-instance jitter."""

    shape_class: ShapeClass
    exponent: float
    aspect: float
    wavy_amplitude: float
    spiky_amplitude: float
    rim_phase: float
    appendage_size: float
    appendage_angle: float  # radians, added to the appendage's nominal attachment angle
    tail_curl: float  # signed bend of the tail
    hole_radius: float  # relative to nominal
    hole_offset: tuple[float, float]

    def attributes(self) -> np.ndarray:
        """The attribute vector (see :data:`ATTRIBUTE_NAMES`), float32."""
        cls = self.shape_class
        descriptors = APPENDAGE_DESCRIPTORS.get(cls.appendage, (0, 0, 0, 0, 0))
        values = [
            max(0.0, np.log(self.exponent)) / np.log(BODY_EXPONENTS["box"]),
            max(0.0, -np.log(self.exponent)) / -np.log(BODY_EXPONENTS["star"]),
            (self.aspect - 1.0) / (LONG_ASPECT - 1.0),
            self.wavy_amplitude / WAVY_AMPLITUDE,
            self.spiky_amplitude / SPIKY_AMPLITUDE,
            cls.rim_count / max(RIM_COUNTS),
            *(self.appendage_size if cls.appendage == name else 0.0 for name in APPENDAGES),
            descriptors[0] / MAX_APPENDAGE_COUNT,
            *descriptors[1:],
            cls.holes / MAX_HOLES,
        ]
        return np.asarray(values, dtype=np.float32)


@dataclass
class ShapeParts:
    """Geometry of one instance in object units (body radius 1, y up), as closed polygons / open curves.

    ``solids`` are filled; ``cutouts`` are removed from the appendage (a handle's opening); ``holes``
    are removed from the whole object; ``details`` are open interior curves (sketches only), which do
    not count towards the object's extent.
    """

    body: np.ndarray  # [N, 2]
    solids: list[np.ndarray]  # appendage polygons
    cutouts: list[np.ndarray]
    holes: list[np.ndarray]
    details: list[np.ndarray] = field(default_factory=list)

    def all_points(self) -> np.ndarray:
        return np.concatenate([self.body, *self.solids])

    def map(self, fn: Callable[[np.ndarray], np.ndarray]) -> ShapeParts:
        """Apply a point map ([N, 2] -> [N, 2]) to every part."""
        return ShapeParts(
            body=fn(self.body),
            solids=[fn(p) for p in self.solids],
            cutouts=[fn(p) for p in self.cutouts],
            holes=[fn(p) for p in self.holes],
            details=[fn(p) for p in self.details],
        )


def all_classes() -> list[ShapeClass]:
    """Every valid attribute combination (a smooth rim has no count; the plainest shape is left out)."""
    rims = [("smooth", 0)] + [(rim, k) for rim in ("wavy", "spiky") for k in RIM_COUNTS]
    classes = []
    for body, elongated, (rim, count), appendage, holes in itertools.product(
        BODY_EXPONENTS, (False, True), rims, ("", *APPENDAGES), range(MAX_HOLES + 1)
    ):
        shape_class = ShapeClass(body, elongated, rim, count, appendage, holes)
        if shape_class.attributes().any():  # all-zero attributes cannot be L2-normalised
            classes.append(shape_class)
    return classes


def _farthest_points(candidates: list[ShapeClass], count: int, chosen: list[ShapeClass]) -> list[ShapeClass]:
    """``count`` of ``candidates``, each in turn the one farthest (most differing attribute codes) from
    those chosen so far (``chosen`` included); among equals, the attribute values used least so far."""
    codes = np.array([c.categorical_codes() for c in candidates])
    taken = np.array([c.categorical_codes() for c in chosen]).reshape(len(chosen), codes.shape[1])
    if len(chosen):
        min_distance = (codes[:, None, :] != taken[None, :, :]).sum(axis=2).min(axis=1)
    else:
        min_distance = np.full(len(candidates), codes.shape[1])
    picked: list[int] = []
    for _ in range(count):
        rarity = -(codes[:, None, :] == taken[None, :, :]).sum(axis=(1, 2))
        score = min_distance * 10_000 + rarity
        score[picked] = np.iinfo(np.int64).min
        best = int(np.argmax(score))
        picked.append(best)
        taken = np.concatenate([taken, codes[best][None]])
        min_distance = np.minimum(min_distance, (codes != codes[best]).sum(axis=1))
    return [candidates[i] for i in picked]


def design_classes(num_classes: int, num_unseen: int) -> list[ShapeClass]:
    """``num_classes`` mutually distinct classes, the last ``num_unseen`` of them novel (unseen).

    Seen classes are drawn from the combinations without a novel value, unseen ones from those with at
    least one (:data:`NOVEL_VALUES`), each group by farthest-point selection over attribute codes
    (Hamming over :meth:`ShapeClass.categorical_codes`, which mixes star bodies and wings among the
    unseen), ties broken by a fixed shuffle: the design does not depend on the dataset seed, and the
    seen classes of a larger design start with those of a smaller one.
    """
    candidates = all_classes()
    order = np.random.default_rng(_DESIGN_SEED).permutation(len(candidates))
    candidates = [candidates[i] for i in order]
    familiar = [c for c in candidates if not c.novel]
    novel = [c for c in candidates if c.novel]
    num_seen = num_classes - num_unseen
    if not 1 <= num_seen <= len(familiar) or not 1 <= num_unseen <= len(novel):
        raise ValueError(
            f"the class design needs 1..{len(familiar)} seen and 1..{len(novel)} unseen classes, "
            f"got {num_classes} classes of which {num_unseen} unseen"
        )
    seen = _farthest_points(familiar, num_seen, [])
    return seen + _farthest_points(novel, num_unseen, [])


def sample_instance(shape_class: ShapeClass, rng: np.random.Generator) -> ShapeInstance:
    """Jitter the class parameters (shape noise within a class; never enough to reach another value)."""
    nominal = shape_class.nominal()
    return ShapeInstance(
        shape_class=shape_class,
        exponent=nominal.exponent * float(np.exp(rng.normal(0.0, 0.08))),
        aspect=1.0 + abs(rng.normal(0.0, 0.06))
        if not shape_class.elongated
        else LONG_ASPECT * rng.uniform(0.9, 1.1),
        wavy_amplitude=nominal.wavy_amplitude * rng.uniform(0.75, 1.25),
        spiky_amplitude=nominal.spiky_amplitude * rng.uniform(0.75, 1.25),
        rim_phase=float(rng.normal(0.0, 0.12)),
        appendage_size=nominal.appendage_size * rng.uniform(0.8, 1.2),
        appendage_angle=float(rng.normal(0.0, 0.15)),
        tail_curl=float(rng.choice([-1.0, 1.0]) * rng.uniform(0.3, 0.9)),
        hole_radius=rng.uniform(0.8, 1.2),
        hole_offset=(float(rng.normal(0.0, 0.05)), float(rng.normal(0.0, 0.05))),
    )


def rotate(points: np.ndarray, angle: float) -> np.ndarray:
    """Rotate [N, 2] points counter-clockwise by ``angle`` radians."""
    c, s = np.cos(angle), np.sin(angle)
    return points @ np.array([[c, s], [-s, c]])


def _circle(center: np.ndarray, radius: float, n: int = 48) -> np.ndarray:
    t = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    return center + radius * np.stack([np.cos(t), np.sin(t)], axis=1)


def build_parts(instance: ShapeInstance) -> ShapeParts:
    """Outline polygons of an instance."""
    cls = instance.shape_class
    theta = np.linspace(0.0, 2.0 * np.pi, _CONTOUR_POINTS, endpoint=False)
    cos, sin = np.cos(theta), np.sin(theta)
    n = instance.exponent
    radius = (np.abs(cos) ** n + np.abs(sin) ** n) ** (-1.0 / n)  # superellipse in polar form
    phase = cls.rim_count * theta + instance.rim_phase
    radius = radius * (
        1.0
        + instance.wavy_amplitude * np.cos(phase)
        + instance.spiky_amplitude * ((1.0 + np.cos(phase)) / 2.0) ** 8
    )
    stretch = np.sqrt(instance.aspect)
    body = np.stack([radius * cos * stretch, radius * sin / stretch], axis=1)
    body /= np.abs(body).max()

    def boundary(angle: float) -> np.ndarray:
        """The body's outline point in direction ``angle``."""
        return body[int(np.round(angle % (2.0 * np.pi) / (2.0 * np.pi) * _CONTOUR_POINTS)) % _CONTOUR_POINTS]

    size = instance.appendage_size
    solids: list[np.ndarray] = []
    cutouts: list[np.ndarray] = []
    if cls.appendage == "tail":
        anchor = boundary(instance.appendage_angle)
        direction = anchor / np.linalg.norm(anchor)
        normal = np.array([-direction[1], direction[0]])
        t = np.linspace(0.0, 1.0, 24)[:, None]
        start, end = 0.8 * anchor, anchor + 0.95 * size * direction + instance.tail_curl * 0.7 * size * normal
        control = anchor + 0.5 * size * direction
        centre = (1 - t) ** 2 * start + 2 * (1 - t) * t * control + t**2 * end  # quadratic Bézier
        tangent = np.gradient(centre, axis=0)
        side = np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)
        side /= np.linalg.norm(side, axis=1, keepdims=True)
        width = (0.13 * (1 - t) + 0.035 * t) * size
        solids.append(np.concatenate([centre + width * side, (centre - width * side)[::-1]]))
    elif cls.appendage == "handle":
        anchor = boundary(np.pi + instance.appendage_angle)
        direction = anchor / np.linalg.norm(anchor)
        centre = anchor + 0.36 * size * direction
        solids.append(_circle(centre, 0.46 * size))
        cutouts.append(_circle(centre, 0.27 * size))
    elif cls.appendage == "horns":
        for side in (-1.0, 1.0):
            angle = np.pi / 2 + side * 0.55 + instance.appendage_angle
            left, right = boundary(angle - 0.2), boundary(angle + 0.2)
            tip = boundary(angle) + size * 0.7 * np.array([side * 0.45, 1.0])
            solids.append(np.stack([0.85 * left, 0.85 * right, tip]))
    elif cls.appendage == "wings":  # two large swept-back triangles on the sides
        for side in (-1.0, 1.0):
            angle = (0.0 if side > 0 else np.pi) + side * instance.appendage_angle
            root = boundary(angle)
            left, right = 0.8 * boundary(angle - 0.45), 0.8 * boundary(angle + 0.45)
            tip = root + size * np.array([side * 0.75, 0.55])
            solids.append(np.stack([left, right, tip]))
    elif cls.appendage == "legs":
        for offset in (-0.55, 0.0, 0.55):
            foot = boundary(-np.pi / 2 + offset + instance.appendage_angle)
            top, bottom = 0.85 * foot, foot + np.array([0.15 * offset, -0.6 * size])
            axis = (bottom - top) / np.linalg.norm(bottom - top)
            across = 0.07 * size * np.array([-axis[1], axis[0]])
            solids.append(np.stack([top + across, bottom + across, bottom - across, top - across]))

    inner = float(np.min(np.linalg.norm(body, axis=1)))  # the body's inscribed radius about its centre
    offset = np.asarray(instance.hole_offset) * inner
    holes = []
    if cls.holes == 1:
        holes.append(_circle(offset, 0.42 * inner * instance.hole_radius))
    elif cls.holes == 2:
        spread = np.array([0.45 * inner * np.sqrt(instance.aspect), 0.0])
        holes.extend(_circle(offset + s * spread, 0.28 * inner * instance.hole_radius) for s in (-1, 1))

    return ShapeParts(body=body, solids=solids, cutouts=cutouts, holes=holes)
