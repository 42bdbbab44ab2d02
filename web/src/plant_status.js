// What the plant is doing, at a glance: a state lamp over every machine (coloured by its state,
// grey with a badge when its data is stale or bad), the KPI bar, and the alarm list: the server's
// rule alarms (twin/alarms.py, pushed on the stream, acknowledged here by operators) above the
// page's own system alarms (untrusted data per machine, disconnected OPC-UA servers).
import { authHeaders, errorDetail } from './auth.js';
import { element } from './dom.js';
import { formatTime, splitSignalKey } from './format.js';

export const STATE_COLORS = {
  running: '#2fbf71', working: '#2fbf71', idle: '#8aa0b8', blocked: '#3d8bfd', starved: '#f0a030',
  down: '#e5484d', fault: '#b4232a', setup: '#b57bff',
};
const NO_DATA = '#5b6576';
const STATION_CODES = { 0: 'idle', 1: 'working', 2: 'blocked', 3: 'starved', 4: 'down', 5: 'fault' };
/** The signal that tells each kind of machine's state. */
const STATE_SIGNAL = { station: 'twin:state', conveyor: 'twin:running', robot: 'twin:phase' };
const SEVERITY_ORDER = { critical: 0, high: 1, medium: 2, low: 3 };
const KPIS = {
  'twin:kpi:throughputPerHour': ['kpi-throughput', (v) => v.toFixed(0)],
  'twin:kpi:oee': ['kpi-oee', (v) => `${(100 * v).toFixed(0)} %`],
  'twin:kpi:wip': ['kpi-wip', (v) => v.toFixed(0)],
};

export class PlantStatus {
  constructor(viewer, { alarmButton, alarmPanel, onSelect }) {
    this.viewer = viewer;
    this.alarmButton = alarmButton;
    this.alarmPanel = alarmPanel;
    this.onSelect = onSelect;
    this.machines = new Map(); // prim path -> kind, for machines with a state signal
    this.states = new Map(); // prim path -> {state, quality}
    this.alarms = new Map(); // system alarms: id -> {id, severity, prim, text, since}
    this.ruleAlarms = []; // the server's open alarms (its `alarms` message), most severe first
    this.past = false; // the list shows a replayed instant
    this.ackError = '';
    this.connectorAlarms = new Set();
    this.untrusted = new Map(); // prim -> (attr -> quality) of its stale or bad signals
    alarmButton.addEventListener('click', () => {
      alarmPanel.hidden = !alarmPanel.hidden;
    });
    alarmPanel.addEventListener('click', (event) => {
      const ack = event.target.closest('button[data-ack]');
      if (ack) {
        this.#acknowledge(Number(ack.dataset.ack));
        return;
      }
      const item = event.target.closest('[data-prim]');
      if (item) this.onSelect(item.dataset.prim);
    });
    setInterval(() => this.#pollConnectors(), 5000);
    this.#pollConnectors();
  }

  /** The scene's kinds are known: one lamp per machine. */
  setKinds(kinds) {
    this.machines.clear();
    for (const [path, kind] of kinds) if (STATE_SIGNAL[kind]) this.machines.set(path, kind);
    this.viewer.setStateLamps('live', [...this.machines.keys()]);
    for (const path of this.machines.keys()) this.#paint(path);
  }

  /** One signal changed (from the stream). */
  update(key, signal) {
    const [prim, attr] = splitSignalKey(key);
    if (KPIS[attr]) this.#kpi(attr, signal);
    const kind = this.machines.get(prim);
    if (kind && STATE_SIGNAL[kind] === attr) {
      const state = this.#stateOf(kind, signal);
      this.states.set(prim, { state, quality: signal.q });
      this.#paint(prim);
    }
    // Data quality: one alarm per prim, naming how many of its signals are stale or bad.
    const untrusted = this.untrusted.get(prim) ?? new Map();
    if (signal.q === 'stale' || signal.q === 'bad') untrusted.set(attr, signal.q);
    else untrusted.delete(attr);
    this.untrusted.set(prim, untrusted);
    const worst = [...untrusted.values()].includes('bad') ? 'bad' : 'stale';
    const count = untrusted.size;
    this.#setAlarm(`quality:${prim}`, count > 0, 'medium', prim,
      `${count === 1 ? [...untrusted.keys()][0] : `${count} signals`} on ${prim.split('/').pop()} ${
        count === 1 ? 'is' : 'are'} ${worst}`, true);
  }

  #stateOf(kind, signal) {
    if (signal.v === null || signal.v === undefined) return null;
    if (kind === 'station') return signal.l ?? STATION_CODES[signal.v] ?? 'idle';
    if (kind === 'conveyor') return signal.v ? 'running' : 'idle';
    return signal.v === 'waiting' ? 'idle' : 'running';
  }

  #paint(path) {
    const known = this.states.get(path);
    if (!known || known.state === null) {
      this.viewer.setStateLamp('live', path, NO_DATA, 'no data');
      return;
    }
    const trusted = known.quality === 'good' || known.quality === 'uncertain';
    this.viewer.setStateLamp('live', path, trusted ? STATE_COLORS[known.state] ?? NO_DATA : NO_DATA,
      trusted ? null : known.quality);
  }

  #kpi(attr, signal) {
    const [id, format] = KPIS[attr];
    const node = document.getElementById(id);
    if (!node) return;
    node.textContent = typeof signal.v === 'number' ? format(signal.v) : '—';
    node.classList.toggle('untrusted', signal.q !== 'good');
    node.title = signal.q === 'good' ? '' : `computed from ${signal.q} signals`;
  }

  #setAlarm(id, active, severity, prim, text, retext = false) {
    const existing = this.alarms.get(id);
    if (active && !existing) this.alarms.set(id, { id, severity, prim, text, since: Date.now() / 1000 });
    else if (!active && existing) this.alarms.delete(id);
    else if (active && retext && existing.text !== text) existing.text = text;
    else return;
    this.#renderAlarms();
  }

  /**
   * The server's open alarms: live from the stream, or (`past`) as they were at a replayed instant, which
   * are shown without Ack buttons: an acknowledgement acts on the alarm now.
   */
  setRuleAlarms(alarms, { past = false } = {}) {
    this.past = past;
    this.ruleAlarms = [...alarms].sort((a, b) =>
      (SEVERITY_ORDER[a.severity] ?? 9) - (SEVERITY_ORDER[b.severity] ?? 9) || b.raised - a.raised);
    this.#renderAlarms();
  }

  async #acknowledge(id) {
    const comment = window.prompt(`Acknowledge alarm ${id}. Comment (optional):`, '');
    if (comment === null) return;
    let response;
    try {
      response = await fetch(`api/alarms/${id}/acknowledge`, {
        method: 'POST', headers: { ...authHeaders(), 'Content-Type': 'application/json' },
        body: JSON.stringify({ comment }),
      });
    } catch (error) {
      this.ackError = `the twin did not answer: ${error.message}`;
      this.#renderAlarms();
      return;
    }
    this.ackError = '';
    if (!response.ok) {
      const detail = await errorDetail(response);
      this.ackError = response.status === 403
        ? `${detail}. Open the page with ?token=<operator token> to acknowledge.` : detail;
    }
    this.#renderAlarms(); // the acknowledged list itself comes back on the stream
  }

  async #pollConnectors() {
    try {
      const response = await fetch('api/connectors', { headers: authHeaders() });
      if (!response.ok) return;
      const servers = await response.json();
      const seen = new Set();
      for (const [name, server] of Object.entries(servers)) {
        const id = `connector:${name}`;
        seen.add(id);
        this.#setAlarm(id, !server.connected, 'high', null,
          `OPC-UA server ${name} (${server.endpoint}) is not connected${server.last_error ? `: ${server.last_error}` : ''}`);
      }
      for (const id of this.connectorAlarms) if (!seen.has(id)) this.#setAlarm(id, false);
      this.connectorAlarms = seen;
    } catch {
      // the stream's indicator already says when the server is away
    }
  }

  #renderAlarms() {
    const system = [...this.alarms.values()].sort((a, b) =>
      (a.severity === b.severity ? b.since - a.since : a.severity === 'high' ? -1 : 1));
    const count = this.ruleAlarms.length + system.length;
    this.alarmButton.querySelector('.number').textContent = String(count);
    const urgent = this.ruleAlarms.some((a) => a.state === 'active' && SEVERITY_ORDER[a.severity] <= 1)
      || system.some((a) => a.severity === 'high');
    this.alarmButton.classList.toggle('active', urgent);
    this.alarmButton.classList.toggle('warning', count > 0);
    const list = element('ul', 'alarm-list');
    for (const alarm of this.ruleAlarms.slice(0, 200)) {
      const item = element('li', `alarm ${alarm.severity} ${alarm.state}`);
      item.dataset.alarm = String(alarm.id);
      item.dataset.prim = splitSignalKey(alarm.key)[0];
      const text = element('span', 'alarm-text', alarm.message);
      text.title = `${alarm.key}: ${alarm.state}${alarm.acknowledged_by ? ` by ${alarm.acknowledged_by}` : ''}` +
        `${alarm.comment ? ` (${alarm.comment})` : ''}, raised ${alarm.raised_count}x, value ${alarm.value}`;
      item.append(element('span', 'alarm-time', formatTime(alarm.raised)), text,
        element('span', 'alarm-state', alarm.state));
      if (alarm.state !== 'acknowledged' && !this.past) {
        const button = element('button', 'alarm-ack', 'Ack');
        button.type = 'button';
        button.dataset.ack = String(alarm.id);
        item.append(button);
      }
      list.append(item);
    }
    for (const alarm of system.slice(0, 200)) {
      const item = element('li', `alarm ${alarm.severity} system`);
      if (alarm.prim) item.dataset.prim = alarm.prim;
      item.append(element('span', 'alarm-time', formatTime(alarm.since)), element('span', 'alarm-text', alarm.text));
      list.append(item);
    }
    if (count === 0) list.append(element('li', 'muted', 'No active alarms.'));
    const children = [element('div', 'panel-header', 'Alarms'), list];
    if (this.ackError) children.push(element('div', 'alarm-error', this.ackError));
    this.alarmPanel.replaceChildren(...children);
  }
}
