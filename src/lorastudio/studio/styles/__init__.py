from lorastudio.studio.styles.schemas import StyleIn, StyleOut
from lorastudio.studio.styles.service import (
    PREBUILT,
    create_style,
    delete_style,
    get_style,
    get_style_row,
    list_styles,
    seed_prebuilt,
    taken_triggers,
)

__all__ = [
    "PREBUILT",
    "StyleIn",
    "StyleOut",
    "create_style",
    "delete_style",
    "get_style",
    "get_style_row",
    "list_styles",
    "seed_prebuilt",
    "taken_triggers",
]
