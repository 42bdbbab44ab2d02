// The API token, when the page was opened with one (http://host:8000/?token=...): sent with every
// request and on the websocket, which browsers cannot give headers to. Off loopback the server needs it.
const token = new URLSearchParams(location.search).get('token');

export function authHeaders() {
  return token ? { Authorization: `Bearer ${token}` } : {};
}

// Why the API refused a request, as text: FastAPI's `detail` (a message, or validation errors as JSON).
export async function errorDetail(response) {
  const body = await response.json().catch(() => ({}));
  const detail = body.detail ?? response.statusText;
  return typeof detail === 'string' ? detail : JSON.stringify(detail);
}

export function withToken(url) {
  return token ? `${url}${url.includes('?') ? '&' : '?'}token=${encodeURIComponent(token)}` : url;
}
