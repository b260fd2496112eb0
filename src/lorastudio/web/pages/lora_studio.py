"""Pages of the guide's lora studio section (being built: see docs/architecture.md)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(include_in_schema=False)
