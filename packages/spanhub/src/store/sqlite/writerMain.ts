import { parentPort, workerData } from "node:worker_threads";
import { openDatabase } from "./openDatabase.js";
import { SqliteWriter } from "./sqliteWriter.js";
import type { WriterRequest, WriterResponse } from "./writerThread.js";

/** The SQLite writer thread: owns the write connection and commits what the main thread sends. */
const { dbPath, durability } = workerData as { dbPath: string; durability: "full" | "normal" };
const db = openDatabase(dbPath, durability);
// The checkpoint thread keeps the WAL short; this only bounds it (256 MiB) should that thread fall behind.
db.pragma("wal_autocheckpoint = 65536");
const writer = new SqliteWriter(db);
const port = parentPort;
if (!port) throw new Error("writerMain runs only as a worker thread");

port.on("message", (request: WriterRequest) => {
  let response: WriterResponse;
  try {
    switch (request.type) {
      case "append":
        response = { id: request.id, ok: true, value: writer.append(request.submissions) };
        break;
      case "prune":
        response = { id: request.id, ok: true, value: writer.pruneBatches(request.before) };
        break;
      case "close":
        db.close();
        port.postMessage({ id: request.id, ok: true, value: null } satisfies WriterResponse);
        port.close();
        return;
    }
  } catch (error) {
    const failure = error as Error & { code?: string };
    response = { id: request.id, ok: false, message: failure.message, ...(failure.code ? { code: failure.code } : {}) };
  }
  port.postMessage(response);
});
