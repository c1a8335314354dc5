"""The web viewer: the built deck.gl + MapLibre app (``dist/``, made by npm from ``src/``)
and the code that serves it from the API (:mod:`viewer.serve`)."""
