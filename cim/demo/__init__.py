"""The demo city: a seeded generator around Optics Valley and its loader."""
