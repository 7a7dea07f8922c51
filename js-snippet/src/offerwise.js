// Offerwise snippet: clickstream beacons, consent and offers, without cookies.
// Embedded on a shop's pages:
//
//   <script src="https://offerwise.example/v1/snippet.js" data-site="ow_site_..." async></script>
//
// Script attributes: data-site (the site key, required), data-endpoint (the service's base URL;
// default: where the script came from), data-consent="required" (no identifier leaves the page
// until offerwise.consent(true)), data-zip-prompt="<placement>" (a ZIP form under that
// placement's offers), data-zip-label (its label), data-currency (ISO code for prices).
//
// window.offerwise:
//   track(type, props) -> event id          identify(customerId)
//   zip(code, country?) -> Promise {ok, reason}
//   consent(true|false) -> bool             consent() -> bool (may identifiers leave the page?)
//   recommend({placement, n, exclude}) -> Promise of the answer ({offers: []} on failure)
//   render(placement?) -> Promise           flush()          visitor (the id sent now)
// DOM event for the page: offerwise:offers (detail {placement, offers}) on a placement once
// rendered; it bubbles.
// A page may call it before the script loads: window.offerwise = window.offerwise || [];
// offerwise.push(["identify", "CRM-1"]) (or a function given the API); calls are replayed.
//
// Privacy: no cookie is ever set. The visitor id is a random value in localStorage, and only
// with consent (see consent.js); the browser's GPC and DNT signals refuse it.
//
// createOfferwise takes the window, document and navigator, so node's test runner can drive it
// with fakes; boot() wires it to the page. No call may throw into the page: every public
// function and event handler is guarded, and promises resolve rather than reject.

import { createConsent } from "./consent.js";
import { createTransport } from "./transport.js";
import { ID_PATTERN, guard, randomId, report, storage } from "./util.js";
import { createWidget } from "./widget.js";
import { createZipPrompt } from "./zip_prompt.js";

const US_ZIP = /^\d{5}(-\d{4})?$/;

export function createOfferwise({ w, d, n, config, random = Math.random }) {
  const session = storage(w, "sessionStorage");
  const consent = createConsent(w, n, session, storage(w, "localStorage"), config.consent === "required");
  const transport = createTransport({
    w,
    n,
    session,
    url: config.endpoint + "/v1/collect",
    site: config.site,
    consent,
    random,
  });
  transport.settle(); // events an earlier page held for a consent given or refused since
  const eventPrefix = randomId(w).slice(0, 10) + "-";
  let seq = 0;

  // The visitor the event goes with: the kept id, "" (anonymous), or undefined (held).
  function owner() {
    const state = consent.state();
    return state === "yes" ? consent.visitor() : state === "no" ? "" : undefined;
  }

  function track(type, props, onAnswer) {
    if (typeof type !== "string") return null;
    // Logging in is an identifier: it waits for consent, and without consent it never leaves.
    if (type === "identify" && consent.state() === "no") return null;
    const event = { id: eventPrefix + (seq++).toString(36), type, ts: w.Date.now() };
    // Only plain values: the wire format has no nested fields, and they keep the queue storable.
    Object.keys(props || {}).forEach((k) => {
      const v = props[k];
      const kind = typeof v;
      if (kind === "string" || kind === "boolean" || (kind === "number" && isFinite(v))) event[k] = v;
    });
    transport.push(event, owner(), onAnswer);
    return event.id;
  }

  function zip(code, country) {
    code = String(code == null ? "" : code).trim();
    country = String(country || "US").toUpperCase();
    const refuse = (reason) => Promise.resolve({ ok: false, reason });
    if (country === "US" ? !US_ZIP.test(code) : code.length < 2 || code.length > 16) {
      return refuse(country === "US" ? "Please enter a 5-digit ZIP code." : "Please enter a postal code.");
    }
    if (consent.state() !== "yes") {
      return refuse("Local offers need your consent to personalise; your ZIP was not sent.");
    }
    return new Promise((resolve) => {
      track("zip", { zip: code, country }, resolve);
      transport.send(false);
    });
  }

  function query(params) {
    return Object.keys(params)
      .filter((k) => params[k] !== undefined && params[k] !== "")
      .map((k) => encodeURIComponent(k) + "=" + encodeURIComponent(params[k]))
      .join("&");
  }

  // recommend({placement, n, exclude}); recommend(n, {exclude}) as older pages call it.
  function recommend(opts, legacy) {
    if (typeof opts === "number") opts = Object.assign({}, legacy, { n: opts });
    opts = opts || {};
    const anonymous = consent.state() !== "yes";
    const exclude = Array.isArray(opts.exclude)
      ? opts.exclude.filter((p) => ID_PATTERN.test(p)).join(",")
      : "";
    const url =
      config.endpoint +
      "/v1/recommend?" +
      query({
        site: config.site,
        visitor: consent.visitor(),
        n: opts.n || 3,
        placement: opts.placement,
        exclude,
        dnt: anonymous ? "true" : undefined,
      });
    const failed = (error) => ({ offers: [], source: "unavailable", error: String(error) });
    return new Promise((resolve) => resolve(w.fetch(url, { credentials: "omit" })))
      .then((res) => (res.ok ? res.json() : failed("HTTP " + res.status)))
      .catch(failed);
  }

  const widget = createWidget({
    w,
    d,
    recommend,
    track,
    flush: (beacon) => transport.send(beacon),
    currency: config.currency,
    extra: (el, placement) => {
      if (placement === config.zipPrompt) zipPrompt(el);
    },
  });
  const zipPrompt = createZipPrompt({
    w,
    d,
    zip: (code) => api.zip(code),
    onAccepted: () => api.render(),
    label: config.zipLabel,
  });

  const resolved = (value) => () => Promise.resolve(value);
  const api = {
    track: guard(
      w,
      (type, props) => track(type, props),
      () => null,
    ),
    identify: guard(
      w,
      (customerId) => track("identify", { customer_id: String(customerId) }),
      () => null,
    ),
    zip: guard(w, zip, resolved({ ok: false, reason: "Something went wrong; please try again." })),
    consent: guard(
      w,
      function (yes) {
        if (arguments.length && yes !== undefined) {
          consent.set(!!yes);
          transport.settle();
        }
        return consent.state() === "yes";
      },
      () => false,
    ),
    recommend: guard(w, recommend, resolved({ offers: [], source: "unavailable" })),
    render: guard(w, (placement) => widget.render(placement), resolved([])),
    flush: guard(w, () => transport.send(false)),
    // Calls queued before the script loaded keep working after it did.
    push: guard(w, function () {
      Array.prototype.forEach.call(arguments, (call) => replay(api, call));
    }),
  };
  Object.defineProperty(api, "visitor", { enumerable: true, get: () => consent.visitor() });
  return { api, transport, consent };
}

function replay(api, call) {
  if (typeof call === "function") call(api);
  else if (call && typeof api[call[0]] === "function")
    api[call[0]].apply(api, Array.prototype.slice.call(call, 1));
}

// The script's settings from its tag.
export function readConfig(script) {
  const attr = (name) => script.getAttribute(name) || undefined;
  const src = script.getAttribute("src") || "";
  return {
    site: attr("data-site"),
    endpoint: (attr("data-endpoint") || src.replace(/\/v1\/snippet\.js.*$/, "")).replace(/\/$/, ""),
    consent: attr("data-consent"),
    zipPrompt: attr("data-zip-prompt"),
    zipLabel: attr("data-zip-label"),
    currency: attr("data-currency"),
  };
}

// Start on a page: the API on window.offerwise, the queued calls, a page view, the offers, and
// the flushes when the page is hidden or left.
export function boot(w, d, n) {
  const previous = w.offerwise;
  if (previous && !Array.isArray(previous) && typeof previous.track === "function") return previous;
  const script = d.currentScript || d.querySelector("script[data-site]");
  const config = script && readConfig(script);
  if (!config || !config.site) {
    report(w, "no data-site attribute on the snippet's script tag: nothing is sent");
    return null;
  }
  const { api, transport } = createOfferwise({ w, d, n, config });
  w.offerwise = api;
  const leaving = guard(w, () => transport.send(true));
  w.addEventListener("pagehide", leaving);
  d.addEventListener("visibilitychange", () => {
    if (d.visibilityState === "hidden") leaving();
  });
  // Queued calls first: a consent answer given before the script loaded covers the page view.
  if (Array.isArray(previous)) previous.forEach((call) => api.push(call));
  api.track("page_view", { url: w.location.href, referrer: d.referrer || undefined });
  const start = () => api.render();
  if (d.readyState === "loading") d.addEventListener("DOMContentLoaded", start);
  else start();
  return api;
}
