// Replay (docs/history.md): a time bar that rewinds the 3D scene and every panel to a past instant and plays
// forward at 1x to 60x. The server rebuilds the instant from the historian as a binary snapshot in the live
// stream's format (GET api/replay/frame?at=T, flag bit 1 set); it is decoded with the schema the stream
// holds and handed to `apply`, the code path of live frames. One frame is in flight at a time: the next
// one is asked for once the last is applied, at the instant wanted by then (latest wins, no pile-up).
import { authHeaders, errorDetail } from './auth.js';
import { formatTime } from './format.js';
import { decodeFrame } from './protocol.js';

const SPEEDS = [1, 2, 5, 10, 30, 60];
const MIN_FRAME_MS = 100; // while playing, at most ten frames a second: each is a state query on the server
const RANGE_REFRESH_MS = 10000;

/** A Unix time as local date and time, e.g. "2026-11-25 14:03:12.250". */
export function formatInstant(seconds) {
  const date = new Date(seconds * 1000);
  const pad = (n) => String(n).padStart(2, '0');
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${formatTime(seconds)}`;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export class Replay {
  /**
   * `bar`: the time bar's element; `badge`: the top bar's replay badge. `schema()` is the stream's current
   * schema, `apply(frame, schema)` applies a frame to the page, `onMode(active)` hears replay start and end
   * (the page then ignores live frames, and resyncs the stream when live again).
   */
  constructor(bar, badge, { schema, apply, onMode }) {
    this.bar = bar;
    this.badge = badge;
    this.schema = schema;
    this.apply = apply;
    this.onMode = onMode;
    this.slider = bar.querySelector('input[type=range]');
    this.label = bar.querySelector('.replay-instant');
    this.playButton = bar.querySelector('[data-play]');
    this.speedSelect = bar.querySelector('[data-speed]');
    this.liveButton = bar.querySelector('[data-live]');
    /** Test hooks and the bar's truth: `instant` is the instant the page shows (null: live). */
    this.state = { available: false, active: false, playing: false, speed: 1, instant: null, start: null,
      end: null, frames: 0, error: null };
    this.wanted = null; // the instant asked for while paused
    this.clock = null; // while playing: {wall, instant} the play started from
    this.busy = false;
    this.dragging = false;

    this.speedSelect.replaceChildren(...SPEEDS.map((speed) => new Option(`${speed}×`, String(speed))));
    this.slider.addEventListener('input', () => this.seek(Number(this.slider.value)));
    this.slider.addEventListener('pointerdown', () => { this.dragging = true; });
    window.addEventListener('pointerup', () => { this.dragging = false; });
    this.slider.addEventListener('keydown', (event) => {
      if (event.key !== 'ArrowLeft' && event.key !== 'ArrowRight') return;
      event.preventDefault(); // step by seconds, not by a share of a long history
      const step = (event.shiftKey ? 10 : 1) * (event.key === 'ArrowLeft' ? -1 : 1);
      this.seek((this.#target() ?? this.state.instant ?? this.state.end) + step);
    });
    this.playButton.addEventListener('click', () => (this.state.playing ? this.pause() : this.play()));
    this.speedSelect.addEventListener('change', () => this.setSpeed(Number(this.speedSelect.value)));
    this.liveButton.addEventListener('click', () => this.live());
    this.#render();
    this.loadRange();
    setInterval(() => this.loadRange(), RANGE_REFRESH_MS);
  }

  /** The history's extent (GET api/history/range); a twin without history hides the bar. */
  async loadRange() {
    try {
      const response = await fetch('api/history/range', { headers: authHeaders() });
      if (response.status === 404) {
        this.state.available = false;
      } else if (response.ok) {
        const { start, end } = await response.json();
        Object.assign(this.state, { available: true, start, end });
      }
    } catch {
      // the server is away: the stream's indicator says so; try again at the next refresh
    }
    this.#render();
  }

  /** Show the twin as it was at `instant` (Unix s), entering replay if live. */
  seek(instant) {
    const { start, end } = this.state;
    if (!this.state.available || start === null || !Number.isFinite(instant)) return;
    this.wanted = Math.min(Math.max(instant, start), end);
    if (!this.state.active) {
      this.state.active = true;
      this.onMode(true);
    }
    if (this.state.playing) this.clock = { wall: performance.now(), instant: this.wanted };
    this.#render();
    this.#pump();
  }

  play() {
    if (!this.state.active) return;
    const from = this.wanted ?? this.state.instant;
    this.state.playing = true;
    this.clock = { wall: performance.now(), instant: from >= this.state.end ? this.state.start : from };
    this.#render();
    this.#pump();
  }

  pause() {
    if (!this.state.playing) return;
    this.wanted = this.#target();
    this.state.playing = false;
    this.clock = null;
    this.#render();
    this.#pump();
  }

  setSpeed(speed) {
    if (this.state.playing) this.clock = { wall: performance.now(), instant: this.#target() };
    this.state.speed = speed;
    this.#render();
  }

  /** Back to live: the page takes the stream's frames again, starting from a fresh snapshot. */
  live() {
    if (!this.state.active) return;
    Object.assign(this.state, { active: false, playing: false, instant: null, error: null });
    this.wanted = null;
    this.clock = null;
    this.onMode(false);
    this.#render();
  }

  /** The instant to show now: where playing has got to by the wall clock, or the one asked for. */
  #target() {
    if (!this.clock) return this.wanted;
    return this.clock.instant + (this.state.speed * (performance.now() - this.clock.wall)) / 1000;
  }

  async #pump() {
    if (this.busy) return;
    this.busy = true;
    try {
      while (this.state.active) {
        let target = this.#target();
        if (this.state.playing && target >= this.state.end) {
          await this.loadRange(); // the history has grown meanwhile, perhaps
          target = Math.min(target, this.state.end);
          if (target >= this.state.end) {
            this.wanted = this.state.end;
            this.state.playing = false; // reached the latest recorded instant
            this.clock = null;
          }
        }
        if (!this.state.playing && target === this.state.instant) break;
        const started = performance.now();
        if (!(await this.#show(target))) break;
        if (this.state.playing) await sleep(MIN_FRAME_MS - (performance.now() - started));
      }
    } finally {
      this.busy = false;
      this.#render();
    }
  }

  /** Fetch and apply the frame of one instant; false (and an error on the bar) when that fails. */
  async #show(instant) {
    let buffer;
    try {
      const response = await fetch(`api/replay/frame?at=${instant}`, { headers: authHeaders() });
      if (!response.ok) throw new Error(await errorDetail(response));
      buffer = await response.arrayBuffer();
    } catch (error) {
      return this.#fail(`could not load the replay: ${error.message}`);
    }
    if (!this.state.active) return false; // live again meanwhile
    const schema = this.schema();
    let frame;
    try {
      frame = schema && decodeFrame(buffer, schema.widths);
    } catch (error) {
      return this.#fail(`a malformed replay frame: ${error.message}`);
    }
    if (!frame || frame.schema !== schema.schema) return this.#fail('waiting for the stream\'s current schema');
    if (!frame.replay) return this.#fail('not a replay frame');
    this.apply(frame, schema);
    this.state.instant = frame.time;
    this.state.frames += 1;
    this.state.error = null;
    this.#render();
    return true;
  }

  #fail(message) {
    this.state.error = message;
    this.state.playing = false;
    this.clock = null;
    this.wanted = this.state.instant ?? this.wanted; // a failed play stops where the page is
    this.#render();
    return false;
  }

  /** Bar and badge from the state. */
  #render() {
    const { available, active, playing, instant, start, end, error, speed } = this.state;
    this.bar.hidden = !available;
    this.bar.classList.toggle('active', active);
    const empty = start === null;
    this.slider.disabled = empty;
    if (!empty) {
      this.slider.min = String(start);
      this.slider.max = String(end);
      const position = !active ? end : playing ? instant : this.wanted ?? instant;
      if (!this.dragging) this.slider.value = String(position ?? end);
    }
    const shown = active ? instant ?? this.wanted : null;
    this.label.textContent = empty ? 'no history yet' : shown === null ? 'live' : formatInstant(shown);
    this.label.classList.toggle('error', Boolean(error));
    this.bar.title = error ?? '';
    this.playButton.disabled = !active;
    this.playButton.textContent = playing ? '❚❚' : '▶';
    this.playButton.title = playing ? 'Pause' : 'Play from this instant';
    this.speedSelect.value = String(speed);
    this.liveButton.disabled = !active;
    this.badge.hidden = !active;
    this.badge.textContent = shown === null ? 'replay' : `replay ${formatInstant(shown)}`;
  }
}
