"""Instance-level objects of ``synthetic_fg``: shoes (side view) and chairs (front view) built from a
binary attribute vector plus small continuous proportions.

Every attribute changes the geometry (outline, holes or interior lines) whatever the other attributes
are, so an instance's attributes are visible in its photo and its sketch; the proportions (lengths,
heights, thicknesses, drawn per instance) make two instances with the same attributes differ a little,
as two products of the same design do. Attributes (``<category>_<name>``, :data:`ATTRIBUTES`):

Shoe (toe to the right): ``high_heel`` (raised heel seat on a narrow heel), ``high_top`` (ankle
shaft), ``laces`` (lace crossings on the vamp and a bow above it), ``strap`` (a band across the instep
with a buckle hole), ``pointed_toe`` (pointed, not round, toe), ``platform`` (thick sole), ``open_toe``
(a cut-out at the toe), ``pull_tab`` (a loop at the back of the collar), ``toe_cap`` (a seam across the
toe), ``side_stripe`` (a stripe along the quarter).

Chair (front view): ``armrests``, ``wheels`` (swivel base with casters instead of legs),
``splayed_legs`` (feet, or the swivel base's arms, spread wide), ``tall_back``, ``round_back`` (arched
top), ``slatted_back`` (vertical slots), ``cushion`` (thick padded seat with a seam), ``crossbar``
(stretcher between the legs; a foot ring on a swivel base), ``headrest`` (a pad above the back),
``back_gap`` (back on two posts, apart from the seat).

Units: objects are drawn in arbitrary units (y up); the renderer scales them to the frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sbir_bench.data.synthetic.shapes import ShapeParts

SHOE_ATTRIBUTES = (
    "high_heel",
    "high_top",
    "laces",
    "strap",
    "pointed_toe",
    "platform",
    "open_toe",
    "pull_tab",
    "toe_cap",
    "side_stripe",
)
CHAIR_ATTRIBUTES = (
    "armrests",
    "wheels",
    "splayed_legs",
    "tall_back",
    "round_back",
    "slatted_back",
    "cushion",
    "crossbar",
    "headrest",
    "back_gap",
)
# probability that an instance carries each attribute (unequal, so that designs repeat now and then)
SHOE_PRIORS = (0.35, 0.3, 0.45, 0.3, 0.4, 0.3, 0.25, 0.35, 0.4, 0.4)
CHAIR_PRIORS = (0.4, 0.3, 0.35, 0.4, 0.4, 0.3, 0.45, 0.35, 0.25, 0.3)
CATEGORIES = ("shoe", "chair")
ATTRIBUTES = {"shoe": SHOE_ATTRIBUTES, "chair": CHAIR_ATTRIBUTES}
PRIORS = {"shoe": SHOE_PRIORS, "chair": CHAIR_PRIORS}


def attribute_names(categories: tuple[str, ...] = CATEGORIES) -> tuple[str, ...]:
    """``<category>_<attribute>`` for each category in turn: the columns of the attribute vectors."""
    return tuple(f"{category}_{name}" for category in categories for name in ATTRIBUTES[category])


ATTRIBUTE_NAMES = attribute_names()


@dataclass(frozen=True)
class FineInstance:
    """One object: its category, binary attributes (in :data:`ATTRIBUTES` order) and proportions."""

    category: str
    attributes: tuple[bool, ...]
    proportions: tuple[float, ...]  # uniform draws in [0, 1), mapped to each category's ranges

    def has(self, name: str) -> bool:
        return self.attributes[ATTRIBUTES[self.category].index(name)]

    def vector(self, categories: tuple[str, ...] = CATEGORIES) -> np.ndarray:
        """float32 [len(attribute_names(categories))]: this category's block holds its attributes, the
        other categories' blocks zeros."""
        values = np.zeros(len(attribute_names(categories)), dtype=np.float32)
        start = sum(len(ATTRIBUTES[c]) for c in categories[: categories.index(self.category)])
        values[start : start + len(self.attributes)] = self.attributes
        return values

    def with_attribute(self, name: str, value: bool) -> FineInstance:
        """The same instance (same proportions) with one attribute set to ``value``."""
        flags = list(self.attributes)
        flags[ATTRIBUTES[self.category].index(name)] = value
        return FineInstance(self.category, tuple(flags), self.proportions)


_PROPORTIONS = 8
_OUTLINE_POINTS = 160


def sample_fine_instance(category: str, rng: np.random.Generator) -> FineInstance:
    """Attributes drawn independently with their priors, proportions uniformly."""
    if category not in ATTRIBUTES:
        raise ValueError(f"unknown category {category!r}; expected one of {CATEGORIES}")
    flags = tuple(bool(flag) for flag in rng.random(len(PRIORS[category])) < np.asarray(PRIORS[category]))
    return FineInstance(category, flags, tuple(float(u) for u in rng.random(_PROPORTIONS)))


def build_fine_parts(instance: FineInstance) -> ShapeParts:
    """The geometry of a shoe or a chair."""
    return _shoe(instance) if instance.category == "shoe" else _chair(instance)


def _lerp(low: float, high: float, u: float) -> float:
    return low + (high - low) * u


def _chaikin(points: np.ndarray, iterations: int = 2) -> np.ndarray:
    """Corner cutting of a closed polygon (a smooth outline from a few control points)."""
    for _ in range(iterations):
        following = np.roll(points, -1, axis=0)
        points = np.stack([0.75 * points + 0.25 * following, 0.25 * points + 0.75 * following], axis=1)
        points = points.reshape(-1, 2)
    return points


def _dense(polygon: np.ndarray, count: int = _OUTLINE_POINTS) -> np.ndarray:
    """A closed polygon resampled to ``count`` points evenly spaced along its outline (the sketch
    renderer draws interior arcs along the body's points)."""
    closed = np.concatenate([polygon, polygon[:1]])
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(closed, axis=0), axis=1))])
    samples = np.linspace(0.0, arc[-1], count, endpoint=False)
    return np.stack([np.interp(samples, arc, closed[:, 0]), np.interp(samples, arc, closed[:, 1])], axis=1)


def _ellipse(centre: tuple[float, float], rx: float, ry: float, n: int = 32) -> np.ndarray:
    t = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    return np.stack([centre[0] + rx * np.cos(t), centre[1] + ry * np.sin(t)], axis=1)


def _box(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)


def _bar(start: np.ndarray | tuple, end: np.ndarray | tuple, width: float) -> np.ndarray:
    """A straight bar of ``width`` between two points."""
    start, end = np.asarray(start, dtype=np.float64), np.asarray(end, dtype=np.float64)
    axis = (end - start) / np.linalg.norm(end - start)
    across = 0.5 * width * np.array([-axis[1], axis[0]])
    return np.stack([start + across, end + across, end - across, start - across])


def _shoe(instance: FineInstance) -> ShapeParts:
    u = instance.proportions
    heel = _lerp(0.38, 0.5, u[0]) if instance.has("high_heel") else 0.0
    sole = _lerp(0.17, 0.22, u[1]) if instance.has("platform") else _lerp(0.05, 0.075, u[1])
    toe_height = _lerp(0.26, 0.34, u[2])
    vamp = _lerp(0.5, 0.6, u[3])  # height of the throat above the sole
    collar = _lerp(1.05, 1.25, u[4]) if instance.has("high_top") else _lerp(0.42, 0.52, u[4])
    length = _lerp(1.85, 2.1, u[5])
    back, front = -length / 2, length / 2

    def ground(x: float) -> float:
        """The sole's underside: raised at the heel seat for a high heel, with some toe spring."""
        spring = 0.05 * max(0.0, (x - 0.55 * front) / (0.45 * front)) ** 2
        if heel == 0.0:
            return spring
        t = np.clip((x - back) / (0.65 * length), 0.0, 1.0)
        return heel * (1.0 - t * t * (3.0 - 2.0 * t)) + spring

    toe_start = front - toe_height * 0.9
    bottom = [(x, ground(x)) for x in np.linspace(back + 0.05, toe_start, 10)]
    base = ground(toe_start)
    if instance.has("pointed_toe"):
        toe = [(front + 0.12, base + 0.28 * toe_height), (toe_start - 0.05, base + toe_height)]
    else:
        toe = [
            (front - 0.12, base),
            (front, base + 0.4 * toe_height),
            (front - 0.1, base + 0.95 * toe_height),
            (toe_start - 0.1, base + toe_height * 1.05),
        ]
    throat_x = back + 0.52 * length
    throat = (throat_x, ground(throat_x) + vamp)
    if instance.has("high_top"):
        top = [throat, (throat_x - 0.05, ground(back) + collar), (back + 0.02, ground(back) + collar)]
    else:
        top = [throat, (back + 0.3 * length, ground(back) + collar), (back + 0.02, ground(back) + collar)]
    heel_back = [(back - 0.05, ground(back) + 0.45 * min(collar, 0.5)), (back, ground(back))]
    control = np.array(bottom + toe + top + heel_back, dtype=np.float64)
    body = _chaikin(control)
    if instance.has("pointed_toe"):  # keep the tip sharp: put the control point back into the outline
        tip = np.array(toe[0])
        nearest = int(np.argmin(np.linalg.norm(body - tip, axis=1)))
        body = np.insert(body, nearest + 1, tip, axis=0)

    solids, cutouts, holes, details = [], [], [], []
    sole_xs = np.linspace(back + 0.03, toe_start + 0.05, 16)
    details.append(np.array([(x, ground(x) + sole) for x in sole_xs]))
    if heel > 0.0:  # the heel under the raised seat, tapering to the ground
        width = 0.045 if instance.proportions[6] < 0.5 else 0.08
        solids.append(
            np.array(
                [
                    (back + 0.02, heel + 0.05),
                    (back + 0.3, heel - 0.05),
                    (back + 0.12 + width, 0.0),
                    (back + 0.12 - width, 0.0),
                ]
            )
        )
    elif sole > 0.1:  # a platform's block heel
        solids.append(_box(back, -0.02, back + 0.35, sole))
    if instance.has("laces"):
        for i in range(4):
            x = throat_x + 0.09 + 0.1 * i
            y = ground(x) + vamp * (1.0 - 0.45 * (x - throat_x) / (toe_start - throat_x)) - 0.02
            details.append(np.array([(x - 0.06, y), (x + 0.05, y - 0.2)]))
        bow = (throat_x - 0.02, throat[1] + 0.08)
        solids.append(_ellipse(bow, 0.11, 0.07))
        cutouts.append(_ellipse(bow, 0.06, 0.03))
    if instance.has("strap"):
        x = back + 0.38 * length
        y_top = ground(x) + (collar if instance.has("high_top") else vamp * 0.9)
        details.append(np.array([(x - 0.1, y_top - 0.03), (x + 0.02, ground(x) + sole + 0.04)]))
        details.append(np.array([(x + 0.06, y_top - 0.03), (x + 0.18, ground(x) + sole + 0.04)]))
        holes.append(_box(x - 0.01, y_top - 0.22, x + 0.08, y_top - 0.13))
    if instance.has("open_toe"):
        holes.append(_ellipse((toe_start + 0.02, base + sole + 0.5 * toe_height), 0.13, 0.08))
    if instance.has("pull_tab"):
        y = ground(back) + collar
        tab = (back + 0.04, y + 0.07)
        solids.append(_ellipse(tab, 0.07, 0.12))
        cutouts.append(_ellipse(tab, 0.03, 0.07))
    if instance.has("toe_cap"):
        x0 = toe_start - 0.2
        details.append(
            np.array(
                [
                    (x0, base + sole + 0.02),
                    (x0 + 0.05, base + 0.75 * toe_height),
                    (x0 + 0.2, base + toe_height),
                ]
            )
        )
    if instance.has("side_stripe"):
        xs = np.linspace(back + 0.15, throat_x + 0.15, 10)
        lift = _lerp(0.12, 0.2, instance.proportions[7])
        details.append(
            np.array([(x, ground(x) + sole + lift + 0.2 * (x - xs[0]) / (xs[-1] - xs[0])) for x in xs])
        )
    return ShapeParts(body=_dense(body), solids=solids, cutouts=cutouts, holes=holes, details=details)


def _chair(instance: FineInstance) -> ShapeParts:
    u = instance.proportions
    half = _lerp(0.5, 0.62, u[0])  # half the seat's width
    seat_y = _lerp(0.8, 0.95, u[1])
    thickness = _lerp(0.18, 0.24, u[2]) if instance.has("cushion") else _lerp(0.07, 0.1, u[2])
    back_half = half * _lerp(0.78, 0.95, u[3])
    back_height = _lerp(1.25, 1.5, u[4]) if instance.has("tall_back") else _lerp(0.65, 0.85, u[4])
    leg = _lerp(0.06, 0.09, u[5])
    seat_top = seat_y + thickness

    if instance.has("cushion"):
        body = _chaikin(_box(-half, seat_y, half, seat_top), iterations=3)
    else:
        body = _box(-half, seat_y, half, seat_top)
    solids, cutouts, holes, details = [], [], [], []
    if instance.has("cushion"):
        details.append(
            np.array([(-half + 0.08, seat_y + 0.5 * thickness), (half - 0.08, seat_y + 0.5 * thickness)])
        )

    gap = _lerp(0.14, 0.2, u[6]) if instance.has("back_gap") else 0.0
    back_low, back_high = seat_top + gap, seat_top + gap + back_height
    if instance.has("round_back"):
        t = np.linspace(0.0, np.pi, 17)
        arch = np.stack(
            [back_half * np.cos(t), back_high - 0.3 * back_half + 0.3 * back_half * np.sin(t)], axis=1
        )
        back = np.concatenate([[(-back_half, back_low), (back_half, back_low)], arch])
    else:
        back = _box(-back_half, back_low, back_half, back_high)
    solids.append(back - np.array([0.0, 0.01]))
    if gap:
        for side in (-1.0, 1.0):
            solids.append(
                _box(
                    side * back_half * 0.7 - leg / 2,
                    seat_top - 0.02,
                    side * back_half * 0.7 + leg / 2,
                    back_low + 0.02,
                )
            )
    if instance.has("slatted_back"):
        slot_low, slot_high = (
            back_low + 0.18,
            back_high - (0.35 * back_half if instance.has("round_back") else 0.15),
        )
        for x in np.linspace(-0.5, 0.5, 3) * back_half:
            holes.append(_box(x - 0.05, slot_low, x + 0.05, slot_high))
    if instance.has("headrest"):
        top = back_high + 0.1
        solids.append(_bar((0.0, back_high - 0.05), (0.0, top + 0.02), leg))
        solids.append(_chaikin(_box(-0.55 * back_half, top, 0.55 * back_half, top + 0.22)))
    if instance.has("armrests"):
        arm_y = seat_top + _lerp(0.3, 0.4, u[7])
        for side in (-1.0, 1.0):
            solids.append(_box(side * (half - 0.05), arm_y - 0.06, side * (half + 0.14), arm_y))
            solids.append(
                _box(side * (half + 0.02), seat_top - 0.02, side * (half + 0.02 + leg), arm_y - 0.04)
            )

    splay = instance.has("splayed_legs")
    if instance.has("wheels"):
        solids.append(_bar((0.0, seat_y + 0.02), (0.0, 0.18), 1.4 * leg))
        reach = (half + 0.25) if splay else (half - 0.05)
        for side in (-1.0, 1.0):
            solids.append(_bar((0.0, 0.2), (side * reach, 0.1), 1.2 * leg))
            solids.append(_ellipse((side * reach, 0.05), 0.07, 0.07))
        solids.append(_ellipse((0.0, 0.07), 0.07, 0.07))
        if instance.has("crossbar"):  # a foot ring
            solids.append(_box(-0.45 * half, 0.42, 0.45 * half, 0.42 + 0.7 * leg))
            solids.append(_bar((-0.45 * half, 0.42), (0.0, 0.55), 0.6 * leg))
            solids.append(_bar((0.45 * half, 0.42), (0.0, 0.55), 0.6 * leg))
    else:
        feet = []
        for side in (-1.0, 1.0):
            top = side * (half - 0.06)
            foot = side * (half + 0.22) if splay else top
            solids.append(_bar((top, seat_y + 0.02), (foot, 0.0), leg))
            feet.append(foot)
        if instance.has("crossbar"):
            y = 0.35 * seat_y
            x = (half - 0.06) + ((half + 0.22) - (half - 0.06)) * (1 - y / seat_y) * splay
            solids.append(_box(-x, y - 0.6 * leg, x, y + 0.6 * leg))
    return ShapeParts(body=_dense(body), solids=solids, cutouts=cutouts, holes=holes, details=details)
