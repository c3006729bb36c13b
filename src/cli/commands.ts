import type { Command } from './command.js';
import { cleanupCommand } from './cleanup-command.js';
import { dbUrlCommand } from './db-command.js';
import { deliveriesCommand, deliveriesRetryCommand } from './deliveries-command.js';
import { demoCommand } from './demo-command.js';
import { eventsListCommand, eventsRetryCommand, eventsShowCommand } from './events-command.js';
import { executionsCommand, executionsShowCommand } from './executions-command.js';
import { migrateCommand } from './migrate-command.js';
import { psqlCommand } from './psql-command.js';
import { roleAddCommand } from './role-command.js';
import { rulesListCommand, rulesShowCommand, rulesValidateCommand } from './rules-command.js';
import { startCommand } from './start-command.js';
import { statusCommand } from './status-command.js';
import { tokenCreateCommand, tokenListCommand, tokenRevokeCommand } from './token-command.js';
import { userAddCommand } from './user-command.js';

/** Every command, in the order `rulebook --help` lists them. */
export const COMMANDS: readonly Command[] = [
  startCommand,
  migrateCommand,
  statusCommand,
  rulesListCommand,
  rulesShowCommand,
  rulesValidateCommand,
  executionsCommand,
  executionsShowCommand,
  eventsListCommand,
  eventsShowCommand,
  eventsRetryCommand,
  deliveriesCommand,
  deliveriesRetryCommand,
  cleanupCommand,
  roleAddCommand,
  userAddCommand,
  tokenCreateCommand,
  tokenListCommand,
  tokenRevokeCommand,
  dbUrlCommand,
  psqlCommand,
  demoCommand,
];
