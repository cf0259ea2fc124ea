/** The SDK's only output: one line on stderr per distinct problem, never an exception. */
const warned = new Set<string>();

export function warnOnce(key: string, message: string): void {
  if (warned.has(key)) return;
  warned.add(key);
  try {
    process.emitWarning(message, { type: "SpanhubWarning", code: "SPANHUB_SDK" });
  } catch {
    // Warnings are best effort.
  }
}
