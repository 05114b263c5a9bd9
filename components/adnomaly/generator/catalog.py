"""Reference data the synthetic events are drawn from: countries, user agents, regions, devices, content.

Plain constants, no randomness: the per-seed pools (users, campaigns, nodes' boot times, ...) are built
from these by the sources in `adnomaly.generator.sources`.
"""

from __future__ import annotations

from typing import NamedTuple


class Country(NamedTuple):
    code: str  # ISO 3166-1 alpha-2
    weight: float  # share of ad traffic (relative)
    utc_offset_h: float  # a representative time zone, for the daily cycle
    cpc_factor: float  # advertisers pay more in some markets


COUNTRIES: tuple[Country, ...] = (
    Country("US", 18.0, -5, 1.00), Country("IN", 9.0, 5.5, 0.35), Country("BR", 5.0, -3, 0.50),
    Country("GB", 4.5, 0, 0.90), Country("DE", 4.5, 1, 0.90), Country("JP", 4.0, 9, 0.85),
    Country("FR", 3.5, 1, 0.80), Country("CA", 3.0, -5, 0.90), Country("MX", 3.0, -6, 0.45),
    Country("ID", 3.0, 7, 0.35), Country("IT", 2.5, 1, 0.70), Country("ES", 2.5, 1, 0.70),
    Country("KR", 2.2, 9, 0.80), Country("AU", 2.2, 10, 0.95), Country("TR", 2.0, 3, 0.40),
    Country("PH", 2.0, 8, 0.35), Country("VN", 1.6, 7, 0.30), Country("TH", 1.5, 7, 0.35),
    Country("PL", 1.5, 1, 0.55), Country("NL", 1.5, 1, 0.85), Country("AR", 1.4, -3, 0.40),
    Country("CO", 1.2, -5, 0.40), Country("EG", 1.2, 2, 0.30), Country("NG", 1.2, 1, 0.30),
    Country("ZA", 1.0, 2, 0.45), Country("SA", 1.0, 3, 0.70), Country("MY", 1.0, 8, 0.40),
    Country("PK", 1.0, 5, 0.25), Country("AE", 0.8, 4, 0.85), Country("SE", 0.8, 1, 0.85),
    Country("BD", 0.8, 6, 0.25), Country("CL", 0.8, -4, 0.50), Country("CH", 0.7, 1, 1.05),
    Country("BE", 0.7, 1, 0.80), Country("PT", 0.6, 0, 0.60), Country("IE", 0.5, 0, 0.90),
)  # fmt: skip

PLATFORM_SHARES: tuple[tuple[str, float], ...] = (("web", 0.40), ("ios", 0.30), ("android", 0.30))

USER_AGENTS: dict[str, tuple[str, ...]] = {
    "web": (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Safari/537.36",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/125.0.0.0 Safari/537.36 Edg/125.0.0.0",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:126.0) Gecko/20100101 Firefox/126.0",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.4.1 Safari/605.1.15",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Safari/537.36",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/123.0.0.0 Safari/537.36",
        "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Safari/537.36 OPR/110.0.0.0",
    ),
    "ios": (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.4.1 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.5 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 16_7_8 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/16.6 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.4 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "CriOS/124.0.6367.111 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Mobile/15E148 Instagram 331.0.2.27.98 (iPhone15,3; iOS 17_5_1; en_US; en; scale=3.00; 1290x2796)",
    ),
    "android": (
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.6367.113 Mobile Safari/537.36",
        "Mozilla/5.0 (Linux; Android 14; SM-S921B) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Mobile Safari/537.36",
        "Mozilla/5.0 (Linux; Android 13; SM-A546B) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/123.0.6312.118 Mobile Safari/537.36",
        "Mozilla/5.0 (Linux; Android 13; 2201117TG) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/122.0.6261.119 Mobile Safari/537.36",
        "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
        "SamsungBrowser/24.0 Chrome/117.0.0.0 Mobile Safari/537.36",
        "Mozilla/5.0 (Linux; Android 11; Redmi Note 9 Pro) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/121.0.6167.178 Mobile Safari/537.36",
        "Mozilla/5.0 (Linux; Android 14; CPH2581) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.6367.82 Mobile Safari/537.36",
        "Mozilla/5.0 (Linux; Android 12; moto g(60)) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.6099.230 Mobile Safari/537.36",
    ),
}

# What click farms and bots announce themselves as (used by the clickFraudBurst scenario).
BOT_USER_AGENTS: dict[str, str] = {
    "web": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "HeadlessChrome/119.0.0.0 Safari/537.36",
    "ios": "Mozilla/5.0 (iPhone; CPU iPhone OS 12_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Mobile/15E148",
    "android": "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/114.0.0.0 Mobile Safari/537.36",
}


class Region(NamedTuple):
    name: str
    code: str
    utc_offset_h: float
    median_latency_ms: float  # probe latency to the region's targets
    median_speed_mbps: float  # typical download speed of its users
    traffic_weight: float  # share of downloads (relative)
    nodes: int  # probe nodes in the fixed fleet
    sites: tuple[str, ...]  # where the probe nodes sit (airport-style codes)


REGIONS: tuple[Region, ...] = (
    Region("us-east", "use", -5, 14.0, 95.0, 20.0, 6, ("iad", "nyc", "atl", "bos")),
    Region("us-west", "usw", -8, 17.0, 90.0, 12.0, 5, ("sjc", "sea", "lax")),
    Region("eu-west", "euw", 0, 16.0, 80.0, 14.0, 6, ("lhr", "dub", "cdg")),
    Region("eu-central", "euc", 1, 19.0, 85.0, 12.0, 5, ("fra", "ams", "waw")),
    Region("ap-south", "aps", 5.5, 42.0, 35.0, 12.0, 4, ("bom", "del", "maa")),
    Region("ap-southeast", "apse", 8, 31.0, 55.0, 9.0, 4, ("sin", "cgk", "bkk")),
    Region("ap-northeast", "apne", 9, 22.0, 110.0, 8.0, 5, ("nrt", "icn", "kix")),
    Region("sa-east", "sae", -3, 38.0, 45.0, 6.0, 3, ("gru", "eze", "scl")),
    Region("af-south", "afs", 2, 58.0, 25.0, 3.0, 2, ("jnb", "cpt")),
    Region("me-central", "mec", 4, 36.0, 50.0, 4.0, 3, ("dxb", "ruh")),
)

PROBE_TARGETS: tuple[str, ...] = ("anycast-dns", "cdn-edge", "api-gateway", "origin-lb")
PROBE_PROTOCOLS: tuple[str, ...] = ("icmp", "tcp", "http")
PROBE_AGENT_VERSIONS: tuple[str, ...] = ("3.4.2", "3.4.1", "3.3.9")


class Device(NamedTuple):
    type: str
    weight: float
    speed_factor: float  # relative to the region's median (Wi-Fi vs cellular, hardware)
    os_versions: tuple[tuple[str, float], ...]


DEVICES: tuple[Device, ...] = (
    Device("mobile", 45.0, 0.6, (
        ("Android 14", 20), ("Android 13", 12), ("Android 12", 6), ("iOS 17.5", 14), ("iOS 17.4", 8),
        ("iOS 16.7", 4),
    )),
    Device("tablet", 15.0, 0.8, (("iPadOS 17.5", 10), ("iPadOS 16.7", 3), ("Android 14", 4), ("Fire OS 8", 3))),
    Device("desktop", 30.0, 1.15, (
        ("Windows 11", 14), ("Windows 10", 12), ("macOS 14.5", 8), ("macOS 13.6", 3), ("Ubuntu 24.04", 2),
    )),
    Device("tv", 10.0, 1.2, (
        ("tvOS 17.5", 3), ("Android TV 12", 4), ("Tizen 7.0", 4), ("webOS 23", 3), ("Roku OS 13", 3),
    )),
)  # fmt: skip


class ContentKind(NamedTuple):
    prefix: str
    weight: float  # share of the catalogue
    min_mb: float
    max_mb: float


CONTENT_KINDS: tuple[ContentKind, ...] = (
    ContentKind("mov", 30.0, 800.0, 2500.0),
    ContentKind("ep", 25.0, 150.0, 700.0),
    ContentKind("app", 20.0, 20.0, 400.0),
    ContentKind("music", 15.0, 40.0, 160.0),
    ContentKind("game", 10.0, 500.0, 6000.0),
)

SIGNAL_SOURCES: tuple[tuple[str, float], ...] = (("web", 45.0), ("mobile", 40.0), ("api", 15.0))

# type -> (base weight, evening boost): purchases and add-to-carts rise in the evening.
SIGNAL_TYPES: tuple[tuple[str, float, float], ...] = (
    ("view", 34.0, 0.0), ("click", 24.0, 0.0), ("search", 10.0, 0.1), ("login", 8.0, 0.0),
    ("logout", 6.0, 0.0), ("add_to_cart", 6.0, 0.4), ("purchase", 3.0, 0.5), ("share", 3.0, 0.2),
    ("signup", 2.0, 0.2), ("password_reset", 1.0, 0.0),
)  # fmt: skip
SIGNAL_PAGES: tuple[str, ...] = (
    "/", "/search", "/products", "/products/detail", "/cart", "/checkout", "/account", "/deals", "/help",
    "/blog", "/category/shoes", "/category/electronics", "/category/home",
)  # fmt: skip
SIGNAL_ELEMENTS: tuple[str, ...] = (
    "buy_button", "add_to_cart", "nav_menu", "search_box", "banner", "product_card", "filter", "pagination",
)
SIGNAL_REFERRERS: tuple[str, ...] = ("direct", "google", "bing", "facebook", "instagram", "newsletter", "tiktok")
LOGIN_METHODS: tuple[str, ...] = ("password", "password", "sso", "oauth_google", "oauth_apple", "magic_link")
CURRENCIES: tuple[str, ...] = ("USD", "USD", "USD", "EUR", "EUR", "GBP", "BRL", "INR", "JPY")
PAYMENT_METHODS: tuple[str, ...] = ("card", "card", "card", "paypal", "apple_pay", "google_pay")
SHARE_CHANNELS: tuple[str, ...] = ("link", "email", "whatsapp", "x", "facebook")
PLANS: tuple[str, ...] = ("free", "free", "free", "pro", "team")
