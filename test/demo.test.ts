import fs from 'node:fs';
import path from 'node:path';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dropDemo, loadDemo, type LoadedDemo } from '../src/demo/demo.js';
import { psqlCommand } from '../src/demo/demo-command.js';
import { DEMO_RULES, DEMO_STAFF, DEMO_STATEMENTS } from '../src/demo/demo-sql.js';
import type { Engine } from '../src/engine/engine.js';
import type { HttpServer } from '../src/http/server.js';
import { packageRoot } from '../src/package-root.js';
import { launchChromium } from './support/browser.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { ensureCliBuilt, spawnRulebook } from './support/daemon-process.js';
import { startEngine } from './support/engine.js';
import { freePort } from './support/free-port.js';
import { startHttp } from './support/staff.js';
import { waitFor } from './support/wait.js';

// A newcomer's tour, as README.md tells it: load the demo, sign in on the staff page with the
// token it printed, run the statements it printed, and see what the demo promises happen: an
// allocation, a low-stock alert it causes, an in-app notification, a shipped alert arriving live.

let db: TestDatabase;
let engine: Engine;
let server: HttpServer;
let base: string;
let browser: Browser | undefined;
let demo: LoadedDemo;
let before: Record<string, number>;

/** Row counts of everything the demo may touch, and whether its schemas exist. */
async function snapshot(target: TestDatabase = db): Promise<Record<string, number>> {
  const tables = [
    'core.users',
    'core.roles',
    'core.user_roles',
    'core.api_tokens',
    'workflow.entities',
    'workflow.automation_rules',
    'workflow.rule_actions',
    'workflow.automation_executions',
    'workflow.alerts',
    'workflow.alert_recipients',
    'workflow.alert_acknowledgments',
    'workflow.notification_deliveries',
    'workflow.notification_payloads',
    'workflow.allocation_results',
    'workflow.events',
    'workflow.schedule_runs',
  ];
  const counts: Record<string, number> = {};
  for (const table of tables) {
    const [row] = await target.query<{ count: number }>(`select count(*)::int as count from ${table}`);
    counts[table] = row!.count;
  }
  const [schemas] = await target.query<{ count: number }>(
    `select count(*)::int as count from pg_namespace where nspname in ('demo_sales', 'demo_inventory')`,
  );
  counts.schemas = schemas!.count;
  const [triggers] = await target.query<{ count: number }>(
    `select count(*)::int as count from pg_trigger where tgname like 'rulebook_capture%'`,
  );
  counts.triggers = triggers!.count;
  const [functions] = await target.query<{ count: number }>(
    `select count(*)::int as count from pg_proc p join pg_namespace n on n.oid = p.pronamespace
      where n.nspname = 'workflow' and p.proname like 'capture\\_%'`,
  );
  counts.captureFunctions = functions!.count;
  return counts;
}

async function api(path: string, token: string): Promise<Record<string, unknown>> {
  const response = await fetch(`${base}${path}`, { headers: { authorization: `Bearer ${token}` } });
  expect(response.status).toBe(200);
  return (await response.json()) as Record<string, unknown>;
}

async function ruleId(name: string): Promise<string> {
  const [row] = await db.query<{ id: string }>('select id from workflow.automation_rules where name = $1', [
    name,
  ]);
  return row!.id;
}

beforeAll(async () => {
  ensureCliBuilt();
  db = await createTestDatabase();
  before = await snapshot();
  demo = await loadDemo(db.url);
  engine = await startEngine(db);
  ({ server, base } = await startHttp(db, { engine }));
});

afterAll(async () => {
  await browser?.close();
  await server?.stop();
  await engine?.stop();
  await db?.drop();
});

describe('rulebook demo', () => {
  it('loads a shop, five rules and a staff user whose token signs in', async () => {
    expect(demo.loaded).toBe(true);
    expect(demo.token).toMatch(/^rbk_[A-Za-z0-9_-]{43}$/);
    const rules = await db.query<{ name: string; trigger: string; entity: string }>(
      `select r.name, t.name as trigger, e.schema_name || '.' || e.name as entity
         from workflow.automation_rules r
         join workflow.trigger_types t on t.id = r.trigger_type_id
         join workflow.entities e on e.id = r.entity_id
        order by r.name`,
    );
    expect(rules).toEqual([
      { name: DEMO_RULES.allocate, trigger: 'on_create', entity: 'demo_sales.orders' },
      { name: DEMO_RULES.summary, trigger: 'scheduled', entity: 'demo_sales.order_summary' },
      { name: DEMO_RULES.lowStock, trigger: 'on_update', entity: 'demo_inventory.items' },
      { name: DEMO_RULES.shipped, trigger: 'on_update', entity: 'demo_sales.orders' },
      { name: DEMO_RULES.bigOrder, trigger: 'on_create', entity: 'demo_sales.orders' },
    ]);
    const me = await api('/api/me', demo.token!);
    expect(me).toMatchObject({ email: DEMO_STAFF.email, roles: ['demo warehouse'] });
  });

  it('the documented order allocates stock, which raises a low-stock alert, and notifies in the app', async () => {
    await db.query(DEMO_STATEMENTS.placeOrder.sql);

    const allocation = await waitFor('the allocation', async () => {
      const rows = await db.query<{ data: Record<string, unknown> }>(
        `select allocation_data as data from workflow.allocation_results
          where allocation_data -> 'source' ->> 'entity' = 'demo_sales.orders'`,
      );
      return rows[0];
    });
    expect(allocation.data).toMatchObject({
      status: 'success',
      requested: [{ product: 'LAMP-OAK', quantity: 8 }],
      totals: { allocated: 8, short: 0 },
    });
    const stock = await db.query(DEMO_STATEMENTS.lookAtStock.sql);
    expect(stock).toContainEqual({
      sku: 'LAMP-OAK',
      on_hand: 14,
      allocated: 10,
      available: 4,
      needs_reorder: true,
    });

    // The chain: the allocation's update of demo_inventory.items is an event of its own.
    const lowStock = await waitFor('the low-stock alert', async () => {
      const rows = await db.query<{ title: string; message: string; severity: string; role: string }>(
        `select a.title, a.message, a.severity, r.name as role
           from workflow.alerts a
           join workflow.alert_recipients ar on ar.alert_id = a.id and ar.recipient_type = 'role'
           join core.roles r on r.id = ar.recipient_id
          where a.alert_type = 'demo_low_stock'`,
      );
      return rows.length > 0 && rows;
    });
    expect(lowStock).toEqual([
      {
        title: 'Low stock: Oak desk lamp (LAMP-OAK)',
        message: 'Only 4 left to sell; the reorder level is 5.',
        severity: 'high',
        role: 'demo warehouse',
      },
    ]);
    const chained = await db.query(
      `select trigger_data ->> 'entity' as entity, (trigger_data ->> 'depth')::int as depth
         from workflow.automation_executions where automation_rules_id = $1`,
      [await ruleId(DEMO_RULES.lowStock)],
    );
    expect(chained).toEqual([{ entity: 'demo_inventory.items', depth: 1 }]);

    // The big-order notification, in Sam's in-app inbox (what the printed curl shows).
    const inbox = await waitFor('the in-app notification', async () => {
      const body = await api('/api/notifications/mine', demo.token!);
      const notifications = body.notifications as { title: string; body: string; channel?: string }[];
      return notifications.length > 0 && notifications;
    });
    expect(inbox).toEqual([
      expect.objectContaining({ title: 'Big order SO-1004 from Globex', body: '8 x LAMP-OAK, 1240 EUR' }),
    ]);
    const runs = await db.query<{ name: string; status: string }>(DEMO_STATEMENTS.lookAtRuns.sql);
    expect(runs.map(({ name, status }) => ({ name, status }))).toEqual([
      expect.objectContaining({ status: 'success' }),
      expect.objectContaining({ status: 'success' }),
      { name: DEMO_RULES.lowStock, status: 'success' },
    ]);
    expect(runs.slice(0, 2).map((run) => run.name)).toEqual(
      expect.arrayContaining([DEMO_RULES.allocate, DEMO_RULES.bigOrder]),
    );
  });

  it('the daily summary notes where the figures are', async () => {
    await db.query(`select workflow.fire_scheduled_rule($1, '2026-12-02T07:00:00Z')`, [
      await ruleId(DEMO_RULES.summary),
    ]);
    const inbox = await waitFor('the summary', async () => {
      const body = await api('/api/notifications/mine', demo.token!);
      const notifications = body.notifications as { title: string; body: string }[];
      return notifications.find((n) => n.title.startsWith('Orders summary')) && notifications;
    });
    expect(inbox).toContainEqual(
      expect.objectContaining({
        title: 'Orders summary for 2026-12-02',
        body: 'The figures: select * from demo_sales.order_summary;',
      }),
    );
    const summary = await db.query(`select * from demo_sales.order_summary order by status`);
    expect(summary.map((row) => row.status)).toEqual(['packed', 'placed', 'shipped']);
  });

  it('on the staff page, the shipped alert arrives live and is acknowledged', async () => {
    browser = await launchChromium();
    const page = await browser.newPage();
    await page.goto(`${base}/`);
    await page.getByLabel('API token').fill(demo.token!);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByText(`Signed in as ${DEMO_STAFF.name}`).waitFor();
    await page.locator('#connection.live').waitFor();
    await page.locator('li.alert', { hasText: 'Low stock: Oak desk lamp (LAMP-OAK)' }).waitFor();

    await db.query(DEMO_STATEMENTS.shipOrder.sql);
    const card = page.locator('li.alert', { hasText: 'Order SO-1001 shipped' });
    await card.waitFor({ timeout: 20_000 });
    expect(await card.locator('.message').textContent()).toBe(
      'Acme Corp: 2 x LAMP-OAK went from packed to shipped.',
    );
    await card.getByRole('button', { name: 'Acknowledge' }).click();
    await card.locator('.state', { hasText: 'Acknowledged' }).waitFor();
    const [alert] = await db.query<{ status: string; by: string }>(
      `select a.status, u.email as by from workflow.alerts a
         join workflow.alert_acknowledgments k on k.alert_id = a.id
         join core.users u on u.id = k.acknowledged_by
        where a.alert_type = 'demo_order_shipped'`,
    );
    expect(alert).toEqual({ status: 'acknowledged', by: DEMO_STAFF.email });
    await page.close();
  });

  it('README.md tours with the very statements the demo prints', () => {
    const readme = fs.readFileSync(path.join(packageRoot(), 'README.md'), 'utf8');
    for (const statement of Object.values(DEMO_STATEMENTS)) {
      expect(readme).toContain(psqlCommand(statement.sql));
    }
  });

  it('loading again changes nothing', async () => {
    const loaded = await snapshot();
    const again = await loadDemo(db.url);
    expect(again).toEqual({ loaded: false, staffEmail: DEMO_STAFF.email, token: undefined });
    expect(await snapshot()).toEqual(loaded);
  });

  it('--drop removes everything it made and caused; it can then be loaded again', async () => {
    // With the engine running, as `rulebook demo --drop` beside `npm start` would.
    const dropped = await dropDemo(db.url);
    expect(dropped).toMatchObject({ dropped: true, rules: 5, entities: 3, users: 2, allocations: 1 });
    expect(dropped.alerts).toBe(2);
    expect(await snapshot()).toEqual(before);
    expect(await dropDemo(db.url)).toMatchObject({ dropped: false, rules: 0 });

    const reloaded = await loadDemo(db.url);
    expect(reloaded.loaded).toBe(true);
    expect(await dropDemo(db.url)).toMatchObject({ dropped: true, rules: 5 });
    expect(await snapshot()).toEqual(before);
  });
});

describe('rulebook demo where it does not fit', () => {
  let other: TestDatabase;

  beforeAll(async () => {
    other = await createTestDatabase();
  });

  afterAll(async () => {
    await other?.drop();
  });

  it('says what is in the way, and leaves nothing behind', async () => {
    const empty = await snapshot(other);
    await other.query(`insert into core.roles (name) values ('demo warehouse')`);
    const withRole = await snapshot(other);
    await expect(loadDemo(other.url)).rejects.toThrow(
      /the demo cannot be loaded: something it creates exists already \(Key \(name\)=\(demo warehouse\) already exists\.\)/,
    );
    expect(await snapshot(other)).toEqual(withRole);
    await other.query(`delete from core.roles`);

    await other.query(`create schema demo_sales`);
    await expect(loadDemo(other.url)).rejects.toThrow(
      'the demo is only partly there (schemas demo_sales, 0 of 5 rules); run `rulebook demo --drop`, then `rulebook demo`',
    );
    expect(await dropDemo(other.url)).toMatchObject({ dropped: true, rules: 0 });
    expect(await snapshot(other)).toEqual(empty);
  });
});

describe('the rulebook demo command', () => {
  let cliDb: TestDatabase;
  // Only printed in the page's URL; nothing listens on it.
  let port: string;

  beforeAll(async () => {
    cliDb = await createTestDatabase();
    port = String(await freePort());
  });

  afterAll(async () => {
    await cliDb?.drop();
  });

  async function rulebook(...args: string[]): Promise<{ code: number | null; output: string }> {
    const run = spawnRulebook(args, { DATABASE_URL: cliDb.url, LOG_LEVEL: 'silent', PORT: port });
    const { code } = await run.exited();
    return { code, output: run.output() };
  }

  it('loads the demo, says it is loaded on a second run, and drops it', async () => {
    const empty = await snapshot(cliDb);
    const first = await rulebook('demo');
    expect(first.code).toBe(0);
    expect(first.output).toMatch(/loaded the demo/);
    expect(first.output).toContain(`open http://localhost:${port}/ and sign in as ${DEMO_STAFF.email}`);
    expect(first.output).toMatch(/^ {3}rbk_[A-Za-z0-9_-]{43}$/m);
    expect(first.output).toContain(`npx rulebook psql -c "${DEMO_STATEMENTS.placeOrder.sql}"`);
    expect(first.output).toContain(`npx rulebook psql -c "${DEMO_STATEMENTS.shipOrder.sql}"`);
    expect(first.output).toContain('SMTP_URL is not set): notifications are in-app only');

    const loaded = await snapshot(cliDb);
    const second = await rulebook('demo');
    expect(second.code).toBe(0);
    expect(second.output).toMatch(/the demo is already loaded; nothing changed/);
    expect(second.output).toContain(`npx rulebook token create --user ${DEMO_STAFF.email}`);
    expect(await snapshot(cliDb)).toEqual(loaded);

    const sql = await rulebook('demo', '--sql');
    expect(sql.code).toBe(0);
    expect(sql.output).toContain(`select workflow.register_entity('demo_sales.orders');`);

    const dropped = await rulebook('demo', '--drop');
    expect(dropped.code).toBe(0);
    expect(dropped.output).toMatch(/dropped the demo: 5 rules, 3 entities/);
    expect(await snapshot(cliDb)).toEqual(empty);

    const wrong = await rulebook('demo', '--everything');
    expect(wrong.code).toBe(2);
    expect(wrong.output).toContain('usage: rulebook demo [--drop | --sql]');
  });
});
