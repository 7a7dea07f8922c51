// The built file, as served at /v1/snippet.js: small enough, and it boots in a page of its own.
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import vm from "node:vm";
import { gzipSync } from "node:zlib";

import { FLUSH_DELAY_MS } from "../src/transport.js";
import { makeBrowser } from "./fake_browser.js";

const DIST = fileURLToPath(new URL("../dist/offerwise.min.js", import.meta.url));
const MAX_GZIP_BYTES = 6 * 1024;

function built() {
  assert.ok(existsSync(DIST), `${DIST} is missing: run \`npm run build\` (or \`make snippet\`)`);
  return readFileSync(DIST);
}

test("the build is at most 6 KB minified and gzipped", () => {
  const size = gzipSync(built(), { level: 9 }).length;
  assert.ok(size <= MAX_GZIP_BYTES, `${size} bytes gzipped`);
});

test("the bundle boots from its script tag, sends, renders and reacts to pagehide", async () => {
  const b = makeBrowser();
  const script = b.d.createElement("script");
  script.setAttribute("src", "https://api.example/v1/snippet.js?v=1");
  script.setAttribute("data-site", "ow_site_test");
  b.d.body.appendChild(script);
  const el = b.d.createElement("div");
  el.setAttribute("data-offerwise-placement", "sidebar");
  b.d.body.appendChild(el);
  b.d.currentScript = script;
  b.w.offerwise = [["track", "product_view", { product_id: "p1" }]];
  vm.runInNewContext(built().toString(), { window: b.w, document: b.d, navigator: b.n });
  const api = b.w.offerwise;
  for (const name of ["track", "identify", "zip", "consent", "recommend", "render", "flush", "push"]) {
    assert.equal(typeof api[name], "function", name);
  }
  assert.match(api.visitor, /^[0-9a-f]{24}$/);
  await b.clock.tick(0);
  assert.equal(el.querySelectorAll(".offerwise-offer").length, 3);
  assert.ok(b.fetches[0].url.startsWith("https://api.example/v1/recommend?site=ow_site_test&visitor="));
  b.w.dispatchEvent({ type: "pagehide" });
  assert.deepEqual(
    b.events().map((e) => e.type),
    ["product_view", "page_view"],
  );
  await b.clock.tick(FLUSH_DELAY_MS);
  assert.equal(b.fetches.filter((f) => f.url.endsWith("/v1/collect")).length, 0, "all went by beacon");
});
