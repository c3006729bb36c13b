import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/config.js';
import { claimDeliveries } from '../src/delivery/delivery-queue.js';
import type { DeliveryWorker } from '../src/delivery/delivery-worker.js';
import { EmailSender } from '../src/delivery/email-sender.js';
import { emailRecipientId, URL_NAMESPACE, uuidV5 } from '../src/delivery/uuid-v5.js';
import type { Engine } from '../src/engine/engine.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import {
  addresses,
  deliveriesOf,
  DELIVERY_HISTORY,
  historyOf,
  rulesLoaded,
  settled,
  startSmtpServer,
  startWorker,
  type TestSmtpServer,
} from './support/delivery.js';
import { startEngine } from './support/engine.js';
import { createRule } from './support/rules.js';
import { waitFor } from './support/wait.js';
import { createTable } from './support/tables.js';

let db: TestDatabase;
let engine: Engine;
let smtp: TestSmtpServer;
let worker: DeliveryWorker | undefined;
const users: Record<string, string> = {};
let managersRole: string;
let emptyRole: string;

beforeAll(async () => {
  db = await createTestDatabase();
  await db.query(DELIVERY_HISTORY);
  await createTable(
    db,
    'shop.orders',
    `
    id uuid primary key default gen_random_uuid(),
    number text not null,
    customer_email text,
    note text
  `,
  );
  for (const [key, email, active] of [
    ['ann', 'ann@example.com', true],
    ['bob', 'bob@example.com', true],
    ['carl', null, true],
    ['dora', 'dora@example.com', false],
  ] as const) {
    const [row] = await db.query<{ id: string }>(
      `insert into core.users (email, name, is_active) values ($1, $2, $3) returning id`,
      [email, key[0]!.toUpperCase() + key.slice(1), active],
    );
    users[key] = row!.id;
  }
  [{ id: managersRole }, { id: emptyRole }] = (await db.query<{ id: string }>(
    `insert into core.roles (name) values ('managers'), ('nobody') returning id`,
  )) as [{ id: string }, { id: string }];
  await db.query(`insert into core.user_roles (user_id, role_id) values ($1, $3), ($2, $3), ($4, $3)`, [
    users.ann,
    users.bob,
    managersRole,
    users.dora,
  ]);
  smtp = await startSmtpServer();
  engine = await startEngine(db);
});

afterEach(async () => {
  await worker?.stop();
  worker = undefined;
  smtp.onRecipient = () => undefined;
  smtp.onMessage = () => undefined;
  smtp.messages.length = 0;
  await db.query(`update workflow.automation_rules set is_active = false`);
});

afterAll(async () => {
  await engine?.stop();
  await smtp?.close();
  await db?.drop();
});

async function executionOf(ruleId: string) {
  return waitFor(`the execution of rule ${ruleId}`, async () => {
    const [row] = await db.query<{
      id: string;
      status: string;
      error_message: string | null;
      actions_executed: { status: string; error?: string; result?: Record<string, unknown> }[];
    }>(`select * from workflow.automation_executions where automation_rules_id = $1`, [ruleId]);
    return row;
  });
}

function emailRule(name: string, config: Record<string, unknown>): Promise<string> {
  return createRule(db, {
    name,
    entity: 'shop.orders',
    trigger: 'on_create',
    conditions: [{ field_name: 'number', operator: 'equals', value: name }],
    actions: [{ name: 'mail', config: { action_type: 'send_email', ...config } }],
  });
}

async function order(number: string, values: { customer_email?: string; note?: string } = {}) {
  await rulesLoaded(db, engine);
  await db.query(`insert into shop.orders (number, customer_email, note) values ($1, $2, $3)`, [
    number,
    values.customer_email ?? null,
    values.note ?? null,
  ]);
}

describe('uuidV5', () => {
  it('matches the RFC test vector and keys raw addresses case-insensitively', () => {
    expect(uuidV5('6ba7b810-9dad-11d1-80b4-00c04fd430c8', 'www.example.com')).toBe(
      '2ed6657d-e927-568b-95e1-2665a8aea6a2',
    );
    expect(emailRecipientId('Zed@Example.COM')).toBe(uuidV5(URL_NAMESPACE, 'mailto:zed@example.com'));
  });
});

describe('delivery configuration', () => {
  it('reads the delivery variables, with defaults', () => {
    const config = loadConfig({
      SMTP_URL: 'smtps://user:pw@mail.example.com:465',
      SMTP_FROM: 'Ops <ops@example.com>',
      PUSH_PROVIDER_URL: 'https://push.example.com/send',
      WEBHOOK_SECRET: 'shh',
      DELIVERY_MAX_ATTEMPTS: '7',
    });
    expect(config.delivery).toEqual({
      smtpUrl: 'smtps://user:pw@mail.example.com:465',
      smtpFrom: 'Ops <ops@example.com>',
      smsProviderUrl: undefined,
      pushProviderUrl: 'https://push.example.com/send',
      webhookSecret: 'shh',
      webhookAllow: [],
      maxAttempts: 7,
      pollIntervalMs: 1000,
    });
    expect(loadConfig({}).delivery.smtpFrom).toBe('rulebook@localhost');
  });

  it('names the variable and the problem', () => {
    expect(() => loadConfig({ SMTP_URL: 'http://user:pw@mail.example.com' })).toThrow(
      new ConfigError(
        'SMTP_URL must be a URL starting with smtp:// or smtps://, got "http://***@mail.example.com"',
      ),
    );
    expect(() => loadConfig({ SMS_PROVIDER_URL: 'sms.example.com' })).toThrow(
      'SMS_PROVIDER_URL must be a URL starting with http:// or https://, got "sms.example.com"',
    );
    expect(() => loadConfig({ SMTP_FROM: 'nobody' })).toThrow(
      'SMTP_FROM must be an e-mail address or "Name <address>", got "nobody"',
    );
    expect(() => loadConfig({ DELIVERY_POLL_INTERVAL_MS: '0' })).toThrow(
      'DELIVERY_POLL_INTERVAL_MS must be a whole number of at least 1, got "0"',
    );
  });
});

describe('send_email', () => {
  it('sends one message per recipient: rendered subject and text, escaped html, To/Cc/Reply-To, Message-ID', async () => {
    const ruleId = await emailRule('SO-1', {
      to: [users.ann, '{{customer_email}}'],
      cc: ['audit@example.com'],
      reply_to: users.bob,
      subject: 'Order {{number}} <new>',
      text: 'Note: {{note}}',
      html: '<p>Note: {{note}}</p>',
    });
    worker = startWorker(db, { smtpUrl: smtp.url, smtpFrom: 'Rulebook <rulebook@example.com>' });
    await worker.start();
    await order('SO-1', { customer_email: 'Zed@Example.com', note: 'Tom & Jerry <b>' });

    const execution = await executionOf(ruleId);
    expect(execution.status).toBe('success');
    const rows = await waitFor('three sent deliveries', async () =>
      settled(await deliveriesOf(db, ruleId), 3),
    );
    const zedId = emailRecipientId('zed@example.com');
    const auditId = emailRecipientId('audit@example.com');
    expect(rows.map((row) => row.recipient_id).sort()).toEqual([users.ann, zedId, auditId].sort());
    for (const row of rows) {
      expect(row).toMatchObject({
        channel: 'email',
        status: 'sent',
        attempts: 1,
        automation_execution_id: execution.id,
        rule_id: ruleId,
        error_message: null,
        failed_at: null,
        delivered_at: null,
      });
      expect(row.sent_at).toBeInstanceOf(Date);
      const response = row.provider_response as { smtp: { message_id: string; response: string } };
      expect(response.smtp.message_id).toBe(`<${row.id}@rulebook>`);
      expect(response.smtp.response).toMatch(/^250 /);
    }
    expect(execution.actions_executed[0]!.result).toMatchObject({
      notification_id: rows[0]!.notification_id,
      queued: 3,
      failed: [],
    });

    expect(smtp.messages).toHaveLength(3);
    // Nodemailer lower-cases the domain of envelope addresses.
    const byRecipient = new Map(smtp.messages.map((mail) => [mail.envelopeTo.join(',').toLowerCase(), mail]));
    expect([...byRecipient.keys()].sort()).toEqual([
      'ann@example.com',
      'audit@example.com',
      'zed@example.com',
    ]);
    for (const row of rows) {
      const address = {
        [users.ann!]: 'ann@example.com',
        [zedId]: 'zed@example.com',
        [auditId]: 'audit@example.com',
      }[row.recipient_id]!;
      const { parsed, envelopeFrom } = byRecipient.get(address)!;
      expect(envelopeFrom).toBe('rulebook@example.com');
      expect(parsed.messageId).toBe(`<${row.id}@rulebook>`);
      expect(parsed.subject).toBe('Order SO-1 <new>');
      expect(parsed.text?.trim()).toBe('Note: Tom & Jerry <b>');
      expect(parsed.html).toContain('<p>Note: Tom &amp; Jerry &lt;b&gt;</p>');
      expect(addresses(parsed.from)).toEqual(['rulebook@example.com']);
      // Nodemailer lower-cases domains in headers too.
      expect(addresses(parsed.to)).toEqual(['ann@example.com', 'Zed@example.com']);
      expect(addresses(parsed.cc)).toEqual(['audit@example.com']);
      expect(addresses(parsed.replyTo)).toEqual(['bob@example.com']);
      expect(parsed.headers.get('x-rulebook-delivery-id')).toBe(row.id);
    }
    const [payload] = await db.query<{ payload: Record<string, unknown> }>(
      `select payload from workflow.notification_payloads where id = $1`,
      [rows[0]!.notification_id],
    );
    expect(payload!.payload).toMatchObject({
      kind: 'email',
      subject: 'Order SO-1 <new>',
      addresses: { [zedId]: 'Zed@Example.com', [auditId]: 'audit@example.com' },
    });
  });

  it('gives a user without an e-mail address a failed delivery at once; the others are sent', async () => {
    const ruleId = await emailRule('SO-2', { to: [users.carl, users.ann], subject: 'Hello', text: 'Hi' });
    await order('SO-2');
    const execution = await executionOf(ruleId);
    expect(execution.status).toBe('success');
    // Before any worker runs: Carl's row has already failed, Ann's waits.
    const queued = await deliveriesOf(db, ruleId);
    const carl = queued.find((row) => row.recipient_id === users.carl)!;
    expect(carl).toMatchObject({ status: 'failed', attempts: 0, sent_at: null });
    expect(carl.failed_at).toBeInstanceOf(Date);
    expect(carl.error_message).toBe(`user ${users.carl} (Carl) has no e-mail address in core.users`);
    expect(queued.find((row) => row.recipient_id === users.ann)).toMatchObject({
      status: 'pending',
      attempts: 0,
    });
    expect(execution.actions_executed[0]!.result).toMatchObject({
      queued: 1,
      failed: [{ recipient_id: users.carl, channel: 'email' }],
    });

    worker = startWorker(db, { smtpUrl: smtp.url });
    await worker.start();
    const rows = await waitFor('the deliveries', async () => settled(await deliveriesOf(db, ruleId), 2));
    expect(rows.find((row) => row.recipient_id === users.ann)).toMatchObject({ status: 'sent', attempts: 1 });
    expect(rows.find((row) => row.recipient_id === users.carl)).toMatchObject({
      status: 'failed',
      attempts: 0,
    });
    expect(smtp.messages.map((mail) => mail.envelopeTo)).toEqual([['ann@example.com']]);
    expect(addresses(smtp.messages[0]!.parsed.to)).toEqual(['ann@example.com']);
  });

  it('expands a role to its active members; an unknown id or an empty role fails the action', async () => {
    const roleRule = await emailRule('SO-3', { to: [managersRole], subject: 'To managers', text: 'Hi' });
    // A user deleted after the rule was written (an unknown id is refused when the rule is written).
    const [ghost] = await db.query<{ id: string }>(
      `insert into core.users (email, name) values ('ghost@example.com', 'Ghost') returning id`,
    );
    const unknownId = ghost!.id;
    const unknownRule = await emailRule('SO-3', { to: [users.ann, unknownId], subject: 'x', text: 'x' });
    await db.query(`delete from core.users where id = $1`, [unknownId]);
    const emptyRule = await emailRule('SO-3', { to: [emptyRole], subject: 'x', text: 'x' });
    worker = startWorker(db, { smtpUrl: smtp.url });
    await worker.start();
    await order('SO-3');

    const rows = await waitFor('the role deliveries', async () =>
      settled(await deliveriesOf(db, roleRule), 2),
    );
    expect(rows.map((row) => row.recipient_id).sort()).toEqual([users.ann, users.bob].sort());
    expect(rows.every((row) => row.status === 'sent')).toBe(true);
    expect(smtp.messages.map((mail) => mail.envelopeTo[0]).sort()).toEqual([
      'ann@example.com',
      'bob@example.com',
    ]);
    // Dora is a manager too, but inactive.
    expect(smtp.messages.flatMap((mail) => addresses(mail.parsed.to))).not.toContain('dora@example.com');

    const unknown = await executionOf(unknownRule);
    expect(unknown.status).toBe('failed');
    expect(unknown.error_message).toContain(
      `send_email: unknown recipients: config.to[1]: ${unknownId} is neither a user (core.users) nor a role (core.roles)`,
    );
    expect(await deliveriesOf(db, unknownRule)).toEqual([]);
    const empty = await executionOf(emptyRule);
    expect(empty.status).toBe('failed');
    expect(empty.error_message).toContain(
      `send_email: no recipients: role ${emptyRole} has no active members`,
    );
  });

  it('retries a 4xx answer with backoff and the same Message-ID, then records sent after attempt 2', async () => {
    const ruleId = await emailRule('SO-4', { to: ['later@example.com'], subject: 'Retry me', text: 'x' });
    smtp.onMessage = () =>
      smtp.messages.length === 0 ? { code: 451, message: '4.3.0 Mailbox busy, try again later' } : undefined;
    worker = startWorker(db, { smtpUrl: smtp.url });
    await worker.start();
    await order('SO-4');

    const [row] = await waitFor('the delivery to be sent', async () =>
      settled(await deliveriesOf(db, ruleId), 1),
    );
    expect(row).toMatchObject({ status: 'sent', attempts: 2, error_message: null, failed_at: null });
    expect(smtp.messages).toHaveLength(2);
    expect(smtp.messages[0]!.refused?.code).toBe(451);
    expect(smtp.messages.map((mail) => mail.parsed.messageId)).toEqual([
      `<${row!.id}@rulebook>`,
      `<${row!.id}@rulebook>`,
    ]);
    const history = await historyOf(db, row!.id);
    expect(history.map((entry) => [entry.status, entry.attempts])).toEqual([
      ['pending', 0],
      ['retrying', 1], // claimed
      ['retrying', 1], // 451 recorded
      ['retrying', 2], // claimed again after the backoff
      ['sent', 2],
    ]);
    expect(history[2]!.error_message).toMatch(
      /^SMTP error at DATA: .*451 4\.3\.0 Mailbox busy, try again later/,
    );
    expect(history[2]!.provider_response).toMatchObject({ smtp: { response_code: 451 } });
  });

  it('fails a 5xx answer at once, and bounces a 550 refusal of the recipient', async () => {
    const ruleId = await emailRule('SO-5', {
      to: ['spam@example.com', 'nobody@example.com'],
      subject: 'Rejected',
      text: 'x',
    });
    smtp.onRecipient = (address) =>
      address === 'nobody@example.com' ? { code: 550, message: '5.1.1 No such user here' } : undefined;
    smtp.onMessage = () => ({ code: 554, message: '5.6.0 Message content rejected' });
    worker = startWorker(db, { smtpUrl: smtp.url });
    await worker.start();
    await order('SO-5');

    const rows = await waitFor('the deliveries', async () => settled(await deliveriesOf(db, ruleId), 2));
    const spam = rows.find((row) => row.recipient_id === emailRecipientId('spam@example.com'))!;
    const nobody = rows.find((row) => row.recipient_id === emailRecipientId('nobody@example.com'))!;
    expect(spam).toMatchObject({ status: 'failed', attempts: 1, sent_at: null });
    expect(spam.failed_at).toBeInstanceOf(Date);
    expect(spam.error_message).toContain('554 5.6.0 Message content rejected');
    expect(nobody).toMatchObject({ status: 'bounced', attempts: 1, sent_at: null });
    expect(nobody.error_message).toContain('550 5.1.1 No such user here');
    expect(nobody.provider_response).toMatchObject({ smtp: { response_code: 550, command: 'RCPT TO' } });
    // Neither was attempted again.
    for (const row of rows) {
      expect((await historyOf(db, row.id)).map((entry) => entry.status)).toEqual([
        'pending',
        'retrying',
        row.status,
      ]);
    }
  });

  it('attempts again, with the same Message-ID, a delivery whose worker died between sending and recording', async () => {
    const ruleId = await emailRule('SO-6', { to: ['crash@example.com'], subject: 'Once', text: 'x' });
    await order('SO-6');
    await executionOf(ruleId);
    // A worker claims the delivery and sends it, then dies before recording the outcome.
    const [claimed] = await claimDeliveries(db.pool, {
      limit: 10,
      maxAttempts: 5,
      retryBaseMs: 25,
      retryMaxMs: 60_000,
      leaseMs: 300,
      workerId: 'dead-worker',
    });
    expect(claimed).toMatchObject({ channel: 'email', attempts: 1 });
    const sender = new EmailSender({ smtpUrl: smtp.url, from: 'rulebook@localhost' });
    expect((await sender.send(claimed!, new AbortController().signal)).status).toBe('sent');
    await sender.close();
    expect((await deliveriesOf(db, ruleId))[0]).toMatchObject({ status: 'retrying', attempts: 1 });

    worker = startWorker(db, { smtpUrl: smtp.url });
    await worker.start();
    const [row] = await waitFor('the second attempt', async () => settled(await deliveriesOf(db, ruleId), 1));
    expect(row).toMatchObject({ status: 'sent', attempts: 2 });
    expect(smtp.messages.map((mail) => mail.parsed.messageId)).toEqual([
      `<${row!.id}@rulebook>`,
      `<${row!.id}@rulebook>`,
    ]);
  });

  it('fails e-mail deliveries with a clear message when no SMTP_URL is configured', async () => {
    const ruleId = await emailRule('SO-7', { to: ['ann@example.com'], subject: 'x', text: 'x' });
    worker = startWorker(db, { smtpUrl: undefined });
    await worker.start();
    await order('SO-7');
    const [row] = await waitFor('the delivery', async () => settled(await deliveriesOf(db, ruleId), 1));
    expect(row).toMatchObject({
      status: 'failed',
      attempts: 1,
      sent_at: null,
      error_message: 'no SMTP_URL configured: e-mail cannot be sent',
    });
    expect(smtp.messages).toEqual([]);
  });

  it('rejects a config without a body or with an address that is not one', async () => {
    await expect(emailRule('SO-8', { to: ['ann@example.com'], subject: 'x' })).rejects.toMatchObject({
      code: '22023',
      message: expect.stringContaining('send_email config needs text, html or both') as unknown,
    });
    await expect(
      emailRule('SO-8', { to: ['not an address'], subject: 'x', text: 'x' }),
    ).rejects.toMatchObject({
      code: '22023',
      message: expect.stringContaining(
        'send_email config.to[0] is "not an address", which is neither an e-mail address nor a user or role id',
      ) as unknown,
    });
    // What a template renders to is known only when the row is there.
    const badAddress = await emailRule('SO-8', { to: ['{{note}}'], subject: 'x', text: 'x' });
    await order('SO-8', { note: 'not an address' });
    expect((await executionOf(badAddress)).error_message).toContain(
      'send_email: config.to[0] is "not an address", which is neither an e-mail address nor a user or role id',
    );
  });
});
