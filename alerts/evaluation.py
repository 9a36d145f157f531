"""Evaluation (design §6, after close): counts, rates, mean times, patrol coverage, score and grade.

Pure: incidents, their audit rows, buildings and GPS tracks come in; rows go out. One row per unit:
a grid of one level (`by="grid"`, the incident's route chain l1/l2/l3), a patroller (`by="patroller"`,
the incident's assignee) or a command center (`by="center"`: the center of the level that owns the
incident — its escalation_level — bound to that level's grid of the route chain).

The period is [start, end). Definitions (all over the unit's incidents *created* in the period, and
"by `end`" means at an instant before `end`):

- incidents: created in the period; closed: in closed/called_back/archived at `end`, closed before `end`;
- closed_rate = closed / incidents;
- due: has a deadline (the handle deadline kept at resolve, else the current deadline), and that
  deadline passed before `end` or the incident was closed before `end`;
  on_time_close_rate = (closed on or before that deadline) / due;
- on-time dispatch: first dispatch within the register+dispatch limit of its creation (urgent limit
  from `urgent_severity` up); on_time_dispatch_rate = on time / (dispatched by `end` + still
  undispatched, open and past the limit at `end`);
- rework_rate / extension_rate = incidents with a "rework" / "approve_extension" audit row / incidents;
- overdue_open_rate = (open at `end` and past its current deadline — else the handle deadline) / incidents;
- self_handled: count; mean minutes to acknowledge / arrive (from dispatched_at) and to resolve
  (from created_at), over the incidents having both times;
- coverage = share of the unit's buildings with a GPS point (any patroller's for a grid or center,
  the patroller's own for a patroller, over their assigned grids) within `coverage_radius_m` of
  the footprint, from points in the period;
- score = 100 × Σ wᵢ·vᵢ / Σ wᵢ over the metrics with a value (1 − rate for the lower-is-better
  ones); grade = the first grade whose minimum the score reaches.

Incident milestone fields (dispatched_at, acknowledged_at, resolved_at, closed_at) are used when set;
when not, the audit rows supply them (incidents stored before those fields existed).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np
import shapely

from alerts.model import OPEN_STATES, HistoryEntry, Incident, IncidentState
from geo.model import Building

DEFAULTS_FILE = Path(__file__).with_name("evaluation_defaults.yaml")
EARTH_RADIUS_M = 6_371_008.8
METRICS = ("closed_rate", "on_time_close_rate", "on_time_dispatch_rate", "rework_rate", "extension_rate",
           "overdue_open_rate", "coverage")
LOWER_IS_BETTER = frozenset({"rework_rate", "extension_rate", "overdue_open_rate"})
CLOSED_STATES = frozenset({IncidentState.CLOSED, IncidentState.CALLED_BACK, IncidentState.ARCHIVED})
Group = Literal["grid", "patroller", "center"]


class EvaluationConfigError(ValueError):
    """The evaluation configuration is unusable (the message names the key)."""


@dataclass(frozen=True, slots=True)
class EvaluationConfig:
    """Limits, weights and grade thresholds (alerts/evaluation_defaults.yaml)."""

    dispatch_limit: timedelta = timedelta(minutes=30)
    urgent_dispatch_limit: timedelta = timedelta(minutes=10)
    urgent_severity: int = 4
    coverage_radius_m: float = 30.0
    weights: Mapping[str, float] = field(default_factory=dict)
    grades: tuple[tuple[str, float], ...] = (("A", 90.0), ("B", 80.0), ("C", 70.0), ("D", 60.0), ("E", 0.0))

    def grade(self, score: float | None) -> str | None:
        """The grade of a score (None without a score)."""
        if score is None:
            return None
        for name, minimum in self.grades:
            if score >= minimum - 1e-9:
                return name
        return self.grades[-1][0]


def config_from_dict(raw: Mapping[str, Any]) -> EvaluationConfig:
    """Build a config from the YAML's mapping; raise EvaluationConfigError naming a bad key."""
    def number(key: str, default: float) -> float:
        value = raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise EvaluationConfigError(f"{key}: expected a non-negative number, got {value!r}")
        return float(value)

    weights = raw.get("weights") or {}
    if not isinstance(weights, Mapping):
        raise EvaluationConfigError("weights: expected a mapping of metric → weight")
    for key, w in weights.items():
        if key not in METRICS:
            raise EvaluationConfigError(f"weights.{key}: unknown metric; expected one of {', '.join(METRICS)}")
        if isinstance(w, bool) or not isinstance(w, (int, float)) or w < 0:
            raise EvaluationConfigError(f"weights.{key}: expected a non-negative number, got {w!r}")
    grades_raw = raw.get("grades") or {"A": 90, "B": 80, "C": 70, "D": 60, "E": 0}
    if not isinstance(grades_raw, Mapping) or not grades_raw:
        raise EvaluationConfigError("grades: expected a mapping of grade → minimum score")
    grades = tuple(sorted(((str(k), float(v)) for k, v in grades_raw.items()), key=lambda g: -g[1]))
    return EvaluationConfig(
        dispatch_limit=timedelta(minutes=number("dispatch_limit_minutes", 30)),
        urgent_dispatch_limit=timedelta(minutes=number("urgent_dispatch_limit_minutes", 10)),
        urgent_severity=int(number("urgent_severity", 4)),
        coverage_radius_m=number("coverage_radius_m", 30),
        weights={k: float(v) for k, v in weights.items()},
        grades=grades,
    )


def load_config(path: str | Path | None = None) -> EvaluationConfig:
    """Read a YAML configuration (default: alerts/evaluation_defaults.yaml)."""
    import yaml  # pyyaml: read once per process by the API

    with open(path or DEFAULTS_FILE, encoding="utf-8") as f:
        raw = yaml.safe_load(f) or {}
    if not isinstance(raw, Mapping):
        raise EvaluationConfigError(f"{path or DEFAULTS_FILE}: expected a mapping at the top level")
    return config_from_dict(raw)


@dataclass(frozen=True, slots=True)
class Tracks:
    """GPS points as parallel arrays: patroller id, time (epoch seconds, UTC), lon, lat."""

    patroller_id: np.ndarray
    ts: np.ndarray
    lon: np.ndarray
    lat: np.ndarray

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[str, datetime, float, float]]) -> Tracks:
        """From (patroller_id, ts (aware), lon, lat) rows, e.g. Store.track(...)."""
        rows = list(rows)
        return cls(
            np.array([r[0] for r in rows], dtype=object),
            np.array([r[1].timestamp() for r in rows], dtype=np.float64),
            np.array([r[2] for r in rows], dtype=np.float64),
            np.array([r[3] for r in rows], dtype=np.float64),
        )

    def between(self, start: datetime, end: datetime) -> Tracks:
        """The points with start ≤ ts < end."""
        m = (self.ts >= start.timestamp()) & (self.ts < end.timestamp())
        return Tracks(self.patroller_id[m], self.ts[m], self.lon[m], self.lat[m])

    def __len__(self) -> int:
        return int(self.ts.shape[0])


@dataclass(slots=True)
class EvaluationRow:
    """The evaluation of one unit over one period."""

    group: str
    key: str
    level: int | None
    period_from: datetime
    period_to: datetime
    incidents: int = 0
    closed: int = 0
    closed_rate: float | None = None
    due: int = 0
    on_time_closed: int = 0
    on_time_close_rate: float | None = None
    dispatch_checked: int = 0
    on_time_dispatched: int = 0
    on_time_dispatch_rate: float | None = None
    reworked: int = 0
    rework_rate: float | None = None
    extended: int = 0
    extension_rate: float | None = None
    overdue_open: int = 0
    overdue_open_rate: float | None = None
    self_handled: int = 0
    mean_minutes_to_acknowledge: float | None = None
    mean_minutes_to_arrive: float | None = None
    mean_minutes_to_resolve: float | None = None
    buildings: int | None = None
    buildings_visited: int | None = None
    coverage: float | None = None
    score: float | None = None
    grade: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (times as ISO 8601)."""
        out = asdict(self)
        out["period_from"] = self.period_from.isoformat()
        out["period_to"] = self.period_to.isoformat()
        return out


CSV_COLUMNS = tuple(f.name for f in fields(EvaluationRow))


def to_csv(rows: Iterable[EvaluationRow]) -> str:
    """Rows as CSV text with a header row (empty cells for missing values)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        d = row.to_dict()
        writer.writerow(["" if d[c] is None else d[c] for c in CSV_COLUMNS])
    return buf.getvalue()


# --- per incident ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Facts:
    """What the metrics need of one incident, as of `end`."""

    closed: bool
    due: bool
    on_time_closed: bool
    dispatch_checked: bool
    on_time_dispatched: bool
    reworked: bool
    extended: bool
    overdue_open: bool
    self_handled: bool
    to_acknowledge: float | None
    to_arrive: float | None
    to_resolve: float | None


def _first(rows: Sequence[HistoryEntry], *, action: str | None = None, to: IncidentState | None = None) -> datetime | None:
    for r in rows:
        if (action is None or r.action == action) and (to is None or r.to_state == to):
            return r.at
    return None


def _last(rows: Sequence[HistoryEntry], action: str) -> datetime | None:
    found = None
    for r in rows:
        if r.action == action:
            found = r.at
    return found


def _minutes(a: datetime | None, b: datetime | None) -> float | None:
    if a is None or b is None or b < a:
        return None
    return (b - a).total_seconds() / 60


def _due_deadline(incident: Incident) -> datetime | None:
    """The deadline an incident is closed against: the handle deadline kept at its (last) resolve, else its deadline.

    With stage clocks (alerts.sla) `deadline` follows the running stage and is cleared at close; the
    workflow keeps the handle deadline (extensions included) in details["handle_deadline"].
    """
    kept = incident.details.get("handle_deadline")
    if isinstance(kept, str):
        try:
            return datetime.fromisoformat(kept)
        except ValueError:
            pass
    return incident.deadline


def _facts(incident: Incident, rows: Sequence[HistoryEntry], end: datetime, config: EvaluationConfig) -> _Facts:
    rows = sorted((r for r in rows if r.at < end), key=lambda r: r.at)
    state = rows[-1].to_state if rows else incident.state
    closed_at = incident.closed_at or _last(rows, "close")
    closed = state in CLOSED_STATES and closed_at is not None and closed_at < end
    deadline = _due_deadline(incident)
    due = deadline is not None and (deadline < end or closed)
    on_time_closed = due and closed and closed_at is not None and deadline is not None and closed_at <= deadline

    first_dispatch = _first(rows, to=IncidentState.DISPATCHED)
    if first_dispatch is None and incident.dispatched_at is not None and incident.dispatched_at < end:
        first_dispatch = incident.dispatched_at
    limit = config.urgent_dispatch_limit if incident.severity >= config.urgent_severity else config.dispatch_limit
    if first_dispatch is not None:
        dispatch_checked, on_time_dispatched = True, first_dispatch - incident.created_at <= limit
    else:
        late = incident.created_at + limit < end
        dispatch_checked = late and state in OPEN_STATES and not incident.self_handled
        on_time_dispatched = False

    dispatched_at = incident.dispatched_at if incident.dispatched_at is not None and incident.dispatched_at < end else first_dispatch
    acknowledged_at = incident.acknowledged_at or _first(rows, action="acknowledge")
    arrived_at = incident.arrived_at or _first(rows, action="arrive")
    resolved_at = incident.resolved_at or _last(rows, "resolve")

    def before(t: datetime | None) -> datetime | None:
        return t if t is not None and t < end else None

    return _Facts(
        closed=closed,
        due=due,
        on_time_closed=on_time_closed,
        dispatch_checked=dispatch_checked,
        on_time_dispatched=on_time_dispatched,
        reworked=any(r.action == "rework" for r in rows),
        extended=any(r.action == "approve_extension" for r in rows),
        overdue_open=state in OPEN_STATES and (current := incident.deadline or deadline) is not None and current < end,
        self_handled=incident.self_handled,
        to_acknowledge=_minutes(dispatched_at, before(acknowledged_at)),
        to_arrive=_minutes(dispatched_at, before(arrived_at)),
        to_resolve=_minutes(incident.created_at, before(resolved_at)),
    )


# --- coverage ----------------------------------------------------------------------------------------
def visited_pairs(buildings: Sequence[Building], tracks: Tracks, radius_m: float) -> tuple[np.ndarray, np.ndarray]:
    """(point index, building index) pairs: a point within `radius_m` of a footprint (vectorized).

    Lon/lat are projected to local metres (equirectangular about the buildings' mean latitude:
    well under 1 % error across a city) and the pairs come from one STRtree `dwithin` query.
    """
    if not buildings or len(tracks) == 0:
        return np.empty(0, dtype=np.intp), np.empty(0, dtype=np.intp)
    geoms = np.array([b.geometry for b in buildings], dtype=object)
    lon0, lat0 = (float(v) for v in np.mean(shapely.bounds(geoms).reshape(-1, 2, 2).mean(axis=1), axis=0))
    scale = np.array([EARTH_RADIUS_M * math.cos(math.radians(lat0)) * math.pi / 180, EARTH_RADIUS_M * math.pi / 180])
    origin = np.array([lon0, lat0])
    projected = shapely.transform(geoms, lambda xy: (xy - origin) * scale)
    pts = shapely.points((tracks.lon - lon0) * scale[0], (tracks.lat - lat0) * scale[1])
    tree = shapely.STRtree(projected)
    pairs = tree.query(pts, predicate="dwithin", distance=radius_m)
    return pairs[0], pairs[1]


class _Coverage:
    """Visited buildings, overall and per patroller, for one period."""

    def __init__(self, buildings: Sequence[Building], tracks: Tracks | None, radius_m: float) -> None:
        self.buildings = list(buildings)
        self.enabled = tracks is not None
        self.any: set[int] = set()
        self.by_patroller: dict[str, set[int]] = {}
        self._subtree: dict[str, list[int]] | None = None
        if tracks is None:
            return
        point_idx, building_idx = visited_pairs(self.buildings, tracks, radius_m)
        self.any = {int(b) for b in np.unique(building_idx)}
        if point_idx.size:
            who = tracks.patroller_id[point_idx]
            for pid in np.unique(who):
                self.by_patroller[str(pid)] = {int(b) for b in np.unique(building_idx[who == pid])}

    def of_grid(self, code: str, ancestors: Mapping[str, Collection[str]] | None) -> tuple[int, int] | None:
        """(buildings in the grid's subtree, visited by anyone), or None without tracks."""
        if not self.enabled:
            return None
        if ancestors is None:  # hierarchical codes: a child's code starts with its parent's
            mine = [i for i, b in enumerate(self.buildings) if b.grid_code.startswith(code)]
        else:
            if self._subtree is None:  # one pass over the buildings: unit code → building indices
                self._subtree = {}
                for i, b in enumerate(self.buildings):
                    for c in {b.grid_code, *ancestors.get(b.grid_code, ())}:
                        self._subtree.setdefault(c, []).append(i)
            mine = self._subtree.get(code, [])
        return len(mine), sum(1 for i in mine if i in self.any)

    def of_patroller(self, pid: str, grid_codes: Sequence[str] | None) -> tuple[int, int] | None:
        """(buildings of the patroller's grids, visited by them), or None without tracks or assignments."""
        if not self.enabled or grid_codes is None:
            return None
        codes = set(grid_codes)
        mine = [i for i, b in enumerate(self.buildings) if b.grid_code in codes]
        seen = self.by_patroller.get(pid, set())
        return len(mine), sum(1 for i in mine if i in seen)


# --- rows --------------------------------------------------------------------------------------------
def _chain_code(incident: Incident, level: int) -> str | None:
    route = incident.route
    return {1: route.l1, 2: route.l2, 3: route.l3}.get(level)


def _unit_of(incident: Incident, by: Group, level: int | None) -> str | None:
    if by == "patroller":
        return incident.assignee
    if by == "grid":
        return _chain_code(incident, level or 3)
    owner = incident.escalation_level
    if level is not None and owner != level:
        return None
    return _chain_code(incident, owner)


def _rate(n: int, d: int) -> float | None:
    return n / d if d else None


def _mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def score_of(row: EvaluationRow, config: EvaluationConfig) -> float | None:
    """The composite score (0–100) of a row, over the weighted metrics it has a value for."""
    total = weight_sum = 0.0
    for metric, weight in config.weights.items():
        value = getattr(row, metric)
        if value is None or weight <= 0:
            continue
        total += weight * ((1 - value) if metric in LOWER_IS_BETTER else value)
        weight_sum += weight
    return 100 * total / weight_sum if weight_sum else None


def evaluate(
    incidents: Iterable[Incident],
    history: Mapping[str, Sequence[HistoryEntry]],
    *,
    start: datetime,
    end: datetime,
    by: Group = "grid",
    level: int | None = 3,
    units: Sequence[str] | None = None,
    buildings: Sequence[Building] = (),
    tracks: Tracks | Iterable[tuple[str, datetime, float, float]] | None = None,
    patroller_grids: Mapping[str, Sequence[str]] | None = None,
    ancestors: Mapping[str, Collection[str]] | None = None,
    config: EvaluationConfig | None = None,
) -> list[EvaluationRow]:
    """Evaluate units over [start, end).

    `units`: the rows wanted, in order (e.g. every grid of the level, even those without incidents);
    without it, one row per unit that has incidents, sorted. `history`: audit rows by incident id.
    `tracks` (None: coverage not computed), `patroller_grids`: level-3 grid codes by patroller id
    (coverage of `by="patroller"` rows). `ancestors`: the codes above each level-3 grid (which
    buildings belong to a level-1/2 unit); without it a child's code must start with its parent's.
    """
    if end <= start:
        raise ValueError(f"empty period: from {start.isoformat()} is not before to {end.isoformat()}")
    if by not in ("grid", "patroller", "center"):
        raise ValueError(f"by={by!r}: expected grid, patroller or center")
    if by != "patroller" and level not in (1, 2, 3) and not (by == "center" and level is None):
        raise ValueError(f"level={level!r}: expected 1, 2 or 3")
    cfg = config or DEFAULT_CONFIG
    grouped: dict[str, list[_Facts]] = {}
    levels: dict[str, int | None] = {}
    for incident in incidents:
        if not start <= incident.created_at < end:
            continue
        key = _unit_of(incident, by, level)
        if key is None:
            continue
        grouped.setdefault(key, []).append(_facts(incident, history.get(incident.id, ()), end, cfg))
        levels.setdefault(key, incident.escalation_level if by == "center" else None)
    keys = list(units) if units is not None else sorted(grouped)
    track_arrays = None
    if tracks is not None:
        track_arrays = (tracks if isinstance(tracks, Tracks) else Tracks.from_rows(tracks)).between(start, end)
    coverage = _Coverage(buildings, track_arrays, cfg.coverage_radius_m)
    rows = []
    for key in keys:
        facts = grouped.get(key, [])
        row_level = None if by == "patroller" else (level if level is not None else levels.get(key))
        row = EvaluationRow(by, key, row_level, start, end)
        n = row.incidents = len(facts)
        row.closed = sum(f.closed for f in facts)
        row.due = sum(f.due for f in facts)
        row.on_time_closed = sum(f.on_time_closed for f in facts)
        row.dispatch_checked = sum(f.dispatch_checked for f in facts)
        row.on_time_dispatched = sum(f.on_time_dispatched for f in facts)
        row.reworked = sum(f.reworked for f in facts)
        row.extended = sum(f.extended for f in facts)
        row.overdue_open = sum(f.overdue_open for f in facts)
        row.self_handled = sum(f.self_handled for f in facts)
        row.closed_rate = _rate(row.closed, n)
        row.on_time_close_rate = _rate(row.on_time_closed, row.due)
        row.on_time_dispatch_rate = _rate(row.on_time_dispatched, row.dispatch_checked)
        row.rework_rate = _rate(row.reworked, n)
        row.extension_rate = _rate(row.extended, n)
        row.overdue_open_rate = _rate(row.overdue_open, n)
        row.mean_minutes_to_acknowledge = _mean([f.to_acknowledge for f in facts])
        row.mean_minutes_to_arrive = _mean([f.to_arrive for f in facts])
        row.mean_minutes_to_resolve = _mean([f.to_resolve for f in facts])
        if by == "patroller":
            cov = coverage.of_patroller(key, None if patroller_grids is None else patroller_grids.get(key, ()))
        else:
            cov = coverage.of_grid(key, ancestors)
        if cov is not None:
            row.buildings, row.buildings_visited = cov
            row.coverage = _rate(cov[1], cov[0])
        row.score = score_of(row, cfg)
        row.grade = cfg.grade(row.score)
        rows.append(row)
    return rows


def _default_config() -> EvaluationConfig:
    try:
        return load_config()
    except ImportError:  # pyyaml missing: the same values, written here
        return config_from_dict({
            "weights": {"closed_rate": 0.2, "on_time_close_rate": 0.25, "on_time_dispatch_rate": 0.15, "rework_rate": 0.1,
                        "extension_rate": 0.05, "overdue_open_rate": 0.15, "coverage": 0.1},
        })


DEFAULT_CONFIG = _default_config()
