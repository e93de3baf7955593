// Builds what the agent and the preview load for VideoJSON jobs, into dist/ (not committed):
//   dist/runtime.js   @videoflow/renderer-browser (and @videoflow/core) bundled by esbuild
//   dist/fonts.css    @font-face rules for Noto Sans, VideoFlow's default font
//   dist/fonts/*      the font files those rules name
// Run by `make setup` after `npm ci`. The page never reaches a font CDN: fonts come from here.
import { build } from "esbuild";
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, "dist");
const packageDir = (name) => join(here, "node_modules", name);
const version = (name) => JSON.parse(readFileSync(join(packageDir(name), "package.json"))).version;

// Font subsets bundled for the default font; text outside them falls back to system fonts.
// Every rule is embedded into each text layer's SVG while rasterizing, so keep this short.
const SUBSETS = ["latin", "latin-ext"];
// Asset paths as the shell page (index.html at the bundle root) sees them.
const ASSET_PREFIX = "videoflow";

rmSync(dist, { recursive: true, force: true });
mkdirSync(join(dist, "fonts"), { recursive: true });

await build({
  entryPoints: [join(here, "entry.js")],
  outfile: join(dist, "runtime.js"),
  bundle: true,
  format: "iife",
  platform: "browser",
  target: "chrome120",
  minify: true,
  legalComments: "eof",
  define: {
    __CORE_VERSION__: JSON.stringify(version("@videoflow/core")),
    __RENDERER_VERSION__: JSON.stringify(version("@videoflow/renderer-browser")),
  },
  logLevel: "warning",
});

const fontDir = packageDir("@fontsource-variable/noto-sans");
const rules = [];
for (const style of ["normal", "italic"]) {
  const css = readFileSync(join(fontDir, style === "normal" ? "wght.css" : "wght-italic.css"), "utf8");
  for (const block of css.split("@font-face").slice(1)) {
    const file = /url\(\.\/files\/([^)]+)\)/.exec(block)?.[1];
    if (!file || !SUBSETS.some((s) => file === `noto-sans-${s}-wght-${style}.woff2`)) continue;
    copyFileSync(join(fontDir, "files", file), join(dist, "fonts", file));
    const range = /unicode-range:\s*([^;]+);/.exec(block)?.[1];
    rules.push(
      `@font-face{font-family:"Noto Sans";font-style:${style};font-weight:100 900;` +
        `src:url("${ASSET_PREFIX}/fonts/${file}") format("woff2");unicode-range:${range};}`,
    );
  }
}
writeFileSync(join(dist, "fonts.css"), rules.join("\n") + "\n");
copyFileSync(join(fontDir, "LICENSE"), join(dist, "fonts", "LICENSE-noto-sans.txt"));
writeFileSync(
  join(dist, "versions.json"),
  JSON.stringify({
    "@videoflow/core": version("@videoflow/core"),
    "@videoflow/renderer-browser": version("@videoflow/renderer-browser"),
    "@fontsource-variable/noto-sans": version("@fontsource-variable/noto-sans"),
  }) + "\n",
);
console.log(`built ${dist}`);
