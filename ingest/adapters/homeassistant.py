"""Home Assistant MQTT discovery: config topics → HaEntity; state/availability topics → alarms, Readings, status.

Discovery config, `homeassistant/<component>/[<node_id>/]<object_id>/config` (retained JSON):
```json
{"~": "zigbee2mqtt/kitchen_smoke", "stat_t": "~", "uniq_id": "0x00158d0001a2b3c4_smoke_zigbee2mqtt",
 "dev_cla": "smoke", "pl_on": true, "pl_off": false, "val_tpl": "{{ value_json.smoke }}",
 "avty": [{"topic": "zigbee2mqtt/bridge/state", "value_template": "{{ value_json.state }}"}]}
```
→ `[HaEntity(...)]`. Long names and Home Assistant's abbreviations are both read (`state_topic`/`stat_t`,
`unique_id`/`uniq_id`, `device_class`/`dev_cla`, `payload_on`/`pl_on`, `payload_off`/`pl_off`,
`unit_of_measurement`/`unit_of_meas`, `value_template`/`val_tpl`, `availability_topic`/`avty_t`,
`availability`/`avty` (its first entry's `topic`/`t`)); `~` at the start or end of a `*_topic` value is
replaced by the `~` value. Non-string payload_on/off are kept as Home Assistant's `cv.string` keeps them
(`true` → "True"), which is also how a template renders a JSON boolean, so they compare equal.
Device discovery (`homeassistant/device/<object_id>/config` with `cmps`/`components`, each with
`p`/`platform`) gives one HaEntity per component, the device-level options shared by all of them.
An empty payload removes the entity: `[]` (the caller drops what it stored for that config topic). A
config without a state topic is `[]` too (nothing to watch). Without `unique_id` the identity is
`<node_id>/<object_id>` (or `<object_id>`).

State, `decode_state(topic, payload, received_at, entities)` where `entities` maps a state topic to its
HaEntity, or to a sequence of them (Zigbee2MQTT, Tasmota, ESPHome publish one JSON state topic for all
the entities of a device):
- the state is the payload, or with `value_template` of the simple form `{{ value_json.<key> }}` (also
  `value_json['<key>']`) that key of the JSON payload, rendered as Jinja would (`True`, `21.5`);
  any other template is not evaluated: the raw payload is used, with a warning;
- `binary_sensor`: state == payload_on → level Alarm, == payload_off → AlarmEnd, by device class:
  smoke → smoke.alarm; door, window, opening, garage_door → sensor.contact_open; motion, occupancy,
  presence → sensor.occupancy; moisture → sensor.water_leak; tamper → device.tamper; battery →
  device.low_battery; problem → other.homeassistant_problem; connectivity → DeviceStatus(online);
  any other class → other.homeassistant_<class> with a warning;
- `sensor`: a numeric state → Reading(metric = device class, else the template's key, else the cleaned
  unique_id; unit = unit_of_measurement); a non-numeric state (`unknown`, `unavailable`) is nothing;
- other components: nothing.
The identity is `homeassistant:<unique_id>`; alarms are level-triggered with msg_id f"{type}@{ts}" where ts
is the receive time (Home Assistant states carry no time).
An availability topic (`online`/`offline`, or JSON `{"state": …}` as Zigbee2MQTT's bridge sends) →
DeviceStatus(source="availability") for every entity that names it. A topic that is neither a known state
nor availability topic → dead letter `unknown_entity`.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from ingest.adapters.common import (
    INVALID_JSON,
    SCHEMA,
    UNHANDLED_TOPIC,
    dead_letter,
    load_json_object,
    payload_text,
    require_aware,
)
from ingest.adapters.shared import level_alarm, level_end, received, short
from ingest.adapters.timestamps import VendorTs
from ingest.model import DeadLetter, DeviceStatus, HaEntity, Normalized, Reading

logger = logging.getLogger(__name__)

DISCOVERY_PREFIX = "homeassistant"
FORMAT = "homeassistant"
UNKNOWN_ENTITY = "unknown_entity"

BINARY_SENSOR_TYPES: Mapping[str, str] = {
    "smoke": "smoke.alarm",
    "door": "sensor.contact_open", "window": "sensor.contact_open", "opening": "sensor.contact_open",
    "garage_door": "sensor.contact_open",
    "motion": "sensor.occupancy", "occupancy": "sensor.occupancy", "presence": "sensor.occupancy",
    "moisture": "sensor.water_leak",
    "tamper": "device.tamper",
    "battery": "device.low_battery",
    "problem": "other.homeassistant_problem",
}
"""binary_sensor device class → alarm type (`problem` is documented as an other.* type: no warning)."""

_ABBREVIATIONS: Mapping[str, str] = {
    "stat_t": "state_topic", "uniq_id": "unique_id", "dev_cla": "device_class", "pl_on": "payload_on",
    "pl_off": "payload_off", "unit_of_meas": "unit_of_measurement", "val_tpl": "value_template",
    "avty_t": "availability_topic", "avty": "availability", "cmps": "components", "p": "platform",
    "dev": "device", "o": "origin",
}
_DEVICE_LEVEL = frozenset({"device", "origin", "components"})
_SEGMENT = re.compile(r"[a-zA-Z0-9_-]+")
_SIMPLE_TEMPLATE = re.compile(
    r"""\{\{\s*value_json(?:\.([A-Za-z_][A-Za-z0-9_]*)|\[\s*(['"])([^'"]+)\2\s*\])\s*\}\}"""
)
_METRIC_CHARS = re.compile(r"[^a-z0-9_.]+")
_NUMBER = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]{1,4})?")


# -- discovery config -------------------------------------------------------------------------

def parse_config_topic(topic: str, prefix: str = DISCOVERY_PREFIX) -> tuple[str, str | None, str] | None:
    """(component, node_id, object_id) of a discovery config topic; None if it is not one."""
    levels = topic.split("/")
    if len(levels) not in (4, 5) or levels[0] != prefix or levels[-1] != "config":
        return None
    if not all(_SEGMENT.fullmatch(level) for level in levels[1:-1]):
        return None
    node_id = levels[2] if len(levels) == 5 else None
    return levels[1], node_id, levels[-2]


def _expand(config: Mapping[str, Any]) -> dict[str, Any]:
    out = {_ABBREVIATIONS.get(key, key): value for key, value in config.items()}
    base = out.pop("~", None)
    if isinstance(base, str):
        for key, value in out.items():
            if key.endswith("topic") and isinstance(value, str):
                out[key] = _tilde(value, base)
        availability = out.get("availability")
        if isinstance(availability, list):
            out["availability"] = [
                {k: _tilde(v, base) if k in ("topic", "t") and isinstance(v, str) else v for k, v in entry.items()}
                if isinstance(entry, dict) else entry
                for entry in availability
            ]
    return out


def _tilde(value: str, base: str) -> str:
    if value.startswith("~"):
        value = base + value[1:]
    if value.endswith("~"):
        value = value[:-1] + base
    return value


def _text(value: Any) -> str | None:
    """A config value as Home Assistant's cv.string would keep it (numbers and booleans → str)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return str(value)
    return None


def _entity(
    component: str, config: Mapping[str, Any], fallback_id: str
) -> HaEntity | str | None:
    """An HaEntity, an error detail (str), or None when there is nothing to watch."""
    state_topic = config.get("state_topic")
    if state_topic is None:
        return None
    if not isinstance(state_topic, str) or not state_topic or "+" in state_topic or "#" in state_topic:
        return f"state_topic: expected a topic name (got {short(state_topic)})"
    unique_id = config.get("unique_id")
    if unique_id is None:
        unique_id = fallback_id
        logger.info("homeassistant %s: no unique_id; identity %r", component, fallback_id)
    elif not isinstance(unique_id, str | int) or isinstance(unique_id, bool) or not str(unique_id):
        return f"unique_id: expected a non-empty string (got {short(unique_id)})"
    availability_topic = config.get("availability_topic")
    availability = config.get("availability")
    if availability_topic is None and isinstance(availability, list):
        for entry in availability:
            if isinstance(entry, dict) and isinstance(entry.get("topic", entry.get("t")), str):
                availability_topic = entry.get("topic", entry.get("t"))
                break
    if availability_topic is not None and not isinstance(availability_topic, str):
        return f"availability_topic: expected a topic name (got {short(availability_topic)})"
    device_class = config.get("device_class")
    value_template = config.get("value_template")
    unit = config.get("unit_of_measurement")
    payload_on = _text(config.get("payload_on", "ON"))
    payload_off = _text(config.get("payload_off", "OFF"))
    for name, value in (("device_class", device_class), ("value_template", value_template),
                        ("unit_of_measurement", unit)):
        if value is not None and not isinstance(value, str):
            return f"{name}: expected a string (got {short(value)})"
    if payload_on is None or payload_off is None:
        return f"payload_on/payload_off: expected strings (got {short(config.get('payload_on'))}, " \
               f"{short(config.get('payload_off'))})"
    return HaEntity(
        state_topic=state_topic, component=component, unique_id=str(unique_id), device_class=device_class,
        payload_on=payload_on, payload_off=payload_off, unit=unit, value_template=value_template,
        availability_topic=availability_topic,
    )


def decode_config(topic: str, payload: bytes, received_at: datetime, *, prefix: str = DISCOVERY_PREFIX
                  ) -> list[Normalized] | DeadLetter:
    """Decode one discovery config message into HaEntity objects ([] = removed / nothing to watch)."""
    parsed = parse_config_topic(topic, prefix)
    if parsed is None:
        return dead_letter(topic, payload, received_at, UNHANDLED_TOPIC,
                           f"topic {topic!r}: expected {prefix}/<component>/[<node_id>/]<object_id>/config")
    component, node_id, object_id = parsed
    if not payload.strip():
        logger.debug("homeassistant: %s removed", topic)
        return []
    obj = load_json_object(payload, topic, received_at)
    if isinstance(obj, DeadLetter):
        return obj
    config = _expand(obj)
    fallback = f"{node_id}/{object_id}" if node_id else object_id
    configs: list[tuple[str, Mapping[str, Any], str, str]] = []  # (component, config, fallback id, error prefix)
    if component == "device":
        components = config.get("components")
        if not isinstance(components, dict):
            return dead_letter(topic, payload, received_at, SCHEMA,
                               f"components: expected an object of components (got {short(components)})")
        shared = {k: v for k, v in config.items() if k not in _DEVICE_LEVEL}
        for comp_id, comp in components.items():
            if not isinstance(comp, dict):
                return dead_letter(topic, payload, received_at, SCHEMA,
                                   f"components.{comp_id}: expected an object (got {short(comp)})")
            merged = _expand({**shared, **{k: v for k, v in obj.items() if k == "~"}, **comp})
            platform = merged.get("platform")
            if not isinstance(platform, str) or not _SEGMENT.fullmatch(platform):
                return dead_letter(topic, payload, received_at, SCHEMA,
                                   f"components.{comp_id}.platform: expected a component name (got {short(platform)})")
            configs.append((platform, merged, f"{fallback}/{comp_id}", f"components.{comp_id}."))
    else:
        configs.append((component, config, fallback, ""))
    out: list[Normalized] = []
    for comp_name, comp_config, comp_fallback, where in configs:
        entity = _entity(comp_name, comp_config, comp_fallback)
        if isinstance(entity, str):
            return dead_letter(topic, payload, received_at, SCHEMA, where + entity)
        if entity is None:
            logger.debug("homeassistant: %s%s has no state topic; nothing to watch", topic, where)
            continue
        out.append(entity)
    return out


# -- state and availability -------------------------------------------------------------------

def device_id(entity: HaEntity) -> str:
    """The vendor identity of a Home Assistant entity."""
    return f"{FORMAT}:{entity.unique_id}"


def template_key(template: str | None) -> str | None:
    """The key of a simple `{{ value_json.<key> }}` template; None for no or any other template."""
    if template is None:
        return None
    match = _SIMPLE_TEMPLATE.fullmatch(template.strip())
    if match is None:
        return None
    return match.group(1) or match.group(3)


def _render(value: Any) -> str:
    """A JSON value as a Jinja template renders it."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)  # True → "True", 21.5 → "21.5", None → "None"


def _metric(entity: HaEntity) -> str:
    for candidate in (entity.device_class, template_key(entity.value_template), entity.unique_id):
        if candidate:
            cleaned = _METRIC_CHARS.sub("_", candidate.lower()).strip("_.")[:64]
            if cleaned:
                return cleaned
    return "value"


def _number(state: str) -> float | None:
    text = state.strip()
    if len(text) > 64 or _NUMBER.fullmatch(text) is None:
        return None
    value = float(text)
    return value if math.isfinite(value) else None


def _entities_for(entry: HaEntity | Sequence[HaEntity] | None) -> list[HaEntity]:
    if entry is None:
        return []
    if isinstance(entry, HaEntity):
        return [entry]
    return [e for e in entry if isinstance(e, HaEntity)]


def _all_entities(entities: Mapping[str, HaEntity | Sequence[HaEntity]]) -> Iterable[HaEntity]:
    for entry in entities.values():
        yield from _entities_for(entry)


def decode_state(
    topic: str,
    payload: bytes,
    received_at: datetime,
    entities: Mapping[str, HaEntity | Sequence[HaEntity]],
) -> list[Normalized] | DeadLetter:
    """Decode a state or availability message of known entities; `unknown_entity` for any other topic."""
    require_aware(received_at)
    text = payload_text(topic, payload, received_at)
    if isinstance(text, DeadLetter):
        return text
    matched = [e for e in _entities_for(entities.get(topic)) if e.state_topic == topic]
    if matched:
        return _states(topic, payload, text, received_at, matched)
    watchers = [e for e in _all_entities(entities) if e.availability_topic == topic]
    if watchers:
        return _availability(topic, payload, text, received_at, watchers)
    return dead_letter(topic, payload, received_at, UNKNOWN_ENTITY,
                       f"topic {topic!r} is not the state or availability topic of a known entity "
                       "(no discovery config seen for it)")


def decode(
    topic: str,
    payload: bytes,
    received_at: datetime,
    *,
    entities: Mapping[str, HaEntity | Sequence[HaEntity]] | None = None,
    prefix: str = DISCOVERY_PREFIX,
) -> list[Normalized] | DeadLetter:
    """A discovery config topic → decode_config, any other topic → decode_state against `entities`."""
    require_aware(received_at)
    if parse_config_topic(topic, prefix) is not None:
        return decode_config(topic, payload, received_at, prefix=prefix)
    return decode_state(topic, payload, received_at, entities or {})


def _states(topic: str, payload: bytes, text: str, received_at: datetime, matched: list[HaEntity]
            ) -> list[Normalized] | DeadLetter:
    vt = received(received_at)
    parsed: Any = None
    parsed_ok = False
    out: list[Normalized] = []
    for entity in matched:
        warnings: tuple[str, ...] = ()
        key = template_key(entity.value_template)
        if key is not None:
            if not parsed_ok:
                try:
                    parsed = json.loads(text)
                except ValueError as exc:
                    return dead_letter(topic, payload, received_at, INVALID_JSON,
                                       f"payload is not JSON (value_template {entity.value_template!r}): {exc}")
                except RecursionError:
                    return dead_letter(topic, payload, received_at, INVALID_JSON, "payload is nested too deeply")
                parsed_ok = True
            if not isinstance(parsed, dict):
                return dead_letter(topic, payload, received_at, SCHEMA,
                                   f"payload: expected a JSON object for {entity.value_template!r}, "
                                   f"got {type(parsed).__name__}")
            if key not in parsed:
                logger.debug("homeassistant %s: %s has no %r", entity.unique_id, topic, key)
                continue
            state = _render(parsed[key])
        else:
            state = text.strip()
            if entity.value_template is not None:
                warnings = (f"value_template {entity.value_template!r} is not supported "
                            "(only {{ value_json.<key> }}); used the raw state",)
                logger.warning("homeassistant %s: %s", entity.unique_id, warnings[0])
        out.extend(_one_state(entity, state, vt, received_at, payload, warnings))
    return out


def _one_state(entity: HaEntity, state: str, vt: VendorTs, received_at: datetime, payload: bytes,
               warnings: tuple[str, ...]) -> list[Normalized]:
    ident = device_id(entity)
    if entity.component == "binary_sensor":
        if state == entity.payload_on:
            active = True
        elif state == entity.payload_off:
            active = False
        else:
            logger.debug("homeassistant %s: state %r is neither payload_on nor payload_off", ident, state)
            return []
        if entity.device_class == "connectivity":
            return [DeviceStatus(device_id=ident, ts=vt.utc, online=active, source="status",
                                 received_at=received_at, raw=payload)]
        alarm_type = BINARY_SENSOR_TYPES.get(entity.device_class or "")
        if alarm_type is None:
            cleaned = _METRIC_CHARS.sub("_", (entity.device_class or "binary_sensor").lower()).strip("_.")
            alarm_type = f"other.{FORMAT}_{cleaned or 'binary_sensor'}"
            warnings = (*warnings, f"binary_sensor device_class {entity.device_class!r} has no gridwatch type; "
                                   f"accepted as {alarm_type!r}")
        if not active:
            return [level_end(ident, alarm_type, vt.utc, received_at, payload)]
        return [level_alarm(ident, alarm_type, vt, None, received_at, payload, warnings=warnings,
                            data={"state": state})]
    if entity.component == "sensor":
        value = _number(state)
        if value is None:
            logger.debug("homeassistant %s: non-numeric state %r", ident, state[:40])
            return []
        return [Reading(device_id=ident, ts=vt.utc, metric=_metric(entity), value=value, unit=entity.unit)]
    logger.debug("homeassistant %s: component %s is not used", ident, entity.component)
    return []


def _availability(topic: str, payload: bytes, text: str, received_at: datetime, watchers: list[HaEntity]
                  ) -> list[Normalized] | DeadLetter:
    word: Any = text.strip().lower()
    if word not in ("online", "offline"):
        obj = load_json_object(payload, topic, received_at)
        if isinstance(obj, DeadLetter):
            return obj
        word = obj.get("state")
        word = word.lower() if isinstance(word, str) else word
    if word not in ("online", "offline"):
        return dead_letter(topic, payload, received_at, SCHEMA,
                           f'state: expected "online" or "offline" (got {short(word)})')
    ts = received_at.astimezone(UTC)
    seen: set[str] = set()
    out: list[Normalized] = []
    for entity in watchers:
        ident = device_id(entity)
        if ident in seen:
            continue
        seen.add(ident)
        out.append(DeviceStatus(device_id=ident, ts=ts, online=word == "online", source="availability",
                                received_at=received_at, raw=payload))
    return out
