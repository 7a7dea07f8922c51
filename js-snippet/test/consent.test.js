// Consent, GPC and DNT: without consent no identifier leaves the page.
import assert from "node:assert/strict";
import { test } from "node:test";

import { FLUSH_DELAY_MS } from "../src/transport.js";
import { makeBrowser, start } from "./fake_browser.js";

const recommendQueries = (b) =>
  b.fetches.filter((f) => f.url.includes("/v1/recommend")).map((f) => new URL(f.url).searchParams);

// What leaves a page whose visitor said no (or whose browser did): events marked dnt with an id
// that lives for this page only, no login, offers asked for with dnt=true.
async function assertAnonymous(make, config = {}) {
  const first = make();
  const one = start(first, config);
  assert.equal(one.api.consent(), false);
  one.api.track("product_view", { product_id: "p1" });
  assert.equal(one.api.identify("CRM-1"), null, "a login is an identifier");
  await one.api.recommend({ placement: "sidebar", n: 2 });
  await first.clock.tick(FLUSH_DELAY_MS);
  const second = make(first);
  const two = start(second, config);
  two.api.track("page_view", {});
  await second.clock.tick(FLUSH_DELAY_MS);

  for (const b of [first, second]) {
    assert.equal(b.w.localStorage.getItem("ow_vid"), null, "no id kept");
    for (const batch of b.batches()) assert.equal(batch.dnt, true);
    assert.ok(!b.events().some((e) => e.type === "identify" || "customer_id" in e));
  }
  const v1 = first.batches()[0].visitor;
  const v2 = second.batches()[0].visitor;
  assert.notEqual(v1, v2, "a new id on every page: nothing links two pages");
  assert.deepEqual(
    first.events().map((e) => e.type),
    ["product_view"],
  );
  const [q] = recommendQueries(first);
  assert.equal(q.get("dnt"), "true");
  assert.equal(q.get("visitor"), v1);
  assert.equal(q.get("placement"), "sidebar");
  assert.equal(q.get("n"), "2");
  const zip = await two.api.zip("10001");
  assert.equal(zip.ok, false);
  assert.match(zip.reason, /consent/);
  assert.ok(!second.events().some((e) => e.type === "zip"));
}

test("Global Privacy Control means no consent, whatever the page says", async () => {
  const make = (from) => makeBrowser({ from, signals: { globalPrivacyControl: true } });
  await assertAnonymous(make);
  const b = make();
  const { api } = start(b);
  assert.equal(api.consent(true), false, "the page cannot overrule the browser");
});

test("Do-Not-Track means no consent", async () => {
  await assertAnonymous((from) => makeBrowser({ from, signals: { doNotTrack: "1" } }));
});

test("offerwise.consent(false) means no consent, on this page and the next", async () => {
  const make = (from) => {
    const b = makeBrowser({ from });
    if (!from) start(b).api.consent(false);
    return b;
  };
  await assertAnonymous(make);
});

test("with consent the id is kept in localStorage and never in a cookie", async () => {
  const b = makeBrowser();
  const { api } = start(b);
  assert.equal(api.consent(), true);
  api.identify("CRM-1");
  await api.recommend({ placement: "sidebar" });
  await b.clock.tick(FLUSH_DELAY_MS);
  const [batch] = b.batches();
  assert.equal(batch.dnt, false);
  assert.equal(batch.visitor, b.w.localStorage.getItem("ow_vid"));
  assert.equal(batch.events[0].customer_id, "CRM-1");
  const [q] = recommendQueries(b);
  assert.equal(q.get("visitor"), batch.visitor);
  assert.equal(q.get("dnt"), null);
  assert.equal(b.d.cookie, undefined, "the snippet never touched document.cookie");
});

test("withdrawing consent forgets the id, anonymises queued events and drops queued logins", async () => {
  const b = makeBrowser({ answer: () => new Promise(() => {}) }); // nothing answered yet
  const { api, transport } = start(b);
  const kept = api.visitor;
  api.track("page_view", {});
  api.identify("CRM-1");
  assert.equal(api.consent(false), false);
  assert.equal(b.w.localStorage.getItem("ow_vid"), null);
  assert.notEqual(api.visitor, kept);
  const queued = JSON.parse(b.w.sessionStorage.getItem("ow_q"));
  assert.deepEqual(
    queued.map((x) => [x.e.type, x.v]),
    [["page_view", ""]],
  );
  assert.equal(b.w.sessionStorage.getItem("ow_consent"), "0");
  transport.send(true);
  const beacon = JSON.parse(b.beacons[0].body);
  assert.equal(beacon.dnt, true);
  assert.notEqual(beacon.visitor, kept);
});

test('data-consent="required": events wait for the answer, and go with the id once given', async () => {
  const b = makeBrowser();
  const { api, transport } = start(b, { consent: "required" });
  api.track("page_view", {});
  api.identify("CRM-1");
  await b.clock.tick(FLUSH_DELAY_MS * 5);
  transport.send(true); // even a page being hidden sends nothing held
  assert.equal(b.batches().length, 0, "nothing left the page");
  assert.equal(b.w.localStorage.getItem("ow_vid"), null);
  assert.equal(transport.size(), 2);
  await api.recommend({ placement: "sidebar" });
  assert.equal(recommendQueries(b)[0].get("dnt"), "true", "contextual offers while waiting");

  assert.equal(api.consent(true), true);
  await b.clock.tick(FLUSH_DELAY_MS);
  const [batch] = b.batches();
  assert.equal(batch.dnt, false);
  assert.equal(batch.visitor, b.w.localStorage.getItem("ow_vid"));
  assert.deepEqual(
    batch.events.map((e) => e.type),
    ["page_view", "identify"],
  );
  assert.equal(b.w.sessionStorage.getItem("ow_consent"), "1");
});

test('data-consent="required" refused: held events go anonymously, logins never', async () => {
  const b = makeBrowser();
  const { api } = start(b, { consent: "required" });
  api.track("page_view", {});
  api.identify("CRM-1");
  api.consent(false);
  await b.clock.tick(FLUSH_DELAY_MS);
  const [batch] = b.batches();
  assert.equal(batch.dnt, true);
  assert.deepEqual(
    batch.events.map((e) => e.type),
    ["page_view"],
  );
});

test("a consent given on one page holds for the next page of the tab", async () => {
  const first = makeBrowser();
  start(first, { consent: "required" }).api.consent(true);
  const second = makeBrowser({ from: first });
  const { api } = start(second, { consent: "required" });
  assert.equal(api.consent(), true);
  api.track("page_view", {});
  await second.clock.tick(FLUSH_DELAY_MS);
  assert.equal(second.batches()[0].dnt, false);
});

test("events held on a page are sent from the next page once consent is given there", async () => {
  const first = makeBrowser();
  const held = start(first, { consent: "required" }).api.track("product_view", { product_id: "p1" });
  const second = makeBrowser({ from: first });
  const { api } = start(second, { consent: "required" });
  api.consent(true);
  await second.clock.tick(FLUSH_DELAY_MS);
  assert.deepEqual(
    second.events().map((e) => e.id),
    [held],
  );
});
