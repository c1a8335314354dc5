// The map: MapLibre draws the platform's own style (/styles/default: every catalog layer from
// the vector tiles, buildings extruded), deck.gl draws overlays interleaved with it (the
// selection today; flood depths, traffic and 3D Tiles later). MapLibre stays on 5.x: 6.x
// breaks deck's interleaved overlay (see the browser recipe).
import maplibregl from 'maplibre-gl';
import 'maplibre-gl/dist/maplibre-gl.css';
import {MapboxOverlay} from '@deck.gl/mapbox';
import {reportError, setLoading, status} from './status.js';

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
  map.addControl(new maplibregl.NavigationControl({visualizePitch: true}), 'bottom-right');
  map.addControl(new maplibregl.ScaleControl(), 'bottom-left');

  map.on('error', event => reportError(`Map data failed: ${event.error?.message || event.error}`));
  map.on('dataloading', () => setLoading(true));
  map.on('idle', () => {
    setLoading(false);
    status.ready = true;
  });

  status.map = map;
  status.project = (lon, lat) => map.project([lon, lat]);
  return map;
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
    }
  };
}

export function view(map) {
  const {lng, lat} = map.getCenter();
  return {zoom: map.getZoom(), center: [lng, lat], bearing: map.getBearing(), pitch: map.getPitch()};
}
