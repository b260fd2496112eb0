"""The accounts area's data in and out (pydantic), every field described: the HTTP API's schema too."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from lorastudio.studio.db import Out


class UserOut(Out):
    """A user (accounts on), or the local user."""

    id: int = Field(description="User id")
    name: str = Field(description="User name")
    disabled: bool = Field(description="Disabled users cannot log in")
    created_at: datetime = Field(description="When the account was made (UTC)")
    balance: int | None = Field(default=None, description="Credits available")


class LoginIn(BaseModel):
    """A login with user name and password."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    name: str = Field(min_length=1, max_length=80, description="User name", examples=["maya"])
    password: str = Field(min_length=1, max_length=1024, description="Password")


class MeOut(BaseModel):
    """Who the request acts for."""

    user: UserOut = Field(description="The user")
    accounts: bool = Field(description="Whether accounts are on (off: the single local user, no login)")
    csrf_token: str | None = Field(
        default=None, description="Send as X-CSRF-Token with every write made with the login cookie"
    )


class TokenIn(BaseModel):
    """A new API token."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    name: str = Field(min_length=1, max_length=80, description="What it is for", examples=["render farm"])


class TokenOut(Out):
    """An API token, without its secret."""

    id: int = Field(description="Token id")
    name: str = Field(description="What it is for")
    prefix: str = Field(description="Its first characters, to tell tokens apart")
    revoked: bool = Field(description="Revoked tokens are refused")
    last_used_at: datetime | None = Field(description="Last used (UTC, to the minute)")
    created_at: datetime = Field(description="Created (UTC)")


class TokenCreated(TokenOut):
    """A new token with its secret, shown this once."""

    token: str = Field(description="The secret: send as `Authorization: Bearer <token>`; it is not shown again")
