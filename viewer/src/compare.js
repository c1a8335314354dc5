// The compare panel: two succeeded scenarios of one kind, A against B, as
// GET /scenarios/{a}/compare/{b} compares them (flood: maximum depths and flooded roads;
// traffic: every link's volume and volume/capacity). With the swipe, A's results are drawn
// left of a divider and B's right of it; the difference layer draws B − A in diverging
// colours with its legend (flood: scenario_maps.py's difference tiles; traffic: each link's
// volume change from the comparison's links.geojson). The pair, the divider's place and the
// difference layer are in the URL (`compare=A,B&swipe=0.5&diff=1`).
import {GeoJsonLayer} from '@deck.gl/layers';
import {getJson} from './api.js';
import {depthTiles, rasterTiles, ROAD_COLOURS} from './flood.js';
import {t} from './i18n.js';
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

export function createCompare(map, overlay, {styleLayers, onChange}) {
  const ramp = rampOf(styleLayers.find(l => l.id === 'traffic_links'));
  let shown = null; // {a, b, kind, result, sides: {a: features, b: features} | null, links}
  let asked = null; // {a, b, swipe, diff} while a comparison loads: the URL keeps it meanwhile
  let swipe = SWIPE_START; // the divider's place, null without the swipe
  let diff = false;
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
    return [
      rasterTiles(`compare-${side}-depth-${id}`, depthTiles(id, 'max_depth'), onFailure, clip),
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
    const {a, b, kind, links} = shown;
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
    if (shown && swipe !== null) {
      const {a, b, kind, sides, links} = shown;
      if (kind === 'flood') layers.push(...floodSide('a', a, sides.a), ...floodSide('b', b, sides.b));
      else layers.push(...trafficSide('a', links), ...trafficSide('b', links));
    }
    if (shown && diff) layers.push(...difference());
    overlay.set('compare', layers);
    divider.show(shown ? swipe : null);
    $('compare-legend').hidden = !(shown && diff);
    status.settle?.();
  }

  // --- the comparison's words -------------------------------------------------------------
  function summarise({kind, result}) {
    const rows = kind === 'flood' ? [
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
    $('compare-legend-label').textContent = t(`compare.legend.${kind}`);
    $('compare-legend-low').textContent = t(`compare.legend.${kind}.low`);
    $('compare-legend-high').textContent = t(`compare.legend.${kind}.high`);
  }

  // --- opening and closing --------------------------------------------------------------
  async function features(collection, id, key) {
    const page = await getJson(`collections/${collection}/items`, {filter: `scenario_id=${id}`, limit: 1000}, {key});
    return page.features;
  }

  // Compare a with b; a refused pair (unknown, unfinished, of two kinds) is said in words and
  // leaves what is shown as it was.
  async function open(a, b, options = {}) {
    $('compare').open = true;
    $('compare-a').value = String(a);
    $('compare-b').value = String(b);
    say(t('compare.loading'));
    asked = {a, b, swipe: options.swipe === undefined ? SWIPE_START : options.swipe, diff: Boolean(options.diff)};
    const key = storedKey();
    let next;
    try {
      const result = await getJson(`scenarios/${a}/compare/${b}`, null, {key});
      next = {a, b, kind: result.kind, result};
      if (result.kind === 'flood') {
        const [roadsA, roadsB] = await Promise.all([features('flood_roads', a, key), features('flood_roads', b, key)]);
        next.sides = {a: roadsA, b: roadsB};
      } else {
        next.links = (await getJson(`scenarios/${a}/compare/${b}/links.geojson`, null, {key})).features;
      }
    } catch (error) {
      if (asked?.a !== a || asked?.b !== b) return; // another pair was asked for meanwhile
      asked = null;
      say(error.status === 404 || error.status === 409 ? t('compare.refused', {message: error.description})
        : error.message);
      onChange();
      return;
    }
    if (asked?.a !== a || asked?.b !== b) return;
    asked = null;
    shown = next;
    failed = false;
    swipe = options.swipe === undefined ? SWIPE_START : options.swipe;
    diff = Boolean(options.diff);
    $('compare-swipe').checked = swipe !== null;
    $('compare-diff').checked = diff;
    $('compare-result').hidden = false;
    divider.label(t('compare.side', {side: 'A', id: a}), t('compare.side', {side: 'B', id: b}));
    summarise(shown);
    say(t(`compare.done.${shown.kind}`, {a, b}));
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
    open(a, b, {swipe: swipe ?? SWIPE_START, diff});
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
    // A pasted link: another pair, or the same pair with another swipe or difference.
    apply(pair, options) {
      if (!pair) return shown && clear();
      const [a, b] = pair;
      if (a !== shown?.a || b !== shown?.b) return open(a, b, options);
      swipe = options.swipe === undefined ? SWIPE_START : options.swipe;
      diff = Boolean(options.diff);
      $('compare-swipe').checked = swipe !== null;
      $('compare-diff').checked = diff;
      draw();
    },
    state: () => (shown ? {compare: [shown.a, shown.b], swipe, diff}
      : asked ? {compare: [asked.a, asked.b], swipe: asked.swipe, diff: asked.diff} : {})
  };
}
