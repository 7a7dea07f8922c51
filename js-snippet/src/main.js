// The browser bundle's entry (built into dist/offerwise.min.js, served at /v1/snippet.js).
import { boot } from "./offerwise.js";

try {
  boot(window, document, navigator);
} catch (e) {
  // Never break the page that embeds us.
}
