"""OGC 3D Tiles 1.1 of the city: buildings and infrastructure as glb with feature ids and a
property table.

``geodesy`` places points on the WGS84 ellipsoid, ``extrude`` turns footprints into meshes
(LOD1 blocks, LOD2 pitched roofs), ``solids`` draws buildings' own 3D surfaces (CityJSON),
``shapes`` makes pipes, shafts, bridge decks and water surfaces, ``glb`` writes glTF 2.0
binaries with EXT_mesh_features and EXT_structural_metadata, ``hierarchy`` arranges
features in a quadtree of tiles and writes tileset.json, ``writer`` keeps a tileset folder
up to date incrementally, ``build`` and ``infrastructure`` read the city model, ``api``
serves the result.
"""
