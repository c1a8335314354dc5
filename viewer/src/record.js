// The selected object's record: every property the feature API returns, and its versions
// over time with what changed in each.
import {t} from './i18n.js';

const TIME_KEYS = new Set(['valid_from', 'valid_to']);

function text(tag, content, className) {
  const element = document.createElement(tag);
  element.textContent = content;
  if (className) element.className = className;
  return element;
}

const show = value => (value === null || value === undefined ? '—'
  : typeof value === 'object' ? JSON.stringify(value) : String(value));

const when = value => (value ? new Date(value).toLocaleString() : t('now'));

function header(panel, title, onClose) {
  panel.replaceChildren();
  const close = text('button', '×', 'close');
  close.type = 'button';
  close.title = t('close');
  close.addEventListener('click', onClose);
  panel.append(close, text('h2', title));
  panel.hidden = false;
}

export function renderMessage(panel, title, message, onClose) {
  header(panel, title, onClose);
  panel.append(text('p', message, 'message'));
}

function propertiesTable(properties) {
  const table = document.createElement('table');
  table.className = 'properties';
  for (const [key, value] of Object.entries(properties)) {
    if (TIME_KEYS.has(key)) continue;
    const row = table.insertRow();
    row.dataset.key = key;
    row.append(text('th', key.replaceAll('_', ' ')), text('td', show(value)));
  }
  return table;
}

function historyList(versions) {
  const list = document.createElement('ol');
  list.className = 'history';
  versions.forEach((version, i) => {
    const {valid_from: from, valid_to: to} = version.properties;
    const item = text('li', `${when(from)} → ${when(to)}`);
    const previous = versions[i - 1]?.properties;
    if (previous) {
      const changed = Object.keys(version.properties).filter(key => !TIME_KEYS.has(key)
        && show(version.properties[key]) !== show(previous[key]));
      const geometryChanged = JSON.stringify(version.geometry) !== JSON.stringify(versions[i - 1].geometry);
      const what = [...changed.map(key => `${key}: ${show(previous[key])} → ${show(version.properties[key])}`),
        ...(geometryChanged ? ['geometry'] : [])];
      item.append(text('div', what.length ? what.join('; ') : t('history.same'), 'changes'));
    } else {
      item.append(text('div', t('history.first'), 'changes'));
    }
    list.append(item);
  });
  return list;
}

// versions: every version of the object, oldest first, or null when the layer keeps none.
export function renderRecord(panel, {title, feature, versions, note, onClose}) {
  header(panel, title, onClose);
  panel.append(text('p', feature.id, 'object-id'));
  if (note) panel.append(text('p', note, 'message'));
  panel.append(propertiesTable(feature.properties));
  panel.append(text('h3', t('history')));
  if (versions?.length) panel.append(historyList(versions));
  else panel.append(text('p', t('history.none'), 'message'));
}
