// The operator page: one card per site fed by the station's event stream (one small message per
// event; the only full state is the snapshot a page starts from), plus the engineer's tables.
"use strict";

const stats = { received: 0, snapshots: 0, maxBytes: 0, lastSeq: 0, outOfOrder: 0 };
window.stationStats = stats;

const state = { info: null, steps: [], sites: new Map(), running: false, prompts: new Map() };

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

async function post(path, body) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error || `${response.status} ${response.statusText}`);
  return data;
}

function say(text) {
  document.getElementById("message").textContent = text || "";
}

// --- site cards -----------------------------------------------------------------------------
function card(site) {
  if (state.sites.has(site)) return state.sites.get(site);
  const node = document.getElementById("site-template").content.firstElementChild.cloneNode(true);
  node.id = `site-${site}`;
  node.querySelector(".site-name").textContent = `Site ${site}`;
  const serial = node.querySelector(".serial");
  serial.id = `site-${site}-serial`;
  serial.addEventListener("keydown", (event) => {
    if (event.key !== "Enter") return;
    event.preventDefault();
    const next = document.getElementById(`site-${site + 1}-serial`);
    if (next && !next.value) next.focus();
    else start();
  });
  node.querySelector(".retest").addEventListener("click", () => retest(site));
  document.getElementById("sites").appendChild(node);
  const view = {
    node,
    serial,
    verdict: node.querySelector(".verdict"),
    bar: node.querySelector(".bar"),
    now: node.querySelector(".now"),
    steps: node.querySelector(".steps"),
    error: node.querySelector(".error"),
    failing: node.querySelector(".failing"),
    retest: node.querySelector(".retest"),
    rows: new Map(),
    current: "",
    measured: 0,
    done: 0,
    lastSerial: "",
  };
  state.sites.set(site, view);
  return view;
}

function setVerdict(view, text, cls) {
  view.verdict.textContent = text;
  view.verdict.className = `verdict ${cls}`;
}

function resetSite(view, serial) {
  view.rows.clear();
  view.steps.replaceChildren();
  view.failing.hidden = true;
  view.failing.tBodies[0].replaceChildren();
  view.error.textContent = "";
  view.now.textContent = "";
  view.current = "";
  view.measured = 0;
  view.done = 0;
  view.bar.style.width = "0";
  view.retest.hidden = true;
  view.lastSerial = serial;
  delete view.verdict.dataset.run;
  setVerdict(view, `TESTING ${serial}`, "running");
}

function setStep(view, message) {
  let row = view.rows.get(message.index);
  if (!row) {
    row = el("li", `${message.step}`);
    view.rows.set(message.index, row);
    view.steps.appendChild(row);
  }
  const finished = message.state !== "running";
  if (finished && row.className === "running") view.done += 1;
  row.className = message.state;
  row.textContent = finished
    ? `${message.step} (${Number(message.duration_s || 0).toFixed(1)} s)`
    : message.step;
  if (!finished) {
    view.current = `step ${message.index + 1} of ${state.steps.length}: ${message.step}`;
    showNow(view);
    row.scrollIntoView({ block: "nearest" });
  }
  const total = Math.max(state.steps.length, 1);
  view.bar.style.width = `${Math.min(100, (100 * view.done) / total)}%`;
}

function showNow(view) {
  view.now.textContent = `${view.current}${view.measured ? ` · ${view.measured} measured` : ""}`;
}

// numbers as the CLI's tables show them: two decimals, or three significant digits when small
function value(x) {
  if (typeof x !== "number") return String(x);
  return Math.abs(x) >= 0.01 || x === 0 ? x.toFixed(2) : x.toPrecision(3);
}

function limit(x) {
  return String(Number(x.toPrecision(6)));
}

function limits(m) {
  if (m.expected) return m.expected;
  if (m.low !== null && m.high !== null) return `${limit(m.low)} .. ${limit(m.high)}`;
  if (m.low !== null) return `>= ${limit(m.low)}`;
  if (m.high !== null) return `<= ${limit(m.high)}`;
  return "";
}

function showVerdict(view, message) {
  setVerdict(view, message.outcome, message.outcome);
  view.verdict.dataset.run = message.run_id;
  view.bar.style.width = "100%";
  view.now.textContent = `${message.serial} run ${message.run_id}`;
  view.error.textContent = message.error || "";
  const body = view.failing.tBodies[0];
  body.replaceChildren();
  for (const m of message.failing) {
    const row = el("tr");
    row.append(
      el("td", m.name),
      el("td", m.lane === null ? "" : m.lane),
      el("td", `${value(m.value)} ${m.unit}`.trim()),
      el("td", limits(m)),
    );
    body.appendChild(row);
  }
  view.failing.hidden = message.failing.length === 0;
  view.retest.hidden = false;
}

// --- the event stream -----------------------------------------------------------------------
const handlers = {
  snapshot(message) {
    stats.snapshots += 1;
    state.steps = message.steps;
    for (const site of message.sites) {
      const view = card(site.site);
      if (site.state === "idle") continue;
      resetSite(view, site.serial);
      for (const step of site.steps) setStep(view, step);
      if (site.verdict) showVerdict(view, site.verdict);
    }
    state.prompts.clear();
    for (const prompt of message.prompts) state.prompts.set(prompt.prompt_id, prompt);
    showPrompt();
  },
  run(message) {
    resetSite(card(message.site), message.serial);
  },
  step(message) {
    setStep(card(message.site), message);
  },
  measured(message) {
    const view = card(message.site);
    const lane = message.lane === null ? "" : ` lane ${message.lane}`;
    view.measured = message.count;
    view.now.title = `last: ${message.name}${lane} ${message.outcome}`;
    showNow(view);
  },
  verdict(message) {
    showVerdict(card(message.site), message);
  },
  prompt(message) {
    state.prompts.set(message.prompt_id, message);
    showPrompt();
  },
  prompt_closed(message) {
    state.prompts.delete(message.prompt_id);
    showPrompt();
  },
  batch(message) {
    state.running = message.state === "running";
    document.getElementById("start").disabled = state.running;
    document.getElementById("abort").disabled = !state.running;
    if (message.state === "error") {
      for (const site of message.sites) {
        const view = card(site);
        setVerdict(view, "ERROR", "ERROR");
        view.verdict.dataset.run = `batch-${message.seq}`;
        view.error.textContent = message.error;
        view.retest.hidden = false;
      }
    }
    say(message.error || "");
    if (!state.running && !document.getElementById("engineer-view").hidden) refreshEngineer();
  },
};

function connect() {
  const link = document.getElementById("link");
  const source = new EventSource("/api/events");
  source.onopen = () => link.classList.add("up");
  source.onerror = () => link.classList.remove("up");
  source.onmessage = (event) => {
    const message = JSON.parse(event.data);
    stats.received += 1;
    stats.maxBytes = Math.max(stats.maxBytes, event.data.length);
    if (message.type !== "snapshot") {
      if (message.seq <= stats.lastSeq) stats.outOfOrder += 1;
      stats.lastSeq = message.seq;
    } else {
      stats.lastSeq = message.seq;
    }
    const handler = handlers[message.type];
    if (handler) handler(message);
  };
}

// --- operator actions -----------------------------------------------------------------------
async function start(serials) {
  if (state.running) return;
  const chosen = serials || {};
  if (!serials) {
    for (const [site, view] of state.sites) chosen[String(site)] = view.serial.value.trim();
  }
  say("");
  try {
    await post("/api/start", { serials: chosen });
    for (const [site, serial] of Object.entries(chosen)) {
      const view = card(Number(site));
      if (serial) view.serial.value = "";
    }
    const first = document.getElementById("site-1-serial");
    if (first) first.focus();
  } catch (error) {
    say(error.message);
  }
}

function retest(site) {
  const view = card(site);
  if (view.lastSerial) start({ [String(site)]: view.lastSerial });
}

function showPrompt() {
  const dialog = document.getElementById("prompt");
  const next = state.prompts.values().next();
  if (next.done) {
    if (dialog.open) dialog.close();
    return;
  }
  const prompt = next.value;
  dialog.dataset.promptId = prompt.prompt_id;
  dialog.querySelector(".prompt-site").textContent = `Site ${prompt.site} — ${prompt.step}`;
  dialog.querySelector(".prompt-message").textContent = prompt.message;
  const choices = dialog.querySelector(".prompt-choices");
  choices.replaceChildren();
  for (const choice of prompt.choices) {
    const button = el("button", choice);
    button.type = "button";
    button.addEventListener("click", async () => {
      try {
        await post(`/api/prompts/${encodeURIComponent(prompt.prompt_id)}`, { answer: choice });
      } catch (error) {
        say(error.message);
      }
      state.prompts.delete(prompt.prompt_id);
      showPrompt();
    });
    choices.appendChild(button);
  }
  if (!dialog.open) dialog.showModal();
}

// --- engineer view --------------------------------------------------------------------------
function percent(fraction) {
  return fraction === null ? "" : `${(100 * fraction).toFixed(1)} %`;
}

async function refreshEngineer() {
  const [runs, yields] = await Promise.all([
    fetch("/api/runs").then((r) => r.json()),
    fetch("/api/yield").then((r) => r.json()),
  ]);
  const yieldBody = document.querySelector("#yield tbody");
  yieldBody.replaceChildren(
    ...yields.map((y) => {
      const row = el("tr");
      row.append(
        el("td", y.product),
        el("td", y.units),
        el("td", y.pass),
        el("td", y.fail),
        el("td", y.error),
        el("td", percent(y.yield)),
        el("td", percent(y.yield_tested)),
      );
      return row;
    }),
  );
  const runBody = document.querySelector("#runs tbody");
  runBody.replaceChildren(
    ...runs.map((run) => {
      const row = el("tr");
      const link = el("a", "report");
      link.href = `/report/${encodeURIComponent(run.run_id)}`;
      link.target = "_blank";
      const report = el("td");
      report.appendChild(link);
      row.append(
        el("td", run.started_at.replace("T", " ")),
        el("td", run.product),
        el("td", run.dut_serial),
        el("td", run.site === null ? "" : run.site),
        el("td", run.outcome, run.outcome),
        report,
      );
      return row;
    }),
  );
}

function showView(name) {
  for (const view of ["operator", "engineer"]) {
    document.getElementById(`${view}-view`).hidden = view !== name;
    document.getElementById(`tab-${view}`).classList.toggle("active", view === name);
  }
  if (name === "engineer") refreshEngineer().catch((error) => say(error.message));
}

async function init() {
  state.info = await fetch("/api/station").then((r) => r.json());
  document.getElementById("product").textContent = state.info.product;
  document.getElementById("sequence").textContent = `sequence ${state.info.sequence}`;
  document.getElementById("station").textContent =
    `${state.info.station_id}${state.info.simulated ? " (simulated bench)" : ""}`;
  state.steps = state.info.steps;
  for (let site = 1; site <= state.info.sites; site += 1) card(site);
  document.getElementById("start").addEventListener("click", () => start());
  document.getElementById("abort").addEventListener("click", () =>
    post("/api/abort", {}).catch((error) => say(error.message)),
  );
  document.getElementById("tab-operator").addEventListener("click", () => showView("operator"));
  document.getElementById("tab-engineer").addEventListener("click", () => showView("engineer"));
  document.getElementById("site-1-serial").focus();
  connect();
  document.body.dataset.ready = "true";
}

document.addEventListener("DOMContentLoaded", init);
