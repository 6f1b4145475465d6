"""The dashboard's page: a Jinja template (autoescaped) with its style and script inline.

The script only ever writes text (`textContent`), never HTML, so nothing an order carries can
become markup.
"""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Order Engine — live</title>
<style nonce="{{ nonce }}">
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #1d2330;
         background: #f6f7f9; }
  h1 { font-size: 1.3rem; margin: 0 0 .2rem; }
  #state { color: #667; font-size: .85rem; }
  #state.live::before { content: "● "; color: #1a9c4b; }
  #state.down::before { content: "● "; color: #c0392b; }
  .tiles { display: flex; flex-wrap: wrap; gap: .8rem; margin: 1rem 0; }
  .tile { background: #fff; border-radius: 6px; padding: .6rem .9rem; min-width: 8.5rem;
          box-shadow: 0 1px 2px rgba(0,0,0,.08); }
  .tile .label { color: #667; font-size: .75rem; text-transform: uppercase; letter-spacing: .04em; }
  .tile .value { font-size: 1.5rem; font-variant-numeric: tabular-nums; }
  .row { display: flex; flex-wrap: wrap; gap: 1.2rem; align-items: flex-start; }
  table { border-collapse: collapse; background: #fff; box-shadow: 0 1px 2px rgba(0,0,0,.08); }
  th, td { padding: .3rem .6rem; text-align: left; border-bottom: 1px solid #eceef2;
           font-variant-numeric: tabular-nums; }
  th { font-size: .75rem; color: #667; text-transform: uppercase; }
  td.id { font-family: ui-monospace, monospace; font-size: .8rem; }
  .status-confirmed { color: #1a9c4b; font-weight: 600; }
  .status-failed { color: #c0392b; font-weight: 600; }
  .status-cancelled { color: #8e44ad; }
  .status-pending, .status-routing, .status-building, .status-submitted { color: #b7791f; }
</style>
</head>
<body>
<h1>Order Engine — live</h1>
<div id="state">snapshot of {{ snapshot.at }} (connecting…)</div>

<div class="tiles">
  <div class="tile"><div class="label">orders / s</div>
    <div class="value" id="orders-per-second">{{ snapshot.ordersPerSecond }}</div></div>
  <div class="tile"><div class="label">p50 accept → confirmed</div>
    <div class="value" id="latency-p50">{{ snapshot.latency.p50 or "–" }}</div></div>
  <div class="tile"><div class="label">p99 accept → confirmed</div>
    <div class="value" id="latency-p99">{{ snapshot.latency.p99 or "–" }}</div></div>
  <div class="tile"><div class="label">queue depth</div>
    <div class="value" id="queue-depth">{{ snapshot.queueDepth.orders
      if snapshot.queueDepth.orders is not none else "?" }}</div></div>
{% for status, count in snapshot.inFlight.items() %}
  <div class="tile"><div class="label">{{ status }}</div>
    <div class="value" data-in-flight="{{ status }}">{{ count }}</div></div>
{% endfor %}
  <div class="tile"><div class="label">TWAPs running</div>
    <div class="value" id="twap-running">{{ snapshot.twap.running }}</div></div>
  <div class="tile"><div class="label">TWAP slices in flight</div>
    <div class="value" id="twap-slices">{{ snapshot.twap.slicesInFlight }}</div></div>
  <div class="tile"><div class="label">slices started / held back (since start)</div>
    <div class="value" id="twap-started">{{ snapshot.twap.slicesStarted or 0 }} /
      {{ snapshot.twap.slicesHeld or 0 }}</div></div>
{% for via, seen in snapshot.landing.items() %}
  <div class="tile"><div class="label">landed via {{ via }}: share, p50 slots</div>
    <div class="value" data-landing="{{ via }}">{{ seen.landedShare or "–" }},
      {{ seen.slotsP50 or "–" }}</div></div>
  <div class="tile"><div class="label">{{ via }}: avg priority / tip (lamports)</div>
    <div class="value" data-landing-paid="{{ via }}">{{ seen.priorityLamportsAvg or "–" }} /
      {{ seen.tipLamportsAvg or "–" }}</div></div>
{% endfor %}
{% for status, count in snapshot.finished.items() %}
  <div class="tile"><div class="label">{{ status }} (since start)</div>
    <div class="value status-{{ status }}" data-finished="{{ status }}">{{ count }}</div></div>
{% endfor %}
</div>

<div class="row">
<table id="latest">
  <caption>latest orders</caption>
  <thead><tr><th>created</th><th>order</th><th>type</th><th>pair</th><th>amount</th>
    <th>status</th><th>venue</th></tr></thead>
  <tbody>
  {% for order in snapshot.latest %}
    <tr data-order-id="{{ order.orderId }}">
      <td>{{ order.createdAt[11:19] }}</td><td class="id">{{ order.orderId }}</td>
      <td>{{ order.type }}</td><td>{{ order.pair }}</td><td>{{ order.amount }}</td>
      <td class="status status-{{ order.status }}">{{ order.status }}
        {%- if order.failureCode %} ({{ order.failureCode }}){% endif %}</td>
      <td>{{ order.dex or "" }}</td>
    </tr>
  {% endfor %}
  </tbody>
</table>

<table id="waiting">
  <caption>waiting for their trigger (newest)</caption>
  <thead><tr><th>created</th><th>order</th><th>type</th><th>pair</th><th>amount</th>
    <th>fires at</th><th>peak</th></tr></thead>
  <tbody>
  {% for order in snapshot.waiting %}
    <tr data-waiting-id="{{ order.orderId }}">
      <td>{{ order.createdAt[11:19] }}</td><td class="id">{{ order.orderId }}</td>
      <td>{{ order.type }}</td><td>{{ order.pair }}</td><td>{{ order.amount }}</td>
      <td>{{ order.trigger }}</td><td>{{ order.peak or "" }}</td>
    </tr>
  {% endfor %}
  </tbody>
</table>

<table id="failures">
  <caption>failure codes (since start)</caption>
  <thead><tr><th>code</th><th>orders</th></tr></thead>
  <tbody>
  {% for code, count in snapshot.failureCodes.items() %}
    <tr><td>{{ code }}</td><td>{{ count }}</td></tr>
  {% endfor %}
  </tbody>
</table>
</div>

<script nonce="{{ nonce }}">
"use strict";
(function () {
  const state = document.getElementById("state");
  const text = (id, value) => { document.getElementById(id).textContent = value; };

  function cell(row, value, className) {
    const td = row.insertCell();
    td.textContent = value;
    if (className) td.className = className;
  }

  function render(s) {
    text("orders-per-second", s.ordersPerSecond);
    text("latency-p50", s.latency.p50 === null ? "–" : s.latency.p50 + " s");
    text("latency-p99", s.latency.p99 === null ? "–" : s.latency.p99 + " s");
    text("queue-depth", s.queueDepth.orders === null ? "?" : s.queueDepth.orders);
    for (const [status, count] of Object.entries(s.inFlight)) {
      document.querySelector(`[data-in-flight="${status}"]`).textContent = count;
    }
    text("twap-running", s.twap.running);
    text("twap-slices", s.twap.slicesInFlight);
    text("twap-started", `${s.twap.slicesStarted || 0} / ${s.twap.slicesHeld || 0}`);
    for (const [via, seen] of Object.entries(s.landing)) {
      const dash = (value) => (value === null ? "–" : value);
      document.querySelector(`[data-landing="${via}"]`).textContent =
        `${dash(seen.landedShare)}, ${dash(seen.slotsP50)}`;
      document.querySelector(`[data-landing-paid="${via}"]`).textContent =
        `${dash(seen.priorityLamportsAvg)} / ${dash(seen.tipLamportsAvg)}`;
    }
    for (const [status, count] of Object.entries(s.finished)) {
      document.querySelector(`[data-finished="${status}"]`).textContent = count;
    }
    const latest = document.querySelector("#latest tbody");
    latest.replaceChildren();
    for (const o of s.latest) {
      const row = latest.insertRow();
      row.dataset.orderId = o.orderId;
      cell(row, o.createdAt.slice(11, 19));
      cell(row, o.orderId, "id");
      cell(row, o.type);
      cell(row, o.pair);
      cell(row, o.amount);
      cell(row, o.status + (o.failureCode ? ` (${o.failureCode})` : ""),
           `status status-${o.status}`);
      cell(row, o.dex || "");
    }
    const waiting = document.querySelector("#waiting tbody");
    waiting.replaceChildren();
    for (const o of s.waiting) {
      const row = waiting.insertRow();
      row.dataset.waitingId = o.orderId;
      cell(row, o.createdAt.slice(11, 19));
      cell(row, o.orderId, "id");
      cell(row, o.type);
      cell(row, o.pair);
      cell(row, o.amount);
      cell(row, o.trigger);
      cell(row, o.peak || "");
    }
    const failures = document.querySelector("#failures tbody");
    failures.replaceChildren();
    for (const [code, count] of Object.entries(s.failureCodes)) {
      const row = failures.insertRow();
      cell(row, code);
      cell(row, count);
    }
    state.textContent = `live — ${s.at}`;
    state.className = "live";
  }

  async function connect(delayMs) {
    try {
      const answer = await fetch("/dashboard/ticket",
                                 {method: "POST", credentials: "same-origin"});
      if (!answer.ok) throw new Error(`ticket refused (${answer.status})`);
      const {ticket} = await answer.json();
      const scheme = location.protocol === "https:" ? "wss://" : "ws://";
      const path = `/api/dashboard/stream?ticket=${encodeURIComponent(ticket)}`;
      const ws = new WebSocket(`${scheme}${location.host}${path}`);
      ws.onmessage = (message) => render(JSON.parse(message.data));
      ws.onclose = () => {
        state.textContent = "disconnected; reconnecting…";
        state.className = "down";
        setTimeout(() => connect(1000), 1000);
      };
    } catch (error) {
      state.textContent = `disconnected (${error.message}); retrying…`;
      state.className = "down";
      const next = Math.min(delayMs * 2, 30000);
      setTimeout(() => connect(next), delayMs);
    }
  }
  connect(1000);
})();
</script>
</body>
</html>
"""
