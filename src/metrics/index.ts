export { Registry, Counter, Gauge, Histogram, CONTENT_TYPE, escapeLabelValue, formatValue } from './registry.js';
export type { Labels } from './registry.js';
export { createMetrics, nodescriptFailureReason, PROVISION_BUCKETS } from './pxeherd.js';
export type { PxeherdMetrics, MetricsSource } from './pxeherd.js';
