// The layer panel and legend, generated from the catalog: groups, titles and colours come
// from the style the API makes of the layer definitions, so a new layer needs no code here.
import {t} from './i18n.js';

const label = value => String(value).replaceAll('_', ' ');

// A style layer's colour expression as legend entries: categories (match), a ramp
// (interpolate) or one colour; the same shapes tiles/style.py writes.
export function legendEntries(styleLayer) {
  const colour = styleLayer.paint[`${styleLayer.type}-color`];
  if (!Array.isArray(colour)) return [{colour}];
  if (colour[0] === 'match') {
    const pairs = colour.slice(2, -1);
    const entries = [];
    for (let i = 0; i < pairs.length; i += 2) entries.push({label: label(pairs[i]), colour: pairs[i + 1]});
    return [...entries, {label: t('other'), colour: colour.at(-1)}];
  }
  if (colour[0] === 'interpolate') {
    const stops = colour.slice(3);
    const entries = [];
    for (let i = 0; i < stops.length; i += 2) entries.push({label: `${stops[i]}`, colour: stops[i + 1]});
    return entries;
  }
  return [];
}

// The property an expression reads, e.g. ['to-string', ['get', 'use']] -> 'use'.
function colouredBy(expression) {
  if (!Array.isArray(expression)) return null;
  if (expression[0] === 'get') return expression[1];
  for (const part of expression.slice(1)) {
    const found = colouredBy(part);
    if (found) return found;
  }
  return null;
}

function swatch(kind, colour) {
  const element = document.createElement('span');
  element.className = `swatch swatch-${kind}`;
  element.style.setProperty('--colour', colour);
  return element;
}

function layerRow(styleLayer, collection, visible, onToggle) {
  const row = document.createElement('li');
  row.className = 'layer';
  row.dataset.layer = styleLayer.id;
  const entries = legendEntries(styleLayer);
  const toggle = document.createElement('label');
  const box = document.createElement('input');
  box.type = 'checkbox';
  box.checked = visible;
  box.addEventListener('change', () => onToggle(styleLayer.id, box.checked));
  const title = document.createElement('span');
  title.className = 'title';
  title.textContent = collection?.title || styleLayer.metadata?.['cim:title'] || styleLayer.id;
  toggle.append(box, entries.length === 1 ? swatch(styleLayer.type, entries[0].colour) : '', title);
  toggle.title = collection?.description || '';
  const hint = document.createElement('span');
  hint.className = 'zoom-hint';
  hint.textContent = t('zoom.hint', {zoom: styleLayer.minzoom});
  row.append(toggle, hint);
  if (entries.length > 1) {
    const legend = document.createElement('ul');
    legend.className = 'legend';
    const by = colouredBy(styleLayer.paint[`${styleLayer.type}-color`]);
    if (by) legend.dataset.by = t('by', {what: label(by)});
    for (const entry of entries) {
      const item = document.createElement('li');
      item.append(swatch(styleLayer.type, entry.colour), entry.label);
      legend.append(item);
    }
    row.append(legend);
  }
  return row;
}

// Builds the panel in catalog (legend) order; `visible` is the set of layer ids shown.
export function buildPanel(container, map, {collections, style}, visible, onChange) {
  const byId = new Map(collections.map(c => [c.id, c]));
  const catalogLayers = style.layers.filter(l => l.type !== 'background');
  const toggle = (id, on) => {
    map.setLayoutProperty(id, 'visibility', on ? 'visible' : 'none');
    onChange();
  };
  // One section per group, in the order groups first appear in the catalog.
  const sections = new Map();
  for (const styleLayer of catalogLayers) {
    const name = styleLayer.metadata?.['cim:group'] || 'Other';
    if (!sections.has(name)) {
      const section = document.createElement('section');
      const list = document.createElement('ul');
      section.append(Object.assign(document.createElement('h2'), {textContent: name}), list);
      container.append(section);
      sections.set(name, list);
    }
    sections.get(name).append(layerRow(styleLayer, byId.get(styleLayer.id), visible.has(styleLayer.id), toggle));
    map.setLayoutProperty(styleLayer.id, 'visibility', visible.has(styleLayer.id) ? 'visible' : 'none');
  }
  // Grey out layers the current zoom does not draw, so an empty map explains itself.
  const dim = () => {
    const zoom = map.getZoom();
    for (const styleLayer of catalogLayers) {
      const row = container.querySelector(`[data-layer="${styleLayer.id}"]`);
      row.classList.toggle('out-of-zoom', zoom < styleLayer.minzoom || zoom >= styleLayer.maxzoom);
    }
  };
  map.on('zoomend', dim);
  dim();
  return {
    visible: () => catalogLayers.map(l => l.id)
      .filter(id => map.getLayoutProperty(id, 'visibility') !== 'none'),
    setVisible(ids) {
      for (const styleLayer of catalogLayers) {
        const on = ids.has(styleLayer.id);
        map.setLayoutProperty(styleLayer.id, 'visibility', on ? 'visible' : 'none');
        container.querySelector(`[data-layer="${styleLayer.id}"] input`).checked = on;
      }
    }
  };
}
