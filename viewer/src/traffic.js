// The traffic panel: launch a traffic scenario (roads closed by id and, optionally, by a
// flood scenario's water; demand from the buildings or an OD matrix's CSV file) with an analyst's API key, follow its progress, then draw its
// links with widths by volume and colours by volume/capacity (the catalog's own ramp for
// `traffic_links`), before or after, with the totals; and emergency routes on its network:
// a start and destinations clicked on the map, the fastest routes drawn with their times.
// The open scenario is in the URL (`traffic=N`).
import {GeoJsonLayer, ScatterplotLayer} from '@deck.gl/layers';
import {getJson} from './api.js';
import {t} from './i18n.js';
import {bindKey, explain as explainIn, scenarioFollower} from './scenarios.js';
import {reportError, status} from './status.js';
import {legendEntries} from './panel.js';

const PAGE = 1000;
const MAX_LINKS = 20000; // beyond this the catalog's vector tiles draw the links
export const CLOSED = [90, 90, 90];
const ROUTE = [123, 50, 148];
const START = [0, 0, 0];
const STYLE_LAYER = 'traffic_links';

const $ = id => document.getElementById(id);

const hexRgb = hex => [1, 3, 5].map(i => parseInt(hex.slice(i, i + 2), 16));

// Colour of a volume/capacity ratio on the catalog's ramp (linear between its stops).
export function rampColour(stops, value) {
  if (!stops.length) return CLOSED;
  if (value <= stops[0].value) return stops[0].rgb;
  for (let i = 1; i < stops.length; i++) {
    const [a, b] = [stops[i - 1], stops[i]];
    if (value <= b.value) {
      const f = (value - a.value) / (b.value - a.value);
      return a.rgb.map((c, k) => Math.round(c + f * (b.rgb[k] - c)));
    }
  }
  return stops.at(-1).rgb;
}

export function rampOf(styleLayer) {
  if (!styleLayer) return [];
  return legendEntries(styleLayer)
    .filter(e => e.label !== undefined && /^#[0-9a-f]{6}$/i.test(e.colour))
    .map(e => ({value: Number(e.label), rgb: hexRgb(e.colour)}))
    .filter(e => Number.isFinite(e.value));
}

// An OD matrix from a CSV file: origin zone, destination zone, trips; a header is skipped.
export function parseOd(text) {
  const rows = [];
  const lines = text.split(/\r?\n/);
  lines.forEach((line, i) => {
    if (!line.trim()) return;
    const [origin, destination, trips, ...rest] = line.split(',').map(s => s.trim());
    const value = Number(trips);
    if (i === 0 && !Number.isFinite(value)) return; // the header
    if (!origin || !destination || trips === '' || !Number.isFinite(value) || rest.length) {
      throw new Error(t('traffic.od.bad', {line: i + 1}));
    }
    rows.push([origin, destination, value]);
  });
  return rows;
}

// Every link of a scenario, page by page (the API caps a page), up to MAX_LINKS.
async function allLinks(id, key) {
  const features = [];
  let offset = 0;
  for (;;) {
    const page = await getJson('collections/traffic_links/items',
      {filter: `scenario_id=${id}`, limit: PAGE, offset}, {key});
    features.push(...page.features);
    offset += page.features.length;
    const more = page.links?.some(link => link.rel === 'next');
    if (!more || !page.features.length || features.length >= MAX_LINKS) return features;
  }
}

const number = (value, digits = 1) => Number(value).toLocaleString(undefined,
  {maximumFractionDigits: digits, minimumFractionDigits: digits});

export function createTrafficPanel(map, overlay, {styleLayers, onChange}) {
  const ramp = rampOf(styleLayers.find(l => l.id === STYLE_LAYER));
  const key = bindKey($('traffic-key'));

  let scenario = null; // the open scenario's record
  let links = [];
  let mode = null; // 'start' | 'to' while the map's clicks place route points
  let start = null;
  let ends = [];
  let routes = [];

  const say = message => { $('traffic-status').textContent = message; };
  const progress = value => {
    $('traffic-progress').hidden = value === null;
    if (value !== null) $('traffic-progress').value = value;
  };
  const explain = error => explainIn('traffic', error);
  const {follow, stop: stopFollowing} = scenarioFollower('traffic', 'traffic', {
    say, progress, isOpen: id => scenario?.id === id,
    onRecord: record => { scenario = record; }, onSucceeded: record => showResults(record)
  });
  const after = () => document.querySelector('input[name=traffic-when]:checked').value === 'after';

  // --- launching and following a run ---------------------------------------------------
  $('traffic-form').addEventListener('submit', async event => {
    event.preventDefault();
    const inputs = {
      demand_scale: Number($('traffic-demand').value),
      grid_m: Number($('traffic-grid').value),
      close_roads: $('traffic-close').value.split(',').map(s => s.trim()).filter(Boolean)
    };
    const odFile = $('traffic-od').files[0];
    if (odFile) {
      try {
        inputs.od = parseOd(await odFile.text());
      } catch (error) {
        return say(error.message);
      }
    }
    const flood = Number($('traffic-flood').value);
    if ($('traffic-flood').value.trim() && Number.isInteger(flood)) inputs.flood_scenario_id = flood;
    if ($('traffic-view').checked) {
      const b = map.getBounds();
      inputs.area = [b.getWest(), b.getSouth(), b.getEast(), b.getNorth()].map(v => Number(v.toFixed(6)));
    }
    say(t('traffic.queued'));
    progress(0);
    try {
      const created = await getJson('scenarios/traffic', null, {key: key(), body: inputs});
      open(created.id);
    } catch (error) {
      progress(null);
      say(explain(error));
    }
  });

  // --- results -------------------------------------------------------------------------
  function totals(outputs) {
    const table = $('traffic-totals');
    table.replaceChildren();
    const rows = [['vehicle_hours', 'traffic.vh', 1], ['vehicle_km', 'traffic.vkm', 1],
      ['unserved_trips', 'traffic.unserved', 0], ['trips', 'traffic.trips', 0]];
    const head = document.createElement('tr');
    for (const text of ['', t('traffic.before'), t('traffic.after')]) {
      head.append(Object.assign(document.createElement('th'), {textContent: text}));
    }
    table.append(head);
    for (const [name, label, digits] of rows) {
      const row = document.createElement('tr');
      row.dataset.total = name;
      row.append(Object.assign(document.createElement('th'), {textContent: t(label)}));
      for (const side of ['before', 'after']) {
        const value = outputs?.[side]?.[name];
        row.append(Object.assign(document.createElement('td'),
          {textContent: value === undefined ? '–' : number(value, digits)}));
      }
      table.append(row);
    }
  }

  function drawLinks() {
    const side = after() ? 'after' : 'before';
    const peak = Math.max(1, ...links.map(f => f.properties[`volume_${side}`] ?? 0));
    // A link that is closed (after) or absent (added roads, before) has no volume.
    const shown = links.filter(f => f.properties[`volume_${side}`] !== null
      || (side === 'after' && f.properties.status === 'closed'));
    overlay.set('traffic-links', [new GeoJsonLayer({
      id: 'traffic-links', data: {type: 'FeatureCollection', features: shown},
      lineWidthUnits: 'pixels', lineCapRounded: true,
      getLineWidth: f => {
        const volume = f.properties[`volume_${side}`];
        return volume === null ? 2 : 2 + 10 * volume / peak;
      },
      getLineColor: f => {
        const voc = f.properties[`voc_${side}`];
        return voc === null || voc === undefined ? CLOSED : rampColour(ramp, voc);
      },
      updateTriggers: {getLineWidth: side, getLineColor: side},
      pickable: false
    })]);
    status.settle?.();
  }

  async function showResults(record) {
    const id = record.id;
    $('traffic-result').hidden = false;
    totals(record.outputs);
    if (map.getLayer(STYLE_LAYER)) map.setFilter(STYLE_LAYER, ['==', ['get', 'scenario_id'], id]);
    try {
      const found = await allLinks(id, key());
      if (scenario?.id !== id) return;
      links = found;
      drawLinks();
    } catch (error) {
      reportError(error.message);
    }
    onChange();
  }
  for (const radio of document.querySelectorAll('input[name=traffic-when]')) {
    radio.addEventListener('change', () => links.length && drawLinks());
  }

  // --- emergency routes ------------------------------------------------------------------
  function drawRoutes() {
    const points = [...(start ? [{at: start, colour: START}] : []),
      ...ends.map(at => ({at, colour: ROUTE}))];
    overlay.set('traffic-routes', [
      new GeoJsonLayer({
        id: 'traffic-routes', data: {type: 'FeatureCollection', features: routes.filter(f => f.geometry)},
        lineWidthUnits: 'pixels', getLineWidth: 6, getLineColor: ROUTE, lineCapRounded: true,
        parameters: {depthCompare: 'always'}
      }),
      new ScatterplotLayer({
        id: 'traffic-route-points', data: points, getPosition: d => d.at, getFillColor: d => d.colour,
        radiusUnits: 'pixels', getRadius: 6, stroked: true, getLineColor: [255, 255, 255],
        lineWidthMinPixels: 2, parameters: {depthCompare: 'always'}
      })
    ]);
    status.settle?.();
  }

  function listRoutes() {
    const list = $('traffic-routes');
    list.replaceChildren();
    routes.forEach((route, i) => {
      const p = route.properties;
      const text = p.reachable
        ? t('traffic.route', {n: i + 1, minutes: number(p.travel_time_min), km: number(p.length_m / 1000, 2)})
        : t('traffic.unreachable', {n: i + 1, reason: p.reason || ''});
      list.append(Object.assign(document.createElement('li'), {textContent: text}));
    });
  }

  function setMode(next) {
    mode = mode === next ? null : next;
    $('traffic-start').classList.toggle('active', mode === 'start');
    $('traffic-to').classList.toggle('active', mode === 'to');
    map.getCanvas().style.cursor = mode ? 'crosshair' : '';
    $('traffic-route-note').textContent = mode ? t(`traffic.pick.${mode}`) : '';
  }
  $('traffic-start').addEventListener('click', () => setMode('start'));
  $('traffic-to').addEventListener('click', () => setMode('to'));
  map.on('click', event => {
    if (!mode) return;
    const at = [event.lngLat.lng, event.lngLat.lat].map(v => Number(v.toFixed(6)));
    if (mode === 'start') {
      start = at;
      setMode('to'); // the destinations come next
    } else ends.push(at);
    routes = [];
    listRoutes();
    drawRoutes();
  });

  $('traffic-route').addEventListener('click', async () => {
    if (!scenario || scenario.status !== 'succeeded') return say(t('traffic.route.scenario'));
    if (!start || !ends.length) return say(t('traffic.route.points'));
    setMode(null);
    const params = new URLSearchParams({from: start.join(','), scenario: scenario.id});
    for (const end of ends) params.append('to', end.join(','));
    try {
      const answer = await getJson(`routes?${params}`, null, {key: key()});
      routes = answer.features;
      listRoutes();
      drawRoutes();
    } catch (error) {
      say(explain(error));
    }
  });
  $('traffic-route-clear').addEventListener('click', () => {
    setMode(null);
    start = null;
    ends = [];
    routes = [];
    listRoutes();
    drawRoutes();
  });

  function clear() {
    stopFollowing();
    scenario = null;
    links = [];
    for (const group of ['traffic-links', 'traffic-routes']) overlay.set(group, []);
    if (map.getLayer(STYLE_LAYER)) map.setFilter(STYLE_LAYER, null);
    $('traffic-result').hidden = true;
    say('');
    progress(null);
    onChange();
  }
  $('traffic-clear').addEventListener('click', clear);

  function open(id) {
    $('traffic').open = true;
    scenario = {id};
    follow(id);
    onChange();
  }

  return {
    open,
    apply(id) {
      if (!id) return scenario && clear();
      if (id !== scenario?.id) open(id);
    },
    // While a route point is being placed, the map's clicks are not for picking.
    placing: () => mode !== null,
    state: () => (scenario ? {traffic: scenario.id} : {})
  };
}
