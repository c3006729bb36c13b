import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../src/engine/engine.js';
import type { HttpServer } from '../src/http/server.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { startEngine } from './support/engine.js';
import { createRule } from './support/rules.js';
import { launchChromium } from './support/browser.js';
import { createStaffUser, roleId, startHttp, type StaffUser } from './support/staff.js';
import { waitFor } from './support/wait.js';
import { createTable } from './support/tables.js';

// A person on the staff page, in a real (headless) Chromium: signs in with a token, sees the
// alert a database update raised through a rule, acknowledges it with a note, and watches the next
// one arrive without reloading.

const SCREENSHOT = '/tmp/rulebook-page.png';
const PHONE_SCREENSHOT = '/tmp/rulebook-page-phone.png';

let db: TestDatabase;
let engine: Engine;
let server: HttpServer;
let base: string;
let browser: Browser;
let ann: StaffUser;

beforeAll(async () => {
  db = await createTestDatabase();
  await createTable(
    db,
    'sales.orders',
    `id serial primary key, customer text not null, total numeric not null, status text not null`,
  );
  ann = await createStaffUser(db, 'ann@example.com', { roles: ['warehouse'], name: 'Ann Smith' });
  const warehouse = await roleId(db, 'warehouse');
  await createRule(db, {
    name: 'Order on hold',
    entity: 'sales.orders',
    trigger: 'on_update',
    conditions: [{ field_name: 'status', operator: 'changed_to', value: 'on_hold' }],
    actions: [
      {
        name: 'tell the warehouse',
        config: {
          action_type: 'create_alert',
          alert_type: 'order_on_hold',
          severity: 'critical',
          title: 'Order {{id}} for {{customer}} is on hold',
          message:
            'Order {{id}} ({{total}} EUR) went from {{old.status}} to {{status}}.\nCheck stock before noon.',
          context: { order_id: '{{id}}', customer: '{{customer}}', total: '{{total}}' },
          recipients: { roles: [warehouse] },
        },
      },
    ],
  });
  await createRule(db, {
    name: 'Big order',
    entity: 'sales.orders',
    trigger: 'on_create',
    conditions: [{ field_name: 'total', operator: 'greater_than', value: 1000 }],
    actions: [
      {
        name: 'tell Ann',
        config: {
          action_type: 'create_alert',
          alert_type: 'big_order',
          severity: 'medium',
          title: 'Big order {{id}} from {{customer}}',
          message: 'Total {{total}} EUR.',
          recipients: { users: [ann.id] },
        },
      },
    ],
  });
  engine = await startEngine(db);
  ({ server, base } = await startHttp(db, { engine }));
  browser = await launchChromium();
});

afterAll(async () => {
  await browser?.close();
  await server?.stop();
  await engine?.stop();
  await db?.drop();
});

async function alertCount(where: string): Promise<number> {
  const [row] = await db.query<{ count: number }>(
    `select count(*)::int as count from workflow.alerts where ${where}`,
  );
  return row!.count;
}

/** Console errors and CSP violations: the page must run under its own policy without any. */
function watchProblems(page: Page): string[] {
  const problems: string[] = [];
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(message.text());
  });
  page.on('pageerror', (error) => problems.push(error.message));
  return problems;
}

describe('the staff page', () => {
  it('signs in, shows an alert from a database update, acknowledges it with a note and receives the next live', async () => {
    // An order goes on hold before anyone looks: the rule raises a critical alert for the warehouse.
    await db.query(
      `insert into sales.orders (customer, total, status) values ('Acme <b>&</b> Co', 240, 'new')`,
    );
    await db.query(`update sales.orders set status = 'on_hold' where id = 1`);
    await waitFor('the first alert', () => alertCount(`alert_type = 'order_on_hold'`));

    const context = await browser.newContext({ viewport: { width: 1200, height: 900 } });
    const page = await context.newPage();
    const problems = watchProblems(page);
    const response = await page.goto(`${base}/`);
    expect(response!.headers()['content-security-policy']).toContain("script-src 'self'");

    // A wrong token is refused with a message; the right one signs in.
    await page.getByLabel('API token').fill(`rbk_${'x'.repeat(43)}`);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await expect.poll(() => page.locator('#sign-in-error').textContent()).toMatch(/unknown token/);
    expect(problems).toEqual([expect.stringMatching(/status of 401/)]);
    problems.length = 0;
    await page.getByLabel('API token').fill(ann.token);
    await page.keyboard.press('Enter');
    await page.getByText('Signed in as Ann Smith').waitFor();
    await page.locator('#connection.live').waitFor();

    const card = page.locator('li.alert', { hasText: 'Order 1 for Acme <b>&</b> Co is on hold' });
    await card.waitFor();
    // Alert text is text, never markup.
    expect(await card.locator('h3').textContent()).toBe('Order 1 for Acme <b>&</b> Co is on hold');
    expect(await page.locator('li.alert b').count()).toBe(0);
    expect(await card.locator('.badge').textContent()).toBe('Critical');
    expect(await card.locator('.message').textContent()).toBe(
      'Order 1 (240 EUR) went from new to on_hold.\nCheck stock before noon.',
    );
    await card.getByText('Details').click();
    await expect.poll(() => card.locator('dl.context').textContent()).toContain('customerAcme <b>&</b> Co');

    // Acknowledge with a note, using the keyboard.
    await card.getByLabel('Notes (optional)').fill('Calling the supplier now');
    await card.getByRole('button', { name: 'Acknowledge' }).focus();
    await page.keyboard.press('Enter');
    await card.locator('.state', { hasText: 'Acknowledged' }).waitFor();
    await expect
      .poll(() => card.locator('.ack-note').textContent())
      .toMatch(/^Acknowledged by Ann Smith on /);
    expect(await card.getByRole('button', { name: 'Acknowledge' }).count()).toBe(0);
    const acks = await db.query(
      `select k.acknowledged_by, k.notes, a.status from workflow.alert_acknowledgments k
         join workflow.alerts a on a.id = k.alert_id where a.alert_type = 'order_on_hold'`,
    );
    expect(acks).toEqual([
      { acknowledged_by: ann.id, notes: 'Calling the supplier now', status: 'acknowledged' },
    ]);

    // A second alert arrives while the page is open: it shows up without a reload.
    await page.evaluate(() => ((window as unknown as { stayedHere: boolean }).stayedHere = true));
    await db.query(`insert into sales.orders (customer, total, status) values ('Globex', 4800, 'new')`);
    const live = page.locator('li.alert', { hasText: 'Big order 2 from Globex' });
    await live.waitFor({ timeout: 20_000 });
    expect(await page.evaluate(() => (window as unknown as { stayedHere?: boolean }).stayedHere)).toBe(true);
    await expect
      .poll(() => page.locator('#announcer').textContent())
      .toContain('New medium alert: Big order 2 from Globex');
    // Critical first, then the rest by severity.
    expect(await page.locator('#groups section:not([hidden]) h2').allTextContents()).toEqual([
      'Critical (1)',
      'Medium (1)',
    ]);
    expect(await page.locator('#summary').textContent()).toBe('1 alert needs attention · 1 acknowledged');

    await page.screenshot({ path: SCREENSHOT, fullPage: true });

    // Dismissing takes it off the page.
    await live.getByRole('button', { name: 'Dismiss' }).click();
    await live.waitFor({ state: 'detached' });
    expect(await alertCount(`alert_type = 'big_order' and status = 'dismissed'`)).toBe(1);
    expect(problems).toEqual([]);
    await context.close();
  });

  it('is readable on a phone, remembers the token, and signs out', async () => {
    await db.query(`insert into sales.orders (customer, total, status) values ('Initech', 1500, 'new')`);
    await waitFor('the third alert', () => alertCount(`alert_type = 'big_order' and status = 'active'`));
    const context = await browser.newContext({
      viewport: { width: 390, height: 844 },
      deviceScaleFactor: 2,
      isMobile: true,
      hasTouch: true,
    });
    const page = await context.newPage();
    const problems = watchProblems(page);
    await page.goto(`${base}/`);
    await page.getByLabel('API token').fill(ann.token);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.locator('li.alert', { hasText: 'Big order 3 from Initech' }).waitFor();
    // Nothing wider than the screen.
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(390);
    await page.screenshot({ path: PHONE_SCREENSHOT, fullPage: true });

    // The token stays in this browser across reloads ...
    await page.reload();
    await page.locator('li.alert', { hasText: 'Big order 3 from Initech' }).waitFor();
    // ... until the person signs out.
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByLabel('API token').waitFor();
    expect(await page.evaluate(() => localStorage.getItem('rulebook.token'))).toBeNull();
    expect(await page.locator('li.alert').count()).toBe(0);
    expect(problems).toEqual([]);
    await context.close();
  });
});
