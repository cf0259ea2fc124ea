import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

// Builds into the spanhub package (dist/ui), so the hub finds it in the repo and it ships with the package.
export default defineConfig({
  oxc: { jsx: { runtime: "automatic", importSource: "preact" } },
  build: {
    outDir: fileURLToPath(new URL("../spanhub/dist/ui", import.meta.url)),
    emptyOutDir: true,
    assetsDir: "assets",
    target: "es2022",
  },
});
