// tvcache dashboard: roots, a paged tree, node details, live counters and charts.
// One script for both pages: "live" reads /v1/dashboard/* and its event stream; "file"
// (tvcache tree --html) reads the data inlined in the page. Text from tools is untrusted:
// it is only ever set as textContent, never parsed as HTML.
(function () {
  "use strict";

  const boot = window.TVCACHE_BOOT || { mode: "live" };
  const live = boot.mode === "live";
  const PAGE = 200;
  const EXPAND_ALL_LIMIT = 2000;
  const CHART_POINTS = 600;

  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  // ------------------------------------------------------------------ formatting
  function bytes(n) {
    if (n === null || n === undefined) return "–";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (Math.abs(n) >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i === 0 ? n.toFixed(0) : n.toFixed(1)) + " " + units[i];
  }
  const pct = (x) => (100 * x).toFixed(1) + "%";
  const num = (n) => Number(n).toLocaleString("en-US");
  const secs = (s) => (s >= 100 ? s.toFixed(0) : s.toFixed(2)) + " s";
  function age(s) {
    if (s < 90) return s.toFixed(0) + " s";
    if (s < 5400) return (s / 60).toFixed(0) + " min";
    if (s < 172800) return (s / 3600).toFixed(1) + " h";
    return (s / 86400).toFixed(1) + " days";
  }
  function hitColour(hits, passes) {
    if (!passes) return "#cbd5e1";
    const share = hits / passes;
    return `hsl(${Math.round(120 * share)}, ${Math.round(70 * share)}%, 45%)`; // grey → green
  }

  // ------------------------------------------------------------------ data
  async function getJSON(url) {
    const answer = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (!answer.ok) {
      let message = `HTTP ${answer.status}`;
      try {
        const body = await answer.json();
        message = `${body.error.message} (${body.error.hint})`;
      } catch (_ignored) { /* not our JSON */ }
      throw new Error(message);
    }
    return answer.json();
  }

  const enc = encodeURIComponent;
  const api = live
    ? {
        roots: () => getJSON("/v1/dashboard/roots"),
        children: (root, parent, offset, limit) => {
          const query = new URLSearchParams({ offset: String(offset), limit: String(limit) });
          if (parent) query.set("parent", parent);
          return getJSON(`/v1/dashboard/roots/${enc(root)}/children?${query}`);
        },
        node: (root, id) => getJSON(`/v1/dashboard/roots/${enc(root)}/nodes/${enc(id)}`),
      }
    : {
        roots: async () => boot.data.roots,
        children: async (root, parent, offset, limit) => {
          const all = boot.data.children[parent || root] || [];
          return { root_id: root, parent: parent || root, total: all.length, offset,
                   nodes: all.slice(offset, offset + limit) };
        },
        node: async (_root, id) => boot.data.details[id],
      };

  // ------------------------------------------------------------------ state
  const state = {
    roots: [],
    root: null,          // selected root summary
    selected: null,      // selected node id
    expanded: new Set(), // node ids whose children are shown
    shown: new Map(),    // parent id -> how many children are loaded
    scale: 1,            // passes of the busiest top-level node: bar width 100%
    refreshing: false,
    pending: false,
  };

  function setStatus(text, bad) {
    const status = $("status");
    status.textContent = text;
    status.classList.toggle("bad", Boolean(bad));
  }

  // ------------------------------------------------------------------ counters
  function showCounters(stats, budget, sessions) {
    $("c-calls").textContent = num(stats.calls);
    $("c-hit-rate").textContent = pct(stats.hit_rate);
    $("c-saved").textContent = secs(stats.seconds_saved);
    $("c-nodes").textContent = num(stats.nodes);
    $("c-forks").textContent = stats.forks === undefined ? "–" : num(stats.forks);
    $("c-snapshots").textContent = num(stats.snapshots);
    $("c-sessions").textContent = sessions === undefined ? "–" : num(sessions);
    const used = stats.snapshot_bytes || 0;
    $("c-bytes").textContent = budget ? `${bytes(used)} / ${bytes(budget)}` : bytes(used);
    const bar = $("c-bytes-bar");
    const share = budget ? used / budget : 0;
    bar.style.width = Math.min(100, 100 * share).toFixed(1) + "%";
    bar.classList.toggle("over", share > 1);
  }

  // ------------------------------------------------------------------ roots table
  function showRoots(roots) {
    state.roots = roots;
    const body = $("roots").tBodies[0];
    body.replaceChildren(
      ...roots.map((r) =>
        el("tr", { "data-root": r.root_id, class: state.root && state.root.root_id === r.root_id ? "selected" : "",
                   onclick: () => selectRoot(r.root_id) },
          el("td", { text: r.task_id }),
          el("td", {}, el("code", { text: r.root_id.slice(0, 12), title: r.root_id })),
          el("td", { text: r.backend }),
          el("td", { class: "n", text: num(r.nodes) }),
          el("td", { class: "n", text: num(r.calls) }),
          el("td", { class: "n", text: pct(r.hit_rate) }),
          el("td", { class: "n", text: secs(r.seconds_saved) }),
          el("td", { class: "n", text: num(r.snapshots) }),
          el("td", { class: "n", text: bytes(r.snapshot_bytes) })))
    );
    if (!roots.length) {
      body.append(el("tr", {}, el("td", { colspan: 9, class: "hint",
        text: "no roots yet: run some sessions (e.g. tvcache bench sql --quick --keep)" })));
    }
  }

  // ------------------------------------------------------------------ tree
  function marks(n) {
    const out = [];
    if (n.snapshot) out.push(el("span", { class: "m m-snap", text: "snapshot" }));
    if (n.nondeterministic) out.push(el("span", { class: "m m-nondet", text: "nondeterministic" }));
    if (n.read_only) out.push(el("span", { class: "m m-ro", text: "read-only" }));
    if (n.merged) out.push(el("span", { class: "m m-merged", text: "merged" }));
    if (n.withdrawn) out.push(el("span", { class: "m m-withdrawn", text: "withdrawn" }));
    return out;
  }

  function nodeItem(n) {
    const open = state.expanded.has(n.id);
    const toggle = el("button", { class: "toggle", type: "button", "aria-label": open ? "collapse" : "expand",
                                  disabled: n.children === 0, text: n.children ? (open ? "▾" : "▸") : "" });
    const width = Math.max(3, Math.round(120 * Math.min(1, n.passes / state.scale)));
    const row = el("div", {
        class: "row" + (n.tainted ? " tainted" : "") + (state.selected === n.id ? " selected" : ""),
        title: `${n.passes} session(s) passed, ${n.hits} hit(s)` + (n.tainted ? "; tainted: a nondeterministic call is on its path" : ""),
      },
      toggle,
      el("span", { class: "bar", style: `width:${width}px;background:${hitColour(n.hits, n.passes)}` }),
      el("span", { class: "label", text: n.label }),
      ...marks(n),
      el("span", { class: "count", text: `${n.hits}/${n.passes}` + (n.children ? ` · ${n.children} below` : "") }));
    const item = el("li", { class: "node", role: "treeitem", "data-id": n.id, "aria-expanded": n.children ? String(open) : null },
                    row);
    const kids = el("ul", { role: "group" });
    kids.hidden = !open;
    item.append(kids);
    toggle.addEventListener("click", (event) => { event.stopPropagation(); toggleNode(n, item); });
    row.addEventListener("click", () => selectNode(n.id));
    row.addEventListener("dblclick", () => toggleNode(n, item));
    return item;
  }

  // Fill ``list`` with the first ``count`` children of ``parent`` (re-opening expanded ones).
  async function fillLevel(list, parent, count, budget) {
    const root = state.root.root_id;
    const items = [];
    let total = 0;
    let offset = 0;
    while (offset < count) {
      const page = await api.children(root, parent, offset, Math.min(PAGE * 5, count - offset));
      total = page.total;
      if (parent === root && offset === 0) {
        state.scale = Math.max(1, ...page.nodes.map((n) => n.passes));
      }
      for (const n of page.nodes) items.push(n);
      if (!page.nodes.length) break;
      offset += page.nodes.length;
    }
    state.shown.set(parent, items.length);
    const elements = [];
    for (const n of items) {
      const item = nodeItem(n);
      elements.push(item);
      if (state.expanded.has(n.id) && n.children && (!budget || budget.left > 0)) {
        if (budget) budget.left -= Math.min(n.children, PAGE);
        await fillLevel(item.lastChild, n.id, Math.max(PAGE, state.shown.get(n.id) || 0), budget);
      } else {
        state.expanded.delete(n.id);
        if (n.children) item.setAttribute("aria-expanded", "false");
        item.lastChild.hidden = true;
      }
    }
    if (total > items.length) {
      const more = el("button", { type: "button", text: `show ${Math.min(PAGE, total - items.length)} more (${num(items.length)} of ${num(total)})` });
      more.addEventListener("click", async () => {
        state.shown.set(parent, items.length + PAGE);
        await fillLevel(list, parent, items.length + PAGE, null);
      });
      elements.push(el("li", { class: "more" }, more));
    }
    list.replaceChildren(...elements);
  }

  async function toggleNode(n, item) {
    if (!n.children) return;
    const kids = item.lastChild;
    if (state.expanded.has(n.id)) {
      state.expanded.delete(n.id);
      kids.hidden = true;
      kids.replaceChildren();
      item.setAttribute("aria-expanded", "false");
      item.firstChild.firstChild.textContent = "▸";
      return;
    }
    state.expanded.add(n.id);
    item.setAttribute("aria-expanded", "true");
    item.firstChild.firstChild.textContent = "▾";
    kids.hidden = false;
    await guarded(fillLevel(kids, n.id, PAGE, null));
  }

  async function renderTree(budget) {
    if (!state.root) return;
    const tree = $("tree");
    tree.dataset.loading = "1";
    const root = state.root.root_id;
    const count = Math.max(PAGE, state.shown.get(root) || 0);
    const fresh = el("ul");
    await fillLevel(fresh, root, count, budget);
    tree.replaceChildren(...fresh.childNodes);
    delete tree.dataset.loading;
    tree.dataset.nodes = String(tree.querySelectorAll("li.node").length);
  }

  async function refreshTree() {
    if (state.refreshing) { state.pending = true; return; }
    state.refreshing = true;
    try {
      await renderTree(null);
    } finally {
      state.refreshing = false;
      if (state.pending) { state.pending = false; setTimeout(refreshTree, 500); }
    }
  }

  async function expandAll() {
    // breadth first through the store, up to EXPAND_ALL_LIMIT nodes
    const root = state.root.root_id;
    $("tree").dataset.loading = "1"; // set before the first await: a click sees it at once
    let frontier = [root];
    let seen = 0;
    while (frontier.length && seen < EXPAND_ALL_LIMIT) {
      const next = [];
      for (const parent of frontier) {
        const page = await api.children(root, parent, 0, Math.min(1000, EXPAND_ALL_LIMIT));
        seen += page.nodes.length;
        for (const n of page.nodes) if (n.children) { state.expanded.add(n.id); next.push(n.id); }
        if (seen >= EXPAND_ALL_LIMIT) break;
      }
      frontier = next;
    }
    await renderTree({ left: EXPAND_ALL_LIMIT });
  }

  async function selectRoot(rootId) {
    const root = state.roots.find((r) => r.root_id === rootId);
    if (!root) return;
    if (!state.root || state.root.root_id !== rootId) {
      state.expanded.clear();
      state.shown.clear();
      state.selected = null;
    }
    state.root = root;
    for (const row of $("roots").tBodies[0].rows) row.classList.toggle("selected", row.dataset.root === rootId);
    $("tree-title").textContent = `tree of ${root.task_id} (${num(root.nodes)} nodes)`;
    if (live) history.replaceState(null, "", "#root=" + enc(rootId));
    await guarded(renderTree(null));
  }

  // ------------------------------------------------------------------ detail
  function dl(pairs) {
    return el("dl", {}, ...pairs.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })]));
  }

  async function selectNode(id) {
    state.selected = id;
    for (const row of document.querySelectorAll("#tree .row.selected")) row.classList.remove("selected");
    const item = document.querySelector(`#tree li[data-id="${CSS.escape(id)}"]`);
    if (item) item.firstChild.classList.add("selected");
    const pane = $("detail");
    let d;
    try {
      d = await api.node(state.root.root_id, id);
    } catch (error) {
      pane.replaceChildren(el("p", { class: "error", text: String(error.message || error) }));
      return;
    }
    const parts = [el("h2", {}, "node ", el("code", { text: d.id.slice(0, 16), title: d.id }))];
    parts.push(el("h3", { text: "call" }),
               el("pre", { class: "call", text: d.call ? `${d.call.tool} ${JSON.stringify(d.call.args, null, 2)}` : "(the root: no call)" }));
    parts.push(el("h3", { text: "observation" }));
    if (d.observation) {
      const o = d.observation;
      parts.push(el("pre", { class: "observation", text: o.output }),
                 dl([["exit code", o.exit_code], ["seconds", o.seconds.toFixed(3)],
                     ["truncated", o.truncated ? "yes (cut with a visible marker)" : "no"],
                     ["timed out", o.timed_out ? "yes" : "no"]]));
    } else {
      parts.push(el("p", { class: "hint", text: d.parent ? "withdrawn: it failed verification; the next call here runs again" : "–" }));
    }
    const s = d.stats;
    parts.push(el("h3", { text: "statistics" }),
               dl([["executions", num(s.executions)], ["hits", num(s.hits)], ["seconds executing", secs(s.exec_seconds)],
                   ["seconds saved", secs(s.seconds_saved)], ["children", num(d.children)], ["depth", d.depth],
                   ["last use", s.last_use ? new Date(s.last_use * 1000).toLocaleString() : "never"]]));
    const flags = [d.nondeterministic && "nondeterministic", d.read_only && "read-only", d.merged && "merged",
                   d.tainted && "tainted path (a nondeterministic call at or above it)"].filter(Boolean);
    parts.push(el("h3", { text: "flags" }), el("p", { text: flags.length ? flags.join(", ") : "none" }));
    if (d.fingerprint) parts.push(dl([["state fingerprint", d.fingerprint.slice(0, 16)]]));
    parts.push(el("h3", { text: "snapshot" }));
    parts.push(d.snapshot
      ? dl([["level", d.snapshot.level], ["bytes", bytes(d.snapshot.bytes)], ["age", age(d.snapshot.age_seconds)]])
      : el("p", { class: "hint", text: "none: a fork replays from the nearest snapshotted ancestor" }));
    parts.push(el("h3", { text: "restore a live sandbox here" }), el("pre", { class: "restore", text: d.restore }));
    pane.replaceChildren(...parts);
  }

  // ------------------------------------------------------------------ charts
  const series = { t: [], hit: [], fork: [], snap: [] };
  let hitChart = null;
  let latencyChart = null;

  function makeCharts() {
    if (!live || typeof uPlot === "undefined") return;
    const width = (id) => Math.max(300, $(id).clientWidth || 420);
    hitChart = new uPlot({ width: width("chart-hits"), height: 160, scales: { y: { range: [0, 100] } },
                           series: [{}, { label: "hit rate %", stroke: "#10b981", width: 2 }] },
                         [[], []], $("chart-hits"));
    latencyChart = new uPlot({ width: width("chart-latency"), height: 160,
                               series: [{}, { label: "fork ms", stroke: "#2563eb", width: 2 },
                                        { label: "snapshot ms", stroke: "#d97706", width: 2 }] },
                             [[], [], []], $("chart-latency"));
  }

  function chartPoint(s) {
    const ms = (x) => (x === null || x === undefined ? null : 1000 * x);
    series.t.push(s.time); series.hit.push(100 * s.stats.hit_rate);
    series.fork.push(ms(s.latency.fork)); series.snap.push(ms(s.latency.snapshot));
    for (const key of Object.keys(series)) if (series[key].length > CHART_POINTS) series[key].shift();
    if (hitChart) hitChart.setData([series.t, series.hit]);
    if (latencyChart) latencyChart.setData([series.t, series.fork, series.snap]);
  }

  // ------------------------------------------------------------------ live
  function onLive(s) {
    showCounters(s.stats, s.budget_bytes, s.sessions_open);
    chartPoint(s);
    const before = state.root && state.roots.find((r) => r.root_id === state.root.root_id);
    showRoots(s.roots);
    if (!state.root && s.roots.length) { selectRoot(s.roots[0].root_id); return; }
    if (state.root) {
      const now = s.roots.find((r) => r.root_id === state.root.root_id);
      if (now) {
        state.root = now;
        $("tree-title").textContent = `tree of ${now.task_id} (${num(now.nodes)} nodes)`;
        if (!before || before.nodes !== now.nodes || before.calls !== now.calls) refreshTree();
      }
    }
    setStatus("live · updated " + new Date(s.time * 1000).toLocaleTimeString());
  }

  function connect() {
    const events = new EventSource("/v1/dashboard/events");
    events.addEventListener("live", (e) => onLive(JSON.parse(e.data)));
    events.addEventListener("error", () => setStatus("disconnected: reconnecting…", true));
  }

  async function guarded(promise) {
    try {
      return await promise;
    } catch (error) {
      setStatus(String(error.message || error), true);
      return undefined;
    }
  }

  async function start() {
    document.body.classList.add(live ? "live" : "file");
    $("mode").textContent = live ? "live" : "saved " + new Date(boot.data.generated * 1000).toLocaleString();
    $("expand-all").addEventListener("click", () => state.root && guarded(expandAll()));
    $("collapse-all").addEventListener("click", () => { state.expanded.clear(); state.shown.clear(); guarded(renderTree(null)); });
    makeCharts();
    const roots = await guarded(api.roots());
    showRoots(roots || []);
    if (!live && roots && roots.length) {
      const r = roots[0];
      showCounters({ calls: r.calls, hit_rate: r.hit_rate, seconds_saved: r.seconds_saved, nodes: r.nodes,
                     snapshots: r.snapshots, snapshot_bytes: r.snapshot_bytes }, null, undefined);
    }
    const wanted = new URLSearchParams(location.hash.slice(1)).get("root");
    const first = (roots || []).find((r) => r.root_id === wanted) || (roots || [])[0];
    if (first) await selectRoot(first.root_id);
    if (live) {
      const s = await guarded(getJSON("/v1/dashboard/live"));
      if (s) onLive(s);
      connect();
    }
    document.body.dataset.ready = "1";
  }

  start();
})();
