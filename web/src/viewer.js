// The 3D view: the factory GLB, live transforms, part instances, picking and highlight.
import { authHeaders } from './auth.js';
import * as THREE from 'three';
import { GLTFLoader } from 'three/addons/loaders/GLTFLoader.js';
import { OrbitControls } from 'three/addons/controls/OrbitControls.js';
import { RoomEnvironment } from 'three/addons/environments/RoomEnvironment.js';

const PART_SIZE = 0.2; // the backend's parts are 0.2 m cubes with their origin at the centre
const PART_CAPACITY = 256;
const CLICK_TOLERANCE_PX = 5; // a pointer that moved further was orbiting, not clicking
const HIGHLIGHT = new THREE.Color(0x3d8bfd);

/**
 * Render qualities, cheapest first. Each step down drops what costs most where the GPU is software
 * (SwiftShader or llvmpipe in a VDI session or a GPU-less thin client): shadow maps (a second pass over every
 * triangle), resolution and the image-based environment lighting, then detail: a software rasterizer's time
 * goes with the triangle count, and a robot's meshes alone can hold 60,000. `pixelRatio` scales the device
 * pixel ratio (itself capped at 2); `detail` false draws meshes over DETAILED_TRIANGLES simplified.
 */
export const RENDER_QUALITIES = [
  { name: 'low', pixelRatio: 0.4, shadows: false, environment: false, detail: false },
  { name: 'medium', pixelRatio: 0.75, shadows: false, environment: true, detail: true },
  { name: 'high', pixelRatio: 1, shadows: true, environment: true, detail: true },
];
const DETAILED_TRIANGLES = 2000;
const SIMPLIFY_CELLS = 16; // vertices merge within cells of 1/16 of a simplified mesh's largest extent
export const RENDER_QUALITY_SETTINGS = ['auto', ...RENDER_QUALITIES.map((quality) => quality.name)];
const FRAME_BUDGET_MS = 25; // a median frame over this (under 40 frames per second) steps quality down (docs/viewer.md)
const HEADROOM_MS = 20; // a median frame under this (about one 60 Hz vsync) may step it back up
const QUALITY_WINDOW_MS = 1000; // frame times are judged over windows of about a second
const MIN_WINDOW_FRAMES = 3; // at half a second a frame (high quality in software), a window takes 1.5 s
const HEADROOM_WINDOWS = 3; // this many windows in a row with headroom before stepping up
const RETRY_UP_MS = 10000; // after a step up proved too slow, wait this long (doubling) before trying again
// Frame times are measured only while the view renders continuously, so a level stepped down on an idle view (by
// the slow first frames of loading, say) would never be measured again: after this long without a render, auto
// below high probes the level above instead (#mayProbe).
const PROBE_IDLE_MS = 2000;
const PROBE_FRAMES = 2; // a probe renders this many frames: the first compiles the level's shaders, the last is timed
// A frame that rendered and took longer than this (more than one 60 Hz vsync) held the page: the graphics are slow
// (software WebGL waits for the whole render before the page can paint), so rendering is rationed (#frame).
const SLOW_RENDER_MS = 20;
const MAX_REST_MS = 100; // the pause after a slow render: a few vsyncs let the page apply and paint what came

/**
 * Write a rigid transform (position i of `positions`, int16 quaternion i of `quaternions`) as a
 * column-major 4x4 matrix into `out` at `o`: no objects, no allocation.
 */
function writePose(out, o, positions, quaternions, i) {
  let x = quaternions[4 * i];
  let y = quaternions[4 * i + 1];
  let z = quaternions[4 * i + 2];
  let w = quaternions[4 * i + 3];
  const norm = Math.hypot(x, y, z, w) || 1;
  x /= norm;
  y /= norm;
  z /= norm;
  w /= norm;
  const xx = x * x, yy = y * y, zz = z * z, xy = x * y, xz = x * z, yz = y * z, wx = w * x, wy = w * y, wz = w * z;
  out[o] = 1 - 2 * (yy + zz);
  out[o + 1] = 2 * (xy + wz);
  out[o + 2] = 2 * (xz - wy);
  out[o + 3] = 0;
  out[o + 4] = 2 * (xy - wz);
  out[o + 5] = 1 - 2 * (xx + zz);
  out[o + 6] = 2 * (yz + wx);
  out[o + 7] = 0;
  out[o + 8] = 2 * (xz + wy);
  out[o + 9] = 2 * (yz - wx);
  out[o + 10] = 1 - 2 * (xx + yy);
  out[o + 11] = 0;
  out[o + 12] = positions[3 * i];
  out[o + 13] = positions[3 * i + 1];
  out[o + 14] = positions[3 * i + 2];
  out[o + 15] = 1;
}

/**
 * A coarser copy of a mesh's geometry by vertex clustering: vertices in the same grid cell merge (each keeps
 * the attributes, colour included, of its first vertex), triangles that collapse are dropped, normals are
 * recomputed. Linear in the vertex count, so it can run in the page.
 */
function simplifiedGeometry(geometry) {
  const position = geometry.attributes.position;
  geometry.computeBoundingBox();
  const { min, max } = geometry.boundingBox;
  const cell = Math.max(max.x - min.x, max.y - min.y, max.z - min.z) / SIMPLIFY_CELLS || 1;
  const span = SIMPLIFY_CELLS + 1;
  const clusters = new Map(); // cell number -> merged vertex
  const merged = new Uint32Array(position.count);
  const firsts = []; // merged vertex -> the original vertex it keeps the attributes of
  for (let i = 0; i < position.count; i++) {
    const key = Math.floor((position.getX(i) - min.x) / cell) + span * (Math.floor((position.getY(i) - min.y) / cell)
      + span * Math.floor((position.getZ(i) - min.z) / cell));
    let vertex = clusters.get(key);
    if (vertex === undefined) {
      vertex = firsts.length;
      clusters.set(key, vertex);
      firsts.push(i);
    }
    merged[i] = vertex;
  }
  const corners = geometry.index ? geometry.index.array : Array.from({ length: position.count }, (_, i) => i);
  const indices = [];
  for (let t = 0; t + 2 < corners.length; t += 3) {
    const a = merged[corners[t]], b = merged[corners[t + 1]], c = merged[corners[t + 2]];
    if (a !== b && b !== c && a !== c) indices.push(a, b, c);
  }
  const simplified = new THREE.BufferGeometry();
  for (const [name, attribute] of Object.entries(geometry.attributes)) {
    if (name === 'normal') continue;
    const { itemSize } = attribute;
    const values = new attribute.array.constructor(firsts.length * itemSize);
    firsts.forEach((original, vertex) => {
      for (let k = 0; k < itemSize; k++) values[vertex * itemSize + k] = attribute.getComponent(original, k);
    });
    simplified.setAttribute(name, new THREE.BufferAttribute(values, itemSize, attribute.normalized));
  }
  simplified.setIndex(indices);
  simplified.computeVertexNormals();
  return simplified;
}

/** Whether WebGL here rasterizes on the CPU (SwiftShader, llvmpipe...), as in a VDI session or a GPU-less client. */
function isSoftwareRenderer() {
  const gl = document.createElement('canvas').getContext('webgl2');
  if (!gl) return true;
  const info = gl.getExtension('WEBGL_debug_renderer_info');
  const name = info ? gl.getParameter(info.UNMASKED_RENDERER_WEBGL) : gl.getParameter(gl.RENDERER);
  gl.getExtension('WEBGL_lose_context')?.loseContext();
  return /swiftshader|llvmpipe|softpipe|software|basic render/i.test(String(name));
}

export class Viewer {
  #point = [0, 0, 0];

  /**
   * `onPick(object)` gets the clicked Object3D, or null for a click on empty space; `quality` is 'auto'
   * (adapt to the measured frame time) or a RENDER_QUALITIES name to pin; `onQuality(level, setting,
   * frameMs, probe)` hears of every change (frameMs: the median frame time that led to it, if any) and of every
   * probe's verdict (probe: the level tried; frameMs: its frame time; level: the one kept).
   */
  constructor(canvas, { onPick, quality = 'auto', onQuality = () => {} }) {
    this.canvas = canvas;
    this.onPick = onPick;
    this.onQuality = onQuality;
    /** prim path -> Object3D, for every GLB node (nodes are named by their prim path). */
    this.objects = new Map();
    this.needsRender = true;
    this.renderedFrames = 0; // frames actually drawn (rendering happens only when something changed)
    this.frameTimes = []; // ms between consecutive rendered animation frames, this quality window
    this.frameTimeMedian = null; // of the last full window
    this.windowStart = 0;
    this.renderedLastFrame = false;
    this.lastFrame = 0;
    this.slowRenderMs = 0; // how long the last render held the page, if over SLOW_RENDER_MS (else 0)
    this.noRenderUntil = 0; // after a slow render, no WebGL before this animation-frame time
    this.panelsChanged = false; // values shown in the page's panels changed since the last animation frame
    this.deferredLastFrame = false; // the last animation frame left WebGL out for changed panels
    this.headroomWindows = 0;
    this.retryUpMs = RETRY_UP_MS;
    this.noStepUpUntil = 0;
    this.steppedUpAt = null; // when auto last stepped up: a slow window right after undoes it
    this.lastRenderAt = 0; // animation-frame time of the last render
    this.probing = null; // {from, to, frames}: while auto tries the level above on an idle view
    this.lastProbe = null; // {level, frameMs, kept}: the last probe's verdict
    this.detailed = new Map(); // mesh -> [full geometry, simplified], for meshes over DETAILED_TRIANGLES

    // Antialiasing is fixed with the WebGL context: off where the rasterizer is software or quality is pinned low.
    const software = isSoftwareRenderer();
    const renderer = new THREE.WebGLRenderer({ canvas, antialias: !software && quality !== 'low' });
    renderer.toneMapping = THREE.ACESFilmicToneMapping;
    renderer.shadowMap.type = THREE.PCFShadowMap;
    this.renderer = renderer;

    const scene = new THREE.Scene();
    scene.background = new THREE.Color(0x1a1e25);
    const pmrem = new THREE.PMREMGenerator(renderer);
    this.environment = pmrem.fromScene(new RoomEnvironment(), 0.04).texture;
    scene.environmentIntensity = 0.45;
    pmrem.dispose();
    scene.add(new THREE.HemisphereLight(0xe6eefc, 0x30343c, 1.2));
    this.sun = new THREE.DirectionalLight(0xffffff, 2.2);
    this.sun.castShadow = true;
    this.sun.shadow.mapSize.set(2048, 2048);
    this.sun.shadow.radius = 3;
    this.sun.shadow.bias = -0.0005;
    scene.add(this.sun, this.sun.target);
    this.scene = scene;

    // The GLB is Y-up like three.js; its top node 'stage-frame' turns the stage's axes (USD: Z-up)
    // into it, so stream matrices of prims (local to their parent) apply unchanged. Part poses are
    // world poses in the stage frame: they live in `stageFrame`, given that node's transform on load.
    this.root = new THREE.Group();
    this.root.name = 'usd-root';
    scene.add(this.root);
    this.stageFrame = new THREE.Group();
    this.stageFrame.name = 'usd-stage-frame';
    this.stageFrame.rotation.x = -Math.PI / 2;
    this.root.add(this.stageFrame);

    this.camera = new THREE.PerspectiveCamera(40, 1, 0.05, 2000);
    this.camera.position.set(8, 8, 12);
    this.controls = new OrbitControls(this.camera, canvas);
    this.controls.enableDamping = true;
    this.controls.dampingFactor = 0.12;
    this.controls.screenSpacePanning = true;
    this.controls.addEventListener('change', () => this.requestRender());

    this.parts = this.#createParts(PART_CAPACITY);
    this.lampLayers = new Map(); // layer name -> (prim path -> state lamp mesh)
    this.hiddenLayers = new Set();
    this.badgeMaterials = new Map();
    this.lampGeometry = new THREE.SphereGeometry(0.14, 16, 12);
    this.selection = null;
    this.selectionBox = new THREE.Box3();
    this.selectionHelper = new THREE.Box3Helper(this.selectionBox, HIGHLIGHT);
    this.selectionHelper.visible = false;
    scene.add(this.selectionHelper);
    this.highlighted = []; // [mesh, original material] pairs to restore on deselect
    this.highlightMaterials = new WeakMap(); // original material -> its tinted clone

    this.raycaster = new THREE.Raycaster();
    this.pointer = new THREE.Vector2();
    this.#listenForClicks();
    new ResizeObserver(() => this.#resize()).observe(canvas.parentElement);
    this.setQuality(quality); // auto starts high: the first seconds' frame times find the level that keeps up
    renderer.setAnimationLoop((time) => this.#frame(time));
  }

  /** 'auto' (adapted to the measured frame time) or a RENDER_QUALITIES name, pinned; anything else is an error. */
  setQuality(setting) {
    if (!RENDER_QUALITY_SETTINGS.includes(setting)) {
      throw new Error(`render quality '${setting}' is not one of ${RENDER_QUALITY_SETTINGS.join(', ')}`);
    }
    this.qualitySetting = setting;
    this.probing = null;
    this.noStepUpUntil = 0;
    this.retryUpMs = RETRY_UP_MS;
    this.#applyQuality(setting === 'auto' ? (this.level ?? 'high') : setting);
  }

  /**
   * The quality drawn now: {setting ('auto' or pinned), level (a RENDER_QUALITIES name), frameMs (median),
   * probing (a probe's level is drawn), probe (the last probe's {level, frameMs, kept}, or null)}.
   */
  get quality() {
    return { setting: this.qualitySetting, level: this.level, frameMs: this.frameTimeMedian,
      probing: this.probing !== null, probe: this.lastProbe };
  }

  /** Load the GLB, index its nodes by prim path, and frame it. */
  async load(url) {
    const gltf = await new GLTFLoader().setRequestHeader(authHeaders()).loadAsync(url);
    gltf.scene.traverse((object) => {
      const path = object.userData.name;
      if (typeof path === 'string' && path.startsWith('/')) this.objects.set(path, object);
      if (object.isMesh) {
        object.castShadow = true;
        object.receiveShadow = true;
      }
    });
    this.model = gltf.scene;
    const frame = gltf.scene.getObjectByName('stage-frame');
    if (frame) frame.matrix.decompose(this.stageFrame.position, this.stageFrame.quaternion, this.stageFrame.scale);
    this.root.add(gltf.scene);
    this.root.updateMatrixWorld(true);
    this.#addFloor();
    this.#setDetail(RENDER_QUALITIES.find((quality) => quality.name === this.level).detail);
    this.frameAll();
  }

  /** A stream pose (position float32 x3, quaternion int16 x4) of a prim, relative to its parent. */
  applyPose(path, positions, quaternions, i) {
    const object = this.objects.get(path);
    if (!object) return;
    writePose(object.matrix.elements, 0, positions, quaternions, i);
    object.matrixAutoUpdate = false;
    object.matrixWorldNeedsUpdate = true;
    this.needsRender = true;
  }

  /** The `parts` instance set: `count` world poses in the USD (Z-up) frame, written in place. */
  setPartPoses(count, positions, quaternions) {
    this.#ensurePartCapacity(count);
    const array = this.parts.instanceMatrix.array;
    for (let i = 0; i < count; i++) writePose(array, 16 * i, positions, quaternions, i);
    this.parts.count = count;
    this.parts.instanceMatrix.needsUpdate = true;
    this.needsRender = true;
  }

  #ensurePartCapacity(count) {
    if (count <= this.parts.instanceMatrix.count) return;
    let capacity = this.parts.instanceMatrix.count;
    while (capacity < count) capacity *= 2;
    this.stageFrame.remove(this.parts);
    this.parts.dispose();
    this.parts = this.#createParts(capacity);
  }

  /**
   * Parts given by position only (a what-if playback): `fill(i, out)` writes part i's x, y, z (USD
   * frame) into `out`. Writes the instance buffer in place, like `setPartPoses`.
   */
  setPartPositions(count, fill) {
    this.#ensurePartCapacity(count);
    const array = this.parts.instanceMatrix.array;
    const point = this.#point;
    for (let i = 0; i < count; i++) {
      fill(i, point);
      const o = 16 * i;
      array.fill(0, o, o + 16);
      array[o] = array[o + 5] = array[o + 10] = array[o + 15] = 1;
      array[o + 12] = point[0];
      array[o + 13] = point[1];
      array[o + 14] = point[2];
    }
    this.parts.count = count;
    this.parts.instanceMatrix.needsUpdate = true;
    this.needsRender = true;
  }

  /**
   * A state lamp above each of `paths`, in a named layer ('live' machine states, 'playback' of a
   * what-if); [] removes the layer's lamps.
   */
  setStateLamps(layer, paths) {
    const lamps = this.lampLayers.get(layer) ?? new Map();
    for (const lamp of lamps.values()) {
      this.scene.remove(lamp);
      lamp.material.dispose();
    }
    lamps.clear();
    this.lampLayers.set(layer, lamps);
    this.#updateWorld();
    for (const path of paths) {
      const object = this.objects.get(path);
      if (!object) continue;
      const box = new THREE.Box3().setFromObject(object);
      const lamp = new THREE.Mesh(this.lampGeometry, new THREE.MeshBasicMaterial({ color: 0x8590a2 }));
      lamp.position.set((box.min.x + box.max.x) / 2, box.max.y + 0.35, (box.min.z + box.max.z) / 2);
      lamp.name = `state-lamp ${path}`;
      lamp.visible = false;
      lamp.userData = { color: null, badge: null };
      lamps.set(path, lamp);
      this.scene.add(lamp);
    }
    this.requestRender();
  }

  /** Colour one lamp (null hides it); `badge` ('stale', 'bad', ...) floats above it when given. */
  setStateLamp(layer, path, color, badge = null) {
    const lamp = this.lampLayers.get(layer)?.get(path);
    if (!lamp || (lamp.userData.color === color && lamp.userData.badge === badge)) return;
    lamp.userData.color = color;
    lamp.userData.badge = badge;
    lamp.visible = color !== null && !this.hiddenLayers.has(layer);
    if (color !== null) lamp.material.color.set(color);
    const old = lamp.getObjectByName('badge');
    if (old) lamp.remove(old);
    if (badge) lamp.add(this.#badge(badge));
    this.needsRender = true;
  }

  /** [{path, color, badge, visible}] of a lamp layer, for tests and debugging. */
  lampStates(layer) {
    return [...(this.lampLayers.get(layer)?.entries() ?? [])].map(([path, lamp]) => ({
      path, color: lamp.userData.color, badge: lamp.userData.badge, visible: lamp.visible,
    }));
  }

  showLampLayer(layer, visible) {
    if (visible) this.hiddenLayers.delete(layer);
    else this.hiddenLayers.add(layer);
    for (const lamp of this.lampLayers.get(layer)?.values() ?? []) {
      lamp.visible = visible && lamp.userData.color !== null;
    }
    this.requestRender();
  }

  /** A text sprite ("stale", "bad"), one shared texture per word. */
  #badge(text) {
    let material = this.badgeMaterials.get(text);
    if (!material) {
      const canvas = document.createElement('canvas');
      canvas.width = 128;
      canvas.height = 40;
      const context = canvas.getContext('2d');
      context.fillStyle = '#2a2f38';
      context.fillRect(0, 0, 128, 40);
      context.strokeStyle = '#f0a030';
      context.lineWidth = 4;
      context.strokeRect(2, 2, 124, 36);
      context.fillStyle = '#f0a030';
      context.font = 'bold 24px system-ui, sans-serif';
      context.textAlign = 'center';
      context.textBaseline = 'middle';
      context.fillText(text.toUpperCase(), 64, 21);
      material = new THREE.SpriteMaterial({ map: new THREE.CanvasTexture(canvas), depthTest: false });
      this.badgeMaterials.set(text, material);
    }
    const sprite = new THREE.Sprite(material);
    sprite.name = 'badge';
    sprite.scale.set(0.64, 0.2, 1);
    sprite.position.set(0, 0.32, 0);
    sprite.renderOrder = 10;
    return sprite;
  }

  /** Highlight the object of a prim path (null clears). */
  setSelection(path) {
    for (const [mesh, material] of this.highlighted) mesh.material = material;
    this.highlighted.length = 0;
    this.selection = (path && this.objects.get(path)) || null;
    this.selectionHelper.visible = this.selection !== null;
    this.selection?.traverse((object) => {
      if (!object.isMesh) return;
      this.highlighted.push([object, object.material]);
      object.material = Array.isArray(object.material)
        ? object.material.map((material) => this.#tinted(material))
        : this.#tinted(object.material);
    });
    this.requestRender();
  }

  /** The object's world matrix (three.js Y-up world) as 16 numbers, or null if unknown. */
  worldMatrix(path) {
    const object = this.objects.get(path);
    if (!object) return null;
    this.#updateWorld();
    return Array.from(object.matrixWorld.elements);
  }

  frameAll() {
    this.#updateWorld();
    if (this.model) this.#frameBox(new THREE.Box3().setFromObject(this.model), new THREE.Vector3(0.2, 0.42, 1), 0.9);
  }

  focusSelection() {
    if (!this.selection) return;
    this.#updateWorld();
    const box = new THREE.Box3().setFromObject(this.selection);
    // A wide margin: the surroundings give context, and a moving robot stays in view.
    if (!box.isEmpty()) this.#frameBox(box, this.camera.position.clone().sub(this.controls.target), 1.6);
  }

  requestRender() {
    this.needsRender = true;
  }

  #frame(time) {
    this.controls.update(); // applies damping; fires 'change' while the view still moves
    // Frame time: from an animation frame that rendered to the next one (an idle gap says nothing).
    const frameMs = this.renderedLastFrame ? time - this.lastFrame : null;
    this.lastFrame = time;
    if (frameMs !== null) {
      if (this.probing) this.#judgeProbe(frameMs, time);
      else this.#measureFrame(frameMs, time);
      this.slowRenderMs = frameMs > SLOW_RENDER_MS ? frameMs : 0;
      this.noRenderUntil = time + Math.min(this.slowRenderMs, MAX_REST_MS);
    }
    if (!this.probing && this.#mayProbe(time)) this.#startProbe();
    if (this.probing) this.needsRender = true; // its frames render though nothing changed (rationed all the same)
    const mayRender = this.#mayRender(time);
    this.renderedLastFrame = this.needsRender && mayRender;
    if (!this.renderedLastFrame) return;
    this.needsRender = false;
    this.renderedFrames += 1;
    this.lastRenderAt = time;
    if (this.selection) {
      this.#updateWorld();
      this.selectionBox.setFromObject(this.selection); // robots move: follow the selection
    }
    this.renderer.render(this.scene, this.camera);
  }

  /** The page's panels show changed values: where renders are slow, paint them before the next render. */
  panelsUpdated() {
    this.panelsChanged = true;
  }

  /**
   * Where graphics are slow, a render holds the page (style, layout, paint, input, the stream's values) until
   * it is done. So after a render that took S > SLOW_RENDER_MS, the next S ms (at most MAX_REST_MS) draw no
   * WebGL (rendering takes at most half the page's time while renders are short enough to stay fluid; a
   * seconds-long render at high quality is not slowed down further, so auto steps down as fast), and a frame whose panels changed leaves WebGL out once, so that the
   * changed values are painted at once rather than after a render (never two frames in a row: the view still
   * moves). Where a render fits one vsync, every frame may render.
   */
  #mayRender(time) {
    const resting = time < this.noRenderUntil; // panels changed meanwhile are painted in these frames anyway
    const deferForPanels = !resting && this.panelsChanged && this.slowRenderMs > 0 && !this.deferredLastFrame;
    this.panelsChanged = false;
    this.deferredLastFrame = deferForPanels;
    return !resting && !deferForPanels;
  }

  /**
   * Keep the view fluid where graphics are slow: over each window of about a second, a median frame over
   * FRAME_BUDGET_MS steps quality down; HEADROOM_WINDOWS windows under HEADROOM_MS step it up again, and a
   * step up that proves too slow is undone and not tried again for a while (doubling), so it cannot oscillate.
   */
  #measureFrame(interval, now) {
    if (this.frameTimes.length === 0) this.windowStart = now;
    this.frameTimes.push(interval);
    if (now - this.windowStart < QUALITY_WINDOW_MS || this.frameTimes.length < MIN_WINDOW_FRAMES) return;
    const sorted = this.frameTimes.sort((a, b) => a - b);
    this.frameTimeMedian = sorted[sorted.length >> 1];
    this.frameTimes = [];
    if (this.qualitySetting !== 'auto') return;
    const index = RENDER_QUALITIES.findIndex((quality) => quality.name === this.level);
    if (this.frameTimeMedian > FRAME_BUDGET_MS) {
      this.headroomWindows = 0;
      if (this.steppedUpAt !== null && now - this.steppedUpAt < 3 * QUALITY_WINDOW_MS) {
        this.noStepUpUntil = now + this.retryUpMs;
        this.retryUpMs *= 2;
      }
      if (index > 0) this.#applyQuality(RENDER_QUALITIES[index - 1].name);
    } else if (this.frameTimeMedian < HEADROOM_MS && index < RENDER_QUALITIES.length - 1 && now >= this.noStepUpUntil) {
      if (++this.headroomWindows >= HEADROOM_WINDOWS) {
        this.#applyQuality(RENDER_QUALITIES[index + 1].name);
        this.steppedUpAt = now;
      }
    } else this.headroomWindows = 0;
  }

  /**
   * Auto below high on a view idle for PROBE_IDLE_MS (nothing measured, and none of the page's time in use) may
   * try the level above, unless a step up was undone lately: the same back-off (10 s, 20 s, 40 s...) spaces the
   * probes where they fail, so a software renderer is held by two renders at most every so often.
   */
  #mayProbe(time) {
    const index = RENDER_QUALITIES.findIndex((quality) => quality.name === this.level);
    return this.qualitySetting === 'auto' && this.model !== undefined && index < RENDER_QUALITIES.length - 1
      && !this.needsRender && time - this.lastRenderAt >= PROBE_IDLE_MS && time >= this.noStepUpUntil;
  }

  #startProbe() {
    const from = this.level;
    const to = RENDER_QUALITIES[RENDER_QUALITIES.findIndex((quality) => quality.name === from) + 1].name;
    this.probing = { from, to, frames: [] };
    this.#applyQuality(to, null);
  }

  /**
   * A probe's last frame (the first compiled shaders) decides, with the bar of a step up (HEADROOM_MS): kept, it
   * stands as a step up (a slow window right after undoes it); too slow, the level goes back and the back-off grows.
   */
  #judgeProbe(frameMs, now) {
    const { from, to, frames } = this.probing;
    frames.push(frameMs);
    if (frames.length < PROBE_FRAMES) return;
    this.probing = null;
    const kept = frameMs < HEADROOM_MS;
    this.lastProbe = { level: to, frameMs, kept };
    if (kept) {
      this.steppedUpAt = now;
      this.#report(to, { frameMs, probe: to });
    } else {
      this.noStepUpUntil = now + this.retryUpMs;
      this.retryUpMs *= 2;
      this.#applyQuality(from, { frameMs, probe: to });
    }
  }

  /**
   * Draw at the level `name`. `report`: {frameMs (what led here), probe (the level a probe tried, if one did)} for
   * onQuality, or null for a probe's trial level (its verdict is reported).
   */
  #applyQuality(name, report = { frameMs: this.frameTimeMedian }) {
    const quality = RENDER_QUALITIES.find((candidate) => candidate.name === name);
    const previous = RENDER_QUALITIES.find((candidate) => candidate.name === this.level);
    this.frameTimeMedian = null; // this level's frame time is measured anew
    this.level = name;
    this.headroomWindows = 0;
    this.steppedUpAt = null;
    this.frameTimes = [];
    this.renderer.setPixelRatio(Math.min(window.devicePixelRatio, 2) * quality.pixelRatio);
    this.renderer.shadowMap.enabled = quality.shadows;
    this.scene.environment = quality.environment ? this.environment : null;
    this.#setDetail(quality.detail);
    if (previous && previous.shadows !== quality.shadows) {
      this.scene.traverse((object) => {
        if (object.material) object.material.needsUpdate = true; // shaders with or without shadow lookups
      });
    }
    this.#resize();
    if (report) this.#report(name, report, previous === undefined);
  }

  #report(name, { frameMs, probe }, first = false) {
    const why = probe ? `a probe at ${probe} took ${frameMs} ms` : `frames took ${frameMs} ms`;
    if (!first) console.info(`viewer: render quality ${name} (${this.qualitySetting}; ${why})`);
    this.onQuality(name, this.qualitySetting, frameMs, probe);
  }

  /** Full or simplified geometry for the model's detailed meshes (simplified once, when first asked for). */
  #setDetail(full) {
    if (!this.model) return;
    if (!full && this.detailed.size === 0) {
      this.model.traverse((object) => {
        const { geometry, material } = object;
        // Not meshes of several materials (index ranges per material) or deformed ones (skins, morphs).
        const deformed = object.isSkinnedMesh || geometry?.morphAttributes.position;
        if (!object.isMesh || Array.isArray(material) || deformed) return;
        const triangles = (geometry.index ?? geometry.attributes.position).count / 3;
        if (triangles > DETAILED_TRIANGLES) this.detailed.set(object, [geometry, simplifiedGeometry(geometry)]);
      });
    }
    for (const [mesh, [detailed, simplified]] of this.detailed) mesh.geometry = full ? detailed : simplified;
  }

  /**
   * Bring every matrixWorld up to date from the scene root. Updating one object alone (as
   * Box3.setFromObject and updateWorldMatrix do) clears its needs-update flag without
   * updating its children, so the next render would leave a moved link's meshes behind.
   */
  #updateWorld() {
    this.scene.updateMatrixWorld();
  }

  /** Place the camera along `direction` from the box centre, `margin` times as far as needed to see it. */
  #frameBox(box, direction, margin) {
    const center = box.getCenter(new THREE.Vector3());
    const camera = this.camera;
    camera.position.copy(center).add(direction.normalize());
    camera.lookAt(center);
    const toCamera = camera.quaternion.clone().invert();
    const tanY = Math.tan(THREE.MathUtils.degToRad(camera.fov / 2));
    const tanX = tanY * camera.aspect;
    const corner = new THREE.Vector3();
    let distance = 0.5;
    for (let i = 0; i < 8; i++) {
      corner.set(i & 1 ? box.max.x : box.min.x, i & 2 ? box.max.y : box.min.y, i & 4 ? box.max.z : box.min.z);
      corner.sub(center).applyQuaternion(toCamera); // camera axes: x right, y up, +z towards the camera
      distance = Math.max(distance, Math.abs(corner.x) / tanX + corner.z, Math.abs(corner.y) / tanY + corner.z);
    }
    distance *= margin;
    this.controls.target.copy(center);
    camera.position.copy(center).addScaledVector(direction, distance);
    camera.near = Math.max(distance / 200, 0.005); // close enough for a gripper, far stays 2 km
    camera.updateProjectionMatrix();
    this.controls.update();
    this.requestRender();
  }

  /** A floor grid and a shadow catcher (shadows only, so it has no visible edge) sized to the scene. */
  #addFloor() {
    const box = new THREE.Box3().setFromObject(this.model);
    const center = box.getCenter(new THREE.Vector3());
    const size = box.getSize(new THREE.Vector3());
    const extent = Math.ceil(Math.max(size.x, size.z, 4) / 2 + 2) * 2; // whole metres, a margin around
    const grid = new THREE.GridHelper(extent, extent, 0x3d4451, 0x292e37);
    grid.position.set(Math.round(center.x), 0.001, Math.round(center.z));
    const floor = new THREE.Mesh(
      new THREE.PlaneGeometry(extent * 4, extent * 4),
      new THREE.ShadowMaterial({ opacity: 0.35 }),
    );
    floor.rotation.x = -Math.PI / 2;
    floor.position.copy(grid.position).setY(0);
    floor.receiveShadow = true;
    this.scene.add(floor, grid);

    const reach = Math.max(size.x, size.y, size.z) * 0.75 + 2;
    this.sun.position.copy(center).add(new THREE.Vector3(0.4, 1, 0.6).multiplyScalar(reach * 1.5));
    this.sun.target.position.copy(center);
    Object.assign(this.sun.shadow.camera, { left: -reach, right: reach, top: reach, bottom: -reach,
      near: 0.1, far: reach * 4 });
    this.sun.shadow.camera.updateProjectionMatrix();
  }

  #createParts(capacity) {
    const parts = new THREE.InstancedMesh(
      new THREE.BoxGeometry(PART_SIZE, PART_SIZE, PART_SIZE),
      new THREE.MeshStandardMaterial({ color: 0x2dd4bf, roughness: 0.45, metalness: 0.1 }),
      capacity,
    );
    parts.name = 'parts';
    parts.count = 0;
    parts.castShadow = true;
    parts.receiveShadow = true;
    parts.frustumCulled = false; // instances move every frame; a cached bounding sphere would go stale
    parts.instanceMatrix.setUsage(THREE.DynamicDrawUsage);
    this.stageFrame.add(parts);
    return parts;
  }

  /** Materials may be shared between prims, so selection brightens a per-material clone. */
  #tinted(material) {
    let tinted = this.highlightMaterials.get(material);
    if (!tinted) {
      tinted = material.clone();
      if (tinted.emissive) {
        // A glow in the material's own colour: an added hue would turn orange robots pink.
        tinted.emissive.copy(tinted.color ?? HIGHLIGHT);
        tinted.emissiveIntensity = 0.25;
      }
      this.highlightMaterials.set(material, tinted);
    }
    return tinted;
  }

  #listenForClicks() {
    let down = null;
    this.canvas.addEventListener('pointerdown', (event) => {
      down = event.button === 0 ? { x: event.clientX, y: event.clientY } : null;
    });
    this.canvas.addEventListener('pointerup', (event) => {
      if (!down || Math.hypot(event.clientX - down.x, event.clientY - down.y) > CLICK_TOLERANCE_PX) return;
      down = null;
      this.onPick(this.#pick(event));
    });
  }

  /** The GLB object under the pointer (parts and helpers are not pickable). */
  #pick(event) {
    if (!this.model) return null;
    const rect = this.canvas.getBoundingClientRect();
    this.pointer.set(((event.clientX - rect.left) / rect.width) * 2 - 1,
      -((event.clientY - rect.top) / rect.height) * 2 + 1);
    this.raycaster.setFromCamera(this.pointer, this.camera);
    const hit = this.raycaster.intersectObject(this.model, true).find((h) => h.object.visible);
    return hit ? hit.object : null;
  }

  #resize() {
    const { clientWidth: width, clientHeight: height } = this.canvas.parentElement;
    if (width === 0 || height === 0) return;
    this.renderer.setSize(width, height, false);
    this.camera.aspect = width / height;
    this.camera.updateProjectionMatrix();
    this.requestRender();
  }
}
