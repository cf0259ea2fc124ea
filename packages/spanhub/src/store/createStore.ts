import { SqliteStore } from "./sqlite/sqliteStore.js";
import type { Store, StoreConfig } from "./store.js";

/** Builds the engine the configuration names. */
export function createStore(config: StoreConfig): Store {
  const engine = config.engine ?? "sqlite";
  switch (engine) {
    case "sqlite":
      return new SqliteStore(config);
    default:
      throw new Error(`unknown store engine "${engine}" (known: sqlite)`);
  }
}
