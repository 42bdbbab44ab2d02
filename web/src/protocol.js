// Decoding of the stream's binary frames (docs/protocol.md, twin/protocol.py): typed-array views over
// the received buffer, no copies. A frame applies only on top of the version the page holds.
// MergedFrames coalesces consecutive frames into one, so a page that renders slowly applies the newest state
// once per render instead of every frame in turn.

const HEADER_BYTES = 52;
const MAGIC = 0x4e495754; // "TWIN" read as a little-endian u32
export const QUALITIES = ['good', 'uncertain', 'bad', 'stale'];
const QUATERNION_SCALE = 32767;
const PROTOCOL = 1;

const align8 = (offset) => offset + ((8 - (offset % 8)) % 8);

/**
 * The frame's sections as views: transforms {rows, positions, quaternions}, signals {rows, status,
 * quality, age, values}, instances [{set, count, positions, quaternions}], text {row: string}.
 */
export function decodeFrame(buffer, widths) {
  const view = new DataView(buffer);
  if (buffer.byteLength < HEADER_BYTES || view.getUint32(0, true) !== MAGIC) throw new Error('not a TWIN frame');
  if (view.getUint16(4, true) !== PROTOCOL) throw new Error(`protocol ${view.getUint16(4, true)}, not ${PROTOCOL}`);
  const header = {
    protocol: view.getUint16(4, true),
    snapshot: (view.getUint16(6, true) & 1) === 1,
    replay: (view.getUint16(6, true) & 2) === 2, // a past instant (GET /api/replay/frame), not live
    schema: view.getUint32(8, true),
    base: Number(view.getBigUint64(12, true)),
    version: Number(view.getBigUint64(20, true)),
    time: view.getFloat64(28, true),
  };
  const nTransforms = view.getUint32(36, true);
  const nSignals = view.getUint32(40, true);
  const nInstances = view.getUint32(44, true);
  const textBytes = view.getUint32(48, true);
  let offset = HEADER_BYTES;
  const take = (Type, count, align = true) => {
    const array = new Type(buffer, offset, count);
    offset += array.byteLength;
    if (align) offset = align8(offset);
    return array;
  };
  const poses = (count) => ({
    positions: take(Float32Array, count * 3),
    quaternions: take(Int16Array, count * 4),
  });
  const transforms = { rows: take(Uint32Array, nTransforms), ...poses(nTransforms) };
  const rows = take(Uint32Array, nSignals, false);
  const status = take(Uint32Array, nSignals, false);
  const quality = take(Uint8Array, nSignals);
  const age = take(Float32Array, nSignals);
  let valueCount = 0;
  for (let i = 0; i < nSignals; i++) valueCount += widths[rows[i]];
  const values = take(Float64Array, valueCount);
  const instances = [];
  for (let i = 0; i < nInstances; i++) {
    const set = view.getUint32(offset, true);
    const count = view.getUint32(offset + 4, true);
    offset += 8;
    instances.push({ set, count, ...poses(count) });
  }
  if (offset + textBytes !== buffer.byteLength) {
    throw new Error(`frame of ${buffer.byteLength} bytes, contents end at ${offset + textBytes}`);
  }
  const text = textBytes ? JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, offset, textBytes))) : {};
  return { ...header, transforms, signals: { rows, status, quality, age, values }, instances, text };
}

/**
 * Consecutive frames of one schema merged into one frame: the newest pose of each transform row and instance
 * set, the newest value of each signal row. `take()` returns it in decodeFrame's shape on fresh typed arrays
 * (transferable to another thread), with `frames` (how many were merged) and, per signal, `times` (server
 * time of the frame that carried the value: ages are relative to it) and `received` (when that frame
 * arrived, `clock()`), and starts empty again.
 */
export class MergedFrames {
  constructor() {
    this.#clear();
  }

  get empty() {
    return this.frames === 0;
  }

  /** Merge a decoded frame that follows the ones merged so far; `received` is when it arrived. */
  add(frame, widths, received) {
    if (this.frames === 0) this.base = frame.base;
    this.frames += 1;
    this.snapshot ||= frame.snapshot;
    Object.assign(this, { schema: frame.schema, version: frame.version, time: frame.time });
    const { transforms, signals, instances, text } = frame;
    for (let i = 0; i < transforms.rows.length; i++) {
      this.transforms.set(transforms.rows[i], [transforms.positions.slice(3 * i, 3 * i + 3),
        transforms.quaternions.slice(4 * i, 4 * i + 4)]);
    }
    let offset = 0;
    for (let i = 0; i < signals.rows.length; i++) {
      const row = signals.rows[i];
      const width = widths[row];
      this.signals.set(row, { status: signals.status[i], quality: signals.quality[i], age: signals.age[i],
        time: frame.time, received, values: signals.values.slice(offset, offset + width), text: text[row] });
      offset += width;
    }
    for (const set of instances) {
      this.instances.set(set.set, { set: set.set, count: set.count, positions: set.positions.slice(),
        quaternions: set.quaternions.slice() });
    }
  }

  /** The merged frame and the buffers to transfer with it; empties this. */
  take() {
    const nTransforms = this.transforms.size;
    const transforms = { rows: new Uint32Array(nTransforms), positions: new Float32Array(nTransforms * 3),
      quaternions: new Int16Array(nTransforms * 4) };
    let i = 0;
    for (const [row, [position, quaternion]] of this.transforms) {
      transforms.rows[i] = row;
      transforms.positions.set(position, 3 * i);
      transforms.quaternions.set(quaternion, 4 * i);
      i += 1;
    }
    const nSignals = this.signals.size;
    let valueCount = 0;
    for (const signal of this.signals.values()) valueCount += signal.values.length;
    const signals = { rows: new Uint32Array(nSignals), status: new Uint32Array(nSignals),
      quality: new Uint8Array(nSignals), age: new Float32Array(nSignals), times: new Float64Array(nSignals),
      received: new Float64Array(nSignals), values: new Float64Array(valueCount) };
    const text = {};
    let offset = 0;
    i = 0;
    for (const [row, signal] of this.signals) {
      signals.rows[i] = row;
      signals.status[i] = signal.status;
      signals.quality[i] = signal.quality;
      signals.age[i] = signal.age;
      signals.times[i] = signal.time;
      signals.received[i] = signal.received;
      signals.values.set(signal.values, offset);
      offset += signal.values.length;
      if (signal.text !== undefined) text[row] = signal.text;
      i += 1;
    }
    const instances = [...this.instances.values()];
    const frame = { protocol: PROTOCOL, snapshot: this.snapshot, replay: false, schema: this.schema, base: this.base,
      version: this.version, time: this.time, frames: this.frames, transforms, signals, instances, text };
    const transfer = [...Object.values(transforms), ...Object.values(signals),
      ...instances.flatMap((set) => [set.positions, set.quaternions])].map((array) => array.buffer);
    this.#clear();
    return { frame, transfer };
  }

  #clear() {
    Object.assign(this, { frames: 0, snapshot: false, schema: null, base: null, version: null, time: null,
      transforms: new Map(), signals: new Map(), instances: new Map() });
  }
}

export { QUATERNION_SCALE };
