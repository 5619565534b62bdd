// One dashboard page: filters the embedded rows of each card, applies its rollup (sums per group key, then
// the ratios of the sums, a rate left empty under the minimum denominator), ends a daily axis at its last
// day with data, sorts and limits: the same steps as the card's Metabase query (dashboards/query.py).
// Then it draws the card with Plotly, every category in its glossary colour and label
// (dashboards/glossary.yml). The filters and the tables' sort live in the URL's hash, so a link reproduces
// the view.
(function () {
  "use strict";

  const spec = JSON.parse(document.getElementById("dashboard-data").textContent);
  for (const card of spec.cards) card.rows = spec.datasets[card.dataset] || [];
  const glossary = spec.glossary;
  const TAGS = ["date_from", "date_to", "specialty", "device"];
  const filters = Object.fromEntries(TAGS.map((tag) => [tag, ""]));
  const tableSort = {}; // card key -> {column, descending}: a reader's click on a table header
  const categoryEntries = {};
  for (const [name, entries] of Object.entries(glossary.categories)) {
    categoryEntries[name] = new Map(entries.map((e) => [e.value, e]));
  }

  function cell(row, card, column) {
    return row[card.columns.indexOf(column)];
  }

  function keeps(card, row, values) {
    for (const [name, column] of Object.entries(card.filters)) {
      const value = cell(row, card, column);
      if (name === "date_range") {
        const day = value === null || value === undefined ? "" : String(value).slice(0, 10);
        if (values.date_from && !(day && day >= values.date_from)) return false;
        if (values.date_to && !(day && day <= values.date_to)) return false;
      } else {
        const wanted = values[name];
        if (wanted && String(value) !== wanted) return false;
      }
    }
    return true;
  }

  // Postgres order: nulls last when ascending, first when descending; strings by code point (C collation).
  function compare(a, b) {
    if (a === b) return 0;
    if (a === null || a === undefined) return 1;
    if (b === null || b === undefined) return -1;
    return a < b ? -1 : 1;
  }

  function sortBy(records, keys) {
    records.sort((a, b) => {
      for (const s of keys) {
        const order = s.descending ? -compare(a[s.column], b[s.column]) : compare(a[s.column], b[s.column]);
        if (order !== 0) return order;
      }
      return 0;
    });
  }

  function rollup(card, records) {
    const groups = new Map();
    for (const record of records) {
      const key = JSON.stringify(card.group_keys.map((k) => record[k]));
      if (!groups.has(key)) {
        const start = Object.fromEntries(card.group_keys.map((k) => [k, record[k]]));
        for (const column of card.summed) start[column] = null;
        groups.set(key, start);
      }
      const group = groups.get(key);
      for (const column of card.summed) {
        const value = record[column];
        if (value !== null && value !== undefined) group[column] = (group[column] || 0) + Number(value);
      }
    }
    let out = Array.from(groups.values());
    if (!card.group_keys.length && out.length === 0) out = [Object.fromEntries(card.summed.map((c) => [c, null]))];
    for (const record of out) {
      record.__low = {};
      for (const [name, [numerator, denominator]] of Object.entries(card.ratios)) {
        const num = record[numerator];
        const den = record[denominator];
        const quotient = num === null || den === null || den === 0 ? null : num / den;
        if (card.rates.includes(name) && !(den !== null && den >= spec.rate_min_denominator)) {
          // Under the minimum the rate is no number (as in Metabase); the chart shows it faded.
          record[name] = null;
          if (quotient !== null) record.__low[name] = { value: quotient, of: den };
        } else {
          record[name] = quotient;
        }
      }
    }
    return out;
  }

  function view(card, values) {
    let records = card.rows
      .filter((row) => keeps(card, row, values))
      .map((row) => Object.fromEntries(card.columns.map((c, i) => [c, row[i]])));
    const viz = card.visualization;
    if (card.rollup === "sum") records = rollup(card, records);
    if (card.daily) {
      // A daily axis ends at its last day with data (later days hold bookings without an outcome yet).
      let last = null;
      for (const r of records) {
        if (card.evidence.some((c) => r[c] !== null && r[c] !== undefined && Number(r[c]) !== 0)) {
          if (last === null || r[viz.x] > last) last = r[viz.x];
        }
      }
      records = records.filter((r) => last !== null && r[viz.x] <= last);
    }
    if (card.sort.length) sortBy(records, card.sort);
    else if (card.rollup === "sum" && card.group_keys.length) {
      sortBy(records, card.group_keys.map((column) => ({ column, descending: false })));
    }
    return card.limit ? records.slice(0, card.limit) : records;
  }

  // -- words and colours, from the glossary ------------------------------------------------------------

  function label(column) {
    const entry = glossary.columns[column];
    if (entry) return entry.label;
    const text = column.replace(/_/g, " ");
    return text.charAt(0).toUpperCase() + text.slice(1);
  }

  function categoryOf(column) {
    return glossary.category_of_column[column] || null;
  }

  function valueLabel(column, value) {
    if (value === null || value === undefined) return glossary.null_label;
    const entries = categoryEntries[categoryOf(column)];
    const entry = entries && entries.get(String(value));
    return entry ? entry.label : String(value);
  }

  function valueColor(column, value) {
    const entries = categoryEntries[categoryOf(column)];
    const entry = entries && entries.get(String(value));
    return entry && entry.color ? entry.color : glossary.unlisted_color;
  }

  function seriesColor(column, index) {
    const entry = glossary.columns[column];
    return entry && entry.color ? entry.color : spec.palette[index % spec.palette.length];
  }

  function format(card, column, value) {
    if (value === null || value === undefined) return "\u2014";
    if (typeof value === "boolean") return value ? "yes" : "no";
    if (categoryOf(column)) return valueLabel(column, value);
    if (typeof value === "number") {
      if (card.visualization.percent.includes(column)) return (value * 100).toFixed(1) + "%";
      // Averages keep two decimals even when whole, so a column reads evenly.
      if (/^(avg|p\d+)_/.test(column) || !Number.isInteger(value)) return value.toFixed(2);
      return value.toLocaleString("en-US");
    }
    return String(value);
  }

  function lowNote(card, low) {
    const what = card.visualization.percent.length ? "cases" : "values";
    return `only ${low.of} ${what}, under ${spec.rate_min_denominator}: not a rate to read`;
  }

  // -- drawing -------------------------------------------------------------------------------------------

  function notice(target, text, kind) {
    target.replaceChildren();
    const p = document.createElement("p");
    p.className = "notice " + kind;
    p.textContent = text;
    target.appendChild(p);
  }

  function drawTable(target, card, records) {
    const sorted = records.slice();
    const chosen = tableSort[card.key];
    if (chosen) sortBy(sorted, [chosen]);
    const table = document.createElement("table");
    const head = table.createTHead().insertRow();
    for (const column of card.visualization.columns) {
      const th = document.createElement("th");
      const button = document.createElement("button");
      button.type = "button";
      button.className = "sort";
      button.dataset.column = column;
      button.textContent = label(column);
      th.appendChild(button);
      th.setAttribute("aria-sort", chosen && chosen.column === column ? (chosen.descending ? "descending" : "ascending") : "none");
      button.addEventListener("click", () => {
        const now = tableSort[card.key];
        // First click: largest first for numbers, A to Z for words; a second click turns it round.
        const numeric = records.some((r) => typeof r[column] === "number");
        const descending = now && now.column === column ? !now.descending : numeric;
        tableSort[card.key] = { column, descending };
        writeHash();
        draw(card);
      });
      head.appendChild(th);
    }
    const body = table.createTBody();
    for (const record of sorted) {
      const tr = body.insertRow();
      for (const column of card.visualization.columns) {
        const td = tr.insertCell();
        const value = record[column];
        const low = record.__low && record.__low[column];
        if (low) {
          td.textContent = format(card, column, low.value);
          td.className = "num low";
          td.title = lowNote(card, low);
          continue;
        }
        td.textContent = format(card, column, value);
        if (categoryOf(column) && value !== null && value !== undefined) {
          const dot = document.createElement("span");
          dot.className = "dot";
          dot.style.background = valueColor(column, value);
          td.prepend(dot);
          td.dataset.value = String(value);
        }
        if (typeof value === "number") td.className = "num";
      }
    }
    target.replaceChildren(table);
  }

  function drawScalar(target, card, records) {
    const y = card.visualization.y[0];
    const div = document.createElement("div");
    div.className = "scalar";
    div.textContent = format(card, y, records[0][y]);
    target.replaceChildren(div);
  }

  function drawChart(target, card, records) {
    const viz = card.visualization;
    const xs = records.map((r) => r[viz.x]);
    const percent = viz.y.every((y) => viz.percent.includes(y));
    const xCategory = categoryOf(viz.x);
    const categorical = viz.type !== "scatter" && !card.daily && typeof xs[0] !== "number";
    const shownX = categorical ? xs.map((x) => valueLabel(viz.x, x)) : xs;
    const legend = viz.y.length > 1 || viz.type === "pie";
    const layout = {
      // The legend sits above the plot (pies: beside it), clear of the axis labels.
      margin: { l: 56, r: 16, t: legend && viz.type !== "pie" ? 34 : 10, b: 40 },
      paper_bgcolor: "rgba(0,0,0,0)",
      plot_bgcolor: "rgba(0,0,0,0)",
      font: { family: "system-ui, sans-serif", size: 12 },
      showlegend: legend,
      legend:
        viz.type === "pie"
          ? { orientation: "v", x: 1.02, y: 0.5, yanchor: "middle" }
          : { orientation: "h", x: 0, xanchor: "left", y: 1.02, yanchor: "bottom", traceorder: "normal" },
      uniformtext: { minsize: 9, mode: "hide" },
      xaxis: { automargin: true, title: viz.x_label ? { text: viz.x_label } : undefined },
      yaxis: { automargin: true, title: viz.y_label ? { text: viz.y_label } : undefined },
    };
    const valueFormat = (y, v) => (v === null || v === undefined ? "" : format(card, y, v));
    const low = (r, y) => (r.__low && r.__low[y]) || null;
    let traces;
    if (viz.type === "pie") {
      traces = [
        {
          type: "pie",
          labels: shownX,
          values: records.map((r) => r[viz.y[0]]),
          marker: { colors: xs.map((x) => valueColor(viz.x, x)) },
          customdata: xs,
          sort: false,
          direction: "clockwise",
          hole: 0.35,
          textinfo: "percent",
        },
      ];
    } else if (viz.type === "bar" || viz.type === "row") {
      const horizontal = viz.type === "row";
      const oneSeriesByCategory = viz.y.length === 1 && xCategory !== null;
      const labelled = categorical; // value labels where bars are few and differences small; not on days
      const crowded = !horizontal && !viz.stacked && viz.y.length >= 3;
      traces = viz.y.map((y, i) => {
        const values = records.map((r) => (r[y] !== null && r[y] !== undefined ? r[y] : low(r, y) ? low(r, y).value : null));
        const opacity = records.map((r) => (low(r, y) ? 0.3 : 1));
        const color = oneSeriesByCategory ? xs.map((x) => valueColor(viz.x, x)) : seriesColor(y, i);
        const trace = {
          type: "bar",
          orientation: horizontal ? "h" : "v",
          name: label(y),
          customdata: xs,
          marker: { color, opacity },
          hovertext: records.map((r) => (low(r, y) ? lowNote(card, low(r, y)) : "")),
          text: labelled ? values.map((v) => valueFormat(y, v)) : undefined,
          textposition: labelled ? (viz.stacked ? "inside" : "outside") : "none",
          // Three or more bars side by side: their labels stand upright, or they run into each other.
          textangle: crowded ? -90 : 0,
          textfont: { size: 10 },
          cliponaxis: false,
        };
        if (horizontal) {
          trace.y = shownX;
          trace.x = values;
        } else {
          trace.x = shownX;
          trace.y = values;
        }
        return trace;
      });
      layout.barmode = viz.stacked ? "stack" : "group";
      const valueAxis = horizontal ? layout.xaxis : layout.yaxis;
      const categoryAxis = horizontal ? layout.yaxis : layout.xaxis;
      if (percent) valueAxis.tickformat = ".0%";
      if (categorical) {
        categoryAxis.type = "category";
        categoryAxis.categoryorder = "array";
        categoryAxis.categoryarray = shownX;
      }
      if (horizontal) layout.yaxis.autorange = "reversed";
      if (labelled && !viz.stacked) {
        // Room for the labels outside the longest bar.
        const top = Math.max(0, ...traces.flatMap((t) => (horizontal ? t.x : t.y).filter((v) => v !== null)));
        valueAxis.range = [0, top * (crowded ? 1.3 : 1.18) || 1];
      }
    } else {
      const mode = viz.type === "line" ? "lines+markers" : "markers";
      traces = [];
      viz.y.forEach((y, i) => {
        const color = seriesColor(y, i);
        const main = {
          type: "scatter",
          mode,
          name: label(y),
          legendgroup: y,
          x: xs,
          y: records.map((r) => r[y]),
          line: { color, width: 2 },
          marker: { color, size: viz.type === "line" ? 4 : 7 },
          connectgaps: false,
        };
        if (viz.type === "scatter" && card.columns.includes("provider_name")) main.text = records.map((r) => r.provider_name);
        traces.push(main);
        const faded = records.filter((r) => low(r, y));
        if (faded.length) {
          // Days under the minimum denominator: a faded point, no line through it.
          traces.push({
            type: "scatter",
            mode: "markers",
            name: label(y) + " (too few)",
            legendgroup: y,
            showlegend: false,
            x: faded.map((r) => r[viz.x]),
            y: faded.map((r) => low(r, y).value),
            marker: { color, size: 6, opacity: 0.28 },
            hovertext: faded.map((r) => lowNote(card, low(r, y))),
            hoverinfo: "x+y+text",
          });
        }
      });
      if (percent) layout.yaxis.tickformat = ".0%";
      if (card.daily) {
        // The axis spans the days shown, no further: autorange pads, and the data ends on its last day.
        layout.xaxis.type = "date";
        layout.xaxis.range = [xs[0], xs[xs.length - 1]];
      }
    }
    if (viz.type === "bar" && card.daily) {
      layout.xaxis.type = "date";
      const first = new Date(xs[0] + "T00:00:00Z");
      const last = new Date(xs[xs.length - 1] + "T00:00:00Z");
      const half = 12 * 3600 * 1000;
      layout.xaxis.range = [new Date(first - half).toISOString(), new Date(last.getTime() + half).toISOString()];
    }
    Plotly.react(target, traces, layout, { displaylogo: false, responsive: true });
  }

  function hashOf(text) {
    let h = 5381;
    for (let i = 0; i < text.length; i++) h = ((h * 33) ^ text.charCodeAt(i)) >>> 0;
    return h.toString(16);
  }

  function draw(card) {
    const section = document.getElementById("card-" + card.key);
    const target = section.querySelector(".viz");
    if (card.state !== "ok") {
      notice(target, card.message, card.state);
      section.dataset.rendered = "notice";
      section.dataset.points = "0";
      section.dataset.signature = "notice";
      return;
    }
    const records = view(card, filters);
    const hasData = records.length > 0 && !(card.visualization.type === "scalar" && records[0][card.visualization.y[0]] === null);
    // What the card shows, as a short fingerprint: the browser tests see a filter change a card by it.
    section.dataset.signature = hashOf(JSON.stringify(records));
    if (!hasData) {
      notice(target, "No data for these filters.", "empty");
      section.dataset.rendered = "empty";
      section.dataset.points = "0";
      return;
    }
    const kind = card.visualization.type;
    if (kind === "table") drawTable(target, card, records);
    else if (kind === "scalar") drawScalar(target, card, records);
    else drawChart(target, card, records);
    section.dataset.rendered = kind === "table" || kind === "scalar" ? kind : "chart";
    section.dataset.points = String(records.length);
  }

  function drawAll() {
    for (const card of spec.cards) draw(card);
    document.body.dataset.ready = "true";
  }

  // -- filters and the URL -------------------------------------------------------------------------------

  function optionValues(name) {
    const values = new Set();
    for (const card of spec.cards) {
      const column = card.filters[name];
      if (!column || card.state !== "ok") continue;
      for (const row of card.rows) {
        const value = cell(row, card, column);
        if (value !== null && value !== undefined) values.add(name === "date_range" ? String(value).slice(0, 10) : String(value));
      }
    }
    return Array.from(values).sort();
  }

  function filterColumn(name) {
    const card = spec.cards.find((c) => c.filters[name]);
    return card ? card.filters[name] : name;
  }

  function readHash() {
    const params = new URLSearchParams(location.hash.replace(/^#/, ""));
    for (const tag of TAGS) filters[tag] = params.get(tag) || "";
    for (const key of Object.keys(tableSort)) delete tableSort[key];
    for (const [name, value] of params) {
      if (!name.startsWith("sort.")) continue;
      const [column, direction] = value.split(":");
      tableSort[name.slice(5)] = { column, descending: direction === "desc" };
    }
    for (const input of document.querySelectorAll("[data-filter]")) input.value = filters[input.dataset.tag];
  }

  function writeHash() {
    const params = new URLSearchParams();
    for (const tag of TAGS) if (filters[tag]) params.set(tag, filters[tag]);
    for (const [key, s] of Object.entries(tableSort)) params.set("sort." + key, s.column + ":" + (s.descending ? "desc" : "asc"));
    const hash = params.toString();
    history.replaceState(null, "", hash ? "#" + hash : location.pathname + location.search);
  }

  function setUpFilters() {
    for (const input of document.querySelectorAll("[data-filter]")) {
      const name = input.dataset.filter;
      if (input.tagName === "SELECT") {
        const column = filterColumn(name);
        for (const value of optionValues(name)) {
          const option = document.createElement("option");
          option.value = value;
          option.textContent = valueLabel(column, value);
          input.appendChild(option);
        }
      } else {
        const days = optionValues("date_range");
        if (days.length) {
          input.min = days[0];
          input.max = days[days.length - 1];
        }
      }
      input.addEventListener("change", () => {
        filters[input.dataset.tag] = input.value;
        writeHash();
        drawAll();
      });
    }
    const reset = document.getElementById("reset-filters");
    if (reset) {
      reset.addEventListener("click", () => {
        for (const tag of TAGS) filters[tag] = "";
        for (const input of document.querySelectorAll("[data-filter]")) input.value = "";
        writeHash();
        drawAll();
      });
    }
    window.addEventListener("hashchange", () => {
      readHash();
      drawAll();
    });
  }

  // For tests and the curious: the rows a card shows for given filter values.
  window.telemedDashboard = {
    spec: spec,
    filters: filters,
    view: (key, values) => view(spec.cards.find((c) => c.key === key), { ...filters, ...(values || {}) }),
  };

  setUpFilters();
  readHash();
  drawAll();
})();
