"""Whether a registered version can take a dataset's rows: the check a compression's
source and a search's ``init_from`` both pass before a job is queued."""

from __future__ import annotations

from app.contracts.signature import VersionConfig
from app.core.errors import InvalidInput
from app.tables import Dataset, ModelVersion


def outputs_of(dataset: Dataset) -> int:
    """The width of a model's output for the dataset: its classes, or one value."""
    return len(dataset.class_labels) if dataset.class_labels else 1


def check_fits(source: ModelVersion, dataset: Dataset, *, field: str) -> None:
    """A version's signature must take the dataset's rows and give its task's outputs."""
    expected = (len(dataset.feature_names), outputs_of(dataset))
    signature = source.signature
    encoding = (source.config or VersionConfig()).encoding
    if encoding is not None or dataset.encoding is not None:
        if encoding != dataset.encoding or source.task != dataset.task:
            raise InvalidInput(
                f"{field}: version {source.version} reads the columns of a "
                f"table through its own preprocessing; dataset {dataset.id} "
                "is not that table (use the dataset it was trained on)"
            )
        return
    if source.task != dataset.task or (signature.row_shape, signature.width) != (
        (expected[0],),
        expected[1],
    ):
        raise InvalidInput(
            f"{field}: version {source.version} takes "
            f"{list(signature.row_shape)} features and gives "
            f"{signature.output.shape[1:]} outputs ({source.task}); dataset "
            f"{dataset.id} has {expected[0]} features and {expected[1]} "
            f"outputs ({dataset.task})"
        )


def check_inputs(source: ModelVersion, dataset: Dataset, *, field: str) -> None:
    """A transfer keeps the body: the version must read the dataset's rows as they are."""
    encoding = (source.config or VersionConfig()).encoding
    if encoding is not None or dataset.encoding is not None:
        if encoding != dataset.encoding:
            raise InvalidInput(
                f"{field}: version {source.version} reads the columns of a "
                f"table through its own preprocessing; dataset {dataset.id} "
                "does not have those columns, so its body cannot be reused"
            )
        return
    if tuple(source.signature.row_shape) != (len(dataset.feature_names),):
        raise InvalidInput(
            f"{field}: version {source.version}'s body expects rows of "
            f"{list(source.signature.row_shape)} features; dataset "
            f"{dataset.id} has {len(dataset.feature_names)} (a transfer keeps "
            "the body, so the inputs must match)"
        )
