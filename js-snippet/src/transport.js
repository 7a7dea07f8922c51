// The event queue and its delivery to POST /v1/collect.
//
// Events wait in a bounded queue kept in sessionStorage, so a page that navigates away before
// a batch is answered sends it from the next page of the same site in that tab. The service
// deduplicates by event id (per visitor, for at least 48 h), so sending a batch twice is safe;
// losing one is not. Hence:
//   - an entry leaves the queue only once the service answered (or refused it for good), or
//     once the browser took it with sendBeacon;
//   - failures (network, 408, 429, 5xx) are retried with exponential backoff and jitter,
//     honouring Retry-After when the browser lets us read it;
//   - when the page is hidden or left, everything queued goes by sendBeacon as text/plain (no
//     CORS preflight, and the browser delivers it after the page is gone), or by fetch with
//     keepalive where the beacon is missing or refused (it has a 64 KB budget).
//
// Each entry is {e: event, v: visitor}: v is the kept visitor id the event was made under, ""
// for an anonymous event (sent with this page's memory-only id and dnt=true), and absent while
// consent is awaited (the entry is held). Batches never mix visitors.

import { report } from "./util.js";

const QUEUE_KEY = "ow_q";
export const MAX_QUEUE = 200; // oldest dropped past this: a tab offline for a long time
export const MAX_BATCH = 20;
const MAX_BODY_CHARS = 16000; // x 3 bytes per char at worst: under the 64 KB keepalive budget
export const FLUSH_DELAY_MS = 1000; // events of one interaction share a request
export const FIRST_RETRY_MS = 1000;
export const MAX_RETRY_MS = 60000;
const MAX_RETRY_AFTER_MS = 300000;

export function createTransport({ w, n, session, url, site, consent, random }) {
  const busy = new Set(); // entries in a request not answered yet
  const waiting = {}; // event id -> callback of the answer (offerwise.zip)
  let queue = load();
  let timer = null;
  let failures = 0;
  let notBefore = 0; // no request before this time (backoff)

  function now() {
    return w.Date.now();
  }

  function load() {
    try {
      const q = JSON.parse(session.get(QUEUE_KEY) || "[]");
      return Array.isArray(q) ? q.filter((x) => x && x.e && typeof x.e.type === "string") : [];
    } catch (e) {
      return [];
    }
  }

  function save() {
    if (queue.length) session.set(QUEUE_KEY, JSON.stringify(queue));
    else session.remove(QUEUE_KEY);
  }

  function answer(entry, result) {
    const cb = waiting[entry.e.id];
    if (cb) {
      delete waiting[entry.e.id];
      cb(result);
    }
  }

  function forget(entries, result) {
    queue = queue.filter((x) => entries.indexOf(x) < 0);
    entries.forEach((x) => {
      busy.delete(x);
      answer(x, result(x));
    });
    save();
  }

  function schedule(ms) {
    if (timer) return;
    timer = w.setTimeout(
      () => {
        timer = null;
        try {
          send(false);
        } catch (e) {
          report(w, e);
        }
      },
      Math.max(ms, notBefore - now()),
    );
  }

  // The next batch: up to MAX_BATCH entries of one visitor that are not held or in flight.
  function nextBatch() {
    let visitor = null;
    let size = 0;
    const entries = [];
    for (const x of queue) {
      if (busy.has(x) || x.v === undefined || (visitor !== null && x.v !== visitor)) continue;
      const chars = JSON.stringify(x.e).length;
      if (entries.length && size + chars > MAX_BODY_CHARS) break;
      visitor = x.v;
      size += chars;
      entries.push(x);
      if (entries.length === MAX_BATCH) break;
    }
    if (!entries.length) return null;
    const body = JSON.stringify({
      site,
      visitor: visitor || consent.pageId,
      dnt: !visitor,
      events: entries.map((x) => x.e),
    });
    return { entries, body };
  }

  function send(beacon) {
    if (timer) {
      w.clearTimeout(timer);
      timer = null;
    }
    if (beacon) {
      // The page is being hidden or left: hand everything to the browser now, backoff or not.
      for (let b = nextBatch(); b; b = nextBatch()) {
        let taken = false;
        try {
          taken = !!(n.sendBeacon && n.sendBeacon(url, b.body));
        } catch (e) {
          taken = false;
        }
        if (taken) forget(b.entries, () => ({ ok: true, reason: "sent" }));
        else post(b);
      }
      return;
    }
    if (busy.size) return; // one request at a time; its answer sends the next
    if (now() < notBefore) return schedule(0);
    const b = nextBatch();
    if (b) post(b);
  }

  function post(b) {
    b.entries.forEach((x) => busy.add(x));
    new Promise((resolve) => {
      resolve(w.fetch(url, { method: "POST", body: b.body, keepalive: true, credentials: "omit" }));
    })
      .then((res) => {
        if (res.ok) {
          return res.json().then(
            (a) => delivered(b, a || {}),
            () => delivered(b, {}),
          );
        }
        if (res.status === 408 || res.status === 429 || res.status >= 500) {
          return retry(b, retryAfterMs(res));
        }
        // Refused for good (a bad key, an origin not allowed, a malformed batch): sending it
        // again would be refused again.
        forget(b.entries, () => ({ ok: false, reason: "refused by the service (HTTP " + res.status + ")" }));
        report(w, "collect refused a batch: HTTP " + res.status);
        next();
      })
      .catch(() => retry(b, 0))
      .catch((e) => report(w, e));
  }

  function delivered(b, a) {
    failures = 0;
    notBefore = 0;
    const rejected = {};
    (a.rejected || []).forEach((r) => {
      if (r && r.id) rejected[r.id] = r;
    });
    forget(b.entries, (x) => {
      const r = rejected[x.e.id];
      if (r) return { ok: false, reason: r.field + ": " + r.reason };
      // A collect answer may judge a volunteered ZIP ({status, reason}); absent means accepted.
      const z = x.e.type === "zip" && a.zip;
      if (z && z.status && z.status !== "ok") return { ok: false, reason: z.reason || z.status };
      return { ok: true, reason: "" };
    });
    next();
  }

  function retry(b, hintMs) {
    b.entries.forEach((x) => busy.delete(x));
    failures++;
    const cap = Math.min(MAX_RETRY_MS, FIRST_RETRY_MS * Math.pow(2, failures - 1));
    // "Equal jitter": tabs that failed together do not retry together.
    const delay = Math.max(Math.min(hintMs, MAX_RETRY_AFTER_MS), cap / 2 + (random() * cap) / 2);
    notBefore = now() + delay;
    schedule(delay);
  }

  function next() {
    if (nextBatch()) schedule(0);
  }

  // Retry-After in seconds or as an HTTP date; 0 when absent or unreadable (a cross-origin
  // answer shows it only when the service exposes the header).
  function retryAfterMs(res) {
    let v = null;
    try {
      v = res.headers && res.headers.get("Retry-After");
    } catch (e) {
      v = null;
    }
    if (!v) return 0;
    const s = Number(v);
    if (!isNaN(s)) return s * 1000;
    const at = Date.parse(v);
    return isNaN(at) ? 0 : Math.max(0, at - now());
  }

  if (queue.length) schedule(FLUSH_DELAY_MS); // what an earlier page of the tab left

  return {
    // Queue an event; `onAnswer(result)` is told whether the service accepted it.
    push(event, visitor, onAnswer) {
      const entry = { e: event };
      if (visitor !== undefined) entry.v = visitor;
      if (onAnswer) waiting[event.id] = onAnswer;
      queue.push(entry);
      while (queue.length > MAX_QUEUE)
        forget([queue[0]], () => ({ ok: false, reason: "dropped: queue full" }));
      save();
      if (
        entry.v !== undefined &&
        queue.filter((x) => x.v !== undefined && !busy.has(x)).length >= MAX_BATCH
      ) {
        send(false);
      } else if (entry.v !== undefined) schedule(FLUSH_DELAY_MS);
    },
    send,
    // Consent was answered: held events go with the kept id, or anonymously; on a refusal no
    // identifier leaves the page: ids come off queued events and logins are dropped.
    settle() {
      const state = consent.state();
      if (state === "wait") return;
      const id = state === "yes" ? consent.visitor() : "";
      const logins = queue.filter((x) => state === "no" && x.e.type === "identify");
      forget(logins, () => ({ ok: false, reason: "no consent" }));
      queue.forEach((x) => {
        if (x.v === undefined || state === "no") x.v = id;
      });
      save();
      if (queue.length) schedule(0);
    },
    size() {
      return queue.length;
    },
  };
}
