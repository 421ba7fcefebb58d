export * from './inventory.js';
export { queryContextFor, nodeExtras, hardwareJson, healthJson, staleFor } from './context.js';
export { inventoryRouter, storeInventoryBackend, type InventoryBackend, type InventoryRouterOptions } from './http.js';
