export { loadConfig, ConfigError, type Config } from './config.js';
export { migrateDatabase } from './db/migrate.js';
export { openDatabase, type Database } from './db/database.js';
export { cleanup, CleanupError, type CleanupOptions } from './operations/cleanup.js';
export { validateRules, type RuleProblem } from './operations/validate-rules.js';
