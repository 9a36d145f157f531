"""Patrollers of the sample district and their weekly roster.

Level-3 grids are paired into *beats* of one or two neighbouring grids (same community first).
Every beat gets two patrollers: a day crew (08:00–20:00, Monday–Friday) and a night crew
(20:00–08:00, nights starting Sunday–Thursday). The spare patrollers go to the beats with the most
buildings, which then run a three-person rotation over all fourteen 12-hour slots of the week
(round robin: 12 h on, 24 h off), so those grids are covered around the clock. Every grid has at
least one patroller; on weekdays every grid is covered day and night.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import time

import numpy as np
import shapely

from geo.localframe import PRECISION
from geo.model import Building, Grid, Patroller, Shift

logger = logging.getLogger(__name__)

PATROLLERS = 163
DAY = (time(8), time(20))
NIGHT = (time(20), time(8))
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蒋蔡余杜叶程苏魏吕丁任沈姚卢"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红建国志文斌辉鹏飞宇浩然凯晨阳欣怡子涵思远"


def pair_beats(l3: Sequence[Grid]) -> list[tuple[Grid, ...]]:
    """Pair neighbouring level-3 grids into beats: same community first, then across communities."""
    geoms = np.array([g.geometry for g in l3], dtype=object)
    shapely.prepare(geoms)

    def neighbours(i: int, j: int) -> bool:
        """Two grids are neighbours when they share an edge (not just a corner)."""
        return bool(shapely.intersection(geoms[i], geoms[j]).length > 0)

    order = sorted(range(len(l3)), key=lambda i: l3[i].code)
    free = set(order)
    beats: list[tuple[int, ...]] = []
    for same_community in (True, False):
        for i in order:
            if i not in free:
                continue
            for j in order:
                if j == i or j not in free:
                    continue
                if same_community and l3[j].code[:12] != l3[i].code[:12]:
                    continue
                if neighbours(i, j):
                    beats.append((i, j))
                    free -= {i, j}
                    break
    beats.extend((i,) for i in order if i in free)
    beats.sort(key=lambda b: l3[b[0]].code)
    return [tuple(l3[i] for i in b) for b in beats]


def _rotation(person: int, crew: int) -> tuple[Shift, ...]:
    """The shifts of person `person` in a round-robin crew of `crew` over the week's 14 slots."""
    days = frozenset(s // 2 for s in range(14) if s % crew == person and s % 2 == 0)
    nights = frozenset(s // 2 for s in range(14) if s % crew == person and s % 2 == 1)
    shifts = []
    if days:
        shifts.append(Shift(days, *DAY))
    if nights:
        shifts.append(Shift(nights, *NIGHT))
    return tuple(shifts)


def _point_in(grid: Grid, rng: np.random.Generator) -> tuple[float, float]:
    """A random point inside a grid, rounded to the coordinate lattice."""
    minx, miny, maxx, maxy = grid.geometry.bounds
    while True:
        x = round(rng.uniform(minx, maxx) / PRECISION) * PRECISION
        y = round(rng.uniform(miny, maxy) / PRECISION) * PRECISION
        if shapely.contains_xy(grid.geometry, x, y):
            return (x, y)


def build_patrollers(
    l3: Sequence[Grid],
    buildings: Sequence[Building],
    rng: np.random.Generator,
    total: int = PATROLLERS,
) -> list[Patroller]:
    """Build `total` patrollers on beats of 1–2 level-3 grids, covering every grid."""
    beats = pair_beats(l3)
    if total < 2 * len(beats):
        raise ValueError(
            f"total {total}: need at least {2 * len(beats)} patrollers for {len(beats)} beats"
        )
    per_grid: dict[str, int] = {}
    for b in buildings:
        per_grid[b.grid_code] = per_grid.get(b.grid_code, 0) + 1
    load = [sum(per_grid.get(g.code, 0) for g in beat) for beat in beats]
    busiest = sorted(range(len(beats)), key=lambda k: (-load[k], beats[k][0].code))
    extra, rest = divmod(total - 2 * len(beats), len(beats))
    crews = [2 + extra] * len(beats)
    for k in busiest[:rest]:
        crews[k] += 1

    phones: set[str] = set()
    out: list[Patroller] = []
    for k, beat in enumerate(beats):
        crew = crews[k]
        for person in range(crew):
            if crew >= 3:
                shifts = _rotation(person, crew)
            elif person == 0:
                shifts = (Shift(frozenset(range(5)), *DAY),)
            else:
                shifts = (Shift(frozenset({6, 0, 1, 2, 3}), *NIGHT),)
            while True:
                phone = f"1{rng.choice(['38', '39', '58', '59', '86', '87'])}{int(rng.integers(0, 10**8)):08d}"
                if phone not in phones:
                    phones.add(phone)
                    break
            name = str(rng.choice(list(SURNAMES))) + "".join(
                rng.choice(list(GIVEN), size=int(rng.integers(1, 3)))
            )
            home_grid = beat[person % len(beat)]
            out.append(
                Patroller(
                    id=f"P{len(out) + 1:04d}",
                    name=name,
                    phone=phone,
                    grid_codes=tuple(g.code for g in beat),
                    shifts=shifts,
                    home=_point_in(home_grid, rng),
                )
            )
    logger.debug("roster: %d beats, %d patrollers", len(beats), len(out))
    return out
