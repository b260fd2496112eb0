from lorastudio.studio.characters.schemas import CharacterIn, CharacterOut, CharacterUpdate
from lorastudio.studio.characters.service import (
    create_character,
    delete_character,
    get_character,
    get_row,
    list_characters,
    set_reference,
    update_character,
)

__all__ = [
    "CharacterIn",
    "CharacterOut",
    "CharacterUpdate",
    "create_character",
    "delete_character",
    "get_character",
    "get_row",
    "list_characters",
    "set_reference",
    "update_character",
]
