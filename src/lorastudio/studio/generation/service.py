"""Generation jobs (scenes): a prompt, LoRAs from the library with strengths and regions, seed, size,
sampler, batch. Images are stored with their PNG parameters; each can be kept or rejected, which feeds
the success rate of every LoRA the job used. Usage is counted once per job per LoRA."""

from __future__ import annotations

import io
import re

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from lorastudio.config import Settings
from lorastudio.engine import (
    LORA_TAG,
    GenerateRequest,
    LoraSelection,
    a1111_parameters,
    base_family,
    family_label,
    flow_sampler,
    get_family,
    has_word,
    parse_lora_tags,
)
from lorastudio.errors import FamilyMismatch, Invalid, NotFound, format_validation_error
from lorastudio.studio import credits, jobs, library
from lorastudio.studio.base_models import check_base
from lorastudio.studio.db import FightingStyle, Image, Job, Lora, write_transaction, writes
from lorastudio.studio.generation.identity import score_images
from lorastudio.studio.generation.schemas import GenerationIn, ImageOut, LibrarySelection
from lorastudio.studio.jobs import (
    GenerationJob,
    GenerationResult,
    JobOut,
    JobProgress,
    JobRun,
    check_key,
    generation_memory_mb,
    once,
)


def image_out(image: Image) -> ImageOut:
    """The API form of an image (its `url` is the web face's to write: web/urls.py)."""
    return ImageOut.model_validate(image)


def _styles_in_prompt(session: Session, owner_id: int, prompt: str) -> list[FightingStyle]:
    visible = (FightingStyle.owner_id == owner_id) | FightingStyle.owner_id.is_(None)
    return [s for s in session.scalars(select(FightingStyle).where(visible)) if has_word(prompt, s.trigger)]


def prompt_tags(session: Session, *, owner_id: int, prompt: str, family: str | None) -> tuple[str, list]:
    """A1111 `<lora:name:weight>` tags taken out of the prompt and looked up in the user's library (by name,
    trigger word or id; never a file). An unknown name or a bad weight is Invalid, naming the tag."""
    clean, tags = parse_lora_tags(prompt)
    while LORA_TAG.search(clean):  # a tag left whole only by removing one hidden inside it
        clean, more = parse_lora_tags(clean)
        tags += more
    found = []
    for tag in tags:
        try:
            lora = library.find_lora(session, owner_id=owner_id, name=tag.lora, family=family)
        except Invalid as exc:
            raise Invalid(f"<lora:{tag.lora[:60]}:{tag.strength:g}> in the prompt: {exc}") from exc
        found.append(LibrarySelection(lora_id=lora.id, strength=tag.strength))
    if tags and not clean.strip():
        raise Invalid("the prompt is empty once its <lora:...> tags are taken out; describe the scene too")
    return clean, found


def resolve(session: Session, settings: Settings, *, owner_id: int, data: GenerationIn) -> GenerationJob:
    """The scene as the engine will run it (LoRA files by blob key), validated. The base is one of the studio's
    models; prompt tags are library LoRAs; a fighting style named in the prompt brings its LoRA for this base when
    it has one, otherwise its trigger expands to its phrases."""
    base = check_base(settings, data.base)
    family = base_family(base, settings)
    prompt, tagged = prompt_tags(session, owner_id=owner_id, prompt=data.prompt, family=family)
    selections = [*data.loras, *tagged]
    chosen = [s.lora_id for s in selections]
    if len(set(chosen)) != len(chosen):
        twice = next(i for i in chosen if chosen.count(i) > 1)
        name = library.get_lora_row(session, owner_id=owner_id, lora_id=twice).name
        raise Invalid(
            f"{name[:80]!r} is selected twice (in LoRA Selection or a prompt tag); give it once with the "
            "strength and region you want"
        )
    chosen_styles = {session.get(Lora, s.lora_id).style_id for s in selections if session.get(Lora, s.lora_id)}
    for style in _styles_in_prompt(session, owner_id, prompt):
        if style.id in chosen_styles:
            continue
        lora = session.scalar(
            select(Lora).where(
                Lora.style_id == style.id,
                Lora.family == family,
                ~Lora.deleted,
                (Lora.owner_id == owner_id) | Lora.owner_id.is_(None),
            )
        )
        if lora is not None:
            if lora.id not in chosen:
                selections.append(
                    LibrarySelection(lora_id=lora.id, strength=lora.recommended_strength or style.recommended_strength)
                )
        elif style.phrases:
            words = ", ".join([style.trigger, *style.phrases])
            prompt = re.sub(rf"(?<![\w]){re.escape(style.trigger)}(?![\w])", words, prompt, count=1, flags=re.I)
    fam = get_family(family)
    if fam is not None and fam.is_flow:
        flow_sampler(data.sampler, fam.label)  # an SD sampler on a flow-matching base: refused at submit
    chosen_loras: list[LoraSelection] = []
    explicit = len(data.loras) + len(tagged)
    for i, sel in enumerate(selections):
        version = library.version_row(session, owner_id=owner_id, lora_id=sel.lora_id, version=sel.version)
        if i >= explicit and any(x.lora == version.blob for x in chosen_loras):
            continue  # a style's own file, already chosen by hand (an imported copy): once, as chosen
        row = session.get(Lora, sel.lora_id)
        if family and row.family and row.family != family:  # the worker's fit check would refuse it after the queue
            raise FamilyMismatch(
                f"{row.name[:80]!r} was trained for {family_label(row.family)}, but the base model is "
                f"{family_label(family)}; pick a LoRA of that family or another base model"
            )
        # The one conversion from the library's selection to the engine's: the file by its blob key (the
        # worker puts its own path there), the library's name, description, id and version beside it.
        chosen_loras.append(
            LoraSelection(
                lora=version.blob,
                strength=sel.strength,
                region=sel.region,
                name=library.tag_name(row),
                description=row.description or "",
                lora_id=row.id,
                version=version.version,
            )
        )
    try:  # every setting but the prompt, the base and the LoRAs is the engine's own field, copied as given
        settings_given = data.model_dump(exclude={"prompt", "base", "loras"})
        return GenerationJob(**settings_given, prompt=prompt, base=base, loras=chosen_loras, prompt_tags=False)
    except ValidationError as exc:  # a bad request is a 422 at submit, not a failed job later
        raise Invalid(format_validation_error(exc, "generation settings")) from exc


def engine_request(request: GenerationJob, path_of) -> GenerateRequest:
    """The engine's request for a stored scene: each LoRA's blob key replaced by `path_of(blob)`."""
    loras = [x.model_copy(update={"lora": path_of(x.lora)}) for x in request.loras]
    stored = request.model_dump(exclude={"type", "loras"})
    # Tags were resolved at submit: no text a user typed (nor a style's phrase) is ever opened as a file.
    return GenerateRequest.model_validate(stored | {"loras": loras, "prompt_tags": False})


def add_generation(
    session: Session,
    *,
    owner_id: int,
    request: GenerationJob,
    family: str | None,
    memory_mb: int | None,
    why: str = "",
) -> Job:
    """Queue a resolved scene (a submit or a re-roll). It costs nothing (the guide: using trained LoRAs has no
    extra cost) but is recorded in the ledger as a hold of 0."""
    job = jobs.add_job(session, owner_id=owner_id, request=request, family=family, memory_mb=memory_mb)
    session.flush()
    note = f"generation job {job.id} ({why + ', ' if why else ''}no cost)"
    job.credit_hold_id = credits.hold(session, user_id=owner_id, amount=0, job_id=job.id, note=note)
    return job


def submit_generation(
    session: Session, settings: Settings, *, owner_id: int, data: GenerationIn, idempotency_key: str | None = None
) -> JobOut:
    """Check and queue a scene (free: `add_generation`); a repeated Idempotency-Key answers the first submit."""
    check_key(idempotency_key)
    request = resolve(session, settings, owner_id=owner_id, data=data)

    def make() -> JobOut:
        family = base_family(request.base, settings)
        need = generation_memory_mb(family, request.base, width=request.width, height=request.height, batch=request.n)
        return jobs.to_out(
            session, add_generation(session, owner_id=owner_id, request=request, family=family, memory_mb=need)
        )

    return once(session, user_id=owner_id, key=idempotency_key, scope="generations", body=data, out=JobOut, make=make)


def run_generation(run: JobRun) -> None:
    """Render a claimed generation job; its images, usage counts and end are one commit."""
    from lorastudio.engine import generate

    store, request = run.store, run.request
    for x in request.loras:
        if not store.exists(x.lora):
            raise Invalid("a LoRA file this scene uses is gone from the store; pick the LoRA again")
    req = engine_request(request, lambda blob: str(store.path(blob)))

    def on_progress(event) -> None:
        run.progress(JobProgress(phase="generate", step=event.step, total=event.total), False)

    result = generate(run.cache, req, on_progress=on_progress, should_stop=run.should_stop)
    blobs = [
        (store.put_bytes(_png_bytes(image, params)), params)
        for image, params in zip(result.images, result.params, strict=True)
    ]
    identity: list[list[dict] | None] = [None] * len(blobs)
    if not result.stopped:  # measured before the write lock is taken: embedding takes a while on a big scorer
        identity = score_images(
            run.settings, run.factory, store, owner_id=run.job.owner_id, request=request, images=result.images
        )
    with write_transaction(run.factory) as session:
        if result.stopped:
            run.finish(session, "canceled", None)
            return
        image_ids = []
        for (blob, params), scores in zip(blobs, identity, strict=True):
            row = Image(
                owner_id=run.job.owner_id,
                job_id=run.job.id,
                blob=blob,
                seed=str(params["seed"]),
                params=params,
                identity=scores,
            )
            session.add(row)
            session.flush()
            image_ids.append(row.id)
        library.record_usage(session, job_id=run.job.id, lora_ids=[x.lora_id for x in request.loras if x.lora_id])
        run.finish(
            session,
            "succeeded",
            GenerationResult(images=image_ids, warnings=result.warnings, seconds=round(result.seconds, 3)),
        )


def _png_bytes(image, params: dict) -> bytes:
    import json

    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("parameters", a1111_parameters(params))
    info.add_text("lorastudio", json.dumps(params, sort_keys=True))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def get_image_row(session: Session, *, owner_id: int, image_id: int) -> Image:
    """The row, or NotFound (another user's image is not found either)."""
    image = session.scalar(select(Image).where(Image.id == image_id, Image.owner_id == owner_id))
    if image is None:
        raise NotFound(f"image {image_id} not found")
    return image


def list_images(session: Session, *, owner_id: int, job_id: int) -> list[ImageOut]:
    """The images of one of the user's jobs."""
    jobs.get_row(session, owner_id=owner_id, job_id=job_id)
    rows = session.scalars(select(Image).where(Image.job_id == job_id).order_by(Image.id))
    return [image_out(i) for i in rows]


@writes
def set_verdict(session: Session, *, owner_id: int, image_id: int, verdict: str | None) -> ImageOut:
    """Keep or reject an image (or undo); the success rate of the job's LoRAs follows."""
    image = get_image_row(session, owner_id=owner_id, image_id=image_id)
    library.record_verdict(session, job_id=image.job_id, old=image.verdict, new=verdict)
    image.verdict = verdict
    return image_out(image)
