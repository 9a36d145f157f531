"""Dead letters: list, inspect, count by reason, replay (design §7: nothing lost)."""

from __future__ import annotations

import base64
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from api.deps import RuntimeDep, allow
from api.errors import InvalidQueryProblem, NotFoundProblem
from store.ports import StoredDeadLetter

router = APIRouter(tags=["dead letters"], dependencies=[Depends(allow("admin"))])
"""Dead letters carry raw payloads of any device and no grid yet: operators (admins) only."""


def payload_text(payload: bytes, limit: int | None = 2000) -> str:
    """The payload as text, or `base64:` + its bytes when it is not UTF-8."""
    try:
        text = payload.decode()
    except UnicodeDecodeError:
        text = "base64:" + base64.b64encode(payload).decode()
    return text if limit is None else text[:limit]


def letter_dict(row: StoredDeadLetter, *, full: bool = False) -> dict[str, Any]:
    """A stored dead letter as JSON."""
    dl = row.dead_letter
    return {
        "id": row.id, "topic": dl.topic, "reason": dl.reason, "detail": dl.detail,
        "received_at": dl.received_at.isoformat(), "payload": payload_text(dl.payload, None if full else 2000),
        "bytes": len(dl.payload), "replays": row.replays, "replay_result": row.replay_result,
        "replayed_at": row.replayed_at.isoformat() if row.replayed_at else None,
    }


@router.get("/dead-letters")
def list_dead_letters(
    rt: RuntimeDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    reason: Annotated[str | None, Query(max_length=64, description="only this reason, e.g. unknown_device")] = None,
    pending: Annotated[bool, Query(description="only letters not replayed successfully yet")] = False,
) -> dict[str, Any]:
    """Messages that could not be accepted, newest first, with the reason."""
    items = [letter_dict(r) for r in rt.store.dead_letters(limit=limit, reason=reason, pending_only=pending)]
    return {"count": len(items), "items": items}


@router.get("/dead-letters/counters")
def dead_letter_counters(rt: RuntimeDep) -> dict[str, Any]:
    """Per reason: how many letters are pending and how many were replayed."""
    counts = rt.store.dead_letter_counts()
    return {"by_reason": counts, "pending": sum(c.get("pending", 0) for c in counts.values()),
            "replayed": sum(c.get("replayed", 0) for c in counts.values())}


@router.get("/dead-letters/{letter_id}")
def get_dead_letter(letter_id: int, rt: RuntimeDep) -> dict[str, Any]:
    """One dead letter with its whole payload."""
    row = rt.store.dead_letter(letter_id)
    if row is None:
        raise NotFoundProblem(f"dead letter {letter_id} not found")
    return letter_dict(row, full=True)


class ReplayRequest(BaseModel):
    """Which letters to replay: ids, or every pending letter of a reason (newest `limit`)."""

    ids: list[int] = Field(default_factory=list, max_length=10_000)
    reason: str | None = Field(None, max_length=64)
    limit: int = Field(1000, ge=1, le=10_000)


@router.post("/dead-letters/replay")
def replay_dead_letters(body: ReplayRequest, rt: RuntimeDep) -> dict[str, Any]:
    """Decode the letters again with today's adapters and registry; store what now passes."""
    ids = list(body.ids)
    if not ids and body.reason is None:
        raise InvalidQueryProblem("ids / reason: give the ids to replay, or a reason (e.g. unknown_device)")
    if body.reason is not None:
        letters = rt.store.dead_letters(limit=body.limit, reason=body.reason, pending_only=True)
        ids.extend(r.id for r in reversed(letters))  # oldest first: per-device order is kept
    results = rt.replay_dead_letters(ids)
    accepted = sum(1 for r in results if r["status"] == "accepted")
    return {"requested": len(ids), "accepted": accepted, "refused": sum(1 for r in results if r["status"] == "refused"), "items": results}
