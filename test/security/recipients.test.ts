import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { DeliveryWorker } from '../../src/delivery/delivery-worker.js';
import type { Engine } from '../../src/engine/engine.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { TestRoles, type LoginRole } from '../support/roles.js';
import {
  addresses,
  deliveriesOf,
  rulesLoaded,
  settled,
  startSmtpServer,
  startWorker,
  type TestSmtpServer,
} from '../support/delivery.js';
import { startEngine } from '../support/engine.js';
import { waitForExecutions } from '../support/executions.js';
import { createRule } from '../support/rules.js';
import { waitFor } from '../support/wait.js';
import { createTable } from '../support/tables.js';

// Issue 9, item 8: row data cannot pick staff as e-mail recipients, and the members of a role are
// never shown to each other or to the other recipients.

let db: TestDatabase;
let engine: Engine;
let smtp: TestSmtpServer;
let worker: DeliveryWorker | undefined;
let roles: TestRoles;
let writer: LoginRole;
const staff: Record<string, string> = {};
let bossesRole: string;

beforeAll(async () => {
  db = await createTestDatabase();
  await createTable(
    db,
    'shop.tickets',
    `
    id serial primary key,
    number text not null,
    contact text,
    reply text
  `,
  );
  for (const [key, email] of [
    ['ceo', 'ceo@example.com'],
    ['cfo', 'cfo@example.com'],
  ] as const) {
    const [row] = await db.query<{ id: string }>(
      `insert into core.users (email, name) values ($1, $2) returning id`,
      [email, key.toUpperCase()],
    );
    staff[key] = row!.id;
  }
  [{ id: bossesRole }] = (await db.query<{ id: string }>(
    `insert into core.roles (name) values ('bosses') returning id`,
  )) as [{ id: string }];
  await db.query(`insert into core.user_roles (user_id, role_id) values ($1, $3), ($2, $3)`, [
    staff.ceo,
    staff.cfo,
    bossesRole,
  ]);
  // The customer-facing application: it writes tickets and nothing else.
  roles = new TestRoles(db);
  writer = await roles.login(
    'ticket_writer',
    'grant usage on schema shop to %I',
    'grant select, insert on shop.tickets to %I',
    'grant usage on all sequences in schema shop to %I',
  );
  smtp = await startSmtpServer();
  engine = await startEngine(db);
});

afterEach(async () => {
  await worker?.stop();
  worker = undefined;
  smtp.messages.length = 0;
  await db.query(`update workflow.automation_rules set is_active = false`);
});

afterAll(async () => {
  await engine?.stop();
  await smtp?.close();
  await roles.endPools();
  await db?.drop();
  await roles.dropRoles();
});

function ticketRule(number: string, config: Record<string, unknown>): Promise<string> {
  return createRule(db, {
    name: `ticket ${number}`,
    entity: 'shop.tickets',
    trigger: 'on_create',
    conditions: [{ field_name: 'number', operator: 'equals', value: number }],
    actions: [
      {
        name: 'mail',
        config: { action_type: 'send_email', subject: 'Ticket {{number}}', text: 'x', ...config },
      },
    ],
  });
}

async function ticket(number: string, contact: string, reply: string | null = null): Promise<void> {
  await rulesLoaded(db, engine);
  await writer.query(`insert into shop.tickets (number, contact, reply) values ($1, $2, $3)`, [
    number,
    contact,
    reply,
  ]);
}

describe('a templated recipient that renders to a uuid', () => {
  it('is refused, so a row cannot pick a user or a role as recipient', async () => {
    const ruleId = await ticketRule('T-1', { to: ['{{contact}}'] });
    const roleRule = await ticketRule('T-2', { to: ['{{contact}}'] });
    const replyRule = await ticketRule('T-3', { to: ['help@example.com'], reply_to: '{{reply}}' });
    worker = startWorker(db, { smtpUrl: smtp.url });
    await worker.start();
    await ticket('T-1', staff.ceo!);
    await ticket('T-2', bossesRole.toUpperCase());
    await ticket('T-3', 'someone@example.com', staff.cfo);

    const [byUser] = await waitForExecutions(db, ruleId);
    expect(byUser).toMatchObject({
      status: 'failed',
      error_message: expect.stringContaining(
        `send_email: config.to[0] rendered to "${staff.ceo!}", which looks like a user or role id; ids are taken only from literal config`,
      ),
    });
    const [byRole] = await waitForExecutions(db, roleRule);
    expect(byRole!.status).toBe('failed');
    const [byReply] = await waitForExecutions(db, replyRule);
    expect(byReply!.error_message).toContain('send_email: config.reply_to rendered to');
    expect(await deliveriesOf(db, ruleId)).toEqual([]);
    expect(await deliveriesOf(db, roleRule)).toEqual([]);
    expect(await deliveriesOf(db, replyRule)).toEqual([]);
    expect(smtp.messages).toEqual([]);
  });
});

describe('a literal role among the recipients', () => {
  it('sends its members the message as Bcc, never naming them in To or Cc', async () => {
    const ruleId = await ticketRule('T-4', { to: [bossesRole, '{{contact}}'], cc: ['audit@example.com'] });
    worker = startWorker(db, { smtpUrl: smtp.url });
    await worker.start();
    await ticket('T-4', 'customer@example.com');

    const rows = await waitFor('four sent deliveries', async () =>
      settled(await deliveriesOf(db, ruleId), 4),
    );
    expect(rows.every((row) => row.status === 'sent')).toBe(true);
    expect(smtp.messages.map((mail) => mail.envelopeTo[0]).sort()).toEqual([
      'audit@example.com',
      'ceo@example.com',
      'cfo@example.com',
      'customer@example.com',
    ]);
    for (const mail of smtp.messages) {
      expect(addresses(mail.parsed.to)).toEqual(['customer@example.com']);
      expect(addresses(mail.parsed.cc)).toEqual(['audit@example.com']);
      expect(mail.raw).not.toMatch(/ceo@example\.com|cfo@example\.com/i);
    }
  });
});
