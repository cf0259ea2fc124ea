import Database from "better-sqlite3";

/** Opens the store's file with the settings every connection shares. */
export function openDatabase(path: string, durability: "full" | "normal"): Database.Database {
  const db = new Database(path);
  db.pragma("journal_mode = WAL");
  db.pragma(`synchronous = ${durability === "normal" ? "NORMAL" : "FULL"}`);
  db.pragma("busy_timeout = 10000");
  db.pragma("cache_size = -65536");
  return db;
}
