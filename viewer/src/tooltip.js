import {t} from './i18n.js';
// Hovering a sensor shows its latest reading (the sensors layer reads cim.sensors_latest).
const when = value => (value ? new Date(value).toLocaleString() : t('reading.none'));

export function showLatestReadings(map, layerId, tooltip) {
  if (!map.getLayer(layerId)) return;
  map.on('mousemove', layerId, event => {
    const p = event.features[0].properties;
    const reading = p.latest_value === undefined || p.latest_value === null
      ? t('reading.none') : `${p.latest_value} ${p.unit || ''} (${when(p.latest_at)})`;
    tooltip.textContent = `${p.name || p.kind || 'sensor'}: ${reading}`;
    tooltip.style.transform = `translate(${event.point.x + 12}px, ${event.point.y + 12}px)`;
    tooltip.hidden = false;
    map.getCanvas().style.cursor = 'pointer';
  });
  map.on('mouseleave', layerId, () => {
    tooltip.hidden = true;
    map.getCanvas().style.cursor = '';
  });
}
