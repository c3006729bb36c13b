import { loadConfig } from '../config.js';
import { openDatabase } from '../db/database.js';
import type { Command } from './command.js';

export const dbUrlCommand: Command = {
  name: 'db url',
  usage: '',
  summary: 'print the database URL, with its password, for any PostgreSQL client',
  options: {},
  async run({ output }) {
    const config = loadConfig();
    if (config.databaseUrl) {
      output.line(config.databaseUrl);
      return;
    }
    const database = await openDatabase(config);
    try {
      output.line(database.url);
      if (database.server?.started) {
        output.warn('the embedded PostgreSQL runs only while a rulebook command does, e.g. `rulebook start`');
      }
    } finally {
      await database.close();
    }
  },
};
