// Entry point: wires the 3D view, the prim tree, the inspector and the live stream together,
// and exposes `window.twin` for end-to-end tests and debugging.
import './style.css';
import { authHeaders, withToken } from './auth.js';
import { SignalHistory } from './history.js';
import { Inspector } from './inspector.js';
import { IoPanel } from './io_panel.js';
import { PlantStatus } from './plant_status.js';
import { QUALITIES } from './protocol.js';
import { Replay } from './replay.js';
import './site.js';
import { Stream } from './stream.js';
import { PrimTree } from './tree.js';
import { RENDER_QUALITY_SETTINGS, Viewer } from './viewer.js';
import { WhatIfPanel } from './whatif.js';

/** Clicking any part of these selects the whole object (a robot, not one of its links). */
const SELECTABLE_KINDS = new Set(['robot', 'conveyor', 'station', 'sensor', 'source', 'sink']);

const $ = (id) => document.getElementById(id);
const statusElement = $('status');
const rateElement = $('frame-rate');
const partsElement = $('parts-count');
const overlay = $('overlay');

const signals = new Map(); // signal key -> latest {v, q, s, t}
const kinds = new Map(); // prim path -> twin:kind, from /api/scene
let glbLoaded = false;
let selected = null;

const qualityElement = $('quality');
const qualityHistory = []; // {level, setting, frameMs}: each render quality taken, the first one included, and each
// probe's verdict with probe: the level tried (kept if it is level), frameMs: its frame time
const viewer = new Viewer($('canvas'), {
  onPick: (object) => select(object && pickTarget(object)),
  quality: qualitySetting(),
  onQuality: showQuality,
});
const tree = new PrimTree($('tree'), $('tree-search'), {
  onSelect: select,
  onFocus: (path) => {
    select(path);
    viewer.focusSelection();
  },
});
/** Sparklines for numeric scalars only (arrays and text have none). */
const plottable = (key) => {
  const signal = signals.get(key);
  return signal !== undefined && signal.k !== 'text' && !Array.isArray(signal.v);
};
const history = new SignalHistory({ plottable });
const inspector = new Inspector($('inspector-body'), signals, { onSelect: select, history });
const plant = new PlantStatus(viewer, { alarmButton: $('alarms'), alarmPanel: $('alarm-panel'), onSelect: select });
let playingBack = false; // a what-if playback owns the parts while it runs
const whatif = new WhatIfPanel($('whatif'), $('whatif-toggle'), viewer, {
  onPlayback: (active) => {
    playingBack = active;
    $('mode').hidden = !active;
    viewer.showLampLayer('live', !active);
    if (!active) viewer.setPartPoses(lastParts?.count ?? 0, lastParts?.positions, lastParts?.quaternions);
  },
});
let lastParts = null;
let newestFrameTime = null; // server time (Unix s) of the newest live frame applied
// Replay owns the page while active: live frames only feed the sparklines' rings, and the page resyncs
// the stream (a fresh snapshot) when it goes live again.
const replay = new Replay($('timebar'), $('replay-badge'), {
  schema: () => twin.stream?.schema ?? null,
  apply: (frame, schema) => {
    history.endAt(frame.time);
    applyFrame(frame, schema, true);
    showAlarmsAt(frame.time);
  },
  onMode: (active) => {
    $('viewport').classList.toggle('replaying', active);
    if (!active) {
      history.endAt(null);
      twin.stream?.resync();
      plant.setRuleAlarms(liveAlarms);
    }
  },
});
let liveAlarms = []; // the server's open alarms now (its stream's last `alarms` message)
let alarmsAsked = null; // the replayed instant whose alarm list is being fetched

/** During a replay, the alarm list as it was at the instant (one request at a time, latest wins). */
async function showAlarmsAt(instant) {
  if (alarmsAsked !== null) {
    alarmsAsked = instant;
    return;
  }
  alarmsAsked = instant;
  while (alarmsAsked !== null) {
    const asked = alarmsAsked;
    try {
      const response = await fetch(`api/alarms/at?t=${asked}`, { headers: authHeaders() });
      if (response.ok && replay.state.active) plant.setRuleAlarms((await response.json()).alarms, { past: true });
    } catch {
      // the stream's indicator says when the server is away
    }
    if (alarmsAsked === asked) alarmsAsked = null;
  }
}

const twin = {
  ready: false, // true once the GLB is loaded and the first snapshot applied
  frames: 0, // stream frames taken (applied, or during a replay recorded for the sparklines)
  frameAge: () => (newestFrameTime === null ? null : Date.now() / 1000 - newestFrameTime), // s, of what the page shows
  objects: viewer.objects,
  signals,
  worldMatrix: (path) => viewer.worldMatrix(path),
  select,
  whatif: whatif.state,
  history,
  statusHistory: [], // connection states in order: connecting, live, stale, reconnecting...
  partsApplyHistory: [], // main-thread ms to apply each frame's parts (decode excluded), the last 600
  renderedFrames: () => viewer.renderedFrames,
  quality: () => viewer.quality, // {setting: 'auto' or pinned, level: 'low' | 'medium' | 'high', frameMs, probing, probe}
  qualityHistory,
  lamps: (layer = 'live') => viewer.lampStates(layer),
  alarms: () => [...plant.ruleAlarms, ...plant.alarms.values()],
  replay: replay.state, // active, playing, speed, instant (Unix s) the page shows, start/end of the history
};
window.twin = twin;

/** Select a prim by path in all views (null clears). */
function select(path) {
  selected = path || null;
  $('focus').disabled = selected === null;
  viewer.setSelection(selected);
  tree.setSelected(selected);
  inspector.show(selected);
}

/** The nearest ancestor that is a twin object of a selectable kind, else the clicked node. */
function pickTarget(object) {
  let clicked = null;
  for (let node = object; node; node = node.parent) {
    const path = node.userData.name;
    if (typeof path !== 'string' || !path.startsWith('/')) continue;
    clicked ??= path;
    if (SELECTABLE_KINDS.has(kinds.get(path))) return path;
  }
  return clicked;
}

/**
 * Each signal of a frame as the page keeps it: `visit(key, {v, q, s, t, u, k, l?}, time)`, where `time` is
 * the server time of the frame that carried the value (a merged frame keeps it per signal).
 */
function forEachSignal(frame, schema, visit) {
  const { signals: changed, text } = frame;
  let offset = 0;
  for (let i = 0; i < changed.rows.length; i++) {
    const row = changed.rows[i];
    const info = schema.signals[row];
    const width = info.width;
    let value;
    if (info.kind === 'text') value = text[row] ?? null;
    else if (width === 1) value = Number.isNaN(changed.values[offset]) ? null : changed.values[offset];
    else value = Array.from(changed.values.subarray(offset, offset + width), (x) => (Number.isNaN(x) ? null : x));
    offset += width;
    const age = changed.age[i];
    const time = changed.times ? changed.times[i] : frame.time;
    const signal = { v: value, q: QUALITIES[changed.quality[i]], s: changed.status[i],
      t: Number.isNaN(age) ? null : time - age, u: info.unit, k: info.kind };
    if (info.kind !== 'text' && text[row] !== undefined) signal.l = text[row];
    visit(info.key, signal, time);
  }
}

/** A live frame during a replay: the page shows the past, the sparklines' rings keep recording. */
function recordFrame(frame, schema) {
  history.advance(frame.time);
  forEachSignal(frame, schema, (key, signal, time) => history.record(key, time, signal.v));
  twin.frames += frame.frames;
}

/**
 * A binary frame (web/src/protocol.js): poses, signal values with quality, part instances. Live frames
 * come from the stream, replay frames (`replayed`, a past instant) from the time bar.
 */
function applyFrame(frame, schema, replayed = false) {
  const { transforms, instances } = frame;
  for (let i = 0; i < transforms.rows.length; i++) {
    viewer.applyPose(schema.transforms[transforms.rows[i]], transforms.positions, transforms.quaternions, i);
  }
  let panelChanged = false;
  if (!replayed) history.advance(frame.time);
  forEachSignal(frame, schema, (key, signal, time) => {
    signals.set(key, signal);
    if (inspector.update(key, signal)) panelChanged = true;
    plant.update(key, signal);
    if (!replayed) history.record(key, time, signal.v);
  });
  if (panelChanged) viewer.panelsUpdated();
  for (const set of instances) {
    if (schema.instances[set.set] !== 'parts') continue;
    lastParts = set;
    if (!playingBack) {
      const started = performance.now();
      viewer.setPartPoses(set.count, set.positions, set.quaternions);
      twin.partsApplyMs = performance.now() - started;
      twin.partsApplyHistory.push(twin.partsApplyMs);
      if (twin.partsApplyHistory.length > 600) twin.partsApplyHistory.shift();
    }
    partsElement.textContent = String(set.count);
  }
  if (!replayed) {
    twin.frames += frame.frames; // a live frame merges every stream frame since the last one applied
    newestFrameTime = frame.time;
  }
  if (frame.snapshot && glbLoaded) twin.ready = true;
}

/**
 * The render quality asked for: `?quality=` in the page's URL, else the one last chosen here, else 'auto'.
 * A value that is not a setting is reported and ignored.
 */
function qualitySetting() {
  const inUrl = new URLSearchParams(location.search).get('quality');
  const asked = inUrl ?? localStorage.getItem('twin.quality');
  if (asked === null || RENDER_QUALITY_SETTINGS.includes(asked)) return asked ?? 'auto';
  const where = inUrl === null ? "this browser's stored twin.quality" : "?quality= in the page's URL";
  console.warn(`${where} is '${asked}', not one of ${RENDER_QUALITY_SETTINGS.join(', ')}: using auto`);
  return 'auto';
}

/** The toolbar's quality menu shows the setting, and under 'auto' the level it settled on. */
function showQuality(level, setting, frameMs, probe) {
  qualityHistory.push(probe ? { level, setting, frameMs, probe } : { level, setting, frameMs });
  qualityElement.value = setting;
  qualityElement.options[0].textContent = setting === 'auto' ? `Auto (${level})` : 'Auto';
  qualityElement.title = `Render quality: ${level}${setting === 'auto' ? ', adapted to the frame time' : ', pinned'}`;
}

function setStatus(status) {
  if (twin.statusHistory.at(-1) !== status) twin.statusHistory.push(status);
  statusElement.textContent = status;
  statusElement.className = `status ${status}`;
}

async function loadTree() {
  try {
    const response = await fetch('api/scene', { headers: authHeaders() });
    if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
    const root = await response.json();
    const walk = (prim) => {
      if (prim.kind) kinds.set(prim.path, prim.kind);
      prim.children?.forEach(walk);
    };
    walk(root);
    tree.build(root);
    if (selected) tree.setSelected(selected);
  } catch (error) {
    $('tree').replaceChildren(Object.assign(document.createElement('p'), {
      className: 'muted', textContent: `Could not load the prim tree: ${error.message}`,
    }));
  }
}

function watchFrameRate() {
  let frames = twin.frames;
  let time = performance.now();
  setInterval(() => {
    const now = performance.now();
    rateElement.textContent = String(Math.round(((twin.frames - frames) * 1000) / (now - time)));
    frames = twin.frames;
    time = now;
  }, 1000);
}

function listenForKeys() {
  window.addEventListener('keydown', (event) => {
    if (event.target.closest('input, textarea') || event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.key === 'Escape') select(null);
    else if (event.key === 'f' || event.key === 'F') viewer.focusSelection();
    else if (event.key === 'Home') viewer.frameAll();
  });
  $('fit-all').addEventListener('click', () => viewer.frameAll());
  $('focus').addEventListener('click', () => viewer.focusSelection());
  qualityElement.addEventListener('change', () => {
    localStorage.setItem('twin.quality', qualityElement.value);
    viewer.setQuality(qualityElement.value);
  });
}

async function start() {
  listenForKeys();
  watchFrameRate();
  new IoPanel({ stats: document.querySelector('#topbar .stats'), toolbar: document.querySelector('#viewport .toolbar'),
    parent: $('viewport') }).start(); // commissioning mode only
  const treeLoaded = loadTree();
  try {
    await viewer.load('scene.glb');
    glbLoaded = true;
    await treeLoaded;
    plant.setKinds(kinds); // lamps need both the GLB's objects and the scene's kinds
    for (const [key, signal] of signals) plant.update(key, signal);
    overlay.hidden = true;
  } catch (error) {
    overlay.textContent = `Could not load the 3D scene: ${error.message}`;
    overlay.classList.add('error');
  }
  // Connect only once the GLB's nodes exist: deltas carry only what changed, so transforms
  // that arrived earlier would be lost for prims that then stand still.
  // relative to the page, as the other URLs: "/ws" on a line's server, "/lines/NAME/ws" through a site
  const socketUrl = new URL('ws', location.href).href.replace(/^http/, 'ws');
  twin.stream = new Stream(withToken(socketUrl), {
    onFrame: (frame, schema) => (replay.state.active ? recordFrame(frame, schema) : applyFrame(frame, schema)),
    onStatus: setStatus,
    onAlarms: (message) => {
      liveAlarms = message.alarms;
      if (!replay.state.active) plant.setRuleAlarms(liveAlarms);
    },
  });
  twin.stream.connect();
  await treeLoaded;
}

start();
