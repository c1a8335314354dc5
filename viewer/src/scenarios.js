// What the flood and traffic panels share: the API key typed once per tab, errors in words,
// and following a scenario job until it ends. Labels come from i18n under the panel's prefix
// (`flood.queued`, `traffic.failed`, ...).
import {getJson} from './api.js';
import {t} from './i18n.js';

const KEY_STORE = 'cim.apiKey'; // one key for the tab, whichever panel it was typed in
const POLL_MS = 1000;

// The tab's key, if one was typed.
export const storedKey = () => sessionStorage.getItem(KEY_STORE) || undefined;

// Bind a key field to the tab's key; returns the key to send (undefined: none).
export function bindKey(input, onChange = () => {}) {
  input.value = sessionStorage.getItem(KEY_STORE) || '';
  input.addEventListener('change', () => {
    sessionStorage.setItem(KEY_STORE, input.value.trim());
    onChange();
  });
  return () => input.value.trim() || storedKey();
}

export const explain = (prefix, error) => (error.status === 401 ? t(`${prefix}.401`)
  : error.status === 403 ? t(`${prefix}.403`, {message: error.description}) : error.message);

// Poll a scenario of `kind`, reporting in `say` and `progress`, until it ends; `isOpen(id)`
// says whether the panel still shows it, `onRecord` gets each record, `onSucceeded` the last.
export function scenarioFollower(prefix, kind, {say, progress, isOpen, onRecord, onSucceeded}) {
  let timer = null;
  async function follow(id) {
    clearTimeout(timer);
    let record;
    try {
      record = await getJson(`scenarios/${id}`);
    } catch (error) {
      progress(null);
      say(error.message);
      return;
    }
    if (!isOpen(id)) return; // another scenario was opened meanwhile
    if (record.kind !== kind) {
      progress(null);
      say(t(`${prefix}.not`, {id}));
      return;
    }
    onRecord(record);
    if (record.status === 'queued' || record.status === 'running') {
      progress(record.progress);
      say(record.status === 'queued' ? t(`${prefix}.queued`)
        : t(`${prefix}.running`, {progress: Math.round(record.progress)}));
      timer = setTimeout(() => follow(id), POLL_MS);
      return;
    }
    progress(null);
    if (record.status === 'succeeded') {
      say(t(`${prefix}.succeeded`, {id}));
      onSucceeded(record);
    } else {
      say(record.status === 'cancelled' ? t(`${prefix}.cancelled`, {id})
        : t(`${prefix}.failed`, {id, error: record.error || ''}));
    }
  }
  return {follow, stop: () => clearTimeout(timer)};
}
