// Failed sends are retried with exponential backoff; refusals are not.
import assert from "node:assert/strict";
import { test } from "node:test";

import { FIRST_RETRY_MS, FLUSH_DELAY_MS, MAX_RETRY_MS } from "../src/transport.js";
import { makeBrowser, response, start } from "./fake_browser.js";

// A collect endpoint answering from a script: each item a status, "offline" or a response.
function scripted(script) {
  const calls = [];
  return {
    calls,
    answer: (url, init) => {
      const next = script.length ? script.shift() : 200;
      calls.push({ at: null, body: JSON.parse(init.body) });
      if (next === "offline") throw new TypeError("Failed to fetch");
      if (typeof next === "object") return next;
      return response(next, next === 200 ? { accepted: 1, duplicates: 0, rejected: [] } : { message: "no" });
    },
  };
}

// The times (ms after the first attempt) at which the snippet sent.
async function attemptTimes(b, until) {
  const times = [];
  let seen = 0;
  const start0 = b.clock.now;
  for (let t = 0; t <= until; t += 50) {
    if (b.fetches.length > seen) {
      seen = b.fetches.length;
      times.push(b.clock.now - start0);
    }
    await b.clock.tick(50);
  }
  return times;
}

test("network failures are retried with doubling delays, jitter inside [d/2, d], up to a cap", async () => {
  for (const [random, factor] of [
    [0, 0.5],
    [0.999, 1],
  ]) {
    const server = scripted(["offline", "offline", "offline", "offline", 200]);
    const b = makeBrowser({ answer: server.answer });
    const { api, transport } = start(b, {}, () => random);
    const id = api.track("product_view", { product_id: "p1" });
    await b.clock.tick(FLUSH_DELAY_MS - 50);
    const times = await attemptTimes(b, 20000);
    const gaps = times.slice(1).map((t, i) => t - times[i]);
    const expected = [1, 2, 4, 8].map((k) => k * FIRST_RETRY_MS * factor);
    gaps.forEach((gap, i) =>
      assert.ok(Math.abs(gap - expected[i]) <= 50, `gap ${i}: ${gap} vs ${expected[i]}`),
    );
    assert.equal(times.length, 5);
    assert.deepEqual(
      server.calls.map((c) => c.body.events[0].id),
      [id, id, id, id, id],
      "the same event id every time",
    );
    assert.equal(transport.size(), 0, "delivered at last");
  }
});

test("the backoff stops growing at MAX_RETRY_MS and resets after a success", async () => {
  const server = scripted(Array(12).fill(503));
  const b = makeBrowser({ answer: server.answer });
  const { api } = start(b, {}, () => 0.999);
  api.track("page_view", {});
  await b.clock.tick(FLUSH_DELAY_MS);
  let total = 0;
  for (let i = 0; i < 12; i++) total += Math.min(MAX_RETRY_MS, FIRST_RETRY_MS * 2 ** i);
  await b.clock.tick(total + 10);
  assert.equal(server.calls.length, 13, "12 failures, then delivered");
  // Backoff reset: the next event goes after the usual short delay.
  api.track("page_view", {});
  await b.clock.tick(FLUSH_DELAY_MS);
  assert.equal(server.calls.length, 14);
});

test("429 and 503 honour Retry-After when it says longer", async () => {
  for (const status of [429, 503]) {
    const server = scripted([response(status, {}, { "Retry-After": "7" }), 200]);
    const b = makeBrowser({ answer: server.answer });
    const { api } = start(b, {}, () => 0);
    api.track("page_view", {});
    await b.clock.tick(FLUSH_DELAY_MS);
    assert.equal(server.calls.length, 1);
    await b.clock.tick(6900);
    assert.equal(server.calls.length, 1, "not before Retry-After");
    await b.clock.tick(200);
    assert.equal(server.calls.length, 2);
  }
});

test("a refused batch (4xx) is dropped, not retried; later events still go", async () => {
  for (const status of [400, 401, 403, 413, 422]) {
    const server = scripted([status, 200]);
    const b = makeBrowser({ answer: server.answer });
    const { api, transport } = start(b);
    api.track("page_view", {});
    await b.clock.tick(FLUSH_DELAY_MS + 120000);
    assert.equal(server.calls.length, 1, `HTTP ${status} is not retried`);
    assert.equal(transport.size(), 0);
    assert.ok(b.warnings.length, "the shop's developer is told in the console");
    api.track("product_view", { product_id: "p1" });
    await b.clock.tick(FLUSH_DELAY_MS);
    assert.equal(server.calls.length, 2);
  }
});

test("an explicit flush() during backoff waits for it; pagehide does not", async () => {
  const server = scripted(["offline", 200, 200]);
  const b = makeBrowser({ answer: server.answer });
  const { api, transport } = start(b, {}, () => 0.999);
  api.track("page_view", {});
  await b.clock.tick(FLUSH_DELAY_MS);
  api.track("product_view", { product_id: "p1" });
  api.flush();
  await b.clock.tick(100);
  assert.equal(server.calls.length, 1, "still backing off");
  transport.send(true);
  assert.equal(b.beacons.length, 1);
  assert.equal(JSON.parse(b.beacons[0].body).events.length, 2);
  assert.equal(transport.size(), 0);
});

test("one request at a time: the next batch waits for the answer", async () => {
  let release;
  const b = makeBrowser({
    answer: (url, init) =>
      new Promise((resolve) => {
        release = () =>
          resolve(response(200, { accepted: JSON.parse(init.body).events.length, rejected: [] }));
      }),
  });
  const { api } = start(b);
  api.track("page_view", {});
  await b.clock.tick(FLUSH_DELAY_MS);
  api.track("product_view", { product_id: "p1" });
  await b.clock.tick(FLUSH_DELAY_MS * 3);
  assert.equal(b.fetches.length, 1);
  release();
  await b.clock.tick(10);
  assert.equal(b.fetches.length, 2);
  assert.deepEqual(
    b.events().map((e) => e.type),
    ["page_view", "product_view"],
  );
});
