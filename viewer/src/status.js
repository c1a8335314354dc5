// What the page tells people (loading, errors) and the hooks a browser test waits on.
// window.__cim.ready: see watchReady in map.js; settle() asks for it again after a change.

const errorList = () => document.getElementById('errors');

export const status = {ready: false, errors: []};
window.__cim = status;

export function reportError(message) {
  if (status.errors.includes(message)) return;
  status.errors.push(message);
  const list = errorList();
  const item = document.createElement('li');
  item.textContent = message;
  list.append(item);
  list.hidden = false;
}

export function setLoading(loading) {
  document.getElementById('loading').hidden = !loading;
}

window.addEventListener('error', event => reportError(`Error: ${event.message}`));
window.addEventListener('unhandledrejection', event =>
  reportError(`Error: ${event.reason?.message || event.reason}`));
