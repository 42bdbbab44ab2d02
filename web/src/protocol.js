// Decoding of the stream's binary frames (docs/protocol.md, twin/protocol.py): typed-array views over
// the received buffer, no copies. A frame applies only on top of the version the page holds.

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

export { QUATERNION_SCALE };
