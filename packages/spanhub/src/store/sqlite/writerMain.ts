import { parentPort, workerData } from "node:worker_threads";
import type { FoldMode } from "../store.js";
import { openDatabase } from "./openDatabase.js";
import { SqliteDigests } from "./sqliteDigests.js";
import { SqliteWriter } from "./sqliteWriter.js";
import type { WriterMessage, WriterRequest } from "./writerThread.js";

/**
 * The SQLite writer thread: owns the write connection, commits what the main thread sends,
 * and between commits folds the digests of runs whose log moved on.
 */
const { dbPath, durability, fold } = workerData as {
  dbPath: string;
  durability: "full" | "normal";
  fold: FoldMode;
};
/** Background fold: a short pause gathers events, and a slice stays small so appends wait little. */
const FOLD_DELAY_MS = 50;
/** With nothing to fold, look again this often: other processes (an agent on `--fold off`) append too. */
const FOLD_IDLE_MS = 500;
const FOLD_RUNS_PER_SLICE = 32;
const FOLD_EVENTS_PER_RUN = 2000;
const RECOMPUTE_RUNS_PER_SLICE = 4;

const db = openDatabase(dbPath, durability);
// The checkpoint thread keeps the WAL short; this only bounds it (256 MiB) should that thread fall behind.
db.pragma("wal_autocheckpoint = 65536");
const port = parentPort;
if (!port) throw new Error("writerMain runs only as a worker thread");
const reportFoldError = (error: Error) =>
  port.postMessage({ id: 0, ok: false, message: error.message, background: true } satisfies WriterMessage);
const digests = new SqliteDigests(db);
const writer = new SqliteWriter(db, fold === "off" ? undefined : digests, reportFoldError);

let foldTimer: NodeJS.Timeout | undefined;
function scheduleFold(delayMs = FOLD_DELAY_MS): void {
  if (fold === "all") foldTimer ??= setTimeout(foldSlice, delayMs);
}

/** Ingest never waits on a fold: a slice runs between appends, and its failure is only reported. */
function foldSlice(): void {
  foldTimer = undefined;
  try {
    const folded = digests.foldDirty(FOLD_RUNS_PER_SLICE, FOLD_EVENTS_PER_RUN, reportFoldError);
    const recomputed = digests.recomputeOld(RECOMPUTE_RUNS_PER_SLICE);
    scheduleFold(folded > 0 || recomputed > 0 ? 0 : FOLD_IDLE_MS);
  } catch (error) {
    reportFoldError(error as Error);
    scheduleFold(1000);
  }
}
scheduleFold(0);

port.on("message", (request: WriterRequest) => {
  let response: WriterMessage;
  try {
    switch (request.type) {
      case "append":
        response = { id: request.id, ok: true, value: writer.append(request.submissions) };
        scheduleFold();
        break;
      case "catchUp":
        response = { id: request.id, ok: true, value: digests.catchUp(request.rid) };
        break;
      case "prune":
        response = { id: request.id, ok: true, value: writer.pruneBatches(request.before) };
        break;
      case "close":
        clearTimeout(foldTimer);
        db.close();
        port.postMessage({ id: request.id, ok: true, value: null } satisfies WriterMessage);
        port.close();
        return;
    }
  } catch (error) {
    const failure = error as Error & { code?: string };
    response = { id: request.id, ok: false, message: failure.message, ...(failure.code ? { code: failure.code } : {}) };
  }
  port.postMessage(response);
});
