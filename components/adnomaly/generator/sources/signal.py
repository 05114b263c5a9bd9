"""Product signals: logins, views, clicks, searches, carts, purchases, ... from a finite user base.

Normal traffic: the mix of types follows the local evening (more carts and purchases), each type carries
a payload that fits it (a purchase has an order id, an amount and a currency; a login a method and an
outcome). Only the malformedStorm scenario applies (it is the stream's, not this source's).
"""

from __future__ import annotations

import hashlib
import random
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from adnomaly.events.schemas import Signal
from adnomaly.generator.catalog import (
    CURRENCIES,
    LOGIN_METHODS,
    PAYMENT_METHODS,
    PLANS,
    SHARE_CHANNELS,
    SIGNAL_ELEMENTS,
    SIGNAL_PAGES,
    SIGNAL_REFERRERS,
    SIGNAL_SOURCES,
    SIGNAL_TYPES,
)
from adnomaly.generator.drift import daily_factor
from adnomaly.generator.sampling import TABLE_BITS, decimals, lookup_table
from adnomaly.generator.sources.base import EventSource, Faults

USERS = 20_000
PRODUCTS = 2_000
UTC_OFFSET_H = -5.0  # the product's main market, for the evening shift in the mix of types
EVENING_PEAK_H = 20.0

Payload = dict[str, Any]


class SignalSource(EventSource):
    schema = "signal"
    scenarios: frozenset[str] = frozenset()
    faults = Faults(
        text_field="user_id",
        nan_path=("payload", "score"),
        wrong_types={"source": 1, "payload": ["not", "an", "object"], "user_id": 42, "type": None},
        out_of_range={"type": "Login Event!", "source": "fax", "user_id": ""},
    )

    def __init__(self, seed: int, rng: random.Random, start_s: float) -> None:
        super().__init__(seed, rng, start_s)
        self._users = [
            "u-" + hashlib.blake2b(f"{seed}:signal-user:{n}".encode(), digest_size=6).hexdigest()
            for n in range(USERS)
        ]
        self._source_table = lookup_table([s for s, _ in SIGNAL_SOURCES], [w for _, w in SIGNAL_SOURCES])
        self._type_table: list[str] = []
        self._payloads: dict[str, Callable[[], Payload]] = {
            "view": self._view, "click": self._click, "search": self._search, "login": self._login,
            "logout": self._logout, "add_to_cart": self._add_to_cart, "purchase": self._purchase,
            "share": self._share, "signup": self._signup, "password_reset": self._password_reset,
        }  # fmt: skip
        missing = {t for t, _, _ in SIGNAL_TYPES} - set(self._payloads)
        if missing:
            raise RuntimeError(f"signal types without a payload builder: {sorted(missing)}")
        self.refresh(start_s)

    def refresh(self, t_s: float) -> None:
        evening = daily_factor(t_s, UTC_OFFSET_H, 1.0, EVENING_PEAK_H) / 2.0  # 0 at 08:00, 1 at 20:00
        weights = [w * (1.0 + boost * 2.0 * evening) for _, w, boost in SIGNAL_TYPES]
        self._type_table = lookup_table([t for t, _, _ in SIGNAL_TYPES], weights)

    def scenario_key(self, scenario: str, rng: random.Random) -> dict[str, str]:
        raise ValueError(f"the signal source cannot act out {scenario}")

    def activate(self, scenario: str | None, key: Mapping[str, str] | None) -> None:
        if scenario is not None:
            raise ValueError(f"the signal source cannot act out {scenario}")

    def make(self, event_id: str, when: datetime, t_s: float) -> Signal:
        rng = self.rng
        kind = self._type_table[rng.getrandbits(TABLE_BITS)]
        return Signal(
            event_id=uuid.UUID(event_id), user_id=self._users[int(rng.random() * USERS)],
            source=self._source_table[rng.getrandbits(TABLE_BITS)], type=kind, event_ts=when,
            payload=self._payloads[kind](),
        )  # fmt: skip

    # -- payloads, one per type ------------------------------------------------------------------------

    def _pick(self, options: tuple[str, ...]) -> str:
        return options[int(self.rng.random() * len(options))]

    def _product(self) -> str:
        return f"p-{int(self.rng.random() * PRODUCTS) + 1:05d}"

    def _view(self) -> Payload:
        return {"page": self._pick(SIGNAL_PAGES), "referrer": self._pick(SIGNAL_REFERRERS),
                "duration_ms": int(self.rng.expovariate(1 / 25_000.0))}  # fmt: skip

    def _click(self) -> Payload:
        return {"element": self._pick(SIGNAL_ELEMENTS), "page": self._pick(SIGNAL_PAGES)}

    def _search(self) -> Payload:
        return {"query_length": self.rng.randint(2, 40), "results": int(self.rng.expovariate(1 / 120.0))}

    def _login(self) -> Payload:
        rng = self.rng
        return {"method": self._pick(LOGIN_METHODS), "success": rng.random() > 0.04, "mfa": rng.random() < 0.3}

    def _logout(self) -> Payload:
        return {"session_s": int(self.rng.expovariate(1 / 900.0))}

    def _add_to_cart(self) -> Payload:
        rng = self.rng
        return {"product_id": self._product(), "quantity": 1 + int(rng.expovariate(1.5)),
                "price": decimals(rng.lognormvariate(3.0, 0.8), 2)}  # fmt: skip

    def _purchase(self) -> Payload:
        rng = self.rng
        items = 1 + int(rng.expovariate(0.8))
        return {
            "order_id": f"o-{rng.getrandbits(40):010x}", "items": items,
            "amount": decimals(items * rng.lognormvariate(3.2, 0.7), 2), "currency": self._pick(CURRENCIES),
            "payment": self._pick(PAYMENT_METHODS),
        }  # fmt: skip

    def _share(self) -> Payload:
        return {"channel": self._pick(SHARE_CHANNELS), "page": self._pick(SIGNAL_PAGES)}

    def _signup(self) -> Payload:
        return {"plan": self._pick(PLANS), "referral": self.rng.random() < 0.2}

    def _password_reset(self) -> Payload:
        return {"channel": "email" if self.rng.random() < 0.8 else "sms"}
