/** Small helpers every benchmark shares: progress lines on stderr (the table goes to stdout) and env settings. */
export function progress(line: string): void {
  process.stderr.write(`${line}\n`);
}

export function elapsed(since: number): string {
  return `${((performance.now() - since) / 1000).toFixed(1)} s`;
}

export function positive(name: string, fallback: number, zeroAllowed = false): number {
  const text = process.env[name];
  if (text === undefined || text === "") return fallback;
  const value = Number(text);
  if (!Number.isFinite(value) || value < 0 || (value === 0 && !zeroAllowed))
    throw new Error(`${name} must be a positive number, not "${text}"`);
  return value;
}
