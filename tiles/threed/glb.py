"""glTF 2.0 binaries (GLB) of one tile: a mesh whose vertices carry feature ids
(EXT_mesh_features) into a property table (EXT_structural_metadata).

Written directly rather than through a scene library: the two extensions need buffer views
no exporter knows about, and the layout (one primitive, one buffer, 8-byte aligned views)
is simple enough to keep exact.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER = 34962, 34963
FLOAT, UNSIGNED_BYTE, UNSIGNED_SHORT, UNSIGNED_INT = 5126, 5121, 5123, 5125
ALIGN = 8
"""EXT_structural_metadata wants property values 8-byte aligned; every view gets it."""
GENERATOR = "cim-platform tiles.threed"


@dataclass(frozen=True)
class Property:
    """One column of the property table: numbers, or strings ('' where there is none)."""

    values: np.ndarray | list[str]
    component: str | None = None
    """FLOAT64, INT32, ... for numbers; None for strings."""
    no_data: Any = None
    required: bool = False
    description: str = ""


class _Buffer:
    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.size = 0
        self.views: list[dict[str, Any]] = []

    def view(self, data: bytes, target: int | None = None) -> int:
        pad = -self.size % ALIGN
        if pad:
            self.chunks.append(b"\0" * pad)
            self.size += pad
        view: dict[str, Any] = {"buffer": 0, "byteOffset": self.size, "byteLength": len(data)}
        if target is not None:
            view["target"] = target
        self.views.append(view)
        self.chunks.append(data)
        self.size += len(data)
        return len(self.views) - 1


NUMPY_TYPES = {"FLOAT64": "<f8", "FLOAT32": "<f4", "INT32": "<i4", "INT16": "<i2",
               "UINT32": "<u4", "UINT16": "<u2", "UINT8": "u1"}


def _table(buffer: _Buffer, name: str, count: int, columns: dict[str, Property]
           ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The class definition and the property table of the tile's features."""
    definitions: dict[str, Any] = {}
    table: dict[str, Any] = {}
    for key, column in columns.items():
        definition: dict[str, Any] = {"description": column.description} \
            if column.description else {}
        if column.component is None:
            encoded = [str(v).encode() for v in column.values]
            if not column.required and not any(encoded):
                # An empty buffer view is invalid; an omitted column is all "no data".
                definitions[key] = {"type": "STRING", "noData": column.no_data}
                continue
            offsets = np.zeros(count + 1, dtype="<u4")
            offsets[1:] = np.cumsum([len(e) for e in encoded])
            definition["type"] = "STRING"
            table[key] = {"values": buffer.view(b"".join(encoded)),
                          "stringOffsets": buffer.view(offsets.tobytes()),
                          "stringOffsetType": "UINT32"}
        else:
            values = np.asarray(column.values, dtype=NUMPY_TYPES[column.component])
            definition.update(type="SCALAR", componentType=column.component)
            table[key] = {"values": buffer.view(values.tobytes())}
        if column.required:
            definition["required"] = True
        elif column.no_data is not None:
            definition["noData"] = column.no_data
        definitions[key] = definition
    return ({"name": name, "properties": definitions},
            {"class": name, "count": count, "properties": table})


def _accessor(view: int, component: int, count: int, kind: str, **extra: Any) -> dict[str, Any]:
    return {"bufferView": view, "componentType": component, "count": count, "type": kind,
            **extra}


def write_glb(positions: np.ndarray, normals: np.ndarray, colours: np.ndarray,
              feature: np.ndarray, triangles: np.ndarray, class_name: str,
              columns: dict[str, Property]) -> bytes:
    """The GLB of one mesh. ``positions`` are the tile's local, y-up float32 coordinates;
    ``colours`` RGBA bytes per vertex; ``feature`` each vertex's row of the property
    table, whose ``columns`` all have one value per feature."""
    count = len(next(iter(columns.values())).values)
    buffer = _Buffer()
    indices = triangles.reshape(-1)
    index_type = UNSIGNED_SHORT if len(positions) < 65_536 else UNSIGNED_INT
    index_dtype = "<u2" if index_type == UNSIGNED_SHORT else "<u4"
    position_view = buffer.view(positions.astype("<f4").tobytes(), ARRAY_BUFFER)
    normal_view = buffer.view(normals.astype("<f4").tobytes(), ARRAY_BUFFER)
    colour_view = buffer.view(colours.astype("u1").tobytes(), ARRAY_BUFFER)
    # Feature ids as floats: application attributes may not be unsigned int, and a
    # 16-bit one would need a 4-byte stride anyway.
    feature_view = buffer.view(feature.astype("<f4").tobytes(), ARRAY_BUFFER)
    index_view = buffer.view(indices.astype(index_dtype).tobytes(), ELEMENT_ARRAY_BUFFER)
    schema_class, table = _table(buffer, class_name, count, columns)
    n = len(positions)
    accessors = [
        _accessor(position_view, FLOAT, n, "VEC3",
                  min=positions.min(axis=0).astype("<f4").tolist(),
                  max=positions.max(axis=0).astype("<f4").tolist()),
        _accessor(normal_view, FLOAT, n, "VEC3"),
        _accessor(colour_view, UNSIGNED_BYTE, n, "VEC4", normalized=True),
        _accessor(feature_view, FLOAT, n, "SCALAR"),
        _accessor(index_view, index_type, len(indices), "SCALAR"),
    ]
    primitive = {
        "attributes": {"POSITION": 0, "NORMAL": 1, "COLOR_0": 2, "_FEATURE_ID_0": 3},
        "indices": 4, "material": 0, "mode": 4,
        "extensions": {"EXT_mesh_features": {"featureIds": [
            {"featureCount": count, "attribute": 0, "propertyTable": 0}]}},
    }
    gltf = {
        "asset": {"version": "2.0", "generator": GENERATOR},
        "extensionsUsed": ["EXT_mesh_features", "EXT_structural_metadata"],
        "extensions": {"EXT_structural_metadata": {
            "schema": {"id": class_name, "classes": {class_name: schema_class}},
            "propertyTables": [table]}},
        "scene": 0, "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0}],
        "meshes": [{"primitives": [primitive]}],
        "materials": [{"pbrMetallicRoughness": {"baseColorFactor": [1, 1, 1, 1],
                                                "metallicFactor": 0, "roughnessFactor": 1}}],
        "accessors": accessors,
        "bufferViews": buffer.views,
        "buffers": [{"byteLength": buffer.size}],
    }
    text = json.dumps(gltf, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 4)
    binary = b"".join(buffer.chunks)
    binary += b"\0" * (-len(binary) % 4)
    length = 12 + 8 + len(text) + 8 + len(binary)
    return b"".join([struct.pack("<4sII", b"glTF", 2, length),
                     struct.pack("<I4s", len(text), b"JSON"), text,
                     struct.pack("<I4s", len(binary), b"BIN\0"), binary])
