"""Building heights: derive the missing ones (from floors, else a default by use), flag them.

Storey heights and defaults are typical values for Chinese cities (residential storeys about
3 m, offices and shops about 4 m); an estimated height is marked ``height_estimated`` so
nobody mistakes it for a survey.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

STOREY_M = {"residential": 3.0, "commercial": 4.5, "office": 4.0, "industrial": 6.0,
            "public": 4.5, "education": 4.0, "healthcare": 4.0, "transport": 5.0}
STOREY_DEFAULT_M = 3.5
DEFAULT_FLOORS = {"residential": 6, "commercial": 3, "office": 8, "industrial": 2,
                  "public": 3, "education": 4, "healthcare": 5, "religious": 2,
                  "transport": 2, "mixed": 6}
DEFAULT_FLOORS_OTHER = 3


def fill_heights(b: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Fill ``height`` and ``height_estimated`` in place; returns (estimated, rejections)."""
    use = b["use"].astype("string").fillna("other")
    storey = use.map(STOREY_M).fillna(STOREY_DEFAULT_M).astype("float64")
    base = b["min_height"].astype("float64").fillna(0.0)
    height = b["height"].astype("float64")
    floors = b["floors"].astype("float64")

    from_floors = height.isna() & floors.notna() & (floors > 0)
    default_floors = use.map(DEFAULT_FLOORS).fillna(DEFAULT_FLOORS_OTHER).astype("float64")
    from_use = height.isna() & ~from_floors
    height = height.where(~from_floors, base + floors * storey)
    height = height.where(~from_use, base + default_floors * storey)
    estimated = (from_floors | from_use).to_numpy()

    reasons = np.full(len(b), None, dtype=object)
    bad = (base >= height).to_numpy() & ~estimated
    reasons[bad] = [f"min_height {m:g} is not below height {h:g}"
                    for m, h in zip(base[bad], height[bad], strict=True)]
    b["height"] = height
    b["min_height"] = base
    b["height_estimated"] = estimated
    return estimated, reasons
