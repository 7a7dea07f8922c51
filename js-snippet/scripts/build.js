// Builds dist/offerwise.min.js (served at /v1/snippet.js) from src/ and checks its size:
// the issue promises shops at most 6 KB minified and gzipped, so a bigger build fails.
// Usage: node scripts/build.js [--out FILE]
import { build } from "esbuild";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

export const MAX_GZIP_BYTES = 6 * 1024;
const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const args = process.argv.slice(2);
const out = args[0] === "--out" ? resolve(args[1]) : join(root, "dist", "offerwise.min.js");
const version = JSON.parse(readFileSync(join(root, "package.json"), "utf8")).version;

const result = await build({
  entryPoints: [join(root, "src", "main.js")],
  bundle: true,
  minify: true,
  format: "iife",
  // Browsers of the last years; older syntax would cost bytes for nobody.
  target: ["es2017"],
  legalComments: "none",
  banner: { js: `/*! Offerwise snippet ${version} | source: js-snippet/src */` },
  write: false,
  logLevel: "warning",
});
const code = result.outputFiles[0].contents;
const gzipped = gzipSync(code, { level: 9 }).length;
if (gzipped > MAX_GZIP_BYTES) {
  console.error(
    `snippet too large: ${gzipped} bytes gzipped (${code.length} minified), the limit is ${MAX_GZIP_BYTES}`,
  );
  process.exit(1);
}
mkdirSync(dirname(out), { recursive: true });
// Written only when it passed the size check, so a stale-but-valid file is never replaced by a
// too-large one that make would then consider up to date.
writeFileSync(out, code);
console.log(`${out}: ${code.length} bytes minified, ${gzipped} gzipped (limit ${MAX_GZIP_BYTES})`);
