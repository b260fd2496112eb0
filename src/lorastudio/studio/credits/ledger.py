"""Credits: an append-only ledger. The balance is the sum of the entries, never a stored number.

A training holds its estimate's upper credits in the transaction that creates its job; when the job ends
the hold is settled once: on success the minutes it ran, times its GPUs, are charged at the per-minute rate
(never more than the hold) and the rest released, on failure or cancel everything is released. `charge_rule`
says so in the one sentence the estimate, the ledger and the README use. Generation with trained LoRAs costs
nothing (the guide). A hold is one conditional INSERT: it writes only if the balance
covers it, so concurrent submits can never take a balance below zero.
"""

from __future__ import annotations

import math

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from lorastudio.errors import InsufficientCredits, Invalid, NotFound
from lorastudio.studio.credits.schemas import CreditEntryOut
from lorastudio.studio.db import CreditEntry, Job, User, now, writes

DEFAULT_RATE = 10 / 3  # credits per GPU-minute: the guide's 50 credits for a 15-minute character training

# Taken by the hold below on PostgreSQL, so two transactions cannot both read the same old balance
# (SQLite needs none: its write transactions already run one at a time).
_PG_LOCK = "SELECT pg_advisory_xact_lock(:user_id)"

_HOLD = text(
    "INSERT INTO credit_entries (user_id, kind, amount, delta, job_id, note, created_at) "
    "SELECT :user_id, 'hold', :amount, -:amount, :job_id, :note, :now "
    "WHERE (SELECT COALESCE(SUM(delta), 0) FROM credit_entries WHERE user_id = :user_id) >= :amount "
    "RETURNING id"
)


def balance(session: Session, user_id: int) -> int:
    """The user's credits: the sum of their ledger."""
    return int(
        session.scalar(select(func.coalesce(func.sum(CreditEntry.delta), 0)).where(CreditEntry.user_id == user_id))
    )


@writes
def grant(session: Session, *, user_id: int, amount: int, note: str = "") -> CreditEntryOut:
    """Add credits."""
    if not 0 < amount <= 10**9:
        raise Invalid("a grant is 1 to 1,000,000,000 credits")
    if session.get(User, user_id) is None:
        raise NotFound(f"user {user_id} not found")
    entry = CreditEntry(user_id=user_id, kind="grant", amount=amount, delta=amount, note=note[:300])
    session.add(entry)
    session.flush()
    return CreditEntryOut.model_validate(entry)


def hold(session: Session, *, user_id: int, amount: int, job_id: int | None, note: str = "") -> int:
    """Reserve `amount` credits for a job in one conditional statement; its id, or InsufficientCredits."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(_PG_LOCK), {"user_id": user_id})
    params = {"user_id": user_id, "amount": amount, "job_id": job_id, "note": note[:300], "now": now()}
    row = session.execute(_HOLD, params).first()
    if row is None:
        have = balance(session, user_id)
        raise InsufficientCredits(
            f"not enough credits: this needs {amount}, your balance is {have} - {amount - have} missing. "
            "Lower the steps or ask for credits (`lorastudio credits grant`)",
            needed=amount,
            balance=have,
        )
    return row[0]


def settle(session: Session, *, hold_id: int, spent: int, note: str = "") -> None:
    """End a hold: capture `spent` of it and release the rest. A hold is settled once: later calls (a
    retried finish, a duplicated job) change nothing."""
    held = session.get(CreditEntry, hold_id)
    if held is None or held.kind != "hold":
        raise NotFound(f"credit hold {hold_id} not found")
    settled = session.scalar(select(CreditEntry.id).where(CreditEntry.hold_id == hold_id).limit(1))
    if settled is not None:
        return
    spent = max(0, min(spent, held.amount))
    common = {"user_id": held.user_id, "hold_id": hold_id, "job_id": held.job_id, "note": note[:300]}
    session.add(CreditEntry(kind="capture", amount=spent, delta=0, **common))
    session.add(CreditEntry(kind="release", amount=held.amount - spent, delta=held.amount - spent, **common))
    session.flush()


def charge_rule(credits_per_minute: float, devices: int = 1) -> str:
    """How a training is charged, in the one sentence every place that states it uses (a run on several GPUs
    pays each GPU's minutes)."""
    many = (
        f" on each of its GPUs (on {devices} GPUs, {credits_per_minute * devices:.2f} a minute)" if devices > 1 else ""
    )
    return (
        f"A training costs {credits_per_minute:.2f} credits per minute it runs{many}, rounded up to a whole credit"
        " and never more than the estimate's upper figure, which is held when you submit; a failed or canceled "
        "training costs nothing."
    )


def cost_of(seconds: float, credits_per_minute: float) -> int:
    """Credits for `seconds` of GPU time (the rule above, before the cap): a run on N GPUs passes N x its seconds."""
    return max(0, math.ceil(round(seconds / 60 * credits_per_minute, 6)))


def history(session: Session, *, user_id: int, limit: int = 100, before: int | None = None) -> list[CreditEntryOut]:
    """The user's ledger, newest first (page with `before`: the last id seen)."""
    query = select(CreditEntry).where(CreditEntry.user_id == user_id)
    if before is not None:
        query = query.where(CreditEntry.id < before)
    rows = session.scalars(query.order_by(CreditEntry.id.desc()).limit(max(1, min(limit, 1000))))
    return [CreditEntryOut.model_validate(r) for r in rows]


@writes
def ensure_start(session: Session, *, user_id: int, amount: int) -> None:
    """Give a new user their starting credits once."""
    if amount > 0 and session.scalar(select(CreditEntry.id).where(CreditEntry.user_id == user_id).limit(1)) is None:
        session.add(CreditEntry(user_id=user_id, kind="grant", amount=amount, delta=amount, note="starting credits"))


def job_credits(session: Session, job: Job) -> dict | None:
    """held / charged / released for a job's hold (None for a job that holds nothing)."""
    if job.credit_hold_id is None:
        return None
    rows = session.execute(
        select(CreditEntry.kind, CreditEntry.amount).where(
            (CreditEntry.id == job.credit_hold_id) | (CreditEntry.hold_id == job.credit_hold_id)
        )
    ).all()
    amounts = {kind: amount for kind, amount in rows}
    return {"held": amounts.get("hold", 0), "charged": amounts.get("capture"), "released": amounts.get("release")}
