// The queue: bounded, batched, kept in sessionStorage across page loads, flushed by beacon.
import assert from "node:assert/strict";
import { test } from "node:test";

import { FLUSH_DELAY_MS, MAX_BATCH } from "../src/transport.js";

const BOUND = 200; // the contract's queue bound
import { makeBrowser, start } from "./fake_browser.js";

const offline = () => {
  throw new TypeError("Failed to fetch");
};

test("events of one interaction go in one batch after a short delay", async () => {
  const b = makeBrowser();
  const { api } = start(b);
  const id = api.track("product_view", { product_id: "p1", placement: "sidebar" });
  api.track("add_to_cart", { product_id: "p1", quantity: 2 });
  assert.equal(b.fetches.length, 0);
  await b.clock.tick(FLUSH_DELAY_MS);
  assert.equal(b.fetches.length, 1);
  const { url, init } = b.fetches[0];
  assert.equal(url, "https://api.example/v1/collect");
  assert.equal(init.keepalive, true);
  assert.equal(init.credentials, "omit");
  assert.equal(typeof init.body, "string"); // text/plain: no CORS preflight
  const batch = JSON.parse(init.body);
  assert.equal(batch.site, "ow_site_test");
  assert.equal(batch.visitor, api.visitor);
  assert.equal(batch.dnt, false);
  assert.deepEqual(
    batch.events.map((e) => [e.type, e.product_id]),
    [
      ["product_view", "p1"],
      ["add_to_cart", "p1"],
    ],
  );
  assert.equal(batch.events[0].id, id);
  assert.equal(batch.events[0].placement, "sidebar");
  assert.match(id, /^[A-Za-z0-9._:-]{1,64}$/);
  assert.equal(b.w.sessionStorage.getItem("ow_q"), null, "answered events leave the queue");
});

test("a full batch goes at once, and batches hold at most MAX_BATCH events", async () => {
  const b = makeBrowser();
  const { api } = start(b);
  for (let i = 0; i < MAX_BATCH + 5; i++) api.track("page_view", { url: "https://shop.example/" + i });
  assert.equal(b.fetches.length, 1, "the 20th event sends without waiting");
  await b.clock.tick(FLUSH_DELAY_MS);
  assert.deepEqual(
    b.batches().map((x) => x.events.length),
    [MAX_BATCH, 5],
  );
});

test("the queue keeps the newest 200 events while the service is unreachable", async () => {
  const b = makeBrowser({ answer: offline });
  const { api, transport } = start(b);
  const ids = [];
  for (let i = 0; i < BOUND + 50; i++) ids.push(api.track("page_view", { url: "https://shop.example/" + i }));
  assert.equal(transport.size(), BOUND);
  const stored = JSON.parse(b.w.sessionStorage.getItem("ow_q"));
  assert.equal(stored.length, BOUND);
  assert.deepEqual(
    stored.map((x) => x.e.id),
    ids.slice(50),
    "the oldest are dropped",
  );
});

test("events queued on one page are sent from the next page of the tab", async () => {
  const first = makeBrowser({ answer: offline });
  const one = start(first);
  const ids = [
    one.api.track("product_view", { product_id: "p1" }),
    one.api.track("search", { query: "tent" }),
  ];
  await first.clock.tick(FLUSH_DELAY_MS); // fails: still queued
  assert.equal(first.batches().length, 1);

  const second = makeBrowser({ from: first }); // same tab, new page, service back
  const two = start(second);
  assert.equal(two.api.visitor, one.api.visitor, "the kept visitor id");
  await second.clock.tick(FLUSH_DELAY_MS);
  assert.deepEqual(
    second.events().map((e) => e.id),
    ids,
    "same ids: the service deduplicates a batch that did arrive",
  );
  assert.equal(second.batches()[0].visitor, one.api.visitor);
  assert.equal(second.w.sessionStorage.getItem("ow_q"), null);
});

test("a page left before its request was answered leaves the events for the next page", async () => {
  let answerLater;
  const first = makeBrowser({ answer: () => new Promise((resolve) => (answerLater = resolve)) });
  const one = start(first);
  const id = one.api.track("add_to_cart", { product_id: "p1" });
  await first.clock.tick(FLUSH_DELAY_MS);
  assert.ok(answerLater, "the request is in flight");
  const second = makeBrowser({ from: first });
  start(second);
  await second.clock.tick(FLUSH_DELAY_MS);
  assert.deepEqual(
    second.events().map((e) => e.id),
    [id],
  );
});

test("pagehide sends everything queued by sendBeacon, as a string (text/plain)", async () => {
  const b = makeBrowser();
  const { api, transport } = start(b);
  for (let i = 0; i < 25; i++) api.track("page_view", { url: "https://shop.example/" + i });
  await b.clock.tick(0);
  b.fetches.length = 0; // the full batch went by fetch; 5 wait for the timer
  transport.send(true);
  assert.equal(b.beacons.length, 1);
  assert.equal(b.beacons[0].url, "https://api.example/v1/collect");
  assert.equal(typeof b.beacons[0].body, "string");
  assert.equal(JSON.parse(b.beacons[0].body).events.length, 5);
  assert.equal(b.fetches.length, 0);
  assert.equal(transport.size(), 0, "the browser owns a beacon it accepted");
});

test("a refused beacon falls back to fetch with keepalive, and so does a browser without one", async () => {
  for (const sendBeacon of [() => false, undefined]) {
    const b = makeBrowser();
    b.n.sendBeacon = sendBeacon;
    const { api, transport } = start(b);
    api.track("product_view", { product_id: "p1" });
    transport.send(true);
    await b.clock.tick(0);
    assert.equal(b.fetches.length, 1);
    assert.equal(b.fetches[0].init.keepalive, true);
    assert.equal(transport.size(), 0);
  }
});

test("the page's own flush() sends now and the listeners of boot() send by beacon", async () => {
  const { boot } = await import("../src/offerwise.js");
  const b = makeBrowser();
  const script = b.d.createElement("script");
  script.setAttribute("src", "https://api.example/v1/snippet.js");
  script.setAttribute("data-site", "ow_site_test");
  b.d.body.appendChild(script);
  b.d.currentScript = script;
  const api = boot(b.w, b.d, b.n);
  assert.equal(b.w.offerwise, api);
  api.flush();
  await b.clock.tick(0);
  assert.deepEqual(
    b.events().map((e) => e.type),
    ["page_view"],
  );
  assert.equal(b.events()[0].url, "https://shop.example/tents?utm=x"); // the service cleans URLs
  api.track("product_view", { product_id: "p1" });
  b.d.visibilityState = "hidden";
  b.d.dispatchEvent({ type: "visibilitychange" });
  assert.equal(b.beacons.length, 1);
  api.track("add_to_cart", { product_id: "p1" });
  b.w.dispatchEvent({ type: "pagehide" });
  assert.equal(b.beacons.length, 2);
  assert.deepEqual(
    b.beacons.map((x) => JSON.parse(x.body).events[0].type),
    ["product_view", "add_to_cart"],
  );
});

test("a second copy of the snippet on the page keeps the first", async () => {
  const { boot } = await import("../src/offerwise.js");
  const b = makeBrowser();
  const script = b.d.createElement("script");
  script.setAttribute("data-site", "ow_site_test");
  script.setAttribute("data-endpoint", "https://api.example/");
  b.d.body.appendChild(script);
  const first = boot(b.w, b.d, b.n);
  assert.equal(boot(b.w, b.d, b.n), first);
  await b.clock.tick(FLUSH_DELAY_MS);
  assert.equal(b.events().filter((e) => e.type === "page_view").length, 1);
  assert.ok(b.fetches.every((f) => f.url.startsWith("https://api.example/v1/")));
});

test("calls queued before the script loaded are replayed, in order", async () => {
  const { boot } = await import("../src/offerwise.js");
  const b = makeBrowser();
  const script = b.d.createElement("script");
  script.setAttribute("data-site", "ow_site_test");
  script.setAttribute("data-endpoint", "https://api.example");
  b.d.body.appendChild(script);
  let given = null;
  b.w.offerwise = [["identify", "CRM-1"], ["track", "search", { query: "tent" }], (ow) => (given = ow)];
  const api = boot(b.w, b.d, b.n);
  assert.equal(given, api);
  api.push(["track", "product_view", { product_id: "p9" }]);
  await b.clock.tick(FLUSH_DELAY_MS);
  assert.deepEqual(
    b.events().map((e) => e.type),
    ["identify", "search", "page_view", "product_view"],
  );
  assert.equal(b.events()[0].customer_id, "CRM-1");
});

test("only plain values are sent: nothing nested, nothing that cannot be stored", async () => {
  const b = makeBrowser();
  const { api } = start(b);
  const loop = { product_id: "p1", price: 3.5, nested: {}, fn() {}, bad: NaN, skip: undefined };
  loop.self = loop;
  assert.ok(api.track("purchase", loop));
  await b.clock.tick(FLUSH_DELAY_MS);
  const [event] = b.events();
  assert.deepEqual(Object.keys(event).sort(), ["id", "price", "product_id", "ts", "type"]);
  assert.equal(event.ts, b.clock.now - FLUSH_DELAY_MS);
});
