from lorastudio.studio.credits.estimates import estimate, record_timing
from lorastudio.studio.credits.ledger import (
    DEFAULT_RATE,
    balance,
    charge_rule,
    cost_of,
    ensure_start,
    grant,
    history,
    hold,
    job_credits,
    settle,
)
from lorastudio.studio.credits.schemas import CreditsOut, Estimate

__all__ = [
    "CreditsOut",
    "DEFAULT_RATE",
    "Estimate",
    "balance",
    "charge_rule",
    "cost_of",
    "ensure_start",
    "estimate",
    "grant",
    "history",
    "hold",
    "job_credits",
    "record_timing",
    "settle",
]
