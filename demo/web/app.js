// The dashboard polls /api/dashboard once a second and redraws.
"use strict";

const $ = (id) => document.getElementById(id);
const fmt = (n) => Number(n).toLocaleString("en-US");

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : String(c));
  return e;
}

const pill = (stage) => el("span", { class: "pill stage-" + stage }, stage);
const side = (s) => el("span", { class: "side " + s }, s);

function drawStages(rows) {
  const max = Math.max(1, ...rows.map((r) => r.old + r.new));
  $("stages").replaceChildren(...rows.map((r) => {
    const bar = el("div", { class: "bar" },
      el("span", { class: "o", style: `width:${(100 * r.old) / max}%` }),
      el("span", { class: "n", style: `width:${(100 * r.new) / max}%` }));
    return el("tr", { "data-stage": r.stage },
      el("td", {}, pill(r.stage)), el("td", { class: "num" }, fmt(r.accounts)),
      el("td", { class: "num" }, fmt(r.old)), el("td", { class: "num" }, fmt(r.new)),
      el("td", { class: "num" + (r.failed ? " status-err" : "") }, fmt(r.failed)), el("td", {}, bar));
  }));
}

function drawAccounts(accounts) {
  $("accounts").replaceChildren(...accounts.map((a) => el("span", {
    class: "acct stage-" + a.stage + (a.key === "123" || a.key === "456" ? " tester" : ""),
    title: `${a.key} · ${a.name} · ${a.country} ${a.plan} · ${a.stage}`,
  }, a.key)));
}

function drawRecent(recent) {
  if (!recent.length) return;
  $("recent").replaceChildren(...recent.map((r) => el("tr", {},
    el("td", {}, new Date(r.at).toLocaleTimeString()),
    el("td", {}, r.who || "(anonymous)", r.country || r.plan ? el("span", { class: "muted" }, ` ${r.country || ""} ${r.plan || ""}`) : ""),
    el("td", {}, `${r.method} ${r.path}`),
    el("td", { class: "muted" }, r.op || "-"),
    el("td", {}, pill(r.stage)),
    el("td", {}, side(r.side)),
    el("td", { class: r.status >= 500 ? "status-err" : "" }, r.status),
    el("td", { class: "num" }, r.ms.toFixed(1)))));
}

function drawVerify(v) {
  const box = $("verify");
  if (!v) return;
  const when = new Date(v.at).toLocaleTimeString();
  if (v.equal) {
    box.className = "verify equal";
    box.textContent = `equal at ${when}: ${v.tables.length} tables, ${fmt(v.rows)} rows (${v.ms} ms)`;
  } else {
    box.className = "verify differ";
    const parts = v.tables.filter((t) => t.error || t.missing_on_new + t.extra_on_new + t.different)
      .map((t) => t.error ? `${t.table}: ${t.error}` : `${t.table}: ${t.missing_on_new} missing on new, ${t.extra_on_new} extra on new, ${t.different} different`);
    box.textContent = `${fmt(v.differences)} differences at ${when}${v.repair ? " (repaired)" : ""}: ${parts.join("; ")}`;
  }
}

function drawGates(steps) {
  $("gates").replaceChildren(...steps.map((s) => {
    let what;
    if (s.error) what = el("span", { class: "status-err" }, s.error);
    else if (s.ready) what = el("span", { class: "gate-ok" }, `nothing: ${s.gates} gates met`);
    else what = el("ul", { class: "gate-list" }, ...s.blocking.map((g) =>
      el("li", { title: "fix: " + g.fix }, el("b", {}, g.gate), `: ${g.measured} (limit ${g.limit})`)));
    return el("tr", { "data-gate": s.stage }, el("td", {}, pill(s.stage)), el("td", {}, pill(s.next)), el("td", {}, what));
  }));
}

async function pollGates() {
  try {
    const res = await fetch("/api/gates", { cache: "no-store" });
    drawGates(await res.json());
  } catch (e) {
    // the dashboard's connection dot already says the demo is gone
  }
}

async function poll() {
  try {
    const res = await fetch("/api/dashboard", { cache: "no-store" });
    const d = await res.json();
    $("conn").className = "dot ok";
    let flagsText = "flags: " + d.flags_file;
    const fh = d.flags_health;
    if (fh) {
      flagsText += fh.usable
        ? " (version " + fh.version + ")"
        : " (NOT USABLE since " + new Date(fh.since).toLocaleTimeString() + ": " + fh.last_error +
          "; version " + fh.version + " stays in use)";
    }
    $("flags-file").textContent = flagsText;
    $("flags-file").className = fh && !fh.usable ? "bad" : "";
    $("requests").textContent = fmt(d.requests);
    $("failed").textContent = fmt(d.failed);
    $("shadow-reads").textContent = fmt(d.shadow_reads);
    $("mismatches").textContent = fmt(d.shadow_mismatches);
    $("missed").textContent = fmt(d.other_missed);
    $("repaired").textContent = fmt(d.repaired);
    $("backlog-old").textContent = fmt(d.backlog.old.entries);
    $("backlog-new").textContent = fmt(d.backlog.new.entries);
    $("backlog-age").textContent = Math.max(d.backlog.old.oldest_age_seconds, d.backlog.new.oldest_age_seconds).toFixed(1) + "s";
    drawStages(d.stages);
    drawAccounts(d.accounts);
    drawRecent(d.recent);
    drawVerify(d.verify);
  } catch (e) {
    $("conn").className = "dot bad";
  }
}

$("try").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const headers = { "X-User-ID": $("try-user").value };
  if ($("try-country").value) headers["X-Country"] = $("try-country").value;
  if ($("try-plan").value) headers["X-Plan"] = $("try-plan").value;
  const res = await fetch("/api/me", { headers });
  const body = await res.text();
  $("try-out").textContent = `HTTP ${res.status}\nPgshift-Stage: ${res.headers.get("Pgshift-Stage")}\nPgshift-Served-By: ${res.headers.get("Pgshift-Served-By")}\n\n${body}`;
  poll();
});

for (const b of document.querySelectorAll("[data-admin]")) {
  b.addEventListener("click", async () => {
    $("admin-out").textContent = "running " + b.dataset.admin + " ...";
    const res = await fetch(b.dataset.admin, { method: "POST", headers: { Authorization: "Bearer " + $("token").value } });
    $("admin-out").textContent = `HTTP ${res.status}\n` + (await res.text());
    poll();
  });
}

for (const o of document.querySelectorAll(".origin")) o.textContent = location.origin;
poll();
setInterval(poll, 1000);
pollGates();
setInterval(pollGates, 3000);
