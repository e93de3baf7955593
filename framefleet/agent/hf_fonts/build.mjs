// Copies the faces named in faces.json (the latin subset of each weight, as HyperFrames bundles
// them) from the @fontsource packages npm installed into dist/, with each package's licence.
// Run by `make setup` (scripts/build_npm.sh framefleet/agent/hf_fonts) after `npm ci`; dist/ is not committed.
import { copyFileSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, "dist");
const { faces } = JSON.parse(readFileSync(join(here, "faces.json"), "utf8"));
rmSync(dist, { recursive: true, force: true });
mkdirSync(dist, { recursive: true });
let copied = 0;
for (const [slug, face] of Object.entries(faces)) {
  const files = join(here, "node_modules", face.package, "files");
  for (const weight of face.weights) {
    const file = `${slug}-latin-${weight}-normal.woff2`;
    copyFileSync(join(files, file), join(dist, file));
    copied += 1;
  }
  copyFileSync(join(here, "node_modules", face.package, "LICENSE"), join(dist, `LICENSE-${slug}.txt`));
}
console.log(`hf_fonts: ${copied} faces in ${dist}`);
