// The live stream: a websocket that reconnects with exponential backoff.
// The server sends a full snapshot on every (re)connect, so nothing needs replaying.

const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 8000;

export class Stream {
  /**
   * `onMessage(message)` gets each parsed JSON message;
   * `onStatus(status)` gets "connecting" (first attempt), "live" or "reconnecting".
   */
  constructor(url, { onMessage, onStatus }) {
    this.url = url;
    this.onMessage = onMessage;
    this.onStatus = onStatus;
    this.backoff = BACKOFF_MIN_MS;
    this.everConnected = false;
  }

  connect() {
    this.onStatus(this.everConnected ? 'reconnecting' : 'connecting');
    const socket = new WebSocket(this.url);
    socket.addEventListener('open', () => {
      this.everConnected = true;
      this.backoff = BACKOFF_MIN_MS;
      this.onStatus('live');
    });
    socket.addEventListener('message', (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        console.warn('stream: a message that is not JSON was ignored');
        return;
      }
      this.onMessage(message);
    });
    // 'close' follows 'error' too, so reconnecting is handled once, here.
    socket.addEventListener('close', () => {
      this.onStatus(this.everConnected ? 'reconnecting' : 'connecting');
      setTimeout(() => this.connect(), this.backoff);
      this.backoff = Math.min(this.backoff * 2, BACKOFF_MAX_MS);
    });
  }
}
