from lorastudio.studio.datasets.schemas import CaptionIn, DatasetIn, DatasetOut
from lorastudio.studio.datasets.service import (
    add_files,
    create_dataset,
    delete_image,
    get_dataset,
    get_row,
    image_blob,
    images_of,
    list_datasets,
    materialize,
    set_caption,
    subject_dataset,
)
from lorastudio.studio.datasets.uploads import Upload, check_image_upload, clean_name

__all__ = [
    "CaptionIn",
    "DatasetIn",
    "DatasetOut",
    "Upload",
    "add_files",
    "check_image_upload",
    "clean_name",
    "create_dataset",
    "delete_image",
    "get_dataset",
    "get_row",
    "image_blob",
    "images_of",
    "list_datasets",
    "materialize",
    "set_caption",
    "subject_dataset",
]
