// Display formatting shared by the inspector's signal and attribute tables.

/** A number with at most 4 decimals (4 significant digits below 1), no trailing zeros. */
export function formatNumber(x) {
  if (!Number.isFinite(x)) return String(x);
  const rounded = Math.abs(x) >= 1 || x === 0 ? Number(x.toFixed(4)) : Number(x.toPrecision(4));
  return String(rounded);
}

/** A signal or attribute value: numbers, (nested) arrays, strings, booleans, null. */
export function formatValue(value) {
  if (value === null || value === undefined) return '—';
  if (typeof value === 'number') return formatNumber(value);
  if (Array.isArray(value)) {
    return value.map((item) => (Array.isArray(item) ? `[${formatValue(item)}]` : formatValue(item))).join(', ');
  }
  if (typeof value === 'object') return JSON.stringify(value);
  return String(value);
}

/** A Unix time in seconds as local wall-clock time with milliseconds. */
export function formatTime(seconds) {
  if (typeof seconds !== 'number') return '—';
  const date = new Date(seconds * 1000);
  return `${date.toLocaleTimeString([], { hour12: false })}.${String(date.getMilliseconds()).padStart(3, '0')}`;
}

/** Signal keys are USD property paths, "<prim path>.<attribute>"; prim names never contain '.'. */
export function splitSignalKey(key) {
  const dot = key.indexOf('.', key.lastIndexOf('/'));
  return dot < 0 ? [key, ''] : [key.slice(0, dot), key.slice(dot + 1)];
}

/** The REST URL of a prim: /api/prims/<path without its leading slash>. */
export function primUrl(path) {
  return `api/prims/${path.split('/').filter(Boolean).map(encodeURIComponent).join('/')}`;
}
