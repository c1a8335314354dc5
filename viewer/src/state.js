// The shareable state lives in the URL hash:
//   #view=zoom/lat/lon/bearing/pitch&layers=id,id&select=collection:featureId
//   &scenario=N&time=seconds|max   (an open flood scenario and the depth map shown)
//   &traffic=N                     (an open traffic scenario)
//   &compare=A,B|planned&swipe=0.5|off&ctime=seconds|max&diff=1  (two scenarios, or the
//                                   city now and planned, compared: the divider's place as a
//                                   fraction of the width, or no swipe; two flood scenarios'
//                                   shared time; the difference layer)
//   &infra=bridges,water&underground=1&hillshade=1&terrain=1   (3D infrastructure and relief)
// Absent parts keep their defaults (the home view, every layer on, nothing selected).

const round = (value, digits) => Number(value.toFixed(digits));

export function readHash(hash = location.hash) {
  const params = new URLSearchParams(hash.replace(/^#/, ''));
  const state = {};
  const view = (params.get('view') || '').split('/').map(Number);
  if (view.length === 5 && view.every(Number.isFinite)) {
    const [zoom, lat, lon, bearing, pitch] = view;
    state.view = {zoom, center: [lon, lat], bearing, pitch};
  }
  if (params.has('layers')) state.layers = params.get('layers').split(',').filter(Boolean);
  const select = params.get('select');
  const colon = select ? select.indexOf(':') : -1;
  if (colon > 0) state.select = {collection: select.slice(0, colon), id: select.slice(colon + 1)};
  const scenario = Number(params.get('scenario'));
  if (Number.isInteger(scenario) && scenario > 0) {
    state.scenario = scenario;
    if (params.has('time')) state.time = params.get('time');
  }
  const traffic = Number(params.get('traffic'));
  if (Number.isInteger(traffic) && traffic > 0) state.traffic = traffic;
  const pair = (params.get('compare') || '').split(',').map(Number);
  if (params.get('compare') === 'planned') state.compare = 'planned';
  else if (pair.length === 2 && pair.every(id => Number.isInteger(id) && id > 0)) {
    state.compare = pair;
    state.diff = params.get('diff') === '1';
    if (params.has('ctime')) state.ctime = params.get('ctime');
  }
  if (state.compare) {
    const swipe = params.get('swipe');
    if (swipe === 'off') state.swipe = null;
    else if (swipe !== null && Number(swipe) > 0 && Number(swipe) < 1) state.swipe = Number(swipe);
  }
  if (params.has('infra')) state.infra = params.get('infra').split(',').filter(Boolean);
  for (const flag of ['underground', 'hillshade', 'terrain']) state[flag] = params.get(flag) === '1';
  return state;
}

export function formatHash({view, layers, select, scenario, time, traffic, compare, swipe, diff,
  ctime, infra, underground, hillshade, terrain}) {
  const parts = [];
  if (view) {
    const [lon, lat] = view.center;
    parts.push('view=' + [round(view.zoom, 2), round(lat, 6), round(lon, 6),
      round(view.bearing, 1), round(view.pitch, 1)].join('/'));
  }
  // Layer ids are [a-z0-9_]; only a feature id needs escaping.
  if (layers) parts.push('layers=' + layers.join(','));
  if (select) parts.push(`select=${select.collection}:${encodeURIComponent(select.id)}`);
  if (scenario) parts.push(`scenario=${scenario}` + (time === undefined ? '' : `&time=${time}`));
  if (traffic) parts.push(`traffic=${traffic}`);
  if (compare) {
    parts.push(`compare=${compare === 'planned' ? compare : compare.join(',')}`,
      `swipe=${swipe === null ? 'off' : round(swipe, 3)}`);
    if (ctime !== undefined) parts.push(`ctime=${ctime}`);
    if (diff) parts.push('diff=1');
  }
  if (infra?.length) parts.push(`infra=${infra.join(',')}`);
  for (const [flag, on] of Object.entries({underground, hillshade, terrain})) if (on) parts.push(`${flag}=1`);
  return '#' + parts.join('&');
}

// replaceState, not location.hash: moving the map must not fill the back button's history.
// The URL is made absolute from the page's address: a bare '#...' would resolve against
// the page's <base> (the assets' folder).
export function writeHash(state) {
  const hash = formatHash(state);
  if (hash !== location.hash) history.replaceState(null, '', new URL(hash, location.href));
}
