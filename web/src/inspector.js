// The inspector (right panel): the selected prim's authored attributes (REST) and its
// live signals and those of its descendants (stream), updated in place as frames arrive.
import { authHeaders } from './auth.js';
import { formatTime, formatValue, primUrl, splitSignalKey } from './format.js';
import { element } from './dom.js';
import { drawSparkline } from './history.js';
import { QUALITIES } from './protocol.js';

async function fetchPrim(path) {
  const response = await fetch(primUrl(path), { headers: authHeaders() });
  if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
  return response.json();
}

export class Inspector {
  /**
   * `signals` is the live key -> {v, q, s, t} map, `history` the recent values behind the sparklines;
   * `onSelect(path)` selects another prim.
   */
  constructor(container, signals, { onSelect, history }) {
    this.container = container;
    this.signals = signals;
    this.history = history;
    setInterval(() => this.#drawSparklines(), 1000); // once a second, not once a frame
    this.onSelect = onSelect;
    this.path = null;
    this.rows = new Map(); // signal key -> its row's live cells
    this.units = new Map(); // signal key -> unit, from REST (the stream does not repeat units)
    this.restSignals = new Map(); // key -> {v, q, s, t} from REST, until the stream has the key
    this.unitsFetched = new Set(); // prims whose signal units were asked for
    this.rerenderQueued = false;

    container.addEventListener('click', (event) => {
      const link = event.target.closest('[data-select]');
      if (link) this.onSelect(link.dataset.select);
    });
    // Source time and status code on hover only, so frames do not rewrite tooltips.
    container.addEventListener('mouseover', (event) => {
      const row = event.target.closest('[data-signal-key]');
      const signal = row && this.#signal(row.dataset.signalKey);
      if (signal) {
        row.title = `${row.dataset.signalKey}\nsource time ${formatTime(signal.t)} · status 0x${
          (signal.s >>> 0).toString(16).padStart(8, '0')}`;
      }
    });
    this.show(null);
  }

  /** Show a prim (null: the empty state). */
  show(path) {
    this.path = path;
    this.rows.clear();
    this.restSignals.clear();
    if (!path) {
      this.container.replaceChildren(element('p', 'empty', 'Select an object in the 3D view or the scene tree.'));
      return;
    }
    const name = path.slice(path.lastIndexOf('/') + 1) || path;
    const header = element('div', 'inspector-header');
    header.append(element('div', 'prim-name', name), element('div', 'prim-path', path));
    this.meta = element('div', 'chips');
    this.meta.append(element('span', 'chip muted', 'loading…'));
    header.append(this.meta);

    this.signalSection = element('section', 'section');
    this.attributeSection = element('section', 'section');
    this.attributeSection.append(element('h3', '', 'Attributes'), element('p', 'muted', 'Loading…'));
    this.container.replaceChildren(header, this.signalSection, this.attributeSection);
    this.#renderSignals();
    this.#loadDetails(path);
    this.#loadDescendantUnits(path);
  }

  /**
   * A stream update for one signal: refresh its row, or re-render if it is new to the selection. Returns
   * whether the panel shows the change (the viewer then paints it before its next slow render).
   */
  update(key, signal) {
    const row = this.rows.get(key);
    if (row) {
      this.#fillRow(row, signal);
      return true;
    }
    if (!this.path || !this.#belongs(key)) return false;
    if (!this.rerenderQueued) {
      this.rerenderQueued = true;
      queueMicrotask(() => {
        this.rerenderQueued = false;
        this.#renderSignals();
      });
    }
    return true;
  }

  #belongs(key) {
    return key.startsWith(`${this.path}.`) || key.startsWith(`${this.path}/`);
  }

  #signal(key) {
    return this.signals.get(key) ?? this.restSignals.get(key);
  }

  async #loadDetails(path) {
    let details;
    try {
      details = await fetchPrim(path);
    } catch (error) {
      if (this.path !== path) return;
      this.meta.replaceChildren(element('span', 'chip bad', 'not found'));
      this.attributeSection.replaceChildren(element('h3', '', 'Attributes'),
        element('p', 'muted', `Could not load ${path}: ${error.message}`));
      return;
    }
    if (this.path !== path) return; // the selection moved on while this was loading
    this.meta.replaceChildren(element('span', 'chip', details.type || 'typeless'));
    if (details.kind) this.meta.append(element('span', `chip kind kind-${details.kind}`, details.kind));
    this.#recordSignals(path, details.signals);
    // live attributes are shown (fresher) among the live signals; the rest are authored
    const live = new Set((details.signals ?? []).map((signal) => signal.attr));
    const authored = Object.fromEntries(Object.entries(details.attributes ?? {}).filter(([name]) => !live.has(name)));
    this.#renderAttributes(authored);
    this.#renderSignals();
  }

  /** Units of descendant prims' signals come from their own /api/prims answers. */
  async #loadDescendantUnits(path) {
    const missing = new Set();
    for (const key of this.signals.keys()) {
      if (!key.startsWith(`${path}/`)) continue;
      const [prim] = splitSignalKey(key);
      if (!this.unitsFetched.has(prim)) missing.add(prim);
    }
    if (missing.size === 0) return;
    const prims = [...missing];
    const answers = await Promise.allSettled(prims.map((prim) => fetchPrim(prim)));
    answers.forEach((answer, i) => {
      if (answer.status === 'fulfilled') this.#recordSignals(prims[i], answer.value.signals);
    });
    if (this.path === path) this.#renderSignals();
  }

  #recordSignals(prim, signals = []) {
    this.unitsFetched.add(prim);
    for (const signal of signals) {
      this.units.set(signal.key, signal.unit ?? '');
      if (prim === this.path) {
        this.restSignals.set(signal.key, { v: signal.value, q: signal.quality, s: signal.status ?? 0,
          t: signal.source_time });
      }
    }
  }

  /** Signal tables: the prim's own first, then one group per descendant prim. */
  #renderSignals() {
    if (!this.path) return;
    const groups = new Map(); // prim path -> keys
    const keys = new Set([...this.restSignals.keys()]);
    for (const key of this.signals.keys()) if (this.#belongs(key)) keys.add(key);
    for (const key of [...keys].sort()) {
      const [prim] = splitSignalKey(key);
      if (!groups.has(prim)) groups.set(prim, []);
      groups.get(prim).push(key);
    }
    const prims = [...groups.keys()].sort((a, b) => (a === this.path ? -1 : b === this.path ? 1 : a.localeCompare(b)));

    this.rows.clear();
    const title = element('h3', '', 'Live signals');
    title.append(element('span', 'count', String(keys.size)));
    this.signalSection.replaceChildren(title);
    if (keys.size === 0) {
      this.signalSection.append(element('p', 'muted', 'No live signals on this prim.'));
      return;
    }
    for (const prim of prims) {
      if (prim !== this.path) {
        const link = element('button', 'group-link', prim.slice(this.path.length + 1));
        link.type = 'button';
        link.dataset.select = prim;
        link.title = `Select ${prim}`;
        this.signalSection.append(link);
      }
      const table = element('table', 'signals');
      for (const key of groups.get(prim)) table.append(this.#signalRow(key));
      this.signalSection.append(table);
    }
  }

  #signalRow(key) {
    const tr = element('tr', 'signal');
    tr.dataset.signalKey = key;
    const [, attr] = splitSignalKey(key);
    const row = {
      tr,
      value: element('td', 'value'),
      unit: element('td', 'unit', this.units.get(key) ?? ''),
      badge: element('span', 'badge'),
      quality: null,
      spark: element('canvas', 'sparkline'),
      key,
    };
    row.spark.width = 56;
    row.spark.height = 18;
    row.spark.title = 'the last five minutes';
    const sparkCell = element('td', 'spark');
    sparkCell.append(row.spark);
    const badgeCell = element('td', 'quality');
    badgeCell.append(row.badge);
    tr.append(element('td', 'attr', attr), row.value, row.unit, sparkCell, badgeCell);
    const signal = this.#signal(key);
    if (signal) this.#fillRow(row, signal);
    else row.value.textContent = '—';
    this.rows.set(key, row);
    return tr;
  }

  #fillRow(row, signal) {
    const text = signal.l ? `${signal.l} (${formatValue(signal.v)})` : formatValue(signal.v); // enum name
    if (row.value.textContent !== text) row.value.textContent = text;
    const quality = QUALITIES.includes(signal.q) ? signal.q : 'bad';
    if (row.quality !== quality) {
      row.quality = quality;
      row.tr.classList.remove(...QUALITIES.map((q) => `q-${q}`));
      row.tr.classList.add(`q-${quality}`);
      row.badge.className = `badge ${quality}`;
      row.badge.textContent = quality;
    }
  }

  #drawSparklines() {
    if (!this.history) return;
    for (const row of this.rows.values()) drawSparkline(row.spark, this.history.series(row.key));
  }

  #renderAttributes(attributes) {
    const names = Object.keys(attributes).sort();
    const title = element('h3', '', 'Attributes');
    title.append(element('span', 'count', String(names.length)));
    this.attributeSection.replaceChildren(title);
    if (names.length === 0) {
      this.attributeSection.append(element('p', 'muted', 'No authored attributes.'));
      return;
    }
    const table = element('table', 'attributes');
    for (const name of names) {
      const tr = element('tr');
      const value = formatValue(attributes[name]);
      const cell = element('td', 'attr-value', value);
      cell.title = value;
      tr.append(element('td', 'attr', name), cell);
      table.append(tr);
    }
    this.attributeSection.append(table);
  }
}
