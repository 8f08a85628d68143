"""e621 tag knowledge: each tag's category and the tags it implies, read from a CSV.

The format is that of RedRocket's ``data/jtp-3-hydra-tags.csv`` (JTP-3): a header ``tag,category,implications``,
the category as e621's number (0 general, 3 copyright, 4 character, 5 species, 7 meta, 8 lore; a name such as
``species`` is accepted too) and the implied tags separated by spaces. Implications are closed transitively
when the table is read (``wolf`` → ``canis`` → ``canine`` → ``canid`` → ``mammal``), so ``wolf`` implies all
four; a cycle in the data cannot loop, its members simply imply one another. Tags the table does not know are
of category ``unknown`` and imply nothing.
"""

from __future__ import annotations

import csv
import io
from collections import deque
from collections.abc import Iterable, Mapping
from pathlib import Path

from ..errors import TagTableError

# e621's category numbers; "unknown" is for tags the table does not list
CATEGORY_NUMBERS: dict[int, str] = {
    0: "general",
    1: "artist",
    2: "contributor",
    3: "copyright",
    4: "character",
    5: "species",
    6: "invalid",
    7: "meta",
    8: "lore",
}
UNKNOWN = "unknown"
CATEGORIES: tuple[str, ...] = (*CATEGORY_NUMBERS.values(), UNKNOWN)
# grouped output follows e621's own tag sidebar, then tags the table does not know
GROUP_ORDER: tuple[str, ...] = (
    "artist", "contributor", "copyright", "character", "species", "general", "meta", "lore", "invalid", UNKNOWN,
)
COLUMNS = ("tag", "category", "implications")


def tag_key(tag: str) -> str:
    """The spelling used for lookups: e621's (lower case, underscores), whatever the caller wrote."""
    return "_".join(tag.strip().lower().split())


class TagTable:
    """Category and transitively implied tags of each known tag. Read-only once built."""

    def __init__(
        self,
        categories: Mapping[str, str],
        implications: Mapping[str, Iterable[str]],
        source: str = "<table>",
    ) -> None:
        self.source = source
        self._categories = {tag_key(tag): category for tag, category in categories.items()}
        direct = {tag_key(tag): [tag_key(other) for other in others] for tag, others in implications.items()}
        self._implied = {tag: _closure(tag, direct) for tag in direct}

    def category(self, tag: str) -> str:
        return self._categories.get(tag_key(tag), UNKNOWN)

    def implied(self, tag: str) -> tuple[str, ...]:
        """Every tag ``tag`` implies, directly or through others, nearest first; never ``tag`` itself."""
        return self._implied.get(tag_key(tag), ())

    def __contains__(self, tag: object) -> bool:
        return isinstance(tag, str) and tag_key(tag) in self._categories

    def __len__(self) -> int:
        return len(self._categories)

    def __repr__(self) -> str:
        return f"TagTable({len(self)} tags from {self.source})"


def _closure(start: str, direct: Mapping[str, list[str]]) -> tuple[str, ...]:
    # breadth-first, so nearer implications come first; the seen set makes cycles harmless
    seen = {start}
    order: list[str] = []
    queue = deque(direct.get(start, ()))
    while queue:
        tag = queue.popleft()
        if tag in seen:
            continue
        seen.add(tag)
        order.append(tag)
        queue.extend(direct.get(tag, ()))
    return tuple(order)


def read_tag_table(path: str | Path) -> TagTable:
    """Read a tag table CSV; a malformed file gets a TagTableError naming the file and line."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise TagTableError(f"cannot read tag table {path}: {error.strerror or error}") from error
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise TagTableError(f"{path}, line {line}: not UTF-8 text; is this a tag table CSV?") from error
    return parse_tag_table(text, source=str(path))


def parse_tag_table(text: str, source: str = "<table>") -> TagTable:
    """A tag table from CSV text (see the module docstring for the format)."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    categories: dict[str, str] = {}
    implications: dict[str, list[str]] = {}
    first_line: dict[str, int] = {}
    try:
        header = next(reader, None)
        columns = _columns(header, source)
        for row in reader:
            line = reader.line_num
            if not any(field.strip() for field in row):
                continue  # blank lines are harmless
            if len(row) != len(header):
                raise TagTableError(f"{source}, line {line}: expected {len(header)} fields, found {len(row)}")
            tag = tag_key(row[columns["tag"]])
            if not tag:
                raise TagTableError(f"{source}, line {line}: empty tag")
            if tag in first_line:
                raise TagTableError(f"{source}, line {line}: {tag!r} is already listed on line {first_line[tag]}")
            first_line[tag] = line
            categories[tag] = _category(row[columns["category"]], source, line)
            implications[tag] = row[columns["implications"]].split()
    except csv.Error as error:
        raise TagTableError(f"{source}, line {reader.line_num}: not valid CSV ({error})") from error
    if not categories:
        raise TagTableError(f"{source}: no tags after the header")
    return TagTable(categories, implications, source=source)


def _columns(header: list[str] | None, source: str) -> dict[str, int]:
    names = [name.strip().lower() for name in header or []]
    missing = [name for name in COLUMNS if name not in names]
    if missing:
        found = ",".join(header) if header else "nothing"
        raise TagTableError(
            f"{source}, line 1: the header must name the columns {','.join(COLUMNS)}; found {found!r}"
        )
    return {name: names.index(name) for name in COLUMNS}


def _category(value: str, source: str, line: int) -> str:
    value = value.strip().lower()
    if value.isdigit() and int(value) in CATEGORY_NUMBERS:
        return CATEGORY_NUMBERS[int(value)]
    if value in CATEGORY_NUMBERS.values():
        return value
    known = ", ".join(f"{number} {name}" for number, name in CATEGORY_NUMBERS.items())
    raise TagTableError(f"{source}, line {line}: unknown category {value!r} (known: {known})")


def load_tag_table(
    table: str | Path,
    models_dirs: list[Path] | None = None,
    download: bool = True,
) -> TagTable:
    """A known table's name (downloaded into the models dir when missing) or a CSV path → TagTable."""
    from ..hub.files import resolve_tag_table  # deferred: files pulls in the model table

    return read_tag_table(resolve_tag_table(table, models_dirs, download))
