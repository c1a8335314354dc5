// The compare panel: two succeeded scenarios of one kind, A against B, as
// GET /scenarios/{a}/compare/{b} compares them (flood: depths and flooded roads; traffic:
// every link's volume and volume/capacity), or the city now against the city as planned
// (planned.js). With the swipe, A's results are drawn left of a divider and B's right of
// it; two flood scenarios share a time slider over the depth maps both have (the maximum
// last); the difference layer draws B − A in diverging colours with its legend (flood:
// scenario_maps.py's difference tiles of the maximum depths; traffic: each link's volume
// change from the comparison's links.geojson). The pair, the divider's place, the time and
// the difference layer are in the URL (`compare=A,B|planned&swipe=0.5&ctime=1800&diff=1`).
import {GeoJsonLayer} from '@deck.gl/layers';
import {getJson} from './api.js';
import {clock, depthMaps, depthTiles, MAX, rasterTiles, ROAD_COLOURS} from './flood.js';
import {t} from './i18n.js';
import {countByStatus, PLANNED_LAYER, plannedBuildings, plannedLayer, showNow, STATUS_COLOURS} from './planned.js';
import {storedKey} from './scenarios.js';
import {reportError, status} from './status.js';
import {createDivider, onSide} from './swipe.js';
import {CLOSED, rampColour, rampOf} from './traffic.js';

const SWIPE_START = 0.5;
// The ends of tiles/scenario_maps.py's DIFFERENCE_RAMP (ColorBrewer RdBu): B lower, B higher.
const LOWER = [33, 102, 172];
const HIGHER = [178, 24, 43];
const RAMP_CSS = 'linear-gradient(to right, rgb(33,102,172), rgb(146,197,222), rgb(247,247,247), '
  + 'rgb(244,165,130), rgb(178,24,43))';

const $ = id => document.getElementById(id);
const fixed = (value, digits = 2) => (value === null || value === undefined ? '–' : Number(value).toFixed(digits));

const PLANNED = 'planned';
const samePair = (x, y) => (x === PLANNED || y === PLANNED ? x === y : x?.[0] === y?.[0] && x?.[1] === y?.[1]);

// The depth maps two flood scenarios both have, in time order (the maximum last).
const commonSteps = (filesA, filesB) => {
  const timesB = new Set(depthMaps(filesB).map(s => String(s.time)));
  return depthMaps(filesA).filter(s => timesB.has(String(s.time)));
};

// buildingsShown(): whether the panel shows the buildings layer (the planned ones follow it).
export function createCompare(map, overlay, {styleLayers, buildings3d, buildingsShown, onChange}) {
  const ramp = rampOf(styleLayers.find(l => l.id === 'traffic_links'));
  // {pair, kind, result, sides: {a, b} (flood roads), steps, step, links (traffic),
  //  planned (the buildings not yet built)}
  let shown = null;
  let asked = null; // {pair, swipe, diff, ctime} while a comparison loads: the URL keeps it
  let swipe = SWIPE_START; // the divider's place, null without the swipe
  let diff = false;
  let nowOnly = false; // the map's own buildings are kept to those standing today
  let failed = false;
  const divider = createDivider($('map'), x => {
    swipe = x;
    draw();
    onChange();
  });

  const say = message => { $('compare-status').textContent = message; };
  const onFailure = error => {
    if (failed) return;
    failed = true;
    reportError(t('compare.failed', {message: error?.message || error}));
  };

  // --- layers ---------------------------------------------------------------------------
  function floodSide(side, id, roads) {
    const clip = onSide(side, swipe);
    const {name} = shown.steps[shown.step];
    return [
      rasterTiles(`compare-${side}-depth-${id}-${name}`, depthTiles(id, name), onFailure, clip),
      new GeoJsonLayer({
        id: `compare-${side}-roads-${id}`, data: {type: 'FeatureCollection', features: roads},
        getLineColor: f => ROAD_COLOURS[f.properties.flood_class] || [44, 127, 184],
        lineWidthUnits: 'pixels', getLineWidth: 5, pickable: false, ...clip
      })
    ];
  }

  function trafficSide(side, links) {
    const volume = `volume_${side}`;
    const voc = `voc_${side}`;
    const closed = `status_${side}`;
    const mine = links.filter(f => f.properties[`link_${side}`] !== null);
    const peak = Math.max(1, ...mine.map(f => f.properties[volume] ?? 0));
    return [new GeoJsonLayer({
      id: `compare-${side}-links`, data: {type: 'FeatureCollection', features: mine},
      lineWidthUnits: 'pixels', lineCapRounded: true, pickable: false,
      getLineWidth: f => 2 + 10 * (f.properties[volume] ?? 0) / peak,
      getLineColor: f => (f.properties[closed] === 'closed' || f.properties[voc] === null
        ? CLOSED : rampColour(ramp, f.properties[voc])),
      ...onSide(side, swipe)
    })];
  }

  function difference() {
    const {pair: [a, b], kind, links} = shown;
    if (kind === 'flood') {
      return [rasterTiles(`compare-diff-${a}-${b}`, `scenarios/${a}/compare/${b}/maps/{z}/{x}/{y}.png`,
        onFailure, {opacity: 0.9})];
    }
    const changed = links.filter(f => f.properties.volume_change);
    const peak = Math.max(1, ...changed.map(f => Math.abs(f.properties.volume_change)));
    return [new GeoJsonLayer({
      id: `compare-diff-${a}-${b}`, data: {type: 'FeatureCollection', features: changed},
      lineWidthUnits: 'pixels', lineCapRounded: true, pickable: false,
      getLineWidth: f => 2 + 10 * Math.abs(f.properties.volume_change) / peak,
      getLineColor: f => (f.properties.volume_change > 0 ? HIGHER : LOWER)
    })];
  }

  function draw() {
    const layers = [];
    const kind = shown?.kind;
    if (kind === PLANNED) layers.push(plannedLayer(shown.planned, swipe, buildingsShown()));
    else if (shown && swipe !== null) {
      const {pair: [a, b], sides, links} = shown;
      if (kind === 'flood') layers.push(...floodSide('a', a, sides.a), ...floodSide('b', b, sides.b));
      else layers.push(...trafficSide('a', links), ...trafficSide('b', links));
    }
    if (shown && kind !== PLANNED && diff) layers.push(...difference());
    overlay.set('compare', layers);
    if ((kind === PLANNED) !== nowOnly) {
      nowOnly = kind === PLANNED;
      showNow(map, buildings3d, nowOnly);
    }
    divider.show(shown ? swipe : null);
    $('compare-legend').hidden = !(shown && kind !== PLANNED && diff);
    const steps = kind === 'flood' ? shown.steps : [];
    $('compare-time-row').hidden = steps.length < 2;
    if (steps.length) {
      const {time} = steps[shown.step];
      $('compare-time').max = String(steps.length - 1);
      $('compare-time').value = String(shown.step);
      $('compare-time-label').textContent = time === MAX ? t('flood.max') : clock(time);
    }
    status.settle?.();
  }

  // --- the comparison's words -------------------------------------------------------------
  function summarise({kind, result, planned}) {
    const counts = kind === PLANNED ? countByStatus(planned) : null;
    const rows = kind === PLANNED ? [
      [t('compare.planned.planned'), String(counts.planned)],
      [t('compare.planned.under_construction'), String(counts.under_construction)]
    ] : kind === 'flood' ? [
      [t('compare.max_depth'), `${fixed(result.max_depth_a_m)} → ${fixed(result.max_depth_b_m)} m`],
      [t('compare.volume'), `${fixed(result.flooded_volume_a_m3, 0)} → ${fixed(result.flooded_volume_b_m3, 0)} m³`],
      [t('compare.deeper'), String(result.deeper_cells)],
      [t('compare.shallower'), String(result.shallower_cells)],
      [t('compare.roads.a'), String(result.roads_flooded_in_a_only.length)],
      [t('compare.roads.b'), String(result.roads_flooded_in_b_only.length)]
    ] : [
      [t('traffic.vh'), `${fixed(result.totals_a.vehicle_hours, 0)} → ${fixed(result.totals_b.vehicle_hours, 0)}`],
      [t('traffic.vkm'), `${fixed(result.totals_a.vehicle_km, 0)} → ${fixed(result.totals_b.vehicle_km, 0)}`],
      [t('traffic.unserved'), `${fixed(result.totals_a.unserved_trips, 0)} → ${fixed(result.totals_b.unserved_trips, 0)}`],
      [t('compare.closed.a'), String(result.closed_in_a_only.length)],
      [t('compare.closed.b'), String(result.closed_in_b_only.length)]
    ];
    const table = $('compare-summary');
    table.replaceChildren(...rows.map(([name, value]) => {
      const row = document.createElement('tr');
      row.append(Object.assign(document.createElement('th'), {textContent: name}),
        Object.assign(document.createElement('td'), {textContent: value}));
      return row;
    }));
    if (counts) {
      for (const [row, status] of [...table.rows].map((r, i) => [r, Object.keys(counts)[i]])) {
        row.querySelector('th').style.color = `rgb(${STATUS_COLOURS[status].join(',')})`;
      }
      return;
    }
    $('compare-legend-label').textContent = t(`compare.legend.${kind}`);
    $('compare-legend-low').textContent = t(`compare.legend.${kind}.low`);
    $('compare-legend-high').textContent = t(`compare.legend.${kind}.high`);
  }

  // --- opening and closing --------------------------------------------------------------
  async function features(collection, id, key) {
    const page = await getJson(`collections/${collection}/items`, {filter: `scenario_id=${id}`, limit: 1000}, {key});
    return page.features;
  }

  // Fetch what a pair of scenarios (or the planned city) draws.
  async function load(pair, key) {
    if (pair === PLANNED) return {pair, kind: PLANNED, planned: await plannedBuildings()};
    const [a, b] = pair;
    const result = await getJson(`scenarios/${a}/compare/${b}`, null, {key});
    const next = {pair, kind: result.kind, result};
    if (result.kind === 'flood') {
      const [roadsA, roadsB, recordA, recordB] = await Promise.all([
        features('flood_roads', a, key), features('flood_roads', b, key),
        getJson(`scenarios/${a}`, null, {key}), getJson(`scenarios/${b}`, null, {key})]);
      next.sides = {a: roadsA, b: roadsB};
      next.steps = commonSteps(recordA.outputs.files || [], recordB.outputs.files || []);
      if (!next.steps.length) next.steps = [{name: 'max_depth.tif', time: MAX}];
    } else {
      next.links = (await getJson(`scenarios/${a}/compare/${b}/links.geojson`, null, {key})).features;
    }
    return next;
  }

  const stepOf = (steps, time) => {
    const index = steps.findIndex(s => String(s.time) === String(time ?? MAX));
    return index >= 0 ? index : steps.length - 1;
  };

  // Compare a pair [a, b] (or PLANNED); a refused pair (unknown, unfinished, of two kinds) is
  // said in words and leaves what is shown as it was.
  async function open(pair, options = {}) {
    $('compare').open = true;
    if (pair !== PLANNED) {
      $('compare-a').value = String(pair[0]);
      $('compare-b').value = String(pair[1]);
    }
    say(t('compare.loading'));
    asked = {pair, swipe: options.swipe === undefined ? SWIPE_START : options.swipe,
      diff: Boolean(options.diff), ctime: options.ctime};
    let next;
    try {
      next = await load(pair, storedKey());
    } catch (error) {
      if (!samePair(asked?.pair, pair)) return; // another pair was asked for meanwhile
      asked = null;
      say(error.status === 404 || error.status === 409 ? t('compare.refused', {message: error.description})
        : error.message);
      onChange();
      return;
    }
    if (!samePair(asked?.pair, pair)) return;
    asked = null;
    shown = next;
    if (shown.steps) shown.step = stepOf(shown.steps, options.ctime);
    failed = false;
    swipe = options.swipe === undefined ? SWIPE_START : options.swipe;
    diff = Boolean(options.diff);
    $('compare-swipe').checked = swipe !== null;
    $('compare-diff').checked = diff;
    $('compare-diff-row').hidden = shown.kind === PLANNED;
    $('compare-swipe-label').textContent = t(shown.kind === PLANNED ? 'compare.swipe.planned' : 'compare.swipe');
    $('compare-result').hidden = false;
    if (shown.kind === PLANNED) {
      divider.label(t('compare.now'), t('compare.planned'));
      say(t('compare.done.planned'));
    } else {
      const [a, b] = pair;
      divider.label(t('compare.side', {side: 'A', id: a}), t('compare.side', {side: 'B', id: b}));
      say(t(`compare.done.${shown.kind}`, {a, b}));
    }
    summarise(shown);
    draw();
    onChange();
  }

  function clear() {
    shown = null;
    asked = null;
    $('compare-result').hidden = true;
    say('');
    draw();
    onChange();
  }

  $('compare-form').addEventListener('submit', event => {
    event.preventDefault();
    const [a, b] = [$('compare-a'), $('compare-b')].map(input => Number(input.value));
    if (!Number.isInteger(a) || !Number.isInteger(b) || a < 1 || b < 1 || a === b) {
      return say(t('compare.pair'));
    }
    open([a, b], {swipe: swipe ?? SWIPE_START, diff});
  });
  $('compare-planned').addEventListener('click', () => open(PLANNED, {swipe: swipe ?? SWIPE_START}));
  $('compare-time').addEventListener('input', () => {
    shown.step = Number($('compare-time').value);
    draw();
    onChange();
  });
  $('compare-swipe').addEventListener('change', event => {
    swipe = event.target.checked ? SWIPE_START : null;
    draw();
    onChange();
  });
  $('compare-diff').addEventListener('change', event => {
    diff = event.target.checked;
    draw();
    onChange();
  });
  $('compare-clear').addEventListener('click', clear);
  $('compare-legend-ramp').style.background = RAMP_CSS;

  return {
    open,
    // The panel's buildings toggle changed.
    refresh: () => shown?.kind === PLANNED && draw(),
    // A planned or under-construction building drawn at (x, y), as a selection, or null.
    pick(x, y) {
      if (shown?.kind !== PLANNED) return null;
      const id = overlay.pick({x, y, radius: 0, layerIds: [PLANNED_LAYER]})?.object?.id;
      return id ? {collection: 'buildings', id: String(id)} : null;
    },
    // A pasted link: another pair, or the same pair with another swipe, time or difference.
    apply(pair, options) {
      if (!pair) return shown && clear();
      if (!samePair(pair, shown?.pair)) return open(pair, options);
      swipe = options.swipe === undefined ? SWIPE_START : options.swipe;
      diff = Boolean(options.diff);
      if (shown.steps) shown.step = stepOf(shown.steps, options.ctime);
      $('compare-swipe').checked = swipe !== null;
      $('compare-diff').checked = diff;
      draw();
    },
    state: () => (shown ? {compare: shown.pair, swipe, diff, ctime: shown.steps?.[shown.step].time}
      : asked ? {compare: asked.pair, swipe: asked.swipe, diff: asked.diff, ctime: asked.ctime} : {})
  };
}
