"""The store port: what alerts/, ingest/ and api/ need from persistence.

Both backends (store.sqlite, store.postgis) implement it and pass tests/integration/test_store_contract.py.
Writes of the ingest path happen inside one `UnitOfWork` per batch, committed once; MQTT acks are
sent only after that commit (at-least-once delivery + idempotent storage = exactly once).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from alerts.maintenance import MaintenanceWindow
from alerts.model import HistoryEntry, Incident, IncidentState, Notification
from geo.model import (
    Building,
    Device,
    District,
    Grid,
    GridVersion,
    Patroller,
    RosterException,
    Shift,
)
from ingest.model import (
    Alarm,
    AlarmEnd,
    DeadLetter,
    DeviceStatus,
    PatrollerPosition,
    Reading,
)

#: The states of a device: never heard from, heard from within its interval, silent (or said so).
DEVICE_STATES = ("unknown", "online", "offline")
#: Buckets of Store.readings: raw samples, 1-minute and 1-hour aggregates.
READING_BUCKETS = ("raw", "1m", "1h")


@dataclass(frozen=True, slots=True)
class StoredDeadLetter:
    """A dead letter as stored, with its id and its replay bookkeeping."""

    id: int
    dead_letter: DeadLetter
    replayed_at: datetime | None = None  # when a replay was accepted (None: still pending)
    replay_result: str | None = None  # the outcome of the last replay attempt
    replays: int = 0  # replay attempts so far

    @property
    def pending(self) -> bool:
        """Not accepted by a replay yet."""
        return self.replayed_at is None


@dataclass(frozen=True, slots=True)
class DeviceState:
    """A device's liveness as stored: `state` is one of DEVICE_STATES."""

    device_id: str
    state: str
    since: datetime | None  # when the state last changed (None: never)
    last_seen: datetime | None  # the newest message time (None: never heard from)
    detail: dict[str, Any]  # the last status data (battery, rssi, offline reason, ...)


@dataclass(frozen=True, slots=True)
class ReadingRow:
    """One row of Store.readings: a raw sample (count 1, min = max = avg = value) or a bucket's aggregate."""

    ts: datetime  # the sample's time, or the bucket's start
    metric: str
    unit: str | None
    count: int
    min: float
    max: float
    avg: float


@dataclass(frozen=True, slots=True)
class Position:
    """A patroller's last known position."""

    patroller_id: str
    ts: datetime
    lon: float
    lat: float
    acc: float | None


@dataclass(frozen=True, slots=True)
class IncidentQuery:
    """Filters of GET /incidents. All optional; `bbox` is (min_lon, min_lat, max_lon, max_lat)."""

    states: tuple[IncidentState, ...] = ()
    grid_prefix: str | None = None  # a grid code at any level: the incident's L3 code starts with it
    grid: str | None = None  # a grid code at any level: the incident's route chain (l1, l2, l3) holds it
    assignees: tuple[str, ...] = ()  # assigned to one of these patrollers
    patroller_scope: tuple[str, tuple[str, ...]] | None = None  # (patroller id, its geofence's L3 codes): assigned to it OR inside
    bbox: tuple[float, float, float, float] | None = None
    since: datetime | None = None
    limit: int = 500


@dataclass(frozen=True, slots=True)
class StoredWindow:
    """A maintenance window as stored, with its id and who created it."""

    id: int
    window: MaintenanceWindow
    created_by: str


@dataclass(frozen=True, slots=True)
class IncidentRecord:
    """An incident with its alarms and audit log, read from one snapshot: the state and the history agree."""

    incident: Incident
    alarms: list[Alarm]
    history: list[HistoryEntry]


@dataclass(frozen=True, slots=True)
class UserRecord:
    """A person who logs in: an argon2 password hash, a role and what the role is bound to."""

    username: str
    password_hash: str
    role: str  # admin | commander | patroller | planner | device
    grid_code: str | None = None  # commander: the grid whose subtree they see and act on
    patroller_id: str | None = None  # patroller: who they are


@dataclass(frozen=True, slots=True)
class VersionAudit:
    """One row of the grid versions' append-only audit log."""

    id: int
    version_id: int
    at: datetime
    actor: str
    action: str  # "import" | "publish" | "delete"
    detail: dict[str, Any]


class UnitOfWork(Protocol):
    """One transaction. Leaving the `with` block commits; an exception rolls back."""

    def lock_keys(self, keys: Sequence[tuple[str, str]]) -> None:
        """Serialize concurrent workers on these (device_id, type) correlation keys until commit."""

    def prefetch_open_incidents(self, keys: Sequence[tuple[str, str]], since: datetime) -> None:
        """Hint: `open_incidents_for(keys, since)` follows; a backend may send it early (no-op allowed)."""

    def known_alarm_keys(self, keys: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        """Return which (device_id, msg_id) keys are already stored."""

    def add_alarms(self, alarms: Sequence[tuple[Alarm, str]]) -> int:
        """Store (alarm, incident_id) pairs; a key already stored is skipped. Return rows inserted."""

    def open_incidents_for(self, keys: Iterable[tuple[str, str]], since: datetime) -> dict[tuple[str, str], Incident]:
        """Return the newest open incident per (device_id, type) whose last alarm is at or after `since`."""

    def open_incidents_near(self, points: Sequence[tuple[float, float]], radius_m: float, since: datetime) -> list[Incident]:
        """Open incidents, storms excluded, whose route point lies within `radius_m` metres of any of the
        (lon, lat) `points` and whose last alarm is at or after `since`; each once (correlation)."""

    def recent_incident_counts(self, grids: Sequence[str], since: datetime) -> dict[str, int]:
        """Per level-3 grid code: device incidents (storms excluded) created at or after `since` (storm control)."""

    def open_storm_incidents(self, grids: Sequence[str]) -> dict[str, Incident]:
        """Per level-3 grid code: its newest open storm incident."""

    def get_incident(self, incident_id: str, *, for_update: bool = False) -> Incident | None:
        """Return one incident (locking its row when `for_update`)."""

    def save_incidents(self, incidents: Sequence[Incident]) -> None:
        """Insert or update incidents (upsert by id)."""

    def add_history(self, entries: Sequence[HistoryEntry]) -> None:
        """Append audit-log rows."""

    def add_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        """Store dead letters with their reasons."""

    def add_notifications(self, notifications: Sequence[Notification]) -> list[int]:
        """Write notifications to the outbox; return their ids."""

    def set_positions(self, positions: Sequence[PatrollerPosition]) -> None:
        """Update last known positions (keep the newest by ts)."""

    # --- publishing a grid version (store.versions: one transaction with the incident moves) ----------
    def publish_version(self, version_id: int, *, at: datetime, actor: str, detail: dict[str, Any],
                        expected_current: int | None = None) -> GridVersion:
        """Make a draft the current version from `at` (the old one valid until `at`), with an audit row.

        Raises VersionStateError when the version does not exist or is not a draft, or when
        `expected_current` is given (0: no current version) and another version is current.
        """

    def move_devices(self, moves: Sequence[tuple[str, str]]) -> None:
        """Set the owner grid of devices: (device_id, level-3 grid code) pairs."""

    def set_patroller_grids(self, moves: Sequence[tuple[str, tuple[str, ...]]]) -> None:
        """Set patrollers' level-3 assignments: (patroller_id, grid codes) pairs."""

    # --- devices, readings, alarm ends, dead letters (migration 0004) -------------------------------
    def touch_devices(self, seen: Mapping[str, datetime]) -> list[str]:
        """Record that devices were heard from: last_seen = max(stored, given), state 'online'.

        state_since becomes the given time when the state changes. Unknown device ids are ignored. An
        offline device stays offline when the given time is not after it went offline (a late or
        replayed older message). Returns the ids (sorted) that were 'offline' before: they came back. The rows are locked until
        commit, so two workers touching the same device agree on who saw it come back.
        """

    def lock_devices(self, device_ids: Iterable[str]) -> None:
        """Lock device rows until commit, in id order: writers take every device row they need first."""

    def mark_offline(self, changes: Sequence[tuple[str, datetime, dict[str, Any], datetime | None]]) -> list[str]:
        """(device_id, basis, detail, since): set offline as of `basis` (state_since = basis, detail merged)
        unless the device already is offline, or was heard after the basis (last_seen > basis: a late or
        redelivered will), or — with `since` — was heard at all since that last_seen (a sweep racing a
        heartbeat). Returns the ids set offline. `touch_devices` revives an offline device only with a
        message received after its basis."""

    def merge_device_detail(self, changes: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """Merge top-level keys into devices' detail JSON (e.g. the level-triggered alarms active)."""

    def set_device_states(self, changes: Sequence[tuple[str, str, datetime, dict[str, Any]]]) -> None:
        """Set (device_id, state, at, detail) in order: state (one of DEVICE_STATES; ValueError else),
        state_since = at when the state changes, and `detail` merged (top-level keys) into the stored detail."""

    def add_device_events(self, events: Sequence[DeviceStatus]) -> None:
        """Append device status events (kind = event.source, online, detail = event.data, raw, received_at)."""

    def end_alarms(self, ends: Sequence[AlarmEnd]) -> int:
        """Set `ended_at = end.ts` on stored alarms that have not ended; return the rows changed.

        With a msg_id: the alarm (device_id, msg_id). Without: the device's newest (by ts, then id)
        not-ended alarm of `type` (of any type when type is None). Ends apply in order, so two ends of
        one type end the two newest alarms. An end matching nothing changes nothing (never inserts).
        """

    def add_readings(self, readings: Sequence[Reading]) -> int:
        """Store readings; return how many were inserted.

        A sample already stored (same device_id, metric, ts), or repeated in the call, is skipped (a
        redelivered message is stored once; the first copy wins). Non-finite values (NaN, ±inf) are not
        samples: skipped too.
        """

    def mark_dead_letters(self, ids: Sequence[int], *, at: datetime, result: str, replayed: bool) -> int:
        """Record a replay attempt of letters not replayed yet (replays + 1, replay_result; replayed_at when
        `replayed`); return how many rows changed (0: another replay got there first)."""


class Store(Protocol):
    """Persistence of gridwatch. Thread-safe: each call or unit of work uses its own connection."""

    url: str

    def migrate(self) -> list[str]:
        """Apply pending schema migrations; return the names applied."""

    def close(self) -> None:
        """Release connections."""

    def unit_of_work(self) -> AbstractContextManager[UnitOfWork]:
        """Open a transaction."""

    # --- grid versions and what they place -------------------------------------------------
    def load_district(self, district: District, label: str, *, at: datetime | None = None) -> GridVersion:
        """Store a district as a new current grid version valid from `at` (default now; idempotent by label:
        returns the existing one)."""

    def current_version(self) -> GridVersion | None:
        """Return the current grid version."""

    def create_draft(
        self, label: str, grids: Sequence[Grid], buildings: Sequence[Building], *,
        source: str | None, crs: str | None, actor: str, at: datetime,
    ) -> GridVersion:
        """Store grids (and their buildings) as a new draft version, with an "import" audit row.

        Raises VersionStateError if the label is taken.
        """

    def delete_draft(self, version_id: int, *, actor: str, at: datetime) -> None:
        """Delete a draft (a published version cannot be deleted), with an audit row."""

    def grid_versions(self) -> list[GridVersion]:
        """Every version, newest first."""

    def grid_version(self, version_id: int) -> GridVersion | None:
        """One version by id."""

    def version_at(self, at: datetime) -> GridVersion | None:
        """The published version that was current at time `at` (None before the first one)."""

    def version_token(self) -> int:
        """A cheap value that changes whenever another version becomes current (the current id; 0: none)."""

    def save_report(self, version_id: int, kind: str, body: dict[str, Any]) -> None:
        """Store (replace) a report of a version: "validation", "diff", ..."""

    def report(self, version_id: int, kind: str) -> dict[str, Any] | None:
        """A stored report, or None."""

    def version_audit(self, version_id: int | None = None) -> list[VersionAudit]:
        """Audit rows of one version (or all), oldest first."""

    def grids(self, *, level: int | None = None, version: int | None = None) -> list[Grid]:
        """Grids of a version (default current), optionally of one level, ordered by code."""

    def grid(self, code: str, *, version: int | None = None) -> Grid | None:
        """One grid by code."""

    def buildings(self, *, version: int | None = None) -> list[Building]:
        """Buildings of a version."""

    def devices(self) -> list[Device]:
        """The device registry, ordered by id (format, identity and interval_s included)."""

    def upsert_devices(self, devices: Sequence[Device], *, at: datetime) -> tuple[int, int]:
        """Register devices or update their registration; return (inserted, updated).

        New rows get registered_at = at and state 'unknown'; existing rows keep their state,
        state_since, last_seen, registered_at and detail. The last copy of an id in the call wins.
        An identity already held by another device (stored, or in the call) raises
        store.errors.IdentityConflictError (a ConflictError and a ValueError) naming both ids, and
        nothing is written.
        """

    def device_states(self) -> dict[str, DeviceState]:
        """Every device's state by id."""

    def silent_devices(self, now: datetime) -> list[tuple[str, datetime, float]]:
        """Watched devices overdue at `now`: (device_id, last_seen or registered_at, interval_s), by id.

        Watched: interval_s is set and the state is not 'offline'. Overdue:
        coalesce(last_seen, registered_at) + interval_s seconds < now.
        """

    def readings(self, device_id: str, *, since: datetime, until: datetime, bucket: str = "raw",
                 metric: str | None = None, limit: int = 10_000) -> list[ReadingRow]:
        """A device's readings (of one metric, or all), ordered by metric then time, at most `limit` rows.

        bucket "raw": the samples with since <= ts < until. "1m" / "1h": per metric, every UTC-aligned
        bucket that overlaps [since, until), aggregated over all of its samples (count, min, max, avg;
        unit: the greatest unit text seen, units being constant per metric). ValueError for another bucket.
        """

    def patrollers(self) -> list[Patroller]:
        """Patrollers with assignments and shifts."""

    def set_roster(self, patroller_id: str, *, shifts: Sequence[Shift], exceptions: Sequence[RosterException],
                   backup_grid_codes: Sequence[str]) -> bool:
        """Replace a patroller's weekly shifts, dated exceptions and backup grids; False if no such patroller."""

    def positions(self) -> dict[str, Position]:
        """Last known positions by patroller id."""

    # --- incidents ---------------------------------------------------------------------------
    def incidents(self, query: IncidentQuery) -> list[Incident]:
        """Incidents matching the query, newest first."""

    def sla_candidates(self, now: datetime, *, yellow_at: float, working_prefixes: Sequence[str],
                       limit: int = 100_000) -> list[Incident]:
        """Open incidents whose light may change at `now` (a superset; the SLA sweep decides).

        Yellow or red ones, stopped clocks that still show a light, clocks of working-time types, and
        natural clocks past their yellow point (deadline − (1 − yellow_at) × stage span ≤ now). Green
        clocks far from yellow are skipped, so a sweep costs what changes, not what is open.
        """

    def incident(self, incident_id: str) -> Incident | None:
        """One incident."""

    def history(self, incident_id: str) -> list[HistoryEntry]:
        """An incident's audit log, oldest first."""

    def incidents_mark(self) -> tuple[Any, ...]:
        """A cheap fingerprint of the incidents (the newest updated_at, how many are open): it changes when
        an incident is created or written, so a cache of open incidents (the map wall's) knows it is stale."""

    def incident_record(self, incident_id: str) -> IncidentRecord | None:
        """One incident with its alarms and history, all read in one snapshot (None if unknown): a
        concurrent action shows in all three or in none."""

    # --- maintenance windows -------------------------------------------------------------------
    def add_maintenance_window(self, window: MaintenanceWindow, *, actor: str) -> int:
        """Store a maintenance window; return its id."""

    def maintenance_windows(self, *, active_from: datetime | None = None) -> list[StoredWindow]:
        """Windows that end after `active_from` (all when None), by start."""

    def end_maintenance_window(self, window_id: int, at: datetime) -> bool:
        """End a window early (at `at`); False if there is no such window."""

    def history_for(self, incident_ids: Sequence[str]) -> dict[str, list[HistoryEntry]]:
        """Audit logs of many incidents at once, oldest first per incident."""

    def track(self, since: datetime, until: datetime, *, patroller_id: str | None = None) -> list[tuple[str, datetime, float, float]]:
        """GPS fixes (patroller_id, ts, lon, lat) in [since, until), by patroller then time."""

    def alarms_of(self, incident_id: str) -> list[Alarm]:
        """The alarms joined into an incident, oldest first."""

    def count_alarms(self) -> int:
        """How many alarms are stored."""

    # --- dead letters and outbox -----------------------------------------------------------------
    def dead_letters(self, *, limit: int = 100, reason: str | None = None,
                     pending_only: bool = False) -> list[StoredDeadLetter]:
        """Newest dead letters first (by received_at, then id); of one reason, and/or only pending ones."""

    def dead_letter(self, dead_letter_id: int) -> StoredDeadLetter | None:
        """One dead letter by id."""

    # --- users (design §8) -----------------------------------------------------------------------
    def save_user(self, user: UserRecord, *, at: datetime) -> bool:
        """Create or replace a user; True when it was created."""

    def user(self, username: str) -> UserRecord | None:
        """One user by name."""

    def users(self) -> list[UserRecord]:
        """Every user, by name."""

    def delete_user(self, username: str) -> bool:
        """Remove a user (its tokens stop working); True when it existed."""

    def revoke_token(self, token_id: str, *, username: str, expires_at: datetime, at: datetime) -> None:
        """Record a token as revoked until `expires_at` (idempotent); rows of tokens expired by `at` go."""

    def token_revoked(self, token_id: str) -> bool:
        """Whether the token of that id was revoked."""

    def dead_letter_counts(self) -> dict[str, dict[str, int]]:
        """Per reason: {"pending": n, "replayed": m} (replayed: accepted by a replay)."""

    def pending_notifications(self, *, limit: int = 500) -> list[tuple[int, Notification]]:
        """Outbox rows not yet delivered, oldest first."""

    def mark_notifications(self, ids: Sequence[int], *, delivered: bool, error: str | None = None) -> None:
        """Record a delivery (or a failed attempt: attempts + 1, last error)."""

    def notification_counters(self) -> dict[str, int]:
        """Outbox counters: pending, delivered, failed_attempts."""
