"""Waterlogging simulation: design storms, hyetographs and rain varying over the grid
(``rain``), the compiled local-inertial 2D solver (``kernels``, driven by ``solver``),
drainage (``drainage``) and the standalone run over any DEM (``grid_run``), none of which
touches the database; scenarios on the city model (``domain``, ``gauges``, ``measures``,
``impacts``, ``scenario``: its ``KIND`` for the job runner of :mod:`simulation.jobs`) and
their comparison (``compare``)."""
