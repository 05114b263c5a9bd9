"""The detector's config section (`detector` in a component config), like `adnomaly.sinks.config`.

It imports nothing from `adnomaly.config`, so `ComponentConfig` can declare it; until it does,
`load_section(path, "detector", DetectorConfig)` reads it anyway.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from adnomaly.notify.config import NotifyConfig
from adnomaly.spec import DetectionSpec

DETECTOR_SECTION = "detector"


class DetectorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    group_id: str
    db_schema: str = Field(description="PostgreSQL schema holding this pipeline's tables")
    transactional_id: str = Field(description="Kafka transactional id; stable across restarts")
    detection: dict[str, Any] = Field(description="The pipeline's `spec.detection`, in spec (camelCase) form")
    resolve_after: int | None = Field(
        default=None, ge=1, description="Normal windows that resolve an open anomaly (None: each method's default)"
    )
    threshold_min_count: int = Field(default=20, ge=1, description="Events a window needs for threshold rules")
    batch_size: int = Field(default=500, ge=1)
    batch_timeout_s: float = Field(default=0.5, gt=0)
    notify: NotifyConfig | None = Field(default=None, description="Alertmanager; None: no notifications")

    def detection_spec(self) -> DetectionSpec:
        return DetectionSpec.model_validate(self.detection)
