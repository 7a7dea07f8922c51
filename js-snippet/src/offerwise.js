/*! Offerwise snippet: clickstream beacons and offers, without cookies.
 *
 * <script src="https://offerwise.example/v1/snippet.js" data-site="ow_site_..." async></script>
 *
 * Privacy: no cookie is ever set. The visitor id is a random value in localStorage, and with
 * Do-Not-Track or Global Privacy Control it lives only for the page, so no profile can be built.
 */
(function (w, d) {
  "use strict";
  var script = d.currentScript || d.querySelector("script[data-site]");
  var site = script && script.getAttribute("data-site");
  if (!site) { return; }
  var endpoint = (script.getAttribute("data-endpoint") || script.src.replace(/\/v1\/snippet\.js.*$/, "")).replace(/\/$/, "");
  var MAX_BATCH = 20, FLUSH_MS = 2000;
  var optedOut = d.doNotTrack === "1" || w.doNotTrack === "1" || navigator.doNotTrack === "1" || navigator.globalPrivacyControl === true;

  function rid() {
    var a = new Uint8Array(12);
    (w.crypto || w.msCrypto).getRandomValues(a);
    return Array.prototype.map.call(a, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }
  function visitorId() {
    if (optedOut) { return rid(); }
    try {
      var v = w.localStorage.getItem("ow_vid");
      if (!v) { v = rid(); w.localStorage.setItem("ow_vid", v); }
      return v;
    } catch (e) { return rid(); }
  }
  var visitor = visitorId();
  var queue = [];
  var timer = null;
  var seq = 0;

  function flush() {
    if (timer) { clearTimeout(timer); timer = null; }
    while (queue.length) {
      var batch = queue.splice(0, MAX_BATCH);
      var body = JSON.stringify({ site: site, visitor: visitor, dnt: optedOut, events: batch });
      var url = endpoint + "/v1/collect";
      // text/plain keeps the request "simple": no CORS preflight, and sendBeacon survives unload.
      var sent = navigator.sendBeacon && navigator.sendBeacon(url, new Blob([body], { type: "text/plain" }));
      if (!sent) {
        w.fetch(url, { method: "POST", body: body, headers: { "Content-Type": "text/plain" }, keepalive: true, credentials: "omit" });
      }
    }
  }
  function track(type, props) {
    var e = { id: visitor.slice(0, 8) + "-" + Date.now().toString(36) + "-" + (seq++), type: type, ts: Date.now() };
    for (var k in props || {}) { if (Object.prototype.hasOwnProperty.call(props, k)) { e[k] = props[k]; } }
    queue.push(e);
    if (queue.length >= MAX_BATCH) { flush(); } else if (!timer) { timer = setTimeout(flush, FLUSH_MS); }
    return e.id;
  }
  function recommend(n, opts) {
    opts = opts || {};
    var q = "?site=" + encodeURIComponent(site) + "&visitor=" + encodeURIComponent(visitor) + "&n=" + (n || 3) + (optedOut ? "&dnt=true" : "");
    if (opts.exclude) { q += "&exclude=" + encodeURIComponent(opts.exclude.join(",")); }
    return w.fetch(endpoint + "/v1/recommend" + q, { credentials: "omit" }).then(function (r) { return r.json(); });
  }
  function render(el) {
    var n = parseInt(el.getAttribute("data-offerwise-count") || "3", 10);
    var placement = el.getAttribute("data-offerwise-placement");
    return recommend(n).then(function (res) {
      el.innerHTML = "";
      (res.offers || []).forEach(function (o) {
        var a = d.createElement("a");
        a.className = "offerwise-offer";
        a.href = o.url || "#";
        a.setAttribute("data-product-id", o.product_id);
        a.textContent = o.name;
        var why = d.createElement("small");
        why.textContent = " " + o.reason;
        a.appendChild(why);
        a.addEventListener("click", function () {
          track("offer_click", { product_id: o.product_id, token: o.token, placement: placement });
          flush();
        });
        el.appendChild(a);
        track("offer_impression", { product_id: o.product_id, token: o.token, placement: placement });
      });
      return res;
    });
  }
  function renderAll() {
    var els = d.querySelectorAll("[data-offerwise-placement]");
    return Promise.all(Array.prototype.map.call(els, render));
  }

  w.addEventListener("pagehide", flush);
  d.addEventListener("visibilitychange", function () { if (d.visibilityState === "hidden") { flush(); } });

  w.offerwise = {
    visitor: visitor,
    track: track,
    flush: flush,
    identify: function (customerId) { return track("identify", { customer_id: String(customerId) }); },
    zip: function (zip, country) { return track("zip", { zip: String(zip), country: country || "US" }); },
    recommend: recommend,
    render: renderAll,
  };
  track("page_view", { url: w.location.href, referrer: d.referrer || undefined });
  if (d.readyState === "loading") { d.addEventListener("DOMContentLoaded", renderAll); } else { renderAll(); }
})(window, document);
