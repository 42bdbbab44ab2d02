// Commissioning mode (`twin commission`, docs/commissioning.md): a "SIMULATED" badge, and the line's inputs and
// outputs as a PLC watch table, polled from api/commission/io, with force and release controls for operators
// (a page opened with an operator's ?token=). On a twin that is not commissioning the API answers 404 and
// nothing is shown.
import './io_panel.css';
import { authHeaders, errorDetail } from './auth.js';
import { element } from './dom.js';
import { formatValue } from './format.js';

const POLL_MS = 500;
const MODES = ['value', 'stuck', 'flicker', 'offline'];

/** A node's name in the table: without the leading "Line." every node has. */
const shortName = (node) => node.replace(/^Line\./, '');

export class IoPanel {
  /** `stats`: the top bar's badges; `toolbar`: where the panel's toggle goes; `parent`: where the panel goes. */
  constructor({ stats, toolbar, parent }) {
    this.stats = stats;
    this.toolbar = toolbar;
    this.parent = parent;
    this.rows = new Map(); // node -> {row, value, force}
    this.operator = Object.keys(authHeaders()).length > 0; // only a page with a token can force
  }

  /** Show the panel if this twin commissions a line; returns whether it does. */
  async start() {
    const response = await fetch('api/commission/io', { headers: authHeaders() }).catch(() => null);
    if (!response?.ok) return false;
    const io = await response.json();
    const badge = element('span', 'status simulated', 'SIMULATED');
    badge.id = 'simulated-badge';
    badge.title = `Commissioning: the line is simulated and served over OPC-UA at ${io.endpoint} (${io.mode})`;
    this.stats.prepend(badge);
    this.build(io);
    const toggle = element('button', '', 'I/O');
    toggle.type = 'button';
    toggle.title = "The simulated line's inputs and outputs, with their forces";
    toggle.addEventListener('click', () => (this.panel.hidden = !this.panel.hidden));
    this.toolbar.append(toggle);
    this.update(io);
    setInterval(() => this.poll(), POLL_MS);
    return true;
  }

  build(io) {
    this.panel = element('section', 'io-panel');
    this.panel.id = 'io-panel';
    this.panel.setAttribute('aria-label', 'Inputs and outputs');
    const header = element('header');
    this.summary = element('span', '', 'I/O');
    const close = element('button', '', '×');
    close.type = 'button';
    close.title = 'Close';
    close.addEventListener('click', () => (this.panel.hidden = true));
    header.append(this.summary, close);
    this.filter = Object.assign(element('input', 'io-filter'), { type: 'search', placeholder: 'Filter nodes' });
    this.filter.addEventListener('input', () => this.applyFilter());
    this.message = element('p', 'io-message muted');
    this.panel.append(header, this.filter);
    if (this.operator) this.panel.append(this.forceForm());
    this.panel.append(this.message);
    const table = element('table', 'io-table');
    const head = element('tr');
    for (const title of ['Node', 'Dir', 'Value', 'Unit', 'Force']) head.append(element('th', '', title));
    table.append(element('thead'), element('tbody'));
    table.tHead.append(head);
    for (const signal of io.signals) table.tBodies[0].append(this.row(signal.node, signal.direction, signal.unit));
    for (const unit of io.units) table.tBodies[0].append(this.row(unit.node, unit.kind, ''));
    this.panel.append(table);
    this.parent.append(this.panel);
  }

  row(node, direction, unit) {
    const row = element('tr');
    row.dataset.node = node;
    const value = element('td', 'value');
    const force = element('td', 'force');
    row.append(element('td', 'node', shortName(node)), element('td', 'direction', direction), value,
      element('td', 'unit', unit), force);
    if (this.operator) {
      row.addEventListener('click', () => this.choose(node, direction));
      row.classList.add('choosable');
    }
    this.rows.set(node, { row, value, force });
    return row;
  }

  /** The operator's form: the chosen node, the mode, a value or a period, Force, Release, Release all. */
  forceForm() {
    const form = element('form', 'io-force');
    form.innerHTML = `<output name="node" class="muted">click a row to force it</output>
      <select name="mode" aria-label="Force mode">${MODES.map((m) => `<option>${m}</option>`).join('')}</select>
      <input name="value" placeholder="value" aria-label="Forced value" />
      <input name="period" type="number" min="0" step="any" placeholder="period s" aria-label="Flicker period" />
      <button name="force" type="submit" disabled>Force</button>
      <button name="release" type="button" disabled>Release</button>
      <button id="io-release-all" type="button" title="Release every force">Release all</button>`;
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      this.force();
    });
    form.elements.release.addEventListener('click', () => this.release(this.chosen));
    form.querySelector('#io-release-all').addEventListener('click', () => this.release('all'));
    this.form = form;
    return form;
  }

  choose(node, direction) {
    this.chosen = node;
    const unit = direction === 'drive' || direction === 'station';
    this.form.elements.node.value = shortName(node);
    this.form.elements.mode.replaceChildren(...(unit ? ['fail'] : MODES).map((m) => element('option', '', m)));
    this.form.elements.force.disabled = direction === 'output';
    this.form.elements.release.disabled = false;
    for (const { row } of this.rows.values()) row.classList.toggle('chosen', row.dataset.node === node);
  }

  async force() {
    const { mode, value, period } = this.form.elements;
    const body = { node: this.chosen, mode: mode.value };
    if (mode.value === 'value') body.value = parseValue(value.value);
    if (mode.value === 'flicker') body.period_s = Number(period.value);
    await this.send('POST', 'api/commission/forces', body);
  }

  async release(node) {
    await this.send('DELETE', node === 'all' ? 'api/commission/forces' : `api/commission/forces/${encodeURIComponent(node)}`);
  }

  async send(method, url, body) {
    const headers = { ...authHeaders(), ...(body ? { 'Content-Type': 'application/json' } : {}) };
    const response = await fetch(url, { method, headers, body: body && JSON.stringify(body) }).catch(() => null);
    this.message.textContent = response === null ? 'The twin is not reachable'
      : response.ok ? '' : await errorDetail(response);
    await this.poll();
  }

  async poll() {
    const response = await fetch('api/commission/io', { headers: authHeaders() }).catch(() => null);
    if (response?.ok) this.update(await response.json());
  }

  update(io) {
    this.summary.textContent = `I/O · ${io.mode} · cycle ${io.cycle} · ${formatValue(io.virtual_time)} s`;
    for (const signal of [...io.signals, ...io.units]) {
      const entry = this.rows.get(signal.node);
      if (!entry) continue;
      const forced = signal.forced;
      entry.row.classList.toggle('forced', forced !== null);
      entry.row.classList.toggle('bad', signal.quality === 'Bad');
      if ('value' in signal) entry.value.textContent = signal.quality === 'Bad' ? 'BAD' : formatValue(signal.value);
      entry.force.textContent = forced ? `F ${forced.mode}${forced.mode === 'flicker' ? ` ${forced.period_s} s` : ''}` : '';
      entry.force.title = forced ? `forced by ${forced.user} at ${new Date(forced.time * 1000).toLocaleTimeString()}` : '';
    }
  }

  applyFilter() {
    const text = this.filter.value.trim().toLowerCase();
    for (const [node, { row }] of this.rows) row.hidden = text !== '' && !node.toLowerCase().includes(text);
  }
}

/** A typed value: true/false, a number, or text. */
function parseValue(text) {
  const trimmed = text.trim();
  if (trimmed === 'true' || trimmed === 'false') return trimmed === 'true';
  return trimmed !== '' && Number.isFinite(Number(trimmed)) ? Number(trimmed) : text;
}
