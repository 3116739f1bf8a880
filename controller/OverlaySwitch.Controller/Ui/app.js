// The live topology page: asks for a bearer token (kept in this tab's sessionStorage), reads
// /api/v1/topology with it, and reads it again on every "change" event of /api/v1/topology/events
// (server-sent events read with fetch, since EventSource cannot send an Authorization header).
// Everything the API returns is put into the page as text (textContent, SVG text nodes), never as markup.
'use strict';

const TOKEN_KEY = 'overlay-topology-token';
const SVG = 'http://www.w3.org/2000/svg';
const $ = id => document.getElementById(id);

let stream = null;     // AbortController of the open event stream
let loading = false;   // a topology fetch is under way
let stale = false;     // a change came while it was

function token() { return sessionStorage.getItem(TOKEN_KEY); }

function showLogin(message) {
  if (stream) stream.abort();
  stream = null;
  sessionStorage.removeItem(TOKEN_KEY);
  $('view').hidden = true;
  $('logout').hidden = true;
  $('login').hidden = false;
  $('login-error').textContent = message || '';
  setLive(false, 'not connected');
}

function setLive(on, text) {
  $('live').className = on ? 'on' : 'off';
  $('live').textContent = text;
}

async function api(path, signal) {
  const response = await fetch(path, { headers: { Authorization: 'Bearer ' + token() }, cache: 'no-store', signal });
  if (response.status === 401) {
    showLogin('The controller refused the token (unknown or revoked).');
    throw new Error('unauthorized');
  }
  if (response.status === 403) {
    showLogin('This token may not read the topology (host tokens cannot).');
    throw new Error('forbidden');
  }
  return response;
}

async function refresh() {
  if (loading) { stale = true; return; }
  loading = true;
  try {
    do {
      stale = false;
      const response = await api('/api/v1/topology');
      if (!response.ok) throw new Error('GET /api/v1/topology: ' + response.status);
      render(await response.json());
    } while (stale);
  } finally {
    loading = false;
  }
}

async function follow() {
  const controller = new AbortController();
  stream = controller;
  let delay = 500;
  while (stream === controller) {
    try {
      const response = await api('/api/v1/topology/events', controller.signal);
      if (!response.ok) throw new Error('events: ' + response.status);
      setLive(true, 'live');
      delay = 500;
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const event = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          if (/^event: change$/m.test(event)) refresh().catch(() => {});
        }
      }
    } catch (e) {
      if (stream !== controller) return;
    }
    if (stream !== controller) return;
    setLive(false, 'reconnecting');
    await new Promise(r => setTimeout(r, delay));
    delay = Math.min(delay * 2, 5000);
  }
}

function start() {
  $('login').hidden = true;
  $('view').hidden = false;
  $('logout').hidden = false;
  follow();
}

// ---- rendering ----

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

function table(id, headers, rows) {
  const t = $(id);
  t.replaceChildren();
  const head = el('tr');
  for (const h of headers) head.append(el('th', {}, h));
  t.append(head);
  if (rows.length === 0) {
    const tr = el('tr');
    tr.append(el('td', { colspan: headers.length }, '(none)'));
    t.append(tr);
  }
  for (const row of rows) {
    const tr = el('tr', row.attrs || {});
    for (const cell of row.cells) {
      const c = typeof cell === 'object' && cell !== null ? cell : { text: cell };
      tr.append(el('td', c.cls ? { class: c.cls } : {}, c.text ?? '-'));
    }
    t.append(tr);
  }
}

function hue(id) {
  let h = 0;
  for (const c of id) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  return h % 360;
}

function networkColour(id) { return `hsl(${hue(id)}, 60%, 82%)`; }

function realized(status) { return status.realized ? '✓' : '…'; }
function attached(status) { return status.attached === true ? '●' : status.attached === false ? '○' : '?'; }
function time(t) { return t ? new Date(t).toLocaleTimeString() : '-'; }

function render(topology) {
  $('scope').textContent = topology.scope === 'admin' ? 'admin: everything' : 'tenant: ' + topology.tenants.map(t => t.name).join(', ');
  $('revision').textContent = 'revision ' + topology.revision;
  const networks = new Map(topology.networks.map(n => [n.network.id, n.network]));
  const hosts = new Map(topology.hosts.map(h => [h.host.id, h.host]));
  const name = (map, id) => (id && map.get(id) ? map.get(id).name : id);

  drawPicture(topology, networks);

  table('networks', ['Name', 'VNI', 'Subnets', 'MTU', 'Hosts', 'Realized'], topology.networks.map(n => ({
    attrs: { 'data-network-id': n.network.id },
    cells: [n.network.name, n.network.vni, n.network.subnets.join(' '), n.network.mtu,
      n.status.hosts.map(h => name(hosts, h)).join(' '),
      n.status.realized ? { text: 'yes', cls: 'good' } : { text: 'pending on ' + n.status.pendingHosts.map(h => name(hosts, h)).join(' '), cls: 'bad' }],
  })));
  table('ports', ['Name', 'Network', 'MAC', 'IPs', 'Host', 'Kind', 'Device', 'Realized', 'Attached', 'Error'], topology.ports.map(p => ({
    attrs: { 'data-port-id': p.port.id },
    cells: [p.port.name, name(networks, p.port.networkId), p.port.mac, p.port.ips.join(' '), p.port.hostId ? name(hosts, p.port.hostId) : 'not bound',
      p.port.kind, p.port.device,
      p.status.realized ? { text: 'yes', cls: 'good' } : { text: 'pending on ' + p.status.pendingHosts.map(h => name(hosts, h)).join(' '), cls: 'bad' },
      p.status.attached === undefined || p.status.attached === null ? 'not reported' : (p.status.attached ? 'yes' : 'no'),
      p.status.error ? { text: p.status.error, cls: 'bad' } : '-'],
  })));
  const ports = new Map(topology.ports.map(p => [p.port.id, p.port]));
  table('migrations', ['Port', 'From', 'To', 'State', 'Started', 'Activated', 'Proof', 'Redirected frames'], topology.migrations.map(m => ({
    attrs: { 'data-migration-id': m.id },
    cells: [name(ports, m.portId), name(hosts, m.sourceHostId), name(hosts, m.targetHostId), m.state, time(m.startedAt), time(m.activatedAt),
      m.activatedBy ?? '-', m.redirectedFrames],
  })));
  table('hosts', ['Name', 'VTEP (IPv4)', 'VTEP (IPv6)', 'Underlay MTU', 'Site', 'Agent'], topology.hosts.map(h => ({
    attrs: { 'data-host-id': h.host.id },
    cells: [h.host.name, h.host.vtepV4 ?? '-', h.host.vtepV6 ?? '-', h.host.underlayMtu, h.host.site ?? '-',
      h.appliedRevision === undefined || h.appliedRevision === null ? '(admin only)'
        : (h.watching ? 'watching' : 'not watching') + ', applied revision ' + h.appliedRevision + (h.reportedAt ? ' at ' + time(h.reportedAt) : '')],
  })));
  table('externals', ['Name', 'Network', 'MAC', 'IPs', 'VTEP'], topology.externalEndpoints.map(e => ({
    cells: [e.name, name(networks, e.networkId), e.mac, e.ips.join(' '), e.vtep],
  })));
}

const BOX_WIDTH = 270, HEADER = 50, CHIP = 22, GAP = 60, PER_ROW = 4;

/** Host `from`'s reported tunnel to host `to`'s VTEP, or null. */
function tunnelTo(topology, from, to) {
  const f = topology.hosts.find(h => h.host.id === from), t = topology.hosts.find(h => h.host.id === to);
  if (!f || !t || !f.tunnels) return null;
  return f.tunnels.find(r => r.remote === t.host.vtepV4 || r.remote === t.host.vtepV6) || null;
}

function scaled(n, unit) {
  return n >= 1e9 ? `${(n / 1e9).toFixed(1)} G${unit}` : n >= 1e6 ? `${(n / 1e6).toFixed(1)} M${unit}` : n >= 1e4 ? `${(n / 1e3).toFixed(0)} k${unit}` : `${n} ${unit}`;
}

function drawPicture(topology, networks) {
  const picture = $('picture');
  picture.replaceChildren();
  const defs = svg('defs');
  const marker = svg('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 8, markerHeight: 8, orient: 'auto-start-reverse' });
  marker.append(svg('path', { d: 'M 0 0 L 10 5 L 0 10 z', fill: '#c25b00' }));
  defs.append(marker);
  picture.append(defs);

  const byHost = new Map(topology.hosts.map(h => [h.host.id, []]));
  const unbound = [];
  for (const p of topology.ports) (p.port.hostId && byHost.has(p.port.hostId) ? byHost.get(p.port.hostId) : unbound).push(p);
  const boxes = topology.hosts.map(h => ({ id: h.host.id, title: h.host.name, lines: [h.host.vtepV4, h.host.vtepV6].filter(Boolean).join('  ') || 'no VTEP yet', ports: byHost.get(h.host.id) }));
  if (unbound.length) boxes.push({ id: null, title: 'not bound to a host', lines: '', ports: unbound });

  let x = GAP / 2, y = GAP / 2, rowHeight = 0, width = 0;
  boxes.forEach((b, i) => {
    if (i > 0 && i % PER_ROW === 0) { x = GAP / 2; y += rowHeight + GAP; rowHeight = 0; }
    b.x = x; b.y = y; b.h = HEADER + Math.max(1, b.ports.length) * CHIP + 8;
    rowHeight = Math.max(rowHeight, b.h);
    x += BOX_WIDTH + GAP;
    width = Math.max(width, x);
  });
  const height = y + rowHeight + GAP / 2;
  picture.setAttribute('viewBox', `0 0 ${Math.max(width, 400)} ${Math.max(height, 120)}`);
  picture.setAttribute('width', Math.max(width, 400));
  picture.setAttribute('height', Math.max(height, 120));
  const at = new Map(boxes.filter(b => b.id).map(b => [b.id, b]));
  const centre = b => [b.x + BOX_WIDTH / 2, b.y + b.h / 2];

  // Tunnels: every pair of hosts that share a network (a VXLAN tunnel each way), labelled by VNI.
  const pairs = new Map();
  for (const n of topology.networks) {
    const members = n.status.hosts.filter(h => at.has(h)).sort();
    for (let i = 0; i < members.length; i++)
      for (let j = i + 1; j < members.length; j++) {
        const key = members[i] + '\u0000' + members[j];
        if (!pairs.has(key)) pairs.set(key, { a: members[i], b: members[j], vnis: [] });
        pairs.get(key).vnis.push(n.network.vni);
      }
  }
  for (const t of pairs.values()) {
    const [x1, y1] = centre(at.get(t.a)), [x2, y2] = centre(at.get(t.b));
    const g = svg('g', { 'data-tunnel': t.a + ' ' + t.b });
    g.append(svg('line', { class: 'tunnel', x1, y1, x2, y2 }));
    g.append(svg('text', { class: 'tunnel-label', x: (x1 + x2) / 2, y: (y1 + y2) / 2 - 4, 'text-anchor': 'middle' }, 'VNI ' + t.vnis.join(', ')));
    // Traffic as each switch last reported its tunnel to the other (admin only: tunnels carry every tenant's frames).
    const ab = tunnelTo(topology, t.a, t.b), ba = tunnelTo(topology, t.b, t.a);
    if (ab || ba) {
      const side = (from, to, r) => r ? `${from} → ${to}: ${scaled(r.packetsOut, 'pkts')} ${scaled(r.bytesOut, 'B')}` : `${from} → ${to}: -`;
      g.append(svg('text', {
        class: 'tunnel-traffic', x: (x1 + x2) / 2, y: (y1 + y2) / 2 + 12, 'text-anchor': 'middle',
        'data-packets-out': `${ab ? ab.packetsOut : ''} ${ba ? ba.packetsOut : ''}`,
      }, side(at.get(t.a).title, at.get(t.b).title, ab) + '   ' + side(at.get(t.b).title, at.get(t.a).title, ba)));
    }
    picture.append(g);
  }

  for (const b of boxes) {
    const g = svg('g', b.id ? { 'data-host-id': b.id } : {});
    g.append(svg('rect', { class: 'host', x: b.x, y: b.y, width: BOX_WIDTH, height: b.h, rx: 6 }));
    g.append(svg('text', { class: 'host-name', x: b.x + 10, y: b.y + 18 }, b.title));
    g.append(svg('text', { class: 'vtep', x: b.x + 10, y: b.y + 36 }, b.lines));
    b.ports.forEach((p, i) => {
      const chip = svg('g', { 'data-port-id': p.port.id });
      const cy = b.y + HEADER + i * CHIP;
      chip.append(svg('rect', { class: 'port', x: b.x + 8, y: cy, width: BOX_WIDTH - 16, height: CHIP - 4, rx: 4, fill: networkColour(p.port.networkId) }));
      const net = networks.get(p.port.networkId);
      chip.append(svg('text', { x: b.x + 14, y: cy + 13 },
        `${realized(p.status)}${attached(p.status)} ${p.port.name}  ${p.port.ips.join(' ') || p.port.mac}${net ? '  VNI ' + net.vni : ''}`));
      g.append(chip);
    });
    if (b.ports.length === 0) g.append(svg('text', { class: 'vtep', x: b.x + 10, y: b.y + HEADER + 12 }, 'no ports'));
    picture.append(g);
  }

  // Migrations in progress: a dashed arrow from the source host to the target.
  for (const m of topology.migrations) {
    if (!['Preparing', 'Ready', 'Activated'].includes(m.state) || !at.has(m.sourceHostId) || !at.has(m.targetHostId)) continue;
    const [x1, y1] = centre(at.get(m.sourceHostId)), [x2, y2] = centre(at.get(m.targetHostId));
    const g = svg('g', { 'data-migration-id': m.id });
    const bend = 40;
    g.append(svg('path', { class: 'migration', d: `M ${x1} ${y1} Q ${(x1 + x2) / 2} ${(y1 + y2) / 2 - bend} ${x2} ${y2}`, 'marker-end': 'url(#arrow)' }));
    const port = topology.ports.find(p => p.port.id === m.portId);
    g.append(svg('text', { class: 'migration-label', x: (x1 + x2) / 2, y: (y1 + y2) / 2 - bend / 2 - 6, 'text-anchor': 'middle' },
      `moving ${port ? port.port.name : m.portId}: ${m.state}`));
    picture.append(g);
  }
}

// ---- start ----

$('login').addEventListener('submit', e => {
  e.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $('token').value.trim());
  $('token').value = '';
  start();
});
$('logout').addEventListener('click', () => showLogin(''));
if (token()) start(); else showLogin('');
