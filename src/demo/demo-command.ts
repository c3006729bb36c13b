import type { Config } from '../config.js';
import { openDatabase } from '../db/database.js';
import { migrateDatabase } from '../db/migrate.js';
import { dropDemo, loadDemo, type DroppedDemo, type LoadedDemo } from './demo.js';
import { DEMO_SQL, DEMO_STATEMENTS } from './demo-sql.js';

export interface DemoOptions {
  /** Remove the demo instead of loading it. */
  readonly drop: boolean;
  /** Print the demo's SQL and touch nothing. */
  readonly printSql: boolean;
}

/** A statement as a person types it in a shell; the demo's SQL has no double quotes or dollars. */
export function psqlCommand(sql: string): string {
  return `npx rulebook psql -c "${sql}"`;
}

/** What `rulebook demo` tells a person after loading (or finding) the demo. */
export function loadedReport(demo: LoadedDemo, config: Pick<Config, 'port' | 'delivery'>): string[] {
  const page = `http://localhost:${config.port}/`;
  const lines = [
    demo.loaded
      ? 'rulebook: loaded the demo: demo_sales.orders, demo_inventory.items, five rules, a "demo warehouse" role'
      : 'rulebook: the demo is already loaded; nothing changed',
    '',
    `1. With \`npm start\` running, open ${page} and sign in as ${demo.staffEmail} with this token:`,
  ];
  if (demo.token) lines.push('', `   ${demo.token}`, '');
  else
    lines.push(
      `   (shown when the demo was loaded; for a new one: npx rulebook token create --user ${demo.staffEmail})`,
    );
  lines.push(
    '2. Place a big order. Stock is allocated, the lamp runs low (an alert), and the warehouse gets',
    '   an in-app notification:',
    `   ${psqlCommand(DEMO_STATEMENTS.placeOrder.sql)}`,
    '3. Ship an order and watch the alert arrive on the page:',
    `   ${psqlCommand(DEMO_STATEMENTS.shipOrder.sql)}`,
    '4. See what the allocation took, and which rules ran:',
    `   ${psqlCommand(DEMO_STATEMENTS.lookAtStock.sql)}`,
    `   ${psqlCommand(DEMO_STATEMENTS.lookAtRuns.sql)}`,
    '',
    `In-app notifications: curl -H "Authorization: Bearer ${demo.token ?? '<token>'}" ${page}api/notifications/mine`,
    config.delivery.smtpUrl
      ? 'No demo rule sends e-mail (its people have made-up addresses): notifications are in-app only.'
      : 'No demo rule sends e-mail (SMTP_URL is not set): notifications are in-app only.',
    'The rules, in SQL: npx rulebook demo --sql. Remove everything: npx rulebook demo --drop',
  );
  return lines;
}

function count(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}

export function droppedReport(dropped: DroppedDemo): string[] {
  if (!dropped.dropped) return ['rulebook: there is no demo to drop; nothing changed'];
  return [
    `rulebook: dropped the demo: ${count(dropped.rules, 'rule')}, ` +
      `${count(dropped.entities, 'entity', 'entities')} and their triggers, ${count(dropped.alerts, 'alert')}, ` +
      `${count(dropped.deliveries, 'delivery', 'deliveries')}, ${count(dropped.allocations, 'allocation')}, ` +
      `${count(dropped.users, 'user')} with their tokens, the schemas demo_sales and demo_inventory`,
  ];
}

/**
 * `rulebook demo`: in the configured database (migrated first, like `rulebook migrate`), loads the
 * demo and says what to try, or drops it. `print` receives one line at a time.
 */
export async function runDemo(
  options: DemoOptions,
  config: Config,
  print: (line: string) => void,
): Promise<void> {
  if (options.printSql) {
    print(DEMO_SQL.trimEnd());
    return;
  }
  const database = await openDatabase(config);
  try {
    await migrateDatabase(database.url);
    const lines = options.drop
      ? droppedReport(await dropDemo(database.url))
      : loadedReport(await loadDemo(database.url), config);
    for (const line of lines) print(line);
  } finally {
    await database.close();
  }
}
