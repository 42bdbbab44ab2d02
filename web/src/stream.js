// The live stream (docs/protocol.md) as the page sees it. The websocket lives in a worker
// (stream_worker.js): it decodes, merges and acknowledges frames while the page renders, and hands the
// page the frames merged since its last turn, so a page that renders slowly (software WebGL) still shows
// the newest state each render instead of taking one frame per render.

export class Stream {
  /**
   * `onFrame(frame, schema)` gets each merged frame (web/src/protocol.js MergedFrames) with the row names
   * it refers to; `onStatus(status)` "connecting", "live", "reconnecting" or "stale"; `onAlarms(message)`
   * the server's open alarms whenever they change.
   */
  constructor(url, { onFrame, onStatus, onAlarms = () => {} }) {
    this.url = url;
    this.onFrame = onFrame;
    this.onStatus = onStatus;
    this.onAlarms = onAlarms;
    this.schema = null;
    this.version = null; // the version of the newest frame merged in the worker
    this.stats = { frames: 0, gaps: 0, resyncs: 0, bytes: 0, decodeMs: 0 }; // the worker's counters
    this.applying = null; // the merged frame being applied (bench/e2e_latency.py reads its arrival times)
    this.worker = new Worker(new URL('./stream_worker.js', import.meta.url), { type: 'module' });
    this.worker.addEventListener('message', ({ data }) => this.#message(data));
    this.worker.addEventListener('error', (event) => console.error('stream worker:', event.message));
  }

  connect() {
    this.worker.postMessage({ type: 'connect', url: this.url });
  }

  send(message) {
    this.worker.postMessage({ type: 'send', message });
  }

  resync() {
    this.worker.postMessage({ type: 'resync' });
  }

  #message(data) {
    this.version = data.version;
    this.stats = data.stats;
    if (data.type === 'status') this.onStatus(data.status);
    else if (data.type === 'alarms') this.onAlarms(data.message);
    else if (data.type === 'changes') {
      // Taken first: the worker prepares the next changes while these are applied.
      this.worker.postMessage({ type: 'taken' });
      for (const { schema, frame } of data.batches) {
        if (schema) this.schema = schema;
        this.applying = frame;
        this.onFrame(frame, this.schema);
      }
    }
  }
}
