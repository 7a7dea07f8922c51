/* The Offerwise admin dashboard: one page per hash route, each calling the JSON API with the
 * admin key or the staff token kept in sessionStorage (no cookie). Text from the API is only
 * ever inserted as text (Charts.el), never as HTML. */
"use strict";

(() => {
  const { el } = Charts;
  const mainEl = document.getElementById("main");
  const nav = document.getElementById("nav");
  const who = document.getElementById("who");
  const logout = document.getElementById("logout");
  const announce = document.getElementById("announce");

  // -- credentials: the tab's sessionStorage only ------------------------------------------
  const session = {
    get admin() { return sessionStorage.getItem("offerwise.admin"); },
    get staff() { return sessionStorage.getItem("offerwise.staff"); },
    get tenant() { return sessionStorage.getItem("offerwise.tenant"); },
    set(name, value) {
      if (value) sessionStorage.setItem(`offerwise.${name}`, value);
      else sessionStorage.removeItem(`offerwise.${name}`);
    },
    clear() { ["admin", "staff", "tenant"].forEach((n) => sessionStorage.removeItem(`offerwise.${n}`)); },
  };

  class ApiError extends Error {
    constructor(status, message, payload) { super(message); this.status = status; this.payload = payload; }
  }

  async function api(path, { method = "GET", body, staff = false, contentType } = {}) {
    const token = staff ? session.staff : session.admin;
    const headers = { Authorization: `Bearer ${token || ""}`, Accept: "application/json" };
    let payload = body;
    if (contentType) headers["Content-Type"] = contentType;
    else if (body !== undefined && !(body instanceof FormData) && !(body instanceof Blob)) {
      headers["Content-Type"] = "application/json";
      payload = JSON.stringify(body);
    }
    const res = await fetch(path, { method, headers, body: payload, credentials: "omit", cache: "no-store" });
    let data = null;
    try { data = await res.json(); } catch (_) { data = null; }
    if (!res.ok) throw new ApiError(res.status, (data && data.message) || `${res.status} ${res.statusText}`, data);
    return data;
  }

  // -- small view helpers ------------------------------------------------------------------
  const fmt = new Intl.NumberFormat("en-US");
  const num = (v) => (v === null || v === undefined ? "–" : fmt.format(v));
  const pct = (v, digits = 1) => (v === null || v === undefined || !isFinite(v) ? "–" : `${(v * 100).toFixed(digits)}%`);
  const fixed = (v, digits = 3) => (v === null || v === undefined || !isFinite(v) ? "–" : Number(v).toFixed(digits));
  const when = (secs) => (secs ? new Date(secs * 1000).toISOString().replace("T", " ").slice(0, 16) + " UTC" : "–");

  function say(text) { announce.textContent = text; }

  function alertBox(err) {
    const box = el("div", { class: "alert", role: "alert" }, String(err.message || err));
    if (err.status === 401) {
      box.append(" ", el("a", { href: "#/login" }, "Log in again"));
    }
    return box;
  }

  function table({ caption, columns, rows, empty = "Nothing yet." }) {
    if (!rows.length) return el("p", { class: "muted" }, empty);
    const head = el("tr", {}, columns.map((c) => el("th", { scope: "col", class: c.num ? "num" : null }, c.label)));
    const body = rows.map((row) =>
      el("tr", {}, columns.map((c, i) => {
        const value = c.render ? c.render(row) : row[c.key];
        const cell = i === 0 && c.header !== false ? "th" : "td";
        return el(cell, cell === "th" ? { scope: "row", class: c.num ? "num" : null } : { class: c.num ? "num" : null }, value);
      }))
    );
    return el("div", { class: "table-wrap" }, el("table", {}, el("caption", {}, caption), el("thead", {}, head), el("tbody", {}, body)));
  }

  function field(label, input, hint) {
    const id = input.id || `f-${Math.random().toString(36).slice(2, 9)}`;
    input.id = id;
    const parts = [el("label", { for: id }, label), input];
    if (hint) {
      const hintId = `${id}-hint`;
      input.setAttribute("aria-describedby", hintId);
      parts.push(el("span", { class: "hint", id: hintId }, hint));
    }
    return el("div", { class: "field" }, parts);
  }

  function page(main, title, intro) {
    const h1 = el("h1", {}, title);
    main.append(h1);
    if (intro) main.append(el("p", { class: "muted" }, intro));
    document.title = `${title} · Offerwise dashboard`;
    return main;
  }

  function badge(text) { return el("span", { class: `badge ${text}` }, text); }

  // -- routes ------------------------------------------------------------------------------
  const ADMIN = "admin", STAFF = "staff";
  const ROUTES = [
    { path: "overview", label: "Overview", needs: ADMIN, view: overview },
    { path: "catalog", label: "Catalog", needs: ADMIN, view: catalogPage },
    { path: "crm", label: "CRM", needs: ADMIN, view: crmPage },
    { path: "segments", label: "Segments", needs: ADMIN, view: segmentsPage },
    { path: "models", label: "Models", needs: null, view: modelsPage },
    { path: "campaigns", label: "Campaigns", needs: ADMIN, view: campaignsPage },
  ];
  let timers = [];
  let firstRender = true;
  let flash = null;  // a message for the next rendering of the page (a finished job)

  function allowed(route) {
    if (route.needs === ADMIN) return !!session.admin;
    if (route.needs === STAFF) return !!session.staff;
    return !!(session.admin || session.staff);
  }

  function renderNav(current) {
    nav.textContent = "";
    const loggedIn = !!(session.admin || session.staff);
    logout.hidden = !loggedIn;
    who.textContent = loggedIn
      ? [session.admin ? `tenant admin: ${session.tenant || "?"}` : null, session.staff ? "staff" : null].filter(Boolean).join(" · ")
      : "";
    if (!loggedIn) return;
    for (const r of ROUTES.filter(allowed)) {
      nav.append(el("a", { href: `#/${r.path}`, "aria-current": r.path === current ? "page" : null }, r.label));
    }
  }

  // Each visit renders into its own element: a slower earlier visit still finishing its
  // requests writes into an element no longer on the page, never into this one.
  async function route() {
    timers.forEach(clearInterval);
    timers = [];
    const view = el("div", { class: "view" });
    mainEl.replaceChildren(view);
    const path = (location.hash.replace(/^#\/?/, "") || "").split("?")[0];
    const loggedIn = !!(session.admin || session.staff);
    let target = ROUTES.find((r) => r.path === path);
    if (!loggedIn || path === "login") {
      renderNav("login");
      return login(view);
    }
    if (!target || !allowed(target)) target = ROUTES.find(allowed);
    if (`#/${target.path}` !== location.hash) { history.replaceState(null, "", `#/${target.path}`); }
    renderNav(target.path);
    try {
      await target.view(view);
    } catch (err) {
      view.append(alertBox(err));
    }
    // After a move within the dashboard the focus goes to the new content; on a page load it
    // stays at the top, where the skip link is the first stop.
    if (view.isConnected && !firstRender) mainEl.focus();
    firstRender = false;
    say(`${target.label} page loaded`);
  }

  // The skip link moves the focus without touching the hash (the hash is the page's route).
  document.querySelector(".skip").addEventListener("click", (ev) => {
    ev.preventDefault();
    mainEl.focus();
  });

  logout.addEventListener("click", () => {
    session.clear();
    if (location.hash === "#/login") route();
    else location.hash = "#/login";
  });
  window.addEventListener("hashchange", route);

  // -- login -------------------------------------------------------------------------------
  function login(main) {
    page(main, "Log in", "Use this tenant's admin key, the provider's staff token, or both. They are kept in this browser tab only (sessionStorage) and sent as an Authorization header; no cookie is set.");
    const admin = el("input", { type: "password", id: "admin-key", autocomplete: "off", spellcheck: "false" });
    const staff = el("input", { type: "password", id: "staff-token", autocomplete: "off", spellcheck: "false" });
    const out = el("div", {});
    const form = el("form", { class: "stack card", "aria-label": "Log in" },
      field("Admin key", admin, "The tenant's admin key (ow_admin_…): overview, catalog, CRM, segments, models, campaigns."),
      field("Staff token", staff, "OFFERWISE_STAFF_TOKEN of the service: model promotion, rollback and training."),
      el("div", {}, el("button", { type: "submit" }, "Log in")), out);
    main.append(form);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      out.textContent = "";
      const adminKey = admin.value.trim(), staffToken = staff.value.trim();
      if (!adminKey && !staffToken) { out.append(alertBox(new Error("Enter an admin key or a staff token."))); admin.focus(); return; }
      session.clear();
      try {
        if (adminKey) {
          session.set("admin", adminKey);
          const tenant = await api("/v1/admin/tenant");
          session.set("tenant", tenant.tenant);
        }
        if (staffToken) {
          session.set("staff", staffToken);
          const listed = await api("/v1/staff/tenants", { staff: true });
          if (!session.tenant && listed.tenants.length) session.set("tenant", listed.tenants[0].tenant);
        }
      } catch (err) {
        session.clear();
        out.append(alertBox(err));
        return;
      }
      const next = session.admin ? "#/overview" : "#/models";
      if (location.hash === next) route();
      else location.hash = next;  // hashchange renders it
    });
    admin.focus();
  }

  // -- overview ----------------------------------------------------------------------------
  async function overview(main) {
    page(main, "Overview", "Traffic of the last hour and the last week, from counters kept as events arrive.");
    const refresh = el("button", { type: "button", class: "secondary" }, "Refresh");
    refresh.addEventListener("click", () => route());
    main.append(el("p", {}, refresh));
    const data = await api("/v1/admin/overview?minutes=60&days=7");
    const today = data.days[0];
    const lastHour = data.minutes.reduce((s, m) => s + m.events, 0);
    const byType = data.today.by_type || {};
    const kpis = el("div", { class: "kpis" });
    const kpi = (label, value) => kpis.append(el("div", { class: "kpi" }, el("span", { class: "value" }, value), el("span", { class: "label" }, label)));
    kpi("Events in the last hour", num(lastHour));
    kpi("Events today", num(data.today.events));
    kpi("Visitors today", num(today.visitors));
    kpi("Identified share today", pct(today.identified_share));
    kpi("Offers seen today", num(byType.offer_impression || 0));
    kpi("Offer clicks today", num(byType.offer_click || 0));
    main.append(kpis);
    const row = el("div", { class: "grid2" });
    main.append(row);
    Charts.lines(row, {
      title: "Events per minute",
      description: `Events and offer impressions in each of the last 60 minutes; ${num(lastHour)} events in all.`,
      xs: data.minutes.map((m) => m.minute),
      series: [
        { label: "Events", values: data.minutes.map((m) => m.events) },
        { label: "Offers seen", values: data.minutes.map((m) => m.impressions) },
      ],
      bars: true,
    });
    const days = [...data.days].reverse();
    Charts.lines(row, {
      title: "Visitors per day",
      description: `Distinct visitors and identified visitors over the last ${days.length} days; today ${num(today.visitors)} visitors.`,
      xs: days.map((_, i) => i),
      time: false,
      xLabels: days.map((d) => d.date.slice(5)),
      series: [
        { label: "Visitors", values: days.map((d) => d.visitors) },
        { label: "Identified", values: days.map((d) => d.identified) },
      ],
      bars: true,
    });
    const segs = today.segments.slice(0, 10);
    const top = segs.length ? segs[0].events : 1;
    main.append(el("h2", {}, "Top ZIP segments today"),
      table({
        caption: "Events today by the visitor's ZIP segment (visitors who gave a ZIP)",
        columns: [
          { label: "Segment", render: (s) => [el("span", { class: "swatch", style: `background:${Charts.segmentColour(s.segment)}` }), `${s.segment}: ${s.label || "segment " + s.segment}`] },
          { label: "Events", num: true, render: (s) => num(s.events) },
          { label: "Share of the top", header: false, render: (s) => el("span", { class: "bar", style: `width:${Math.max(2, (160 * s.events) / top)}px`, "aria-hidden": "true" }) },
        ],
        rows: segs,
        empty: "No visitor with a ZIP today.",
      }));
    main.append(el("p", { class: "note" }, "Visitor counts are estimates (HyperLogLog, about 1%); visitors with Do-Not-Track or GPC count in events only."));
  }

  // -- upload reports (catalog, CRM) -------------------------------------------------------
  function reportView(title, report) {
    const box = el("section", { class: "card", "aria-label": title });
    box.append(el("h2", {}, title));
    const counts = ["rows_read", "rows_imported", "rows_rejected", "rows_skipped_erased", "rows_blank"].filter((k) => k in report);
    box.append(el("p", {}, counts.map((k) => `${k.replace(/_/g, " ")}: ${num(report[k])}`).join(" · ")));
    if (report.version !== undefined && report.version !== null) box.append(el("p", {}, `Version ${report.version} is live.`));
    for (const w of report.warnings || []) box.append(el("p", { class: "note" }, `Warning: ${typeof w === "string" ? w : JSON.stringify(w)}`));
    const errors = report.errors || [];
    box.append(table({
      caption: `Rejected rows (${errors.length} shown${report.rows_rejected > errors.length ? ` of ${num(report.rows_rejected)}` : ""})`,
      columns: [
        { label: "Row", num: true, render: (e) => num(e.row) },
        { label: "Column", render: (e) => e.column || "–" },
        { label: "Reason", render: (e) => e.reason || e.message || JSON.stringify(e) },
      ],
      rows: errors,
      empty: "Every row was accepted.",
    }));
    if (report.holdings) box.append(reportView("Holdings file", report.holdings));
    return box;
  }

  function uploadFailure(err) {
    const report = err.payload && err.payload.errors && err.payload.errors.report;
    const out = el("div", {}, alertBox(err));
    if (report) out.append(reportView("Validation report", report));
    return out;
  }

  // -- catalog -----------------------------------------------------------------------------
  async function catalogPage(main) {
    page(main, "Catalog", "Upload the product catalog (CSV or JSON). Good rows replace the whole catalog at once; rejected rows are listed with their reason.");
    const file = el("input", { type: "file", id: "catalog-file", accept: ".csv,.json,text/csv,application/json", required: true });
    const out = el("div", { "aria-live": "polite" });
    const form = el("form", { class: "stack card", "aria-label": "Upload a catalog" },
      field("Catalog file", file, "CSV header: product_id,name,category,price (margin, url, image_url, active optional), at most 20 MB."),
      el("div", { class: "actions" },
        el("button", { type: "submit", value: "check", class: "secondary" }, "Check only"),
        el("button", { type: "submit", value: "upload" }, "Upload catalog")));
    main.append(form, out);
    const listing = el("div", {});
    main.append(el("h2", {}, "Current catalog"), listing);
    async function showCatalog() {
      listing.textContent = "";
      const cat = await api("/v1/admin/catalog?limit=50");
      listing.append(el("p", { class: "muted" }, `Version ${cat.version ?? "–"}, ${num(cat.total)} products (first 50 shown).`),
        table({
          caption: "Products",
          columns: [
            { label: "Product", key: "product_id" },
            { label: "Name", key: "name" },
            { label: "Category", key: "category" },
            { label: "Price", num: true, render: (p) => fixed(p.price, 2) },
            { label: "Active", render: (p) => (p.active === false ? "no" : "yes") },
          ],
          rows: cat.products,
          empty: "No catalog yet: upload one above.",
        }));
    }
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      out.textContent = "";
      const f = file.files[0];
      if (!f) return;
      const check = ev.submitter && ev.submitter.value === "check";
      const json = /\.json$/i.test(f.name) || f.type === "application/json";
      try {
        const report = await api(`/v1/admin/catalog${check ? "?check=true" : ""}`, { method: "PUT", body: f, contentType: json ? "application/json" : "text/csv" });
        const summary = check
          ? `Checked: ${num(report.rows_imported)} of ${num(report.rows_read)} rows would be imported; the catalog is unchanged.`
          : `Imported ${num(report.rows_imported)} of ${num(report.rows_read)} rows.`;
        out.append(el("div", { class: "ok" }, summary), reportView("Validation report", report));
        if (check) return;
        say(`Catalog uploaded: ${report.rows_imported} rows imported, ${report.rows_rejected} rejected`);
        await showCatalog();
      } catch (err) {
        out.append(uploadFailure(err));
      }
    });
    await showCatalog();
  }

  // -- CRM ---------------------------------------------------------------------------------
  async function crmPage(main) {
    page(main, "CRM", "Import a customer extract (CSV or Parquet) with optional holdings. Bad rows are reported row by row; the rest goes live as a new version, the previous one kept for rollback.");
    const customers = el("input", { type: "file", id: "crm-customers", accept: ".csv,.parquet,text/csv", required: true });
    const holdings = el("input", { type: "file", id: "crm-holdings", accept: ".csv,.parquet,text/csv" });
    const idColumn = el("input", { type: "text", id: "crm-id-column", value: "customer_id", maxlength: "128" });
    const zipColumn = el("input", { type: "text", id: "crm-zip-column", maxlength: "128", placeholder: "detected" });
    const out = el("div", { "aria-live": "polite" });
    const form = el("form", { class: "stack card", "aria-label": "Import a CRM extract" },
      field("Customers file", customers, "One row per customer; at most 2 GiB."),
      field("Holdings file (optional)", holdings, "customer_id,product_id[,quantity][,date]"),
      field("Customer id column", idColumn),
      field("ZIP column (optional)", zipColumn),
      el("div", {}, el("button", { type: "submit" }, "Import CRM extract")));
    main.append(form, out);
    const versions = el("div", {});
    main.append(el("h2", {}, "Versions"), versions);
    async function showVersions() {
      versions.textContent = "";
      const info = await api("/v1/admin/crm/versions");
      const list = info.versions || [];
      versions.append(table({
        caption: `CRM versions (live: ${info.live_version ?? info.live ?? "none"})`,
        columns: [
          { label: "Version", render: (v) => String(v.version) },
          { label: "Created", render: (v) => when(v.created_at) },
          { label: "Rows imported", num: true, render: (v) => num(v.rows_imported) },
          { label: "Rows rejected", num: true, render: (v) => num(v.rows_rejected) },
          { label: "Live", render: (v) => (v.live || v.version === info.live_version ? badge("champion") : "") },
        ],
        rows: list,
        empty: "No CRM extract imported yet.",
      }));
      if (list.length > 1) {
        const back = el("button", { type: "button", class: "danger" }, "Roll back to the previous version");
        back.addEventListener("click", async () => {
          try { await api("/v1/admin/crm/rollback", { method: "POST" }); say("CRM rolled back"); await showVersions(); }
          catch (err) { versions.append(alertBox(err)); }
        });
        versions.append(el("p", {}, back));
      }
    }
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      out.textContent = "";
      if (!customers.files[0]) return;
      const body = new FormData();
      body.append("customers", customers.files[0]);
      if (holdings.files[0]) body.append("holdings", holdings.files[0]);
      const q = new URLSearchParams({ id_column: idColumn.value.trim() || "customer_id" });
      if (zipColumn.value.trim()) q.set("zip_column", zipColumn.value.trim());
      try {
        const report = await api(`/v1/admin/crm?${q}`, { method: "POST", body });
        out.append(el("div", { class: "ok" }, `Version ${report.version} is live: ${num(report.rows_imported)} customers imported.`), reportView("Validation report", report));
        say("CRM extract imported");
        await showVersions();
      } catch (err) {
        out.append(uploadFailure(err));
      }
    });
    await showVersions();
  }

  // -- segments ----------------------------------------------------------------------------
  async function segmentsPage(main) {
    page(main, "Segments", "ZIP micro-segments: every US ZIP belongs to one, from its census figures. Visitors who give a ZIP are served and counted by segment.");
    const [info, map] = await Promise.all([api("/v1/admin/segments"), api("/v1/admin/segments/map?limit=6000")]);
    const segs = info.segments || [];
    if (!segs.length) { main.append(el("p", { class: "muted" }, "No segmentation is built on this service yet (offerwise geo build-segments).")); return; }
    const labels = Object.fromEntries(segs.map((s) => [s.id, s.label]));
    const drawn = Charts.zipMap(main, {
      title: "ZIP centroids by segment",
      description: `${num(map.points.length)} of ${num(map.total)} ZIP centroids of the contiguous states, each dot coloured by its segment.`,
      points: map.points,
      labels,
    });
    main.append(el("p", { class: "note" }, `A sample of ${num(map.points.length)} of ${num(map.total)} ZIPs; ${num(drawn.hidden)} outside the contiguous states (Alaska, Hawaii, territories) are not drawn.`));
    main.append(table({
      caption: `Segments of segmentation ${info.segmentation ? info.segmentation.version : ""}`,
      columns: [
        { label: "Segment", render: (s) => [el("span", { class: "swatch", style: `background:${Charts.segmentColour(s.id)}` }), `${s.id}: ${s.label}`] },
        { label: "Description", header: false, render: (s) => s.description || "" },
        { label: "ZIPs", num: true, render: (s) => num(s.zips) },
        { label: "Population share", num: true, render: (s) => pct(s.population_share) },
      ],
      rows: segs,
    }));
  }

  // -- models ------------------------------------------------------------------------------
  async function modelsPage(main) {
    page(main, "Models", session.staff ? "Model versions of a tenant: holdout figures, gains, promotion, rollback and training." : "This tenant's model versions and their holdout figures. Promotion, rollback and training are for the provider's staff.");
    let tenant = session.tenant;
    if (session.staff) {
      const listed = await api("/v1/staff/tenants", { staff: true });
      const pick = el("select", { id: "model-tenant" }, listed.tenants.map((t) => el("option", { value: t.tenant, selected: t.tenant === tenant ? true : null }, t.tenant)));
      pick.addEventListener("change", () => { session.set("tenant", pick.value); route(); });
      main.append(el("div", { class: "card" }, field("Tenant", pick)));
      if (!tenant && listed.tenants.length) tenant = listed.tenants[0].tenant;
    }
    if (!tenant) { main.append(el("p", { class: "muted" }, "No tenant yet.")); return; }
    const asStaff = !!session.staff;
    const base = asStaff ? `/v1/staff/tenants/${encodeURIComponent(tenant)}` : "/v1/admin";
    const data = await api(`${base}/models`, { staff: asStaff });
    const status = el("div", { "aria-live": "polite" });
    main.append(status);
    if (flash) {
      status.append(el("p", { class: "ok", role: "status" }, flash));
      flash = null;
    }
    if (asStaff) {
      const train = el("button", { type: "button" }, "Train a new version");
      const rollback = el("button", { type: "button", class: "danger" }, "Roll back the champion");
      const progress = el("div", {});
      train.addEventListener("click", async () => {
        status.textContent = "";
        try {
          const job = await api(`${base}/train`, { method: "POST", body: {}, staff: true });
          watchJob(job.job, progress);
        } catch (err) { status.append(alertBox(err)); }
      });
      rollback.addEventListener("click", async () => {
        status.textContent = "";
        try { const r = await api(`${base}/models/rollback`, { method: "POST", staff: true }); say(`Champion is now ${r.champion}`); route(); }
        catch (err) { status.append(alertBox(err)); }
      });
      main.append(el("div", { class: "card" }, el("div", { class: "actions" }, train, rollback), progress));
    }
    const versions = data.versions || [];
    main.append(table({
      caption: `Versions of ${tenant} (champion: ${data.champion || "none"})`,
      columns: [
        { label: "Version", render: (v) => v.version },
        { label: "Trained", render: (v) => when(v.trained_at) },
        { label: "Products", num: true, render: (v) => { const p = v.trained_products || v.products; return num(Array.isArray(p) ? p.length : p && typeof p === "object" ? Object.keys(p).length : null); } },
        { label: "Holdout score", num: true, render: (v) => fixed(v.holdout_score) },
        // Visitors without CRM data: a model of their own, or the customer model and why.
        { label: "Anonymous visitors", render: (v) => (!v.anonymous ? "–" : v.anonymous.trained ? "own model" : `customer model: ${v.anonymous.why}`) },
        { label: "State", render: (v) => (v.champion ? badge("champion") : v.retrain_because ? badge("failed") : "") },
        { label: "Actions", header: false, render: (v) => {
          const view = el("button", { type: "button", class: "secondary" }, "Show figures");
          view.addEventListener("click", () => showEvaluation(v.version));
          const acts = [view];
          if (asStaff && !v.champion) {
            const promote = el("button", { type: "button" }, "Promote");
            promote.addEventListener("click", async () => {
              try { await api(`${base}/models/${encodeURIComponent(v.version)}/promote`, { method: "POST", staff: true }); say(`${v.version} promoted`); route(); }
              catch (err) { status.append(alertBox(err)); }
            });
            acts.push(promote);
          }
          return el("div", { class: "actions" }, acts);
        } },
      ],
      rows: versions,
      empty: "No model trained yet.",
    }));
    const detail = el("div", {});
    main.append(detail);

    async function showEvaluation(version) {
      detail.textContent = "";
      let ev;
      try {
        ev = await api(`${base}/${asStaff ? "evaluation" : "models/evaluation"}?version=${encodeURIComponent(version)}`, { staff: asStaff });
      } catch (err) { detail.append(alertBox(err)); return; }
      detail.append(el("h2", {}, `Version ${ev.version}`));
      const rows = [];
      for (const [product, entry] of Object.entries(ev.products || {})) {
        if (entry.status !== "ok") { rows.push({ product, candidate: "–", error: entry.error }); continue; }
        for (const [name, c] of Object.entries(entry.candidates || {})) rows.push({ product, candidate: name, served: entry.served === name, ...c });
      }
      detail.append(table({
        caption: "Holdout figures per product and candidate",
        columns: [
          { label: "Product", render: (r) => r.product },
          { label: "Candidate", header: false, render: (r) => (r.served ? [r.candidate, " ", badge("served")] : r.error ? `not trained: ${r.error}` : r.candidate) },
          { label: "AUC", num: true, render: (r) => fixed(r.auc) },
          { label: "Capture@20%", num: true, render: (r) => pct(r.capture_at_20) },
          { label: "Log loss", num: true, render: (r) => fixed(r.log_loss) },
          { label: "Positives", num: true, render: (r) => num(r.positives) },
        ],
        rows,
      }));
      const gains = Object.entries(ev.gains || {}).filter(([, g]) => Object.keys(g.curves || {}).length);
      if (!gains.length) return;
      const chartBox = el("div", {});
      const pick = el("select", { id: "gains-product" }, gains.map(([p]) => el("option", { value: p }, p)));
      detail.append(el("div", { class: "card" }, field("Gains chart of product", pick)), chartBox);
      const draw = () => {
        chartBox.textContent = "";
        const g = Object.fromEntries(gains)[pick.value];
        const names = Object.keys(g.curves);
        const n = g.curves[names[0]].length;
        const xs = Array.from({ length: n }, (_, i) => (100 * i) / (n - 1));
        Charts.lines(chartBox, {
          title: `Cumulative gains: ${pick.value}`,
          description: `Share of the buyers found in the top k% of the scored list, per candidate; the served one is ${g.served}.`,
          xs, time: false, xLabel: "top % of the list", yLabel: "share of positives", yMax: 1,
          series: [
            ...names.map((name) => ({ label: name === g.served ? `${name} (served)` : name, values: g.curves[name], width: name === g.served ? 3 : 2 })),
            { label: "random", values: xs.map((x) => x / 100), colour: "#6b7585", dash: [6, 4], width: 1 },
          ],
        });
      };
      pick.addEventListener("change", draw);
      draw();
    }
    if (data.champion || versions.length) await showEvaluation(data.champion || versions[0].version);
  }

  function watchJob(jobId, box) {
    box.textContent = "";
    const bar = el("progress", { max: "100", "aria-label": "Training progress" });
    const text = el("p", { role: "status" }, `Job ${jobId}: queued`);
    box.append(text, bar);
    const tick = async () => {
      let job;
      try { job = await api(`/v1/staff/jobs/${encodeURIComponent(jobId)}`, { staff: true }); }
      catch (err) { clearInterval(timer); box.append(alertBox(err)); return; }
      const meta = job.meta || {};
      // meta.progress: {stage, done, total} ("training p7", 7, 20), see app.jobs.job_status.
      const p = meta.progress || null;
      if (p && p.total) bar.value = Math.round((100 * p.done) / p.total);
      text.textContent = `Job ${jobId}: ${job.status}${p && p.stage ? ` (${p.stage}: ${p.done} of ${p.total})` : ""}`;
      if (["finished", "failed", "stopped", "canceled"].includes(job.status)) {
        clearInterval(timer);
        bar.value = 100;
        const result = job.result || {};
        const promoted = result.registry && result.registry.promoted;
        text.textContent = job.status === "finished" && result.status !== "failed"
          ? `Job ${jobId} finished: version ${result.version || "?"}${promoted ? ", promoted" : ", not promoted"}.`
          : `Job ${jobId} failed: ${job.error || result.error || "see the worker log"}`;
        // Shown again above the page drawn anew with the new version in its table.
        flash = text.textContent;
        if (box.isConnected) route();
      }
    };
    const timer = setInterval(tick, 1500);
    timers.push(timer);
    tick();
  }

  // -- campaigns ---------------------------------------------------------------------------
  async function campaignsPage(main) {
    page(main, "Campaigns", "Offers to an audience with a control group; the report compares the treated with the control.");
    const [list, cat] = await Promise.all([api("/v1/admin/campaigns"), api("/v1/admin/catalog?limit=1000")]);
    const status = el("div", { "aria-live": "polite" });
    main.append(status);
    const report = el("div", {});
    const act = (c, what) => async () => {
      status.textContent = "";
      try { await api(`/v1/admin/campaigns/${encodeURIComponent(c.id)}/${what}`, { method: "POST" }); say(`${c.name}: ${what}`); route(); }
      catch (err) { status.append(alertBox(err)); }
    };
    main.append(table({
      caption: "Campaigns, highest priority first",
      columns: [
        { label: "Campaign", render: (c) => c.name },
        { label: "Status", render: (c) => badge(c.status) },
        { label: "Offer", render: (c) => (c.offer && (c.offer.product_id || (c.offer.content && c.offer.content.title))) || "–" },
        { label: "Control share", num: true, render: (c) => pct(c.control_share, 0) },
        { label: "Actions", header: false, render: (c) => {
          const acts = [];
          const show = el("button", { type: "button", class: "secondary" }, "Report");
          show.addEventListener("click", () => showReport(c));
          acts.push(show);
          if (c.status === "running") { const b = el("button", { type: "button", class: "secondary" }, "Pause"); b.addEventListener("click", act(c, "pause")); acts.push(b); }
          if (c.status === "paused") { const b = el("button", { type: "button", class: "secondary" }, "Resume"); b.addEventListener("click", act(c, "resume")); acts.push(b); }
          if (c.status !== "ended") { const b = el("button", { type: "button", class: "danger" }, "End"); b.addEventListener("click", act(c, "end")); acts.push(b); }
          return el("div", { class: "actions" }, acts);
        } },
      ],
      rows: list.campaigns,
      empty: "No campaign yet: create one below.",
    }), report);

    // create
    const name = el("input", { type: "text", id: "cmp-name", required: true, maxlength: "100" });
    const product = el("select", { id: "cmp-product", required: true }, cat.products.map((p) => el("option", { value: p.product_id }, `${p.name} (${p.product_id})`)));
    const visitors = el("select", { id: "cmp-visitors" }, ["all", "identified", "anonymous"].map((v) => el("option", { value: v }, v)));
    const control = el("input", { type: "number", id: "cmp-control", min: "0", max: "0.9", step: "0.05", value: "0.1" });
    const cost = el("input", { type: "number", id: "cmp-cost", min: "0", step: "0.01", value: "0" });
    const value = el("input", { type: "number", id: "cmp-value", min: "0", step: "0.01", placeholder: "none" });
    const out = el("div", { "aria-live": "polite" });
    const form = el("form", { class: "stack card", "aria-label": "Create a campaign" },
      field("Name", name), field("Offered product", product), field("Visitors", visitors),
      field("Control share", control, "Share of the audience kept as the control group (0 to 0.9)."),
      field("Cost per contact", cost), field("Value per conversion (optional)", value),
      el("div", {}, el("button", { type: "submit" }, "Create campaign")), out);
    main.append(el("h2", {}, "New campaign"), form);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      out.textContent = "";
      const body = {
        name: name.value.trim(),
        offer: { product_id: product.value },
        audience: { visitors: visitors.value },
        control_share: Number(control.value),
        cost_per_contact: Number(cost.value || 0),
      };
      if (value.value !== "") body.value_per_conversion = Number(value.value);
      try {
        const created = await api("/v1/admin/campaigns", { method: "POST", body });
        say(`Campaign ${created.name} created`);
        await route();
      } catch (err) { out.append(alertBox(err)); }
    });

    async function showReport(c) {
      report.textContent = "";
      let rep;
      try { rep = await api(`/v1/admin/campaigns/${encodeURIComponent(c.id)}/report`); }
      catch (err) { report.append(alertBox(err)); return; }
      report.append(el("h2", {}, `Report: ${rep.campaign}`));
      const groups = ["treated", "control"].map((g) => ({ group: g, ...rep[g] }));
      report.append(table({
        caption: "Per group",
        columns: [
          { label: "Group", render: (g) => g.group },
          { label: "People", num: true, render: (g) => num(g.people) },
          { label: "Impressions", num: true, render: (g) => num(g.impressions) },
          { label: "Clicks", num: true, render: (g) => num(g.clicks) },
          { label: "Conversions", num: true, render: (g) => num(g.conversions) },
          { label: "Conversion rate", num: true, render: (g) => pct(g.conversion_rate, 2) },
          { label: "Revenue", num: true, render: (g) => fixed(g.revenue, 2) },
        ],
        rows: groups,
      }));
      const u = rep.uplift || {};
      const ci = u.ci95 || [], fh = u.ci95_fixed_horizon || [], roiCi = u.roi_ci95 || [];
      const row = el("div", { class: "grid2" });
      report.append(row);
      Charts.intervals(row, {
        title: "Uplift in conversion rate",
        description: u.absolute === null || u.absolute === undefined ? "Not enough people in both groups yet." : `Treated minus control: ${pct(u.absolute, 2)}, 95% always-valid interval ${pct(ci[0], 2)} to ${pct(ci[1], 2)}.`,
        rows: [
          { label: "always-valid 95%", value: u.absolute, lo: ci[0], hi: ci[1] },
          { label: "fixed-horizon 95%", value: u.absolute, lo: fh[0], hi: fh[1], colour: "#6b7585" },
        ],
        format: (v) => (v * 100).toFixed(2), unit: " pts",
      });
      Charts.intervals(row, {
        title: "Return on investment",
        description: u.roi === null || u.roi === undefined ? "ROI needs a cost per contact and conversions." : `ROI ${fixed(u.roi, 2)}, interval ${fixed(roiCi[0], 2)} to ${fixed(roiCi[1], 2)}.`,
        rows: [{ label: "ROI", value: u.roi, lo: roiCi[0], hi: roiCi[1], colour: "#15803d" }],
        format: (v) => v.toFixed(2),
      });
      report.append(el("p", {}, `Incremental conversions ${fixed(u.incremental_conversions, 1)}, incremental revenue ${fixed(u.incremental_revenue, 2)}, cost ${fixed(u.cost, 2)}. ${u.significant ? "The uplift is significant." : "Not significant (yet)."}`));
      report.focus && say(`Report of ${rep.campaign} shown`);
    }
  }

  route();
})();
