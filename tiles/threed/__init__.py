"""OGC 3D Tiles 1.1 of the city: buildings as glb with feature ids and a property table.

``geodesy`` places points on the WGS84 ellipsoid, ``extrude`` turns footprints into meshes
(LOD1 blocks, LOD2 pitched roofs), ``glb`` writes glTF 2.0 binaries with EXT_mesh_features
and EXT_structural_metadata, ``hierarchy`` arranges buildings in a quadtree of tiles and
writes tileset.json, ``build`` reads the city model and (re)builds what changed, ``api``
serves the result.
"""
