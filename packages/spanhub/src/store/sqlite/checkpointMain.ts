import { parentPort, workerData } from "node:worker_threads";
import { openDatabase } from "./openDatabase.js";

/**
 * The checkpoint thread: copies the WAL back into the database file, off the writer
 * thread, so a commit never waits for the database file's fsync. PASSIVE never blocks
 * the writer or readers.
 */
const { dbPath, durability, everyMs } = workerData as {
  dbPath: string;
  durability: "full" | "normal";
  everyMs: number;
};
const db = openDatabase(dbPath, durability);
const timer = setInterval(() => {
  try {
    db.pragma("wal_checkpoint(PASSIVE)");
  } catch {
    // Busy or locked: the next round tries again, and the writer's own fallback checkpoint bounds the WAL.
  }
}, everyMs);
parentPort?.on("message", () => {
  clearInterval(timer);
  db.close();
  parentPort?.close();
});
