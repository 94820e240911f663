// The dashboard page: one EventSource on /api/stream brings the whole view each time it
// changes; each section is re-rendered only when its HTML changes (so a button under the
// pointer stays put), and the forms are built once, so what a person typed survives.
"use strict";

const $ = (selector) => document.querySelector(selector);
const rendered = {};
const transitions = {}; // group -> [{display, owner, time}], the page's own memory
let latest = null;

function esc(value) {
  if (value === null || value === undefined) return "";
  return String(value).replace(/[&<>"']/g, (c) => ({
    "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;",
  })[c]);
}

function dash(value) {
  return value === null || value === undefined || value === "" ? "-" : esc(value);
}

function stateCell(state, extra) {
  const name = esc(state || "unknown");
  return `<td class="state state-${name}" data-state="${name}">${name}${extra || ""}</td>`;
}

function clock(seconds) {
  const d = new Date(seconds * 1000);
  return d.toLocaleTimeString([], { hour12: false }) + "." + String(d.getMilliseconds()).padStart(3, "0");
}

function bytes(n) {
  if (n === null || n === undefined) return "-";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function setHtml(id, html) {
  if (rendered[id] === html) return;
  rendered[id] = html;
  document.getElementById(id).innerHTML = html;
}

function table(headings, rows) {
  const head = headings.map((h) => `<th>${esc(h)}</th>`).join("");
  return `<table><thead><tr>${head}</tr></thead><tbody>${rows.join("")}</tbody></table>`;
}

// -- sections ------------------------------------------------------------------------------

function renderSummary(view) {
  $("#cluster-name").textContent = view.cluster;
  const q = view.quorum;
  let text = "no node has answered yet";
  if (q && view.view) {
    const witness = q.witness ? `, witness ${q.witness} held by ${q.witness_owner || "nobody"}` : "";
    text = `epoch ${view.view.epoch}, coordinator ${view.view.coordinator || "-"}, quorum ` +
      `${q.has ? "yes" : "NO"} (${q.votes}/${q.total} votes, ${q.needed} needed${witness}); ` +
      `as ${view.source || "?"} sees it`;
  }
  $("#summary").textContent = text;
  const stale = $("#stale");
  stale.hidden = !view.stale;
  stale.textContent = view.stale ? `Showing the last view: ${view.error || "no node answered"}` : "";
  setHtml("quorum", q ? `<p>Quorum model <b>${esc(q.model)}</b>: ${q.has ? "quorum held" : "<span class='error-text'>no quorum</span>"}, ` +
    `${q.votes} of ${q.total} votes (${q.needed} needed)` +
    (q.witness ? `; witness disk <b>${esc(q.witness)}</b> owned by <b data-witness-owner>${dash(q.witness_owner)}</b>` : "") +
    (view.fenced ? "; <span class='error-text'>answering node FENCED</span>" : "") + "</p>" : "");
}

function renderNodes(view) {
  const rows = view.nodes.map((n) => {
    const paused = n.state === "paused";
    const button = paused
      ? `<button class="resume" data-node="${esc(n.name)}">Resume</button>`
      : `<button class="pause" data-node="${esc(n.name)}"${n.state === "down" ? " disabled" : ""}>Pause</button>`;
    return `<tr data-node="${esc(n.name)}">` +
      `<td>${esc(n.name)}</td>${stateCell(n.state)}` +
      `<td>${n.member ? "yes" : "no"}</td><td>${dash(n.epoch)}</td>` +
      `<td>${n.state === "down" || n.quorum === null || n.quorum === undefined ? "-" : n.quorum ? "yes" : "no"}</td>` +
      `<td>${dash(n.coordinator)}</td><td class="groups">${dash(n.groups.join(", "))}</td>` +
      `<td class="muted">${esc(n.key)}</td><td>${button}</td></tr>`;
  });
  setHtml("nodes", table(["node", "state", "member", "epoch", "quorum", "coordinator", "groups", "key", ""], rows));
}

function noteTransitions(view) {
  for (const g of view.groups) {
    const list = transitions[g.name] || (transitions[g.name] = []);
    const last = list[list.length - 1];
    if (!last || last.display !== g.display || last.owner !== g.owner) {
      list.push({ display: g.display, owner: g.owner, time: view.time });
      if (list.length > 50) list.shift();
    }
  }
}

function renderGroups(view) {
  const rows = view.groups.map((g) => {
    const list = transitions[g.name] || [];
    const trail = list.map((t) => `${t.display}@${t.owner || "-"}`).join(" ");
    const detail = g.display !== g.state ? ` <span class="muted">(${esc(g.state)})</span>` : "";
    const failure = g.failure ? `<div class="error-text">${esc(g.failure)}</div>` : "";
    return `<tr data-group="${esc(g.name)}" data-display="${esc(g.display)}" data-owner="${esc(g.owner || "")}" data-transitions="${esc(trail)}">` +
      `<td>${esc(g.name)}</td>${stateCell(g.display, detail)}` +
      `<td class="owner">${dash(g.owner)}</td><td>${dash(g.preferred.join(", "))}</td>` +
      `<td>${dash(g.export)}</td><td>${esc(g.disks.join(", "))}</td>` +
      `<td>${g.move ? "→ " + esc(g.move) : "-"}</td><td class="reason">${failure}</td></tr>`;
  });
  setHtml("groups", table(["group", "state", "owner", "preferred", "export", "disks", "move", ""], rows));
  fillSelect($("#move-group"), view.groups.map((g) => g.name));
  fillSelect($("#move-node"), view.nodes.map((n) => n.name));
}

function fillSelect(select, names) {
  const have = Array.from(select.options).map((o) => o.value);
  if (have.join("\n") === names.join("\n")) return;
  const chosen = select.value;
  select.innerHTML = names.map((n) => `<option value="${esc(n)}">${esc(n)}</option>`).join("");
  if (names.includes(chosen)) select.value = chosen;
}

const SERIES = [
  { index: 4, color: "#c62828", axis: "left", name: "write MiB/s" },
  { index: 3, color: "#2456b3", axis: "left", name: "read MiB/s" },
  { index: 5, color: "#b7791f", axis: "right", dash: true, name: "latency ms" },
];

function renderCharts(view) {
  const box = $("#charts");
  for (const g of view.groups) {
    let card = box.querySelector(`[data-chart="${CSS.escape(g.name)}"]`);
    if (!card) {
      card = document.createElement("div");
      card.className = "chart";
      card.dataset.chart = g.name;
      card.innerHTML = `<div><b>${esc(g.name)}</b> <span class="owner muted"></span></div>` +
        `<canvas width="460" height="150" style="width:460px;height:150px"></canvas>` +
        `<div class="legend"></div>`;
      box.appendChild(card);
    }
    const points = view.chart[g.name] || [];
    const r = g.rates;
    card.querySelector(".owner").textContent = g.owner ? `on ${g.owner}` : "not running";
    const values = r ? [r.write_mib, r.read_mib, r.latency_ms] : [null, null, null];
    card.querySelector(".legend").innerHTML = SERIES.map((s, i) =>
      `<span><i class="swatch" style="background:${s.color}"></i>${s.name} ` +
      `<b>${values[i] === null ? "-" : values[i].toFixed(2)}</b></span>`).join("") +
      (r ? `<span class="muted">${r.read_ops.toFixed(0)} reads/s, ${r.write_ops.toFixed(0)} writes/s</span>` : "");
    card.dataset.points = String(points.length);
    card.dataset.writeOps = r ? r.write_ops.toFixed(3) : "0";
    card.dataset.writeMib = r ? r.write_mib.toFixed(3) : "0";
    drawChart(card.querySelector("canvas"), points, SERIES, { left: "MiB/s", right: "ms" });
  }
}

const PR_TYPES = {
  write_exclusive: "WE",
  exclusive_access: "EA",
  write_exclusive_registrants_only: "WE-RO",
  exclusive_access_registrants_only: "EA-RO",
  write_exclusive_all_registrants: "WE-AR",
  exclusive_access_all_registrants: "EA-AR",
};

function renderDisks(view) {
  const rows = view.disks.map((d) => {
    const keys = {};
    for (const k of d.keys) keys[k.node || k.key] = (keys[k.node || k.key] || 0) + 1;
    const registered = Object.entries(keys).map(([k, c]) => (c > 1 ? `${esc(k)}×${c}` : esc(k))).join(" ");
    const holder = d.error ? `<span class="error-text">${esc(d.error)}</span>` : dash(d.holder || d.holder_key);
    return `<tr data-disk="${esc(d.name)}"><td title="${esc(d.device)}">${esc(d.name)}${d.witness ? " <span class='muted'>(witness)</span>" : ""}</td>` +
      `<td>${dash(d.group)}</td><td class="holder">${holder}</td>` +
      `<td title="${esc(d.type)}">${dash(PR_TYPES[d.type] || d.type)}</td>` +
      `<td>${registered || "-"}</td></tr>`;
  });
  setHtml("disks", table(["disk", "group", "reservation holder", "type", "registered keys"], rows));
}

function renderPaths(view) {
  const parts = Object.entries(view.paths).map(([node, answer]) => {
    if (answer.error) {
      return `<div class="node-paths" data-paths-node="${esc(node)}"><h3>${esc(node)}</h3>` +
        `<span class="error-text">${esc(answer.error)}</span></div>`;
    }
    const rows = answer.maps.map((m) => {
      const paths = Object.entries(m.paths).map(([state, count]) => `${esc(state)}: ${count}`).join(", ");
      return `<tr><td>${dash(m.disk)}</td><td>${dash(paths)}</td><td>${m.queued ?? 0}</td>` +
        `<td>${dash(m.pr_key)}</td><td class="muted">${esc(m.alias)}</td></tr>`;
    });
    return `<div class="node-paths" data-paths-node="${esc(node)}"><h3>${esc(node)}</h3>` +
      table(["disk", "paths", "queued", "key", "map"], rows) + "</div>";
  });
  const down = view.nodes.filter((n) => !(n.name in view.paths)).map((n) => esc(n.name));
  setHtml("paths", parts.join("") + (down.length ? `<p class="muted">not asked (down): ${down.join(", ")}</p>` : ""));
}

function renderVolumes(view) {
  const box = $("#volumes");
  if (!view.volumes.length) {
    setHtml("volumes", "<p class='muted'>no group carries a snapshot volume</p>");
    return;
  }
  for (const v of view.volumes) {
    let card = box.querySelector(`[data-volume="${CSS.escape(v.volume)}"]`);
    if (!card) {
      card = document.createElement("div");
      card.className = "volume";
      card.dataset.volume = v.volume;
      card.innerHTML = `<h3>${esc(v.volume)}</h3><div class="info"></div><div class="snapshots"></div>` +
        `<form class="action create-form">New snapshot <input class="snapshot-name" placeholder="name" ` +
        `aria-label="snapshot name" size="16"> <button type="submit" class="create-snapshot">Create</button></form>`;
      box.appendChild(card);
    }
    const i = v.info;
    let info = i
      ? `${bytes(i.size_bytes)} volume, snapshot space ${bytes(i.snapshot_used_bytes)} of ${bytes(i.reserve_bytes)} ` +
        `(${i.snapshot_used_percent.toFixed(1)} %), ${bytes(i.free_bytes)} free; ${i.snapshots} of ${i.max_snapshots} snapshots; ` +
        `held by ${esc(i.holder ? i.holder.host : "-")}` +
        (i.schedule ? `; schedule every ${i.schedule.interval} s, keep ${i.schedule.keep}` : "")
      : "<span class='muted'>not read yet</span>";
    if (v.error) info += ` <span class="error-text">(${esc(v.error)})</span>`;
    setPart(card.querySelector(".info"), info);
    const rows = (v.snapshots || []).slice().reverse().map((s) =>
      `<tr data-snapshot="${esc(s.name)}"><td>${esc(s.name)}</td><td>${clock(s.created)}</td>` +
      `<td>${esc(s.state)}</td><td>${s.scheduled ? "scheduled" : "manual"}${s.keep ? ", keep" : ""}</td>` +
      `<td>${bytes(s.used_bytes)}</td><td><button class="delete-snapshot" data-volume="${esc(v.volume)}" ` +
      `data-name="${esc(s.name)}">Delete</button></td></tr>`);
    setPart(card.querySelector(".snapshots"), rows.length
      ? table(["snapshot", "created", "state", "kind", "own space", ""], rows)
      : "<p class='muted'>no snapshots</p>");
  }
}

function setPart(element, html) {
  if (element.dataset.html === html) return;
  element.dataset.html = html;
  element.innerHTML = html;
}

function renderTarget(view) {
  const t = view.target;
  if (!t) {
    setHtml("target", "<p class='muted'>no target control socket given (--target-control)</p>");
    return;
  }
  if (t.error) {
    setHtml("target", `<p class="error-text">${esc(t.error)}</p>`);
    return;
  }
  const sessions = t.sessions.filter((s) => !s.discovery).map((s) =>
    `<tr data-session="${esc(s.peer)}"><td>${esc(s.initiator)}</td><td>${esc(s.isid)}</td>` +
    `<td>${esc(s.target)}</td><td>${esc(s.portal_group)}</td><td>${esc(s.peer)}</td><td>${s.outstanding_commands}</td></tr>`);
  const luns = [];
  for (const [target, list] of Object.entries(t.luns)) {
    for (const l of list) {
      luns.push(`<tr data-lun="${esc(l.lun)}"><td>${esc(target)}</td><td>${esc(l.lun)}</td><td>${bytes(l.size_bytes)}</td>` +
        `<td>${esc(l.backstore)}</td><td>${esc(l.health)}</td><td class="muted">${dash(l.path)}</td></tr>`);
    }
  }
  setHtml("target", `<h3>${sessions.length} sessions</h3>` +
    table(["initiator", "ISID", "target", "TPG", "peer", "outstanding"], sessions) +
    `<h3>${luns.length} LUNs</h3>` + table(["target", "LUN", "size", "backstore", "health", "path"], luns));
}

function renderEvents(view) {
  const rows = view.events.map((e) => {
    const about = ["group", "disk", "peer", "epoch"].filter((k) => k in e).map((k) => `${k}=${esc(e[k])}`).join(" ");
    return `<tr><td>${clock(e.time)}</td><td>${esc(e.node)}</td><td>${esc(e.kind)}</td>` +
      `<td>${about || "-"}</td><td class="reason">${esc(e.reason)}</td></tr>`;
  });
  setHtml("events", table(["time", "node", "event", "about", "reason"], rows));
}

function render(view) {
  latest = view;
  noteTransitions(view);
  renderSummary(view);
  renderNodes(view);
  renderGroups(view);
  renderCharts(view);
  renderDisks(view);
  renderPaths(view);
  renderVolumes(view);
  renderTarget(view);
  renderEvents(view);
  document.body.dataset.version = String(view.version);
}

// -- actions -------------------------------------------------------------------------------

function showResult(kind, text) {
  const box = $("#result");
  box.hidden = false;
  box.className = kind;
  box.textContent = `${clock(Date.now() / 1000)} ${text}`;
}

// The node's answer or refusal, shown as it came; true when it was done.
async function act(what, method, url, body) {
  showResult("pending", `${what}…`);
  try {
    const response = await fetch(url, {
      method,
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body || {}),
    });
    const answer = await response.json();
    if (answer.ok) {
      showResult("ok", `${what}: ${describe(answer.answer)} (answered by ${answer.node})`);
      return true;
    }
    showResult("error", `${what} refused: ${answer.error}`);
  } catch (error) {
    showResult("error", `${what} failed: ${error}`);
  }
  return false;
}

function describe(answer) {
  if (answer && answer.group && answer.to) return `${answer.from || "no node"} → ${answer.to}: ${answer.state}`;
  if (answer && answer.node !== undefined && answer.paused !== undefined) return answer.paused ? "paused" : "resumed";
  if (answer && answer.deleted) return `deleted ${answer.deleted}`;
  if (answer && answer.name) return `created ${answer.name}`;
  return JSON.stringify(answer);
}

$("#move-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const group = $("#move-group").value;
  const node = $("#move-node").value;
  act(`move ${group} to ${node}`, "POST", "/api/move", { group, node });
});

$("#nodes").addEventListener("click", (event) => {
  const button = event.target.closest("button[data-node]");
  if (!button) return;
  const node = button.dataset.node;
  const action = button.classList.contains("resume") ? "resume" : "pause";
  act(`${action} ${node}`, "POST", `/api/nodes/${encodeURIComponent(node)}/${action}`);
});

$("#volumes").addEventListener("submit", async (event) => {
  event.preventDefault();
  const card = event.target.closest("[data-volume]");
  const input = card.querySelector(".snapshot-name");
  const name = input.value.trim();
  const done = await act(`create snapshot ${name} of ${card.dataset.volume}`, "POST",
    "/api/snapshots", { volume: card.dataset.volume, name });
  if (done && input.value.trim() === name) input.value = "";
});

$("#volumes").addEventListener("click", (event) => {
  const button = event.target.closest("button.delete-snapshot");
  if (!button) return;
  const { volume, name } = button.dataset;
  const url = `/api/snapshots/${encodeURIComponent(name)}?volume=${encodeURIComponent(volume)}`;
  act(`delete snapshot ${name} of ${volume}`, "DELETE", url);
});

// -- the stream ----------------------------------------------------------------------------

function connect() {
  const stream = new EventSource("/api/stream");
  const state = $("#connection");
  stream.onopen = () => { state.className = "live"; state.textContent = "live"; };
  stream.onmessage = (event) => {
    state.className = "live";
    state.textContent = "live";
    render(JSON.parse(event.data));
  };
  // The browser reconnects by itself (retry: 1000); a stream it gave up on is opened again.
  stream.onerror = () => {
    state.className = "connecting";
    state.textContent = "reconnecting";
    if (stream.readyState === EventSource.CLOSED) setTimeout(connect, 2000);
  };
}

window.addEventListener("resize", () => { if (latest) renderCharts(latest); });
connect();
