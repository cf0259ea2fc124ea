import { existsSync } from "node:fs";
import { delimiter } from "node:path";
import { fileURLToPath } from "node:url";

/** The Python SDK in the monorepo (`sdks/python`), seen from `dist/src/runner/`. */
export const PYTHON_SDK_DIR = fileURLToPath(new URL("../../../../../sdks/python", import.meta.url));

/** What a traced child learns about its run. */
export interface RunContext {
  /** The per-run socket the child writes JSON lines to. */
  runSocket: string;
  runId: string;
  /** The root span: the parent of the child's top-level spans and of any sub-run it starts. */
  rootSpanId: string;
  /** The host's agent, for SDKs that talk to it directly (the Node SDK). */
  agentSocket: string;
}

/** With `--clean-env`, only these pass: the search path, home, locale, Python's path and spanhub's own. */
function keptInCleanEnv(name: string): boolean {
  return (
    name === "PATH" ||
    name === "HOME" ||
    name === "LANG" ||
    name.startsWith("LC_") ||
    name === "PYTHONPATH" ||
    name.startsWith("SPANHUB_")
  );
}

/**
 * The child's environment: ours (or its clean subset), the run's variables, unbuffered Python
 * output (so relayed lines and span times keep pace), and the Python SDK first on PYTHONPATH when
 * `pythonSdkDir` exists.
 */
export function childEnvironment(
  base: NodeJS.ProcessEnv,
  run: RunContext,
  options: { clean: boolean; pythonSdkDir?: string },
): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(base))
    if (value !== undefined && (!options.clean || keptInCleanEnv(name))) env[name] = value;
  env.SPANHUB_RUN_SOCKET = run.runSocket;
  env.SPANHUB_RUN_ID = run.runId;
  env.SPANHUB_PARENT_SPAN = run.rootSpanId;
  env.SPANHUB_SOCKET = run.agentSocket;
  env.PYTHONUNBUFFERED = "1";
  const sdk = options.pythonSdkDir ?? PYTHON_SDK_DIR;
  if (existsSync(sdk)) env.PYTHONPATH = env.PYTHONPATH ? `${sdk}${delimiter}${env.PYTHONPATH}` : sdk;
  return env;
}
