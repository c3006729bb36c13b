import { loadConfig } from '../config.js';
import { openDatabase } from '../db/database.js';
import { runPsql } from '../psql.js';
import { parsePsqlCommands, runPsqlCommands } from '../psql-fallback.js';
import { ExitError, type Command } from './command.js';

export const psqlCommand: Command = {
  name: 'psql',
  usage: '[args]',
  summary: `run psql on the database (args go to psql, e.g. -c 'select 1'); without
the PostgreSQL client installed, -c statements (with -t, -A, -q) still
run through rulebook's own client; interactive psql needs the client
(Debian/Ubuntu: apt-get install postgresql-client)`,
  details: "Every argument but a first --help goes to psql as it is; psql's exit code is rulebook's.",
  options: {},
  passThrough: true,
  async run({ positionals }) {
    const database = await openDatabase(loadConfig());
    try {
      const result = await runPsql(database.url, [...positionals]);
      if (result !== 'not installed') return result;
      const commands = parsePsqlCommands([...positionals]);
      if (commands) return await runPsqlCommands(database.url, commands, process.stdout, process.stderr);
      throw new ExitError(
        'psql is not installed, and only -c statements run without it: install the PostgreSQL client (Debian/Ubuntu: apt-get install postgresql-client; ' +
          'macOS: brew install libpq), or connect any PostgreSQL client to the URL that `rulebook db url` prints',
        127,
      );
    } finally {
      await database.close();
    }
  },
};
