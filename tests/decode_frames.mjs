// Decodes binary stream frames with the viewer's decoder (web/src/protocol.js) and prints them as JSON,
// so tests/test_wire_agreement.py can compare them with twin.stream.protocol's decoding of the same bytes.
// Usage: node tests/decode_frames.mjs manifest.json, where the manifest is {"widths": [...], "frames": [paths]}.
import { readFileSync } from 'node:fs';
import { decodeFrame } from '../web/src/protocol.js';

const plain = (view) => Array.from(view); // NaN becomes null in JSON, which the test reads back as NaN
const poses = (item) => ({ positions: plain(item.positions), quaternions: plain(item.quaternions) });

const manifest = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const decoded = manifest.frames.map((path) => {
  const bytes = readFileSync(path);
  // A frame's arrays are aligned from its first byte: give the decoder a buffer that starts there.
  const buffer = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
  const frame = decodeFrame(buffer, manifest.widths);
  const { rows, status, quality, age, values } = frame.signals;
  return {
    protocol: frame.protocol, snapshot: frame.snapshot, replay: frame.replay, schema: frame.schema,
    base: frame.base, version: frame.version, time: frame.time,
    transforms: { rows: plain(frame.transforms.rows), ...poses(frame.transforms) },
    signals: { rows: plain(rows), status: plain(status), quality: plain(quality), age: plain(age),
               values: plain(values) },
    instances: frame.instances.map((item) => ({ set: item.set, count: item.count, ...poses(item) })),
    text: frame.text,
  };
});
process.stdout.write(JSON.stringify(decoded));
