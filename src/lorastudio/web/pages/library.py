"""The LoRA Library page: search, filter, sort and page through the library; rate, share, download, delete
and import LoRAs. Every rule is the library service's; this module reads the request and renders."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse
from pydantic import ValidationError
from sqlalchemy.orm import Session

from lorastudio.engine import ADHERENCE_FIELDS, FAMILIES, IDENTITY_FIELDS, KINDS
from lorastudio.errors import LoraStudioError
from lorastudio.studio import library
from lorastudio.studio.context import StudioContext
from lorastudio.studio.datasets import Upload
from lorastudio.studio.library import LoraOut, LoraPage, LoraUpdate, RatingIn, VersionScores
from lorastudio.web.api.files import read_upload
from lorastudio.web.pages.common import PageUser, error_text, parse_form, render, studio_of
from lorastudio.web.state import Id, as_id

router = APIRouter(include_in_schema=False)

SORT_LABELS = {
    "created": "Date added",
    "name": "Name",
    "usage": "Usage",
    "success": "Success rate",
    "rating": "Rating",
    "training_time": "Training time",
}
PER_PAGE = (10, 20, 50, 100)
MAX_PAGE = 100_000
MAX_PER_PAGE = 100
REFRESH_ID = "library-refresh"  # the hidden element that re-fetches the table after an import


@dataclass(frozen=True)
class Filters:
    """What the table shows: search, filters, sort and page, as read from the query string."""

    q: str = ""
    kind: str = ""
    family: str = ""
    sort: str = "created"
    order: str = "desc"
    page: int = 1
    per_page: int = 20

    def url(self, **changes: Any) -> str:
        """/library with these filters (defaults left out), changed by changes."""
        defaults = asdict(Filters())
        kept = {k: v for k, v in asdict(replace(self, **changes)).items() if v != defaults[k]}
        return "/library" + ("?" + urlencode(kept) if kept else "")

    def sort_url(self, sort: str) -> str:
        """The URL a sortable column header links to: the other direction when already sorted by it."""
        if sort == self.sort:
            return self.url(order="asc" if self.order == "desc" else "desc", page=1)
        return self.url(sort=sort, order="asc" if sort == "name" else "desc", page=1)


def _choice(raw: Mapping[str, str], name: str, allowed, default: str, notes: list[str]) -> str:
    value = raw.get(name, "").strip() or default
    if value == default or value in allowed:
        return value
    notes.append(f"unknown {name} {value[:30]!r}: " + ("using the default" if default else f"showing every {name}"))
    return default


def _whole(raw: Mapping[str, str], name: str, default: int, high: int, notes: list[str]) -> int:
    value = raw.get(name, "").strip()
    if not value:
        return default
    if value.isascii() and value.isdigit() and len(value) <= 19 and 1 <= int(value) <= high:
        return int(value)
    notes.append(f"{name.replace('_', ' ')} {value[:20]!r} is not a number from 1 to {high}: using {default}")
    return default


def parse_filters(raw: Mapping[str, str]) -> tuple[Filters, list[str]]:
    """The filters from a query string, and what was not understood (bad values fall back to defaults)."""
    notes: list[str] = []
    q = "".join(ch for ch in raw.get("q", "") if ch.isprintable()).strip()[:100]
    kind = _choice(raw, "kind", KINDS, "", notes)
    family = _choice(raw, "family", FAMILIES, "", notes)
    sort = _choice(raw, "sort", library.SORTS, "created", notes)
    order = _choice(raw, "order", ("asc", "desc"), "desc", notes)
    page = _whole(raw, "page", 1, MAX_PAGE, notes)
    per_page = _whole(raw, "per_page", 20, MAX_PER_PAGE, notes)  # the API's range; the select offers PER_PAGE
    return Filters(q, kind, family, sort, order, page, per_page), notes


def human_duration(seconds: float | None) -> str:
    """Training time as people say it: "42 s", "1 min 12 s", "2 h 5 min"; "—" when unknown."""
    if seconds is None:
        return "—"
    total = round(seconds)
    if total < 60:
        return f"{total} s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def human_size(size: int) -> str:
    """A file size in KB or MB."""
    return f"{size / 2**10:.0f} KB" if size < 2**20 else f"{size / 2**20:.1f} MB"


def success_text(lora: LoraOut) -> str:
    """Success rate with its counts, e.g. "50% (1 of 2 kept)"; "—" until an image is judged."""
    if not lora.judged_count or lora.success_rate is None:
        return "—"
    return f"{round(100 * lora.success_rate)}% ({lora.kept_count} of {lora.judged_count} kept)"


def family_text(family: str | None) -> str:
    """A family's short name for the table (its label when short, else its id)."""
    if family is None:
        return "—"
    label = FAMILIES[family].label if family in FAMILIES else family
    return label if len(label) <= 12 else family


# A checkpoint's scores in words: the measure standing for identity and for prompt adherence (the first one
# scored, as the evaluation ranks by them), then the change from the base.
SCORE_WORDS = (
    ("identity", IDENTITY_FIELDS),
    ("prompt adherence", ADHERENCE_FIELDS),
    ("change", ("change",)),
)
MEASURE_NAMES = {
    "dino": "DINO",
    "clip_i": "CLIP-I",
    "hit_rate": "toy detectors",
    "clip_t": "CLIP-T",
    "adherence_hits": "toy detectors",
    "change": "",
}


def scores_text(scores: VersionScores | None) -> str:
    """A checkpoint's scores, e.g. "identity 0.82 (DINO) · prompt adherence 0.31 (CLIP-T) · change 0.12";
    "—" for a file no evaluation scored."""
    if scores is None:
        return "—"
    words = []
    for label, names in SCORE_WORDS:
        name = next((n for n in names if getattr(scores.score, n) is not None), None)
        if name is not None:
            source = MEASURE_NAMES[name]
            words.append(f"{label} {getattr(scores.score, name):.2f}" + (f" ({source})" if source else ""))
    return " · ".join(words) or "not scored"


HELPERS = {
    "scores_text": scores_text,
    "duration": human_duration,
    "size": human_size,
    "success": success_text,
    "family_text": family_text,
    "sort_labels": SORT_LABELS,
    "families": FAMILIES,
    "per_page_options": PER_PAGE,
}


def _render(request: Request, template: str, **context: Any) -> HTMLResponse:
    # Fragments answer htmx with 200 even for refusals: htmx does not swap a 4xx body, and the words must show.
    return render(request, template, **HELPERS, **context)


def _my_stars(session: Session, user: int, lora_ids: list[int]) -> dict[int, int]:
    return library.my_ratings(session, owner_id=user, lora_ids=lora_ids) if lora_ids else {}


def _may_change(session: Session, user: int, lora_id: int) -> bool:
    """Whether the user may share or delete it: the service's own rule, asked."""
    try:
        library.own_lora_row(session, owner_id=user, lora_id=lora_id)
    except LoraStudioError:
        return False
    return True


def row_context(session: Session, user: int, lora: LoraOut, stars: dict[int, int], **state: Any) -> dict:
    """What _library_row.html needs for one LoRA: it with its versions and alternatives, the user's stars, whether
    it is theirs."""
    if not lora.versions:  # list_loras leaves versions (and the newest one's alternatives) out
        lora = lora.model_copy(
            update={
                "versions": library.versions_of(session, lora.id),
                "alternatives": library.alternatives_of(session, lora.id),
            }
        )
    facts = {"lora": lora, "mine": stars.get(lora.id), "may_change": _may_change(session, user, lora.id)}
    return (
        {"open": False, "highlight": False, "error": None, "status": None, "desc_error": None, "desc_typed": None}
        | state
        | facts
    )


def _list(session: Session, user: int, filters: Filters, notes: list[str]) -> tuple[LoraPage, Filters]:
    """One page of the library; past the last page, the last page."""
    args = asdict(filters)
    try:
        page = library.list_loras(session, owner_id=user, **args)
        last = max(1, -(-page.total // filters.per_page))
        if filters.page > last:
            filters = replace(filters, page=last)
            page = library.list_loras(session, owner_id=user, **asdict(filters))
    except LoraStudioError as exc:
        notes.append(error_text(exc))
        page = LoraPage(items=[], total=0, page=1, per_page=filters.per_page)
    return page, filters


def _selected(raw: Mapping[str, str], notes: list[str]) -> int | None:
    value = raw.get("lora", "").strip()
    if not value:
        return None
    if (found := as_id(value)) is not None:
        return found
    notes.append(f"lora {value[:20]!r} is not a LoRA id")
    return None


def results_context(session: Session, user: int, raw: Mapping[str, str]) -> dict:
    """What _library_results.html needs: the page of rows, paging, the ?lora= one highlighted and opened."""
    filters, notes = parse_filters(raw)
    selected = _selected(raw, notes)
    page, filters = _list(session, user, filters, notes)
    ids = [lora.id for lora in page.items]
    stars = _my_stars(session, user, ids + ([selected] if selected else []))
    rows = [
        row_context(session, user, lora, stars, open=lora.id == selected, highlight=lora.id == selected)
        for lora in page.items
    ]
    pinned = None
    if selected and selected not in ids:  # not on this page: shown above it
        try:
            lora = library.get_lora(session, owner_id=user, lora_id=selected)
            pinned = row_context(session, user, lora, stars, open=True, highlight=True)
        except LoraStudioError as exc:
            notes.append(error_text(exc))
    pages = max(1, -(-page.total // filters.per_page))
    return {"f": filters, "total": page.total, "pages": pages, "rows": rows, "pinned": pinned, "notes": notes}


@router.get("/library", response_class=HTMLResponse)
def library_page(request: Request, user: PageUser) -> HTMLResponse:
    """The library: filters, import, and the table."""
    studio = studio_of(request)
    with studio.factory() as session:
        ctx = results_context(session, user, request.query_params)
    return _render(request, "library.html", **ctx, max_mb=studio.settings.max_upload_mb, refresh_id=REFRESH_ID)


@router.get("/library/results", response_class=HTMLResponse)
def library_results(request: Request, user: PageUser) -> HTMLResponse:
    """The table and paging for htmx; the address bar follows the filters (not after a refresh)."""
    with studio_of(request).factory() as session:
        ctx = results_context(session, user, request.query_params)
    response = _render(request, "_library_results.html", **ctx)
    if request.headers.get("hx-trigger") != REFRESH_ID:
        response.headers["HX-Push-Url"] = ctx["f"].url()
    return response


def _row(request: Request, session: Session, user: int, lora_id: int, **state: Any) -> HTMLResponse:
    """One LoRA's rows after an action; when it cannot be shown any more, the words why in its place."""
    session.rollback()  # a refused write's transaction ends here: no write lock is held while rendering
    try:
        lora = library.get_lora(session, owner_id=user, lora_id=lora_id)
    except LoraStudioError as exc:
        message = state.get("error") or error_text(exc)
        return _render(request, "_library_gone.html", lora_id=lora_id, message=message, failed=True)
    row = row_context(session, user, lora, _my_stars(session, user, [lora_id]), **state)
    return _render(request, "_library_row.html", row=row)


Expanded = Annotated[str, Form()]  # "1" when the row's details were open, to keep them open


@router.post("/library/{lora_id}/rate", response_class=HTMLResponse)
def rate(
    request: Request, user: PageUser, lora_id: Id, stars: Annotated[str, Form()] = "", expanded: Expanded = ""
) -> HTMLResponse:
    """Rate 1-5 stars (one rating per user: a new one replaces the old)."""
    data, _ = parse_form(RatingIn, {"stars": stars.strip()})
    error = None if data else "a rating is 1 to 5 stars"
    with studio_of(request).factory() as session:
        if data:
            try:
                library.rate(session, owner_id=user, lora_id=lora_id, stars=data.stars)
            except LoraStudioError as exc:
                error = error_text(exc)
        return _row(request, session, user, lora_id, open=expanded == "1", error=error)


@router.post("/library/{lora_id}/public", response_class=HTMLResponse)
def share(
    request: Request, user: PageUser, lora_id: Id, public: Annotated[str, Form()] = "", expanded: Expanded = ""
) -> HTMLResponse:
    """Share one's LoRA with every user (read-only for them) or take it back."""
    error, status = None, None
    with studio_of(request).factory() as session:
        try:
            library.set_public(session, owner_id=user, lora_id=lora_id, public=public == "true")
            status = "Shared: every user can now use it (read-only)." if public == "true" else "No longer shared."
        except LoraStudioError as exc:
            error = error_text(exc)
        return _row(request, session, user, lora_id, open=expanded == "1", error=error, status=status)


@router.post("/library/{lora_id}/description", response_class=HTMLResponse)
def describe(
    request: Request,
    user: PageUser,
    lora_id: Id,
    description: Annotated[str, Form(max_length=5000)] = "",
    expanded: Expanded = "",
) -> HTMLResponse:
    """Change the description of one's own LoRA; what is wrong with the words is said beside them, kept."""
    kept = {"open": expanded == "1", "desc_typed": description}
    with studio_of(request).factory() as session:
        try:
            data = LoraUpdate(description=description)
        except ValidationError:
            error = (
                f"a description is at most 300 characters (this one has {len(description)}): the look, in plain words"
            )
            return _row(request, session, user, lora_id, desc_error=error, **kept)
        try:
            library.update_lora(session, owner_id=user, lora_id=lora_id, data=data)
        except LoraStudioError as exc:
            return _row(request, session, user, lora_id, desc_error=error_text(exc), **kept)
        return _row(request, session, user, lora_id, open=expanded == "1", status="Description saved.")


@router.post("/library/{lora_id}/delete", response_class=HTMLResponse)
def delete(request: Request, user: PageUser, lora_id: Id, expanded: Expanded = "") -> HTMLResponse:
    """Delete one's LoRA; the service says whether its files are kept (a job or storyboard uses it)."""
    studio = studio_of(request)
    with studio.factory() as session:
        try:
            name = library.get_lora(session, owner_id=user, lora_id=lora_id).name
            answer = library.delete_lora(session, studio.store, owner_id=user, lora_id=lora_id)
        except LoraStudioError as exc:
            return _row(request, session, user, lora_id, open=expanded == "1", error=error_text(exc))
    message = answer["message"] if answer.get("files_kept") else "deleted"
    return _render(request, "_library_gone.html", lora_id=lora_id, name=name, message=message, failed=False)


@router.post("/library/{lora_id}/alternatives/{alternative_id}/switch", response_class=HTMLResponse)
def switch(request: Request, user: PageUser, lora_id: Id, alternative_id: Id) -> HTMLResponse:
    """Make a new version of one's LoRA from another checkpoint of its training; the row says which."""
    studio = studio_of(request)
    with studio.factory() as session:
        try:
            lora = library.switch_version(
                session, studio.store, owner_id=user, lora_id=lora_id, alternative_id=alternative_id
            )
        except LoraStudioError as exc:
            return _row(request, session, user, lora_id, open=True, error=error_text(exc))
        newest = lora.versions[-1]
        status = f"Switched: version {newest.version} is the checkpoint at step {newest.step}."
        return _row(request, session, user, lora_id, open=True, status=status)


def _import(studio: StudioContext, user: int, upload: Upload) -> LoraOut:
    with studio.factory() as session:
        return library.import_lora(session, studio.store, owner_id=user, data=upload.data, filename=upload.name)


@router.post("/library/import", response_class=HTMLResponse)
async def import_file(
    request: Request, user: PageUser, file: Annotated[UploadFile | None, File()] = None
) -> HTMLResponse:
    """Import a .safetensors LoRA; on success the table is refreshed (HX-Trigger: library-changed)."""
    studio = studio_of(request)
    form = {"max_mb": studio.settings.max_upload_mb}
    if file is None or not file.filename:
        return _render(request, "_library_import.html", import_error="choose a .safetensors file to import", **form)
    try:
        upload = await read_upload(file, studio.settings)
        lora = await run_in_threadpool(_import, studio, user, upload)  # reading the file is the engine's slow part
    except LoraStudioError as exc:
        return _render(request, "_library_import.html", import_error=error_text(exc), **form)
    response = _render(request, "_library_import.html", imported=lora, **form)
    response.headers["HX-Trigger"] = "library-changed"
    return response
