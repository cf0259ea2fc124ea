#!/usr/bin/env node
// The installed command: a fixed entry point that exists before the TypeScript build.
import("../dist/src/cli/main.js").catch((error) => {
  if (error?.code !== "ERR_MODULE_NOT_FOUND") throw error;
  process.stderr.write("spanhub is not built yet: run `npm run build` in the repository root\n");
  process.exit(1);
});
