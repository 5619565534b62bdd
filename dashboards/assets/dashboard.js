// One dashboard page: filters the embedded rows of each card, applies its rollup, sort and limit
// (the same steps as the Metabase query of the card, see dashboards/query.py), and draws it with Plotly.
(function () {
  "use strict";

  const spec = JSON.parse(document.getElementById("dashboard-data").textContent);
  const filters = { date_from: "", date_to: "", specialty: "", device: "" };
  const palette = ["#2f6f9f", "#e0863d", "#5aa469", "#c8553d", "#8e6cb8", "#c9a227", "#4aa5b5", "#9c6644"];

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

  function view(card, values) {
    const rows = card.rows.filter((row) => keeps(card, row, values));
    let records = rows.map((row) => Object.fromEntries(card.columns.map((c, i) => [c, row[i]])));
    const viz = card.visualization;
    if (card.rollup === "sum") {
      const groups = new Map();
      for (const record of records) {
        const key = viz.x ? record[viz.x] : "";
        if (!groups.has(key)) {
          const start = viz.x ? { [viz.x]: key } : {};
          for (const y of viz.y) start[y] = null;
          groups.set(key, start);
        }
        const group = groups.get(key);
        for (const y of viz.y) {
          if (record[y] !== null && record[y] !== undefined) group[y] = (group[y] || 0) + Number(record[y]);
        }
      }
      records = Array.from(groups.values());
      if (!viz.x && records.length === 0) records = [Object.fromEntries(viz.y.map((y) => [y, null]))];
      if (!card.sort.length && viz.x) records.sort((a, b) => compare(a[viz.x], b[viz.x]));
    }
    if (card.sort.length) {
      records.sort((a, b) => {
        for (const s of card.sort) {
          const order = s.descending ? -compare(a[s.column], b[s.column]) : compare(a[s.column], b[s.column]);
          if (order !== 0) return order;
        }
        return 0;
      });
    }
    return card.limit ? records.slice(0, card.limit) : records;
  }

  function label(column) {
    const text = column.replace(/^avg_/, "average ").replace(/_/g, " ");
    return text.charAt(0).toUpperCase() + text.slice(1);
  }

  function format(card, column, value) {
    if (value === null || value === undefined) return "\u2014";
    if (typeof value === "boolean") return value ? "yes" : "no";
    if (typeof value === "number") {
      if (card.visualization.percent.includes(column)) return (value * 100).toFixed(1) + "%";
      // Averages keep two decimals even when whole, so a column reads evenly.
      if (/^(avg|p\d+)_/.test(column) || !Number.isInteger(value)) return value.toFixed(2);
      return value.toLocaleString("en-US");
    }
    return String(value);
  }

  function notice(target, text, kind) {
    target.replaceChildren();
    const p = document.createElement("p");
    p.className = "notice " + kind;
    p.textContent = text;
    target.appendChild(p);
  }

  function drawTable(target, card, records) {
    const table = document.createElement("table");
    const head = table.createTHead().insertRow();
    for (const column of card.visualization.columns) {
      const th = document.createElement("th");
      th.textContent = label(column);
      head.appendChild(th);
    }
    const body = table.createTBody();
    for (const record of records) {
      const tr = body.insertRow();
      for (const column of card.visualization.columns) {
        const td = tr.insertCell();
        td.textContent = format(card, column, record[column]);
        if (typeof record[column] === "number") td.className = "num";
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
    let traces;
    const layout = {
      margin: { l: 56, r: 16, t: 8, b: 40 },
      paper_bgcolor: "rgba(0,0,0,0)",
      plot_bgcolor: "rgba(0,0,0,0)",
      font: { family: "system-ui, sans-serif", size: 12 },
      colorway: palette,
      showlegend: viz.y.length > 1 || viz.type === "pie",
      legend: { orientation: "h", y: -0.2 },
      xaxis: { automargin: true, title: viz.x_label ? { text: viz.x_label } : undefined },
      yaxis: { automargin: true, title: viz.y_label ? { text: viz.y_label } : undefined },
    };
    if (viz.type === "pie") {
      traces = [{ type: "pie", labels: xs, values: records.map((r) => r[viz.y[0]]), sort: false, hole: 0.35 }];
    } else if (viz.type === "row") {
      traces = viz.y.map((y) => ({ type: "bar", orientation: "h", y: xs, x: records.map((r) => r[y]), name: label(y) }));
      layout.yaxis.autorange = "reversed";
      layout.yaxis.type = "category";
      if (percent) layout.xaxis.tickformat = ".0%";
    } else {
      const base = viz.type === "bar" ? { type: "bar" } : { type: "scatter", mode: viz.type === "line" ? "lines" : "markers" };
      traces = viz.y.map((y) => ({ ...base, x: xs, y: records.map((r) => r[y]), name: label(y) }));
      if (viz.type === "bar") layout.barmode = viz.stacked ? "stack" : "group";
      if (viz.type === "scatter" && card.columns.includes("provider_name")) {
        traces[0].text = records.map((r) => r.provider_name);
      }
      if (percent) layout.yaxis.tickformat = ".0%";
      if (viz.type === "bar" && typeof xs[0] === "string" && !/^\d{4}-\d{2}-\d{2}/.test(xs[0])) {
        layout.xaxis.type = "category";
      }
    }
    Plotly.react(target, traces, layout, { displaylogo: false, responsive: true });
  }

  function draw(card) {
    const section = document.getElementById("card-" + card.key);
    const target = section.querySelector(".viz");
    if (card.state !== "ok") {
      notice(target, card.message, card.state);
      section.dataset.rendered = "notice";
      section.dataset.points = "0";
      return;
    }
    const records = view(card, filters);
    const hasData = records.length > 0 && !(card.visualization.type === "scalar" && records[0][card.visualization.y[0]] === null);
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

  function setUpFilters() {
    for (const input of document.querySelectorAll("[data-filter]")) {
      const name = input.dataset.filter;
      if (input.tagName === "SELECT") {
        for (const value of optionValues(name)) {
          const option = document.createElement("option");
          option.value = value;
          option.textContent = value;
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
        drawAll();
      });
    }
    const reset = document.getElementById("reset-filters");
    if (reset) {
      reset.addEventListener("click", () => {
        for (const input of document.querySelectorAll("[data-filter]")) {
          input.value = "";
          filters[input.dataset.tag] = "";
        }
        drawAll();
      });
    }
  }

  // For tests and the curious: the rows a card shows for given filter values.
  window.telemedDashboard = {
    spec: spec,
    view: (key, values) => view(spec.cards.find((c) => c.key === key), { ...filters, ...(values || {}) }),
  };

  setUpFilters();
  drawAll();
})();
