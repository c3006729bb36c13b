import { loadConfig } from '../config.js';
import { runDemo } from '../demo/demo-command.js';
import { UsageError, flag, type Command } from './command.js';

export const demoCommand: Command = {
  name: 'demo',
  usage: '[--drop | --sql]',
  summary: `load a small shop (demo_sales, demo_inventory), five example rules and a
staff user with a token, and print what to try; --drop removes it all,
--sql prints the demo's SQL`,
  options: {
    drop: { type: 'boolean', help: 'remove the demo: its schemas, rules, role, user and tokens' },
    sql: { type: 'boolean', help: "print the demo's SQL and change nothing" },
  },
  async run({ values, output }) {
    const drop = flag(values, 'drop');
    const printSql = flag(values, 'sql');
    if (drop && printSql) throw new UsageError('demo takes --drop or --sql, not both');
    await runDemo({ drop, printSql }, loadConfig(), (line) => output.line(line));
  },
};
