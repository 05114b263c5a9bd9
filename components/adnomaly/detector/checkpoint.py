"""The detector's checkpoint: its whole state plus the consumed offsets that state reflects (pure).

Per batch the runner saves a checkpoint in the PostgreSQL transaction that stores the batch's anomalies,
then commits the same offsets to Kafka in the transaction that publishes them. At start, after
`init_transactions` has settled any transaction a killed predecessor left open, the checkpoint to resume
from is the one whose offsets equal the offsets Kafka has committed: the newest when both transactions
went through, the one before when the process died in between (the batch is then judged again from
identical state and yields identical anomalies, which the idempotent table and the aborted Kafka
transaction make appear once). Offsets are compared over the topics consumed now only, so adding or
removing the `_dlq` topics keeps the match.

With notifications on, the state includes the Alertmanager notices (`adnomaly.notify.state`) as they are
once the batch is committed, which is what makes notifying exact across restarts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

from adnomaly.detection.engine import EngineState
from adnomaly.notify.state import Notice


class DlqState(msgspec.Struct, frozen=True):
    size_us: int
    lateness_us: int
    windows: dict[str, Any]  # InvalidShareWindows.state()


class Checkpoint(msgspec.Struct, frozen=True):
    engine: EngineState
    dlq: DlqState | None = None
    notify: dict[str, Notice] | None = None  # adnomaly.notify.state: None when notifications are off


ENCODER = msgspec.json.Encoder()
DECODER = msgspec.json.Decoder(Checkpoint)


def offset_key(topic: str, partition: int) -> str:
    return f"{topic}:{partition}"  # Kafka topic names cannot contain ':'


def _on(offsets: Mapping[str, int], topics: Iterable[str]) -> dict[str, int]:
    """The offsets of `topics` only, without "nothing committed" entries (negative offsets)."""
    wanted = set(topics)
    return {k: int(v) for k, v in offsets.items() if k.rsplit(":", 1)[0] in wanted and int(v) >= 0}


def matching(
    saved: Iterable[tuple[int, Mapping[str, int], bytes]], committed: Mapping[str, int], topics: Iterable[str]
) -> tuple[int, dict[str, int], bytes] | None:
    """The saved (seq, offsets, state) whose offsets on `topics` equal Kafka's `committed`, newest first."""
    topics = tuple(topics)
    want = _on(committed, topics)
    for seq, offsets, state in sorted(saved, key=lambda item: -item[0]):
        if _on(offsets, topics) == want:
            return seq, _on(offsets, topics), state
    return None
