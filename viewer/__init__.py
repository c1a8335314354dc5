"""The web viewer: the built deck.gl + MapLibre app (``dist/``, made by npm from ``src/``),
the code that serves it from the API (:mod:`viewer.serve`) and the pydeck helper for
notebooks (:mod:`viewer.notebook`, the ``notebook`` extra)."""
