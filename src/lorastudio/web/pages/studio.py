"""Production Studio: the prompt with trigger-word completion, LoRA Selection (characters, fighting style,
pose, visual style; strength sliders with the guide's ranges; regions), warnings as the scene is composed,
seed (random / fixed / lock), batches, the results gallery (keep or reject), strength grids and recipes."""

from __future__ import annotations

import math
import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from lorastudio.engine import (
    CHARACTER,
    FIGHTING_STYLE,
    FLOW_SAMPLER,
    KINDS,
    SAMPLERS,
    base_family,
    family_label,
    recommended_strength,
)
from lorastudio.errors import LoraStudioError
from lorastudio.studio import characters, generation, jobs, library, styles
from lorastudio.studio.base_models import add_a_model, base_groups
from lorastudio.studio.generation import GenerationIn, RecipeIn, check_generation
from lorastudio.web.pages.common import PageUser, error_text, parse_form, render, studio_of
from lorastudio.web.pages.jobs import panel_context
from lorastudio.web.state import Id, as_id

router = APIRouter(include_in_schema=False)
# Kinds trained from their own page (a character's card, a style's): (words before the link, the page, the link's
# words), said under a kind with no LoRA yet; the others are trained from /train?kind=<name>.
KIND_PAGES = {
    CHARACTER.name: ("", "/characters", "Train a character"),
    FIGHTING_STYLE.name: ("Style trigger words also work on their own: ", "/styles", "Fighting Styles"),
}
REGIONS = [
    ("", "Whole picture"),
    ("left", "Left half"),
    ("right", "Right half"),
    ("top", "Top half"),
    ("bottom", "Bottom half"),
]
MAX_GRID = 6
RECENT = 6  # generations shown under Results when the page opens
# The scene's fields a URL may carry (studio.js keeps the address bar in step with the form).
SCENE_FIELDS = (
    "prompt",
    "negative_prompt",
    "seed_mode",
    "seed",
    "n",
    "steps",
    "cfg_scale",
    "sampler",
    "base",
    "width",
    "height",
    "grid_strengths",
)


async def _form(request: Request) -> dict[str, str]:
    return {k: v for k, v in (await request.form()).items() if isinstance(v, str) and len(v) <= 4000}


def _number(form: dict, key: str, errors: dict, cast=float) -> Any:
    text = form.get(key, "").strip()
    if not text:
        return None
    try:
        return cast(text)
    except ValueError:
        errors[key] = f"{text[:20]!r} is not a {'whole ' if cast is int else ''}number"
        return None


def selection_from_form(form: dict[str, str], errors: dict) -> list[dict]:
    """The chosen LoRAs (use_ID checked) with their slider strength and region."""
    chosen = []
    for key in form:
        if key.startswith("use_") and (lora_id := as_id(key[4:])) is not None:
            strength = _number(form, f"strength_{lora_id}", errors)
            chosen.append({"lora_id": lora_id, "strength": strength, "region": form.get(f"region_{lora_id}") or None})
    return chosen


def generation_from_form(form: dict[str, str]) -> tuple[GenerationIn | None, dict[str, str], dict]:
    """The GenerationIn the form asks for (the seed settled by its mode), the field errors, and the seed."""
    errors: dict[str, str] = {}
    mode = form.get("seed_mode", "random")
    seed = _number(form, "seed", errors, int)
    if mode == "fixed" and seed is None and "seed" not in errors:
        errors["seed"] = "type the seed to use, or choose Random"
    if mode == "random" or (mode == "lock" and seed is None):
        seed = secrets.randbelow(2**32)  # picked here, so the page can show (and lock) it at once
    fields = {
        "prompt": form.get("prompt", ""),
        "negative_prompt": form.get("negative_prompt", ""),
        "base": form.get("base", ""),
        "sampler": form.get("sampler", ""),
        "seed": seed,
        "n": _number(form, "n", errors, int),
        "steps": _number(form, "steps", errors, int),
        "cfg_scale": _number(form, "cfg_scale", errors),
        "width": _number(form, "width", errors, int),
        "height": _number(form, "height", errors, int),
        "add_triggers": form.get("add_triggers") == "on",
        "loras": selection_from_form(form, errors),
    }
    data, more = parse_form(GenerationIn, {k: v for k, v in fields.items() if v is not None})
    errors |= more
    return (None if errors else data), errors, {"mode": mode, "seed": seed}


def _completions(session, user: int, loras: list) -> list[dict]:
    words = [
        {"word": c.trigger, "label": f"character: {c.name}"} for c in characters.list_characters(session, owner_id=user)
    ]
    words += [
        {"word": s.trigger, "label": f"fighting style: {s.name}"} for s in styles.list_styles(session, owner_id=user)
    ]
    words += [{"word": t, "label": f"LoRA: {lora.name}"} for lora in loras for t in lora.trigger_words]
    seen: set[str] = set()
    return [w for w in words if not (w["word"].lower() in seen or seen.add(w["word"].lower()))]


def _prefill(request: Request, session, user: int) -> tuple[dict, dict]:
    """The form's first values: a recipe's (?recipe=ID), a LoRA to use (?lora=ID), a style (?style=word), or
    the scene the address bar kept (?prompt=...&use_ID=on&strength_ID=...: a reload loses nothing)."""
    q = request.query_params
    form = {
        "prompt": "",
        "seed_mode": "random",
        "n": "2",
        "steps": "20",
        "cfg_scale": "",  # the base's family's (7 on SD, 3.5 guidance on FLUX.1): the field's placeholder says it
        "add_triggers": "on",
        "sampler": "DPM++ 2M Karras",
        "grid_strengths": "0.4, 0.6, 0.8, 1.0",
    }
    selected: dict[int, dict] = {}
    if (rid := as_id(q.get("recipe"))) is not None:
        saved = generation.get_row(session, owner_id=user, recipe_id=rid).settings
        form |= {
            "prompt": saved.get("prompt_template", "").replace("{action}", "").strip(" ,"),
            "negative_prompt": saved.get("negative_prompt", ""),
            "sampler": saved.get("sampler", form["sampler"]),
            "steps": str(saved.get("steps", 20)),
            "cfg_scale": "" if saved.get("cfg_scale") is None else str(saved["cfg_scale"]),
        }
        if saved.get("base"):
            form["base"] = saved["base"]  # the family its LoRAs are for
        if saved.get("seed") is not None:
            form |= {"seed_mode": "fixed", "seed": str(saved["seed"])}
        selected = {s["lora_id"]: s for s in saved.get("loras", [])}
    if (lid := as_id(q.get("lora"))) is not None:
        lora = library.get_lora(session, owner_id=user, lora_id=lid)
        selected[lora.id] = {"lora_id": lora.id, "strength": None, "region": None}
        form["prompt"] = form["prompt"] or ", ".join(lora.trigger_words[:1])
    if style := q.get("style", "")[:64]:
        form["prompt"] = f"epic fight scene, {style}, two fighters in combat"
    if "prompt" in q:
        form, selected = _scene_from_url(q, form)
    return form, selected


def _scene_from_url(q, form: dict) -> tuple[dict, dict]:
    """The scene studio.js wrote into the query string; what does not parse is left at its default."""
    form = form | {k: q[k][:2000] for k in SCENE_FIELDS if k in q} | {"add_triggers": q.get("add_triggers", "")}
    regions = {value for value, _ in REGIONS}
    selected: dict[int, dict] = {}
    for key in q:
        if key.startswith("use_") and (lora_id := as_id(key[4:])) is not None:
            try:
                strength: float | None = float(q.get(f"strength_{lora_id}", ""))
            except ValueError:
                strength = None
            if strength is not None and not math.isfinite(strength):
                strength = None
            region = q.get(f"region_{lora_id}") or None
            selected[lora_id] = {
                "lora_id": lora_id,
                "strength": strength,
                "region": region if region in regions else None,
            }
    return form, selected


def _strength_hint(kind: str, family: str | None) -> str:
    """The words beside a kind's sliders: the strength its LoRAs open at on this base model."""
    rec = recommended_strength(kind, family)
    if kind in KINDS and rec == KINDS[kind].recommended_strength:
        return f"recommended {rec:g}; the guide: {KINDS[kind].strength_range}"
    return f"recommended {rec:g} on this base model"


def _recent_generations(session, user: int) -> list[dict]:
    """The newest generations' panels, so a reload keeps the results gallery."""
    found = jobs.list_jobs(session, owner_id=user, type="generation", limit=RECENT)
    return [panel_context(session, owner_id=user, job_id=job.id) for job in found]


def chosen_base(groups: list[dict], name: str | None) -> dict | None:
    """The ready base model the scene names (by name only: never a path), else the studio's default one."""
    models = [m for g in groups for m in g["models"]]
    return next((m for m in models if m["name"] == name), None) or next((m for m in models if m["default"]), None)


@router.get("/studio", response_class=HTMLResponse)
def studio_page(request: Request, user: PageUser) -> HTMLResponse:
    """The Studio, with the scene the URL carries and the newest generations under Results. The LoRAs, strengths,
    CFG and samplers offered are those of the scene's base model's family (choosing another base reloads)."""
    studio = studio_of(request)
    groups = base_groups(studio.settings)
    with studio.factory() as session:
        form, selected = _prefill(request, session, user)
        base = chosen_base(groups, form.get("base"))
        family = base["family"] if base else base_family(studio.settings.default_base_model, studio.settings)
        loras = library.list_loras(session, owner_id=user, family=family, sort="usage", per_page=100).items
        completions = _completions(session, user, loras)
        saved = generation.list_recipes(session, owner_id=user)
        recent = _recent_generations(session, user)
    sections = [(kind, [lora for lora in loras if lora.kind == kind.name]) for kind in KINDS.values()]
    # A LoRA opens at the strength its file records, else at its kind's on this base: the hint says the same.
    strengths = {
        lora.id: lora.recommended_strength
        if lora.recommended_strength is not None
        else recommended_strength(lora.kind, lora.family or family)
        for lora in loras
    }
    hints = {kind: _strength_hint(kind, family) for kind in KINDS}
    flow = bool(base and base["flow"])
    if flow and form.get("sampler") != FLOW_SAMPLER:
        form["sampler"] = FLOW_SAMPLER  # the one it runs; the others are shown, disabled, with the reason
    return render(
        request,
        "studio.html",
        form=form,
        selected=selected,
        sections=sections,
        strengths=strengths,
        hints=hints,
        kind_pages=KIND_PAGES,
        regions=REGIONS,
        completions=completions,
        recipes=saved,
        samplers=list(SAMPLERS),
        base_groups=groups,
        base=base or {"name": "", "label": family_label(family), "cfg": 7.0, "flow": False},
        flow_sampler=FLOW_SAMPLER if flow else None,
        add_a_model=add_a_model(),
        recent=recent,
    )


@router.post("/studio/check", response_class=HTMLResponse)
async def check(request: Request, user: PageUser) -> HTMLResponse:
    """Warnings for the scene as composed so far (the form posts itself here as it changes)."""
    studio = studio_of(request)
    form = await _form(request)
    data, errors, _ = generation_from_form(form | {"prompt": form.get("prompt") or " "})
    result, problem = None, None
    if data is not None:
        with studio.factory() as session:
            try:
                result = check_generation(session, studio.settings, owner_id=user, data=data)
            except LoraStudioError as exc:
                problem = error_text(exc)
    return render(request, "_scene_check.html", result=result, errors=errors, problem=problem)


@router.post("/studio/generate", response_class=HTMLResponse)
async def generate(request: Request, user: PageUser) -> HTMLResponse:
    """Queue the scene: its live panel goes on top of the results; field errors go beside the button."""
    studio = studio_of(request)
    data, errors, seed = generation_from_form(await _form(request))
    if data is None:
        return render(request, "_submit_error.html", status_code=422, errors=errors, problem=None)
    with studio.factory() as session:
        try:
            job = generation.submit_generation(session, studio.settings, owner_id=user, data=data)
        except LoraStudioError as exc:
            return render(request, "_submit_error.html", status_code=422, errors={}, problem=error_text(exc))
        panels = [panel_context(session, owner_id=user, job_id=job.id) | {"label": None}]
    return _results(request, panels, seed)


@router.post("/studio/grid", response_class=HTMLResponse)
async def strength_grid(request: Request, user: PageUser) -> HTMLResponse:
    """A strength grid: the same seed with no LoRA, then each chosen LoRA at every strength listed."""
    studio = studio_of(request)
    form = await _form(request)
    data, errors, seed = generation_from_form(
        form | {"seed_mode": "lock" if form.get("seed_mode") == "random" else form.get("seed_mode", "")}
    )
    strengths = _strengths(form.get("grid_strengths", ""), errors)
    if data is not None and not data.loras:
        errors["loras"] = "a strength grid needs at least one LoRA chosen in LoRA Selection"
    if data is None or errors:
        return render(request, "_submit_error.html", status_code=422, errors=errors, problem=None)
    rows = [("no LoRA", data.model_copy(update={"loras": [], "add_triggers": False}))]
    for s in strengths:
        rows.append(
            (
                f"strength {s:g}",
                data.model_copy(update={"loras": [x.model_copy(update={"strength": s}) for x in data.loras]}),
            )
        )
    cells = []
    with studio.factory() as session:
        try:
            for label, scene in rows:
                job = generation.submit_generation(session, studio.settings, owner_id=user, data=scene)
                cells.append(_grid_cell(session, user, job.id, label))
        except LoraStudioError as exc:
            return render(request, "_submit_error.html", status_code=422, errors={}, problem=error_text(exc))
    return _results(request, [], seed, rows=cells)


def _grid_cell(session, user: int, job_id: int, label: str) -> dict:
    job = jobs.get_job(session, owner_id=user, job_id=job_id)
    return {"label": label, "job": job, "images": generation.list_images(session, owner_id=user, job_id=job_id)}


@router.get("/studio/grid-row/{job_id}", response_class=HTMLResponse)
def grid_row(
    request: Request, user: PageUser, job_id: Id, label: Annotated[str, Query(max_length=40)] = ""
) -> HTMLResponse:
    """One row of a strength grid, asked again each second until its job ends (then it shows the images)."""
    with studio_of(request).factory() as session:
        row = _grid_cell(session, user, job_id, label)
    return render(request, "_grid_row.html", row=row)


def _strengths(text: str, errors: dict) -> list[float]:
    try:
        values = [float(x) for x in text.replace(";", ",").split(",") if x.strip()] or [0.4, 0.6, 0.8, 1.0]
    except ValueError:
        errors["grid_strengths"] = "strengths are numbers separated by commas, e.g. 0.4, 0.6, 0.8, 1.0"
        return []
    if len(values) > MAX_GRID or any(not -4 <= v <= 4 for v in values):
        errors["grid_strengths"] = f"up to {MAX_GRID} strengths, each between -4 and 4"
    return values


def _results(request: Request, panels: list[dict], seed: dict, rows: list[dict] | None = None) -> HTMLResponse:
    response = render(request, "_studio_results.html", panels=panels, seed=seed, rows=rows)
    response.headers["HX-Retarget"] = "#results"
    response.headers["HX-Reswap"] = "afterbegin"
    return response


@router.post("/studio/recipes", response_class=HTMLResponse)
async def save_recipe(request: Request, user: PageUser) -> HTMLResponse:
    """'Save LoRA settings': the chosen LoRAs with strengths and regions, the prompt and sampler settings."""
    form = await _form(request)
    data, errors, _ = generation_from_form(form | {"seed_mode": form.get("seed_mode", "random")})
    error = next(iter(errors.values()), None)
    with studio_of(request).factory() as session:
        if data is not None:
            recipe, more = parse_form(
                RecipeIn,
                {
                    "name": form.get("recipe_name", ""),
                    "loras": [s.model_dump() for s in data.loras],
                    "prompt_template": data.prompt,
                    "base": data.base,
                    "negative_prompt": data.negative_prompt,
                    "sampler": data.sampler,
                    "seed": data.seed if form.get("seed_mode") != "random" else None,
                    "steps": data.steps,
                    "cfg_scale": data.cfg_scale,
                },
            )
            error = more and ("name: " + more["name"] if "name" in more else next(iter(more.values())))
            if recipe is not None:
                try:
                    generation.save_recipe(session, studio_of(request).settings, owner_id=user, data=recipe)
                except LoraStudioError as exc:
                    error = error_text(exc)
        saved = generation.list_recipes(session, owner_id=user)
    return render(request, "_recipes.html", recipes=saved, recipe_error=error)


@router.post("/studio/recipes/{recipe_id}/delete", response_class=HTMLResponse)
def delete_recipe(request: Request, user: PageUser, recipe_id: Id) -> HTMLResponse:
    with studio_of(request).factory() as session:
        generation.delete_recipe(session, owner_id=user, recipe_id=recipe_id)
        saved = generation.list_recipes(session, owner_id=user)
    return render(request, "_recipes.html", recipes=saved, recipe_error=None)
