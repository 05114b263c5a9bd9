"""The API's typed answers (they are its OpenAPI schema): one anomaly, a page of them, a problem."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field


class AnomalyOut(BaseModel):
    """One anomaly as the API shows it. `detector` is the detector's name in the spec (the record's `type`);
    `method` is how it judges (auto, threshold, robustZScore, ewma; the record's `detector`)."""

    id: str
    detector: str
    method: str
    severity: Literal["warning", "critical"]
    status: Literal["open", "resolved"]
    feature: str
    metric: str
    key: dict[str, str] = Field(description="the dimension values of the anomalous entity")
    window_start: datetime
    window_end: datetime
    observed: float
    expected: float | None
    score: float = Field(description="anomaly score in [0, 1] of the opening window")
    statistic: float | None
    reason: str
    context: dict[str, Any]
    detected_at: datetime
    resolved_at: datetime | None


class AnomalyPage(BaseModel):
    anomalies: list[AnomalyOut]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last page")


class Problem(BaseModel):
    detail: str
    field: str | None = Field(default=None, description="the query parameter at fault")
