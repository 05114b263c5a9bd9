"""Event ids: deterministic from (seed, run start, sequence number), unique within a run, UUID-shaped.

The first 72 bits hash the seed and the run's simulated start time; the last 48 bits are the sequence
number. The start time is part of the namespace on purpose: a generator restarted with the same seed
(start = now again) must not reuse the previous run's ids, or the processor's idempotent store would
drop the new events as duplicates. The result is an RFC 9562 version-8 (custom) UUID.
"""

from __future__ import annotations

import hashlib

MAX_SEQUENCE = (1 << 48) - 1


def id_prefix(seed: int, start_us: int) -> str:
    """The first 24 characters (`xxxxxxxx-xxxx-8xxx-yxxx-`) of every id of one run."""
    digest = hashlib.blake2b(f"{seed}:{start_us}".encode(), digest_size=10, person=b"adnomaly-ids").hexdigest()
    variant = "89ab"[int(digest[18], 16) & 3]
    return f"{digest[:8]}-{digest[8:12]}-8{digest[12:15]}-{variant}{digest[15:18]}-"


def event_id(prefix: str, seq: int) -> str:
    if not 0 <= seq <= MAX_SEQUENCE:
        raise ValueError(f"sequence number {seq} outside 0..{MAX_SEQUENCE}")
    return f"{prefix}{seq:012x}"
