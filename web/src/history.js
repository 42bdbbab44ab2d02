// Recent history of every numeric signal, for the inspector's sparklines: a small ring per signal,
// one sample per bucket (the latest value in it), so memory stays bounded whatever the frame rate.
// The stream sends a value only when it changes, so a live series ends with its last value held up to
// the newest frame: a counter that ticks once a minute draws a flat line, not nothing.
// During a replay the sparklines end at the replayed instant instead: the five minutes before it,
// one value per bucket, from the historian (GET api/history/signal).
import { authHeaders } from './auth.js';

const BUCKET_S = 2;
const SAMPLES = 150; // five minutes

export class SignalHistory {
  /** `plottable(key)`: whether a signal is a numeric scalar, the only kind with a sparkline. */
  constructor({ plottable = () => true } = {}) {
    this.plottable = plottable;
    this.rings = new Map(); // key -> {times: Float64Array, values: Float32Array, head, count}
    this.end = null; // the replayed instant (Unix s), or null: live
    this.latest = null; // the newest live frame's time (Unix s): where held values end
    this.recorded = new Map(); // key -> {end, series, loading}: the historian's values before `end`
  }

  /** Sparklines end at `instant` (a replay), or at the latest live value again (null). */
  endAt(instant) {
    if (instant === null) this.recorded.clear();
    this.end = instant;
  }

  /** A live frame arrived at `time`: every series' last value holds until then. */
  advance(time) {
    if (typeof time === 'number' && (this.latest === null || time > this.latest)) this.latest = time;
  }

  record(key, time, value) {
    if (typeof value !== 'number' || typeof time !== 'number') return;
    this.advance(time);
    let ring = this.rings.get(key);
    if (!ring) {
      ring = { times: new Float64Array(SAMPLES), values: new Float32Array(SAMPLES), head: 0, count: 0 };
      this.rings.set(key, ring);
    }
    const last = (ring.head + SAMPLES - 1) % SAMPLES;
    if (ring.count && Math.floor(ring.times[last] / BUCKET_S) === Math.floor(time / BUCKET_S)) {
      ring.values[last] = value; // same bucket: keep the latest
      ring.times[last] = time;
      return;
    }
    ring.times[ring.head] = time;
    ring.values[ring.head] = value;
    ring.head = (ring.head + 1) % SAMPLES;
    ring.count = Math.min(ring.count + 1, SAMPLES);
  }

  /** [times, values] oldest first, or null when there is nothing yet. */
  series(key) {
    if (this.end !== null) return this.#recordedSeries(key);
    const ring = this.rings.get(key);
    if (!ring || ring.count === 0) return null;
    const last = (ring.head + SAMPLES - 1) % SAMPLES;
    const held = this.latest !== null && Math.floor(this.latest / BUCKET_S) > Math.floor(ring.times[last] / BUCKET_S);
    const length = ring.count + (held ? 1 : 0);
    const times = new Float64Array(length);
    const values = new Float32Array(length);
    const start = (ring.head + SAMPLES - ring.count) % SAMPLES;
    for (let i = 0; i < ring.count; i++) {
      times[i] = ring.times[(start + i) % SAMPLES];
      values[i] = ring.values[(start + i) % SAMPLES];
    }
    if (held) {
      times[ring.count] = this.latest;
      values[ring.count] = ring.values[last];
    }
    return [times, values];
  }

  /** The historian's series ending at the replayed instant; fetched on demand, one request per key at a time. */
  #recordedSeries(key) {
    const end = this.end;
    let entry = this.recorded.get(key);
    if (!entry) this.recorded.set(key, (entry = { end: null, series: null, loading: false, missing: false }));
    const moved = entry.end === null || Math.abs(entry.end - end) >= BUCKET_S / 2;
    if (moved && !entry.loading && !entry.missing && this.plottable(key)) this.#fetch(key, entry, end);
    if (!entry.series) return null;
    const [times, values] = entry.series;
    let count = times.length; // nothing after the instant, should the fetched window end later
    while (count > 0 && times[count - 1] > end) count -= 1;
    return [times.subarray(0, count), values.subarray(0, count)];
  }

  async #fetch(key, entry, end) {
    entry.loading = true;
    const query = new URLSearchParams({ key, start: end - BUCKET_S * SAMPLES, end, step: BUCKET_S, how: 'last' });
    try {
      const response = await fetch(`api/history/signal?${query}`, { headers: authHeaders() });
      if (this.recorded.get(key) !== entry) return; // back to live meanwhile
      entry.end = end;
      if (!response.ok) {
        entry.missing = response.status === 404; // never recorded: ask again in the next replay
        entry.series = null;
        return;
      }
      const body = await response.json();
      entry.series = [Float64Array.from(body.times), Float32Array.from(body.values, (v) => (v === null ? NaN : v))];
    } catch {
      // the server is away: the stream's indicator says so
    } finally {
      entry.loading = false;
    }
  }
}

/** Draw a series into a small canvas: the line, and its last point. */
export function drawSparkline(canvas, series) {
  const context = canvas.getContext('2d');
  const { width, height } = canvas;
  context.clearRect(0, 0, width, height);
  if (!series || series[0].length < 2) return;
  const [times, values] = series;
  let low = Infinity;
  let high = -Infinity;
  for (const v of values) {
    if (Number.isFinite(v)) {
      low = Math.min(low, v);
      high = Math.max(high, v);
    }
  }
  if (!Number.isFinite(low)) return;
  if (high - low < 1e-9) {
    high += 0.5;
    low -= 0.5;
  }
  const t0 = times[0];
  const span = Math.max(times[times.length - 1] - t0, 1e-9);
  const x = (t) => 1 + ((t - t0) / span) * (width - 4);
  const y = (v) => height - 2 - ((v - low) / (high - low)) * (height - 4);
  context.strokeStyle = '#3d8bfd';
  context.lineWidth = 1.25;
  context.beginPath();
  let started = false;
  for (let i = 0; i < values.length; i++) {
    if (!Number.isFinite(values[i])) continue;
    if (started) context.lineTo(x(times[i]), y(values[i]));
    else context.moveTo(x(times[i]), y(values[i]));
    started = true;
  }
  context.stroke();
  context.fillStyle = '#d7dce4';
  context.fillRect(x(times[times.length - 1]) - 1.5, y(values[values.length - 1]) - 1.5, 3, 3);
}
