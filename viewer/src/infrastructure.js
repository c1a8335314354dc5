// Infrastructure and relief: the bridges, water and drainage 3D tilesets (`cim tiles
// build-3d`) as toggles, the drainage network only for a key that may see it (internal);
// an underground mode that makes the surface translucent so that pipes below it show; and
// the hillshade of the DEMs as a base layer; the terrain: MapLibre drapes its whole map
// over the DEMs' Terrain-RGB tiles (a raster-dem source), and deck.gl's overlay follows its
// camera onto the surface, so the 3D Tiles (whose ground heights come from the same DEMs)
// stand on it; deck.gl's own layers are draped over a TerrainLayer of the same tiles (map.js).
// GET /3dtiles lists what is built and readable, so nothing is asked for that
// would answer 404. All of it is in the URL (`infra=...&underground=1&hillshade=1&terrain=1`).
import {TerrainLayer} from '@deck.gl/geo-layers';
import {Tiles3DLoader} from '@loaders.gl/3d-tiles';
import terrainWorker from '@loaders.gl/terrain/terrain-worker.js?url';
import {API_ROOT, getJson} from './api.js';
import {TraversingTile3DLayer, VertexColourScenegraphLayer} from './buildings3d.js';
import {t} from './i18n.js';
import {storedKey} from './scenarios.js';
import {reportError, status} from './status.js';

const INFRASTRUCTURE = ['bridges', 'water', 'drainage'];
const UNDERGROUND = 'drainage';
const SURFACE_OPACITY = 0.25;
const HILLSHADE = 'hillshade';
const TERRAIN = 'terrain';
// Terrain-RGB (Mapbox's encoding, as the raster-dem source reads it): -10000 + (R·65536 +
// G·256 + B)·0.1 m.
const TERRAIN_RGB = {rScaler: 6553.6, gScaler: 25.6, bScaler: 0.1, offset: -10000};
const OPACITY = {fill: 'fill-opacity', line: 'line-opacity', circle: 'circle-opacity',
  'fill-extrusion': 'fill-extrusion-opacity', raster: 'raster-opacity'};

const $ = id => document.getElementById(id);

// The built tilesets this reader may see: {tilesets: [{id, layers, href}], key} with the
// key they were listed with. A refused key (401) is said and the anonymous list kept.
export async function listTilesets(onRefused = () => {},
  key = storedKey()) {
  try {
    return {tilesets: (await getJson('3dtiles', null, {key})).tilesets, key: key || undefined};
  } catch (error) {
    if (key && error.status === 401) {
      onRefused(error);
      return listTilesets(onRefused, null); // null, not undefined: no default key again
    }
    reportError(error.message);
    return {tilesets: [], key: undefined};
  }
}

function tilesetLayer({id, href}, key, underground) {
  return new TraversingTile3DLayer({
    id: `infrastructure-${id}`,
    data: href,
    loader: Tiles3DLoader,
    // The key travels with every request of an internal tileset (tileset.json and glb).
    // Unthrottled: loaders.gl's request scheduler may cancel a tile it judges out of date,
    // and nothing asks for it again until the camera moves, so a still view never finished
    // loading; these tilesets have a few small tiles, throttling buys nothing.
    loadOptions: {fetch: key ? {headers: {'X-API-Key': key}} : {},
      tileset: {maximumScreenSpaceError: 8, throttleRequests: false}},
    _subLayerProps: {scenegraph: {type: VertexColourScenegraphLayer, _lighting: 'flat'}},
    // Below ground the pipes would be hidden by whatever is drawn over them.
    parameters: underground && id === UNDERGROUND ? {depthCompare: 'always'} : {},
    onTileError: (tile, url, message) => reportError(t('error.tile3d', {url, message}))
  });
}

// deck.gl's terrain surface: the meshes the flat layers are draped over, of the tiles
// MapLibre draws its terrain from. Transparent but for what is draped on it; it writes no
// depth (MapLibre's surface has), and is drawn a little towards the camera so that where
// its mesh runs below MapLibre's (they are meshed differently) what it carries still shows.
// `source`: MapLibre's raster-dem source, once it has read the TileJSON.
function terrainSurface(source) {
  return new TerrainLayer({
    id: 'terrain-surface', operation: 'terrain+draw',
    elevationData: source.tiles[0], elevationDecoder: TERRAIN_RGB,
    tileSize: 256, minZoom: source.minzoom, maxZoom: source.maxzoom, extent: source.bounds,
    meshMaxError: 1, color: [0, 0, 0, 0],
    // The worker from the platform, not from unpkg.com (the default).
    loadOptions: {terrain: {workerUrl: new URL(terrainWorker, location.href).href}},
    parameters: {depthWriteEnabled: false, depthBias: -2, depthBiasSlopeScale: -2},
    onTileError: error => reportError(t('error.map', {message: error?.message || error}))
  });
}

export function createInfrastructure(map, overlay, {buildings3d, listed, onChange}) {
  let tilesets = listed.tilesets.filter(s => INFRASTRUCTURE.includes(s.id));
  let key = listed.key; // the key the list was made with: the tiles need the same
  const shown = new Set();
  let underground = false;
  const saved = new Map(); // style layer -> its own opacity, while underground

  const draw = () => {
    overlay.set('infrastructure', tilesets.filter(s => shown.has(s.id))
      .map(s => tilesetLayer(s, key, underground)));
    status.settle?.();
  };

  function rows() {
    const list = $('infrastructure-list');
    list.replaceChildren();
    for (const tileset of tilesets) {
      const item = document.createElement('li');
      item.dataset.tileset = tileset.id;
      const label = document.createElement('label');
      const box = Object.assign(document.createElement('input'), {type: 'checkbox', checked: shown.has(tileset.id)});
      box.addEventListener('change', () => {
        if (box.checked) shown.add(tileset.id);
        else shown.delete(tileset.id);
        draw();
        onChange();
      });
      label.append(box, ` ${t(`infrastructure.${tileset.id}`)}`);
      item.append(label);
      list.append(item);
    }
    $('infrastructure-none').hidden = tilesets.length > 0;
  }

  // Underground: every surface layer of the map (and the 3D buildings) made translucent.
  function setUnderground(on) {
    if (on === underground) return;
    underground = on;
    for (const layer of map.getStyle().layers) {
      const property = OPACITY[layer.type];
      if (!property || layer.id === HILLSHADE) continue;
      if (on) {
        saved.set(layer.id, map.getPaintProperty(layer.id, property));
        map.setPaintProperty(layer.id, property, SURFACE_OPACITY);
      } else if (saved.has(layer.id)) {
        map.setPaintProperty(layer.id, property, saved.get(layer.id));
      }
    }
    if (!on) saved.clear();
    buildings3d?.setOpacity(on ? SURFACE_OPACITY : 1);
    draw();
  }

  // Hillshade under every other layer, from the TileJSON (its bounds keep MapLibre from
  // asking for tiles off the DEMs).
  function setHillshade(on) {
    if (on === Boolean(map.getLayer(HILLSHADE))) return;
    if (on) {
      if (!map.getSource(HILLSHADE)) {
        map.addSource(HILLSHADE, {type: 'raster', tileSize: 256,
          url: new URL('hillshade/WebMercatorQuad/tilejson.json', API_ROOT).href});
      }
      const below = map.getStyle().layers.find(l => l.type !== 'background')?.id;
      map.addLayer({id: HILLSHADE, type: 'raster', source: HILLSHADE, paint: {'raster-opacity': 0.6}}, below);
    } else {
      map.removeLayer(HILLSHADE);
    }
  }

  // Terrain: MapLibre's raster-dem source, and deck's surface from the same TileJSON once
  // the source has read it (before that the map is not loaded, so the page is not ready).
  // Without DEMs the TileJSON has no bounds: nothing to drape over.
  const surface = () => {
    const source = map.getSource(TERRAIN);
    overlay.set('terrain', map.getTerrain() && source?.tiles && source.bounds ? [terrainSurface(source)] : []);
  };
  map.on('sourcedata', event => {
    if (event.sourceId === TERRAIN && event.sourceDataType === 'metadata') surface();
  });
  function setTerrain(on) {
    if (on === Boolean(map.getTerrain())) return;
    if (on && !map.getSource(TERRAIN)) {
      map.addSource(TERRAIN, {type: 'raster-dem', encoding: 'mapbox', tileSize: 256,
        url: new URL('terrain/WebMercatorQuad/tilejson.json', API_ROOT).href});
    }
    map.setTerrain(on ? {source: TERRAIN, exaggeration: 1} : null);
    overlay.drape(on);
    surface();
    status.settle?.();
  }

  const toggles = {underground: setUnderground, hillshade: setHillshade, terrain: setTerrain};
  for (const [name, set] of Object.entries(toggles)) {
    $(name).addEventListener('change', event => {
      set(event.target.checked);
      onChange();
    });
  }

  // A key typed in a panel may see the internal drainage network: ask again.
  const relist = async () => {
    $('infrastructure-refused').hidden = true;
    const now = await listTilesets(() => { $('infrastructure-refused').hidden = false; });
    tilesets = now.tilesets.filter(s => INFRASTRUCTURE.includes(s.id));
    key = now.key;
    for (const id of [...shown]) if (!tilesets.some(s => s.id === id)) shown.delete(id);
    rows();
    draw();
  };
  for (const input of ['flood-key', 'traffic-key']) $(input)?.addEventListener('change', relist);

  rows();
  return {
    relist,
    // A shared link's toggles (a tileset not listed for this reader stays off).
    apply(state) {
      shown.clear();
      for (const id of state.infra || []) if (tilesets.some(s => s.id === id)) shown.add(id);
      rows();
      for (const [name, set] of Object.entries(toggles)) {
        $(name).checked = Boolean(state[name]);
        set(Boolean(state[name]));
      }
      draw();
    },
    state: () => ({infra: [...shown], underground, hillshade: Boolean(map.getLayer(HILLSHADE)),
      terrain: Boolean(map.getTerrain())})
  };
}
