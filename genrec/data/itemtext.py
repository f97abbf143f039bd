"""Item text from the item file, and the checks that say when it does not fit the interactions.

Checks (each counted in `RecData.stats` and logged as a warning):
- an item id with two or more different rows in the item file (the first row is used);
- items of the interactions that are not in the item file (they fall back to their id as text),
  with a hint when the two files only write the ids differently (`1430.0` and `1430`);
- items whose rendered text is empty.
When the share of items with a text falls below `data.min_text_share` (default 0.5; 0 turns the
check off) the load stops with a DataError naming the cause: text-based families would learn from ids.
"""
from __future__ import annotations

import logging
import math
import re

import numpy as np
import pandas as pd

from genrec.errors import DataError

log = logging.getLogger("genrec")
_NUMBER_ID = re.compile(r"^[+-]?\d+\.0+$")


def _cell(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return str(v)


def canonical_id(s: str) -> str:
    """'1430.0' -> '1430' (an integer id once written as a float); other ids unchanged."""
    s = s.strip()
    return s.split(".")[0] if _NUMBER_ID.match(s) else s


def item_texts(items: pd.DataFrame | None, item_ids: np.ndarray, template: str,
               title_template: str = "{title}") -> tuple[list[str], list[str], int]:
    """Render the text and title templates per item; items missing from the metadata fall back to their id."""
    if items is None:
        ids = [str(i) for i in item_ids]
        return ids, ids, len(ids)
    items = items.assign(item=items["item"].map(_cell))
    meta = items.drop_duplicates("item").set_index("item")
    missing = 0
    texts, titles = [], []
    for iid in item_ids:
        if iid in meta.index:
            row = {k: _cell(v) for k, v in meta.loc[iid].items()}
            row["item_id"] = str(iid)
            row.setdefault("title", str(iid))
            try:
                texts.append(template.format(**row).strip())
                titles.append(title_template.format(**row).strip() or str(iid))
            except KeyError as e:
                raise DataError(f"data.text_template / title_template use {{{e.args[0]}}}, which is not an "
                                f"item column (columns: {', '.join(map(str, meta.columns))})") from None
        else:
            missing += 1
            texts.append(str(iid))
            titles.append(str(iid))
    return texts, titles, missing


def conflicting_ids(items: pd.DataFrame) -> list[str]:
    """Item ids that have two or more different rows in the item file."""
    flat = items.astype(str).drop_duplicates()
    return sorted(set(flat.loc[flat["item"].duplicated(), "item"]))


def check_item_texts(items: pd.DataFrame | None, item_ids: np.ndarray, texts: list[str], missing: int,
                     cfg, where: str, stats: dict) -> None:
    """Count and log what is wrong with the item text; raise when too few items have any."""
    if items is None:
        return  # no item file: the ids are the text, by choice
    n = len(item_ids)
    problems = []
    conflicts = conflicting_ids(items.assign(item=items["item"].map(_cell)))
    if conflicts:
        stats["items_with_conflicting_rows"] = len(conflicts)
        log.warning("%s: %d item ids have two or more different rows in the item file (e.g. %r); the first "
                    "row is used", where, len(conflicts), conflicts[0])
    if missing:
        known = {canonical_id(_cell(i)) for i in items["item"]}
        file_ids = {_cell(i) for i in items["item"]}
        absent = [str(i) for i in item_ids if str(i) not in file_ids]
        respelled = [i for i in absent if canonical_id(i) in known]
        why = f"{missing} of {n} items of the interactions are not in the item file (e.g. {absent[0]!r})"
        if respelled:
            stats["items_with_respelled_ids"] = len(respelled)
            why += (f"; {len(respelled)} of them are there written differently (e.g. {respelled[0]!r} in the "
                    f"interactions vs {canonical_id(respelled[0])!r} in the item file): write ids the same way "
                    f"in both files")
        problems.append(why)
    empty = sum(1 for t in texts if not t)
    if empty:
        stats["items_with_empty_text"] = empty
        problems.append(f"{empty} of {n} items have an empty text (data.text_template={cfg.text_template!r})")
    for p in problems:
        log.warning("%s: %s", where, p)
    with_text = n - missing - empty
    if n and with_text / n < cfg.min_text_share:
        raise DataError(f"{where}: only {with_text} of {n} items ({with_text / n:.0%}) have a text, below "
                        f"data.min_text_share={cfg.min_text_share:g}: {'; '.join(problems)}. Text-based "
                        f"families would see ids, not text; fix the item file, or set data.min_text_share=0 "
                        f"to go on anyway")
