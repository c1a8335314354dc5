"""The demo city: a seeded generator around Optics Valley and its loader."""

from pathlib import Path

DATA_DIR = Path(__file__).resolve().parents[2] / "data"
"""The real data shipped with the repository (OpenStreetMap extracts, ODbL)."""
