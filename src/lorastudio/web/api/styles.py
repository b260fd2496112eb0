"""Fighting Styles routes."""

from __future__ import annotations

from fastapi import APIRouter

from lorastudio.studio import datasets, styles
from lorastudio.studio.datasets import DatasetOut
from lorastudio.studio.styles import StyleIn, StyleOut
from lorastudio.web.state import Id, SessionDep, UserDep

router = APIRouter(prefix="/styles", tags=["Fighting Styles"])


@router.get("", summary="The four pre-built styles and your custom ones")
def list_styles(session: SessionDep, user: UserDep) -> list[StyleOut]:
    return styles.list_styles(session, owner_id=user)


@router.post("", status_code=201, summary="Create Custom Fighting Style (train it from 20-40 images)")
def create_style(data: StyleIn, session: SessionDep, user: UserDep) -> StyleOut:
    return styles.create_style(session, owner_id=user, data=data)


@router.get("/{style_id}", summary="One style")
def get_style(style_id: Id, session: SessionDep, user: UserDep) -> StyleOut:
    return styles.get_style(session, owner_id=user, style_id=style_id)


@router.delete("/{style_id}", status_code=204, summary="Delete a custom style")
def delete_style(style_id: Id, session: SessionDep, user: UserDep) -> None:
    styles.delete_style(session, owner_id=user, style_id=style_id)


@router.post("/{style_id}/dataset", status_code=201, summary="Train this style: a dataset prefilled for it")
def train_dataset(style_id: Id, session: SessionDep, user: UserDep) -> DatasetOut:
    style = styles.get_style_row(session, owner_id=user, style_id=style_id)
    return datasets.subject_dataset(session, owner_id=user, style=style, reuse=False)
