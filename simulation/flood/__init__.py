"""Waterlogging simulation: design storms and hyetographs (``rain``), the compiled
local-inertial 2D solver (``kernels``, driven by ``solver``) and the standalone run over any
DEM (``grid_run``). Nothing here touches the database."""
