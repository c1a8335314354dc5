// Click an object to read its full record and history from the feature API. Tiles carry the
// text id only from a layer's id_min_zoom (buildings: 15); below it the object is looked up
// by where it was clicked.
import {GeoJsonLayer} from '@deck.gl/layers';
import {findAt, getFeature, getVersions} from './api.js';
import {renderMessage, renderRecord} from './record.js';
import {t} from './i18n.js';

const SLOP_PX = 4; // how near a click must fall to a thin line or a small point
const HIGHLIGHT = [255, 196, 0];

// A point inside a (multi)polygon: the middle of the first span that the horizontal line
// through its bounding box's centre cuts out of it (a centroid can fall outside an L shape).
function interiorPoint(geometry) {
  const rings = (geometry.type === 'Polygon' ? [geometry.coordinates] : geometry.coordinates).flat();
  const ys = rings.flat().map(point => point[1]);
  const y = (Math.min(...ys) + Math.max(...ys)) / 2;
  const xs = [];
  for (const ring of rings) {
    for (let i = 1; i < ring.length; i++) {
      const [x1, y1] = ring[i - 1];
      const [x2, y2] = ring[i];
      if ((y1 <= y) !== (y2 <= y)) xs.push(x1 + ((y - y1) * (x2 - x1)) / (y2 - y1));
    }
  }
  xs.sort((a, b) => a - b);
  return [(xs[0] + xs[1]) / 2, y];
}

function boxAround(map, {x, y}) {
  const corners = [[x - SLOP_PX, y - SLOP_PX], [x + SLOP_PX, y - SLOP_PX],
    [x - SLOP_PX, y + SLOP_PX], [x + SLOP_PX, y + SLOP_PX]].map(p => map.unproject(p));
  const lons = corners.map(c => c.lng);
  const lats = corners.map(c => c.lat);
  return [Math.min(...lons), Math.min(...lats), Math.max(...lons), Math.max(...lats)];
}

// An x-ray outline drawn over everything, so the selection shows through other buildings.
function highlight(feature) {
  const height = Number(feature.properties.height);
  return new GeoJsonLayer({
    id: 'selection',
    data: feature,
    extruded: Number.isFinite(height) && height > 0,
    wireframe: true,
    filled: false,
    stroked: true,
    getElevation: height || 0,
    getLineColor: HIGHLIGHT,
    getPointRadius: 8,
    pointRadiusUnits: 'pixels',
    lineWidthMinPixels: 4,
    parameters: {depthCompare: 'always'}
  });
}

// extraPick(point): a selection from drawn deck.gl layers (the 3D Tiles), or null;
// paused(): whether the map's clicks are another tool's now (placing route points).
export function createPicking(map, overlay, {panel, titles, pickable, onSelect, extraPick, paused}) {
  let current = null;
  const close = () => select(null);
  const title = collection => titles.get(collection) || collection;

  async function select(selection, note) {
    current = selection;
    onSelect(selection);
    overlay.set('selection', []);
    if (!selection) {
      panel.hidden = true;
      return;
    }
    const {collection, id} = selection;
    renderMessage(panel, title(collection), t('record.loading'), close);
    try {
      const [feature, versions] = await Promise.all([
        getFeature(collection, id),
        getVersions(collection, id).catch(() => null) // views (sensors) keep no versions
      ]);
      if (current !== selection) return; // a later click won
      renderRecord(panel, {title: title(collection), feature, versions, note, onClose: close});
      overlay.set('selection', [highlight(feature)]);
    } catch (error) {
      if (current === selection) renderMessage(panel, title(collection), error.message, close);
    }
  }

  async function pick(point, lngLat) {
    const picked = extraPick?.(point);
    if (picked) return select(picked);
    const layers = pickable().filter(id => map.getLayer(id));
    let hits = map.queryRenderedFeatures(point, {layers});
    if (!hits.length) {
      hits = map.queryRenderedFeatures([[point.x - SLOP_PX, point.y - SLOP_PX],
        [point.x + SLOP_PX, point.y + SLOP_PX]], {layers});
    }
    if (!hits.length) return select(null);
    const hit = hits[0];
    const collection = hit.layer.id;
    if (hit.properties.id) return select({collection, id: hit.properties.id});
    const pending = {collection};
    current = pending;
    renderMessage(panel, title(collection), t('record.finding'), close);
    try {
      const polygon = hit.geometry.type.endsWith('Polygon');
      const found = polygon
        ? await findAt(collection, interiorPoint(hit.geometry))
        : await findAt(collection, [lngLat.lng, lngLat.lat], boxAround(map, point));
      if (current !== pending) return;
      if (!found) return renderMessage(panel, title(collection), t('record.none'), close);
      return select({collection, id: found.id}, t('record.by.position'));
    } catch (error) {
      if (current === pending) renderMessage(panel, title(collection), error.message, close);
    }
  }

  map.on('click', event => {
    if (!paused?.()) pick(event.point, event.lngLat);
  });
  return {select, close, current: () => current};
}
