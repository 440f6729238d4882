// The timeline of the HTML report: the run's processes (the JSON in #run-data) drawn as one
// row per process in tree order. Only the rows in view are in the page (a 100,000-process run
// stays fast); zoom, collapsing subtrees, the critical path, search and details work on the data.
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("run-data").textContent);
  var P = D.procs, S = D.strings, N = P.start.length;
  // RIGHT: room after the plot for the duration written after the last bar.
  var ROW = 20, LABEL = 380, RIGHT = 64, OVERSCAN = 15, MAX_SHEET = 15e6, INDENT = 12, MAX_INDENT = 20;
  var wall = Math.max(D.wall_us, 1);

  var scroller = document.getElementById("scroller");
  var sheet = document.getElementById("sheet");
  var rowsEl = document.getElementById("rows");
  var axisEl = document.getElementById("axis");
  var chartsEl = document.getElementById("charts");
  var details = document.getElementById("details");

  // Durations as present/units.rs writes them (three significant digits); repeated here
  // because the axis is labelled in the browser at every zoom.
  function three(v) {
    var a = Math.abs(v);
    return a >= 99.95 ? v.toFixed(0) : a >= 9.995 ? v.toFixed(1) : v.toFixed(2);
  }
  function dur(us) {
    var s = us / 1e6, a = Math.abs(s);
    if (us === 0) return "0 s";
    if (a < 999.5e-6) return three(us) + " µs";
    if (a < 0.9995) return three(s * 1e3) + " ms";
    if (a < 59.95) return three(s) + " s";
    if (a < 3597) return three(s / 60) + " min";
    return three(s / 3600) + " h";
  }
  function bytes(n) {
    if (n === null || n === undefined) return "-";
    if (Math.abs(n) < 1000) return n + " B";
    var units = ["KiB", "MiB", "GiB", "TiB"], v = n / 1024;
    for (var k = 0; k < units.length; k++) {
      if (Math.abs(v) < 999.5) return three(v) + " " + units[k];
      v /= 1024;
    }
    return three(v) + " PiB";
  }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  var SVG = "http://www.w3.org/2000/svg";
  function svg(tag, attrs) {
    var e = document.createElementNS(SVG, tag);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    return e;
  }

  // The tree: children, subtree sizes (tree order keeps each subtree contiguous).
  var order = D.order, depth = P.depth;
  var children = new Array(N);
  for (var i = 0; i < N; i++) children[i] = [];
  for (var k = 0; k < N; k++) {
    var c = order[k];
    if (P.parent[c] >= 0) children[P.parent[c]].push(c);
  }
  var size = new Int32Array(N);
  for (k = N - 1; k >= 0; k--) {
    c = order[k];
    size[c] += 1;
    if (P.parent[c] >= 0) size[P.parent[c]] += size[c];
  }
  function commandOf(i) {
    var cmd = P.command[i];
    if (cmd !== null && cmd !== undefined) return cmd;
    return P.argv[i].length ? P.argv[i].join(" ") : S[P.binary[i]];
  }
  // A program run by its absolute path labelled by its file name; details show all of it.
  function labelOf(i) {
    var cmd = commandOf(i), program = P.argv[i][0];
    if (!program || program[0] !== "/" || cmd.indexOf(program) !== 0) return cmd;
    var rest = cmd.slice(program.length);
    if (rest && rest[0] !== " ") return cmd;
    return program.slice(program.lastIndexOf("/") + 1) + rest;
  }
  var lowered = null; // commands in lower case, made on the first search

  // Critical path: segments per process.
  var segs = {}, onPath = new Uint8Array(N), pathTime = new Float64Array(N);
  for (k = 0; k + 2 < D.critical.length; k += 3) {
    var n = D.critical[k];
    (segs[n] = segs[n] || []).push([D.critical[k + 1], D.critical[k + 2]]);
    onPath[n] = 1;
    pathTime[n] += D.critical[k + 2] - D.critical[k + 1];
  }
  var samplesOf = {};
  D.samples.forEach(function (s) { samplesOf[s.proc] = s; });

  // What is shown: rows in tree order without the insides of collapsed subtrees. The page
  // opens collapsed to the steps (D.steps, as the run's summary chooses them: a shim's helpers
  // are no steps), with processes shorter than SHORT_US that lead to no step folded into a
  // count on their parent, so the heavy steps are what a person sees first.
  var SHORT_US = 1000;
  var collapsed = new Uint8Array(N), visible = [], rowOf = new Int32Array(N);
  var isStep = new Uint8Array(N), towardStep = new Uint8Array(N), shortBelow = new Int32Array(N);
  D.steps.forEach(function (s) {
    isStep[s] = 1;
    for (var a = s; a >= 0 && !towardStep[a]; a = P.parent[a]) towardStep[a] = 1;
  });
  var foldShort = true;
  function folded(i) { return foldShort && !towardStep[i] && P.parent[i] >= 0 && P.dur[i] < SHORT_US; }
  function collapseToSteps() {
    for (var i = 0; i < N; i++) collapsed[i] = children[i].length && (isStep[i] || !towardStep[i]) ? 1 : 0;
    foldShort = true;
  }
  function rebuild() {
    visible = [];
    rowOf.fill(-1);
    shortBelow.fill(0);
    for (var k = 0; k < N; k++) {
      var i = order[k];
      if (folded(i)) {
        shortBelow[P.parent[i]] += size[i];
        k += size[i] - 1;
        continue;
      }
      rowOf[i] = visible.length;
      visible.push(i);
      if (collapsed[i]) k += size[i] - 1;
    }
    rowsEl.style.height = visible.length * ROW + "px";
  }

  var zoom = 1, selected = -1, matches = [], matchSet = null;
  function baseWidth() { return Math.max(scroller.clientWidth - LABEL - RIGHT, 200); }
  function maxZoom() { return Math.max(1, Math.min(wall / baseWidth(), MAX_SHEET / baseWidth())); }
  function plotWidth() { return baseWidth() * zoom; }
  function x(us) { return us / wall * plotWidth(); }

  function drawCharts() {
    chartsEl.textContent = "";
    var w = plotWidth(), cv = D.curves;
    function chart(name, values, fmt, color) {
      var row = el("div", "chart"), corner = el("div", "corner");
      var max = 0;
      for (var k = 0; k < values.length; k++) max = Math.max(max, values[k]);
      corner.appendChild(el("div", null, name));
      corner.appendChild(el("strong", null, "max " + fmt(max)));
      row.appendChild(corner);
      var h = 50, box = svg("svg", { width: w, height: h, viewBox: "0 0 " + wall + " " + h, preserveAspectRatio: "none" });
      var d = "M0 " + h, step = cv.step_us;
      for (k = 0; k < values.length; k++) {
        var y = max > 0 ? h - values[k] / max * (h - 4) : h;
        d += " L" + k * step + " " + y.toFixed(1) + " L" + Math.min((k + 1) * step, wall) + " " + y.toFixed(1);
      }
      d += " L" + wall + " " + h + " Z";
      box.appendChild(svg("path", { d: d, fill: color, "fill-opacity": "0.35", stroke: color, "stroke-width": "1", "vector-effect": "non-scaling-stroke" }));
      var title = svg("title", {});
      title.textContent = name + ", max " + fmt(max);
      box.appendChild(title);
      row.appendChild(box);
      chartsEl.appendChild(row);
    }
    chart("CPU (cores)", cv.cpu_cores, function (v) { return v.toFixed(2) + " cores"; }, "#2f6fd1");
    chart("memory (RSS, all processes)", cv.rss_bytes, bytes, "#9a4fd0");
  }

  function drawAxis() {
    axisEl.textContent = "";
    var corner = el("div", "corner", "command");
    axisEl.appendChild(corner);
    var w = plotWidth(), ticks = el("div", "ticks");
    ticks.style.width = w + "px";
    ticks.style.height = "22px";
    var perUs = w / wall, step = 1;
    var nice = [1, 2, 5];
    outer: for (var p = 1; p < 1e13; p *= 10) {
      for (var q = 0; q < 3; q++) {
        step = nice[q] * p;
        if (step * perUs >= 90) break outer;
      }
    }
    var left = Math.max(scroller.scrollLeft - 100, 0) / perUs;
    var right = (scroller.scrollLeft + scroller.clientWidth) / perUs;
    for (var t = Math.floor(left / step) * step; t <= Math.min(right, wall); t += step) {
      var tick = el("div", "tick", dur(t));
      tick.style.left = t * perUs + "px";
      ticks.appendChild(tick);
    }
    axisEl.appendChild(ticks);
    document.getElementById("zoom-level").textContent = zoom > 1.0001 ? "×" + (zoom < 10 ? zoom.toFixed(1) : Math.round(zoom)) : "";
  }

  function drawRows() {
    var top = scroller.scrollTop - rowsEl.offsetTop;
    var first = Math.max(Math.floor(top / ROW) - OVERSCAN, 0);
    var last = Math.min(Math.ceil((top + scroller.clientHeight) / ROW) + OVERSCAN, visible.length);
    var w = plotWidth(), frag = document.createDocumentFragment();
    for (var r = first; r < last; r++) {
      var i = visible[r];
      var row = el("div", "row" + (r % 2 ? " zebra" : "") + (i === selected ? " sel" : "") + (matchSet && matchSet.has(i) ? " match" : ""));
      row.style.top = r * ROW + "px";
      row.style.width = LABEL + w + RIGHT + "px";
      row.dataset.proc = i;
      row.dataset.pid = P.pid[i];
      var cmd = commandOf(i);
      row.title = cmd + "\npid " + P.pid[i] + ", " + dur(P.dur[i]) + ", " + S[P.ended[i]];
      var label = el("div", "label");
      label.style.paddingLeft = 4 + Math.min(depth[i], MAX_INDENT) * INDENT + "px";
      var kids = children[i].length;
      var tog = el("span", "tog" + (kids ? " has" : ""), kids ? (collapsed[i] ? "▸" : "▾") : "");
      label.appendChild(tog);
      label.appendChild(el("span", "mono", labelOf(i)));
      if (collapsed[i]) label.appendChild(el("span", "hidden-n", "+" + (size[i] - 1)));
      else if (shortBelow[i]) label.appendChild(el("span", "hidden-n", "+" + shortBelow[i] + " under 1 ms"));
      row.appendChild(label);
      var lane = el("div", "lane");
      lane.style.width = w + "px";
      var bar = el("div", "bar " + S[P.status[i]] + (onPath[i] ? " crit" : ""));
      var bx = x(P.start[i]), bw = Math.max(x(P.dur[i]), 1);
      bar.style.left = bx + "px";
      bar.style.width = bw + "px";
      bar.dataset.proc = i;
      lane.appendChild(bar);
      (segs[i] || []).forEach(function (s) {
        var seg = el("div", "seg");
        seg.style.left = x(s[0]) + "px";
        seg.style.width = Math.max(x(s[1] - s[0]), 1) + "px";
        lane.appendChild(seg);
      });
      var d = el("div", "dur", dur(P.dur[i]));
      d.style.left = bx + bw + 4 + "px";
      lane.appendChild(d);
      row.appendChild(lane);
      frag.appendChild(row);
    }
    rowsEl.textContent = "";
    rowsEl.appendChild(frag);
  }

  function layout() {
    sheet.style.width = LABEL + plotWidth() + RIGHT + "px";
    drawCharts();
    drawAxis();
    drawRows();
  }

  var pending = false;
  function redraw() {
    if (pending) return;
    pending = true;
    requestAnimationFrame(function () { pending = false; drawAxis(); drawRows(); });
  }

  // Keeps the moment `us` under the screen position `px` (from the plot's left edge).
  function setZoom(z, us, px) {
    zoom = Math.min(Math.max(z, 1), maxZoom());
    layout();
    scroller.scrollLeft = Math.max(x(us) - px, 0);
    drawAxis();
    drawRows();
  }
  function centre() {
    var px = (scroller.clientWidth - LABEL) / 2;
    return [(scroller.scrollLeft + px) / plotWidth() * wall, px];
  }
  function zoomTo(i) {
    var span = Math.max(P.dur[i], wall / maxZoom() / 2) * 1.1;
    setZoom(wall / span, P.start[i] - span * 0.05, 0);
  }

  function reveal(i) {
    for (var a = P.parent[i]; a >= 0; a = P.parent[a]) collapsed[a] = 0;
    for (a = i; a >= 0; a = P.parent[a]) if (folded(a)) foldShort = false;
    rebuild();
    var y = rowsEl.offsetTop + rowOf[i] * ROW;
    if (y < scroller.scrollTop + rowsEl.offsetTop || y > scroller.scrollTop + scroller.clientHeight - ROW) {
      scroller.scrollTop = Math.max(y - scroller.clientHeight / 3, 0);
    }
    var bx = x(P.start[i]);
    if (bx < scroller.scrollLeft || bx > scroller.scrollLeft + scroller.clientWidth - LABEL) {
      scroller.scrollLeft = Math.max(bx - 40, 0);
    }
    select(i);
    drawAxis();
    drawRows();
    var row = rowsEl.querySelector('.row[data-proc="' + i + '"]');
    if (row) row.classList.add("flash");
  }

  function fact(dl, name, value) {
    dl.appendChild(el("dt", null, name));
    var dd = el("dd", null, value);
    dl.appendChild(dd);
    return dd;
  }
  function procLink(i) {
    var a = el("a", null, S[P.binary[i]] + " [" + P.pid[i] + "]");
    a.href = "#timeline";
    a.dataset.proc = i;
    return a;
  }

  function select(i) {
    selected = i;
    details.textContent = "";
    details.appendChild(el("h3", null, commandOf(i)));
    var dl = el("dl");
    fact(dl, "status", S[P.status[i]].replace("_", " ") + " (" + S[P.ended[i]] + ")");
    fact(dl, "pid", P.pid[i] + " (parent " + P.ppid[i] + ")");
    if (P.parent[i] >= 0) fact(dl, "parent", "").appendChild(procLink(P.parent[i]));
    fact(dl, "started", "+" + dur(P.start[i]));
    fact(dl, "duration", dur(P.dur[i]));
    var cu = P.cpu_user[i], cs = P.cpu_system[i];
    fact(dl, "CPU", cu === null && cs === null ? "-" :
      dur((cu || 0) + (cs || 0)) + " (user " + dur(cu || 0) + ", system " + dur(cs || 0) + ")");
    fact(dl, "peak memory", bytes(P.rss[i]));
    if (P.read[i] !== null || P.written[i] !== null)
      fact(dl, "storage", "read " + bytes(P.read[i]) + ", written " + bytes(P.written[i]));
    if (P.sent[i] !== null || P.received[i] !== null)
      fact(dl, "network", "sent " + bytes(P.sent[i]) + ", received " + bytes(P.received[i]));
    if (onPath[i]) fact(dl, "critical path", dur(pathTime[i]) + " (" + (pathTime[i] * 100 / wall).toFixed(1) + " % of the run)");
    fact(dl, "children", children[i].length + (size[i] - 1 > children[i].length ? " (" + (size[i] - 1) + " below)" : ""));
    fact(dl, "cwd", P.cwd[i] === null ? "-" : S[P.cwd[i]]);
    details.appendChild(dl);
    details.appendChild(el("div", null, "argv (" + P.argv[i].length + ")"));
    var ol = el("ol", "argv");
    ol.start = 0;
    P.argv[i].forEach(function (a) {
      var li = el("li");
      li.appendChild(el("code", null, a));
      ol.appendChild(li);
    });
    details.appendChild(ol);
    var actions = el("div", "actions");
    var zb = el("button", null, "zoom to it");
    zb.type = "button";
    zb.onclick = function () { zoomTo(i); };
    actions.appendChild(zb);
    if (children[i].length) {
      var cb = el("button", null, collapsed[i] ? "expand" : "collapse");
      cb.type = "button";
      cb.onclick = function () { toggle(i); select(i); };
      actions.appendChild(cb);
    }
    details.appendChild(actions);
    var s = samplesOf[i];
    if (s) sparkline(s);
    drawRows();
  }

  // The process's own samples: RSS, and CPU in cores from the change between the samples
  // that carry it (RSS steps do not).
  function sparkline(s) {
    var w = 340, h = 70, t0 = s.time[0], t1 = s.time[s.time.length - 1], span = Math.max(t1 - t0, 1);
    var maxRss = Math.max.apply(null, s.rss) || 1;
    var cpuT = [], cores = [], maxCores = 0, prev = -1;
    for (var k = 0; k < s.time.length; k++) {
      if (s.cpu[k] === null) continue;
      if (prev >= 0 && s.time[k] > s.time[prev]) {
        var v = Math.max(s.cpu[k] - s.cpu[prev], 0) / (s.time[k] - s.time[prev]);
        cpuT.push(s.time[k]);
        cores.push(v);
        maxCores = Math.max(maxCores, v);
      }
      prev = k;
    }
    var text = "memory (purple, max " + bytes(maxRss) + ")";
    if (cores.length > 1) text += " and CPU (blue, max " + maxCores.toFixed(2) + " cores)";
    details.appendChild(el("div", null, text + ", " + s.time.length + " samples"));
    var box = svg("svg", { width: w, height: h, viewBox: "0 0 " + w + " " + h });
    function line(times, values, max, color) {
      var pts = values.map(function (v, k) {
        return ((times[k] - t0) / span * (w - 2) + 1).toFixed(1) + "," + (h - 2 - v / (max || 1) * (h - 6)).toFixed(1);
      });
      box.appendChild(svg("polyline", { points: pts.join(" "), fill: "none", stroke: color, "stroke-width": "1.5" }));
    }
    line(s.time, s.rss, maxRss, "#9a4fd0");
    if (cores.length > 1) line(cpuT, cores, maxCores, "#2f6fd1");
    details.appendChild(box);
  }

  function toggle(i) {
    if (!children[i].length) return;
    collapsed[i] = collapsed[i] ? 0 : 1;
    rebuild();
    drawRows();
  }

  function find(text, forward) {
    text = text.trim().toLowerCase();
    matches = [];
    matchSet = null;
    if (text) {
      if (!lowered) {
        lowered = new Array(N);
        for (var i = 0; i < N; i++) lowered[i] = commandOf(i).toLowerCase();
      }
      for (var k = 0; k < N; k++) if (lowered[order[k]].indexOf(text) >= 0) matches.push(order[k]);
      matchSet = new Set(matches);
    }
    var count = document.getElementById("find-count");
    if (!matches.length) {
      count.textContent = text ? "no match" : "";
      drawRows();
      return;
    }
    var at = 0;
    if (forward && selected >= 0) {
      var pos = order.indexOf(selected);
      for (at = 0; at < matches.length && order.indexOf(matches[at]) <= pos; at++);
      if (at === matches.length) at = 0;
    }
    count.textContent = (at + 1) + " of " + matches.length;
    reveal(matches[at]);
  }

  // Events.
  scroller.addEventListener("scroll", redraw);
  window.addEventListener("resize", function () { layout(); });
  scroller.addEventListener("wheel", function (e) {
    if (!e.ctrlKey && !e.metaKey) return;
    e.preventDefault();
    var rect = scroller.getBoundingClientRect();
    var px = Math.max(e.clientX - rect.left - LABEL, 0);
    var us = (scroller.scrollLeft + px) / plotWidth() * wall;
    setZoom(zoom * (e.deltaY < 0 ? 1.25 : 0.8), us, px);
  }, { passive: false });
  rowsEl.addEventListener("click", function (e) {
    var row = e.target.closest(".row");
    if (!row) return;
    var i = +row.dataset.proc;
    if (e.target.classList.contains("tog")) toggle(i);
    else select(i);
  });
  rowsEl.addEventListener("dblclick", function (e) {
    var bar = e.target.closest(".bar");
    if (bar) zoomTo(+bar.dataset.proc);
  });
  document.addEventListener("click", function (e) {
    var a = e.target.closest("a[data-proc]");
    if (!a) return;
    e.preventDefault();
    document.getElementById("timeline").scrollIntoView();
    reveal(+a.dataset.proc);
  });
  document.getElementById("zoom-in").onclick = function () { var c = centre(); setZoom(zoom * 2, c[0], c[1]); };
  document.getElementById("zoom-out").onclick = function () { var c = centre(); setZoom(zoom / 2, c[0], c[1]); };
  document.getElementById("zoom-fit").onclick = function () { setZoom(1, 0, 0); };
  document.getElementById("expand-all").onclick = function () {
    collapsed.fill(0);
    foldShort = false;
    rebuild();
    drawRows();
  };
  document.getElementById("collapse-steps").onclick = function () {
    collapseToSteps();
    rebuild();
    drawRows();
  };
  document.getElementById("critical-only").onchange = function (e) {
    sheet.classList.toggle("critical-only", e.target.checked);
  };
  var findBox = document.getElementById("find");
  findBox.addEventListener("keydown", function (e) {
    if (e.key === "Enter") { e.preventDefault(); find(findBox.value, true); }
  });
  findBox.addEventListener("search", function () { if (!findBox.value) find("", false); });

  collapseToSteps();
  rebuild();
  layout();
  // When the page was ready, in ms from the start of navigation (read by the benchmark).
  document.body.dataset.readyMs = performance.now().toFixed(0);
  document.body.dataset.ready = "1";
})();
