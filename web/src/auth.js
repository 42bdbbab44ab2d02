// The API token, when the page was opened with one (http://host:8000/?token=...): sent with every
// request and on the websocket, which browsers cannot give headers to. Off loopback the server needs it.
const token = new URLSearchParams(location.search).get('token');

export function authHeaders() {
  return token ? { Authorization: `Bearer ${token}` } : {};
}

export function withToken(url) {
  return token ? `${url}${url.includes('?') ? '&' : '?'}token=${encodeURIComponent(token)}` : url;
}
