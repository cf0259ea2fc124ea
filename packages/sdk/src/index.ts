export type { EndOptions, Span, SpanOptions, Status } from "./records.js";
export type { DropReport } from "./sender.js";
export {
  createTracer,
  type RequestHandle,
  type RequestOptions,
  type StartSpanOptions,
  Tracer,
  type TracerOptions,
  type TracerStats,
} from "./tracer.js";
export { SDK_NAME, SDK_VERSION } from "./version.js";
