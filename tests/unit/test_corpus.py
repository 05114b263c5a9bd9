"""The bad-input corpus: big and varied enough, reproducible, and every item gets its expected outcome from the
codec, the ingest API's line parser and the processor's batch preparation (never an unexpected exception)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import pytest
from adnomaly.events import InvalidEvent, codec_for
from adnomaly.events.codec import CODEC_REASON_CODES, REASON_CODES, UNSTORABLE
from adnomaly.events.corpus import ACCEPTED, CorpusItem, build_corpus, by_category
from adnomaly.events.schemas import SCHEMA_NAMES
from adnomaly.generator import MALFORMED_KINDS
from adnomaly.ingest.batch import parse_ndjson, parse_single
from adnomaly.kafka_record import HeldRecord
from adnomaly.processor.batch import prepare_batch

NOW = datetime.now(UTC).replace(microsecond=0)
REQUIRED_CATEGORIES = {
    "truncated", "wrong_type", "missing_field", "extra_field", "huge_string", "huge_array", "deep_nesting",
    "duplicate_key", "nan_infinity", "invalid_utf8", "time_past", "time_future", "wrong_schema", "empty",
}  # fmt: skip


@pytest.fixture(scope="module")
def corpus() -> list[CorpusItem]:
    return build_corpus(now=NOW)


def outcome(schema: str, raw: bytes, max_event_bytes: int = 64 * 1024) -> str:
    """What the codec makes of `raw`: ACCEPTED or the reason code (any other exception propagates)."""
    try:
        codec_for(schema=schema, max_event_bytes=max_event_bytes).decode(raw)
    except InvalidEvent as exc:
        return exc.code
    return ACCEPTED


def test_size_and_coverage(corpus: list[CorpusItem]) -> None:
    assert len(corpus) >= 1000
    for schema in SCHEMA_NAMES:
        items = [item for item in corpus if item.schema == schema]
        assert len(items) >= 200, schema
        assert set(by_category(items)) >= REQUIRED_CATEGORIES, schema
        assert any(item.accepted for item in items), schema
    expected = Counter(item.expected for item in corpus)
    assert set(expected) <= {ACCEPTED, *REASON_CODES}
    assert set(CODEC_REASON_CODES) | {UNSTORABLE, ACCEPTED} == set(expected)
    generator_kinds = {item.variant.rsplit("_", 1)[0] for item in corpus if item.category == "generator_kinds"}
    assert generator_kinds == set(MALFORMED_KINDS)
    assert len({item.name for item in corpus}) == len(corpus)


def test_reproducible_from_the_seed(corpus: list[CorpusItem]) -> None:
    again = build_corpus(now=NOW, schemas=("signal",))
    assert again == [item for item in corpus if item.schema == "signal"]
    other = build_corpus(7, now=NOW, schemas=("signal",))
    assert [i.raw for i in other] != [i.raw for i in again]
    assert {i.category for i in other} == {i.category for i in again}  # the same shape, other values


def test_needs_an_aware_now() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        build_corpus(now=datetime(2026, 1, 1))


@pytest.mark.parametrize("schema", SCHEMA_NAMES)
def test_every_item_gets_its_expected_outcome_from_the_codec(corpus: list[CorpusItem], schema: str) -> None:
    codec = codec_for(schema=schema)
    wrong: list[str] = []
    accepted_ids: list[str] = []
    for item in (i for i in corpus if i.schema == schema):
        try:
            event = codec.decode(item.raw)
        except InvalidEvent as exc:
            assert exc.detail and exc.reason.startswith(f"{exc.code}: ")
            if exc.code != item.expected:
                wrong.append(f"{item.name}: expected {item.expected}, got {exc.reason[:150]}")
            continue
        accepted_ids.append(event.event_id)
        if not item.accepted:
            wrong.append(f"{item.name}: expected {item.expected}, was accepted")
    assert not wrong, "\n".join(wrong)
    assert len(set(accepted_ids)) == len(accepted_ids), "accepted items must have distinct event ids"


def test_a_smaller_event_limit_turns_big_items_into_oversize() -> None:
    items = build_corpus(now=NOW, schemas=("probe",), max_event_bytes=4096)
    wrong = [i.name for i in items if outcome("probe", i.raw, 4096) != i.expected]
    assert not wrong, wrong
    assert sum(i.expected == "oversize" for i in items) >= 10


@pytest.mark.parametrize("schema", SCHEMA_NAMES)
def test_the_ingest_parser_accounts_for_every_item(corpus: list[CorpusItem], schema: str) -> None:
    decode = codec_for(schema=schema).decode
    items = [i for i in corpus if i.schema == schema]
    for item in items:  # one event per request
        batch = parse_single(item.raw, decode)
        if not item.raw.strip():
            assert batch.empty, item.name  # answered 400 empty_body: no line to account for
        elif item.accepted:
            assert len(batch.events) == 1 and not batch.rejections, item.name
        else:
            assert not batch.events and [r.code for r in batch.rejections] == [item.expected], item.name
    # One NDJSON body: every line that is one line and not blank is answered, in order, with its code.
    lines = [i for i in items if b"\n" not in i.raw and i.raw.strip()]
    batch = parse_ndjson(b"\n".join(i.raw for i in lines), decode)
    assert len(batch.events) + len(batch.rejections) == len(lines)
    assert [(r.line, r.code) for r in batch.rejections] == [
        (n, i.expected) for n, i in enumerate(lines, 1) if not i.accepted
    ]



@pytest.mark.parametrize("schema", SCHEMA_NAMES)
def test_the_processor_batch_accounts_for_every_item(corpus: list[CorpusItem], schema: str) -> None:
    items = [i for i in corpus if i.schema == schema]
    messages = [HeldRecord(i.raw, off=n, key_=i.name.encode()) for n, i in enumerate(items)]
    batch = prepare_batch(messages, codec_for(schema=schema).decode)
    assert len(batch.rows) + len(batch.dead) == len(items) == batch.size
    assert [m.key().decode() for m in batch.row_messages] == [i.name for i in items if i.accepted]
    expected = {i.name: i.expected for i in items}
    dead = {d.message.key().decode(): d.code for d in batch.dead}
    assert dead == {n: c for n, c in expected.items() if c != ACCEPTED}
    assert batch.offsets == {("raw", 0): len(items)}
    for row in batch.rows:  # COPY text format: 4 columns, one line; JSON whitespace (\t \n \r) escaped
        assert row.endswith(b"\n") and row.count(b"\n") == 1 and b"\r" not in row, row[:200]
        assert row.count(b"\t") == 3, row[:200]
