// "City now | planned": left of the swipe's divider the buildings standing today, right of it
// the city with the planned and under-construction ones too, highlighted. Today's buildings
// are the map's own extrusion filtered by `status` (standing in for the 3D Tiles, whose glb
// tiles carry no status); the others come from the feature API and deck.gl draws them,
// kept right of the divider by the swipe's extension.
import {GeoJsonLayer} from '@deck.gl/layers';
import {getJson} from './api.js';
import {onSide} from './swipe.js';

export const STATUS_COLOURS = {planned: [214, 51, 132], under_construction: [245, 130, 32]};
const NOT_YET = Object.keys(STATUS_COLOURS);
const EXTRUSION = 'buildings';
const PAGE = 10000; // the feature API's largest page
const MOST = 50000; // ~3.5 % of a 470,000-building city is not yet built
// A building whose tile carries no status (imported without one) stands today.
const NOW = ['!', ['in', ['coalesce', ['get', 'status'], 'existing'], ['literal', NOT_YET]]];

// Every building not yet built (up to MOST), paged from the feature API.
export async function plannedBuildings() {
  const features = [];
  let path = 'collections/buildings/items';
  let params = {filter: `status IN (${NOT_YET.map(s => `'${s}'`).join(',')})`, limit: PAGE};
  while (path && features.length < MOST) {
    const page = await getJson(path, params);
    features.push(...page.features);
    path = page.links?.find(link => link.rel === 'next')?.href;
    params = null; // the next link carries them
  }
  return features;
}

// The map's own buildings: only those standing today (on), or all of them again (off).
export function showNow(map, buildings3d, on) {
  if (buildings3d) buildings3d.suspend(on ? NOW : null);
  else if (map.getLayer(EXTRUSION)) map.setFilter(EXTRUSION, on ? NOW : null);
}

// The buildings not yet built, coloured by status: right of the divider at `x`, or
// everywhere when there is no divider (x null); hidden with the panel's buildings layer.
export const PLANNED_LAYER = 'compare-planned';
export function plannedLayer(features, x, visible) {
  return new GeoJsonLayer({
    id: PLANNED_LAYER, data: {type: 'FeatureCollection', features},
    extruded: true, pickable: true, visible,
    getElevation: f => f.properties.height ?? 10,
    getFillColor: f => STATUS_COLOURS[f.properties.status],
    ...(x === null ? {} : onSide('b', x))
  });
}

// How many of each status, for the panel's table.
export const countByStatus = features => Object.fromEntries(NOT_YET.map(status =>
  [status, features.filter(f => f.properties.status === status).length]));
