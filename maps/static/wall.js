/* gridwatch map wall: one level of grids at a time, incidents, devices, patrollers, live events, heatmap.
   Data comes from /api/v1/wall/* and the other /api/v1 routes as JSON; user text is only ever set as text. */
(() => {
  'use strict';

  const cfg = JSON.parse(document.getElementById('gw-config').textContent);
  const map = window[cfg.map];
  const API = cfg.api;
  const C = cfg.colors;
  const CLOSED = new Set(['closed', 'called_back', 'archived', 'cancelled']);
  const RANK = { red: 3, yellow: 2, green: 1 };
  const LEVEL_WEIGHT = { 1: 3, 2: 2, 3: 1 };
  const $ = (id) => document.getElementById(id);

  const gw = window.gridwatch = {
    ready: false, level: null, shownGrids: 0, shownCodes: [], incidents: {}, lastEventAt: 0, timings: {},
    grid: cfg.grid || null, drill: (code) => navigate(code || null, true),
  };

  // --- small helpers ---------------------------------------------------------------------------
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') node.className = v;
      else if (k === 'text') node.textContent = String(v);
      else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children) if (c !== null && c !== undefined) node.append(c instanceof Node ? c : String(c));
    return node;
  }
  const lightColor = (light) => C.lights[light] || C.no_light;
  const isOpen = (inc) => !CLOSED.has(inc.state);

  function status(text, isError) {
    const s = $('gw-status');
    s.textContent = text || '';
    s.classList.toggle('gw-error', !!isError);
  }

  async function getJSON(path, signal) {
    const resp = await fetch(API + path, { credentials: 'same-origin', headers: { Accept: 'application/json' }, signal });
    return readJSON(resp);
  }

  async function readJSON(resp) {
    let body = null;
    try { body = await resp.json(); } catch (e) { body = null; }
    if (resp.status === 401) {
      window.location.assign('/login?next=' + encodeURIComponent(location.pathname + location.search));
    }
    if (!resp.ok) throw new Error((body && (body.detail || body.title)) || ('HTTP ' + resp.status));
    return body;
  }

  // trailing debounce; with `maxWait`, a steady burst of calls still runs `fn` at least that often
  function debounce(fn, ms, maxWait) {
    let t = null;
    let first = 0;
    return (...args) => {
      const now = Date.now();
      if (!t) first = now;
      clearTimeout(t);
      const wait = maxWait ? Math.max(0, Math.min(ms, first + maxWait - now)) : ms;
      t = setTimeout(() => { t = null; fn(...args); }, wait);
    };
  }

  const qs = (params) => {
    const p = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== '') p.set(k, v);
    const s = p.toString();
    return s ? '?' + s : '';
  };

  // --- layers (one canvas renderer: the map was made with preferCanvas) --------------------------
  let gridLayer = null;
  let buildingLayer = null;
  const gridByCode = new Map();
  const deviceLayer = L.layerGroup().addTo(map);
  const patrollerLayer = L.layerGroup().addTo(map);
  const incidentLayer = L.layerGroup().addTo(map);
  const devices = new Map(); // id -> {marker, state}
  const incidentMarkers = new Map(); // id -> marker
  let items = []; // the side panel's incidents, sorted by light
  let counts = { open: 0, yellow: 0, red: 0, escalated: 0 };
  let heatLayer = null;
  let loadedZoom = null;
  let loadToken = 0;
  let controller = null;
  const fresh = new Set();
  const announced = new Set();

  function keepOrder() {
    if (buildingLayer) buildingLayer.bringToBack();
    if (gridLayer) gridLayer.bringToBack();
  }

  // --- legend --------------------------------------------------------------------------------
  function legend() {
    const box = $('gw-legend');
    const row = (color, label, ring) => el('div', { class: 'gw-legend-row' },
      el('i', { style: `background:${color}` + (ring ? `;border:2px solid ${ring}` : '') }), el('span', { text: label }));
    box.append(el('b', { text: 'lights' }));
    box.append(row(C.lights.red, 'red: overdue'), row(C.lights.yellow, 'yellow: time nearly up'),
      row(C.lights.green, 'green: in time'), row(C.no_light, 'open, clock not started'), row(C.quiet, 'no open incident'));
    box.append(el('b', { text: '五色 difficulty (marker ring)' }));
    const names = { green: 'green: patroller', blue: 'blue: community', yellow: 'yellow: street',
      orange: 'orange: district depts', red: 'red: district leadership' };
    for (const [k, v] of Object.entries(C.difficulty)) box.append(row('#fff', names[k] || k, v));
    box.append(el('b', { text: 'devices' }));
    for (const [k, v] of Object.entries(C.devices)) box.append(row(v, k));
    box.append(row('#fff', 'patroller', '#6a1b9a'));
  }

  // --- grids -------------------------------------------------------------------------------------
  function gridStyle(p) {
    return { fillColor: p.fill, color: '#37474f', weight: LEVEL_WEIGHT[p.level] || 1, fillOpacity: p.open ? 0.35 : 0.08 };
  }

  function gridTooltip(p) {
    return el('div', {}, el('b', { text: p.name || p.code }), el('br'), el('span', { text: p.code }), el('br'),
      el('span', { text: `open: ${p.open}` + (p.light ? ` · worst: ${p.light}` : '') }));
  }

  function drawGrids(fc) {
    if (gridLayer) map.removeLayer(gridLayer);
    gridByCode.clear();
    gridLayer = L.geoJSON(fc, {
      style: (f) => gridStyle(f.properties),
      onEachFeature: (f, layer) => {
        gridByCode.set(f.properties.code, layer);
        layer.bindTooltip(() => gridTooltip(layer.feature.properties), { sticky: true });
        layer.on('click', () => {
          const p = layer.feature.properties;
          if (p.code !== gw.grid) navigate(p.code, true, map.getBoundsZoom(layer.getBounds()));
        });
      },
    }).addTo(map);
    keepOrder();
    gw.level = fc.level;
    gw.shownGrids = fc.features.length;
    gw.shownCodes = fc.features.map((f) => f.properties.code);
    loadedZoom = fc.zoom;
  }

  function recolorGrids(fc) {
    for (const f of fc.features) {
      const layer = gridByCode.get(f.properties.code);
      if (!layer) continue;
      layer.feature.properties = f.properties;
      layer.setStyle(gridStyle(f.properties));
    }
  }

  function crumbs(list) {
    const nav = $('gw-crumbs');
    nav.replaceChildren();
    if (cfg.role === 'admin') {
      nav.append(el('a', { href: '/map', text: 'district', onclick: (e) => { e.preventDefault(); navigate(null, true); } }));
    }
    list.forEach((c, i) => {
      if (nav.childNodes.length) nav.append(el('span', { class: 'gw-sep', text: ' › ' }));
      const label = [el('span', { text: c.name || c.code }), ' ', el('small', { class: 'gw-code', text: c.code })];
      nav.append(i === list.length - 1 ? el('b', { 'data-grid': c.code }, ...label)
        : el('a', { href: '/map?grid=' + encodeURIComponent(c.code), 'data-grid': c.code,
          onclick: (e) => { e.preventDefault(); navigate(c.code, true); } }, ...label));
    });
  }

  // --- buildings ---------------------------------------------------------------------------------
  async function loadBuildings(parentLevel, code, signal) {
    if (buildingLayer) { map.removeLayer(buildingLayer); buildingLayer = null; }
    if (!code || parentLevel < 2) return;
    const fc = await getJSON('/wall/buildings' + qs({ grid: code }), signal);
    buildingLayer = L.geoJSON(fc, { interactive: false, style: () => ({ color: '#546e7a', weight: 1, fillColor: '#cfd8dc', fillOpacity: 0.6 }) });
    buildingLayer.addTo(map);
    keepOrder();
  }

  // --- incidents ---------------------------------------------------------------------------------
  const itemKey = (a, b) => ((RANK[b.light] || 0) - (RANK[a.light] || 0)) || (Date.parse(b.created_at) - Date.parse(a.created_at));

  function inView(inc) {
    if (!gw.grid) return true;
    const r = inc.route || {};
    return [r.l1, r.l2, r.l3, inc.grid].includes(gw.grid);
  }

  function markerStyle(inc) {
    return { radius: 7, color: C.difficulty[inc.difficulty] || '#263238', weight: inc.difficulty ? 3 : 1.5,
      fillColor: lightColor(inc.light), fillOpacity: 0.95 };
  }

  function upsertMarker(inc) {
    if (typeof inc.lat !== 'number' || typeof inc.lon !== 'number') return;
    let m = incidentMarkers.get(inc.id);
    if (m) {
      m.setLatLng([inc.lat, inc.lon]);
      m.setStyle(markerStyle(inc));
    } else {
      m = L.circleMarker([inc.lat, inc.lon], markerStyle(inc));
      m.bindPopup(() => popupFor(inc.id), { maxWidth: 340, minWidth: 240 });
      m.bindTooltip(() => el('span', { text: `${m.gwItem.type} (${m.gwItem.state}, ${m.gwItem.light || 'no light'})` }));
      m.on('popupopen', () => loadPopup(inc.id));
      m.addTo(incidentLayer);
      incidentMarkers.set(inc.id, m);
    }
    m.gwItem = inc;
    gw.incidents[inc.id] = { light: inc.light, state: inc.state, type: inc.type, lat: inc.lat, lon: inc.lon,
      device_id: inc.device_id || null, grid: inc.grid || null, escalation_level: inc.escalation_level };
  }

  function removeMarker(id) {
    const m = incidentMarkers.get(id);
    if (m) { incidentLayer.removeLayer(m); incidentMarkers.delete(id); }
    delete gw.incidents[id];
  }

  function renderCounters() {
    for (const k of ['open', 'yellow', 'red', 'escalated']) $('gw-count-' + k).textContent = String(counts[k] || 0);
  }

  function renderList() {
    const ul = $('gw-incidents');
    ul.replaceChildren(...items.map((inc) => el('li', {
      'data-incident-id': inc.id, class: 'gw-item' + (fresh.has(inc.id) ? ' gw-new' : ''),
      onclick: () => focusIncident(inc.id),
    }, el('i', { class: 'gw-dot', style: `background:${lightColor(inc.light)}` }),
    el('span', { class: 'gw-type', text: inc.type }),
    el('span', { class: 'gw-meta', text: `${inc.state} · ${inc.grid || '-'} · ${new Date(inc.created_at).toLocaleTimeString()}` }))));
  }

  function focusIncident(id) {
    const m = incidentMarkers.get(id);
    if (!m) return;
    map.panTo(m.getLatLng());
    m.openPopup();
  }

  function applySummary(summary) {
    counts = summary.counters;
    items = summary.items;
    const keep = new Set(items.map((i) => i.id));
    for (const id of [...incidentMarkers.keys()]) if (!keep.has(id)) removeMarker(id);
    for (const inc of items) upsertMarker(inc);
    renderCounters();
    renderList();
    recolorDevices();
  }

  // --- popups and actions --------------------------------------------------------------------------
  const PARAMS = {
    dispatch: [{ name: 'assignee', label: 'patroller id' }, { name: 'unit', label: 'or handling unit' }],
    return: [{ name: 'reason', label: 'reason', required: true }],
    park: [{ name: 'reason', label: 'reason', required: true }],
    cancel: [{ name: 'reason', label: 'reason' }],
    reject_extension: [{ name: 'reason', label: 'reason' }],
    request_extension: [{ name: 'until', label: 'until', type: 'datetime-local' }, { name: 'reason', label: 'reason' }],
    approve_extension: [{ name: 'until', label: 'new deadline', type: 'datetime-local', required: true }],
    call_back: [{ name: 'satisfied', label: 'satisfied', choices: ['true', 'false'] }],
    set_track: [{ name: 'track', label: 'track', choices: ['public', 'community', 'private'] }],
    set_difficulty: [{ name: 'difficulty', label: '五色', choices: ['green', 'blue', 'yellow', 'orange', 'red'] }],
  };

  function popupFor(id) {
    const box = el('div', { class: 'gw-popup', 'data-popup-incident': id }, el('em', { text: 'loading…' }));
    return box;
  }

  async function loadPopup(id) {
    const m = incidentMarkers.get(id);
    if (!m) return;
    let inc;
    try {
      inc = await getJSON('/incidents/' + encodeURIComponent(id));
    } catch (e) {
      m.setPopupContent(el('div', { class: 'gw-popup' }, el('p', { class: 'gw-error', text: e.message })));
      return;
    }
    m.setPopupContent(popupBody(inc));
  }

  function popupBody(inc) {
    const field = (k, v) => el('div', {}, el('span', { class: 'gw-k', text: k + ': ' }), el('span', { text: v === null || v === undefined ? '-' : v }));
    const err = el('p', { class: 'gw-error' });
    const form = el('div', { class: 'gw-form' });
    const note = el('input', { type: 'text', placeholder: 'note (optional)', class: 'gw-note', maxlength: 2000 });
    const buttons = el('div', { class: 'gw-actions' });
    for (const action of inc.allowed_actions || []) {
      buttons.append(el('button', { type: 'button', 'data-action': action, text: action.replace(/_/g, ' '),
        onclick: () => (PARAMS[action] ? askParams(inc, action, form, err, note) : act(inc.id, action, {}, note.value, err)) }));
    }
    return el('div', { class: 'gw-popup', 'data-popup-incident': inc.id },
      el('b', { text: inc.type }), el('div', { class: 'gw-id', text: inc.id }),
      field('state', inc.state), field('light', inc.light), field('grid', inc.grid), field('assignee', inc.assignee || 'command center'),
      field('deadline', inc.deadline ? new Date(inc.deadline).toLocaleString() : null),
      field('escalation level', inc.escalation_level), field('五色', inc.difficulty), field('alarms', inc.alarm_count),
      (inc.allowed_actions || []).length ? note : null, buttons, form, err);
  }

  function askParams(inc, action, form, err, note) {
    form.replaceChildren();
    const inputs = {};
    for (const spec of PARAMS[action]) {
      const input = spec.choices
        ? el('select', { name: spec.name }, ...spec.choices.map((c) => el('option', { value: c, text: c })))
        : el('input', { name: spec.name, type: spec.type || 'text', required: !!spec.required });
      inputs[spec.name] = input;
      form.append(el('label', {}, el('span', { text: spec.label + ' ' }), input));
    }
    form.append(el('button', { type: 'button', 'data-confirm': action, text: 'OK: ' + action.replace(/_/g, ' '), onclick: () => {
      if (action === 'dispatch' && !inputs.assignee.value.trim() === !inputs.unit.value.trim()) {
        err.textContent = 'give a patroller id or a handling unit (one of them)';
        return;
      }
      const params = {};
      for (const spec of PARAMS[action]) {
        const raw = inputs[spec.name].value.trim();
        if (!raw && spec.required) { err.textContent = `${spec.label}: required`; return; }
        if (!raw) continue;
        if (spec.type === 'datetime-local') params[spec.name] = new Date(raw).toISOString();
        else if (spec.name === 'satisfied') params[spec.name] = raw === 'true';
        else params[spec.name] = raw;
      }
      act(inc.id, action, params, note.value, err);
    } }));
  }

  async function act(id, action, params, noteText, errBox) {
    errBox.textContent = '';
    const body = { action, params };
    if (noteText && noteText.trim()) body.note = noteText.trim();
    try {
      const resp = await fetch(`${API}/incidents/${encodeURIComponent(id)}/actions`, {
        method: 'POST', credentials: 'same-origin',
        headers: { 'Content-Type': 'application/json', Accept: 'application/json' }, body: JSON.stringify(body),
      });
      const inc = await readJSON(resp);
      status(`${action}: ${inc.id} → ${inc.state}`);
      if (isOpen(inc)) { upsertMarker(inc); loadPopup(id); } else { map.closePopup(); removeMarker(id); }
      refreshSoon();
    } catch (e) {
      errBox.textContent = e.message;
    }
  }

  // --- devices and patrollers ---------------------------------------------------------------------
  function pointOf(geometry) {
    if (!geometry) return null;
    if (geometry.type === 'Point') return [geometry.coordinates[1], geometry.coordinates[0]];
    try { const c = L.geoJSON(geometry).getBounds().getCenter(); return [c.lat, c.lng]; } catch (e) { return null; }
  }

  function deviceState(id) {
    const d = devices.get(id);
    if (!d) return 'unknown';
    return items.some((i) => i.device_id === id) ? 'alarming' : (d.state || 'unknown');
  }

  function recolorDevices() {
    for (const [id, d] of devices) {
      const color = C.devices[deviceState(id)] || C.devices.unknown;
      d.marker.setStyle({ color, fillColor: color });
    }
  }

  async function loadDevices(code, signal) {
    const fc = await getJSON('/devices' + qs({ grid: code }), signal);
    deviceLayer.clearLayers();
    devices.clear();
    for (const f of fc.features) {
      const at = pointOf(f.geometry);
      if (!at) continue;
      const p = f.properties;
      const marker = L.circleMarker(at, { radius: 4, weight: 1, fillOpacity: 0.8 });
      marker.bindTooltip(() => el('span', { text: `${p.name || p.id} (${p.kind}): ${deviceState(p.id)}` }));
      marker.addTo(deviceLayer);
      devices.set(p.id, { marker, state: p.state });
    }
    recolorDevices();
  }

  async function loadPatrollers() {
    try {
      const body = await getJSON('/patrollers');
      patrollerLayer.clearLayers();
      for (const p of body.items) {
        if (!p.position) continue;
        const m = L.circleMarker([p.position.lat, p.position.lon],
          { radius: 5, color: '#6a1b9a', weight: 2, fillColor: p.on_duty ? '#fff' : '#bdbdbd', fillOpacity: 1 });
        m.bindTooltip(() => el('span', { text: `${p.name || p.id} · ${p.on_duty ? 'on duty' : 'off duty'} · ${new Date(p.position.ts).toLocaleTimeString()}` }));
        m.addTo(patrollerLayer);
      }
    } catch (e) {
      status('patrollers: ' + e.message, true);
    }
  }

  // --- heatmap -----------------------------------------------------------------------------------
  // Leaflet.heat reads its canvas back on every redraw: ask for a readback-friendly context (no console warning)
  const getContext = HTMLCanvasElement.prototype.getContext;
  HTMLCanvasElement.prototype.getContext = function (type, options) {
    if (type === '2d' && this.classList.contains('leaflet-heatmap-layer')) options = Object.assign({ willReadFrequently: true }, options);
    return getContext.call(this, type, options);
  };

  async function loadHeat() {
    const on = $('gw-heat-toggle').checked;
    if (heatLayer) { map.removeLayer(heatLayer); heatLayer = null; }
    if (!on) return;
    try {
      const sel = $('gw-heat-type');
      const body = await getJSON('/wall/heatmap' + qs({ days: cfg.heat_days, grid: gw.grid, type: sel.value }));
      const chosen = sel.value;
      sel.replaceChildren(el('option', { value: '', text: 'all types' }),
        ...body.types.map((t) => el('option', { value: t.type, text: `${t.type} (${t.count})` })));
      sel.value = body.types.some((t) => t.type === chosen) ? chosen : '';
      if (!$('gw-heat-toggle').checked) return;
      if (heatLayer) map.removeLayer(heatLayer);
      heatLayer = L.heatLayer(body.points, { radius: 22, blur: 18, max: Math.max(1, body.max), minOpacity: 0.3 }).addTo(map);
      status(`heatmap: ${body.count} incidents in ${body.days} days`);
    } catch (e) {
      status('heatmap: ' + e.message, true);
    }
  }

  // --- loading a level -----------------------------------------------------------------------------
  async function load(code, zoom) {
    const token = ++loadToken;
    if (controller) controller.abort();
    controller = new AbortController();
    const signal = controller.signal;
    gw.grid = code;
    status('loading…');
    const grids = getJSON('/wall/grids' + qs({ parent: code, zoom }), signal);
    const summary = getJSON('/wall/summary' + qs({ grid: code }), signal);
    summary.catch(() => {}); // awaited below; never an unhandled rejection when this load is dropped
    const fc = await grids;
    if (token !== loadToken) return false;
    drawGrids(fc);
    crumbs(fc.breadcrumbs);
    if (fc.bbox) map.fitBounds([[fc.bbox[1], fc.bbox[0]], [fc.bbox[3], fc.bbox[2]]], { animate: false });
    const parentLevel = fc.parent ? fc.parent.level : 0;
    const extras = Promise.all([loadBuildings(parentLevel, code, signal), loadDevices(code, signal)]);
    extras.then(() => { if (token === loadToken) status(''); }, (e) => { if (e.name !== 'AbortError') status(e.message, true); });
    const panel = await summary;
    if (token !== loadToken) return false;
    applySummary(panel);
    // the level is rendered once its buildings and devices are drawn too, and the browser has painted a frame
    await extras.catch(() => {});
    await new Promise((resolve) => requestAnimationFrame(() => resolve()));
    if (token !== loadToken) return false;
    if (!gw.ready) {
      gw.timings.firstRender = performance.now();
      gw.ready = true;
    }
    stream(code);
    if ($('gw-heat-toggle').checked) loadHeat();
    return true;
  }

  async function navigate(code, push, zoom) {
    if (push) {
      const url = code ? '/map?grid=' + encodeURIComponent(code) : '/map';
      if (location.pathname + location.search !== url) history.pushState({ grid: code }, '', url);
    }
    try {
      await load(code, zoom);
    } catch (e) {
      if (e.name !== 'AbortError') status(e.message, true);
    }
  }

  const refresh = async () => {
    const token = loadToken;
    try {
      const [fc, summary] = await Promise.all([
        getJSON('/wall/grids' + qs({ parent: gw.grid, zoom: loadedZoom, geometry: 'false' })),  // colours only: drawn already
        getJSON('/wall/summary' + qs({ grid: gw.grid }))]);
      if (token !== loadToken) return;
      recolorGrids(fc);
      applySummary(summary);
    } catch (e) {
      status(e.message, true);
    }
  };
  const refreshSoon = debounce(refresh, 400, 2000);
  const patrollersSoon = debounce(loadPatrollers, 1000, 5000);

  map.on('zoomend', debounce(async () => {
    const z = map.getZoom();
    if (loadedZoom === null || z <= loadedZoom + 1) return;
    const token = loadToken;
    try {
      const fc = await getJSON('/wall/grids' + qs({ parent: gw.grid, zoom: Math.round(z) }));
      if (token === loadToken) drawGrids(fc);
    } catch (e) {
      status(e.message, true);
    }
  }, 300));

  // --- live events ---------------------------------------------------------------------------------
  let source = null;
  let sourceGrid;

  function stream(code) {
    if (source && sourceGrid === code) return;
    const old = source;
    sourceGrid = code;
    const es = new EventSource(API + '/stream' + qs({ grid: code, kinds: 'incident,device,patroller' }));
    source = es;
    let broken = false;
    es.addEventListener('open', () => {
      if (old) old.close();
      status('');
      if (broken) refreshSoon();  // events may have been missed while the feed was down
      broken = false;
    });
    es.addEventListener('error', () => {
      if (source !== es) return;
      broken = true;
      status('live feed: reconnecting…', true);
      if (es.readyState === EventSource.CLOSED) reopen(es);  // the browser gave up (e.g. a 502 during a restart)
    });
    es.addEventListener('logout', () => window.location.assign('/login?next=' + encodeURIComponent(location.pathname + location.search)));
    es.addEventListener('incident', onIncident);
    es.addEventListener('device', (e) => onDevice(e));
    es.addEventListener('patroller', () => patrollersSoon());
    es.addEventListener('lagged', () => refreshSoon());
    if (old) setTimeout(() => { if (source !== old) old.close(); }, 5000);
  }

  let reopenDelay = 2000;
  function reopen(es) {
    es.close();
    setTimeout(async () => {
      if (source !== es) return;
      try {
        await getJSON('/me');  // a lost login goes to the login page; otherwise the server is back
        reopenDelay = 2000;
        source = null;
        stream(sourceGrid);
        refreshSoon();
      } catch (e) {
        reopenDelay = Math.min(reopenDelay * 2, 60000);
        reopen(es);
      }
    }, reopenDelay);
  }

  function onIncident(e) {
    let inc;
    try { inc = JSON.parse(e.data); } catch (err) { return; }
    gw.lastEventAt = Date.now();
    if (!inc || !inc.id || !inView(inc)) return;
    const known = incidentMarkers.has(inc.id);
    if (!isOpen(inc)) {
      removeMarker(inc.id);
      items = items.filter((i) => i.id !== inc.id);
      renderList();
    } else {
      upsertMarker(inc);
      const item = { id: inc.id, type: inc.type, light: inc.light, state: inc.state, grid: inc.grid, lon: inc.lon, lat: inc.lat,
        device_id: inc.device_id, assignee: inc.assignee, created_at: inc.created_at, escalation_level: inc.escalation_level,
        escalated: !!inc.escalated_at, difficulty: inc.difficulty };
      items = items.filter((i) => i.id !== inc.id).concat([item]).sort(itemKey);
      if (!known) {
        counts.open += 1;
        if (inc.light === 'yellow' || inc.light === 'red') counts[inc.light] += 1;
        renderCounters();
      }
      if (inc.event === 'created' && !announced.has(inc.id)) attention(inc);
      renderList();
      recolorDevices();
    }
    refreshSoon();
  }

  function onDevice(e) {
    let body;
    try { body = JSON.parse(e.data); } catch (err) { return; }
    gw.lastEventAt = Date.now();
    const d = body && devices.get(body.device_id);
    if (!d) return;
    d.state = body.state;
    recolorDevices();
  }

  // --- attention cue -------------------------------------------------------------------------------
  let audio = null;
  let alertTimer = null;

  function unlockAudio() {
    try {
      const Ctx = window.AudioContext || window.webkitAudioContext;
      if (!Ctx) return;
      if (!audio) audio = new Ctx();
      if (audio.state === 'suspended') audio.resume().catch(() => {});
    } catch (e) { audio = null; }
  }
  document.addEventListener('pointerdown', unlockAudio, { capture: true });
  document.addEventListener('keydown', unlockAudio, { capture: true });

  function beep() {
    try {
      if (!audio || audio.state !== 'running') return;
      const osc = audio.createOscillator();
      const gain = audio.createGain();
      osc.type = 'square';
      osc.frequency.value = 880;
      gain.gain.setValueAtTime(0.08, audio.currentTime);
      gain.gain.exponentialRampToValueAtTime(0.0001, audio.currentTime + 0.35);
      osc.connect(gain).connect(audio.destination);
      osc.start();
      osc.stop(audio.currentTime + 0.35);
    } catch (e) { /* never let the cue break the wall */ }
  }

  function attention(inc) {
    announced.add(inc.id);
    fresh.add(inc.id);
    setTimeout(() => { fresh.delete(inc.id); renderList(); }, 15000);
    const banner = $('gw-alert');
    banner.replaceChildren(el('b', { text: 'New incident: ' }), el('span', { text: inc.type }),
      el('span', { class: 'gw-meta', text: ' · ' + (inc.grid || '') }));
    banner.hidden = false;
    banner.classList.remove('gw-flash');
    void banner.offsetWidth; // restart the animation
    banner.classList.add('gw-flash');
    banner.dataset.incidentId = inc.id;
    clearTimeout(alertTimer);
    alertTimer = setTimeout(() => { banner.hidden = true; }, 30000);
    beep();
  }

  $('gw-alert').addEventListener('click', (e) => {
    const id = e.currentTarget.dataset.incidentId;
    e.currentTarget.hidden = true;
    if (id) focusIncident(id);
  });

  // --- start ---------------------------------------------------------------------------------------
  $('gw-user').textContent = cfg.username ? `${cfg.username} (${cfg.role})` : '';
  $('gw-heat-toggle').addEventListener('change', loadHeat);
  $('gw-heat-type').addEventListener('change', loadHeat);
  window.addEventListener('popstate', () => {
    const code = new URLSearchParams(location.search).get('grid');
    navigate(code || (cfg.role === 'admin' ? null : cfg.grid), false);
  });
  legend();
  map.invalidateSize();
  load(gw.grid, undefined).catch((e) => { if (e.name !== 'AbortError') status(e.message, true); });
  loadPatrollers();
  setInterval(loadPatrollers, (cfg.patrollers_every_s || 30) * 1000);
  setInterval(() => { if (gw.ready) refreshSoon(); }, 60000);  // a safety net under the live feed
})();
