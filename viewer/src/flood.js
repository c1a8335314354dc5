// The flood panel: launch a design-storm scenario over the current view or a drawn box with
// an analyst's API key (kept in sessionStorage, i.e. for this tab only), follow its progress,
// then show its depth maps as raster tiles (WebMercatorQuad PNGs, transparent where dry)
// with a time slider and play button, the flooded roads and buildings, and the ranked
// hotspots (click one to fly there). The open scenario and time are in the URL.
import {TileLayer} from '@deck.gl/geo-layers';
import {BitmapLayer, GeoJsonLayer, PolygonLayer} from '@deck.gl/layers';
import {API_ROOT, getJson} from './api.js';
import {t} from './i18n.js';
import {bindKey, explain as explainIn, scenarioFollower} from './scenarios.js';
import {reportError, status} from './status.js';

const PLAY_MS = 1200;
export const ROAD_COLOURS = {passable: [161, 218, 180], with_care: [253, 174, 97], closed: [215, 25, 28]};
const FLOODED_BUILDING = [215, 25, 28];
export const MAX = 'max';
// The catalog's result layers, drawn by MapLibre from the vector tiles: kept to the open
// scenario so that other runs' results do not show beside it.
const STYLE_LAYERS = ['flood_roads', 'flood_buildings', 'flood_hotspots'];

const $ = id => document.getElementById(id);

// The scenario's depth maps in time order, the maximum last: [{name, time}] with time in
// seconds from the start of the storm, or MAX.
export function depthMaps(files) {
  const steps = files.map(name => name.match(/^depth_(\d+)s\.tif$/))
    .filter(Boolean).map(m => ({name: m[0], time: Number(m[1])}))
    .sort((a, b) => a.time - b.time);
  if (files.includes('max_depth.tif')) steps.push({name: 'max_depth.tif', time: MAX});
  return steps;
}

export const clock = seconds => {
  const minutes = Math.round(seconds / 60);
  return `${Math.floor(minutes / 60)}:${String(minutes % 60).padStart(2, '0')}`;
};

function bboxOf(geometry) {
  const points = geometry.coordinates.flat(geometry.type === 'MultiPolygon' ? 2 : 1);
  const xs = points.map(p => p[0]);
  const ys = points.map(p => p[1]);
  return [[Math.min(...xs), Math.min(...ys)], [Math.max(...xs), Math.max(...ys)]];
}

// A scenario map's PNG tiles (`path` under the API, with {z}/{x}/{y}) as a deck.gl layer;
// `extra` adds to or overrides the TileLayer's props (visible, extensions...).
export function rasterTiles(id, path, onFailure, extra = {}) {
  return new TileLayer({
    id,
    // Concatenated, not new URL(): that would escape the template's braces.
    data: `${API_ROOT}${path}`,
    minZoom: 0,
    maxZoom: 18,
    tileSize: 256,
    opacity: 0.8,
    onTileError: error => onFailure(error),
    // 204 is a tile with nothing to draw (no wet cell, no change): not an error.
    getTileData: async ({url, signal}) => {
      const response = await fetch(url, {signal});
      if (response.status === 204) return null;
      if (!response.ok) throw new Error(`HTTP ${response.status}: ${new URL(url).pathname}`);
      return createImageBitmap(await response.blob());
    },
    renderSubLayers: props => {
      if (!props.data) return null;
      const {west, south, east, north} = props.tile.bbox;
      return new BitmapLayer(props, {data: null, image: props.data, bounds: [west, south, east, north]});
    },
    ...extra
  });
}

export const depthTiles = (scenarioId, name) => `scenarios/${scenarioId}/maps/${name}/{z}/{x}/{y}.png`;

function depthLayer(scenarioId, {name}, visible, onFailure) {
  return rasterTiles(`flood-depth-${scenarioId}-${name}`, depthTiles(scenarioId, name), onFailure, {visible});
}

export function createFloodPanel(map, overlay, {onChange}) {
  const keyInput = $('flood-key');
  // Internal layers may be readable with a new key.
  const key = bindKey(keyInput, () => { if (scenario?.status === 'succeeded') showResults(scenario); });

  let scenario = null; // the open scenario's record
  let steps = [];
  let step = 0;
  let drawn = null; // [west, south, east, north] of a drawn box
  let playing = null;
  let mapsFailed = false;
  let wanted = MAX; // the time to show once the open scenario's maps are known

  const say = message => { $('flood-status').textContent = message; };
  const progress = value => {
    $('flood-progress').hidden = value === null;
    if (value !== null) $('flood-progress').value = value;
  };

  // --- the area: the current view, or a box dragged on the map -------------------------
  const areaNote = $('flood-area-note');
  const drawArea = box => overlay.set('flood-area', box ? [new PolygonLayer({
    id: 'flood-area', data: [[[box[0], box[1]], [box[2], box[1]], [box[2], box[3]], [box[0], box[3]]]],
    getPolygon: d => d, filled: true, getFillColor: [44, 127, 184, 40], stroked: true,
    getLineColor: [44, 127, 184], lineWidthMinPixels: 2
  })] : []);
  let dragStart = null;
  const boxMode = () => document.querySelector('input[name=flood-area]:checked').value === 'box';
  for (const radio of document.querySelectorAll('input[name=flood-area]')) {
    radio.addEventListener('change', () => {
      areaNote.hidden = !boxMode();
      areaNote.textContent = t('flood.area.draw');
      if (boxMode()) map.dragPan.disable();
      else {
        map.dragPan.enable();
        drawn = null;
        drawArea(null);
      }
    });
  }
  const corner = (a, b) => [Math.min(a.lng, b.lng), Math.min(a.lat, b.lat), Math.max(a.lng, b.lng), Math.max(a.lat, b.lat)];
  map.on('mousedown', event => {
    if (!boxMode() || event.originalEvent.button !== 0) return;
    dragStart = event.lngLat;
  });
  map.on('mousemove', event => {
    if (dragStart) drawArea(corner(dragStart, event.lngLat));
  });
  map.on('mouseup', event => {
    if (!dragStart) return;
    const box = corner(dragStart, event.lngLat);
    dragStart = null;
    if (box[0] === box[2] || box[1] === box[3]) return drawArea(drawn); // a click, not a box
    drawn = box;
    drawArea(drawn);
    const [w, s, e, n] = drawn.map(v => v.toFixed(5));
    areaNote.textContent = t('flood.area.drawn', {w, s, e, n});
  });

  function area() {
    if (boxMode()) return drawn;
    const bounds = map.getBounds();
    return [bounds.getWest(), bounds.getSouth(), bounds.getEast(), bounds.getNorth()];
  }

  // --- launching and following a run ---------------------------------------------------
  const explain = error => explainIn('flood', error);
  const {follow, stop: stopFollowing} = scenarioFollower('flood', 'flood', {
    say, progress, isOpen: id => scenario?.id === id,
    onRecord: record => { scenario = record; }, onSucceeded: record => showResults(record)
  });

  $('flood-form').addEventListener('submit', async event => {
    event.preventDefault();
    const inputs = {
      return_period: Number($('flood-return').value),
      duration_h: Number($('flood-duration').value),
      cell_m: Number($('flood-cell').value),
      map_every_min: Number($('flood-every').value)
    };
    const box = area();
    if (!box) return say(t('flood.area.draw')); // box mode, nothing drawn yet
    inputs.area = box.map(v => Number(v.toFixed(6)));
    say(t('flood.queued'));
    progress(0);
    try {
      const created = await getJson('scenarios/flood', null, {key: key(), body: inputs});
      open(created.id, MAX);
    } catch (error) {
      progress(null);
      say(explain(error));
    }
  });

  // --- results -------------------------------------------------------------------------
  async function features(collection, id) {
    const page = await getJson(`collections/${collection}/items`,
      {filter: `scenario_id=${id}`, limit: 1000}, {key: key()});
    return page.features;
  }

  function drawDepth() {
    const id = scenario.id;
    overlay.set('flood-depth', steps.map((s, i) => depthLayer(id, s, i === step, error => {
      if (mapsFailed) return;
      mapsFailed = true;
      reportError(t('flood.maps.failed', {message: error?.message || error}));
    })));
    const current = steps[step];
    $('flood-time').value = String(step);
    $('flood-time-label').textContent = current
      ? (current.time === MAX ? t('flood.max') : clock(current.time)) : '';
    status.settle?.();
  }

  async function showResults(record) {
    const id = record.id;
    steps = depthMaps(record.outputs.files || []);
    step = stepOf(wanted);
    onChange();
    $('flood-result').hidden = false;
    $('flood-time').max = String(Math.max(steps.length - 1, 0));
    mapsFailed = false;
    drawDepth();
    for (const layer of STYLE_LAYERS) {
      if (map.getLayer(layer)) map.setFilter(layer, ['==', ['get', 'scenario_id'], id]);
    }
    const list = $('flood-hotspots');
    list.replaceChildren();
    try {
      const roads = await features('flood_roads', id);
      if (scenario?.id !== id) return;
      overlay.set('flood-roads', [new GeoJsonLayer({
        id: 'flood-roads', data: {type: 'FeatureCollection', features: roads},
        getLineColor: f => ROAD_COLOURS[f.properties.flood_class] || [44, 127, 184],
        lineWidthUnits: 'pixels', getLineWidth: 5, pickable: false
      })]);
    } catch (error) {
      reportError(error.message);
    }
    if (!key()) {
      list.append(Object.assign(document.createElement('li'), {textContent: t('flood.hotspots.key'), className: 'note'}));
      overlay.set('flood-buildings', []);
      return;
    }
    try {
      const [buildings, hotspots] = await Promise.all([features('flood_buildings', id), features('flood_hotspots', id)]);
      if (scenario?.id !== id) return;
      overlay.set('flood-buildings', [new GeoJsonLayer({
        id: 'flood-buildings', data: {type: 'FeatureCollection', features: buildings},
        filled: false, stroked: true, getLineColor: FLOODED_BUILDING, lineWidthMinPixels: 3,
        parameters: {depthCompare: 'always'}
      })]);
      hotspots.sort((a, b) => a.properties.rank - b.properties.rank);
      if (!hotspots.length) list.append(Object.assign(document.createElement('li'), {textContent: t('flood.hotspots.none')}));
      for (const spot of hotspots) {
        const p = spot.properties;
        const item = document.createElement('li');
        const button = document.createElement('button');
        button.type = 'button';
        button.className = 'link';
        button.textContent = t('flood.hotspot', {rank: p.rank, people: Math.round(p.people ?? 0),
          depth: Number(p.max_depth_m).toFixed(2)});
        button.addEventListener('click', () => map.fitBounds(bboxOf(spot.geometry), {padding: 80, maxZoom: 18}));
        item.append(button);
        list.append(item);
      }
    } catch (error) {
      list.append(Object.assign(document.createElement('li'), {textContent: explain(error), className: 'note'}));
    }
  }

  function clear() {
    stopFollowing();
    stop();
    scenario = null;
    steps = [];
    for (const group of ['flood-depth', 'flood-roads', 'flood-buildings']) overlay.set(group, []);
    for (const layer of STYLE_LAYERS) if (map.getLayer(layer)) map.setFilter(layer, null);
    $('flood-result').hidden = true;
    say('');
    progress(null);
    onChange();
  }

  // --- time ----------------------------------------------------------------------------
  function stop() {
    clearInterval(playing);
    playing = null;
    $('flood-play').textContent = t('flood.play');
  }
  function show(index) {
    step = index;
    wanted = steps[index]?.time ?? MAX;
    drawDepth();
    onChange();
  }
  $('flood-time').addEventListener('input', () => show(Number($('flood-time').value)));
  $('flood-play').addEventListener('click', () => {
    if (playing) return stop();
    $('flood-play').textContent = t('flood.pause');
    playing = setInterval(() => show((step + 1) % steps.length), PLAY_MS);
  });
  $('flood-clear').addEventListener('click', clear);

  function stepOf(time) {
    const index = steps.findIndex(s => String(s.time) === String(time));
    return index >= 0 ? index : steps.length - 1;
  }

  function open(id, time) {
    stop();
    $('flood').open = true;
    scenario = {id};
    wanted = time ?? MAX;
    follow(id);
    onChange();
  }

  return {
    open,
    // A pasted link: open another scenario, or move to another time of this one.
    apply(id, time) {
      if (!id) return scenario && clear();
      if (id !== scenario?.id) return open(id, time);
      if (time !== undefined && steps.length && stepOf(time) !== step) show(stepOf(time));
    },
    // Until its maps are known, the time asked for (a link being opened keeps it).
    state: () => (scenario ? {scenario: scenario.id, time: steps.length ? steps[step]?.time : wanted} : {})
  };
}
