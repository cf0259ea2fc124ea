/** This SDK's name and version, sent in `Register` (a test keeps it equal to package.json). */
export const SDK_NAME = "@spanhub/sdk";
export const SDK_VERSION = "0.1.0";
/**
 * The oldest spanhub agent this SDK is made for: it needs `batch_id` deduplication (0.1.0) and
 * spanhub's extensions to Scout commands (0.2.0). With an older agent it warns once and sends
 * plain Scout commands.
 */
export const MIN_AGENT_VERSION = "0.2.0";

/** Compares dotted numeric versions; non-numeric parts count as 0. */
export function compareVersions(a: string, b: string): number {
  const left = a.split(/[.+-]/).map((part) => Number.parseInt(part, 10) || 0);
  const right = b.split(/[.+-]/).map((part) => Number.parseInt(part, 10) || 0);
  for (let index = 0; index < 3; index++) {
    const difference = (left[index] ?? 0) - (right[index] ?? 0);
    if (difference !== 0) return Math.sign(difference);
  }
  return 0;
}
