"""Seeded train / validation / test splits, stratified by class for classification, and the
cross-validation folds cut from them. Rows with the same feature values (a request logged
many times, a row repeated in a file) form one group, and a group is never cut: the same
row can never be trained on and then scored as if unseen."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from app.contracts.enums import Task
from app.core.errors import InvalidInput

VALIDATION_FRACTION = 0.15
TEST_FRACTION = 0.15
MIN_ROWS = 10
MIN_ROWS_PER_CLASS = 3  # one each for train, validation and test
MIN_DISTINCT_ROWS = 3  # one group each for train, validation and test
HASH_ROWS = 8192  # rows hashed or compared at a time (memory: this many rows, a few times)
_FNV_OFFSET, _FNV_PRIME = np.uint64(0xCBF29CE484222325), np.uint64(0x100000001B3)


@dataclass(frozen=True)
class SplitIndices:
    """Row indices of each split; disjoint, together covering every row, and never sharing
    a group of identical feature rows (``groups``: each row's group, named by its first row)."""

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray
    groups: np.ndarray


def _canonical(rows: np.ndarray) -> np.ndarray:
    """float32 rows as comparable words: -0 as 0, every NaN as one NaN."""
    words = (rows + np.float32(0.0)).view(np.uint32)
    words[np.isnan(rows)] = np.float32("nan").view(np.uint32)
    return words


def row_groups(features: np.ndarray) -> np.ndarray:
    """Each row's group: the index of the first row whose float32 features are exactly the
    same. Rows are hashed a chunk at a time (64 bits), and every row a hash puts in another
    row's group is then compared with that row, value by value: two different rows that
    share a hash (made on purpose, or by chance) are regrouped exactly, never merged."""
    rows = len(features)
    matrix = np.asarray(features, dtype=np.float32).reshape(rows, -1)
    hashes = np.empty(rows, dtype=np.uint64)
    for start in range(0, rows, HASH_ROWS):
        words = _canonical(matrix[start : start + HASH_ROWS])
        value = np.full(len(words), _FNV_OFFSET, dtype=np.uint64)
        for column in words.T:
            value ^= column
            value *= _FNV_PRIME
            value ^= value >> np.uint64(29)
        hashes[start : start + HASH_ROWS] = value
    _, first, inverse = np.unique(hashes, return_index=True, return_inverse=True)
    groups: np.ndarray = first[inverse.reshape(-1)]
    repeats = np.flatnonzero(groups != np.arange(rows))
    collided = [
        chunk[np.any(_canonical(matrix[chunk]) != _canonical(matrix[groups[chunk]]), axis=1)]
        for chunk in np.array_split(repeats, max(1, len(repeats) // HASH_ROWS))
    ]
    wrong = np.concatenate(collided) if collided else repeats[:0]
    if len(wrong):
        members = np.flatnonzero(np.isin(groups, groups[wrong]))  # every row of those hashes
        as_bytes = np.ascontiguousarray(_canonical(matrix[members])).view(
            np.dtype((np.void, 4 * matrix.shape[1]))
        )
        _, inner, again = np.unique(as_bytes.reshape(-1), return_index=True, return_inverse=True)
        groups[members] = members[inner[again.reshape(-1)]]
    return groups


def _rarest_class(target: np.ndarray, groups: np.ndarray, leaders: np.ndarray) -> np.ndarray:
    """For each group in ``leaders``, the rarest class among its rows (rows labelled
    differently yet read the same are one group: it is dealt with its rarest class, so that
    class's groups are dealt among themselves and training always holds one)."""
    counts = np.bincount(target)
    rank = np.argsort(np.argsort(counts, kind="stable"), kind="stable")  # 0: the rarest
    lowest = np.full(len(groups), len(counts), dtype=np.int64)
    np.minimum.at(lowest, groups, rank[target])
    by_rank = np.argsort(rank)
    chosen: np.ndarray = by_rank[lowest[leaders]]
    return chosen


def duplicate_rows(groups: np.ndarray) -> int:
    """Rows whose features repeat an earlier row's."""
    return int(len(groups) - np.count_nonzero(groups == np.arange(len(groups))))


def check_splittable(target: np.ndarray, task: Task, labels: list[Any] | None) -> None:
    """Raise InvalidInput unless every split (and every class in it) can get rows."""
    if len(target) < MIN_ROWS:
        raise InvalidInput(
            f"dataset has {len(target)} rows; at least {MIN_ROWS} are needed "
            "for train, validation and test splits"
        )
    if task == Task.CLASSIFICATION and labels is not None:
        counts = np.bincount(target, minlength=len(labels))
        for position, count in enumerate(counts):
            if count < MIN_ROWS_PER_CLASS:
                raise InvalidInput(
                    f"class {labels[position]!r} has {count} row(s); each class "
                    f"needs at least {MIN_ROWS_PER_CLASS} (one per split)"
                )


def check_distinct(
    groups: np.ndarray, target: np.ndarray, task: Task, labels: list[Any] | None
) -> None:
    """Raise InvalidInput unless there are enough distinct feature rows for three splits
    that share none, and for a classifier, enough of each class: identical rows stay in one
    split, so a class needs distinct rows, not repeats, to be trained on and scored."""
    distinct = len(groups) - duplicate_rows(groups)
    if distinct < MIN_DISTINCT_ROWS:
        raise InvalidInput(
            f"dataset has {len(groups)} rows but {distinct} distinct row(s) of features; at "
            f"least {MIN_DISTINCT_ROWS} are needed, as identical rows stay in one split"
        )
    if task != Task.CLASSIFICATION or labels is None:
        return
    for position, label in enumerate(labels):
        mine = groups[target == position]
        count = len(np.unique(mine))
        if count < MIN_ROWS_PER_CLASS:
            raise InvalidInput(
                f"class {label!r} has {len(mine)} row(s) but {count} distinct row(s) of "
                f"features; each class needs at least {MIN_ROWS_PER_CLASS} (one per split), "
                "as identical rows stay in one split"
            )


def _cut(count: int) -> tuple[int, int]:
    n_test = max(1, round(count * TEST_FRACTION))
    n_validation = max(1, round(count * VALIDATION_FRACTION))
    return n_test, n_validation


class _Groups:
    """The groups of ``groups`` (a first-row index per row): their sizes and members."""

    def __init__(self, groups: np.ndarray) -> None:
        self.order = np.argsort(groups, kind="stable")  # rows by group, ascending within
        self.sizes = np.bincount(groups, minlength=len(groups))
        self.starts = np.concatenate([[0], np.cumsum(self.sizes)[:-1]])

    def rows(self, leaders: np.ndarray) -> np.ndarray:
        """The rows of each group in ``leaders``, group after group."""
        leaders = np.asarray(leaders, dtype=np.int64)
        sizes = self.sizes[leaders]
        offsets = np.repeat(self.starts[leaders] - (np.cumsum(sizes) - sizes), sizes)
        picked: np.ndarray = self.order[offsets + np.arange(int(sizes.sum()))]
        return picked


def _deal(
    leaders: np.ndarray, sizes: np.ndarray, n_test: int, n_validation: int
) -> tuple[list[int], list[int], list[int]]:
    """Shuffled groups dealt to test, then validation, each while a group fits in what it
    still needs; the rest (and groups too large for either) to train, in their order."""
    test: list[int] = []
    validation: list[int] = []
    train: list[int] = []
    room_test, room_validation = n_test, n_validation
    for position, leader in enumerate(leaders.tolist()):
        if room_test <= 0 and room_validation <= 0:
            train += leaders[position:].tolist()
            break
        size = int(sizes[leader])
        if size <= room_test:
            test.append(leader)
            room_test -= size
        elif size <= room_validation:
            validation.append(leader)
            room_validation -= size
        else:
            train.append(leader)
    return test, validation, train


def _fill_empty(parts: list[list[list[int]]], sizes: np.ndarray) -> None:
    """Give test (0) and validation (1) a group each when dealing left one empty: the
    smallest of the split holding the most groups (at least two)."""
    for needy in (0, 1):
        if any(parts[needy]):
            continue
        donor = max((2, 1, 0), key=lambda index: sum(len(bucket) for bucket in parts[index]))
        buckets = [bucket for bucket in parts[donor] if bucket]
        if sum(len(bucket) for bucket in buckets) < 2:
            raise InvalidInput(
                f"dataset has {MIN_DISTINCT_ROWS - 1} or fewer distinct rows of features; "
                f"at least {MIN_DISTINCT_ROWS} are needed, as identical rows stay in one split"
            )
        bucket = min(buckets, key=lambda found: min(int(sizes[leader]) for leader in found))
        smallest = min(bucket, key=lambda leader: int(sizes[leader]))
        bucket.remove(smallest)
        parts[needy].append([smallest])


def _train_holds_the_class(dealt: tuple[list[int], ...], sizes: np.ndarray) -> None:
    """Move a class's smallest groups so that training holds at least one and training and
    validation two between them (so every cross-validation fold trains on the class);
    with one row per group this never moves anything."""
    test, validation, train = dealt

    def smallest(groups: list[int]) -> int:
        found = min(groups, key=lambda leader: int(sizes[leader]))
        groups.remove(found)
        return found

    while not train and (test or validation):
        train.append(smallest(test if len(test) >= len(validation) else validation))
    if len(train) + len(validation) < 2 and len(test) > 1:
        validation.append(smallest(test))


def split_indices(
    target: np.ndarray, task: Task, seed: int, *, features: np.ndarray
) -> SplitIndices:
    """Shuffle with ``seed`` and cut each class (or the whole set) 70/15/15, a group of
    identical feature rows at a time (it counts in the class of its first row). Without
    repeated rows this is the same split as cutting row by row."""
    groups = row_groups(features)
    found = _Groups(groups)
    leaders = np.flatnonzero(groups == np.arange(len(groups)))
    rng = np.random.default_rng(seed)
    classes = _rarest_class(target, groups, leaders) if task == Task.CLASSIFICATION else None
    buckets = (
        [leaders[classes == value] for value in np.unique(classes)]
        if classes is not None
        else [leaders]
    )
    parts: list[list[list[int]]] = [[], [], []]  # test, validation, train: groups per bucket
    for bucket in buckets:
        shuffled = rng.permutation(bucket)
        n_test, n_validation = _cut(int(found.sizes[bucket].sum()))
        dealt = _deal(shuffled, found.sizes, n_test, n_validation)
        if classes is not None:
            _train_holds_the_class(dealt, found.sizes)
        for index, groups_dealt in enumerate(dealt):
            parts[index].append(groups_dealt)
    _fill_empty(parts, found.sizes)
    test, validation, train = (
        found.rows(np.asarray([leader for bucket in part for leader in bucket], dtype=np.int64))
        for part in parts
    )
    return SplitIndices(
        train=rng.permutation(train),
        validation=np.sort(validation),
        test=np.sort(test),
        groups=groups,
    )


def fold_indices(
    target: np.ndarray,
    task: Task,
    rows: np.ndarray,
    folds: int,
    seed: int,
    *,
    groups: np.ndarray,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``rows`` cut into at most ``folds`` (train, validation) pairs: every row validates
    once, a group of identical feature rows (``groups``, as ``SplitIndices`` holds them) in
    one fold; classes are dealt round-robin, a group at a time, so that each fold holds
    each class in proportion. A fold left without rows (fewer groups than folds) is not
    returned."""
    rng = np.random.default_rng(seed)
    ids = np.unique(groups[rows])  # the groups in rows, by their first row
    if task == Task.CLASSIFICATION:
        classes = _rarest_class(target, groups, ids)
        buckets = [ids[classes == value] for value in np.unique(classes)]
    else:
        buckets = [ids]
    fold_of = {}
    offset = 0
    for bucket in buckets:
        for order, group in enumerate(rng.permutation(bucket).tolist()):
            fold_of[group] = (order + offset) % folds
        offset += len(bucket)
    assigned = np.array([fold_of[group] for group in groups[rows].tolist()], dtype=np.int64)
    pairs = [
        (np.sort(rows[assigned != fold]), np.sort(rows[assigned == fold])) for fold in range(folds)
    ]
    return [(train, validation) for train, validation in pairs if len(validation)]
