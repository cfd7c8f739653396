"""Travel times between cameras, learnt from the passes the engine chains.

A pass (a person, vehicle or animal crossing a site) shows on one camera
after another, each camera once. Time, detection type and controller alone
cannot tell two passes of one type apart when they come close (two people
crossing, a courier behind a visitor), and a fixed window splits a pass with
a long walk between two cameras. Which camera follows which, and how long
that takes, can; the site's layout is nowhere configured, so it is learnt
from the stream:

- every time a detection continues a pass, the time since the pass's newest
  sighting is recorded for that camera pair (unordered: a walk takes as long
  either way), per site key (controller and detection class: a vehicle is
  faster than a person);
- once a pair has :data:`KNOWN_AFTER` such travel times, the median of the
  newest :data:`RECENT` is its expected travel time, and a detection fits a
  pass by how close its lag is to that (a bell of width :data:`TOLERANCE`
  of the expected time, at least :data:`MIN_TOLERANCE_US`), however long the
  walk;
- a pair never learnt may be two cameras with one missed between them: the
  sum of the two learnt legs through a camera the pass has not shown on is
  expected, discounted by :data:`MISSED_CAMERA`;
- a pair nothing is known about falls back to the configured multi-camera
  window (1 at the same instant, 0.5 at the window's edge), and so does
  every pair when ``multi_camera.fixed_window`` is set;
- below :data:`PLAUSIBLE` a detection does not continue the pass.

Measured on ``../shared/eval/scenarios/camera-site-s1`` (see the README's
evaluation section); the knobs are module constants, one setting for every
site.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Collection
from dataclasses import dataclass, field
from statistics import median

#: Travel times of a pair before its median is trusted.
KNOWN_AFTER = 8
#: Travel times kept per pair: the layout may change (a camera moved).
RECENT = 50
#: Width of the bell around an expected travel time, as a share of it.
TOLERANCE = 0.35
MIN_TOLERANCE_US = 1_500_000
#: Discount for a pass that went past a camera without being seen there.
MISSED_CAMERA = 0.7
#: A continuation less plausible than this is not one.
PLAUSIBLE = 0.2

#: (site key, camera, camera), the two cameras in sorted order.
PairKey = tuple[str, str, str]


@dataclass(frozen=True, slots=True)
class CameraStep:
    """One learnt step of a pass, as stored: from the pass's newest sighting to the next."""

    controller_id: str
    detection_type: str
    from_camera: str
    to_camera: str
    lag_us: int


@dataclass(slots=True)
class _Pair:
    lags: deque[int] = field(default_factory=lambda: deque(maxlen=RECENT))
    expected_us: float | None = None


class TravelTimes:
    """Expected travel times per site and camera pair, learnt online."""

    def __init__(self) -> None:
        self._pairs: dict[PairKey, _Pair] = {}
        #: site key -> cameras of its learnt pairs (the possible missed cameras).
        self._cameras: dict[str, set[str]] = {}

    def clear(self) -> None:
        """Forgets everything learnt."""
        self._pairs.clear()
        self._cameras.clear()

    def observe(self, site: str, a: str, b: str, lag_us: int) -> None:
        """Records that a pass went from camera ``a`` to ``b`` in ``lag_us``."""
        pair = self._pairs.setdefault(_key(site, a, b), _Pair())
        pair.lags.append(lag_us)
        if len(pair.lags) >= KNOWN_AFTER:
            pair.expected_us = median(pair.lags)
            self._cameras.setdefault(site, set()).update((a, b))

    def expected_us(self, site: str, a: str, b: str) -> float | None:
        """The learnt travel time between ``a`` and ``b``, or None while unknown."""
        pair = self._pairs.get(_key(site, a, b))
        return None if pair is None else pair.expected_us

    def plausibility(
        self,
        site: str,
        head: str,
        camera: str,
        lag_us: int,
        seen: Collection[str],
        window_us: int,
    ) -> float:
        """How well a detection on ``camera`` ``lag_us`` after the pass's newest
        sighting (on ``head``) continues a pass that has shown on ``seen``."""
        direct = self.expected_us(site, head, camera)
        if direct is not None:
            return _bell(lag_us, direct)
        best = 0.0
        for missed in self._cameras.get(site, ()):
            if missed in seen or missed == camera:
                continue
            first = self.expected_us(site, head, missed)
            second = self.expected_us(site, missed, camera)
            if first is not None and second is not None:
                best = max(best, MISSED_CAMERA * _bell(lag_us, first + second))
        return best or window_score(lag_us, window_us)


def window_score(lag_us: int, window_us: int) -> float:
    """The multi-camera window's own rule: 1 at the same instant, 0.5 at its edge,
    0 beyond."""
    if lag_us > window_us:
        return 0.0
    return 1.0 - 0.5 * lag_us / window_us if window_us else 1.0


def _key(site: str, a: str, b: str) -> PairKey:
    return (site, a, b) if a <= b else (site, b, a)


def _bell(lag_us: int, expected_us: float) -> float:
    width = max(MIN_TOLERANCE_US, TOLERANCE * expected_us)
    return math.exp(-0.5 * ((lag_us - expected_us) / width) ** 2)
