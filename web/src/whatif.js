// What-if panel: define a sweep of one line parameter, run it on the server, plot throughput against
// the swept value with its 95 % confidence band, and play one variant back in the 3D view.
import { authHeaders, errorDetail } from './auth.js';
import { STATE_COLORS } from './plant_status.js';

const SVG = 'http://www.w3.org/2000/svg';
/** What a plant engineer may sweep, per element kind (attribute -> label). */
const SWEEPABLE = {
  source: { 'twin:interarrival': 'Mean time between arrivals (s)' },
  conveyor: { 'twin:speed': 'Belt speed (m/s)', 'twin:capacity': 'Capacity (parts)', 'twin:length': 'Length (m)' },
  buffer: { 'twin:capacity': 'Capacity (parts)' },
  station: {
    'twin:cycleTime': 'Cycle time (s)', 'twin:mtbf': 'Mean time between failures (s)',
    'twin:mttr': 'Mean time to repair (s)', 'twin:scrapRate': 'Scrap rate (0-1)', 'twin:cycleSpread': 'Cycle spread (CV)',
  },
  robot: { 'twin:pickTime': 'Pick time (s)', 'twin:placeTime': 'Place time (s)', 'twin:returnTime': 'Return time (s)' },
};

async function api(path, options = {}) {
  const response = await fetch(path, {
    ...options, headers: { 'Content-Type': 'application/json', ...authHeaders(), ...(options.headers || {}) },
  });
  if (!response.ok) throw new Error(`${response.status}: ${await errorDetail(response)}`);
  return response.json().catch(() => ({}));
}

function element(tag, attributes = {}, children = []) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (key === 'text') node.textContent = value;
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  node.append(...children);
  return node;
}

function svg(tag, attributes = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  return node;
}

export class WhatIfPanel {
  /** `viewer` draws playback parts and state lamps; `onPlayback(active)` tells the page to pause live parts. */
  constructor(root, toggle, viewer, { onPlayback }) {
    this.root = root;
    this.viewer = viewer;
    this.onPlayback = onPlayback;
    this.state = { job: null, result: null, playback: null };
    toggle.addEventListener('click', () => this.toggle());
    root.querySelector('[data-close]').addEventListener('click', () => this.toggle(false));
    this.form = root.querySelector('form');
    this.form.addEventListener('submit', (event) => {
      event.preventDefault();
      this.run();
    });
    this.form.elements.element.addEventListener('change', () => this.#fillParameters());
    this.form.elements.parameter.addEventListener('change', () => this.#suggestRange());
    this.message = root.querySelector('.whatif-message');
    this.progress = root.querySelector('progress');
    this.chart = root.querySelector('.whatif-chart');
    this.table = root.querySelector('.whatif-table');
    this.player = root.querySelector('.whatif-player');
    this.player.querySelector('[data-live]').addEventListener('click', () => this.stopPlayback());
    this.slider = this.player.querySelector('input[type=range]');
    this.slider.addEventListener('input', () => {
      if (this.state.playback) this.state.playback.time = Number(this.slider.value);
    });
    this.speed = this.player.querySelector('select');
  }

  toggle(open = this.root.hidden) {
    this.root.hidden = !open;
    if (open && !this.line) this.#loadLine();
  }

  async #loadLine() {
    try {
      this.line = await api('api/line');
    } catch (error) {
      this.#say(`This twin has no line to simulate (${error.message})`, true);
      return;
    }
    const select = this.form.elements.element;
    select.replaceChildren(...this.line.elements.filter((e) => SWEEPABLE[e.kind])
      .map((e) => element('option', { value: e.prim, text: `${e.name} (${e.kind})` })));
    const preferred = this.line.elements.find((e) => e.kind === 'station');
    if (preferred) select.value = preferred.prim;
    this.#fillParameters();
  }

  #selectedElement() {
    return this.line?.elements.find((e) => e.prim === this.form.elements.element.value);
  }

  #fillParameters() {
    const chosen = this.#selectedElement();
    if (!chosen) return;
    const options = Object.entries(SWEEPABLE[chosen.kind] || {});
    this.form.elements.parameter.replaceChildren(
      ...options.map(([attr, label]) => element('option', { value: attr, text: label })));
    this.#suggestRange();
  }

  /** From half to one and a half times the current value, in five steps. */
  #suggestRange() {
    const chosen = this.#selectedElement();
    const current = chosen?.parameters[this.form.elements.parameter.value];
    if (current === undefined) return;
    const integer = this.form.elements.parameter.value === 'twin:capacity';
    const round = (v) => (integer ? Math.max(1, Math.round(v)) : Number(v.toPrecision(3)));
    this.form.elements.from.value = round(current * 0.5);
    this.form.elements.to.value = round(current * 1.5);
    this.form.elements.current.textContent = `now ${round(current)}`;
  }

  sweepValues() {
    const f = this.form.elements;
    const from = Number(f.from.value);
    const to = Number(f.to.value);
    const steps = Math.max(1, Math.min(50, Math.round(Number(f.steps.value))));
    const integer = f.parameter.value === 'twin:capacity';
    const values = Array.from({ length: steps }, (_, i) => (steps === 1 ? from : from + ((to - from) * i) / (steps - 1)));
    return [...new Set(values.map((v) => (integer ? Math.round(v) : Number(v.toPrecision(6)))))];
  }

  async run() {
    const f = this.form.elements;
    const body = {
      sweep: [{ prim: f.element.value, attr: f.parameter.value, values: this.sweepValues() }],
      replications: Number(f.replications.value), hours: Number(f.hours.value), start: f.start.value,
    };
    this.#say('Starting…');
    f.run.disabled = true;
    try {
      let job = await api('api/whatif', { method: 'POST', body: JSON.stringify(body) });
      this.state.job = job.id;
      while (job.status === 'queued' || job.status === 'running') {
        this.progress.value = job.progress;
        this.#say(`${job.status === 'queued' ? 'Waiting' : 'Simulating'}: ${Math.round(job.progress * 100)} %`);
        await new Promise((resolve) => setTimeout(resolve, 250));
        job = await api(`api/whatif/${job.id}`);
      }
      if (job.status === 'failed') throw new Error(job.error);
      this.progress.value = 1;
      this.state.result = job.result;
      const variants = job.result.points.length * job.result.replications;
      this.#say(`${variants.toLocaleString()} variants × ${job.result.hours} h on ${job.result.device}` +
        (job.result.start === 'live' ? ', from the live state' : ''));
      this.#plot(job.result);
      this.#tabulate(job.result);
    } catch (error) {
      this.#say(error.message, true);
    } finally {
      f.run.disabled = false;
    }
  }

  #say(text, isError = false) {
    this.message.textContent = text;
    this.message.classList.toggle('error', isError);
  }

  #series(result) {
    const label = `${result.sweep[0].prim}.${result.sweep[0].attr}`;
    return result.points.map((p) => ({ x: p.values[label], ...p.kpis.throughput_per_hour }));
  }

  /** Throughput per hour against the swept value: mean line, 95 % band, one dot per point. */
  #plot(result) {
    const width = 380;
    const height = 170;
    const pad = { left: 48, right: 12, top: 12, bottom: 34 };
    const series = this.#series(result);
    const xs = series.map((p) => p.x);
    const ys = series.flatMap((p) => [p.low ?? p.mean, p.high ?? p.mean]);
    const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
    const [y0, y1] = [Math.min(0, ...ys), Math.max(...ys) * 1.08 || 1];
    const sx = (x) => pad.left + (x1 === x0 ? 0.5 : (x - x0) / (x1 - x0)) * (width - pad.left - pad.right);
    const sy = (y) => height - pad.bottom - ((y - y0) / (y1 - y0)) * (height - pad.top - pad.bottom);
    const chart = svg('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': 'Throughput per hour' });
    for (let i = 0; i <= 4; i++) {
      const y = y0 + ((y1 - y0) * i) / 4;
      chart.append(svg('line', { x1: pad.left, x2: width - pad.right, y1: sy(y), y2: sy(y), class: 'grid' }));
      const tick = svg('text', { x: pad.left - 6, y: sy(y) + 4, class: 'tick', 'text-anchor': 'end' });
      tick.textContent = Math.round(y);
      chart.append(tick);
    }
    for (const p of series) {
      const tick = svg('text', { x: sx(p.x), y: height - pad.bottom + 14, class: 'tick', 'text-anchor': 'middle' });
      tick.textContent = String(p.x);
      chart.append(tick);
    }
    const banded = series.filter((p) => p.low !== null && p.high !== null);
    if (banded.length) {
      const upper = banded.map((p) => `${sx(p.x)},${sy(p.high)}`);
      const lower = banded.map((p) => `${sx(p.x)},${sy(p.low)}`).reverse();
      chart.append(svg('polygon', { points: [...upper, ...lower].join(' '), class: 'band' }));
    }
    chart.append(svg('polyline', { points: series.map((p) => `${sx(p.x)},${sy(p.mean)}`).join(' '), class: 'mean' }));
    series.forEach((p, index) => {
      const dot = svg('circle', { cx: sx(p.x), cy: sy(p.mean), r: 4, class: 'point', 'data-point': index });
      const title = svg('title');
      title.textContent = `${p.x}: ${p.mean.toFixed(1)} parts/h` +
        (p.low !== null ? ` (95 %: ${p.low.toFixed(1)}–${p.high.toFixed(1)})` : '');
      dot.append(title);
      dot.addEventListener('click', () => this.play(index));
      chart.append(dot);
    });
    const axis = svg('text', { x: width / 2, y: height - 4, class: 'axis', 'text-anchor': 'middle' });
    axis.textContent = this.form.elements.parameter.selectedOptions[0]?.textContent ?? result.sweep[0].attr;
    const yAxis = svg('text', { x: 12, y: height / 2, class: 'axis', 'text-anchor': 'middle',
      transform: `rotate(-90 12 ${height / 2})` });
    yAxis.textContent = 'parts / hour';
    chart.append(axis, yAxis);
    this.chart.replaceChildren(chart);
  }

  #tabulate(result) {
    const label = `${result.sweep[0].prim}.${result.sweep[0].attr}`;
    const name = (path) => path.split('/').pop();
    const format = (k, digits = 1) => (k.mean === null ? '–' : k.mean.toFixed(digits));
    const rows = result.points.map((p, index) => element('tr', {}, [
      element('td', { text: String(p.values[label]) }),
      element('td', { text: format(p.kpis.throughput_per_hour) }),
      element('td', { text: format(p.kpis.wip) }),
      element('td', { text: `${(100 * (p.kpis.line_oee.mean ?? 0)).toFixed(0)} %` }),
      element('td', { text: name(p.kpis.bottleneck.prim),
        title: `largest active share in ${Math.round(100 * p.kpis.bottleneck.share_of_replications)} % of replications` }),
      element('td', {}, [element('button', { type: 'button', text: 'Play', 'data-play': index,
        onclick: () => this.play(index) })]),
    ]));
    this.table.replaceChildren(element('table', {}, [
      element('thead', {}, [element('tr', {}, ['Value', 'Parts/h', 'WIP', 'OEE', 'Bottleneck', '']
        .map((h) => element('th', { text: h })))]),
      element('tbody', {}, rows),
    ]));
  }

  /** Fetch one variant's frames and animate them; the live parts pause meanwhile. */
  async play(point, seconds = 600) {
    if (!this.state.job) return;
    this.#say(`Simulating point ${point + 1} for playback…`);
    try {
      const data = await api(`api/whatif/${this.state.job}/playback?point=${point}&seconds=${seconds}&step=0.5`);
      this.stopPlayback(false);
      this.state.playback = { data, time: 0, point, last: performance.now(), playing: true, parts: 0 };
      this.slider.max = String(data.seconds);
      this.slider.value = '0';
      this.player.hidden = false;
      this.player.querySelector('.whatif-playing').textContent =
        `Playing ${Object.entries(data.values).map(([k, v]) => `${k.split('/').pop()} = ${v}`).join(', ')}`;
      this.viewer.setStateLamps('playback', data.states.map((s) => s.prim));
      this.onPlayback(true);
      this.#say('');
      this.#tick();
    } catch (error) {
      this.#say(error.message, true);
    }
  }

  stopPlayback(resumeLive = true) {
    const playback = this.state.playback;
    if (!playback) return;
    playback.playing = false;
    cancelAnimationFrame(playback.frame);
    this.state.playback = null;
    this.player.hidden = true;
    this.viewer.setStateLamps('playback', []);
    if (resumeLive) this.onPlayback(false);
  }

  #tick() {
    const playback = this.state.playback;
    if (!playback?.playing) return;
    const now = performance.now();
    const { data } = playback;
    playback.time = Math.min(data.seconds, playback.time + ((now - playback.last) / 1000) * Number(this.speed.value));
    playback.last = now;
    this.slider.value = String(playback.time);
    this.player.querySelector('.whatif-clock').textContent = `${Math.floor(playback.time / 60)}:${
      String(Math.floor(playback.time % 60)).padStart(2, '0')} / ${data.seconds / 60} min`;
    this.#show(playback.time);
    if (playback.time >= data.seconds) playback.time = 0; // loop
    playback.frame = requestAnimationFrame(() => this.#tick());
  }

  /** Parts at time `t`: interpolated between the two frames around it, matched by part id. */
  #show(t) {
    const { data } = this.state.playback;
    const index = Math.min(data.frames.length - 1, Math.floor(t / data.step));
    const a = data.frames[index];
    const b = data.frames[Math.min(index + 1, data.frames.length - 1)];
    const share = b === a ? 0 : (t - a.t) / (b.t - a.t);
    const next = new Map(b.ids.map((id, i) => [id, i]));
    this.viewer.setPartPositions(a.ids.length, (i, out) => {
      const j = next.get(a.ids[i]);
      for (let c = 0; c < 3; c++) {
        const from = a.positions[3 * i + c];
        out[c] = j === undefined ? from : from + (b.positions[3 * j + c] - from) * share;
      }
    });
    this.state.playback.parts = a.ids.length;
    for (const { prim, changes } of data.states) {
      let current = null;
      for (const [time, state] of changes) {
        if (time > t) break;
        current = state;
      }
      this.viewer.setStateLamp('playback', prim, STATE_COLORS[current] ?? null);
    }
  }
}
