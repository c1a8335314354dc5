// Buildings from the platform's 3D Tiles (/3dtiles/buildings/tileset.json, made by
// `cim tiles build-3d`): real roof shapes, bridges and passages, and level of detail from
// the tileset's hierarchy (additive refinement: the biggest buildings first, the rest as the
// camera comes near). Where no tileset was built the map keeps the vector tiles' extrusion.
//
// A glb tile is one mesh; each vertex carries its building's row in the tile's property
// table (EXT_mesh_features / EXT_structural_metadata). deck.gl picks a tile as a whole, so
// a click is resolved here: the picked 3D point is taken into the tile's frame and the
// nearest triangle's feature id gives the building's id.
import {Tile3DLayer} from '@deck.gl/geo-layers';
import {ScenegraphLayer} from '@deck.gl/mesh-layers';
import {Tiles3DLoader} from '@loaders.gl/3d-tiles';
import {API_ROOT} from './api.js';
import {reportError} from './status.js';
import {t} from './i18n.js';

const TILESET = '3dtiles/buildings/tileset.json';
const LAYER_ID = 'buildings-3d';
const EARTH_RADIUS = 6371008.8; // deck.gl's METER_OFFSETS scale uses the mean radius
const NEAR_M = 2; // a pick farther than this from every triangle of the tile is not trusted

// The tileset is small and revalidated by ETag, so asking for it twice costs a 304.
// deck.gl 9.4's ScenegraphLayer ignores a glb's vertex colours (COLOR_0, which luma.gl binds
// as `colors`), and ours carry each building's colour by use: multiply them in. Its PBR
// lighting cost 2-4 times the frame time of MapLibre's extrusion under software WebGL
// (bench/viewer.py), so the layer draws unlit and shades here per vertex, from the glb's
// y-up normals: roofs full colour, walls darker, facing east or west a little more. Every
// tile `cim tiles build-3d` writes has both attributes.
export class VertexColourScenegraphLayer extends ScenegraphLayer {
  getShaders() {
    const shaders = super.getShaders();
    return {...shaders, inject: {...shaders.inject,
      'vs:#decl': 'in vec4 colors;\nin vec3 normals;',
      'vs:DECKGL_FILTER_COLOR':
        'color *= colors; color.rgb *= 0.74 + 0.26 * max(normals.y, 0.0) + 0.08 * normals.x;'}};
  }
}
VertexColourScenegraphLayer.layerName = 'VertexColourScenegraphLayer';

// deck.gl 9.4's Tile3DLayer traverses its tileset only when the viewport changes. If
// tileset.json arrives after the first viewport update and before the next draw, that
// traversal finds no viewport, and a still camera never asks again: no tile loads until
// the view moves (seen as "frame 0" in a test that waited 45 s). Until the first traversal
// is done, every draw asks for one.
export class TraversingTile3DLayer extends Tile3DLayer {
  activateViewport(viewport) {
    super.activateViewport(viewport);
    if (this.state.tileset3d && !this.state.frameNumber) {
      this.setChangeFlags({viewportChanged: true});
      this.setNeedsUpdate();
    }
  }
}
TraversingTile3DLayer.layerName = 'TraversingTile3DLayer';

// Closest point on triangle abc to p (Ericson, Real-Time Collision Detection, 5.1.5):
// squared distance only.
function distance2(p, a, b, c) {
  const sub = (u, v) => [u[0] - v[0], u[1] - v[1], u[2] - v[2]];
  const dot = (u, v) => u[0] * v[0] + u[1] * v[1] + u[2] * v[2];
  const at = (s, u, w, v) => [a[0] + s * u[0] + w * v[0], a[1] + s * u[1] + w * v[1], a[2] + s * u[2] + w * v[2]];
  const ab = sub(b, a), ac = sub(c, a), ap = sub(p, a);
  const d1 = dot(ab, ap), d2 = dot(ac, ap);
  let q;
  if (d1 <= 0 && d2 <= 0) q = a;
  else {
    const bp = sub(p, b), d3 = dot(ab, bp), d4 = dot(ac, bp);
    const cp = sub(p, c), d5 = dot(ab, cp), d6 = dot(ac, cp);
    const vc = d1 * d4 - d3 * d2, vb = d5 * d2 - d1 * d6, va = d3 * d6 - d5 * d4;
    if (d3 >= 0 && d4 <= d3) q = b;
    else if (d6 >= 0 && d5 <= d6) q = c;
    else if (vc <= 0 && d1 >= 0 && d3 <= 0) q = at(d1 / (d1 - d3), ab, 0, ac);
    else if (vb <= 0 && d2 >= 0 && d6 <= 0) q = at(0, ab, d2 / (d2 - d6), ac);
    else if (va <= 0 && d4 - d3 >= 0 && d5 - d6 >= 0) {
      const w = (d4 - d3) / ((d4 - d3) + (d5 - d6));
      q = [b[0] + w * (c[0] - b[0]), b[1] + w * (c[1] - b[1]), b[2] + w * (c[2] - b[2])];
    } else {
      const denom = 1 / (va + vb + vc);
      q = at(vb * denom, ab, vc * denom, ac);
    }
  }
  const d = sub(p, q);
  return dot(d, d);
}

// The building id at a picked point of a tile, or null.
export function featureAt(tile, [lon, lat, z]) {
  const {gltf, cartographicOrigin: [lon0, lat0, h0], modelMatrix} = tile.content;
  const toRad = Math.PI / 180;
  const offset = [(lon - lon0) * toRad * EARTH_RADIUS * Math.cos(lat0 * toRad),
    (lat - lat0) * toRad * EARTH_RADIUS, (z || 0) - h0];
  const p = modelMatrix.clone().invert().transformAsPoint(offset);
  const primitive = gltf.meshes[0].primitives[0];
  const positions = primitive.attributes.POSITION.value;
  const features = primitive.attributes._FEATURE_ID_0.value;
  const indices = primitive.indices.value;
  const vertex = i => [positions[3 * i], positions[3 * i + 1], positions[3 * i + 2]];
  let best = NEAR_M * NEAR_M, row = -1;
  for (let i = 0; i < indices.length; i += 3) {
    const d = distance2(p, vertex(indices[i]), vertex(indices[i + 1]), vertex(indices[i + 2]));
    if (d < best) {
      best = d;
      row = features[indices[i]];
    }
  }
  const table = gltf.extensions?.EXT_structural_metadata?.propertyTables?.[0];
  return row >= 0 ? table?.properties?.id?.data?.[row] ?? null : null;
}

// Returns null when the platform lists no buildings tileset (GET /3dtiles; the vector-tile
// extrusion stays), else {show(visible), setOpacity(opacity), pick(x, y)} with the
// extrusion switched off.
export function createBuildings3d(map, overlay, tilesets) {
  if (!tilesets.some(tileset => tileset.id === 'buildings')) return null;
  const url = new URL(TILESET, API_ROOT).href;
  const extrusion = map.getLayer('buildings') ? 'buildings' : null;
  let layer = new TraversingTile3DLayer({
    id: LAYER_ID,
    data: url,
    loader: Tiles3DLoader,
    pickable: true,
    _subLayerProps: {scenegraph: {type: VertexColourScenegraphLayer, _lighting: 'flat'}},
    // Refine a tile once its missing buildings would span 8 px: at 2 px the city overview
    // drew nearly every building (bench/viewer.py: 543 against 260 ms a frame, 30,000).
    // Throttled: unthrottled (as the infrastructure tilesets are), the demo city's home view
    // never finished in bench/viewer.py --demo (600 s), though the 470,000-building city did.
    loadOptions: {tileset: {maximumScreenSpaceError: 8, throttleRequests: true}},
    onTileError: (tile, tileUrl, message) => reportError(t('error.tile3d', {url: tileUrl, message}))
  });
  // Filtered out, not removed: the panel keeps toggling the style layer (and its legend),
  // and the 3D layer follows.
  if (extrusion) map.setFilter(extrusion, ['==', ['literal', 1], 0]);
  let visible = !extrusion || map.getLayoutProperty(extrusion, 'visibility') !== 'none';
  let suspended = false;
  const show = on => {
    visible = on;
    // A layer deck.gl has finalized (taken off the map) must not be handed back to it: a
    // clone (same id and props) starts afresh, and matches the drawn one when it is drawn.
    if (on && !suspended) layer = layer.clone({});
    overlay.set('buildings3d', on && !suspended ? [layer] : []);
  };
  show(visible);
  return {
    show,
    // The extrusion stands in, drawing only what `filter` keeps (the glb tiles carry no
    // lifecycle status to filter by); null brings the 3D Tiles back.
    suspend(filter) {
      suspended = Boolean(filter && extrusion);
      if (extrusion) map.setFilter(extrusion, suspended ? filter : ['==', ['literal', 1], 0]);
      show(visible);
    },
    // Translucent in the underground mode; the tiles loaded so far are kept.
    setOpacity(opacity) {
      layer = layer.clone({opacity});
      show(visible);
    },
    pick(x, y) {
      const info = overlay.pick({x, y, radius: 0, layerIds: [LAYER_ID], unproject3D: true});
      if (!info?.object?.content || !info.coordinate) return null;
      const id = featureAt(info.object, info.coordinate);
      return id ? {collection: 'buildings', id} : null;
    }
  };
}
