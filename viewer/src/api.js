// The platform's APIs, relative to the page: the viewer is served at the API's root.
import {reportError} from './status.js';
import {t} from './i18n.js';

export const API_ROOT = new URL('.', location.origin + location.pathname).href;

export class ApiError extends Error {
  constructor(url, status, description) {
    super(t('error.request', {description: description || t('error.failed'), status, url}));
    this.status = status;
    this.description = description || '';
  }
}

// key: an API key for what anonymous readers may not do or see; body: JSON to POST.
export async function getJson(path, params, {key, body} = {}) {
  const url = new URL(path, API_ROOT);
  for (const [name, value] of Object.entries(params || {})) url.searchParams.set(name, value);
  const headers = {Accept: 'application/json'};
  if (key) headers['X-API-Key'] = key;
  if (body) headers['Content-Type'] = 'application/json';
  const response = await fetch(url, body
    ? {method: 'POST', headers, body: JSON.stringify(body)} : {headers});
  if (!response.ok) {
    // OGC exception bodies carry a message meant for people; pydantic's a list of details.
    const error = await response.json().catch(() => ({}));
    const detail = Array.isArray(error.detail) ? error.detail.map(d => d.msg).join('; ') : error.detail;
    throw new ApiError(url.pathname + url.search, response.status, error.description || detail);
  }
  return response.json();
}

// The catalog as the reader may see it: collections (titles) and the style (groups, colours).
export async function loadCatalog() {
  try {
    const [collections, style] = await Promise.all([getJson('collections'), getJson('styles/default')]);
    return {collections: collections.collections, style};
  } catch (error) {
    reportError(t('error.catalog', {message: error.message}));
    throw error;
  }
}

export function getFeature(collection, id) {
  return getJson(`collections/${collection}/items/${encodeURIComponent(id)}`);
}

// Every version of one object: an open interval from long ago, filtered by its stable id.
export async function getVersions(collection, id) {
  const page = await getJson(`collections/${collection}/items`, {
    datetime: '1900-01-01T00:00:00Z/..',
    filter: `id='${id.replaceAll("'", "''")}'`,
    limit: 100
  });
  return page.features.sort((a, b) =>
    String(a.properties.valid_from).localeCompare(String(b.properties.valid_from)));
}

// The current object of a collection at a place, for tiles that carry no text id at this zoom.
export async function findAt(collection, [lon, lat], box) {
  const params = box
    ? {bbox: box.join(','), limit: 1}
    : {filter: `S_INTERSECTS(geometry,POINT(${lon} ${lat}))`, limit: 1};
  const page = await getJson(`collections/${collection}/items`, params);
  return page.features[0] || null;
}
