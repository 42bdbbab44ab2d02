// The live stream (docs/protocol.md): JSON control messages and binary frames over one websocket.
// Reconnects with exponential backoff; a frame that does not follow the version the page holds
// (a gap) triggers a resync; a stream silent for three heartbeats counts as stale and reconnects.
// Each applied frame is acknowledged, so the server keeps at most a couple of frames in flight and a page
// that renders slowly gets the newest state when it is ready instead of a queue of stale frames.
import { decodeFrame } from './protocol.js';

const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 8000;
const STALE_HEARTBEATS = 3;
const RESYNC_RETRY_MS = 3000;

export class Stream {
  /**
   * `onFrame(frame, schema)` gets each decoded binary frame that applies, with the row names it refers
   * to; `onStatus(status)` "connecting", "live", "reconnecting" or "stale"; `onAlarms(message)` the
   * server's open alarms whenever they change.
   */
  constructor(url, { onFrame, onStatus, onAlarms = () => {} }) {
    this.url = url;
    this.onFrame = onFrame;
    this.onStatus = onStatus;
    this.onAlarms = onAlarms;
    this.backoff = BACKOFF_MIN_MS;
    this.everConnected = false;
    this.schema = null;
    this.version = null;
    this.resyncAsked = 0;
    this.heartbeatMs = 5000;
    this.lastMessage = 0;
    this.stats = { frames: 0, gaps: 0, resyncs: 0, bytes: 0, decodeMs: 0 };
    setInterval(() => this.#watch(), 1000);
  }

  connect() {
    this.onStatus(this.everConnected ? 'reconnecting' : 'connecting');
    this.version = null;
    const socket = new WebSocket(this.url);
    socket.binaryType = 'arraybuffer';
    this.socket = socket;
    socket.addEventListener('open', () => {
      this.everConnected = true;
      this.backoff = BACKOFF_MIN_MS;
      this.lastMessage = performance.now();
      this.onStatus('live');
    });
    socket.addEventListener('message', (event) => {
      this.lastMessage = performance.now();
      if (typeof event.data === 'string') this.#control(event.data);
      else this.#frame(event.data);
    });
    // 'close' follows 'error' too, so reconnecting is handled once, here.
    socket.addEventListener('close', () => {
      if (this.socket !== socket) return;
      this.onStatus(this.everConnected ? 'reconnecting' : 'connecting');
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
    } else if (message.type === 'alarms') this.onAlarms(message);
    else if (message.type === 'error') console.warn('stream error:', message.error);
  }

  #frame(buffer) {
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
    this.stats.decodeMs = performance.now() - started;
    this.stats.bytes += buffer.byteLength;
    if (frame.schema !== this.schema.schema || (!frame.snapshot && frame.base !== this.version)) {
      // A frame went missing (or the page fell out of step): ask for a fresh snapshot.
      this.stats.gaps += 1;
      // Ask once; ask again if the snapshot does not come (a request can cross a frame in flight).
      if (this.version !== null || performance.now() - this.resyncAsked > RESYNC_RETRY_MS) this.resync();
      return;
    }
    this.version = frame.version;
    this.stats.frames += 1;
    this.onFrame(frame, this.schema);
    this.send({ type: 'ack', version: frame.version });
  }

  #watch() {
    if (!this.socket || this.socket.readyState !== WebSocket.OPEN) return;
    if (performance.now() - this.lastMessage > STALE_HEARTBEATS * this.heartbeatMs) {
      this.onStatus('stale');
      // A dead link may take minutes to report its close: drop it and reconnect now.
      const socket = this.socket;
      this.socket = null;
      socket.close();
      setTimeout(() => this.connect(), this.backoff);
      this.backoff = Math.min(this.backoff * 2, BACKOFF_MAX_MS);
    }
  }
}
