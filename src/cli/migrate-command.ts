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
      // What the migrations say goes to stderr as it comes: a non-superuser install learns there
      // what it lacks (docs/privileges.md), and stdout keeps the one line that scripts read.
      const applied = await migrateDatabase(database.url, {
        onNotice: (message) => output.warn(message.replace(/^rulebook: /, '')),
      });
      output.line(
        applied.length === 0 ? 'rulebook: database is up to date' : `rulebook: applied ${applied.join(', ')}`,
      );
    } finally {
      await database.close();
    }
  },
};
