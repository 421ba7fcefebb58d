export { createAdminApp } from './app.js';
export type { AdminApp } from './app.js';
export type { AdminDeps, ScriptsApi, ExplainOptions } from './deps.js';
export { ensureAdminTokens, adminLink, newToken, ADMIN_TOKEN_FILE, READONLY_TOKEN_FILE } from './tokens.js';
export type { AdminTokens } from './tokens.js';
export { AdminAuth, SESSION_COOKIE } from './auth.js';
export { buildTimeline, summarize } from './timeline.js';
