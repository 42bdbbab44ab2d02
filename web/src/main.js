// Entry point: wires the 3D view, the prim tree, the inspector and the live stream together,
// and exposes `window.twin` for end-to-end tests and debugging.
import './style.css';
import { authHeaders, withToken } from './auth.js';
import { Inspector } from './inspector.js';
import { Stream } from './stream.js';
import { PrimTree } from './tree.js';
import { Viewer } from './viewer.js';
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

const viewer = new Viewer($('canvas'), { onPick: (object) => select(object && pickTarget(object)) });
const tree = new PrimTree($('tree'), $('tree-search'), {
  onSelect: select,
  onFocus: (path) => {
    select(path);
    viewer.focusSelection();
  },
});
const inspector = new Inspector($('inspector-body'), signals, { onSelect: select });
let playingBack = false; // a what-if playback owns the parts while it runs
const whatif = new WhatIfPanel($('whatif'), $('whatif-toggle'), viewer, {
  onPlayback: (active) => {
    playingBack = active;
    $('mode').hidden = !active;
    if (!active) viewer.setParts(lastParts?.count ?? 0, lastParts?.matrices ?? []); // live parts again
  },
});
let lastParts = null;

const twin = {
  ready: false, // true once the GLB is loaded and the first snapshot applied
  frames: 0, // stream messages applied
  objects: viewer.objects,
  signals,
  worldMatrix: (path) => viewer.worldMatrix(path),
  select,
  whatif: whatif.state,
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

function applyFrame(message) {
  if (message.type === 'error') {
    console.warn('stream error:', message.error);
    return;
  }
  if (message.type !== 'snapshot' && message.type !== 'delta') return;
  const { transforms, signals: changed, instances } = message;
  if (transforms) {
    for (const path in transforms) viewer.applyTransform(path, transforms[path]);
  }
  if (changed) {
    for (const key in changed) {
      signals.set(key, changed[key]);
      inspector.update(key, changed[key]);
    }
  }
  const parts = instances?.parts;
  if (parts) {
    lastParts = parts;
    if (!playingBack) viewer.setParts(parts.count, parts.matrices);
    partsElement.textContent = String(parts.count);
  }
  twin.frames += 1;
  if (message.type === 'snapshot' && glbLoaded) twin.ready = true;
}

function setStatus(status) {
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
}

async function start() {
  listenForKeys();
  watchFrameRate();
  const treeLoaded = loadTree();
  try {
    await viewer.load('scene.glb');
    glbLoaded = true;
    overlay.hidden = true;
  } catch (error) {
    overlay.textContent = `Could not load the 3D scene: ${error.message}`;
    overlay.classList.add('error');
  }
  // Connect only once the GLB's nodes exist: deltas carry only what changed, so transforms
  // that arrived earlier would be lost for prims that then stand still.
  const protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
  new Stream(withToken(`${protocol}//${location.host}/ws`), { onMessage: applyFrame, onStatus: setStatus }).connect();
  await treeLoaded;
}

start();
