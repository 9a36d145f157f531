/* gridwatch patroller phone view (/patroller): own position, assigned and nearby incidents, workflow
 * actions with note and photos, one-tap report, live updates over SSE. Plain JS, no build step; all
 * calls are same-origin and ride on the HttpOnly login cookie. Test hooks: window.gridwatchPatroller. */
(function () {
  "use strict";

  var ACTIONS = ["acknowledge", "arrive", "resolve"];
  var STATES = {
    reported: "reported 待受理", verifying: "verifying 核实", registered: "registered 立案", dispatched: "dispatched 派遣",
    returned: "returned 退回", acknowledged: "acknowledged 签收", extension_requested: "extension requested 延期",
    parked: "parked 挂账", resolved: "resolved 处理反馈", checking: "checking 核查", rework: "rework 返工",
    closed: "closed 结案", called_back: "called back 回访", archived: "archived 归档", cancelled: "cancelled 作废"
  };
  var LIGHTS = { green: "#2e7d32", yellow: "#f9a825", red: "#c62828" };
  var LIGHT_RANK = { red: 0, yellow: 1, green: 2 };
  var WAITING = { resolved: true, checking: true };  // open, but with the command center

  var hooks = window.gridwatchPatroller = {
    ready: false, me: null, assigned: [], nearby: [], position: null, positionSource: null, lastEventAt: 0, connected: false, positionsSent: 0
  };
  var cfg = readConfig();
  var OPEN = {};
  (cfg.open_states || []).forEach(function (s) { OPEN[s] = true; });

  var typeNames = {};      // service_code -> service_name
  var byId = {};           // incident id -> list item of the last refresh
  var knownAssigned = {};  // ids seen assigned to me (no banner for these)
  var serverPosition = null;
  var accuracy = null;     // metres, of the current position (when known)
  var detailId = null;
  var busy = false;
  var map = null, posLayer = null, incidentLayer = null, gridLayer = null, fitted = false;
  var refreshTimer = null, detailTimer = null, audio = null;

  function $(id) { return document.getElementById(id); }

  function readConfig() {
    try { return JSON.parse($("pv-config").textContent || "{}"); } catch (e) { return {}; }
  }

  function me() { return cfg.patroller; }

  // --- HTTP -------------------------------------------------------------------------------------
  function ApiError(message, status) { this.message = message; this.status = status; }

  function problemText(body, resp) {
    if (body && typeof body === "object") {
      if (body.detail) return String(body.detail);
      if (body.title) return String(body.title);
    }
    return "HTTP " + resp.status + " " + (resp.statusText || "");
  }

  function api(path, opts) {
    opts = opts || {};
    var headers = Object.assign({ Accept: "application/json" }, opts.headers || {});
    return fetch(path, Object.assign({}, opts, { headers: headers, credentials: "same-origin" })).then(function (resp) {
      if (resp.status === 401) {
        window.location.assign("/login?next=" + encodeURIComponent("/patroller"));
        throw new ApiError("your login has expired", 401);
      }
      return resp.text().then(function (text) {
        var body = null;
        try { body = text ? JSON.parse(text) : null; } catch (e) { body = null; }
        if (!resp.ok) throw new ApiError(problemText(body, resp), resp.status);
        return body;
      });
    }, function () {
      throw new ApiError("no connection to the server", 0);
    });
  }

  function postJSON(path, body) {
    return api(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  }

  function errorText(e) { return (e && e.message) ? e.message : String(e); }

  // --- small helpers ----------------------------------------------------------------------------
  function status(text, isError) {
    var el = $("pv-status");
    el.textContent = text || "";
    el.className = isError ? "error" : "";
  }

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function typeName(code) {
    if (!code) return "incident";
    return typeNames[code] || String(code).replace(/[._]/g, " ");
  }

  function stateName(s) { return STATES[s] || s || ""; }

  function distanceM(a, b) {
    if (!a || !b || typeof b.lat !== "number" || typeof b.lon !== "number") return null;
    var r = 6371008.8, rad = Math.PI / 180;
    var dlat = (b.lat - a.lat) * rad, dlon = (b.lon - a.lon) * rad;
    var h = Math.pow(Math.sin(dlat / 2), 2) + Math.cos(a.lat * rad) * Math.cos(b.lat * rad) * Math.pow(Math.sin(dlon / 2), 2);
    return 2 * r * Math.asin(Math.min(1, Math.sqrt(h)));
  }

  function distanceText(m) {
    if (m === null || m === undefined || isNaN(m)) return "distance unknown";
    return m < 1000 ? Math.round(m) + " m" : (m / 1000).toFixed(m < 10000 ? 1 : 0) + " km";
  }

  function dueText(deadline) {
    if (!deadline) return "";
    var t = Date.parse(deadline);
    if (isNaN(t)) return "";
    var min = Math.round((t - Date.now()) / 60000);
    return min >= 0 ? "due in " + span(min) : "overdue " + span(-min);
  }

  function span(min) {
    if (min < 60) return min + " min";
    if (min < 48 * 60) return Math.floor(min / 60) + " h " + (min % 60) + " min";
    return Math.round(min / 1440) + " d";
  }

  function isOwnReport(i) {
    var r = i && i.details && i.details.reporter;
    return !!(r && r.kind === "patroller" && r.patroller_id === me());
  }

  // --- map --------------------------------------------------------------------------------------
  function initMap() {
    if (!window.L) { status("the map library did not load", true); return; }
    map = L.map("pv-map", { zoomControl: true, attributionControl: !!cfg.tiles });
    if (cfg.tiles && cfg.tiles.url) {
      L.tileLayer(cfg.tiles.url, { maxZoom: 19, attribution: cfg.tiles.attribution || "" }).addTo(map);
    }
    map.setView([27.62, 113.85], 13);
    gridLayer = L.featureGroup().addTo(map);
    incidentLayer = L.featureGroup().addTo(map);
    posLayer = L.featureGroup().addTo(map);
  }

  function tooltipNode(text) { return el("span", null, text); }

  function drawGrids(fc) {
    if (!map || !fc || !fc.features) return;
    var fence = {};
    (hooks.me && hooks.me.grid_codes || []).forEach(function (c) { fence[c] = "main"; });
    (hooks.me && hooks.me.backup_grid_codes || []).forEach(function (c) { fence[c] = fence[c] || "backup"; });
    fc.features.forEach(function (f) {
      var p = f.properties || {};
      if (p.level !== 3) return;
      var backup = fence[p.code] === "backup";
      L.geoJSON(f, { style: { color: "#1565c0", weight: 2, dashArray: backup ? "6 4" : null, fillOpacity: backup ? 0.03 : 0.08 } })
        .bindTooltip(tooltipNode((p.name || p.code) + (backup ? " (backup)" : "")))
        .addTo(gridLayer);
    });
  }

  function drawPosition() {
    if (!map) return;
    posLayer.clearLayers();
    var p = hooks.position;
    if (!p) return;
    var gps = hooks.positionSource === "gps";
    if (accuracy) {
      L.circle([p.lat, p.lon], { radius: accuracy, color: "#1e88e5", weight: 1, fillOpacity: 0.1, interactive: false }).addTo(posLayer);
    }
    L.circleMarker([p.lat, p.lon], { radius: 8, color: "#fff", weight: 3, fillColor: gps ? "#1e88e5" : "#78909c", fillOpacity: 1 })
      .bindTooltip(tooltipNode(gps ? "me" : "me (last known position)"))
      .addTo(posLayer);
  }

  function drawIncidents(list) {
    if (!map) return;
    incidentLayer.clearLayers();
    list.forEach(function (i) {
      if (typeof i.lat !== "number" || typeof i.lon !== "number") return;
      var mine = i.assignee === me();
      L.circleMarker([i.lat, i.lon], {
        radius: mine ? 10 : 7, color: mine ? "#0d47a1" : "#424242", weight: mine ? 3 : 1,
        fillColor: LIGHTS[i.light] || "#9e9e9e", fillOpacity: 0.9
      }).bindTooltip(tooltipNode(typeName(i.type) + " · " + stateName(i.state)))
        .on("click", function () { openDetail(i.id); })
        .addTo(incidentLayer);
    });
  }

  function fitOnce() {
    if (!map || fitted) return;
    var bounds = L.latLngBounds([]);
    [gridLayer, incidentLayer, posLayer].forEach(function (g) {
      var b = g.getBounds();
      if (b.isValid()) bounds.extend(b);
    });
    if (bounds.isValid()) {
      map.fitBounds(bounds, { padding: [16, 16], maxZoom: 17 });
      fitted = true;
    }
  }

  // --- position ---------------------------------------------------------------------------------
  function setPosition(lon, lat, acc, source) {
    var old = hooks.position;
    hooks.position = { lon: lon, lat: lat };
    accuracy = acc || null;
    var moved = !old || hooks.positionSource !== source || distanceM(old, hooks.position) > 10;
    hooks.positionSource = source;
    if (moved) {
      drawPosition();
      if (hooks.ready) render();
    }
  }

  // The phone's GPS also goes to the server (OsmAnd protocol, as the patroller's own login), so that routing
  // and arrival detection know where the patroller is: at most every 30 s, or at once after moving 25 m.
  var lastSent = null;
  function reportPosition(p) {
    var here = { lon: p.coords.longitude, lat: p.coords.latitude, at: Date.now() };
    if (lastSent && here.at - lastSent.at < 30000 && distanceM(lastSent, here) < 25) return;
    var pid = hooks.me && (hooks.me.id || hooks.me.patroller);
    if (!pid) return;
    lastSent = here;
    var form = new URLSearchParams({ id: pid, lat: String(here.lat), lon: String(here.lon),
      timestamp: String(Math.round((p.timestamp || here.at) / 1000)) });
    if (p.coords.accuracy) form.set("accuracy", String(Math.round(p.coords.accuracy)));
    api("/ingest/osmand", { method: "POST", body: form }).then(function () { hooks.positionsSent += 1; }, function (e) {
      lastSent = null;
      status("could not send your position: " + e.message, true);
    });
  }

  function useServerPosition(reason) {
    if (hooks.positionSource === "gps") return;
    if (serverPosition) {
      setPosition(serverPosition.lon, serverPosition.lat, serverPosition.acc, "server");
      var when = serverPosition.ts ? " (" + new Date(serverPosition.ts).toLocaleString() + ")" : "";
      status("GPS unavailable (" + reason + "): showing your last position known to the server" + when + ".", true);
    } else {
      status("GPS unavailable (" + reason + ") and no position known to the server: distances are unknown.", true);
    }
  }

  /** Start watching the GPS; the promise settles on the first fix or error (or after 4 s). */
  function startGps() {
    return new Promise(function (done) {
      var settled = false;
      function settle() { if (!settled) { settled = true; done(); } }
      if (!navigator.geolocation) { useServerPosition("this browser has no location service"); settle(); return; }
      setTimeout(function () { if (!hooks.position) useServerPosition("no fix yet"); settle(); }, 4000);
      try {
        navigator.geolocation.watchPosition(function (p) {
          var wasFallback = hooks.positionSource !== "gps";
          setPosition(p.coords.longitude, p.coords.latitude, p.coords.accuracy, "gps");
          reportPosition(p);
          if (wasFallback && $("pv-status").className === "error" && /GPS/.test($("pv-status").textContent)) status("");
          settle();
        }, function (err) {
          var reason = err && err.code === 1 ? "permission denied" : err && err.code === 3 ? "timed out" : "position unavailable";
          if (hooks.positionSource === "gps") status("GPS lost (" + reason + "): showing the last fix.", true);
          else useServerPosition(reason);
          settle();
        }, { enableHighAccuracy: true, maximumAge: 15000, timeout: 30000 });
      } catch (e) {
        useServerPosition("location service failed");
        settle();
      }
    });
  }

  // --- lists ------------------------------------------------------------------------------------
  function card(i) {
    var li = el("li", "card");
    li.setAttribute("data-incident-id", i.id);
    li.setAttribute("role", "button");
    li.tabIndex = 0;
    li.style.borderLeftColor = LIGHTS[i.light] || "#9e9e9e";
    var top = el("div", "card-top");
    top.appendChild(el("span", "light light-" + (i.light || "none"), i.light || "no light"));
    top.appendChild(el("strong", "type", typeName(i.type)));
    li.appendChild(top);
    var meta = el("div", "card-meta");
    meta.appendChild(el("span", "state", stateName(i.state) + (i.arrived_at && i.state === "acknowledged" ? " · arrived" : "")));
    meta.appendChild(el("span", "dist", distanceText(distanceM(hooks.position, i))));
    var due = dueText(i.deadline);
    if (due) meta.appendChild(el("span", "due", due));
    li.appendChild(meta);
    if (i.note) li.appendChild(el("div", "note", i.note));
    li.addEventListener("click", function () { openDetail(i.id); });
    li.addEventListener("keydown", function (ev) { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); openDetail(i.id); } });
    return li;
  }

  function byDistance(a, b) {
    var da = distanceM(hooks.position, a), db = distanceM(hooks.position, b);
    if (da === null || db === null) return (b.created_at || "").localeCompare(a.created_at || "");
    return da - db;
  }

  function fill(listId, countId, items, empty) {
    var ul = $(listId);
    ul.textContent = "";
    items.forEach(function (i) { ul.appendChild(card(i)); });
    if (!items.length) ul.appendChild(el("li", "empty", empty));
    $(countId).textContent = String(items.length);
  }

  function render() {
    var all = Object.keys(byId).map(function (k) { return byId[k]; });
    var mine = all.filter(function (i) { return i.assignee === me() && OPEN[i.state]; });
    var near = all.filter(function (i) { return i.assignee !== me() && OPEN[i.state]; });
    mine.sort(function (a, b) { // work to do first (red, yellow, green), then what waits for the center's check
      var wa = WAITING[a.state] ? 1 : 0, wb = WAITING[b.state] ? 1 : 0;
      var ra = LIGHT_RANK[a.light] === undefined ? 3 : LIGHT_RANK[a.light];
      var rb = LIGHT_RANK[b.light] === undefined ? 3 : LIGHT_RANK[b.light];
      return wa - wb || ra - rb || byDistance(a, b);
    });
    near.sort(byDistance);
    fill("pv-assigned", "pv-assigned-count", mine, "Nothing assigned to you.");
    fill("pv-nearby", "pv-nearby-count", near, "No other open incidents in your grids.");
    hooks.assigned = mine.map(function (i) { return i.id; });
    hooks.nearby = near.map(function (i) { return i.id; });
    drawIncidents(mine.concat(near));
  }

  function refresh() {
    var qs = Object.keys(OPEN).map(function (s) { return "status=" + encodeURIComponent(s); }).join("&");
    return api("/api/v1/incidents?" + qs + (qs ? "&" : "") + "limit=500").then(function (data) {
      byId = {};
      (data && data.items || []).forEach(function (i) { byId[i.id] = i; });
      var fresh = [];
      Object.keys(byId).forEach(function (id) {
        var i = byId[id];
        if (i.assignee !== me() || !OPEN[i.state]) return;
        if (hooks.ready && !knownAssigned[id] && !isOwnReport(i)) fresh.push(i);
        knownAssigned[id] = true;
      });
      render();
      fresh.forEach(announce);
      if ($("pv-status").className === "error" && /connection|refresh/.test($("pv-status").textContent)) status("");
    }, function (e) {
      status("Could not refresh the incidents: " + errorText(e), true);
    });
  }

  function scheduleRefresh(delay) {
    if (refreshTimer) clearTimeout(refreshTimer);
    refreshTimer = setTimeout(function () { refreshTimer = null; refresh(); }, delay === undefined ? 400 : delay);
  }

  // --- alerts: banner, vibration, beep ---------------------------------------------------------------
  function unlockAudio() {
    try {
      if (!audio) {
        var AC = window.AudioContext || window.webkitAudioContext;
        if (AC) audio = new AC();
      }
      if (audio && audio.state === "suspended") audio.resume().catch(function () {});
    } catch (e) { audio = null; }
  }

  function beep() {
    try {
      if (!audio || audio.state !== "running") return;
      var t = audio.currentTime;
      [0, 0.25].forEach(function (offset) {
        var osc = audio.createOscillator(), gain = audio.createGain();
        osc.frequency.value = 880;
        gain.gain.setValueAtTime(0.0001, t + offset);
        gain.gain.exponentialRampToValueAtTime(0.3, t + offset + 0.02);
        gain.gain.exponentialRampToValueAtTime(0.0001, t + offset + 0.18);
        osc.connect(gain);
        gain.connect(audio.destination);
        osc.start(t + offset);
        osc.stop(t + offset + 0.2);
      });
    } catch (e) { /* sound is a nicety */ }
  }

  function vibrate() {
    try {
      // without a tap on the page Chrome refuses vibrate() and logs an intervention: only call it after one
      var active = !navigator.userActivation || navigator.userActivation.hasBeenActive;
      if (active && typeof navigator.vibrate === "function") navigator.vibrate([200, 100, 200]);
    } catch (e) { /* ignore */ }
  }

  function announce(i) {
    knownAssigned[i.id] = true;
    var banner = $("pv-banner");
    banner.textContent = "";
    banner.appendChild(el("strong", null, "New incident assigned to you: "));
    banner.appendChild(document.createTextNode(typeName(i.type) + " · " + distanceText(distanceM(hooks.position, i)) + " — tap to open"));
    banner.setAttribute("data-incident-id", i.id);
    banner.hidden = false;
    vibrate();
    beep();
  }

  function onIncidentEvent(ev) {
    var data;
    try { data = JSON.parse(ev.data); } catch (e) { return; }
    hooks.lastEventAt = Date.now();
    if (!data || typeof data !== "object") return;
    if (hooks.ready && data.id && data.assignee === me() && OPEN[data.state] && !knownAssigned[data.id] && !isOwnReport(data)) {
      announce(data);
    }
    scheduleRefresh();
    if (detailId && data.id === detailId) {
      if (detailTimer) clearTimeout(detailTimer);
      detailTimer = setTimeout(function () { detailTimer = null; if (detailId === data.id && !busy) loadDetail(data.id, true); }, 400);
    }
  }

  function setConnected(on) {
    hooks.connected = on;
    var dot = $("pv-conn");
    dot.className = "dot " + (on ? "on" : "off");
    dot.title = on ? "live updates connected" : "live updates disconnected (retrying)";
  }

  function connect() {
    if (!window.EventSource) { setConnected(false); setInterval(refresh, 15000); return; }
    var es = new EventSource("/api/v1/stream?kinds=incident");
    es.onopen = function () {
      var wasOff = !hooks.connected;
      setConnected(true);
      if (wasOff && hooks.ready) scheduleRefresh(0); // catch up on what happened while disconnected
    };
    es.onerror = function () {
      setConnected(false);
      if (es.readyState === 2) { // closed for good (e.g. the login expired): reconnect later
        setTimeout(function () { api("/api/v1/me").then(connect, connect); }, 10000);
      }
    };
    es.addEventListener("incident", onIncidentEvent);
    es.addEventListener("lagged", function () { scheduleRefresh(); });
    es.addEventListener("logout", function () { es.close(); window.location.assign("/login?next=%2Fpatroller"); });
  }

  // --- detail sheet -----------------------------------------------------------------------------
  function openSheet(id) {
    ["pv-detail", "pv-report-form"].forEach(function (s) { $(s).hidden = s !== id; });
    document.body.classList.add("sheet-open");
  }

  function closeSheet(id) {
    $(id).hidden = true;
    if (id === "pv-detail") detailId = null;
    if ($("pv-detail").hidden && $("pv-report-form").hidden) document.body.classList.remove("sheet-open");
  }

  function openDetail(id) {
    if (!id) return;
    if (detailId !== id) {
      $("pv-note").value = "";
      $("pv-photo").value = "";
      $("pv-detail-status").textContent = "";
    }
    detailId = id;
    openSheet("pv-detail");
    loadDetail(id, false);
  }

  function row(dl, label, value) {
    if (value === null || value === undefined || value === "") return;
    dl.appendChild(el("dt", null, label));
    dl.appendChild(el("dd", null, String(value)));
  }

  function loadDetail(id, quiet) {
    var body = $("pv-detail-body");
    if (!quiet) {
      body.textContent = "";
      body.appendChild(el("p", "muted", "Loading…"));
      showActions([]);
    }
    return api("/api/v1/incidents/" + encodeURIComponent(id)).then(function (d) {
      if (detailId !== id) return;
      body.textContent = "";
      body.setAttribute("data-incident-id", d.id);
      var h = el("h2", null, typeName(d.type));
      h.style.borderLeftColor = LIGHTS[d.light] || "#9e9e9e";
      body.appendChild(h);
      var dl = el("dl", "facts");
      row(dl, "State", stateName(d.state) + (d.arrived_at && d.state === "acknowledged" ? " · arrived" : ""));
      row(dl, "Light", d.light || "none");
      row(dl, "Distance", distanceText(distanceM(hooks.position, d)));
      row(dl, "Deadline", d.deadline ? new Date(d.deadline).toLocaleString() + " (" + dueText(d.deadline) + ")" : "");
      row(dl, "Assignee", d.assignee === me() ? "me" : d.assignee || "nobody");
      row(dl, "Grid", d.grid);
      row(dl, "Building", d.building);
      row(dl, "Device", d.device_id);
      row(dl, "Alarms", d.alarm_count > 1 ? d.alarm_count : "");
      row(dl, "Note", d.note);
      row(dl, "Id", d.id);
      body.appendChild(dl);
      var seen = {};
      var photos = (d.details && d.details.photos || []).filter(function (p) { // stored ones, once each (not outside URLs)
        if (!p || typeof p.sha256 !== "string" || seen[p.sha256] || !(p.path || p.content_type)) return false;
        seen[p.sha256] = true;
        return true;
      });
      if (photos.length) {
        var strip = el("div", "photos");
        photos.forEach(function (p) {
          var img = el("img");
          img.alt = "photo";
          img.loading = "lazy";
          img.src = "/api/v1/incidents/" + encodeURIComponent(d.id) + "/photos/" + encodeURIComponent(p.sha256);
          strip.appendChild(img);
        });
        body.appendChild(strip);
      }
      var hist = (d.history || []).slice(-4).reverse();
      if (hist.length) {
        var ul = el("ul", "history");
        hist.forEach(function (e) {
          ul.appendChild(el("li", null, new Date(e.at).toLocaleTimeString() + " " + e.action + (e.note ? ": " + e.note : "")));
        });
        body.appendChild(ul);
      }
      var allowed = (d.allowed_actions || []).filter(function (a) { return ACTIONS.indexOf(a) >= 0; });
      showActions(allowed);
      if (!allowed.length && !quiet) {
        var why = d.assignee === me() ? "No action for you in this state." : "Assigned to someone else: view only.";
        $("pv-detail-status").textContent = why;
      }
    }, function (e) {
      if (detailId !== id) return;
      body.textContent = "";
      body.appendChild(el("p", "error", "Could not load the incident: " + errorText(e)));
    });
  }

  function showActions(allowed) {
    var buttons = document.querySelectorAll("#pv-actions button[data-action]");
    Array.prototype.forEach.call(buttons, function (b) {
      b.hidden = allowed.indexOf(b.getAttribute("data-action")) < 0;
      b.disabled = busy;
    });
  }

  function setBusy(on) {
    busy = on;
    Array.prototype.forEach.call(document.querySelectorAll("#pv-actions button, #pv-report-submit"), function (b) { b.disabled = on; });
  }

  function uploadPhotos(id, files) {
    if (!files || !files.length) return Promise.resolve([]);
    var form = new FormData();
    Array.prototype.forEach.call(files, function (f) { form.append("photos", f, f.name || "photo.jpg"); });
    return api("/api/v1/incidents/" + encodeURIComponent(id) + "/photos", { method: "POST", body: form }).then(function (r) {
      return (r && r.photos || []).map(function (p) { return p.sha256; });
    });
  }

  function act(action) {
    var id = detailId;
    if (!id || busy) return;
    var out = $("pv-detail-status");
    setBusy(true);
    out.className = "sheet-status";
    out.textContent = "Sending…";
    var note = $("pv-note").value.trim();
    var files = $("pv-photo").files; // the same FileList until the selection changes
    uploadPhotos(id, files).then(function (hashes) {
      var body = { action: action };
      if (note) body.note = note;
      if (action === "resolve" && hashes.length) body.params = { photos: hashes };
      return postJSON("/api/v1/incidents/" + encodeURIComponent(id) + "/actions", body);
    }).then(function (r) {
      out.textContent = action + ": done (" + stateName(r && r.state) + ")";
      status(typeName(r && r.type) + " — " + action + " done.");
      // clear what was sent, not what was typed or picked while it was on its way (the next step's note)
      if (detailId === id && $("pv-note").value.trim() === note) $("pv-note").value = "";
      if (detailId === id && $("pv-photo").files === files) $("pv-photo").value = "";
      if (r && r.id) byId[r.id] = Object.assign(byId[r.id] || {}, r);
      render();
      scheduleRefresh(0);
      setBusy(false);
      return loadDetail(id, true);
    }).catch(function (e) {
      setBusy(false);
      out.className = "sheet-status error";
      out.textContent = action + " failed: " + errorText(e);
      status(action + " failed: " + errorText(e), true);
    });
  }

  // --- one-tap report ---------------------------------------------------------------------------
  function openReport() {
    unlockAudio();
    var where = $("pv-report-where");
    var p = hooks.position;
    where.className = p ? "" : "error";
    where.textContent = p
      ? "At " + p.lat.toFixed(5) + ", " + p.lon.toFixed(5) + (hooks.positionSource === "gps" ? " (GPS)" : " (last known position)")
      : "No position yet: allow location access or wait for a GPS fix.";
    $("pv-report-status").textContent = "";
    openSheet("pv-report-form");
  }

  function submitReport(ev) {
    ev.preventDefault();
    if (busy) return;
    var out = $("pv-report-status");
    var p = hooks.position;
    out.className = "sheet-status error";
    if (!p) { out.textContent = "No position yet: cannot report."; return; }
    var type = $("pv-report-type").value;
    if (!type) { out.textContent = "Choose a type."; return; }
    var note = $("pv-report-note").value.trim();
    var file = $("pv-report-photo").files[0];
    var request;
    if (file) {
      var form = new FormData();
      form.append("lon", String(p.lon));
      form.append("lat", String(p.lat));
      form.append("type", type);
      if (note) form.append("note", note);
      form.append("photos", file, file.name || "photo.jpg");
      request = api("/api/v1/reports", { method: "POST", body: form });
    } else {
      var body = { lon: p.lon, lat: p.lat, type: type };
      if (note) body.note = note;
      request = postJSON("/api/v1/reports", body);
    }
    setBusy(true);
    out.className = "sheet-status";
    out.textContent = "Sending…";
    request.then(function (r) {
      setBusy(false);
      if (r && r.id) {
        knownAssigned[r.id] = true;
        byId[r.id] = r;
      }
      $("pv-report-note").value = "";
      $("pv-report-photo").value = "";
      out.textContent = "";
      closeSheet("pv-report-form");
      status("Report sent: " + typeName(r && r.type) + " (" + (r && r.id) + ").");
      render();
      scheduleRefresh(0);
    }, function (e) {
      setBusy(false);
      out.className = "sheet-status error";
      out.textContent = "Report failed: " + errorText(e);
      status("Report failed: " + errorText(e), true);
    });
  }

  function fillTypes(services) {
    var select = $("pv-report-type");
    select.textContent = "";
    (services || []).forEach(function (s) {
      typeNames[s.service_code] = s.service_name;
      var opt = el("option", null, s.service_name || s.service_code);
      opt.value = s.service_code;
      select.appendChild(opt);
    });
  }

  // --- start ------------------------------------------------------------------------------------
  function topBar(patroller) {
    var name = (patroller && patroller.name) || cfg.username || me();
    $("pv-name").textContent = name + (patroller && patroller.name ? " · " + me() : "");
    var duty = $("pv-duty");
    var on = patroller && patroller.on_duty;
    duty.textContent = patroller ? (on ? "on duty 在岗" : "off duty") : "";
    duty.className = "chip " + (on ? "on" : "off");
  }

  function wire() {
    document.addEventListener("pointerdown", unlockAudio, { passive: true });
    document.addEventListener("keydown", unlockAudio);
    $("pv-report").addEventListener("click", openReport);
    $("pv-report-form").addEventListener("submit", submitReport);
    Array.prototype.forEach.call(document.querySelectorAll("[data-close]"), function (b) {
      b.addEventListener("click", function () { closeSheet(b.getAttribute("data-close")); });
    });
    Array.prototype.forEach.call(document.querySelectorAll("#pv-actions button[data-action]"), function (b) {
      b.addEventListener("click", function () { act(b.getAttribute("data-action")); });
    });
    $("pv-banner").addEventListener("click", function () {
      var id = this.getAttribute("data-incident-id");
      this.hidden = true;
      openDetail(id);
    });
    document.addEventListener("visibilitychange", function () { if (!document.hidden && hooks.ready) scheduleRefresh(0); });
  }

  function settled(p) { return p.then(function (v) { return { ok: true, value: v }; }, function (e) { return { ok: false, error: e }; }); }

  function start() {
    setConnected(false);
    wire();
    initMap();
    Promise.all([
      settled(api("/api/v1/me")),
      settled(api("/api/v1/patrollers")),
      settled(api("/api/v1/open311/services.json")),
      settled(api("/api/v1/grids?level=3"))
    ]).then(function (r) {
      var who = r[0].ok ? r[0].value : { username: cfg.username, role: "patroller", patroller: me() };
      if (who.patroller) cfg.patroller = who.patroller;
      var mine = r[1].ok ? (r[1].value.items || []).filter(function (p) { return p.id === me(); })[0] : null;
      hooks.me = Object.assign({}, who, mine ? {
        id: mine.id, name: mine.name, on_duty: mine.on_duty, grid_codes: mine.grid_codes, backup_grid_codes: mine.backup_grid_codes
      } : { id: me() });
      serverPosition = mine && mine.position ? mine.position : null;
      topBar(mine);
      if (r[2].ok) fillTypes(r[2].value); else status("Could not load the report types: " + errorText(r[2].error), true);
      if (r[3].ok) drawGrids(r[3].value);
      return startGps();
    }).then(refresh).then(function () {
      fitOnce();
      hooks.ready = true;
      connect();
      setInterval(function () { scheduleRefresh(0); }, 60000); // a safety net under the live stream
    });
  }

  function readyToStart() {
    try { start(); } catch (e) { status("The page failed to start: " + errorText(e), true); }
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", readyToStart);
  else readyToStart();
})();
