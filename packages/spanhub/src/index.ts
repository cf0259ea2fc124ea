export { requestFrame } from "./agent/agentClient.js";
export * from "./model/event.js";
export * from "./model/time.js";
export { encodeFrame, FrameReader } from "./protocols/framing.js";
export { type RunningSpanhub, type SpanhubOptions, startSpanhub } from "./runtime/startSpanhub.js";
export { createStore } from "./store/createStore.js";
export type * from "./store/records.js";
export type { Store, StoreConfig } from "./store/store.js";
