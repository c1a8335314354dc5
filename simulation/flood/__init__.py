"""Waterlogging simulation: design storms and hyetographs (``rain``), the compiled
local-inertial 2D solver (``kernels``, driven by ``solver``), drainage (``drainage``) and the
standalone run over any DEM (``grid_run``), none of which touches the database; scenarios on
the city model (``domain``, ``impacts``, ``scenario``), run as jobs (``jobs``) behind the
``/scenarios`` routes (``api``)."""
