// The line switcher, shown only when the page comes from a site server (`twin site`), which serves this viewer
// for each line at /lines/NAME/: a select in the header listing the site's lines with their state (up, down),
// refreshed every few seconds. Choosing a line loads its page, so the scene and the stream are that line's.
import { authHeaders } from './auth.js';
import { element } from './dom.js';

const REFRESH_MS = 5000;
const current = location.pathname.match(/^\/lines\/([^/]+)\//)?.[1];

async function siteLines() {
  const response = await fetch('/api/site', { headers: authHeaders() });
  if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
  return (await response.json()).lines;
}

function fill(select, lines) {
  const options = lines.map((line) => {
    const option = element('option', `line-${line.state}`, `${line.name} (${line.state})`);
    option.value = line.name;
    option.selected = line.name === decodeURIComponent(current);
    return option;
  });
  select.replaceChildren(...options);
  const shown = lines.find((line) => line.name === decodeURIComponent(current));
  select.className = `line-switcher line-${shown?.state ?? 'unknown'}`;
}

async function start() {
  const select = element('select', 'line-switcher');
  select.id = 'line-switcher';
  select.title = 'The site\'s lines: switch to another line\'s scene and live data';
  select.addEventListener('change', () => {
    location.href = `/lines/${encodeURIComponent(select.value)}/${location.search}`;
  });
  try {
    fill(select, await siteLines());
  } catch {
    return; // not a site after all: the viewer works as it does on a line's own server
  }
  document.querySelector('#topbar .brand').append(select);
  setInterval(async () => {
    try {
      fill(select, await siteLines());
    } catch {
      select.className = 'line-switcher line-unknown'; // the site is unreachable: the stream status says so too
    }
  }, REFRESH_MS);
}

if (current) start();
