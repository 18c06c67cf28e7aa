// The console: plain JavaScript on the app's own HTTP API (docs/http-api.md), no build step.
// Everything on screen is built with textContent, never innerHTML, so no value from the API
// can become markup. Buttons that change something are shown only to those whose role and
// connections allow it; the API checks the same rules on every call.

const API = "/api";
const POLL_MS = 700;
const main = document.getElementById("main");
let me = null; // GET /api/me: roles and the connections this user may act on
let stopPolling = () => {};

// -- small helpers ------------------------------------------------------------------------

function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name === "class") element.className = value;
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

const svgNS = "http://www.w3.org/2000/svg";
function s(tag, attributes = {}, ...children) {
  const element = document.createElementNS(svgNS, tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, value);
  for (const child of children) {
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

function number(value) {
  return value === null || value === undefined || value === "" ? "—" : Number(value).toLocaleString("en-US");
}

// Every timestamp is shown in the viewer's zone or in UTC, as they choose (the switch in the
// header); the other one is on hover. The choice is kept in this browser.
function zone() { return localStorage.getItem("console.zone") === "utc" ? "utc" : "local"; }

function clock(date, inUtc) {
  const pad = (n) => String(n).padStart(2, "0");
  const parts = inUtc
    ? [date.getUTCFullYear(), date.getUTCMonth() + 1, date.getUTCDate(), date.getUTCHours(), date.getUTCMinutes()]
    : [date.getFullYear(), date.getMonth() + 1, date.getDate(), date.getHours(), date.getMinutes()];
  return `${parts[0]}-${pad(parts[1])}-${pad(parts[2])} ${pad(parts[3])}:${pad(parts[4])}`;
}

function when(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  return zone() === "utc" ? `${clock(date, true)} UTC` : `${clock(date, false)} your time`;
}

function stamp(iso) {
  // A timestamp as an element: the chosen zone, the other one (and the exact instant) on hover.
  if (!iso) return "—";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  const other = zone() === "utc" ? `${clock(date, false)} your time` : `${clock(date, true)} UTC`;
  return h("time", { datetime: date.toISOString(), title: `${other} (${date.toISOString()})` }, when(iso));
}

function ago(iso) {
  if (!iso) return "";
  const seconds = Math.round((Date.now() - new Date(iso).getTime()) / 1000);
  const span = Math.abs(seconds);
  const [count, unit] = span < 90 ? [span, "second"] : span < 5400 ? [Math.round(span / 60), "minute"]
    : span < 172800 ? [Math.round(span / 3600), "hour"] : [Math.round(span / 86400), "day"];
  const text = `${count} ${unit}${count === 1 ? "" : "s"}`;
  return seconds < 0 ? `in ${text}` : `${text} ago`;
}

function scheduleWords(schedule, nextCheck) {
  // EXPORT_SCHEDULE is an NCRONTAB expression in UTC (seconds first): say the common ones in words.
  const fields = (schedule || "").trim().split(/\s+/);
  let words = schedule ? `on the schedule ${schedule} (UTC)` : "on no schedule";
  if (fields.length === 6 && fields.slice(3).every((f) => f === "*")) {
    const [, minute, hour] = fields;
    const every = (f) => (/^\*\/\d+$/.test(f) ? Number(f.slice(2)) : null);
    if (every(minute) && hour === "*") words = `every ${every(minute)} minutes`;
    else if (minute === "*" && hour === "*") words = "every minute";
    else if (/^\d+$/.test(minute) && hour === "*") words = "every hour";
    else if (/^\d+$/.test(minute) && every(hour)) words = `every ${every(hour)} hours`;
    else if (/^\d+$/.test(minute) && /^\d+$/.test(hour)) {
      const at = new Date(Date.UTC(2000, 0, 1, Number(hour), Number(minute)));
      words = `every day at ${when(at.toISOString()).slice(11)}`;
    }
  }
  return nextCheck ? `${words} · next ${when(nextCheck).slice(11)}` : words;
}

// People: run records and definition history say who as "<object ID> (<display name>)"; a
// connection's `allowed` holds IDs or {id, name}. A name is shown, the ID on hover.
const OBJECT_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function person(who) {
  if (!who) return "—";
  const entry = typeof who === "string" ? splitLabel(who) : { id: who.id || "", name: who.name || "" };
  if (!entry.id) return h("span", { class: "person" }, entry.name);
  return h("span", { class: "person", title: entry.id, "data-id": entry.id }, entry.name || entry.id);
}

function splitLabel(label) {
  const found = /^(\S+) \((.+)\)$/.exec(label);
  if (found && OBJECT_ID.test(found[1])) return { id: found[1], name: found[2] };
  if (OBJECT_ID.test(label)) return { id: label, name: me && me.object_id === label ? me.name || "" : "" };
  return { id: "", name: label };
}

function duration(run) {
  if (!run || !run.started_at) return null;
  const end = run.finished_at ? new Date(run.finished_at) : new Date();
  return Math.max(0, (end - new Date(run.started_at)) / 1000);
}

function seconds(value) {
  if (value === null || value === undefined) return "—";
  return value < 90 ? `${value.toFixed(1)} s` : `${Math.floor(value / 60)} min ${Math.round(value % 60)} s`;
}

function statusBadge(status) {
  return h("span", { class: `status ${status || "none"}` }, status || "never run");
}

function mayRun(connection) {
  if (!me) return false;
  const roles = me.roles || [];
  if (roles.includes("Exporter.Admin")) return true;
  return roles.includes("Exporter.Operator") && (me.connections || []).includes(connection);
}

function isAdmin() {
  return Boolean(me && (me.roles || []).includes("Exporter.Admin"));
}

function mayCreate() {
  return Boolean(me && (me.roles || []).some((r) => r === "Exporter.Admin" || r === "Exporter.Operator"));
}

async function api(method, path, { body, etag } = {}) {
  const headers = { Accept: "application/json", "X-Requested-With": "XMLHttpRequest" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (etag) headers["If-Match"] = etag;
  let response;
  try {
    response = await fetch(API + path, {
      method, headers, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (error) {
    return { status: 0, body: { error: "network", message: "the app did not answer; reload the page to sign in again" } };
  }
  let parsed = {};
  try { parsed = await response.json(); } catch (error) { parsed = { message: `HTTP ${response.status}` }; }
  return { status: response.status, body: parsed, etag: response.headers.get("ETag") };
}

function banner(kind, text) {
  return h("div", { class: `banner ${kind}`, role: kind === "error" ? "alert" : "status" }, text || "");
}

function failure(reply) {
  const text = reply.body.message || reply.body.error || `HTTP ${reply.status}`;
  return reply.status === 401 ? `Sign in again (reload the page): ${text}` : text;
}

let generation = 0; // the page being drawn: an answer for an older one is dropped

function current(drawn) { return drawn === generation; }

function show(title, ...content) {
  stopPolling();
  main.replaceChildren(h("h1", {}, title), ...content.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
  document.title = `${title} · Snapchat audience exports`;
}

function segmentsOf(exportItem) {
  return (exportItem.sources || []).map((source) => `${source.container}/${source.path}`);
}

function segmentName(path) { return path.split("/").filter(Boolean).pop() || path; }

function scroller(table) { return h("div", { class: "scroll" }, table); }

// -- exports list -------------------------------------------------------------------------

const FILTERS = [["all", "All"], ["failed", "Failed"], ["succeeded", "Succeeded"],
  ["active", "Running or queued"], ["never", "Never run"], ["disabled", "Disabled"]];

function matches(filter, item) {
  const status = item.last_run && item.last_run.status;
  if (filter === "failed") return status === "failed";
  if (filter === "succeeded") return status === "succeeded";
  if (filter === "active") return status === "running" || status === "queued";
  if (filter === "never") return !status;
  if (filter === "disabled") return !item.enabled;
  return true;
}

async function exportsPage(render, query) {
  const reply = await api("GET", "/exports");
  if (reply.status !== 200) return render("Exports", banner("error", failure(reply)));
  const { exports, invalid, next_check: nextCheck, schedule } = reply.body;
  const filter = query.get("status") || "all";
  const select = h("select", { id: "status-filter", "aria-label": "Filter by last run status",
    onchange: (event) => { location.hash = `#/exports?status=${event.target.value}`; } },
  FILTERS.map(([value, label]) => h("option", { value, selected: value === filter }, label)));
  const failedCount = exports.filter((e) => matches("failed", e)).length;
  const rows = exports.filter((e) => matches(filter, e)).map((item) => exportRow(item, nextCheck, schedule));
  const table = h("table", { id: "exports" },
    h("thead", {}, h("tr", {}, ["Export", "Segments", "Audience", "Mode", "Enabled", "Last run",
      "Uploaded / added / removed", "Audience size", "Schedule"].map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 9, class: "muted" }, "No export matches this filter."))));
  const toolbar = h("div", { class: "toolbar" },
    h("label", { for: "status-filter" }, "Show"), select,
    failedCount ? h("span", { class: "status failed", id: "failed-count" }, `${failedCount} failed`) : null,
    h("span", { class: "muted", id: "schedule", title: `EXPORT_SCHEDULE ${schedule || "—"} (UTC)` }, `Looks for new snapshots ${scheduleWords(schedule, nextCheck)}`),
    mayCreate() ? h("a", { class: "button", href: "#/new-export" }, "New export") : null);
  const broken = invalid.length ? [h("h2", {}, "Definitions with problems"),
    h("ul", { id: "invalid" }, invalid.map((b) => h("li", {}, h("strong", {}, b.name), ": ", b.problems.join("; "))))] : [];
  render("Exports", toolbar, scroller(table), ...broken);
}

function exportRow(item, nextCheck, schedule) {
  const run = item.last_run;
  const audience = item.audience || {};
  const counts = run ? `${number(run.uploaded)} / ${number(run.added)} / ${number(run.removed)}` : "—";
  const size = audience.approximate_number_users !== undefined
    ? [number(audience.approximate_number_users), h("br"), h("span", { class: "muted" }, audience.targetable_status || "")]
    : "—";
  const health = item.audience_health;
  const rate = health && health.match_rate !== null && health.match_rate !== undefined
    ? [h("br"), h("span", { class: "muted match-rate" }, `match rate ${percent(health.match_rate)}`)] : null;
  const warned = health && (health.warnings || []).length
    ? [h("br"), h("span", { class: "status warn", title: health.warnings.map((w) => w.message).join(" ") }, `${health.warnings.length} warning${health.warnings.length === 1 ? "" : "s"}`)] : null;
  const lastRun = run
    ? [statusBadge(run.status), run.dry_run ? " dry run" : "", h("br"),
      h("a", { href: `#/exports/${encodeURIComponent(item.name)}/runs/${encodeURIComponent(run.run_id)}` }, stamp(run.finished_at || run.started_at || run.queued_at)),
      h("span", { class: "muted" }, ` · ${seconds(duration(run))}`), h("br"),
      h("span", { class: "synced" }, run.status === "succeeded" && !run.dry_run ? `last synced ${ago(run.finished_at)}`
        : `last run ${ago(run.finished_at || run.started_at || run.queued_at)}`)]
    : statusBadge(null);
  return h("tr", { class: run && run.status === "failed" ? "failed" : "", "data-export": item.name },
    h("td", {}, h("a", { href: `#/exports/${encodeURIComponent(item.name)}` }, item.name)),
    h("td", {}, segmentsOf(item).map((path, i) => [i ? h("br") : null, h("span", { class: "segment", title: path }, segmentName(path))])),
    h("td", {}, audience.name || "", audience.name ? h("br") : null, h("code", {}, audience.id || "created on first run")),
    h("td", {}, item.mode),
    h("td", {}, item.enabled ? "yes" : "no"),
    h("td", {}, lastRun),
    h("td", { class: "num" }, counts),
    h("td", { class: "num" }, size, rate, warned),
    h("td", {}, item.enabled && nextCheck ? [scheduleWords(schedule, nextCheck), h("br"), h("span", { class: "muted" }, ago(nextCheck))] : "not scheduled (disabled)"));
}

// -- one export ---------------------------------------------------------------------------

const FIELDS = [
  // [field path, label, kind, hint]
  ["description", "Description", "text", ""],
  ["source", "Segments", "segments", "One container/path per line: the folder Customer Insights exports the segment to. Picking segments above fills this in."],
  ["audience_id", "Audience ID", "text", "An existing Snapchat audience. Leave empty to have the app create one (below)."],
  ["audience.ad_account_id", "New audience: ad account", "text", ""],
  ["audience.name", "New audience: name", "text", ""],
  ["connection", "Connection", "connection", ""],
  ["columns.email", "Email column", "column", ""],
  ["columns.phone", "Phone column", "column", ""],
  ["columns.mobile_ad_id", "Mobile ad ID column", "column", ""],
  ["mode", "Mode", "mode", "add: only adds. mirror: the audience becomes the segment (adds and removes)."],
  ["default_country_code", "Default country code", "text", "Digits only, e.g. 44, for phone numbers without one."],
  ["max_removal_percent", "Safeguard: most removed (%)", "number", "A mirror run that would remove more of the audience fails before sending anything."],
  ["always_allowed_removals", "Safeguard: always allowed removals", "number", ""],
  ["lookalike.type", "Lookalike: type", "lookalike", "Optional: Snapchat's lookalike of this audience (BALANCE is Snapchat's default), made once, when this audience is targetable."],
  ["lookalike.countries", "Lookalike: countries", "text", "Two-letter country codes, separated by commas, e.g. US, GB."],
  ["lookalike.name", "Lookalike: name", "text", ""],
  ["enabled", "Enabled", "checkbox", "The timer runs enabled exports when a new snapshot lands."],
  ["data_transfer_acknowledged", "Data transfer acknowledged", "checkbox", "Hashed personal data leaves your compliance boundary for Snapchat: tick once your organisation approved it."],
];

const PLACEHOLDERS = { max_removal_percent: "20 (the default)", always_allowed_removals: "10 (the default)", "lookalike.countries": "US, GB" };
const LOOKALIKE_TYPES = ["BALANCE", "SIMILARITY", "REACH"];

function fieldId(path) { return `field-${path.replace(/[^a-z0-9_]+/gi, "-")}`; }

function valueAt(document, path) {
  if (path === "source") {
    const sources = document.sources || (document.source ? [document.source] : []);
    return sources.map((x) => `${x.container || ""}/${x.path || ""}`).join("\n");
  }
  const value = path.split(".").reduce((found, key) => (found && typeof found === "object" ? found[key] : undefined), document);
  return Array.isArray(value) ? value.join(", ") : value;
}

function definitionForm(document, { editable, connections, containers = [], onSave }) {
  const form = h("form", { class: "definition", id: "definition", novalidate: true });
  const general = banner("error", "");
  general.id = "form-problems";
  for (const [path, label, kind, hint] of FIELDS) {
    const id = fieldId(path);
    const value = valueAt(document, path);
    let control;
    if (kind === "segments") control = h("textarea", { id, rows: 2 }, value || "");
    else if (kind === "checkbox") control = h("input", { id, type: "checkbox", checked: path === "enabled" ? value !== false : value === true });
    else if (kind === "mode") control = h("select", { id }, ["add", "mirror"].map((m) => h("option", { value: m, selected: (value || "add") === m }, m)));
    else if (kind === "lookalike") control = h("select", { id }, h("option", { value: "" }, "— no lookalike —"),
      LOOKALIKE_TYPES.map((t) => h("option", { value: t, selected: value === t }, t)));
    else if (kind === "connection") control = h("select", { id }, connections.map((c) => h("option", { value: c, selected: value === c }, c)));
    else control = h("input", { id, type: kind === "number" ? "number" : "text", value: value ?? "", placeholder: PLACEHOLDERS[path] });
    control.dataset.field = path;
    if (!editable) control.disabled = true;
    const problem = h("p", { class: "problem", id: `${id}-problem`, "aria-live": "polite" });
    control.setAttribute("aria-describedby", `${id}-problem${hint ? ` ${id}-hint` : ""}`);
    const hintElement = hint ? h("span", { class: "hint", id: `${id}-hint` }, hint) : null;
    if (kind === "segments") {
      // Picked by name from what Customer Insights exported; the raw paths are the advanced field.
      const advanced = h("details", { id: "advanced-source" }, h("summary", {}, "Advanced: container and path"),
        h("label", { for: id }, "Container/path, one per line"), control, hintElement);
      const picker = segmentPicker(form, control, { editable, containers });
      form.append(h("span", { class: "field" }, label), h("div", { class: "control" }, picker, advanced, problem));
      continue;
    }
    const extra = kind === "column" ? h("span", { class: "suggestion", id: `${id}-suggestion`, "aria-live": "polite" }) : null;
    form.append(h("label", { class: "field", for: id }, label),
      h("div", { class: "control" }, control, extra, hintElement, problem));
  }
  if (editable) {
    const preview = h("section", { id: "preview", "aria-live": "polite" });
    const check = h("button", { type: "button", id: "check", onclick: async () => {
      clearProblems(form, general);
      check.disabled = true;
      preview.replaceChildren(h("p", { class: "muted" }, "Checking the newest snapshot …"));
      const reply = await api("POST", "/preview", { body: collect(form, document) });
      check.disabled = false;
      showPreview(reply, preview, (problems, message) => placeProblems(form, general, problems, message));
    } }, "Check");
    form.append(h("span"), h("div", { class: "toolbar" }, h("button", { type: "submit", class: "primary", id: "save" }, "Save"), check,
      h("span", { class: "hint" }, "Check reads the newest snapshot as a dry run would and counts what it finds; nothing is saved or sent.")),
    h("span"), preview);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearProblems(form, general);
      await onSave(collect(form, document), (problems, message) => placeProblems(form, general, problems, message));
    });
  }
  return [general, form];
}

// -- choosing segments and columns by name ------------------------------------------------

const SUGGEST = {
  "columns.email": /e-?mail/i,
  "columns.phone": /phone|^mobile$|mobile_?number|cell/i,
  "columns.mobile_ad_id": /advertis|^ma?id$|ad_?id|idfa|gaid/i,
};

function segmentPicker(form, textarea, { editable, containers }) {
  const lines = () => textarea.value.split("\n").map((l) => l.trim()).filter(Boolean);
  const first = lines()[0];
  const start = first && first.includes("/") ? first.slice(0, first.indexOf("/")) : containers[0] || "";
  const container = h("input", { id: "field-container", type: "text", value: start, list: "known-containers", disabled: !editable && !start });
  const list = h("div", { id: "segments-list", class: "segments" });
  let found = [];
  const choose = () => {
    // The chosen segments of this container replace its lines; other containers' lines stay.
    const prefix = `${container.value.trim()}/`;
    const kept = lines().filter((line) => !line.startsWith(prefix) || !found.some((seg) => line === prefix + seg.path));
    const chosen = [...list.querySelectorAll("input[data-segment]:checked")].map((box) => prefix + box.value);
    textarea.value = [...kept, ...chosen].join("\n");
    offerColumns(form, found.filter((seg) => chosen.includes(prefix + seg.path)));
  };
  const find = async () => {
    const name = container.value.trim();
    if (!name) { list.replaceChildren(h("p", { class: "hint" }, "Name the storage container Customer Insights exports to.")); return; }
    list.replaceChildren(h("p", { class: "muted" }, "Looking for segments …"));
    const reply = await api("GET", `/segments?container=${encodeURIComponent(name)}`);
    if (reply.status !== 200) {
      found = [];
      list.replaceChildren(banner("error", `No segments listed: ${failure(reply)}. Use the advanced field below.`));
      offerColumns(form, null);
      return;
    }
    found = reply.body.segments || [];
    const picked = new Set(lines());
    list.replaceChildren(found.length ? h("fieldset", {}, h("legend", {}, `Segments in ${name}`), found.map((seg) =>
      h("label", { class: "segment-choice" },
        h("input", { type: "checkbox", value: seg.path, "data-segment": seg.name, checked: picked.has(`${name}/${seg.path}`), disabled: !editable, onchange: choose }),
        h("strong", {}, seg.name), " ",
        h("span", { class: "muted" }, seg.snapshot ? ["· ", seg.snapshot.rows === null || seg.snapshot.rows === undefined ? "rows unknown" : `${number(seg.snapshot.rows)} rows`,
          ` · ${seg.snapshot.partitions} partition${seg.snapshot.partitions === 1 ? "" : "s"} · `, stamp(seg.snapshot.taken_at),
          seg.snapshot.settled ? "" : " (still being written)"] : "· no snapshot yet"))),
    reply.body.truncated ? h("p", { class: "hint" }, "Only the first segments are listed.") : null)
      : h("p", { class: "hint" }, "No segment found in this container. Use the advanced field below."));
    offerColumns(form, found.filter((seg) => picked.has(`${name}/${seg.path}`)));
  };
  container.addEventListener("change", find);
  if (!editable) {
    // Read only: the chosen segments by name, without asking the app to list the container.
    list.replaceChildren(h("ul", { class: "segments" }, lines().map((line) => h("li", { title: line }, segmentName(line)))));
    return h("div", { id: "segment-picker" }, list);
  }
  const known = h("datalist", { id: "known-containers" }, containers.map((c) => h("option", { value: c })));
  setTimeout(find, 0);
  return h("div", { id: "segment-picker" },
    h("div", { class: "inline" }, h("label", { for: "field-container" }, "Container"), container, known,
      h("button", { type: "button", id: "find-segments", onclick: find, disabled: !editable && !start }, "Find segments")),
    list);
}

function offerColumns(form, segments) {
  // Only the attributes every chosen segment has; a likely match is pre-selected and marked.
  const chosen = segments && segments.length ? segments : null;
  const shared = chosen ? chosen.map((seg) => (seg.attributes || []).map((a) => a.name))
    .reduce((all, names) => all.filter((n) => names.includes(n))) : null;
  for (const path of Object.keys(SUGGEST)) {
    const old = form.querySelector(`[data-field="${path}"]`);
    if (!old) continue;
    const note = document.getElementById(`${old.id}-suggestion`);
    const value = old.dataset.suggested ? "" : old.value;
    let control;
    if (shared) {
      const suggestion = value ? null : shared.find((n) => SUGGEST[path].test(n)) || null;
      control = h("select", { id: old.id }, h("option", { value: "" }, "— none —"),
        value && !shared.includes(value) ? h("option", { value, selected: true }, `${value} (not in every chosen segment)`) : null,
        shared.map((n) => h("option", { value: n, selected: n === (value || suggestion) }, n)));
      if (suggestion) control.dataset.suggested = suggestion;
      note.replaceChildren(suggestion ? `Suggested: ${suggestion}, from its name. Check that it is the right column.` : "");
      control.addEventListener("change", () => { delete control.dataset.suggested; note.replaceChildren(); });
    } else {
      control = h("input", { id: old.id, type: "text", value });
      note.replaceChildren();
    }
    control.dataset.field = path;
    control.disabled = old.disabled;
    control.setAttribute("aria-describedby", old.getAttribute("aria-describedby") || "");
    // Redrawn once the segments are listed: a field the advice pointed at stays marked and focused.
    const focused = document.activeElement === old;
    if (old.classList.contains("highlight")) control.classList.add("highlight");
    old.replaceWith(control);
    if (focused) control.focus();
  }
}

function showPreview(reply, preview, showProblems) {
  if (reply.status === 200) {
    const body = reply.body;
    const kinds = Object.entries(body.kinds || {});
    const words = (reasons) => Object.entries(reasons || {}).map(([r, n]) => `${r.replaceAll("_", " ")}: ${number(n)}`).join(" · ") || "—";
    preview.replaceChildren(h("h3", {}, "What the newest snapshot holds"),
      h("p", { class: "muted" }, `Snapshot ${body.snapshot}: ${number(body.rows_read)} rows read${body.sampled ? " (a sample)" : ""}. Counts only; nothing was saved or sent.`),
      scroller(h("table", { id: "preview-table" },
        h("thead", {}, h("tr", {}, ["Identifier kind", "Column", "Valid", "Empty", "Already hashed", "Invalid", "Why invalid"].map((c, i) => h("th", { class: i > 1 && i < 6 ? "num" : "" }, c)))),
        h("tbody", {}, kinds.map(([kind, c]) => h("tr", { "data-kind": kind, class: c.valid === 0 ? "failed" : "" },
          h("td", {}, kind), h("td", {}, c.column), [c.valid, c.empty, c.prehashed, c.invalid].map((v) => h("td", { class: "num" }, number(v))),
          h("td", { class: "reasons" }, words(c.reasons))))))),
      kinds.some(([, c]) => c.valid === 0) ? banner("error", "A column with no valid identifier is probably the wrong column.") : null);
    return;
  }
  if (reply.status === 400 && reply.body.fields) {
    preview.replaceChildren();
    showProblems(reply.body.fields, "Not checked: fix the fields marked below.");
    return;
  }
  const columns = reply.body.columns;
  preview.replaceChildren(banner("error", `Check found a problem: ${failure(reply)}`),
    columns ? h("p", { id: "preview-columns" }, "The snapshot has these columns: ", columns.map((c, i) => [i ? ", " : "", h("code", {}, c)])) : null);
}

function collect(form, original) {
  const read = (path) => form.querySelector(`[data-field="${path}"]`);
  const text = (path) => read(path).value.trim();
  const document = JSON.parse(JSON.stringify(original));
  for (const key of ["source", "sources", "audience", "audience_id", "columns"]) delete document[key];
  const segments = read("source").value.split("\n").map((line) => line.trim()).filter(Boolean).map((line) => {
    const cut = line.indexOf("/");
    return cut < 0 ? { container: line, path: "" } : { container: line.slice(0, cut), path: line.slice(cut + 1) };
  });
  if (segments.length === 1) document.source = segments[0];
  else document.sources = segments;
  if (text("audience_id")) document.audience_id = text("audience_id");
  else {
    const kept = original.audience && typeof original.audience === "object" ? original.audience : {};
    document.audience = { ...kept, ad_account_id: text("audience.ad_account_id"), name: text("audience.name") };
  }
  document.columns = {};
  for (const key of ["email", "phone", "mobile_ad_id"]) if (text(`columns.${key}`)) document.columns[key] = text(`columns.${key}`);
  for (const key of ["description", "default_country_code"]) {
    if (text(key)) document[key] = text(key); else delete document[key];
  }
  document.connection = read("connection").value;
  document.mode = read("mode").value;
  for (const key of ["max_removal_percent", "always_allowed_removals"]) {
    // A number the browser could not read is sent as typed, so the API names the problem;
    // an empty field means the default.
    const control = read(key);
    const raw = control.validity.badInput ? "not a number" : text(key);
    if (raw === "") delete document[key];
    else document[key] = /^-?\d+(\.\d+)?$/.test(raw) ? Number(raw) : raw;
  }
  if (read("lookalike.type").value) {
    // Kept as typed apart from case and separators, so the API names any wrong code.
    const countries = text("lookalike.countries").split(/[\s,;]+/).filter(Boolean).map((c) => c.toUpperCase());
    const kept = original.lookalike && typeof original.lookalike === "object" ? original.lookalike : {};
    document.lookalike = { ...kept, type: read("lookalike.type").value, countries, name: text("lookalike.name") };
  } else delete document.lookalike;
  document.enabled = read("enabled").checked;
  document.data_transfer_acknowledged = read("data_transfer_acknowledged").checked;
  return document;
}

function clearProblems(form, general) {
  general.replaceChildren();
  for (const element of form.querySelectorAll("[aria-invalid]")) element.removeAttribute("aria-invalid");
  for (const element of form.querySelectorAll(".problem")) element.replaceChildren();
}

function controlFor(form, field) {
  // The problem's field, or the nearest enclosing one the form has: sources[1].path -> source.
  const candidates = [field];
  let path = field;
  while (path) {
    path = path.replace(/(\.[^.[\]]+|\[\d+\])$/, "");
    if (path === candidates[candidates.length - 1]) break;
    candidates.push(path);
  }
  for (const name of candidates) {
    const key = name === "sources" ? "source" : name === "audience" ? "audience.name" : name === "lookalike" ? "lookalike.type" : name;
    const found = form.querySelector(`[data-field="${key}"]`);
    if (found) return found;
  }
  return null;
}

function placeProblems(form, general, problems, message) {
  const unplaced = [];
  let first = null;
  for (const { field, message: text } of problems || []) {
    const control = field ? controlFor(form, field) : null;
    if (!control) { unplaced.push(field ? `${field}: ${text}` : text); continue; }
    control.setAttribute("aria-invalid", "true");
    const slot = document.getElementById(`${control.id}-problem`);
    slot.append(slot.textContent ? `; ${text}` : text);
    first = first || control;
  }
  if (unplaced.length || message) general.append(message || "", unplaced.length ? ` ${unplaced.join("; ")}` : "");
  (first || general).focus?.();
}

async function exportPage(render, name, query) {
  const [definition, runs, connections, overview] = await Promise.all([
    api("GET", `/exports/${encodeURIComponent(name)}`),
    api("GET", `/exports/${encodeURIComponent(name)}/runs?limit=50`),
    api("GET", "/connections"),
    api("GET", "/exports"), // the export's lookalike state and audience health, as the list has them
  ]);
  if (definition.status !== 200) return render(name, banner("error", failure(definition)));
  const document = definition.body.definition || {};
  let etag = definition.etag || definition.body.etag;
  const names = (connections.body.connections || []).map((c) => c.name);
  const canRun = mayRun(document.connection);
  const notice = banner("info", "");
  notice.id = "notice";
  const progress = h("section", { id: "progress", "aria-live": "polite" });
  const history = runHistory(name, runs.status === 200 ? runs.body : { runs: [], continuation: null });
  const actions = canRun ? h("div", { class: "toolbar", id: "actions" },
    h("button", { class: "primary", id: "run-now", type: "button", onclick: () => startRun(name, false, progress, notice, history) }, "Run now"),
    h("button", { id: "dry-run", type: "button", onclick: () => startRun(name, true, progress, notice, history) }, "Dry run"),
    h("span", { class: "hint" }, "A dry run reads the snapshot and reports what would change; it sends nothing.")) : null;
  const containers = [...new Set((document.sources || (document.source ? [document.source] : [])).map((x) => x.container))];
  const [problems, form] = definitionForm(document, {
    editable: canRun, containers, connections: names.includes(document.connection) ? names : [document.connection, ...names],
    onSave: async (changed, showProblems) => {
      const reply = await api("PUT", `/exports/${encodeURIComponent(name)}`, { body: changed, etag });
      if (reply.status === 200) {
        etag = reply.etag || reply.body.etag;
        notice.className = "banner ok";
        notice.replaceChildren(`Saved: version ${reply.body.version}.`);
        return;
      }
      if (reply.status === 412) {
        return showProblems([], "Not saved: someone changed this export since you opened it. Reload the page to see their version, then make your change again.");
      }
      showProblems(reply.body.fields || [], reply.body.fields ? "Not saved: fix the fields marked below." : `Not saved: ${failure(reply)}`);
    },
  });
  const summary = h("p", { class: "muted", id: "changed" }, `Version ${definition.body.version}, changed by `, person(definition.body.changed_by), " at ", stamp(definition.body.changed_at));
  const listed = ((overview.body || {}).exports || []).find((e) => e.name === name) || {};
  const health = definition.body.audience_health || listed.audience_health || null;
  const lookalike = definition.body.lookalike !== undefined ? definition.body.lookalike : listed.lookalike || null;
  render(name, warningBanners(health && health.warnings, "warnings"), notice, actions, progress, healthSection(health, document.mode),
    lookalikeSection(document.lookalike, lookalike), h("h2", {}, "Run history"), history.element,
    h("h2", {}, "Definition"), summary, canRun ? null : h("p", { class: "hint", id: "read-only" }, "Read only: your role or the connection does not let you change this export."),
    problems, form);
  const field = query && query.get("field");
  if (field) highlight(form, field, query.get("advice"));
  const active = history.runs().find((run) => run.status === "running" || run.status === "queued");
  if (active && main.contains(progress)) follow(name, active.run_id, progress, notice, history);
}

function highlight(form, field, advice) {
  // The field a failed run's advice points at: marked, scrolled to and focused.
  const control = controlFor(form, field);
  if (!control) return;
  const target = control.id === "field-source" ? document.getElementById("segment-picker") || control : control;
  if (control.id === "field-source") document.getElementById("advanced-source").open = true;
  target.classList.add("highlight");
  control.closest(".control")?.classList.add("highlight");
  if (advice) document.getElementById(`${control.id}-problem`)?.replaceChildren(`The last run failed here: ${advice}`);
  control.scrollIntoView({ block: "center" });
  control.focus();
}

async function startRun(name, dryRun, progress, notice, currentHistory) {
  const drawn = generation;
  for (const button of document.querySelectorAll("#actions button")) button.disabled = true;
  const reply = await api("POST", `/exports/${encodeURIComponent(name)}/runs`, { body: dryRun ? { dry_run: true } : {} });
  if (!current(drawn)) return; // the page changed meanwhile; the run goes on regardless
  if (reply.status !== 202) {
    notice.className = "banner error";
    notice.replaceChildren(`Not started: ${failure(reply)}`);
    for (const button of document.querySelectorAll("#actions button")) button.disabled = false;
    return;
  }
  if (!current(drawn)) return;
  follow(name, reply.body.run_id, progress, notice, currentHistory);
}

function follow(name, runId, progress, notice, history) {
  // A run reads the snapshot, then sends. The bar counts both against the last finished
  // run's figures (rows read, identifiers sent), so it can say how far along this one is.
  const previous = history.runs().find((run) => run.run_id !== runId && run.status === "succeeded");
  const previousReal = history.runs().find((run) => run.run_id !== runId && run.status === "succeeded" && !run.dry_run);
  const expectedRows = previous ? previous.rows_read : 0;
  const expectedSent = previousReal ? previousReal.uploaded + previousReal.removed : 0;
  const expected = expectedRows + expectedSent;
  const bar = h("progress", { id: "run-progress", max: expected || 1, "aria-label": "Rows read, then identifiers sent" });
  if (!expected) bar.removeAttribute("value");
  const counts = h("p", { id: "run-counts" });
  const percent = h("p", { id: "run-percent", class: "percent" });
  const title = h("h2", {}, "Run in progress");
  progress.replaceChildren(title, bar, percent, counts);
  for (const button of document.querySelectorAll("#actions button")) button.disabled = true;
  let stopped = false, misses = 0;
  stopPolling = () => { stopped = true; };
  const tick = async () => {
    if (stopped) return;
    const reply = await api("GET", `/exports/${encodeURIComponent(name)}/runs/${encodeURIComponent(runId)}`);
    if (stopped) return;
    if (reply.status !== 200) {
      // Keep following: the app may be restarting. Say so, and look again a little later.
      misses += 1;
      counts.replaceChildren(`${failure(reply)} (trying again)`);
      setTimeout(tick, Math.min(10_000, POLL_MS * 2 ** misses));
      return;
    }
    misses = 0;
    const run = reply.body;
    const scanned = run.rows_read;
    const sent = run.dry_run ? run.added + run.removed : run.uploaded + run.removed;
    if (expected) {
      bar.value = Math.min(scanned, expectedRows) + Math.min(sent, expectedSent);
      const fraction = bar.value / expected;
      const elapsed = duration(run) || 0;
      const left = fraction > 0.02 && elapsed ? Math.max(0, elapsed / fraction - elapsed) : null;
      percent.dataset.percent = String(Math.floor(fraction * 100));
      percent.replaceChildren(`${Math.floor(fraction * 100)}% done`, left === null ? " · estimating the time left …" : ` · about ${seconds(left)} left`);
    } else percent.replaceChildren("No earlier run to measure against: the bar shows activity only.");
    bar.dataset.rowsRead = scanned;
    bar.dataset.sent = sent;
    const sentWord = run.dry_run ? "would send" : "sent";
    counts.replaceChildren(statusBadge(run.status), ` ${number(scanned)} rows read`,
      expectedRows ? ` of about ${number(expectedRows)}` : "", ` · ${number(sent)} identifiers ${sentWord}`,
      ` · batches accepted: ${number(run.batches)}`);
    if (run.status === "running" || run.status === "queued") { setTimeout(tick, POLL_MS); return; }
    if (expected && run.status === "succeeded") { bar.value = expected; percent.dataset.percent = "100"; percent.replaceChildren("100% done"); }
    title.replaceChildren(run.dry_run ? "Dry run finished" : "Run finished");
    notice.className = run.status === "succeeded" ? "banner ok" : "banner error";
    const link = h("a", { href: `#/exports/${encodeURIComponent(name)}/runs/${encodeURIComponent(runId)}` }, "the run's details");
    notice.replaceChildren(run.status === "succeeded"
      ? (run.dry_run ? `Dry run succeeded: would add ${number(run.added)}, would remove ${number(run.removed)}. See ` : `Run succeeded: ${number(run.uploaded)} uploaded, ${number(run.added)} added, ${number(run.removed)} removed. See `)
      : `Run failed: ${run.error}. See `, link, ".");
    if (!stopped) await history.reload(); // the whole figure is redrawn once, never nested
    for (const button of document.querySelectorAll("#actions button")) button.disabled = false;
  };
  tick();
}

// -- run history: filters on the server, search and sort here, older runs page by page --------

const RUN_FILTERS = [
  ["status", "Status", ["", "succeeded", "failed", "running", "queued"]],
  ["mode", "Mode", ["", "add", "mirror"]],
  ["trigger", "Trigger", ["", "event", "timer", "http", "cli"]],
  ["dry_run", "Dry run", ["", "true", "false"]],
];
const SORTS = [["newest", "Newest first"], ["oldest", "Oldest first"], ["longest", "Longest first"], ["uploaded", "Most uploaded first"]];

function runHistory(name, first) {
  let runs = first.runs || [];
  let continuation = first.continuation || null;
  const filters = {};
  const search = h("input", { type: "search", id: "run-search", placeholder: "Search runs (who, status, snapshot, run ID)", "aria-label": "Search runs" });
  const sort = h("select", { id: "run-sort", "aria-label": "Sort runs" }, SORTS.map(([v, l]) => h("option", { value: v }, l)));
  const selects = RUN_FILTERS.map(([key, label, values]) => h("label", { class: "inline" }, label, " ",
    h("select", { id: `run-filter-${key}`, "data-filter": key, onchange: (event) => { filters[key] = event.target.value; reload(); } },
      values.map((v) => h("option", { value: v }, v === "" ? "all" : v === "true" ? "dry runs" : v === "false" ? "real runs" : v)))));
  const more = h("button", { type: "button", id: "more-runs", onclick: () => older() }, "Show older runs");
  const count = h("span", { class: "muted", id: "run-count" });
  const body = h("div", { id: "history-body" });
  const element = h("section", { id: "history" },
    h("div", { class: "toolbar" }, search, sort, selects), body, h("div", { class: "toolbar" }, more, count));
  const query = (extra) => {
    const params = new URLSearchParams({ limit: "50" });
    for (const [key, value] of Object.entries(filters)) if (value) params.set(key, value);
    if (extra) params.set("continuation", extra);
    return `/exports/${encodeURIComponent(name)}/runs?${params}`;
  };
  const draw = () => {
    const words = search.value.trim().toLowerCase();
    const shown = runs.filter((run) => !words || [run.run_id, run.status, run.trigger, run.mode, run.requested_by, run.snapshot, run.dry_run ? "dry run" : ""]
      .some((v) => String(v || "").toLowerCase().includes(words)));
    const key = { newest: (r) => -Date.parse(r.queued_at), oldest: (r) => Date.parse(r.queued_at), longest: (r) => -(duration(r) || 0), uploaded: (r) => -(r.uploaded || 0) }[sort.value];
    shown.sort((a, b) => key(a) - key(b));
    body.replaceChildren(runChart(runs), scroller(runTable(name, shown)));
    more.hidden = !continuation;
    count.replaceChildren(`${runs.length} run${runs.length === 1 ? "" : "s"} loaded${continuation ? "; older ones exist" : ""}${shown.length !== runs.length ? `, ${shown.length} match the search` : ""}`);
  };
  let asked = 0; // the latest question: an answer to an earlier filter is dropped
  const reload = async () => {
    const mine = ++asked;
    const reply = await api("GET", query(null));
    if (mine !== asked) return;
    if (reply.status !== 200) { body.replaceChildren(banner("error", failure(reply))); return; }
    runs = reply.body.runs || [];
    continuation = reply.body.continuation || null;
    draw();
  };
  const older = async () => {
    more.disabled = true;
    const reply = await api("GET", query(continuation));
    more.disabled = false;
    if (reply.status !== 200) { count.replaceChildren(failure(reply)); return; }
    const seen = new Set(runs.map((r) => r.run_id));
    runs = runs.concat((reply.body.runs || []).filter((r) => !seen.has(r.run_id)));
    continuation = reply.body.continuation || null;
    draw();
  };
  search.addEventListener("input", draw);
  sort.addEventListener("change", draw);
  draw();
  return { element, reload, runs: () => runs };
}

function runTable(name, runs) {
  const rows = runs.map((run) => h("tr", { class: run.status === "failed" ? "failed" : "", "data-run": run.run_id },
    h("td", {}, h("a", { href: `#/exports/${encodeURIComponent(name)}/runs/${encodeURIComponent(run.run_id)}` }, stamp(run.queued_at))),
    h("td", {}, statusBadge(run.status), run.dry_run ? " dry run" : ""),
    h("td", {}, run.trigger), h("td", {}, person(run.requested_by)),
    h("td", { class: "num" }, number(run.rows_read)), h("td", { class: "num" }, number(run.uploaded)),
    h("td", { class: "num" }, number(run.added)), h("td", { class: "num" }, number(run.removed)),
    h("td", { class: "num" }, seconds(duration(run)))));
  return h("table", { id: "runs" },
    h("thead", {}, h("tr", {}, ["Queued", "Status", "Trigger", "Started by", "Rows read", "Uploaded", "Added", "Removed", "Duration"]
      .map((t, i) => h("th", { scope: "col", class: i > 3 ? "num" : "" }, t)))),
    h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 9, class: "muted" }, "No run matches."))));
}

function runChart(runs) {
  // On a time axis: per run, bars for uploaded, added and removed where it was queued, a label
  // under it, and a line for duration. A dry run's bars are outlined: nothing was sent.
  const finished = runs.filter((run) => run.finished_at).slice().sort((a, b) => Date.parse(a.queued_at) - Date.parse(b.queued_at));
  const width = 960, height = 260, left = 64, right = 56, top = 16, bottom = 56;
  const svg = s("svg", { id: "run-chart", class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": `Run history chart of ${finished.length} runs`, "data-runs": String(finished.length) });
  svg.append(s("title", {}, `Uploaded, added and removed identifiers and duration of ${finished.length} runs, on a time axis`));
  const plotW = width - left - right, plotH = height - top - bottom;
  svg.append(s("line", { class: "axis", x1: left, y1: top + plotH, x2: left + plotW, y2: top + plotH }));
  const legend = h("div", { class: "legend" }, ["uploaded", "added", "removed", "duration"].map((key) =>
    h("span", {}, h("span", { class: `swatch s-${key}` }), key === "duration" ? "duration (right scale)" : key)),
  h("span", {}, h("span", { class: "swatch dry" }), "dry run (outlined: nothing sent)"));
  if (!finished.length) {
    svg.append(s("text", { x: left + 8, y: top + plotH / 2 }, "No finished run yet."));
    return h("figure", { id: "chart" }, svg, legend);
  }
  const most = Math.max(1, ...finished.flatMap((run) => [run.uploaded, run.added, run.removed]));
  const longest = Math.max(0.1, ...finished.map((run) => duration(run) || 0));
  const t0 = Date.parse(finished[0].queued_at), t1 = Date.parse(finished[finished.length - 1].queued_at);
  const bar = Math.max(2, Math.min(18, (plotW / finished.length - 6) / 3));
  const inner = plotW - bar * 3;
  const xOf = (run) => left + (t1 > t0 ? ((Date.parse(run.queued_at) - t0) / (t1 - t0)) * inner : inner / 2);
  const points = [];
  finished.forEach((run, i) => {
    const x0 = xOf(run);
    const group = s("g", { class: run.dry_run ? "run dry" : "run", "data-run": run.run_id, "data-x": x0.toFixed(1) });
    group.append(s("title", {}, `${when(run.queued_at)}: ${run.status}${run.dry_run ? " (dry run)" : ""}, uploaded ${number(run.uploaded)}, added ${number(run.added)}, removed ${number(run.removed)}, ${seconds(duration(run))}`));
    ["uploaded", "added", "removed"].forEach((key, k) => {
      const barHeight = (run[key] / most) * plotH;
      group.append(s("rect", { class: `s-${key}`, x: x0 + k * bar, y: top + plotH - barHeight, width: bar - 1, height: Math.max(barHeight, 0) }));
    });
    const lx = x0 + bar * 1.5, ly = top + plotH + 10;
    group.append(s("text", { class: "run-label", x: lx, y: ly, transform: `rotate(45 ${lx} ${ly})` },
      `${i + 1}${run.dry_run ? " dry" : ""}${run.status === "failed" ? " ✗" : ""}`));
    svg.append(group);
    points.push([x0 + bar * 1.5, top + plotH - ((duration(run) || 0) / longest) * plotH]);
  });
  svg.append(s("polyline", { class: "duration", points: points.map((p) => p.join(",")).join(" ") }));
  for (const [x, y] of points) svg.append(s("circle", { class: "dot", cx: x, cy: y, r: 3 }));
  svg.append(s("text", { x: 4, y: top + 10 }, number(most)), s("text", { x: 4, y: top + plotH }, "0"),
    s("text", { x: width - right + 6, y: top + 10 }, seconds(longest)),
    s("text", { x: left, y: height - 4 }, when(finished[0].queued_at)),
    s("text", { x: width - right - 150, y: height - 4 }, when(finished[finished.length - 1].queued_at)));
  return h("figure", { id: "chart" }, svg, h("figcaption", { class: "muted" }, "Runs numbered oldest first, placed by when they were queued."), legend);
}

// -- what Snapchat made of it: the audience check, the match rate, warnings, the lookalike ----

function percent(rate) {
  return rate === null || rate === undefined ? "—" : `${(rate * 100).toFixed(1)}%`;
}

// What the match rate is and is not, by how it was computed (docs/how-it-works.md).
const RATE_BASIS = {
  managed: "Snapchat's matched estimate ÷ the identifiers this mirror audience holds, which the app knows exactly.",
  sent_in_retention: "Snapchat's matched estimate ÷ the identifiers sent over the audience's retention window (someone sent by several runs counts once per run, so the true rate is at least this).",
};
const RATE_LIMITS = "An estimate: Snapchat gives no match rate, only a rounded audience size some time after the upload. It says how many of your people Snapchat could find, not which ones; nothing per person is known.";

function rateExplained(rate, basis, id) {
  if (rate === null || rate === undefined) return h("span", { id, class: "muted" }, "— (no estimate yet)");
  const words = `${RATE_BASIS[basis] || "Snapchat's matched estimate ÷ the identifiers sent."} ${RATE_LIMITS}`;
  return h("span", { id, class: "explain", tabindex: "0", title: words, "data-basis": basis || "" }, percent(rate));
}

const WARNING_TITLES = {
  too_few_users: "Too few users to target",
  match_rate_dropped: "Match rate dropped",
  audience_cap_near: "Ad account near its audience cap",
  members_age_out: "Members will age out",
};

function warningBanners(warnings, id) {
  if (!warnings || !warnings.length) return null;
  return h("div", { id, class: "warnings" }, warnings.map((w) =>
    h("div", { class: "banner warn", role: "status", "data-warning": w.code },
      h("strong", {}, `${WARNING_TITLES[w.code] || w.code}: `), w.message || "")));
}

function healthSection(health, mode) {
  if (!health) {
    return h("section", { id: "audience-health" }, h("h2", {}, "What Snapchat made of it"),
      h("p", { class: "muted" }, "No audience check yet: after a run, the app reads Snapchat's estimate of the matched users once Snapchat has processed the upload."));
  }
  const trend = health.trend || [];
  return h("section", { id: "audience-health" }, h("h2", {}, "What Snapchat made of it"),
    h("dl", { class: "facts" },
      h("dt", {}, "Matched users (Snapchat's estimate)"), h("dd", { id: "matched-estimate" }, number(health.matched_estimate)),
      h("dt", {}, "Match rate"), h("dd", {}, rateExplained(health.match_rate, health.match_rate_basis || (mode === "mirror" ? "managed" : "sent_in_retention"), "match-rate")),
      h("dt", {}, "Targetable"), h("dd", { id: "targetable" }, health.targetable_status || "—")),
    trend.length ? healthChart(trend) : null);
}

function healthChart(trend) {
  // On the run chart's time axis: per run, a bar for the matched estimate (right scale) and
  // the match rate as a line (left scale, 0-100%), each placed where its check was read.
  const points = trend.filter((p) => p.at).slice().sort((a, b) => Date.parse(a.at) - Date.parse(b.at));
  const width = 960, height = 200, left = 64, right = 72, top = 16, bottom = 40;
  const plotW = width - left - right, plotH = height - top - bottom;
  const svg = s("svg", { id: "health-chart", class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": `Match rate and matched estimate of the last ${points.length} runs`, "data-points": String(points.length) });
  svg.append(s("title", {}, `Match rate and matched estimate of the last ${points.length} runs, on a time axis`),
    s("line", { class: "axis", x1: left, y1: top + plotH, x2: left + plotW, y2: top + plotH }));
  const most = Math.max(1, ...points.map((p) => p.matched_estimate || 0));
  const t0 = points.length ? Date.parse(points[0].at) : 0, t1 = points.length ? Date.parse(points[points.length - 1].at) : 0;
  const bar = Math.max(3, Math.min(18, plotW / Math.max(1, points.length) - 6));
  const inner = plotW - bar;
  const line = [];
  points.forEach((p, i) => {
    const x = left + (t1 > t0 ? ((Date.parse(p.at) - t0) / (t1 - t0)) * inner : inner / 2);
    const group = s("g", { class: "point", "data-run": p.run_id || "", "data-x": x.toFixed(1) });
    group.append(s("title", {}, `${when(p.at)}: match rate ${percent(p.match_rate)}, matched ${number(p.matched_estimate)}`));
    const barHeight = ((p.matched_estimate || 0) / most) * plotH;
    group.append(s("rect", { class: "s-matched", x, y: top + plotH - barHeight, width: bar - 1, height: barHeight }),
      s("text", { class: "run-label", x: x + bar / 2, y: top + plotH + 12 }, String(i + 1)));
    svg.append(group);
    if (p.match_rate !== null && p.match_rate !== undefined) line.push([x + bar / 2, top + plotH - Math.min(1, p.match_rate) * plotH]);
  });
  svg.append(s("polyline", { class: "rate", points: line.map((q) => q.join(",")).join(" ") }));
  for (const [x, y] of line) svg.append(s("circle", { class: "rate-dot", cx: x, cy: y, r: 3 }));
  svg.append(s("text", { x: 4, y: top + 10 }, "100%"), s("text", { x: 4, y: top + plotH }, "0%"),
    s("text", { x: width - right + 6, y: top + 10 }, number(most)));
  if (points.length) {
    svg.append(s("text", { x: left, y: height - 4 }, when(points[0].at)),
      s("text", { x: width - right - 150, y: height - 4 }, when(points[points.length - 1].at)));
  }
  const legend = h("div", { class: "legend" }, h("span", {}, h("span", { class: "swatch s-rate" }), "match rate (left scale)"),
    h("span", {}, h("span", { class: "swatch s-matched" }), "matched estimate (right scale)"));
  return h("figure", { id: "health-trend" }, svg,
    h("figcaption", { class: "muted" }, "The last runs' audience checks, numbered oldest first, placed by when Snapchat's figures were read."), legend);
}

const LOOKALIKE_STATUS = {
  waiting_for_seed: "waiting for the seed: made once this audience is targetable",
  pending: "pending: Snapchat is building it",
  active: "active",
  failed: "failed",
};

function lookalikeSection(asked, state) {
  if (!asked && !state) return null;
  const fact = (label, value, id) => [h("dt", {}, label), h("dd", id ? { id } : {}, value)];
  const status = state ? state.status : "waiting_for_seed";
  return h("section", { id: "lookalike" }, h("h2", {}, "Lookalike audience"),
    h("dl", { class: "facts" },
      fact("Name", (asked && asked.name) || "—"),
      fact("Type", (asked && asked.type) || "—", "lookalike-type"),
      fact("Countries", ((asked && asked.countries) || []).join(", ") || "—", "lookalike-countries"),
      fact("Status", h("span", { class: `status lookalike ${status}`, "data-status": status }, LOOKALIKE_STATUS[status] || status), "lookalike-status"),
      fact("Size", state && state.size !== null && state.size !== undefined ? number(state.size) : "—", "lookalike-size"),
      state && state.id ? fact("Snapchat ID", h("code", {}, state.id)) : null,
      state && state.created_at ? fact("Created", stamp(state.created_at)) : null,
      state && state.error ? fact("Problem", state.error) : null));
}

function audienceCheck(run) {
  // The run's later look at the audience: Snapchat's status and size once it processed the upload.
  const check = run.audience_check;
  if (!check) {
    if (run.dry_run || run.status !== "succeeded") return null;
    return [h("h2", {}, "Audience check"), h("p", { class: "muted", id: "audience-check" }, "Not checked yet: the app reads the audience once Snapchat has processed the upload.")];
  }
  const fact = (label, value) => [h("dt", {}, label), h("dd", {}, value)];
  return [h("h2", {}, "Audience check"), warningBanners(check.warnings, "run-warnings"),
    h("dl", { class: "facts", id: "audience-check" },
      fact("Upload status", check.upload_status || "—"), fact("Targetable status", check.targetable_status || "—"),
      fact("Matched users (estimate)", number(check.matched_estimate)),
      fact("Match rate", rateExplained(check.match_rate, check.match_rate_basis, "run-match-rate")),
      fact("Read", stamp(check.read_at)), fact("Next check", check.next_check_at ? stamp(check.next_check_at) : "none: checks done"),
      fact("Checks so far", number(check.checks)))];
}

function coverageTable(kinds) {
  // Per identifier kind, why rows were not sent, by reason (shared/core/coverage.py), then
  // what was sent. Counts only.
  const reasons = [...new Set(kinds.flatMap(([, c]) => Object.keys(c.reasons || {})))].sort();
  const head = ["Identifier kind", "Rows", "Empty", ...reasons.map((r) => `Invalid: ${r.replaceAll("_", " ")}`), "Already hashed", "Repeated", "Sent"];
  return h("table", { id: "coverage" },
    h("thead", {}, h("tr", {}, head.map((t, i) => h("th", { scope: "col", class: i ? "num" : "" }, t)))),
    h("tbody", {}, kinds.map(([kind, c]) => h("tr", { "data-kind": kind }, h("td", {}, kind),
      [["rows", c.rows], ["empty", c.empty], ...reasons.map((r) => [r, (c.reasons || {})[r] || 0]),
        ["prehashed", c.prehashed], ["repeated", c.duplicates], ["sent", c.added]]
        .map(([column, v]) => h("td", { class: "num", "data-column": column }, number(v ?? 0)))))));
}

// -- one run ------------------------------------------------------------------------------

async function runPage(render, name, runId) {
  const [reply, definition] = await Promise.all([
    api("GET", `/exports/${encodeURIComponent(name)}/runs/${encodeURIComponent(runId)}`),
    api("GET", `/exports/${encodeURIComponent(name)}`),
  ]);
  if (reply.status !== 200) return render(`Run ${runId}`, banner("error", failure(reply)));
  const run = reply.body;
  const fact = (label, value) => [h("dt", {}, label), h("dd", {}, value)];
  const facts = h("dl", { class: "facts", id: "run-facts" },
    fact("Export", h("a", { href: `#/exports/${encodeURIComponent(name)}` }, name)),
    fact("Status", [statusBadge(run.status), run.dry_run ? " dry run: nothing was sent" : ""]),
    fact("Started by", person(run.requested_by || run.trigger)), fact("Trigger", run.trigger),
    fact("Snapshot", h("code", {}, run.snapshot || "—")), fact("Audience", h("code", {}, run.audience_id || "—")),
    fact("Queued", stamp(run.queued_at)), fact("Started", stamp(run.started_at)), fact("Finished", stamp(run.finished_at)),
    fact("Duration", seconds(duration(run))), fact("Attempts", number(run.attempts)),
    fact("Data landed", stamp(run.snapshot_complete_at)),
    fact("Data landed → audience updated", seconds(run.latency_seconds)),
    fact("Requests to Snapchat", `${number(run.requests)} (${number(run.retries)} retried)`),
    fact("Audience size", run.approximate_number_users === null ? "—" : `${number(run.approximate_number_users)} (${run.targetable_status || "status unknown"})`));
  const totals = h("table", { id: "run-totals" },
    h("thead", {}, h("tr", {}, ["Rows read", "Empty", "Invalid", "Already hashed", "Repeated",
      run.dry_run ? "Would add" : "Added", run.dry_run ? "Would remove" : "Removed", "Unchanged", "Uploaded", "Batches"].map((t) => h("th", { class: "num" }, t)))),
    h("tbody", {}, h("tr", {}, [run.rows_read, run.empty, run.invalid, run.prehashed, run.duplicates,
      run.added, run.removed, run.unchanged, run.uploaded, run.batches].map((v) => h("td", { class: "num" }, number(v))))));
  const kinds = Object.entries(run.by_type || {});
  const columns = ["rows", "empty", "invalid", "prehashed", "duplicates", "added", "removed", "unchanged"];
  const byKind = h("table", { id: "by-kind" },
    h("thead", {}, h("tr", {}, h("th", {}, "Identifier kind"), columns.map((c) => h("th", { class: "num" }, c)))),
    h("tbody", {}, kinds.length ? kinds.map(([kind, counts]) => h("tr", {}, h("td", {}, kind),
      columns.map((c) => h("td", { class: "num" }, number(counts[c] ?? 0))))) : h("tr", {}, h("td", { colspan: 9, class: "muted" }, "No identifier read."))));
  const segments = Object.entries(run.by_segment || {});
  const connection = definition.status === 200 ? (definition.body.definition || {}).connection : null;
  const problem = run.error ? [h("h2", {}, "What went wrong"), h("p", { id: "run-error" }, h("code", {}, run.error)),
    run.advice ? adviceBox(name, run) : h("p", { class: "hint" }, "See Reliability → When a run fails in the manual."),
    run.columns && run.columns.length ? h("p", { id: "run-columns" }, "The snapshot has these columns: ", run.columns.map((c, i) => [i ? ", " : "", h("code", {}, c)])) : null,
    connection && mayRun(connection) ? retryButton(name, run) : null] : [];
  const safeguard = run.safeguard && run.safeguard.decision ? [h("h2", {}, "Removal safeguard"),
    h("p", {}, `Decision: ${run.safeguard.decision}`), ...(run.safeguard.problems || []).map((p) => h("p", { class: "problem" }, p))] : [];
  const covered = kinds.some(([, c]) => c.reasons) ? [h("h2", {}, "Why rows were not sent, by identifier kind"), scroller(coverageTable(kinds)),
    h("p", { class: "hint" }, "Counts only, never a value. Sent: identifiers this run added (a dry run: would add).")] : [];
  render(`Run ${runId}`, facts, ...problem, ...(audienceCheck(run) || []), h("h2", {}, "Counts"), scroller(totals), ...covered, h("h2", {}, "By identifier kind"), scroller(byKind),
    segments.length ? [h("h2", {}, "By segment"), h("ul", {}, segments.map(([label, c]) => h("li", {}, h("code", {}, label), `: ${number(c.rows)} rows`)))] : null,
    ...safeguard);
}

function adviceField(run) {
  // The definition field the advice points at: the API says it; older records name it in backticks.
  if (run.advice_field) return run.advice_field;
  const named = /`((?:columns|audience|source|sources|connection|default_country_code|max_removal_percent|always_allowed_removals|audience_id|mode)[a-z_.[\]0-9]*)`/.exec(run.advice || "");
  return named ? named[1] : "";
}

function adviceBox(name, run) {
  const text = (run.advice || "").replaceAll("`", ""); // plain text, never Markdown
  const field = adviceField(run);
  const link = field ? h("a", { id: "advice-fix", class: "button", href: `#/exports/${encodeURIComponent(name)}?field=${encodeURIComponent(field)}&advice=${encodeURIComponent(text)}` }, `Fix ${field} on the form`) : null;
  return h("div", { class: "advice", id: "run-advice" }, h("strong", {}, "What to do: "), text, link ? [" ", link] : null);
}

function retryButton(name, run) {
  const notice = banner("info", "");
  notice.id = "retry-notice";
  const button = h("button", { type: "button", class: "primary", id: "retry", onclick: async () => {
    button.disabled = true;
    const reply = await api("POST", `/exports/${encodeURIComponent(name)}/runs`, { body: run.dry_run ? { dry_run: true } : {} });
    if (reply.status === 202) { location.hash = `#/exports/${encodeURIComponent(name)}`; return; }
    button.disabled = false;
    notice.className = "banner error";
    notice.replaceChildren(`Not started: ${failure(reply)}`);
  } }, run.dry_run ? "Retry (dry run)" : "Retry");
  return h("div", { class: "toolbar" }, button, h("span", { class: "hint" }, "Runs the export again on its newest snapshot, with the definition as it is now."), notice);
}

// -- new export ---------------------------------------------------------------------------

async function newExportPage(render) {
  if (!mayCreate()) {
    return render("New export", h("div", { class: "banner info", id: "read-only", role: "status" },
      "Your role lets you read exports, not create them: ask an administrator for Exporter.Operator on a connection. ",
      h("a", { href: "#/exports" }, "Back to the exports")));
  }
  const [connections, exported] = await Promise.all([api("GET", "/connections"), api("GET", "/exports")]);
  const containers = [...new Set(((exported.body || {}).exports || []).flatMap((e) => (e.sources || []).map((x) => x.container)))];
  const names = (connections.body.connections || []).map((c) => c.name)
    .filter((n) => isAdmin() || (me.connections || []).includes(n));
  const nameInput = h("input", { id: "field-name", type: "text", "data-field": "name", "aria-describedby": "field-name-problem" });
  const nameProblem = h("p", { class: "problem", id: "field-name-problem" });
  const template = { enabled: false, mode: "add", columns: { email: "" }, connection: names[0] };
  const [problems, form] = definitionForm(template, {
    editable: true, connections: names, containers,
    onSave: async (document, showProblems) => {
      const name = nameInput.value.trim();
      if (!/^[a-z0-9][a-z0-9-]{0,62}$/.test(name)) {
        nameInput.setAttribute("aria-invalid", "true");
        nameProblem.replaceChildren("1-63 lowercase letters, digits or '-'");
        return;
      }
      const reply = await api("PUT", `/exports/${encodeURIComponent(name)}`, { body: document });
      if (reply.status === 201) { location.hash = `#/exports/${encodeURIComponent(name)}`; return; }
      if (reply.status === 412) return showProblems([], `Not saved: an export named ${name} exists already.`);
      showProblems(reply.body.fields || [], reply.body.fields ? "Not saved: fix the fields marked below." : `Not saved: ${failure(reply)}`);
    },
  });
  form.prepend(h("label", { class: "field", for: "field-name" }, "Name"), h("div", { class: "control" }, nameInput, nameProblem));
  render("New export", problems, form);
}

// -- connections --------------------------------------------------------------------------

async function connectionsPage(render, query) {
  const reply = await api("GET", "/connections");
  if (reply.status !== 200) return render("Connections", banner("error", failure(reply)));
  // The outcome of a Connect, as the callback reports it: a fixed code, never free text, so
  // a link cannot make this page say something of its choosing.
  const names = reply.body.connections.map((c) => c.name);
  const connected = query.get("connect") === "ok" && names.includes(query.get("connection")) ? query.get("connection") : null;
  const reason = query.get("connect") === "failed" ? CONNECT_FAILURES[query.get("reason")] || CONNECT_FAILURES.error : null;
  const notice = connected ? banner("ok", `Connected: the refresh token of ${connected} is stored.`)
    : reason ? banner("error", `Connect did not finish: ${reason}`) : banner("info", "");
  notice.id = "notice";
  const rows = reply.body.connections.map((connection) => {
    const present = connection.secrets_present || {};
    const secrets = Object.entries(present).map(([secret, has]) =>
      h("div", { "data-secret": secret }, has === true ? "✓ " : has === false ? "✗ " : "? ", h("code", {}, secret),
        has === true ? "" : has === false ? " missing" : " (could not check)"));
    const document = connection.definition || {};
    const allowed = (document.allowed || []).length ? document.allowed.map((who, i) => [i ? ", " : "", person(who)]) : "Exporter.Admin only";
    const idSecret = (connection.secrets || [])[0], secretSecret = (connection.secrets || [])[1];
    const ready = present[idSecret] === true && present[secretSecret] === true;
    return h("tr", { "data-connection": connection.name },
      h("td", {}, document.display_name || connection.name, h("br"), h("code", {}, connection.name)),
      h("td", {}, allowed),
      h("td", {}, secrets),
      h("td", {}, connection.token_refreshed_at ? [stamp(connection.token_refreshed_at), h("br"), h("span", { class: "muted" }, ago(connection.token_refreshed_at))] : "never"),
      h("td", {}, isAdmin() ? [h("button", { type: "button", class: "primary", disabled: !ready,
        "data-connect": connection.name, onclick: (event) => connect(connection.name, event.target, notice) }, "Connect Snapchat"),
      ready ? null : h("p", { class: "hint" }, "Add the client ID and client secret to Key Vault first.")] : null));
  });
  render("Connections", notice, scroller(h("table", { id: "connections" },
    h("thead", {}, h("tr", {}, ["Connection", "Who may use it", "Secrets", "Token last refreshed", ""].map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, rows))),
  h("p", { class: "hint" }, "Secrets are never shown: only whether each one is present."),
  isAdmin() ? connectionForm(notice) : null);
}

function connectionForm(notice) {
  // Added as Customer Insights adds one: display name, who may use it, the data-transfer
  // acknowledgement, Authenticate with Snapchat (the Connect flow), save.
  const problems = banner("error", "");
  problems.id = "connection-problems";
  const name = h("input", { id: "conn-name", type: "text", required: true, "aria-describedby": "conn-name-hint" });
  const display = h("input", { id: "conn-display-name", type: "text" });
  const people = h("div", { id: "conn-people" });
  const addPerson = () => {
    const row = h("div", { class: "person-row" },
      h("input", { type: "text", class: "person-name", placeholder: "Name, e.g. Mae Jemison", "aria-label": "Name of a person or group" }),
      h("input", { type: "text", class: "person-id", placeholder: "Entra object ID", "aria-label": "Entra object ID" }),
      h("button", { type: "button", onclick: () => row.remove() }, "Remove"));
    people.append(row);
  };
  addPerson();
  const acknowledged = h("input", { id: "conn-ack", type: "checkbox" });
  const save = async (authenticate) => {
    problems.replaceChildren();
    const key = name.value.trim();
    if (!/^[a-z0-9][a-z0-9-]{0,62}$/.test(key)) { problems.append("Name: 1-63 lowercase letters, digits or '-'."); return; }
    if (!acknowledged.checked) { problems.append("Tick the data-transfer acknowledgement first."); return; }
    const allowed = [];
    for (const row of people.querySelectorAll(".person-row")) {
      const id = row.querySelector(".person-id").value.trim(), who = row.querySelector(".person-name").value.trim();
      if (!id && !who) continue;
      if (!OBJECT_ID.test(id)) { problems.append(`${who || "A person"}: the object ID is not a GUID.`); return; }
      allowed.push({ id, name: who });
    }
    const reply = await api("PUT", `/connections/${encodeURIComponent(key)}`, { body: { display_name: display.value.trim(), allowed } });
    if (reply.status !== 201 && reply.status !== 200) {
      const listed = (reply.body.problems || []).join("; ");
      problems.append(reply.status === 412 ? `A connection named ${key} exists already.` : `Not saved: ${listed || failure(reply)}`);
      return;
    }
    if (!authenticate) { location.hash = `#/connections?saved=${Date.now()}`; return; }
    connect(key, document.getElementById("conn-authenticate"), problems);
  };
  return h("section", { id: "add-connection", class: "card" }, h("h2", {}, "Add a connection"), problems,
    h("div", { class: "stack" },
      h("label", { for: "conn-name" }, "Name"), name,
      h("span", { class: "hint", id: "conn-name-hint" }, "Lowercase letters, digits and '-'. Its client ID and client secret must be in Key Vault under this name."),
      h("label", { for: "conn-display-name" }, "Display name"), display,
      h("span", { class: "field" }, "Who may use it (Operators; Admins always may)"), people,
      h("div", {}, h("button", { type: "button", id: "conn-add-person", onclick: addPerson }, "Add a person or group")),
      h("label", { class: "check" }, acknowledged, " I acknowledge that hashed personal data will leave our compliance boundary for Snapchat, and my organisation approved it."),
      h("div", { class: "toolbar" },
        h("button", { type: "button", class: "primary", id: "conn-authenticate", onclick: () => save(true) }, "Save and authenticate with Snapchat"),
        h("button", { type: "button", id: "conn-save", onclick: () => save(false) }, "Save only"))));
}

const CONNECT_FAILURES = {
  unknown: "this Connect is unknown or finished already. Start it again.",
  someone_else: "it was started by someone else. Whoever presses Connect Snapchat must finish it.",
  expired: "it took longer than 10 minutes. Start it again.",
  refused: "Snapchat refused the authorization, or the code could not be exchanged. Check the Snapchat app's client ID, secret and redirect URI, then start again.",
  secrets: "the client ID or client secret is missing. Add them to Key Vault first.",
  not_allowed: "only an Exporter.Admin may connect Snapchat accounts.",
  unavailable: "Snapchat or the app's storage did not answer. Try again in a moment.",
  error: "something went wrong; the app's log says what. Nothing was stored.",
};

async function connect(name, button, notice) {
  button.disabled = true;
  const reply = await api("POST", `/connections/${encodeURIComponent(name)}/connect`, { body: {} });
  if (reply.status !== 200) {
    notice.className = "banner error";
    notice.replaceChildren(`Connect did not start: ${failure(reply)}`);
    button.disabled = false;
    return;
  }
  location.assign(reply.body.authorize_url); // Snapchat's consent page; it sends the browser back
}

// -- routing ------------------------------------------------------------------------------

async function route() {
  generation += 1;
  const drawn = generation;
  delete main.dataset.ready; // set again once this page is drawn (the tests wait for it)
  const [path, queryText] = (location.hash.slice(1) || "/exports").split("?");
  const query = new URLSearchParams(queryText || "");
  let parts;
  try {
    parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  } catch (error) {
    show("Not found", banner("error", "This address names no page of the console."));
    main.dataset.ready = location.hash;
    return;
  }
  for (const link of document.querySelectorAll("[data-nav]")) {
    if (link.dataset.nav === (parts[0] === "connections" ? "connections" : "exports")) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const render = (...content) => { if (current(drawn)) show(...content); };
  if (parts[0] === "connections") await connectionsPage(render, query);
  else if (parts[0] === "new-export") await newExportPage(render);
  else if (parts[0] === "exports" && parts.length === 4 && parts[2] === "runs") await runPage(render, parts[1], parts[3]);
  else if (parts[0] === "exports" && parts.length === 2) await exportPage(render, parts[1], query);
  else await exportsPage(render, query);
  if (current(drawn)) main.dataset.ready = location.hash || "#/exports";
}

async function start() {
  const reply = await api("GET", "/me");
  if (reply.status !== 200) {
    main.replaceChildren(h("h1", {}, "Not signed in"), banner("error", failure(reply)));
    return;
  }
  me = reply.body;
  const role = (me.roles || []).map((r) => r.replace("Exporter.", "")).join(", ") || "no role";
  document.getElementById("who").replaceChildren(h("span", { title: me.object_id }, me.name || me.object_id), ` · ${role}`);
  const switcher = document.getElementById("zone");
  const label = () => { switcher.textContent = zone() === "utc" ? "Times: UTC" : "Times: your time"; switcher.setAttribute("aria-pressed", String(zone() === "utc")); };
  label();
  switcher.addEventListener("click", () => { localStorage.setItem("console.zone", zone() === "utc" ? "local" : "utc"); label(); route(); });
  document.body.dataset.roles = (me.roles || []).join(" ");
  document.querySelector(".skip").addEventListener("click", (event) => { event.preventDefault(); main.focus(); });
  if (!(me.roles || []).length) {
    show("No access yet",
      h("p", {}, `You are signed in as ${me.name || me.object_id}, but you have no role in this app, so it shows you nothing.`),
      h("p", {}, "Ask whoever administers the app in Microsoft Entra ID to assign you one of its roles on the enterprise application: Exporter.Reader to see exports and runs, Exporter.Operator to run and change them, Exporter.Admin for connections."),
      h("p", { class: "muted" }, `Your object ID, for that request: ${me.object_id}`));
    main.dataset.ready = "no-role";
    return;
  }
  window.addEventListener("hashchange", () => { route(); });
  await route();
}

start();
