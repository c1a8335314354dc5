// The map: MapLibre draws the platform's own style (/styles/default: every catalog layer from
// the vector tiles, buildings extruded), deck.gl draws overlays interleaved with it (the
// selection today; flood depths, traffic and 3D Tiles later). MapLibre stays on 5.x: 6.x
// breaks deck's interleaved overlay (see the browser recipe).
import maplibregl from 'maplibre-gl';
import 'maplibre-gl/dist/maplibre-gl.css';
import {MapboxOverlay} from '@deck.gl/mapbox';
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

// Named groups of deck.gl layers over the map: each feature (selection, flood, traffic...)
// owns its group and replaces it without knowing about the others.
export function createOverlay(map) {
  const overlay = new MapboxOverlay({interleaved: true, layers: []});
  map.addControl(overlay);
  const groups = new Map();
  return {
    set(name, layers) {
      groups.set(name, layers);
      overlay.setProps({layers: [...groups.values()].flat()});
    },
    pick: params => overlay.pickObject(params),
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
