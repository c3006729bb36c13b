import { loadConfig } from '../config.js';
import { openDatabase } from '../db/database.js';
import { migrateDatabase } from '../db/migrate.js';
import type { Command } from './command.js';

export const migrateCommand: Command = {
  name: 'migrate',
  usage: '',
  summary: 'apply pending sql/ migrations to DATABASE_URL',
  details: 'Safe to run twice and concurrently: runs take turns under an advisory lock.',
  options: {},
  async run({ output }) {
    const database = await openDatabase(loadConfig());
    try {
      const applied = await migrateDatabase(database.url);
      output.line(
        applied.length === 0 ? 'rulebook: database is up to date' : `rulebook: applied ${applied.join(', ')}`,
      );
    } finally {
      await database.close();
    }
  },
};
