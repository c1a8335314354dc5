"""The layer catalog: one declarative definition per thematic layer (source, geometry,
properties, zoom range, style, classification), the single source of truth for the feature
API, the tile API and the viewer legend."""
