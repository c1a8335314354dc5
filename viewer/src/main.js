// Boot: read the catalog, draw the map at the shared (or home) view, build the panel, wire
// picking (vector tiles and 3D Tiles), the flood, traffic and compare panels, infrastructure
// and terrain, and keep the URL hash in step with what is shown.
import './style.css';
import {loadCatalog} from './api.js';
import {createBuildings3d} from './buildings3d.js';
import {createCompare} from './compare.js';
import {createFloodPanel} from './flood.js';
import {createInfrastructure, listTilesets} from './infrastructure.js';
import {switchLanguage, translatePage} from './i18n.js';
import {bindKeys} from './keys.js';
import {createMap, createOverlay, homeView, PITCH_3D, view, watchReady} from './map.js';
import {buildPanel} from './panel.js';
import {createPicking} from './picking.js';
import {readHash, writeHash} from './state.js';
import {setLoading} from './status.js';
import {showLatestReadings} from './tooltip.js';
import {createTrafficPanel} from './traffic.js';

translatePage();
document.getElementById('language').addEventListener('click', switchLanguage);
setLoading(true);
const catalog = await loadCatalog();
// Asked beside the map's first requests: the 3D Tiles wait on the answer.
const listing = listTilesets();
const initial = readHash();
const home = homeView(catalog.collections);
const map = createMap('map', catalog.style, initial.view || home);
const overlay = createOverlay(map);
const allLayers = catalog.style.layers.filter(l => l.type !== 'background').map(l => l.id);

let panel = null;
let picking = null;
let buildings3d = null;
let flood = null;
let traffic = null;
let compare = null;
let infrastructure = null;
let applying = false; // a pasted link is being applied: its own moves must not rewrite it
const saveState = () => applying || writeHash({
  view: view(map),
  layers: panel.visible(),
  select: picking.current()?.id ? picking.current() : undefined,
  ...flood.state(),
  ...traffic.state(),
  ...compare.state(),
  ...infrastructure.state()
});

const goHome = () => {
  const {bounds, ...camera} = home;
  if (bounds) map.fitBounds(bounds, {padding: 40, bearing: camera.bearing, pitch: camera.pitch});
  else map.flyTo(camera);
};
const flip2d3d = () => map.easeTo({pitch: map.getPitch() > 0 ? 0 : PITCH_3D});

// Set up once the style is in, not at 'load', which waits for the first complete render: with
// a buildings tileset that would draw the vector tiles' extrusion the 3D Tiles replace, and
// only then start them (bench/viewer.py --demo).
map.once('style.load', async () => {
  const listed = await listing;
  buildings3d = createBuildings3d(map, overlay, listed.tilesets);
  panel = buildPanel(document.getElementById('layers'), map, catalog,
    new Set(initial.layers || allLayers), () => {
      buildings3d?.show(panel.visible().includes('buildings'));
      compare?.refresh();
      saveState();
    });
  buildings3d?.show(panel.visible().includes('buildings'));
  picking = createPicking(map, overlay, {
    panel: document.getElementById('record'),
    titles: new Map(catalog.collections.map(c => [c.id, c.title])),
    pickable: () => panel.visible(),
    onSelect: () => saveState(),
    extraPick: point => compare?.pick(point.x, point.y) || buildings3d?.pick(point.x, point.y),
    paused: () => traffic.placing()
  });
  flood = createFloodPanel(map, overlay, {onChange: () => saveState()});
  traffic = createTrafficPanel(map, overlay, {styleLayers: catalog.style.layers, onChange: () => saveState()});
  compare = createCompare(map, overlay, {styleLayers: catalog.style.layers, buildings3d,
    buildingsShown: () => panel.visible().includes('buildings'), onChange: () => saveState()});
  infrastructure = createInfrastructure(map, overlay, {buildings3d, listed, onChange: () => saveState()});
  infrastructure.apply(initial);
  showLatestReadings(map, 'sensors', document.getElementById('tooltip'));
  map.on('moveend', saveState);
  watchReady(map, overlay);
  if (initial.select) picking.select(initial.select);
  if (initial.scenario) flood.open(initial.scenario, initial.time);
  if (initial.traffic) traffic.open(initial.traffic);
  if (initial.compare) compare.open(initial.compare, initial);
  saveState();
  bindKeys(map, {home: goHome, flip: flip2d3d, close: () => picking.close()});
});

// A pasted link or the back button: apply the new hash.
window.addEventListener('hashchange', () => {
  if (!panel) return; // before the map's load the initial hash is still being applied
  const state = readHash();
  applying = true;
  try {
    applyState(state);
  } finally {
    applying = false;
  }
  saveState();
});

function applyState(state) {
  if (state.view) map.jumpTo(state.view);
  if (state.layers) {
    panel.setVisible(new Set(state.layers));
    buildings3d?.show(state.layers.includes('buildings'));
    compare.refresh();
  }
  const now = picking.current();
  if (state.select?.id !== now?.id || state.select?.collection !== now?.collection) {
    picking.select(state.select || null);
  }
  flood.apply(state.scenario, state.time);
  traffic.apply(state.traffic);
  compare.apply(state.compare, state);
  infrastructure.apply(state);
}

const dimension = document.getElementById('dimension');
const label2d3d = () => { dimension.textContent = map.getPitch() > 0 ? '2D' : '3D'; };
dimension.addEventListener('click', flip2d3d);
map.on('pitchend', label2d3d);
label2d3d();
document.getElementById('home').addEventListener('click', goHome);
