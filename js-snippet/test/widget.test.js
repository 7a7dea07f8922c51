// The widget: offers rendered into placements, impressions only when really seen, clicks.
import assert from "node:assert/strict";
import { test } from "node:test";

import { FLUSH_DELAY_MS } from "../src/transport.js";
import { SEEN_MS } from "../src/widget.js";
import { FakeEvent, OFFERS, makeBrowser, response, start } from "./fake_browser.js";

function placement(b, name, attrs = {}) {
  const el = b.d.createElement("div");
  el.setAttribute("data-offerwise-placement", name);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  el.textContent = "Loading offers...";
  b.d.body.appendChild(el);
  return el;
}

const offersOf = (el) => el.querySelectorAll(".offerwise-offer");

test("render() fills every placement with links: image, name, price and reason", async () => {
  const b = makeBrowser();
  const side = placement(b, "sidebar", { "data-offerwise-count": "2", "data-offerwise-exclude": "p9,p8" });
  const foot = placement(b, "footer");
  const { api } = start(b);
  const told = [];
  b.d.addEventListener("offerwise:offers", (e) => told.push(e.detail));
  const answers = await api.render();
  assert.equal(answers.length, 2);
  const queries = b.fetches.map((f) => new URL(f.url).searchParams);
  assert.deepEqual(
    queries.map((q) => [q.get("placement"), q.get("n"), q.get("exclude"), q.get("site")]),
    [
      ["sidebar", "2", "p9,p8", "ow_site_test"],
      ["footer", "3", null, "ow_site_test"],
    ],
  );
  const [tent, stove, lamp] = offersOf(side);
  assert.equal(offersOf(side).length, 3);
  assert.equal(side.textContent.includes("Loading"), false, "the placeholder is replaced");
  assert.equal(tent.tagName, "A");
  assert.equal(tent.getAttribute("href"), "https://shop.example/p1");
  assert.equal(tent.getAttribute("data-product-id"), "p1");
  assert.equal(tent.querySelector("img").getAttribute("src"), "https://shop.example/p1.jpg");
  assert.equal(tent.querySelector("img").getAttribute("alt"), "", "decorative: the name follows");
  assert.equal(tent.querySelector(".offerwise-name").textContent, "Tent");
  assert.equal(tent.querySelector(".offerwise-price").textContent, "199.50");
  assert.equal(tent.querySelector(".offerwise-reason").textContent, "Popular near you");
  assert.equal(stove.querySelector("img"), null);
  assert.equal(lamp.getAttribute("href"), null, "a javascript: URL never reaches the page");
  assert.equal(lamp.querySelector("img"), null);
  assert.deepEqual(
    told.map((t) => [t.placement, t.offers.length]),
    [
      ["sidebar", 3],
      ["footer", 3],
    ],
  );
  await api.render("footer");
  assert.equal(b.fetches.length, 3, "render(name) asks for that placement only");
  assert.equal(offersOf(foot).length, 3, "a new render replaces the offers");
});

test("a page's template shapes each offer", async () => {
  const b = makeBrowser();
  const template = b.d.createElement("template");
  template.setAttribute("id", "card");
  const root = template.content.appendChild(b.d.createElement("a"));
  root.setAttribute("data-offerwise-field", "url");
  root.className = "card";
  for (const field of ["name", "price", "image"]) {
    const el = root.appendChild(b.d.createElement(field === "image" ? "img" : "b"));
    el.setAttribute("data-offerwise-field", field);
  }
  b.d.body.appendChild(template);
  const el = placement(b, "sidebar", { "data-offerwise-template": "#card" });
  const { api } = start(b, { currency: "USD" });
  await api.render();
  const first = offersOf(el)[0];
  assert.equal(first.className, "card offerwise-offer");
  assert.equal(first.getAttribute("href"), "https://shop.example/p1");
  assert.equal(first.querySelector("[data-offerwise-field=name]").textContent, "Tent");
  assert.equal(first.querySelector("[data-offerwise-field=price]").textContent, "$199.50");
  assert.equal(first.querySelector("img").getAttribute("src"), "https://shop.example/p1.jpg");
});

test("an impression counts after one second at least half in view, once per token", async () => {
  const b = makeBrowser();
  const el = placement(b, "sidebar");
  const { api } = start(b);
  await api.render();
  const [tent, stove, lamp] = offersOf(el);
  const impressions = () => b.events().filter((e) => e.type === "offer_impression");

  b.observers.show(tent, 0.4); // less than half: never
  b.observers.show(stove, 0.6); // half in view, but scrolled away before the second is over
  await b.clock.tick(SEEN_MS - 100);
  b.observers.show(stove, 0.2);
  b.observers.show(lamp, 1);
  await b.clock.tick(SEEN_MS + FLUSH_DELAY_MS);
  assert.deepEqual(
    impressions().map((e) => [e.product_id, e.token, e.placement]),
    [["p3", "tok-p3", "sidebar"]],
  );
  assert.equal(b.observers.watching(lamp), false, "counted: no longer watched");

  b.observers.show(stove, 0.5);
  await b.clock.tick(SEEN_MS + FLUSH_DELAY_MS);
  b.observers.show(stove, 0);
  b.observers.show(stove, 1);
  await b.clock.tick(SEEN_MS * 3 + FLUSH_DELAY_MS);
  assert.deepEqual(
    impressions().map((e) => e.product_id),
    ["p3", "p2"],
  );
  assert.deepEqual(b.observers.all[0].options.threshold, [0, 0.5]);
});

test("a hidden tab shows nothing: the impression waits for the page to be visible", async () => {
  const b = makeBrowser();
  const el = placement(b, "sidebar");
  const { api } = start(b);
  await api.render();
  const tent = offersOf(el)[0];
  b.observers.show(tent, 1);
  b.d.visibilityState = "hidden";
  await b.clock.tick(SEEN_MS * 5);
  assert.equal(b.events().filter((e) => e.type === "offer_impression").length, 0);
  b.d.visibilityState = "visible";
  await b.clock.tick(SEEN_MS + FLUSH_DELAY_MS);
  assert.equal(b.events().filter((e) => e.type === "offer_impression").length, 1);
});

test("offers replaced before they were seen count nothing", async () => {
  const b = makeBrowser();
  const el = placement(b, "sidebar");
  const { api } = start(b);
  await api.render();
  const tent = offersOf(el)[0];
  b.observers.show(tent, 1);
  await api.render();
  await b.clock.tick(SEEN_MS + FLUSH_DELAY_MS);
  assert.equal(b.events().filter((e) => e.type === "offer_impression").length, 0);
  assert.equal(b.observers.watching(tent), false);
});

test("a click counts once, with the token, and leaves at once by beacon", async () => {
  const b = makeBrowser();
  const el = placement(b, "sidebar");
  const { api } = start(b);
  await api.render();
  api.track("product_view", { product_id: "p7" });
  const stove = offersOf(el)[1];
  stove.click();
  assert.equal(b.beacons.length, 1, "no waiting: the link leaves the page");
  const sent = JSON.parse(b.beacons[0].body).events;
  assert.deepEqual(
    sent.map((e) => e.type),
    ["product_view", "offer_click"],
  );
  assert.deepEqual([sent[1].product_id, sent[1].token, sent[1].placement], ["p2", "tok-p2", "sidebar"]);
  stove.click();
  assert.equal(b.beacons.length, 1, "a second click of the same offer is no second response");
});

test("without IntersectionObserver no impression is guessed; clicks still count", async () => {
  const b = makeBrowser();
  delete b.w.IntersectionObserver;
  const el = placement(b, "sidebar");
  const { api } = start(b);
  await api.render();
  offersOf(el)[0].click();
  await b.clock.tick(SEEN_MS * 3);
  assert.deepEqual(
    b.events().map((e) => e.type),
    ["offer_click"],
  );
});

test("recommend() resolves with the answer, or with no offers when the service fails", async () => {
  const b = makeBrowser();
  const { api } = start(b);
  const answer = await api.recommend({ placement: "home", n: 4, exclude: ["p1", "bad id!"] });
  assert.equal(answer.offers.length, 3);
  const q = new URL(b.fetches[0].url).searchParams;
  assert.equal(q.get("exclude"), "p1", "ids the service would refuse are left out");
  const legacy = await api.recommend(2, { exclude: ["p2"] }); // the former signature
  assert.equal(legacy.source, "popularity");
  assert.equal(new URL(b.fetches[1].url).searchParams.get("n"), "2");

  for (const answerWith of [() => response(503, {}), () => Promise.reject(new TypeError("offline"))]) {
    const down = makeBrowser({ answer: answerWith });
    const el = placement(down, "sidebar");
    const failed = await start(down).api.recommend({ placement: "sidebar" });
    assert.deepEqual(failed.offers, []);
    assert.ok(failed.error);
    const [rendered] = await start(down).api.render();
    assert.deepEqual(rendered.offers, []);
    assert.equal(offersOf(el).length, 0);
  }
});

test("the ZIP prompt: a labelled field, a live status, offers refreshed on a good ZIP", async () => {
  const b = makeBrowser();
  const el = placement(b, "sidebar");
  const { api } = start(b, { zipPrompt: "sidebar" });
  await api.render();
  const form = el.querySelector("form.offerwise-zip");
  assert.ok(form, "rendered under the sidebar's offers");
  const input = form.querySelector("input");
  const label = form.querySelector("label");
  const status = form.querySelector("[role=status]");
  assert.equal(label.getAttribute("for"), input.id);
  assert.equal(input.getAttribute("autocomplete"), "postal-code");
  assert.equal(input.getAttribute("aria-describedby"), status.id);
  assert.equal(form.querySelector("button").type, "submit");

  const submit = async (value) => {
    input.value = value;
    const event = new FakeEvent("submit");
    form.dispatchEvent(event);
    assert.equal(event.defaultPrevented, true, "the shop page does not reload");
    await b.clock.tick(10);
  };
  await submit("12");
  assert.equal(input.getAttribute("aria-invalid"), "true");
  assert.match(status.textContent, /5-digit/);
  assert.ok(!b.events().some((e) => e.type === "zip"), "a malformed ZIP is not sent");

  const before = b.fetches.filter((f) => f.url.includes("/v1/recommend")).length;
  await submit(" 10001 ");
  const zip = b.events().find((e) => e.type === "zip");
  assert.deepEqual([zip.zip, zip.country], ["10001", "US"]);
  assert.equal(input.getAttribute("aria-invalid"), "false");
  assert.match(status.textContent, /10001/);
  assert.equal(
    b.fetches.filter((f) => f.url.includes("/v1/recommend")).length,
    before + 1,
    "offers refreshed",
  );
  await api.render();
  assert.equal(el.querySelectorAll("form").length, 1, "re-rendering keeps one form");
});

test("zip() reports what the collect answer says of the ZIP", async () => {
  const answers = [
    [{ accepted: 1, rejected: [] }, true],
    [{ accepted: 1, rejected: [], zip: { status: "not_found", reason: "unknown ZIP code" } }, false],
    [{ accepted: 0, rejected: [{ index: 0, id: null, field: "zip", reason: "bad" }] }, true],
  ];
  for (const [body, ok] of answers) {
    const b = makeBrowser({ answer: () => response(200, body) });
    const result = await start(b).api.zip("10001");
    assert.equal(result.ok, ok, JSON.stringify(body));
    if (!ok) assert.equal(result.reason, "unknown ZIP code");
  }
  const b = makeBrowser({ answer: (url, init) => response(200, rejectFirst(init)) });
  const result = await start(b).api.zip("99999");
  assert.deepEqual(result, { ok: false, reason: "zip: not a ZIP" });
});

function rejectFirst(init) {
  const [event] = JSON.parse(init.body).events;
  return { accepted: 0, rejected: [{ index: 0, id: event.id, field: "zip", reason: "not a ZIP" }] };
}
