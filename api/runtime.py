"""The runtime: store + grid index + router + intake + (optionally) the MQTT ingest worker and outbox relay.

`serve`, `ingest` and `demo` all build one of these; tests build it from explicit Settings.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from alerts.arrival import ArrivalTracker, GridPresence
from alerts.correlate import CorrelationConfig
from alerts.intake import IncidentIntake, IntakeResult, grid_topic, patroller_topic
from alerts.model import OPEN_STATES, Notification
from alerts.outbox import OutboxRelay
from alerts.regrid import regrid_in
from alerts.routing import Router
from alerts.views import incident_dict
from api.feed import EventFeed
from api.periodic import Periodic
from api.settings import Settings
from api.stream import EventHub
from geo.index import GridIndex
from geo.model import Grid, GridVersion
from ingest.decode import VENDOR_FILTERS, decode_messages
from ingest.model import DeadLetter, HaEntity, Normalized, PatrollerPosition
from ingest.pipeline import Batch, Inbound, LevelFilter, assemble
from ingest.registry import Registry
from store import open_store
from store.ports import IncidentQuery, Store

logger = logging.getLogger(__name__)

DECODE_ERROR = "decode_error"
STORE_REJECTED = "store_rejected"

#: Topic filters the ingest worker subscribes to: gridwatch topics and every vendor adapter's prefix.
INGEST_TOPICS = VENDOR_FILTERS


def merge(total: IntakeResult, part: IntakeResult) -> None:
    """Add one intake result into another."""
    total.alarms_stored += part.alarms_stored
    total.duplicates += part.duplicates
    total.dead_letters += part.dead_letters
    total.positions += part.positions
    total.readings += part.readings
    total.statuses += part.statuses
    total.alarm_ends += part.alarm_ends
    total.suppressed += part.suppressed
    total.came_back.extend(part.came_back)
    total.muted += part.muted
    total.correlated += part.correlated
    total.folded += part.folded
    total.incidents_created.extend(part.incidents_created)
    total.incidents_joined.extend(i for i in part.incidents_joined if i not in total.incidents_joined)
    total.notifications.extend(part.notifications)


class _AlreadyReplayed(Exception):
    """Another replay marked this dead letter first: roll this one back."""


def _mark_replayed(uow: Any, *, letter_id: int, at: datetime, summary: str) -> None:
    if not uow.mark_dead_letters([letter_id], at=at, result=summary, replayed=True):
        raise _AlreadyReplayed(letter_id)


def utcnow() -> datetime:
    """Aware UTC now (the only clock of the runtime; tests may pass their own)."""
    return datetime.now(UTC)


class Runtime:
    """Everything a process of gridwatch holds in memory, wired to its store and broker."""

    def __init__(self, settings: Settings, store: Store, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.settings = settings
        self.store = store
        self.now = clock
        self.worker: Any = None
        self.outbox = OutboxRelay(store, self._publish, retry_seconds=settings.outbox_retry_seconds,
                                  publish_nowait=self._publish_nowait)
        self.stats = {"batches": 0, "messages": 0, "alarms_stored": 0, "duplicates": 0, "dead_letters": 0, "incidents_created": 0,
                      "readings": 0, "statuses": 0, "alarm_ends": 0, "level_repeats": 0}
        from alerts.thresholds import ThresholdWatch, load_rules

        self.levels = LevelFilter()  # level-triggered sensor alarms that are active (rising edges only)
        self.thresholds = ThresholdWatch(load_rules(settings.threshold_rules))
        self.ha_entities: dict[str, list[HaEntity]] = {}  # Home Assistant discovery: state topic → its entities
        self._health = Periodic("device-health", self.health_sweep, "health sweep")
        self._swap = threading.Lock()  # held while a batch is handled and while a new grid version is swapped in
        self._watch_stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self.reloads = 0
        self._watch_owned_by_ingest = False
        self._sla = Periodic("sla-sweep", self.sla_sweep, "SLA sweep")
        from alerts import sla

        self.sla_config = sla.load_sla_config(settings.sla_config) if settings.sla_config else sla.DEFAULT
        sla.activate(self.sla_config)  # one configuration per process: API actions, lights and sweeps agree
        self._cache_lock = threading.Lock()
        self._reload_lock = threading.Lock()
        self._staged: dict[int, Future[tuple[GridIndex, list[Grid]]]] = {}
        self._unstageable: set[int] = set()
        self._stager = ThreadPoolExecutor(max_workers=1, thread_name_prefix="grid-stage")
        self._neighbours: dict[int, dict[str, tuple[str, ...]]] = {}
        self.hub = EventHub()
        self.feed: EventFeed | None = None  # the hub's feed from the broker (start_events); None: local offers
        self.arrivals = ArrivalTracker()
        self.presence = GridPresence()
        self._old_indexes: dict[int, tuple[GridIndex, dict[str, Grid]]] = {}
        self.reload()
        # level-triggered alarms still active (stored with their devices): a restart does not raise them again
        self.levels.load({d: st.detail.get("active_levels") or {} for d, st in store.device_states().items()})

    @classmethod
    def open(cls, settings: Settings) -> Runtime:
        """Open the store named by the settings, migrate it, and build the runtime."""
        store = open_store(settings.database_url, timescale=settings.timescale)
        store.migrate()
        return cls(settings, store)

    def reload(self) -> None:
        """(Re)build the in-memory grid index, registry and router from the store's current version.

        The new index is built aside and swapped in between two ingest batches, so a batch is
        decoded and routed with one version from start to end.
        """
        with self._reload_lock:
            self._reload()

    def check_version(self) -> bool:
        """Reload if another grid version became current since the last load; tell whether it did."""
        with self._reload_lock:  # a second caller waits, then finds the version loaded already
            if self.store.version_token() == self.index.version:
                return False
            self._reload()
            return True

    def _build_index(self, version_id: int) -> tuple[GridIndex, list[Grid]]:
        grids = self.store.grids(version=version_id)
        return GridIndex(grids, self.store.buildings(version=version_id), version=version_id), grids

    def _index_of(self, version: GridVersion | None) -> tuple[GridIndex, list[Grid]]:
        if version is None:
            return GridIndex([], version=0), []
        with self._cache_lock:
            staged = self._staged.pop(version.id, None)
        if staged is not None:  # pre-built while it was a draft (or being built right now): wait for it
            try:
                return staged.result()
            except Exception:  # noqa: BLE001 - build it here instead, and raise from here if it fails
                logger.info("staged index of version %s failed; building it now", version.id)
        return self._build_index(version.id)

    def _reload(self) -> None:
        for _ in range(5):  # the version, its grids, devices and patrollers must be one consistent snapshot
            version = self.store.current_version()
            index, grids = self._index_of(version)
            devices = {d.id: d for d in self.store.devices()}
            patrollers = self.store.patrollers()
            positions = self.store.positions()
            if self.store.version_token() == index.version:
                break
            logger.info("grid version changed while loading version %s; loading again", index.version)
        router = Router(index, patrollers, self.settings.timezone, neighbours=self._neighbours.get(index.version))
        if index.version not in self._neighbours:  # grid adjacency: seconds for 100k grids, so not on the swap path
            self._stager.submit(self._compute_neighbours, index.version, grids, router)
        st = self.settings
        intake = IncidentIntake(
            router,
            devices,
            cooldown=timedelta(seconds=st.cooldown_seconds),
            auto_dispatch=st.auto_dispatch,
            config=CorrelationConfig(
                cooldown=timedelta(seconds=st.cooldown_seconds), radius_m=st.correlation_radius_m,
                window_s=st.correlation_window_s, storm_window_s=st.storm_window_s,
                storm_max_incidents=st.storm_max_incidents or None, storm_notify_interval_s=st.storm_notify_interval_s,
            ),
            sla_config=self.sla_config,
        )
        intake.remember_positions(positions)
        intake.set_maintenance([w.window for w in self.store.maintenance_windows(active_from=self.now())])
        with self._swap:
            old = getattr(self, "intake", None)
            previous = self.index.version if old is not None else None
            if old is not None:  # positions this process accepted while the index was being built
                for pid, pos in old.positions.items():
                    mine = intake.positions.get(pid)
                    if mine is None or getattr(pos, "ts", None) and getattr(mine, "ts", None) and pos.ts > mine.ts:
                        intake.positions[pid] = pos
            self.index, self.grid_by_code, self.devices = index, {g.code: g for g in grids}, devices
            self.registry = Registry(devices.values())
            self.patrollers, self.router, self.intake = patrollers, router, intake
            self.reloads += 1
        logger.info("grid index: version %s, %d grids, %d devices, %d patrollers", index.version, len(grids), len(devices), len(patrollers))
        if previous is not None and previous != index.version and version is not None:
            self._catch_up(version)

    def _catch_up(self, version: GridVersion) -> int:
        """Re-route the open incidents opened after `version` was published but routed with an older index.

        Between a publish and each process's swap (up to a poll interval), alarms are still routed
        with the old grids; those incidents never belonged to the old version, so they move to the
        grid holding their point now, whatever the publish policy (which is about older incidents).
        """
        since = version.valid_from
        if since is None:
            return 0
        stale = [i for i in self.store.incidents(IncidentQuery(states=tuple(OPEN_STATES), since=since, limit=100_000))
                 if i.created_at >= since and i.route.grid_version != version.id]
        moved = 0
        for incident in stale:
            try:
                with self.store.unit_of_work() as uow:
                    if self.store.version_token() != version.id:
                        break  # yet another version was published: its own swap catches up
                    # unless another process caught it up already
                    outcome = regrid_in(uow, incident.id, self.router, now=self.now(), actor="system:regrid",
                                        positions=self.intake.positions, unless_version=version.id)
                    moved += outcome is not None
            except Exception:
                logger.warning("catching up incident %s to grid version %s failed", incident.id, version.id, exc_info=True)
        if moved:
            logger.info("grid version %s: %d incident(s) routed with the old grids during the swap moved", version.id, moved)
        return moved

    def version_index(self, version_id: int) -> tuple[GridIndex, dict[str, Grid]]:
        """The index and grids of another (older) version, for as-of questions; a few are kept cached."""
        with self._cache_lock:
            cached = self._old_indexes.pop(version_id, None)
        if cached is None:
            grids = self.store.grids(version=version_id)
            cached = (GridIndex(grids, self.store.buildings(version=version_id), version=version_id), {g.code: g for g in grids})
        with self._cache_lock:
            self._old_indexes[version_id] = cached  # most recently used last
            while len(self._old_indexes) > 4:
                self._old_indexes.pop(next(iter(self._old_indexes)))
        return cached

    def watch_versions(self, interval: float | None = None) -> None:
        """Poll the store's version counter in a thread and hot-swap the index when a version is published."""
        if self._watcher is not None:
            return
        every = self.settings.version_poll_seconds if interval is None else interval
        self._watch_stop.clear()

        def loop() -> None:
            while not self._watch_stop.wait(every):
                try:
                    self.check_version()
                    self.refresh_maintenance()
                    if self.settings.stage_drafts:
                        self.stage_newest_draft()
                except Exception:
                    logger.warning("checking the current grid version failed; trying again in %.1f s", every, exc_info=True)

        self._watcher = threading.Thread(target=loop, name="grid-version-watch", daemon=True)
        self._watcher.start()

    def _compute_neighbours(self, version: int, grids: list[Grid], router: Router) -> None:
        from geo.adjacency import grid_neighbours

        try:
            found = grid_neighbours(grids)
        except Exception:
            logger.warning("grid adjacency of version %s failed; no neighbour routing", version, exc_info=True)
            return
        self._neighbours = {version: found}
        router.neighbours = found

    # --- patroller geofences (design §6b) --------------------------------------------------------
    def track_positions(self, positions: Sequence[PatrollerPosition]) -> int:
        """Arrivals at assigned incidents (dwell + hysteresis) and grid exit/enter events; returns arrivals.

        Runs after the batch that stored the positions committed; each arrival is its own transaction.
        """
        if not positions:
            return 0
        from alerts import workflow
        from alerts.model import IncidentState as S

        notes: list[Notification] = []
        for p in sorted(positions, key=lambda p: p.ts):
            hit = self.index.locate(p.lon, p.lat)
            for event, code in self.presence.update(p.patroller_id, hit.l3 if hit else None, p.ts):
                g = self.grid_by_code.get(code)
                l2 = self.grid_by_code.get(g.parent_code) if g is not None and g.parent_code else None
                route = {"l1": l2.parent_code if l2 is not None else None, "l2": l2.code if l2 is not None else None, "l3": code}
                notes.append(Notification(f"gridwatch/grids/{code}/patrollers",
                                          {"event": event, "patroller_id": p.patroller_id, "grid": code, "route": route,
                                           "ts": p.ts.isoformat()}))
        ids = tuple(sorted({p.patroller_id for p in positions}))
        open_assigned = self.store.incidents(IncidentQuery(states=(S.DISPATCHED, S.ACKNOWLEDGED), assignees=ids, limit=10_000))
        self.arrivals.sync(open_assigned)
        by_patroller: dict[str, list[Any]] = {}
        for incident in open_assigned:
            by_patroller.setdefault(incident.assignee or "", []).append(incident)
        arrived = 0
        for p in sorted(positions, key=lambda p: p.ts):
            # a fix taken before the dispatch cannot be an arrival at it (phones may send old fixes)
            eligible = [i for i in by_patroller.get(p.patroller_id, []) if i.dispatched_at is None or p.ts >= i.dispatched_at]
            for a in self.arrivals.observe_arrivals(p.patroller_id, p.lon, p.lat, p.ts, p.acc, eligible):
                with self.store.unit_of_work() as uow:
                    incident = uow.get_incident(a.incident_id, for_update=True)
                    if incident is None or incident.arrived_at is not None or incident.assignee != a.patroller_id:
                        continue
                    at = max(a.confirmed_at, incident.updated_at)  # audit rows never go back in time
                    actor = f"patroller:{a.patroller_id}"
                    note = f"geofence: inside {self.arrivals.radius_m:g} m since {a.entered_at.isoformat()}"
                    rows = []
                    if incident.state is S.DISPATCHED:
                        rows.append(workflow.apply(incident, "acknowledge", actor=actor, at=at, note=note, sla=self.sla_config))
                    if incident.state is not S.ACKNOWLEDGED:
                        continue
                    rows.append(workflow.apply(incident, "arrive", actor=actor, at=at, note=note, sla=self.sla_config))
                    incident.arrived_at = max(a.entered_at, incident.dispatched_at or a.entered_at)
                    uow.save_incidents([incident])
                    uow.add_history(rows)
                    body = incident_dict(incident, self.now(), event="arrive")
                    arrival_notes = [Notification(patroller_topic(a.patroller_id), body)]
                    if incident.route.l3:
                        arrival_notes.append(Notification(grid_topic(incident.route.l3), body))
                    note_ids = uow.add_notifications(arrival_notes)
                self._relay(list(zip(note_ids, arrival_notes, strict=True)))
                arrived += 1
        if notes:
            with self.store.unit_of_work() as uow:
                note_ids = uow.add_notifications(notes)
            self._relay(list(zip(note_ids, notes, strict=True)))
        return arrived

    def _relay(self, rows: list[tuple[int, Notification]]) -> None:
        """Hand committed notifications to the outbox relay (the sweep picks them up otherwise)."""
        if rows and self.worker is not None:
            self.outbox.submit(rows)

    def refresh_patrollers(self) -> None:
        """Reload patrollers (assignments, rosters) and route with them, keeping the grid index."""
        patrollers = self.store.patrollers()
        with self._swap:
            router = Router(self.index, patrollers, self.settings.timezone, neighbours=self.router.neighbours,
                            neighbour_radius_m=self.router.neighbour_radius_m)
            self.patrollers, self.router = patrollers, router
            self.intake.router = router

    def refresh_maintenance(self) -> None:
        """Hand the maintenance windows that are not over to the intake (called on reload and by the watch)."""
        windows = [w.window for w in self.store.maintenance_windows(active_from=self.now())]
        self.intake.set_maintenance(windows)

    # --- SLA clocks: lights, reminders, escalation (design §6) ----------------------------------
    def sla_sweep(self) -> int:
        """Recompute lights of open incidents; remind on red, escalate and supervise when red lasts.

        Each change is re-checked and written in its own transaction on the locked row, so several
        processes sweeping at once neither duplicate a reminder nor lose an update. Returns how many
        incidents changed.
        """
        from alerts.escalation import sweep

        now = self.now()
        candidates = self.store.sla_candidates(now, yellow_at=self.sla_config.yellow_at,
                                               working_prefixes=self.sla_config.working_prefixes())
        changed = 0
        for effect in sweep(candidates, now, self.sla_config):
            if not effect.changed:
                continue
            with self.store.unit_of_work() as uow:
                current = uow.get_incident(effect.incident.id, for_update=True)
                if current is None:
                    continue
                (fresh,) = sweep([current], now, self.sla_config) or (None,)
                if fresh is None or not fresh.changed:
                    continue
                uow.save_incidents([fresh.incident])
                uow.add_history(fresh.history)
                ids = uow.add_notifications(fresh.notifications)
            changed += 1
            self._relay(list(zip(ids, fresh.notifications, strict=True)))
        return changed

    def run_sla(self, interval: float | None = None) -> None:
        """Sweep SLA clocks in a thread every `interval` seconds (Settings.sla_sweep_seconds)."""
        self._sla.start(self.settings.sla_sweep_seconds if interval is None else interval)

    def stop_sla(self) -> None:
        """Stop the SLA sweep thread."""
        self._sla.stop()

    # --- device health (design §1: devices and their state; issue 5) -----------------------------
    def health_sweep(self) -> int:
        """Raise `device.offline` for devices silent longer than their interval; return how many."""
        from alerts.health import offline_alarm
        from ingest.model import DeviceStatus

        if not self.registry.watched:  # no device has an interval: nothing can fall silent
            return 0
        now = self.now()
        silent = [(d, since, every) for d, since, every in self.store.silent_devices(now) if d in self.devices]
        if not silent:
            return 0
        with self._swap, self.store.unit_of_work() as uow:
            uow.lock_devices(d for d, _, _ in silent)
            # only those still silent now, under the row lock: a heartbeat committed meanwhile wins. The
            # basis is the last sign of life: any message received after it brings the device back
            went = set(uow.mark_offline([(d, since, {"reason": "silent", "last_seen": since.isoformat(),
                                                     "detected_at": now.isoformat()}, since)
                                         for d, since, _ in silent]))
            gone = [(d, since, every) for d, since, every in silent if d in went]
            if not gone:
                return 0
            uow.add_device_events([DeviceStatus(d, now, False, "watchdog", now, b"", {"last_seen": since.isoformat()})
                                   for d, since, _ in gone])
            alarms = [offline_alarm(d, since=since, now=now, reason="silent", interval_s=every) for d, since, every in gone]
            result = self.intake.accept(uow, alarms=alarms, now=now)
        for d, _, _ in gone:
            self._offer_device(d, "offline", "watchdog", now)
        self._relay(result.notifications)
        logger.info("health: %d device(s) offline: %s", len(gone), ", ".join(d for d, _, _ in gone[:10]))
        return len(gone)

    def _clear_offline_in(self, uow: Any, device_ids: Sequence[str], now: datetime) -> list[tuple[int, Notification]]:
        """Close the open `device.offline` incidents of devices that came back (system action `clear`), in `uow`."""
        from contextlib import nullcontext

        from alerts.actions import perform
        from alerts.errors import AlertsError
        from alerts.health import HEALTH_ACTOR, OFFLINE, clear_reason

        keys = [(d, OFFLINE) for d in sorted(set(device_ids))]
        uow.lock_keys(keys)
        found = uow.open_incidents_for(keys, datetime(1970, 1, 1, tzinfo=UTC))
        notes: list[tuple[int, Notification]] = []
        for (device_id, _), incident in sorted(found.items()):
            try:
                outcome = perform(lambda: nullcontext(uow), incident.id, "clear", actor=HEALTH_ACTOR, now=now,
                                  params={"reason": clear_reason(device_id, now)}, sla=self.sla_config)
            except AlertsError:  # in a state clear does not apply to (being resolved / checked): left to people
                logger.info("health: incident %s of device %s left open (%s)", incident.id, device_id, incident.state)
                continue
            notes.extend(outcome.notifications)
        return notes

    def _offer_device(self, device_id: str, state: str, source: str, ts: datetime) -> None:
        """A device state change on the live stream (`device` events)."""
        import json

        body: dict[str, Any] = {"event": "device", "device_id": device_id, "state": state, "source": source, "ts": ts.isoformat()}
        device = self.devices.get(device_id)
        if device is not None:  # its grid chain, so that a street's or a community's stream gets it
            chain, code = {}, device.grid_code
            while code is not None and (grid := self.grid_by_code.get(code)) is not None and len(chain) < 3:
                chain[f"l{grid.level}"] = code
                code = grid.parent_code
            body["grid_code"], body["route"] = device.grid_code, chain
        topic, payload = f"gridwatch/grids/{body.get('grid_code') or 'unplaced'}/devices", json.dumps(body).encode()
        published = False  # a live event, not a notification: no outbox
        try:
            if self.worker is not None:
                self.worker.publish(topic, payload, qos=1, timeout=0)  # MqttPublishError when the window is full
                published = True
            elif self.feed is not None:  # serve --no-ingest: the feed's own connection
                published = self.feed.publish(topic, payload)
        except Exception as exc:  # noqa: BLE001 - the state is stored; the live event goes to this process's streams only
            logger.warning("device %s: state event not published (%s)", device_id, exc)
        if not published or self.feed is None:  # the broker will not bring it back: offer it here
            self._offer_here(topic, payload)

    def run_health(self, interval: float | None = None) -> None:
        """Run the health sweep in a thread every `interval` seconds (Settings.health_sweep_seconds)."""
        self._health.start(self.settings.health_sweep_seconds if interval is None else interval)

    def stop_health(self) -> None:
        """Stop the health sweep thread."""
        self._health.stop()

    def refresh_devices(self) -> None:
        """Reload the device registry (after an import) keeping the grid index."""
        devices = {d.id: d for d in self.store.devices()}
        with self._swap:
            self.devices = devices
            self.registry = Registry(devices.values())
            self.intake.devices = devices
            self.intake.forget_places()

    # --- dead letters ---------------------------------------------------------------------------
    def replay_dead_letters(self, ids: Sequence[int]) -> list[dict[str, Any]]:
        """Decode stored dead letters again with today's adapters and registry; store what now passes.

        Each letter is replayed in its own transaction: accepted → its alarms, readings, … are stored
        (exactly once: the store dedups) and the letter is marked replayed; still refused → it stays
        pending, with the new reason recorded as its replay result.
        """
        out: list[dict[str, Any]] = []
        for letter_id in ids:
            row = self.store.dead_letter(letter_id)
            if row is None:
                out.append({"id": letter_id, "status": "not_found"})
                continue
            dl = row.dead_letter
            if row.replayed_at is not None:
                out.append({"id": letter_id, "status": "already_replayed", "at": row.replayed_at.isoformat()})
                continue
            now = self.now()
            one = Inbound(dl.topic, dl.payload, dl.received_at, self._decode(dl))
            with self._swap:
                batch = self._assemble([one], now)
                if batch.dead_letters:
                    again = batch.dead_letters[0]
                    with self.store.unit_of_work() as uow:
                        uow.mark_dead_letters([letter_id], at=now, result=f"{again.reason}: {again.detail}", replayed=False)
                    out.append({"id": letter_id, "status": "refused", "reason": again.reason, "detail": again.detail})
                    continue
                summary = (f"accepted: {len(batch.alarms)} alarm(s), {len(batch.readings)} reading(s), "
                           f"{len(batch.positions)} position(s), {len(batch.statuses)} status event(s)")
                # marked in the same transaction as what the replay stores: replayed exactly once
                mark = functools.partial(_mark_replayed, letter_id=letter_id, at=now, summary=summary)
                try:
                    result = self._commit(batch, now, also=mark)
                except _AlreadyReplayed:
                    out.append({"id": letter_id, "status": "already_replayed"})
                    continue
                batch.commit()
                self._after_commit(batch)
                self._after_batch(batch, result, 1)
            out.append({"id": letter_id, "status": "accepted", "result": summary,
                        "incidents_created": result.incidents_created, "incidents_joined": result.incidents_joined})
        return out

    def stage_newest_draft(self) -> int | None:
        """Start building the newest draft's index in the background, so that publishing it swaps at once.

        A planner's draft sits for minutes (validation, diff, review) before it is published; a
        100,000-grid index takes seconds to build. Only the newest draft is kept staged.
        """
        drafts = [v.id for v in self.store.grid_versions() if v.status == "draft"]
        newest = drafts[0] if drafts else None
        with self._cache_lock:
            for vid in [v for v in self._staged if v != newest]:
                self._staged.pop(vid, None)
            if newest is None or newest in self._staged or newest in self._unstageable:
                return newest
            future = self._stager.submit(self._build_index, newest)
            self._staged[newest] = future

        def done(f: Future[tuple[GridIndex, list[Grid]]]) -> None:
            if f.exception() is not None:  # e.g. invalid geometry: validation blocks publishing it anyway
                with self._cache_lock:
                    self._unstageable.add(newest)
                    self._staged.pop(newest, None)
                logger.info("draft grid version %s not staged: %s", newest, f.exception())
            else:
                logger.info("draft grid version %s staged: its index is ready for a publish", newest)

        future.add_done_callback(done)
        return newest

    def stop_watching(self) -> None:
        """Stop the version watch thread (and any draft staging)."""
        self._watch_stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=10)
        self._watcher = None
        self._staged.clear()

    # --- ingest ------------------------------------------------------------------------------
    def handle_messages(self, messages: Sequence[Any]) -> IntakeResult:
        """Decode a batch of MQTT messages, store what they produce in one transaction, then notify.

        Called by the ingest worker before it acks the batch: if this raises, nothing was committed
        and the messages are retried (at-least-once + idempotent storage = exactly once).
        """
        with self._swap:
            return self._handle(messages)

    def _handle(self, messages: Sequence[Any]) -> IntakeResult:
        return self._handle_inbound([Inbound(m.topic, m.payload, m.received_at, self._decode(m)) for m in messages])

    def handle_inbound(self, inbound: Sequence[Inbound]) -> IntakeResult:
        """Store messages decoded elsewhere (the HTTP ingest routes) exactly as an MQTT batch is stored."""
        with self._swap:
            return self._handle_inbound(inbound)

    def _handle_inbound(self, inbound: Sequence[Inbound]) -> IntakeResult:
        now = self.now()
        batch = self._assemble(inbound, now)
        try:
            result = self._commit(batch, now)
        except Exception:
            if len(inbound) == 1 and not batch.alarms and not batch.readings and batch.dead_letters:
                raise  # even a dead letter cannot be written: the store is down; retry the batch later
            logger.warning("batch of %d messages failed; committing them one by one to isolate the cause", len(inbound), exc_info=True)
            result = IntakeResult()
            for one in inbound:
                merge(result, self._commit_isolated(one))
        else:
            batch.commit()
            self._after_commit(batch)
        self._after_batch(batch, result, len(inbound))
        return result

    def _assemble(self, inbound: Sequence[Inbound], now: datetime) -> Batch:
        return assemble(inbound, registry=self.registry, inside=self.index.contains, levels=self.levels,
                        thresholds=self.thresholds, now=now)

    def _after_commit(self, batch: Batch) -> None:
        for entity in batch.entities:  # several entities may share one state topic (Zigbee2MQTT does)
            same = [e for e in self.ha_entities.get(entity.state_topic, []) if e.unique_id != entity.unique_id]
            self.ha_entities[entity.state_topic] = [*same, entity]

    def _after_batch(self, batch: Batch, result: IntakeResult, n: int) -> None:
        if result.positions:
            try:
                self.track_positions(batch.positions)
            except Exception:
                logger.warning("geofence tracking of a batch failed", exc_info=True)
        if result.notifications:
            if self.worker is not None:  # committed: publish at once, on this thread (the relay marks them delivered)
                self.outbox.publish_now(result.notifications)
            else:
                self.outbox.submit(result.notifications)
        for device_id in result.came_back:
            self._offer_device(device_id, "online", "back", self.now())
        for status in batch.statuses + batch.patroller_statuses:
            self._offer_device(status.device_id, "online" if status.online else "offline", status.source, status.ts)
        s = self.stats
        s["batches"] += 1
        s["messages"] += n
        s["alarms_stored"] += result.alarms_stored
        s["duplicates"] += result.duplicates
        s["dead_letters"] += result.dead_letters
        s["incidents_created"] += len(result.incidents_created)
        s["readings"] += result.readings
        s["statuses"] += result.statuses
        s["alarm_ends"] += result.alarm_ends
        s["level_repeats"] += result.suppressed

    def _decode(self, msg: Any) -> list[Normalized] | DeadLetter:
        try:
            return decode_messages(msg.topic, msg.payload, msg.received_at, ha_entities=self.ha_entities,
                                   max_bytes=self.settings.max_payload_bytes)
        except Exception as exc:
            logger.exception("decoding a message on %s failed", msg.topic)
            return DeadLetter(msg.topic, msg.payload, DECODE_ERROR, f"{type(exc).__name__}: {exc}"[:500], msg.received_at)

    def _commit(self, batch: Batch, now: datetime, *, also: Callable[[Any], None] | None = None) -> IntakeResult:
        """Write one assembled batch in one transaction: device health, alarms → incidents, readings, statuses.

        Device rows are locked first (touch, offline), then the intake's keys and incidents: every
        writer takes them in that order. Offline alarms are raised only for devices this transaction
        set offline (a redelivered will, or a sweep that raced a heartbeat, raises nothing), and a
        device that came back has its `device.offline` incidents cleared in the same transaction.
        """
        from alerts.health import offline_alarm

        alarms = list(batch.alarms)
        notes: list[tuple[int, Notification]] = []
        with self.store.unit_of_work() as uow:
            extra = {st.device_id for st in batch.offline} | set(batch.level_state)
            if not extra <= batch.seen.keys():  # else touch_devices locks them all, in id order, in its one statement
                uow.lock_devices({*batch.seen, *extra})
            came_back = uow.touch_devices(batch.seen) if batch.seen else []
            if batch.offline:  # an explicit offline (MQTT will, availability, status): raise it now
                # as of our receive time (the device's clock may be off); a will received before the
                # device's last sign of life (late, redelivered, replayed) changes nothing
                went = set(uow.mark_offline([(st.device_id, st.received_at, {"reason": st.source, "device_ts": st.ts.isoformat()}, None)
                                             for st in batch.offline]))
                alarms.extend(offline_alarm(st.device_id, since=st.received_at, now=now, reason=f"{st.source}: offline",
                                            interval_s=None, raw=st.raw) for st in batch.offline if st.device_id in went)
            result = self.intake.accept(uow, alarms=alarms, positions=batch.positions, dead_letters=batch.dead_letters, now=now)
            if batch.readings:
                result.readings = uow.add_readings(batch.readings)
            if batch.ends:
                result.alarm_ends = uow.end_alarms(batch.ends)
            events = batch.statuses + batch.patroller_statuses
            if events:
                uow.add_device_events(events)
                result.statuses = len(events)
            if batch.level_state:
                uow.merge_device_detail([(d, {"active_levels": state}) for d, state in sorted(batch.level_state.items())])
            if came_back:
                result.came_back = came_back
                notes = self._clear_offline_in(uow, came_back, now)
            if also is not None:
                also(uow)
        result.suppressed = batch.suppressed
        result.notifications.extend(notes)
        return result

    def _commit_isolated(self, one: Inbound) -> IntakeResult:
        """Commit one message; if the store rejects it twice, store it as a dead letter instead.

        When the store is down the dead letter cannot be written either: that raises, and the worker
        retries the whole (unacked) batch later — nothing is dead-lettered because of an outage.
        """
        now = self.now()
        for attempt in (1, 2):
            batch = self._assemble([one], now)
            try:
                result = self._commit(batch, now)
            except Exception as exc:  # noqa: BLE001 - decided below
                error = exc
                logger.warning("message on %s rejected by the store (attempt %d): %s", one.topic, attempt, exc)
                continue
            batch.commit()
            self._after_commit(batch)
            return result
        detail = f"{type(error).__name__}: {error}"[:500]
        return self._commit(Batch(dead_letters=[DeadLetter(one.topic, one.payload, STORE_REJECTED, detail, one.received_at)]), now)

    def start_ingest(self, mqtt_url: str | None = None) -> None:
        """Connect the MQTT worker, subscribe to the ingest topics and start the outbox relay."""
        from ingest.client import MqttWorker

        url = mqtt_url or self.settings.mqtt_url
        if url is None:
            raise ValueError("no broker: set GRIDWATCH_MQTT_URL (or run `gridwatch demo` for the embedded broker)")
        group = self.settings.mqtt_shared_group
        topics = [f"$share/{group}/{t}" if group else t for t in INGEST_TOPICS]
        self.worker = MqttWorker(
            url,
            client_id=self.settings.mqtt_client_id,
            topics=topics,
            handler=self.handle_messages,
            protocol=self.settings.mqtt_protocol,
            batch_size=self.settings.batch_size,
            max_wait=self.settings.batch_wait_ms / 1000,
        )
        self.worker.start()
        self.outbox.start()
        self.outbox.sweep()
        self._watch_owned_by_ingest = self._watcher is None
        self.watch_versions()
        self.run_sla()
        self.run_health()

    def _publish(self, topic: str, payload: bytes) -> None:
        if self.worker is None:
            raise RuntimeError("no MQTT connection: notification stays in the outbox")
        self.worker.publish(topic, payload, qos=1)
        self._offer(topic, payload)

    def start_events(self, mqtt_url: str | None = None) -> EventFeed:
        """Feed the live stream from the broker (api.feed): every process's events, not just this one's.
        From then on this process offers nothing locally (its own events come back the same way)."""
        url = mqtt_url or self.settings.mqtt_url
        if url is None:
            raise ValueError("no broker: set GRIDWATCH_MQTT_URL (or run `gridwatch demo` for the embedded broker)")
        if self.feed is None:
            feed = EventFeed(url, lambda topic, payload: self.hub.publish(topic, payload), lambda why: self.hub.gap(why),
                             client_id=self.settings.mqtt_client_id, protocol=self.settings.mqtt_protocol)
            feed.start()
            if feed.refused:  # it would hear nothing: keep offering this process's own events instead
                logger.error("live stream: the broker refused the event topics; streams carry this process's events only")
                feed.stop()
                return feed
            self.feed = feed
        return self.feed

    def stop_events(self) -> None:
        """Stop the broker feed of the live stream."""
        if self.feed is not None:
            self.feed.stop()
            self.feed = None

    def _offer(self, topic: str, payload: bytes) -> None:
        """Hand a published notification to the live stream (never fails the publish); with a broker feed
        running, the feed does (the broker sends it back)."""
        if self.feed is None:
            self._offer_here(topic, payload)

    def _offer_here(self, topic: str, payload: bytes) -> None:
        try:
            self.hub.publish(topic, payload)
        except Exception:
            logger.warning("stream: could not offer an event of %s", topic, exc_info=True)

    def _publish_nowait(self, topic: str, payload: bytes) -> None:
        """Publish without waiting for room in the publish window (MqttPublishError when there is none)."""
        if self.worker is None:
            raise RuntimeError("no MQTT connection: notification stays in the outbox")
        self.worker.publish(topic, payload, qos=1, timeout=0)
        self._offer(topic, payload)

    def ingest_status(self) -> dict[str, Any]:
        """Counters of the ingest path, for /healthz."""
        return {"running": self.worker is not None, **self.stats}

    def stop_ingest(self) -> None:
        """Stop the MQTT worker (draining the batch in progress) and the outbox relay."""
        if self.worker is not None:
            self.worker.stop()
        self.outbox.stop()
        self.worker = None
        if self._watch_owned_by_ingest:
            self.stop_watching()
            self._watch_owned_by_ingest = False
        self.stop_sla()
        self.stop_health()

    def close(self) -> None:
        """Stop ingest, the SLA clocks and the version watch, and close the store."""
        self.stop_sla()
        self.stop_watching()
        self._stager.shutdown(wait=False, cancel_futures=True)
        self.stop_events()
        self.stop_ingest()
        self.store.close()
