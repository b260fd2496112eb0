"""Accounts (Settings.accounts on): users with argon2 password hashes, cookie logins with a CSRF token,
and API tokens. Secrets are random and only their SHA-256 is stored, so a copy of the database logs
nobody in. Failed logins are counted in the database, so every HTTP process limits the same way."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from lorastudio.errors import Conflict, Invalid, NotFound, RateLimited, Unauthorized
from lorastudio.studio import credits
from lorastudio.studio.accounts.schemas import TokenOut, UserOut
from lorastudio.studio.accounts.users import LOCAL_USER
from lorastudio.studio.db import ApiToken, LoginAttempt, User, WebSession, now, writes

NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{1,39}")
MIN_PASSWORD = 10
FAIL_WINDOW = timedelta(minutes=15)
FAILS_PER_USER, FAILS_PER_CLIENT = 5, 20
TOKEN_PREFIX = "ls_"
_hasher = PasswordHasher()
# Verified when the user name is unknown, so a wrong name takes as long as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


def _sha(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _user_out(session: Session, user: User) -> UserOut:
    out = UserOut.model_validate(user)
    out.balance = credits.balance(session, user.id)
    return out


@writes
def add_user(session: Session, *, name: str, password: str, starting_credits: int) -> UserOut:
    """A new user with their starting credits."""
    if not NAME.fullmatch(name) or name == LOCAL_USER:
        raise Invalid("a user name is 2-40 characters: lower-case letters, digits, '.', '_' or '-', not 'local'")
    if len(password) < MIN_PASSWORD or len(password) > 1024:
        raise Invalid(f"a password is {MIN_PASSWORD} to 1024 characters")
    if session.scalar(select(User.id).where(User.name == name)) is not None:
        raise Conflict(f"user {name!r} exists already")
    user = User(name=name, password_hash=_hasher.hash(password))
    session.add(user)
    session.flush()
    credits.ensure_start(session, user_id=user.id, amount=starting_credits)
    return _user_out(session, user)


def list_users(session: Session) -> list[UserOut]:
    """Every user, oldest first."""
    return [_user_out(session, u) for u in session.scalars(select(User).order_by(User.id))]


def user_id_by_name(session: Session, name: str) -> int:
    """A user's id by name, or NotFound."""
    found = session.scalar(select(User.id).where(User.name == name))
    if found is None:
        raise NotFound(f"no user named {name[:80]!r}; `lorastudio users list` shows them")
    return found


@writes
def set_disabled(session: Session, *, name: str, disabled: bool = True) -> UserOut:
    """Disable (or enable) a user; disabling ends their logins and revokes their tokens."""
    user = session.get(User, user_id_by_name(session, name))
    user.disabled = disabled
    if disabled:
        session.execute(delete(WebSession).where(WebSession.user_id == user.id))
        session.execute(update(ApiToken).where(ApiToken.user_id == user.id).values(revoked=True))
    return _user_out(session, user)


@dataclass
class Login:
    """A new login: the cookie value and its CSRF token (both shown once)."""

    user: UserOut
    cookie: str
    csrf_token: str


def login(session: Session, *, name: str, password: str, client: str, session_days: int) -> Login:
    """Check a password and open a login; too many failures are refused for a while."""
    opened = _attempt(session, name=name, password=password, client=client, session_days=session_days)
    if opened is None:  # raised after the failed attempt is committed: it counts towards the limit
        raise Unauthorized("wrong user name or password (or the account is disabled)")
    return opened


@writes
def _attempt(session: Session, *, name: str, password: str, client: str, session_days: int) -> Login | None:
    """The login, or None after recording a failed attempt (RateLimited when there were too many)."""
    since = now() - FAIL_WINDOW
    name, client = name[:80], client[:64]
    by_user = session.scalar(select(func.count()).where(LoginAttempt.username == name, LoginAttempt.created_at > since))
    by_client = session.scalar(
        select(func.count()).where(LoginAttempt.client == client, LoginAttempt.created_at > since)
    )
    if by_user >= FAILS_PER_USER or by_client >= FAILS_PER_CLIENT:
        raise RateLimited("too many failed logins; wait 15 minutes and try again")
    user = session.scalar(select(User).where(User.name == name))
    try:
        _hasher.verify(user.password_hash if user and user.password_hash else _DUMMY_HASH, password)
        ok = user is not None and user.password_hash is not None and not user.disabled
    except (VerificationError, InvalidHashError):
        ok = False
    if not ok:
        session.add(LoginAttempt(username=name, client=client))
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    cookie, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    session.add(
        WebSession(
            user_id=user.id,
            session_hash=_sha(cookie),
            csrf_token=csrf,
            expires_at=now() + timedelta(days=session_days),
        )
    )
    session.execute(delete(WebSession).where(WebSession.expires_at < now()))  # old logins, tidied here
    return Login(user=_user_out(session, user), cookie=cookie, csrf_token=csrf)


@writes
def logout(session: Session, *, cookie: str) -> None:
    """End the login this cookie holds."""
    session.execute(delete(WebSession).where(WebSession.session_hash == _sha(cookie)))


def session_user(session: Session, cookie: str) -> tuple[int, str] | None:
    """(user id, CSRF token) of a live login, or None."""
    row = session.execute(
        select(WebSession.user_id, WebSession.csrf_token)
        .join(User, User.id == WebSession.user_id)
        .where(WebSession.session_hash == _sha(cookie), WebSession.expires_at > now(), ~User.disabled)
    ).first()
    return (row[0], row[1]) if row else None


def csrf_ok(expected: str, given: str | None) -> bool:
    """Whether the request carries the login's CSRF token (compared in constant time)."""
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())


@writes
def create_token(session: Session, *, user_id: int, name: str) -> tuple[TokenOut, str]:
    """A new API token; the secret is returned once and never stored."""
    name = name.strip()
    if not 0 < len(name) <= 80:
        raise Invalid("a token name is 1-80 characters (what it is for: 'render farm', 'laptop')")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(user_id=user_id, name=name, prefix=secret[:10], token_hash=_sha(secret))
    session.add(token)
    session.flush()
    return TokenOut.model_validate(token), secret


def list_tokens(session: Session, *, user_id: int) -> list[TokenOut]:
    """The user's tokens (names and prefixes, never the secrets)."""
    rows = session.scalars(select(ApiToken).where(ApiToken.user_id == user_id).order_by(ApiToken.id))
    return [TokenOut.model_validate(t) for t in rows]


@writes
def revoke_token(session: Session, *, user_id: int, token_id: int) -> TokenOut:
    """Revoke one of the user's tokens (another user's is not found)."""
    token = session.scalar(select(ApiToken).where(ApiToken.id == token_id, ApiToken.user_id == user_id))
    if token is None:
        raise NotFound(f"token {token_id} not found")
    token.revoked = True
    session.flush()
    return TokenOut.model_validate(token)


def token_user(session: Session, secret: str) -> int | None:
    """The user of a live (not revoked) token, or None; notes when it was last used."""
    token = session.scalar(
        select(ApiToken)
        .join(User, User.id == ApiToken.user_id)
        .where(ApiToken.token_hash == _sha(secret), ~ApiToken.revoked, ~User.disabled)
    )
    if token is None:
        return None
    if token.last_used_at is None or now() - token.last_used_at > timedelta(minutes=1):  # not a write per request
        _note_use(session, token.id)
    return token.user_id


@writes
def _note_use(session: Session, token_id: int) -> None:
    session.execute(update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=now()))
