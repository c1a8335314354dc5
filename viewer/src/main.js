// Boot: read the catalog, draw the map at the shared (or home) view, build the panel, wire
// picking, and keep the URL hash in step with what is shown.
import './style.css';
import {loadCatalog} from './api.js';
import {createMap, createOverlay, homeView, PITCH_3D, view} from './map.js';
import {buildPanel} from './panel.js';
import {createPicking} from './picking.js';
import {readHash, writeHash} from './state.js';
import {showLatestReadings} from './tooltip.js';

const catalog = await loadCatalog();
const initial = readHash();
const home = homeView(catalog.collections);
const map = createMap('map', catalog.style, initial.view || home);
const overlay = createOverlay(map);
const allLayers = catalog.style.layers.filter(l => l.type !== 'background').map(l => l.id);

let panel = null;
let picking = null;
const saveState = () => writeHash({
  view: view(map),
  layers: panel.visible(),
  select: picking.current()?.id ? picking.current() : undefined
});

map.once('load', () => {
  panel = buildPanel(document.getElementById('layers'), map, catalog,
    new Set(initial.layers || allLayers), saveState);
  picking = createPicking(map, overlay, {
    panel: document.getElementById('record'),
    titles: new Map(catalog.collections.map(c => [c.id, c.title])),
    pickable: () => panel.visible(),
    onSelect: () => saveState()
  });
  showLatestReadings(map, 'sensors', document.getElementById('tooltip'));
  map.on('moveend', saveState);
  if (initial.select) picking.select(initial.select);
  saveState();
});

// A pasted link or the back button: apply the new hash.
window.addEventListener('hashchange', () => {
  if (!panel) return; // before the map's load the initial hash is still being applied
  const state = readHash();
  if (state.view) map.jumpTo(state.view);
  if (state.layers) panel.setVisible(new Set(state.layers));
  const now = picking.current();
  if (state.select?.id !== now?.id || state.select?.collection !== now?.collection) {
    picking.select(state.select || null);
  }
});

const dimension = document.getElementById('dimension');
const label2d3d = () => { dimension.textContent = map.getPitch() > 0 ? '2D' : '3D'; };
dimension.addEventListener('click', () => map.easeTo({pitch: map.getPitch() > 0 ? 0 : PITCH_3D}));
map.on('pitchend', label2d3d);
label2d3d();
document.getElementById('home').addEventListener('click', () => {
  const {bounds, ...camera} = home;
  if (bounds) map.fitBounds(bounds, {padding: 40, bearing: camera.bearing, pitch: camera.pitch});
  else map.flyTo(camera);
});
