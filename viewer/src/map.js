// The map: MapLibre draws the platform's own style (/styles/default: every catalog layer from
// the vector tiles, buildings extruded), deck.gl draws overlays interleaved with it (the
// selection today; flood depths, traffic and 3D Tiles later). MapLibre stays on 5.x: 6.x
// breaks deck's interleaved overlay (see the browser recipe).
import maplibregl from 'maplibre-gl';
import 'maplibre-gl/dist/maplibre-gl.css';
import {MapboxOverlay} from '@deck.gl/mapbox';
import {_TerrainExtension as TerrainExtension} from '@deck.gl/extensions';
import {Tile3DLayer} from '@deck.gl/geo-layers';
import {reportError, setLoading, status} from './status.js';
import {t} from './i18n.js';

export const PITCH_3D = 55;
// The reference city's Optics Valley district, for when the buildings spread over more than
// one city (the demo city also holds Shanghai's Bund) or have no extent yet.
const FALLBACK_VIEW = {center: [114.503, 30.4935], zoom: 15.2, bearing: -25, pitch: PITCH_3D};
const COMPACT_DEGREES = 0.2;

export function homeView(collections) {
  const bbox = collections.find(c => c.id === 'buildings')?.extent?.spatial?.bbox?.[0];
  if (!bbox || bbox[2] - bbox[0] > COMPACT_DEGREES || bbox[3] - bbox[1] > COMPACT_DEGREES) {
    return {...FALLBACK_VIEW};
  }
  return {bounds: [[bbox[0], bbox[1]], [bbox[2], bbox[3]]], bearing: -20, pitch: PITCH_3D};
}

export function createMap(container, style, view) {
  const {bounds, ...camera} = view;
  const map = new maplibregl.Map({
    container, style, ...camera, maxPitch: 80,
    ...(bounds ? {bounds, fitBoundsOptions: {padding: 40}} : {})
  });
  addControls(map);

  map.on('error', event => reportError(t('error.map', {message: event.error?.message || event.error})));
  map.on('dataloading', () => setLoading(true));
  return map;
}

// Ready (for people: the loading note goes; for tests: window.__cim.ready) once MapLibre is
// idle and every deck.gl layer has loaded what the view needs on two checks in a row: a
// tile layer can say it is loaded a frame before a tile that just arrived is drawn.
export function watchReady(map, overlay) {
  let streak = 0;
  let timer = null;
  const check = () => {
    timer = null;
    streak = map.loaded() && overlay.loaded() ? streak + 1 : 0;
    if (streak >= 2) {
      setLoading(false);
      status.ready = true;
      return;
    }
    timer = setTimeout(check, 100);
    map.triggerRepaint();
  };
  const start = () => {
    streak = 0;
    if (timer === null) timer = setTimeout(check, 50);
  };
  map.on('idle', start);
  map.on('moveend', start);
  status.settle = start;
  // What keeps the page from being ready: said when a test times out waiting for it.
  status.pending = () => [...(map.loaded() ? [] : ['map']), ...overlay.pending()];
}

function addControls(map) {
  map.addControl(new maplibregl.NavigationControl({visualizePitch: true}), 'bottom-right');
  map.addControl(new maplibregl.ScaleControl(), 'bottom-left');
  status.map = map;
  status.project = (lon, lat) => map.project([lon, lat]);
}

const TERRAIN = new TerrainExtension();

// On MapLibre's terrain a layer of deck.gl is drawn onto deck's own terrain surface (a
// TerrainLayer over the same DEM tiles, infrastructure.js): flat ones (depth maps, roads,
// links) are draped over it, 3D ones (the planned buildings, points) lifted by its height.
// The 3D Tiles carry their ground heights already, and the surface is the terrain itself.
// A draped layer gets an id of its own: deck.gl hands a layer's state on to the next layer of
// its id, and the extension's (drawn into the surface's texture only) would outlive it.
const DRAPED = '@terrain';
const onTerrain = layer => (layer instanceof Tile3DLayer || layer.props.operation.includes('terrain')
  ? layer : layer.clone({id: `${layer.id}${DRAPED}`, extensions: [...layer.props.extensions, TERRAIN]}));

// Named groups of deck.gl layers over the map: each feature (selection, flood, traffic...)
// owns its group and replaces it without knowing about the others.
export function createOverlay(map) {
  const overlay = new MapboxOverlay({interleaved: true, layers: []});
  map.addControl(overlay);
  const given = new Map(); // each group's layers as its feature made them
  const groups = new Map(); // and as they are drawn: on the terrain while it is on
  let draped = false;
  const update = () => overlay.setProps({layers: [...groups.values()].flat()});
  return {
    set(name, layers) {
      given.set(name, layers);
      groups.set(name, draped ? layers.map(onTerrain) : layers);
      update();
    },
    // Every layer onto deck's terrain surface (on), or back at height 0 (off).
    drape(on) {
      draped = on;
      for (const [name, layers] of given) groups.set(name, on ? layers.map(onTerrain) : layers);
      update();
    },
    pick: ({layerIds, ...params}) => overlay.pickObject({...params,
      ...(layerIds ? {layerIds: layerIds.flatMap(id => [id, `${id}${DRAPED}`])} : {})}),
    // Every deck.gl layer has what it needs for the current view (tiles included).
    loaded: () => [...groups.values()].flat().every(layer => layer.props.visible === false || layer.isLoaded),
    pending: () => [...groups.values()].flat()
      .filter(layer => layer.props.visible !== false && !layer.isLoaded).map(describe)
  };
}

// A layer that has not loaded, with its 3D tileset's traversal state when it has one.
function describe(layer) {
  const tileset = layer.state?.tileset3d;
  if (!tileset) return layer.id;
  return `${layer.id} (frame ${tileset.frameNumber}, loading ${tileset._pendingCount}, `
    + `requested ${tileset._requestedTiles.length})`;
}

export function view(map) {
  const {lng, lat} = map.getCenter();
  return {zoom: map.getZoom(), center: [lng, lat], bearing: map.getBearing(), pitch: map.getPitch()};
}
