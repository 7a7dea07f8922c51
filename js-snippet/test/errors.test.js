// An error inside the snippet never reaches the page.
import assert from "node:assert/strict";
import { test } from "node:test";

import { boot } from "../src/offerwise.js";
import { FLUSH_DELAY_MS } from "../src/transport.js";
import { SEEN_MS } from "../src/widget.js";
import { makeBrowser, start } from "./fake_browser.js";

const boom = () => {
  throw new Error("boom");
};

function page(b) {
  const script = b.d.createElement("script");
  script.setAttribute("data-site", "ow_site_test");
  script.setAttribute("data-endpoint", "https://api.example");
  b.d.body.appendChild(script);
  const el = b.d.createElement("div");
  el.setAttribute("data-offerwise-placement", "sidebar");
  b.d.body.appendChild(el);
  return el;
}

// Runs `use` with unhandled rejections counted: a rejected promise nobody awaits is an error in
// the page's console too.
async function noUnhandled(use) {
  const seen = [];
  const onRejection = (reason) => seen.push(reason);
  process.on("unhandledRejection", onRejection);
  try {
    await use();
    await new Promise((resolve) => setTimeout(resolve, 20));
  } finally {
    process.off("unhandledRejection", onRejection);
  }
  assert.deepEqual(seen, []);
}

test("storage that throws on every access: the snippet works for the page only", async () => {
  await noUnhandled(async () => {
    const b = makeBrowser();
    Object.defineProperty(b.w, "sessionStorage", { get: boom });
    b.w.localStorage = { getItem: boom, setItem: boom, removeItem: boom };
    const { api } = start(b);
    api.track("page_view", {});
    api.consent(false);
    api.consent(true);
    await b.clock.tick(FLUSH_DELAY_MS);
    assert.equal(b.events().length, 1);
  });
});

test("a browser whose fetch, beacon, observer and events all throw", async () => {
  await noUnhandled(async () => {
    const b = makeBrowser();
    const el = page(b);
    b.w.fetch = boom;
    b.n.sendBeacon = boom;
    b.w.IntersectionObserver = boom;
    b.w.CustomEvent = boom;
    const api = boot(b.w, b.d, b.n);
    assert.ok(api);
    assert.deepEqual((await api.recommend({ placement: "sidebar" })).offers, []);
    assert.deepEqual((await api.render())[0].offers, []);
    api.track("product_view", { product_id: "p1" });
    api.flush();
    b.w.dispatchEvent({ type: "pagehide" });
    await b.clock.tick(FLUSH_DELAY_MS * 10);
    assert.equal(el.querySelectorAll(".offerwise-offer").length, 0);
  });
});

test("offers render and count even when the observer and events are broken", async () => {
  await noUnhandled(async () => {
    const b = makeBrowser();
    const el = page(b);
    b.w.IntersectionObserver = boom;
    b.w.CustomEvent = boom;
    const api = boot(b.w, b.d, b.n);
    await api.render();
    assert.equal(el.querySelectorAll(".offerwise-offer").length, 3);
    el.querySelectorAll(".offerwise-offer")[0].click();
    assert.ok(b.events().some((e) => e.type === "offer_click"));
    assert.ok(b.warnings.length, "the shop's developer is told in the console");
  });
});

test("a malformed answer or a queue someone else wrote does no harm", async () => {
  await noUnhandled(async () => {
    const b = makeBrowser({
      answer: () => ({ ok: true, status: 200, json: () => Promise.reject(new SyntaxError("x")) }),
    });
    b.w.sessionStorage.setItem("ow_q", "{not json");
    const el = page(b);
    const api = boot(b.w, b.d, b.n);
    const [answer] = await api.render();
    assert.deepEqual(answer.offers, []);
    assert.equal(el.querySelectorAll(".offerwise-offer").length, 0);
    await b.clock.tick(FLUSH_DELAY_MS);
    assert.equal(b.w.sessionStorage.getItem("ow_q"), null, "delivered, even if unreadable");

    const odd = makeBrowser({
      answer: () => ({
        ok: true,
        status: 200,
        json: () => Promise.resolve({ offers: [null, { name: "no id" }, 7] }),
      }),
    });
    odd.w.sessionStorage.setItem(
      "ow_q",
      JSON.stringify([null, 3, { e: {} }, { e: { id: "a", type: "page_view" }, v: "" }]),
    );
    const oddEl = page(odd);
    const oddApi = boot(odd.w, odd.d, odd.n);
    await oddApi.render();
    assert.equal(oddEl.querySelectorAll(".offerwise-offer").length, 0);
    await odd.clock.tick(FLUSH_DELAY_MS);
    assert.deepEqual(odd.events().map((e) => e.id)[0], "a");
  });
});

test("wrong calls from the page answer quietly", async () => {
  await noUnhandled(async () => {
    const b = makeBrowser();
    const { api } = start(b);
    assert.equal(api.track(), null);
    assert.equal(api.track(42, {}), null);
    assert.ok(api.track("page_view", null));
    assert.equal((await api.zip()).ok, false);
    assert.equal((await api.zip(null, "FR")).ok, false);
    api.push(["no_such_method"], null, 7, ["track"]);
    api.push(boom);
    assert.ok(b.warnings.length);
    await b.clock.tick(SEEN_MS);
  });
});

test("a script tag without data-site starts nothing and says why", () => {
  const b = makeBrowser();
  const script = b.d.createElement("script");
  b.d.body.appendChild(script);
  b.d.currentScript = script;
  assert.equal(boot(b.w, b.d, b.n), null);
  assert.equal(b.w.offerwise, undefined);
  assert.match(String(b.warnings[0][1]), /data-site/);
});
