"""`lorastudio users ...` and `lorastudio credits ...`: people and their credits, from the server's shell."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from lorastudio.cli.common import JsonOpt, app, err, out, run_command, settings_from_env
from lorastudio.errors import Invalid

users_app = typer.Typer(help="Studio users (for accounts on: LORASTUDIO_ACCOUNTS=true).", no_args_is_help=True)
credits_app = typer.Typer(help="Credits: grant them, see a user's balance and ledger.", no_args_is_help=True)
app.add_typer(users_app, name="users")
app.add_typer(credits_app, name="credits")

UserArg = Annotated[str, typer.Argument(help="User name ('local' is the single user when accounts are off)")]


def _studio():
    from lorastudio.studio.context import open_studio

    return open_studio(settings_from_env())


def _user_id(studio, session, name: str) -> int:
    from lorastudio.studio.accounts import LOCAL_USER, user_id_by_name

    if name != LOCAL_USER:
        return user_id_by_name(session, name)
    return studio.local_user  # made with its starting credits, as `serve` would


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise Invalid("no terminal to ask for the password on: pipe it in with --password-stdin")
    first = typer.prompt("Password", hide_input=True)
    if typer.prompt("Again", hide_input=True) != first:
        raise Invalid("the two passwords differ; run the command again")
    return first


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="User name: 2-40 lower-case letters, digits, '.', '_', '-'")],
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from stdin")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Add a user with a password (asked twice, or read from stdin) and the starting credits."""

    def work() -> dict:
        from lorastudio.studio import accounts

        password = _read_password(password_stdin)
        studio = _studio()
        settings = studio.settings
        with studio.factory() as session:
            user = accounts.add_user(session, name=name, password=password, starting_credits=settings.starting_credits)
            if not settings.accounts:
                err.print("[yellow]Accounts are off: set LORASTUDIO_ACCOUNTS=true for users to log in.[/]")
            return user.model_dump(mode="json")

    run_command(as_json, work, lambda u: out.print(f"user {u['name']} (id {u['id']}) added, {u['balance']} credits"))


@users_app.command("list")
def users_list(as_json: JsonOpt = False) -> None:
    """Every user with their balance."""

    def work() -> list[dict]:
        from lorastudio.studio import accounts

        with _studio().factory() as session:
            return [u.model_dump(mode="json") for u in accounts.list_users(session)]

    def render(users: list[dict]) -> None:
        for u in users:
            state = " (disabled)" if u["disabled"] else ""
            out.print(f"{u['id']:>5}  {u['name']:<40} {u['balance']:>10} credits{state}")

    run_command(as_json, work, render)


def _set_disabled(name: str, disabled: bool, as_json: bool) -> None:
    def work() -> dict:
        from lorastudio.studio import accounts

        with _studio().factory() as session:
            return accounts.set_disabled(session, name=name, disabled=disabled).model_dump(mode="json")

    word = "disabled (logins ended, tokens revoked)" if disabled else "enabled"
    run_command(as_json, work, lambda u: out.print(f"user {u['name']} {word}"))


@users_app.command("disable")
def users_disable(name: UserArg, as_json: JsonOpt = False) -> None:
    """Disable a user: their logins end and their API tokens are revoked."""
    _set_disabled(name, True, as_json)


@users_app.command("enable")
def users_enable(name: UserArg, as_json: JsonOpt = False) -> None:
    """Enable a disabled user again (they make new tokens)."""
    _set_disabled(name, False, as_json)


@users_app.command("token")
def users_token(
    name: UserArg,
    label: Annotated[str, typer.Option(help="What the token is for")] = "cli",
    as_json: JsonOpt = False,
) -> None:
    """Make an API token for a user (shown once): send it as `Authorization: Bearer <token>`."""

    def work() -> dict:
        from lorastudio.studio import accounts

        studio = _studio()
        with studio.factory() as session:
            token, secret = accounts.create_token(session, user_id=_user_id(studio, session, name), name=label)
            return token.model_dump(mode="json") | {"token": secret}

    run_command(as_json, work, lambda t: out.print(t["token"]))


@credits_app.command("grant")
def credits_grant(
    name: UserArg,
    amount: Annotated[int, typer.Argument(help="Credits to add")],
    note: Annotated[str, typer.Option(help="Why (kept in the ledger)")] = "granted from the CLI",
    as_json: JsonOpt = False,
) -> None:
    """Add credits to a user's balance (an entry in their ledger)."""

    def work() -> dict:
        from lorastudio.studio import credits

        studio = _studio()
        with studio.factory() as session:
            user_id = _user_id(studio, session, name)
            entry = credits.grant(session, user_id=user_id, amount=amount, note=note)
            return {"user": name, "granted": entry.amount, "balance": credits.balance(session, user_id)}

    run_command(as_json, work, lambda r: out.print(f"{r['user']}: +{r['granted']} credits, balance {r['balance']}"))


@credits_app.command("history")
def credits_history(
    name: UserArg,
    limit: Annotated[int, typer.Option(help="How many entries", min=1, max=1000)] = 50,
    as_json: JsonOpt = False,
) -> None:
    """A user's balance and ledger, newest first."""

    def work() -> dict:
        from lorastudio.studio import credits

        studio = _studio()
        with studio.factory() as session:
            user_id = _user_id(studio, session, name)
            entries = credits.history(session, user_id=user_id, limit=limit)
            return {
                "balance": credits.balance(session, user_id),
                "entries": [e.model_dump(mode="json") for e in entries],
            }

    def render(r: dict) -> None:
        out.print(f"balance {r['balance']} credits")
        for e in r["entries"]:
            sign = f"{e['delta']:+d}" if e["delta"] else "  0"
            out.print(f"{e['created_at'][:19]}  {e['kind']:<8} {e['amount']:>8} ({sign})  {e['note']}", highlight=False)

    run_command(as_json, work, render)
