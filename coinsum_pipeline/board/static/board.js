// The coinsum board: the curve of the basket sum, a slot's coins, the day table, live.
// Every time shown is Beijing time: the chart runs in UTC on times shifted by 8 hours, so no
// browser's own time zone moves a slot.
"use strict";

const BEIJING_MS = 8 * 3600 * 1000;
const DAY_MS = 24 * 3600 * 1000;
const POLL_MS = 5000;

const TEXT = {
  zh: {
    title: "coinsum 看板", today: "今天", yesterday: "昨天", days7: "7天", days14: "14天",
    days30: "30天", all: "全部", from: "从", to: "至", lang: "English",
    newest: "最新时段", sum: "总和", coins: "币", ago: "前", ok: "实时",
    late: (slot) => `延迟：${slot} 时段尚未写入`, incomplete: (n, m) => `不完整：${n}/${m} 币`,
    sumName: "27币涨跌幅总和", up: "上涨币数", down: "下跌币数", reported: "报告币数",
    slotTitle: (s) => `${s} 时段`, coin: "币种", base: "0点价格", price: "价格",
    pct: "涨跌幅", best: "最强", worst: "最弱", missingCoins: "缺失",
    dayTitle: (d) => `${d} 日表`, time: "时间", dagster: "在 Dagster 中查看",
    csvDay: "当天 CSV", csvRange: "区间 CSV", full: "全部数据", sums: "总和", missing: "缺失值",
    dayTable: "日表", noData: "所选日期没有已存储的时段。", clickHint: "点击曲线上的一点，查看该时段的各币。",
    incompleteMark: "不完整时段", noSnapshot: "还没有数据", days: "天", rangeCut: (n) => `只显示最近 ${n} 天`,
    reasons: {
      not_listed: "尚未上市", no_candle: "无K线", no_base: "无0点价格",
      fetch_failed: "获取失败", unknown_instrument: "无此合约",
    },
    units: { s: "秒", m: "分", h: "小时", d: "天" },
  },
  en: {
    title: "coinsum board", today: "Today", yesterday: "Yesterday", days7: "7 days",
    days14: "14 days", days30: "30 days", all: "Everything", from: "From", to: "to", lang: "中文",
    newest: "Newest slot", sum: "sum", coins: "coins", ago: "ago", ok: "live",
    late: (slot) => `late: slot ${slot} not stored yet`, incomplete: (n, m) => `incomplete: ${n}/${m} coins`,
    sumName: "27-coin sum", up: "coins up", down: "coins down", reported: "coins reported",
    slotTitle: (s) => `Slot ${s}`, coin: "Coin", base: "00:00 price", price: "Price",
    pct: "% change", best: "Best", worst: "Worst", missingCoins: "Missing",
    dayTitle: (d) => `Day table ${d}`, time: "Time", dagster: "open in Dagster",
    csvDay: "Day CSV", csvRange: "Range CSV", full: "full data", sums: "sums", missing: "missing",
    dayTable: "day table", noData: "No slot stored for the chosen days.", clickHint: "Click a point of the curve for its coins.",
    incompleteMark: "incomplete slot", noSnapshot: "no data yet", days: "days", rangeCut: (n) => `showing the last ${n} days`,
    reasons: {
      not_listed: "not listed yet", no_candle: "no candle", no_base: "no 00:00 price",
      fetch_failed: "fetch failed", unknown_instrument: "unknown instrument",
    },
    units: { s: "s", m: "min", h: "h", d: "d" },
  },
};

const state = {
  lang: localStorage.getItem("coinsum-lang") || "zh",
  meta: null,
  clockOffset: 0, // server clock minus browser clock
  from: null,
  to: null,
  sums: [],
  tableDay: null,
  dayTable: null,
  slot: null, // "YYYY-MM-DD HH:MM" of the clicked point
  latest: null,
};

const $ = (id) => document.getElementById(id);
const t = (key) => TEXT[state.lang][key];
const now = () => Date.now() + state.clockOffset;

// ---- formatting: 2 decimals for %, prices as OKX quotes them (shortest exact digits) ----
const pct = (v) => (v === null || v === undefined ? "–" : `${v > 0 ? "+" : ""}${v.toFixed(2)}%`);
const price = (v) => (v === null || v === undefined ? "–" : String(v));
const escapeHtml = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const isoDay = (ms) => new Date(ms + BEIJING_MS).toISOString().slice(0, 10);
const slotText = (ms) => new Date(ms + BEIJING_MS).toISOString().slice(0, 16).replace("T", " ");
const addDays = (day, n) => isoDay(Date.parse(`${day}T00:00:00+08:00`) + n * DAY_MS);

function age(ms) {
  const u = t("units");
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} ${u.s}`;
  if (s < 3600) return `${Math.floor(s / 60)} ${u.m} ${s % 60} ${u.s}`;
  if (s < 86400) return `${Math.floor(s / 3600)} ${u.h} ${Math.floor((s % 3600) / 60)} ${u.m}`;
  return `${Math.floor(s / 86400)} ${u.d}`;
}

function reason(entry) {
  const name = t("reasons")[entry.reason] || entry.reason;
  return entry.detail ? `${name} (${entry.reason}): ${entry.detail}` : `${name} (${entry.reason})`;
}

function dagsterLink(asset, partition) {
  const url = `${state.meta.dagster_url}/assets/${asset}?view=partitions&partition=${encodeURIComponent(partition)}`;
  return `<a href="${escapeHtml(url)}" target="_blank" rel="noopener">${t("dagster")} ↗</a>`;
}

// ---- colours: the day table's scale, centred on 0, as the exported picture ----
function hexToRgb(hex) {
  const n = parseInt(hex.slice(1), 16);
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
}

function colour(value, limit) {
  const scale = state.meta.colors.scale;
  const x = Math.min(1, Math.max(0, 0.5 + value / (2 * limit))) * (scale.length - 1);
  const i = Math.min(scale.length - 2, Math.floor(x));
  const [a, b] = [hexToRgb(scale[i]), hexToRgb(scale[i + 1])];
  const rgb = a.map((c, k) => Math.round(c + (b[k] - c) * (x - i)));
  const light = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2] > 140;
  return `background:rgb(${rgb.join(",")});color:${light ? "#1c1c1c" : "#fff"}`;
}

// ---- data ----
async function getJson(url) {
  const answer = await fetch(url, { cache: "no-store" });
  const body = await answer.json();
  if (!answer.ok) throw new Error(body.error || `${answer.status}`);
  return body;
}

function say(message) {
  $("message").textContent = message || "";
}

// ---- the chart ----
const chart = echarts.init($("chart"), null, { renderer: "canvas" });
window.addEventListener("resize", () => chart.resize());

function chartSeries() {
  const slotMs = state.meta.slot_ms;
  const line = [];
  const incomplete = [];
  const up = [];
  const down = [];
  let previous = null;
  for (const s of state.sums) {
    const x = s.slot_ts_ms + BEIJING_MS;
    if (previous !== null && x - previous > slotMs) line.push([previous + slotMs, null]); // a gap
    line.push([x, s.sum_pct]);
    if (!s.complete) incomplete.push([x, s.sum_pct ?? 0]);
    up.push([x, s.coins_up]);
    down.push([x, -s.coins_down]);
    previous = x;
  }
  // Each day's start; past two months, where a line a day would grey the chart, each month's.
  const boundaries = [];
  if (state.sums.length) {
    const first = Date.parse(`${state.from}T00:00:00Z`);
    const last = Date.parse(`${state.to}T00:00:00Z`);
    const monthly = last - first > 62 * DAY_MS;
    for (let day = first + DAY_MS; day <= last; day += DAY_MS) {
      if (!monthly || new Date(day).getUTCDate() === 1) boundaries.push({ xAxis: day });
    }
  }
  const chosen = state.sums.find((s) => s.slot === state.slot);
  return { line, incomplete, up, down, boundaries, chosen };
}

// The breadth beneath the curve: bars, as in the exported picture; past a few weeks of slots,
// filled lines, which redraw on every zoom and pan many times faster than that many bars.
function breadth(id, name, data, color, many) {
  const common = { id, name, data, xAxisIndex: 1, yAxisIndex: 1, itemStyle: { color } };
  if (!many) return { ...common, type: "bar", stack: "breadth", barCategoryGap: "10%" };
  return { ...common, type: "line", showSymbol: false, sampling: "lttb", lineStyle: { width: 0 }, areaStyle: { color, opacity: 0.9 } };
}

function drawChart() {
  const { line, incomplete, up, down, boundaries, chosen } = chartSeries();
  const colors = state.meta.colors;
  const many = line.length > 2000;
  chart.setOption(
    {
      useUTC: true,
      animation: false,
      grid: [
        { left: 56, right: 16, top: 28, height: "58%" },
        { left: 56, right: 16, top: "72%", height: "16%" },
      ],
      legend: { top: 2, data: [t("sumName"), t("up"), t("down"), t("incompleteMark")] },
      tooltip: {
        trigger: "axis",
        axisPointer: { type: "line", link: [{ xAxisIndex: "all" }] },
        formatter: (items) => {
          const x = items[0].value[0];
          const s = state.sums.find((row) => row.slot_ts_ms + BEIJING_MS === x);
          if (!s) return slotText(x - BEIJING_MS);
          return `${s.slot}<br>${t("sumName")}: <b>${pct(s.sum_pct)}</b><br>` +
            `${t("reported")}: ${s.coins_reported}/${s.coins_expected}<br>` +
            `${t("up")} ${s.coins_up} · ${t("down")} ${s.coins_down}`;
        },
      },
      xAxis: [
        {
          type: "time", gridIndex: 0,
          axisLabel: {
            hideOverlap: true,
            formatter: { year: "{yyyy}", month: "{yyyy}-{MM}", day: "{MM}-{dd}", hour: "{HH}:{mm}", minute: "{HH}:{mm}" },
          },
        },
        { type: "time", gridIndex: 1, axisLabel: { show: false } },
      ],
      yAxis: [
        { type: "value", gridIndex: 0, scale: true, axisLabel: { formatter: "{value}%" } },
        { type: "value", gridIndex: 1, minInterval: 1, splitNumber: 2, axisLabel: { formatter: (v) => Math.abs(v) } },
      ],
      dataZoom: [
        { type: "inside", xAxisIndex: [0, 1], filterMode: "none" },
        { type: "slider", xAxisIndex: [0, 1], bottom: 8, height: 20, filterMode: "none", labelFormatter: "" },
      ],
      series: [
        {
          id: "sum", name: t("sumName"), type: "line", data: line, xAxisIndex: 0, yAxisIndex: 0,
          showSymbol: !many, symbolSize: 5, sampling: many ? "lttb" : undefined, connectNulls: false,
          lineStyle: { width: 1.6, color: "#1f4e79" }, itemStyle: { color: "#1f4e79" },
          markLine: {
            silent: true, symbol: "none", label: { show: false },
            lineStyle: { color: "#999", type: "dashed", width: 1 },
            data: [{ yAxis: 0, lineStyle: { color: "#555", type: "solid" } }, ...boundaries],
          },
        },
        {
          id: "incomplete", name: t("incompleteMark"), type: "scatter", data: incomplete,
          symbol: "emptyCircle", symbolSize: 8, itemStyle: { color: "#e08214" }, z: 3,
        },
        {
          id: "chosen", type: "scatter", data: chosen ? [[chosen.slot_ts_ms + BEIJING_MS, chosen.sum_pct ?? 0]] : [],
          symbolSize: 12, itemStyle: { color: "#fff", borderColor: "#1f4e79", borderWidth: 3 }, z: 4,
          tooltip: { show: false },
        },
        breadth("up", t("up"), up, colors.up, many),
        breadth("down", t("down"), down, colors.down, many),
      ],
    },
    { replaceMerge: ["series"] },
  );
}

chart.getZr().on("click", (event) => {
  const point = [event.offsetX, event.offsetY];
  if (!state.sums.length || !chart.containPixel({ gridIndex: [0, 1] }, point)) return;
  const x = chart.convertFromPixel({ gridIndex: 0 }, point)[0];
  let best = state.sums[0];
  for (const s of state.sums) {
    if (Math.abs(s.slot_ts_ms + BEIJING_MS - x) < Math.abs(best.slot_ts_ms + BEIJING_MS - x)) best = s;
  }
  chooseSlot(best.slot);
});

// ---- the slot's coins ----
async function chooseSlot(slot) {
  state.slot = slot;
  drawChart();
  const at = slot.replace(" ", "T");
  try {
    drawSlot(await getJson(`/api/slot?at=${at}`));
  } catch (error) {
    say(error.message);
  }
  if (slot.slice(0, 10) !== state.tableDay) {
    state.tableDay = slot.slice(0, 10);
    await loadDay();
  } else {
    markChosenRow();
  }
}

function drawSlot(s) {
  const limit = Math.max(0.01, ...s.coins.map((c) => Math.abs(c.pct_change)));
  const rows = s.coins.map((c) => `<tr><td>${escapeHtml(c.coin)}</td><td>${price(c.base_price)}</td>` +
    `<td>${price(c.price)}</td><td style="${colour(c.pct_change, limit)}">${pct(c.pct_change)}</td></tr>`);
  const gaps = s.missing.map((m) => `<tr class="missing" title="${escapeHtml(reason(m))}"><td>${escapeHtml(m.coin)}</td>` +
    `<td colspan="3">${escapeHtml(reason(m))}</td></tr>`);
  const best = s.coins[0];
  const worst = s.coins[s.coins.length - 1];
  $("slot").innerHTML = `<h2>${t("slotTitle")(s.slot)}</h2>
    <p class="facts">${t("sumName")}: <b>${pct(s.sum_pct)}</b> · ${s.coins_reported}/${s.coins_expected} ${t("coins")}<br>
    ${best ? `${t("best")}: ${escapeHtml(best.coin)} ${pct(best.pct_change)} · ${t("worst")}: ${escapeHtml(worst.coin)} ${pct(worst.pct_change)}<br>` : ""}
    <span class="links">${dagsterLink("basket_slots", `${s.slot.slice(0, 10)}-${s.slot.slice(11)}`)}</span></p>
    <table id="slot-coins"><thead><tr><th>${t("coin")}</th><th>${t("base")}</th><th>${t("price")}</th><th>${t("pct")}</th></tr></thead>
    <tbody>${rows.join("")}${gaps.join("")}</tbody></table>`;
}

// ---- the day table ----
function downloads(first, last, label) {
  const q = `from=${first}&to=${last}`;
  const kinds = [["full", t("full")], ["sum", t("sums")], ["missing", t("missing")], ["day_table", t("dayTable")]];
  return `${label}: ` + kinds.map(([k, name]) => `<a href="/download/${k}.csv?${q}" download>${name}</a>`).join("");
}

async function loadDay() {
  const day = state.tableDay;
  if (!day) return;
  try {
    const table = await getJson(`/api/day?date=${day}`);
    if (day === state.tableDay) {
      state.dayTable = table;
      drawDay(table);
    }
  } catch (error) {
    say(error.message);
  }
}

function drawDay(table) {
  const values = table.slots.flatMap((r) => r.pct_change.filter((v) => v !== null));
  const sums = table.slots.map((r) => r.sum_pct).filter((v) => v !== null);
  const limit = Math.max(0.01, ...values.map(Math.abs));
  const sumLimit = Math.max(0.01, ...sums.map(Math.abs));
  const head = `<tr><th>${t("time")}</th>${table.coins.map((c) => `<th>${escapeHtml(c)}</th>`).join("")}` +
    `<th>${t("sumName")}</th><th>${t("reported")}</th></tr>`;
  const body = table.slots.map((r) => {
    const cells = r.pct_change.map((v, i) => {
      if (v !== null) return `<td style="${colour(v, limit)}">${v.toFixed(2)}</td>`;
      const gap = r.missing[table.coins[i]];
      const why = gap ? reason(gap) : "–";
      return `<td class="gap" title="${escapeHtml(why)}">–</td>`;
    });
    const sum = r.sum_pct === null ? `<td class="sum gap">–</td>` : `<td class="sum" style="${colour(r.sum_pct, sumLimit)}">${r.sum_pct.toFixed(2)}</td>`;
    return `<tr data-slot="${table.date} ${r.time}"><td class="time">${r.time}</td>${cells.join("")}${sum}<td>${r.coins_reported}/${r.coins_expected}</td></tr>`;
  });
  $("day").innerHTML = `<h2>${t("dayTitle")(table.date)}</h2>
    <p class="links">${downloads(table.date, table.date, t("csvDay"))} ${dagsterLink("day_exports", table.date)}</p>
    ${table.slots.length ? `<table id="day-table"><thead>${head}</thead><tbody>${body.join("")}</tbody></table>` : `<p class="hint">${t("noData")}</p>`}`;
  markChosenRow();
}

function markChosenRow() {
  for (const row of document.querySelectorAll("#day-table tr.chosen")) row.classList.remove("chosen");
  const row = document.querySelector(`#day-table tr[data-slot="${state.slot}"]`);
  if (row) row.classList.add("chosen");
}

$("day").addEventListener("click", (event) => {
  const row = event.target.closest("tr[data-slot]");
  if (row && !window.getSelection().toString()) chooseSlot(row.dataset.slot);
});

// ---- the range ----
async function loadRange() {
  $("from").value = state.from;
  $("to").value = state.to;
  $("range-downloads").innerHTML = downloads(state.from, state.to, state.from === state.to ? t("csvDay") : t("csvRange"));
  const asked = `${state.from}/${state.to}`;
  try {
    const sums = await getJson(`/api/sums?from=${state.from}&to=${state.to}`);
    if (asked !== `${state.from}/${state.to}`) return; // a newer choice is on its way
    state.sums = sums;
    say(sums.length ? "" : t("noData"));
  } catch (error) {
    state.sums = [];
    say(error.message);
  }
  drawChart();
}

async function setRange(from, to) {
  state.from = from;
  state.to = to;
  await loadRange();
  const last = state.sums[state.sums.length - 1];
  if (!state.slot || state.slot < `${from} 00:00` || state.slot > `${to} 23:30`) {
    if (last) await chooseSlot(last.slot);
    else {
      state.slot = null;
      $("slot").innerHTML = `<p class="hint">${t("clickHint")}</p>`;
      state.tableDay = to;
      await loadDay();
    }
  }
  location.hash = `from=${from}&to=${to}`;
}

function preset(name) {
  const m = state.meta;
  const today = m.today;
  const span = { today: 1, yesterday: 1, 7: 7, 14: 14, 30: 30 }[name];
  if (name === "yesterday") return [addDays(today, -1), addDays(today, -1)];
  if (name === "all") {
    const first = m.first_day || today;
    const last = m.last_day || today;
    const earliest = addDays(last, -(m.max_days - 1));
    if (first < earliest) say(t("rangeCut")(m.max_days));
    return [first < earliest ? earliest : first, last];
  }
  return [addDays(today, -(span - 1)), today];
}

$("presets").addEventListener("click", (event) => {
  const button = event.target.closest("button[data-preset]");
  if (!button) return;
  for (const b of document.querySelectorAll("#presets button")) b.classList.toggle("active", b === button);
  setRange(...preset(button.dataset.preset));
});

for (const id of ["from", "to"]) {
  $(id).addEventListener("change", () => {
    const [from, to] = [$("from").value, $("to").value];
    if (!from || !to) return;
    for (const b of document.querySelectorAll("#presets button")) b.classList.remove("active");
    setRange(from <= to ? from : to, from <= to ? to : from);
  });
}

// ---- the header, live ----
function drawHeader() {
  const latest = state.latest;
  const badge = $("badge");
  if (!latest) {
    $("newest").textContent = t("noSnapshot");
    badge.className = "badge";
    badge.textContent = "";
    return;
  }
  const current = now();
  $("newest").innerHTML = `${t("newest")} <b>${latest.slot}</b> · ${t("sum")} <b>${pct(latest.sum_pct)}</b> · ` +
    `${latest.coins_reported}/${latest.coins_expected} ${t("coins")} · ${age(current - latest.slot_ts_ms)} ${t("ago")}`;
  const slotMs = state.meta.slot_ms;
  const due = Math.floor(current / slotMs) * slotMs;
  if (latest.slot_ts_ms < due && current - due > state.meta.late_after_seconds * 1000) {
    badge.className = "badge late";
    badge.textContent = t("late")(slotText(due));
  } else if (latest.coins_reported < latest.coins_expected) {
    badge.className = "badge incomplete";
    badge.textContent = t("incomplete")(latest.coins_reported, latest.coins_expected);
  } else {
    badge.className = "badge ok";
    badge.textContent = t("ok");
  }
}

async function poll() {
  try {
    const meta = await getJson("/api/meta");
    state.clockOffset = meta.now_ms - Date.now();
    const changed = meta.newest_slot !== state.meta.newest_slot || !state.latest;
    state.meta = meta;
    if (changed && meta.newest_slot) {
      const following = !state.slot || (state.latest && state.slot === state.latest.slot);
      state.latest = await getJson("/api/latest");
      drawHeader();
      const day = meta.newest_slot.slice(0, 10);
      if (state.from <= day && day <= state.to) {
        await loadRange();
        if (following) await chooseSlot(state.latest.slot); // the newest stays in view
        else if (state.tableDay === day) await loadDay();
      }
    }
    if (state.sums.length || !meta.newest_slot) say("");
  } catch (error) {
    say(error.message);
  }
  drawHeader();
}

// ---- language ----
function applyLanguage() {
  document.documentElement.lang = state.lang === "zh" ? "zh-CN" : "en";
  document.title = t("title");
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  $("lang").textContent = t("lang");
}

$("lang").addEventListener("click", async () => {
  state.lang = state.lang === "zh" ? "en" : "zh";
  localStorage.setItem("coinsum-lang", state.lang);
  applyLanguage();
  drawHeader();
  $("range-downloads").innerHTML = downloads(state.from, state.to, state.from === state.to ? t("csvDay") : t("csvRange"));
  drawChart();
  if (state.dayTable) drawDay(state.dayTable);
  if (state.slot) await chooseSlot(state.slot);
});

// ---- start ----
async function start() {
  applyLanguage();
  try {
    state.meta = await getJson("/api/meta");
  } catch (error) {
    say(error.message);
    setTimeout(start, POLL_MS);
    return;
  }
  state.clockOffset = state.meta.now_ms - Date.now();
  const asked = new URLSearchParams(location.hash.slice(1));
  const day = state.meta.last_day || state.meta.today;
  if (state.meta.newest_slot) state.latest = await getJson("/api/latest");
  drawHeader();
  await setRange(asked.get("from") || day, asked.get("to") || asked.get("from") || day);
  window.board.shownAt = performance.now(); // the first view whole: for bench/board.py
  setInterval(poll, POLL_MS);
  setInterval(drawHeader, 1000);
}

window.board = { chart, state, chooseSlot, setRange };
start();
