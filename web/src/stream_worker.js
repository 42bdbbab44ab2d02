// The live stream's worker (docs/protocol.md): owns the websocket, decodes frames and merges them, so that
// the page's main thread, blocked for a whole render on slow graphics, never holds the stream back.
// Each frame is acknowledged as soon as it is merged into what the page applies next; the server thus sends
// at its own pace and the page always gets the newest state. The page gets one message of merged frames at
// a time ('changes'); it answers 'taken' as it starts applying them, and the frames merged meanwhile go out
// in the next message. Reconnects with exponential backoff; a frame that does not follow the version held
// (a gap) triggers a resync; a stream silent for three heartbeats counts as stale and reconnects.
//
// From the page: {type: 'connect', url}, {type: 'send', message}, {type: 'resync'}, {type: 'taken'}.
// To the page, each with the stream's `version` and `stats`: {type: 'status', status}, {type: 'alarms',
// message}, {type: 'changes', batches: [{schema (when new, else null), frame (MergedFrames.take())}]}.
import { decodeFrame, MergedFrames } from './protocol.js';

const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 8000;
const STALE_HEARTBEATS = 3;
const RESYNC_RETRY_MS = 3000;

/** Milliseconds on the page's clock (performance.timeOrigin differs between the page and a worker). */
const clock = () => performance.timeOrigin + performance.now();

class WorkerStream {
  constructor(url) {
    this.url = url;
    this.backoff = BACKOFF_MIN_MS;
    this.everConnected = false;
    this.schema = null;
    this.version = null;
    this.resyncAsked = 0;
    this.heartbeatMs = 5000;
    this.lastMessage = 0;
    this.stats = { frames: 0, gaps: 0, resyncs: 0, bytes: 0, decodeMs: 0 };
    this.batches = [{ schema: null, merged: new MergedFrames() }]; // one per schema, the last one open
    this.pageBusy = false; // a 'changes' message is out and not yet taken
    setInterval(() => this.#watch(), 1000);
  }

  connect() {
    this.version = null;
    this.#post({ type: 'status', status: this.everConnected ? 'reconnecting' : 'connecting' });
    const socket = new WebSocket(this.url);
    socket.binaryType = 'arraybuffer';
    this.socket = socket;
    socket.addEventListener('open', () => {
      this.everConnected = true;
      this.backoff = BACKOFF_MIN_MS;
      this.lastMessage = performance.now();
      this.#post({ type: 'status', status: 'live' });
    });
    socket.addEventListener('message', (event) => {
      this.lastMessage = performance.now();
      if (typeof event.data === 'string') this.#control(event.data);
      else this.#frame(event.data, clock());
    });
    // 'close' follows 'error' too, so reconnecting is handled once, here.
    socket.addEventListener('close', () => {
      if (this.socket !== socket) return;
      this.#post({ type: 'status', status: this.everConnected ? 'reconnecting' : 'connecting' });
      setTimeout(() => this.connect(), this.backoff);
      this.backoff = Math.min(this.backoff * 2, BACKOFF_MAX_MS);
    });
  }

  send(message) {
    if (this.socket?.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(message));
  }

  resync() {
    this.stats.resyncs += 1;
    this.version = null;
    this.resyncAsked = performance.now();
    this.send({ type: 'resync' });
  }

  /** The page has started applying the last changes: send what was merged since, if anything. */
  taken() {
    this.pageBusy = false;
    this.#offer();
  }

  #post(message, transfer = []) {
    self.postMessage({ ...message, version: this.version, stats: this.stats }, transfer);
  }

  #control(text) {
    let message;
    try {
      message = JSON.parse(text);
    } catch {
      console.warn('stream: a control message that is not JSON was ignored');
      return;
    }
    if (message.type === 'hello') this.heartbeatMs = message.heartbeat_s * 1000;
    else if (message.type === 'schema') {
      this.schema = { ...message, widths: Int32Array.from(message.signals, (s) => s.width) };
      // Frames merged so far refer to the old rows: they go to the page as a batch of their own.
      const open = this.batches.at(-1);
      if (open.merged.empty) open.schema = this.schema;
      else this.batches.push({ schema: this.schema, merged: new MergedFrames() });
    } else if (message.type === 'alarms') this.#post({ type: 'alarms', message });
    else if (message.type === 'error') console.warn('stream error:', message.error);
  }

  #frame(buffer, received) {
    if (!this.schema) return;
    const started = performance.now();
    let frame;
    try {
      frame = decodeFrame(buffer, this.schema.widths);
    } catch (error) {
      console.warn('stream: a malformed frame was ignored:', error.message);
      this.resync();
      return;
    }
    this.stats.bytes += buffer.byteLength;
    if (frame.schema !== this.schema.schema || (!frame.snapshot && frame.base !== this.version)) {
      // A frame went missing (or the page fell out of step): ask for a fresh snapshot.
      this.stats.gaps += 1;
      // Ask once; ask again if the snapshot does not come (a request can cross a frame in flight).
      if (this.version !== null || performance.now() - this.resyncAsked > RESYNC_RETRY_MS) this.resync();
      return;
    }
    this.batches.at(-1).merged.add(frame, this.schema.widths, received);
    this.stats.decodeMs = performance.now() - started;
    this.version = frame.version;
    this.stats.frames += 1;
    this.send({ type: 'ack', version: frame.version });
    this.#offer();
  }

  /** Send the merged frames to the page unless it is still busy with the previous ones. */
  #offer() {
    if (this.pageBusy || this.batches.every(({ merged }) => merged.empty)) return;
    const open = this.batches.at(-1);
    const openSchema = open.merged.empty ? open.schema : null; // its schema still has to reach the page
    const batches = [];
    const transfer = [];
    for (const { schema, merged } of this.batches) {
      if (merged.empty) continue;
      const taken = merged.take();
      batches.push({ schema, frame: taken.frame });
      transfer.push(...taken.transfer);
    }
    this.batches = [{ schema: openSchema, merged: open.merged }];
    this.pageBusy = true;
    this.#post({ type: 'changes', batches }, transfer);
  }

  #watch() {
    if (!this.socket || this.socket.readyState !== WebSocket.OPEN) return;
    if (performance.now() - this.lastMessage > STALE_HEARTBEATS * this.heartbeatMs) {
      this.#post({ type: 'status', status: 'stale' });
      // A dead link may take minutes to report its close: drop it and reconnect now.
      const socket = this.socket;
      this.socket = null;
      socket.close();
      setTimeout(() => this.connect(), this.backoff);
      this.backoff = Math.min(this.backoff * 2, BACKOFF_MAX_MS);
    }
  }
}

let stream = null;
self.addEventListener('message', ({ data }) => {
  if (data.type === 'connect') {
    stream = new WorkerStream(data.url);
    stream.connect();
  } else if (data.type === 'send') stream?.send(data.message);
  else if (data.type === 'resync') stream?.resync();
  else if (data.type === 'taken') stream?.taken();
});
