import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { DeliveryWorker } from '../src/delivery/delivery-worker.js';
import type { Engine } from '../src/engine/engine.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import {
  addresses,
  deliveriesOf,
  rulesLoaded,
  settled,
  startReceiver,
  startSmtpServer,
  startWorker,
  verifySignature,
  type TestReceiver,
  type TestSmtpServer,
} from './support/delivery.js';
import { startEngine } from './support/engine.js';
import { createRule } from './support/rules.js';
import { waitFor } from './support/wait.js';

let db: TestDatabase;
let engine: Engine;
let smtp: TestSmtpServer;
let provider: TestReceiver;
let worker: DeliveryWorker | undefined;
let ann: string;
let bob: string;
let carl: string;
let opsRole: string;

beforeAll(async () => {
  db = await createTestDatabase();
  await db.query(`create table public.tickets (
    id uuid primary key default gen_random_uuid(),
    code text not null,
    customer text
  )`);
  const users = await db.query<{ id: string; name: string }>(
    `insert into core.users (email, name) values ('ann@example.com', 'Ann'), ('bob@example.com', 'Bob'), (null, 'Carl')
     returning id, name`,
  );
  [ann, bob, carl] = ['Ann', 'Bob', 'Carl'].map((name) => users.find((user) => user.name === name)!.id) as [
    string,
    string,
    string,
  ];
  [{ id: opsRole }] = (await db.query<{ id: string }>(
    `insert into core.roles (name) values ('ops') returning id`,
  )) as [{ id: string }];
  await db.query(`insert into core.user_roles (user_id, role_id) values ($1, $2)`, [bob, opsRole]);
  smtp = await startSmtpServer();
  provider = await startReceiver();
  engine = await startEngine(db);
});

afterEach(async () => {
  await worker?.stop();
  worker = undefined;
  smtp.messages.length = 0;
  provider.requests.length = 0;
  await db.query(`update workflow.automation_rules set is_active = false`);
});

afterAll(async () => {
  await engine?.stop();
  await smtp?.close();
  await provider?.close();
  await db?.drop();
});

function notificationRule(code: string, config: Record<string, unknown>): Promise<string> {
  return createRule(db, {
    name: code,
    entity: 'public.tickets',
    trigger: 'on_create',
    conditions: [{ field_name: 'code', operator: 'equals', value: code }],
    actions: [{ name: 'notify', config: { action_type: 'send_notification', ...config } }],
  });
}

async function ticket(code: string, customer = 'Globex <VIP>'): Promise<void> {
  await rulesLoaded(db, engine);
  await db.query(`insert into public.tickets (code, customer) values ($1, $2)`, [code, customer]);
}

async function executionOf(ruleId: string) {
  return waitFor('the execution', async () => {
    const [row] = await db.query<{
      id: string;
      status: string;
      error_message: string | null;
    }>(
      `select id, status, error_message from workflow.automation_executions where automation_rules_id = $1`,
      [ruleId],
    );
    return row;
  });
}

describe('send_notification', () => {
  it('writes one delivery per recipient and channel and delivers each channel its own way', async () => {
    const ruleId = await notificationRule('T-1', {
      recipients: { users: [ann, carl], roles: [opsRole] },
      channels: ['in_app', 'email', 'sms', 'push'],
      title: 'Ticket {{code}} escalated',
      body: 'Customer: {{customer}}',
      priority: 'high',
    });
    provider.answer = () => ({ status: 202, body: '{"queued":true}' });
    worker = startWorker(db, {
      smtpUrl: smtp.url,
      smsProviderUrl: `${provider.url}/sms`,
      pushProviderUrl: undefined,
      webhookSecret: 'provider-secret',
    });
    await worker.start();
    await ticket('T-1');

    const execution = await executionOf(ruleId);
    expect(execution.status).toBe('success');
    const rows = await waitFor('twelve settled deliveries', async () =>
      settled(await deliveriesOf(db, ruleId), 12),
    );
    const status = (recipient: string, channel: string) =>
      rows.find((row) => row.recipient_id === recipient && row.channel === channel)!;
    for (const user of [ann, bob, carl]) {
      expect(status(user, 'in_app')).toMatchObject({ status: 'delivered', attempts: 1, error_message: null });
      expect(status(user, 'in_app').delivered_at).toBeInstanceOf(Date);
      expect(status(user, 'sms')).toMatchObject({ status: 'sent', attempts: 1, delivered_at: null });
      expect(status(user, 'sms').provider_response).toMatchObject({
        http: { status: 202, body: '{"queued":true}' },
      });
      expect(status(user, 'push')).toMatchObject({
        status: 'failed',
        attempts: 1,
        sent_at: null,
        error_message: 'no PUSH_PROVIDER_URL configured: push notifications cannot be sent',
      });
      expect(rows.every((row) => row.automation_execution_id === execution.id)).toBe(true);
    }
    expect(status(ann, 'email')).toMatchObject({ status: 'sent', attempts: 1 });
    expect(status(bob, 'email')).toMatchObject({ status: 'sent', attempts: 1 });
    expect(status(carl, 'email')).toMatchObject({
      status: 'failed',
      attempts: 0,
      error_message: `user ${carl} (Carl) has no e-mail address in core.users`,
    });

    // E-mail: title as subject, body as text, high priority.
    expect(smtp.messages.map((mail) => mail.envelopeTo[0]).sort()).toEqual([
      'ann@example.com',
      'bob@example.com',
    ]);
    for (const mail of smtp.messages) {
      expect(mail.parsed.subject).toBe('Ticket T-1 escalated');
      expect(mail.parsed.text?.trim()).toBe('Customer: Globex <VIP>');
      expect(mail.raw).toMatch(/^X-Priority: 1 \(Highest\)\r?$/m);
      expect(mail.raw).toMatch(/^Importance: High\r?$/m);
      expect(addresses(mail.parsed.to)).toEqual(mail.envelopeTo);
    }

    // SMS: a signed JSON POST per user to the provider.
    const requests = provider.requestsTo('/sms');
    expect(requests).toHaveLength(3);
    for (const request of requests) {
      const body = JSON.parse(request.body) as Record<string, unknown>;
      const row = status(body.recipient_id as string, 'sms');
      expect(body).toEqual({
        delivery_id: row.id,
        notification_id: row.notification_id,
        channel: 'sms',
        recipient_id: row.recipient_id,
        title: 'Ticket T-1 escalated',
        body: 'Customer: Globex <VIP>',
        priority: 'high',
        rule_id: ruleId,
        action_id: row.action_id,
        automation_execution_id: execution.id,
        attempt: 1,
      });
      expect(request.headers['idempotency-key']).toBe(row.id);
      expect(
        verifySignature(request.headers['x-rulebook-signature'] as string, request.body, 'provider-secret'),
      ).toBe(true);
    }
    expect(new Set(requests.map((request) => JSON.parse(request.body).recipient_id))).toEqual(
      new Set([ann, bob, carl]),
    );
  });

  it('refuses unknown or mistyped recipients and unknown channels when the rule is written', async () => {
    const unknownRole = '00000000-0000-4000-8000-0000000000aa';
    await expect(
      notificationRule('T-2', { recipients: { users: [opsRole] }, title: 'x' }),
    ).rejects.toMatchObject({
      code: '22023',
      message: expect.stringContaining(
        `config.recipients.users[0] is role ${opsRole}, but it must be a user`,
      ) as unknown,
    });
    await expect(
      notificationRule('T-2', { recipients: { users: [ann], roles: [unknownRole] }, title: 'x' }),
    ).rejects.toMatchObject({
      code: '23503',
      message: expect.stringContaining(
        `config.recipients.roles[0] names role ${unknownRole}, which does not exist in core.roles`,
      ) as unknown,
    });
    await expect(
      notificationRule('T-2', { recipients: { users: [ann] }, channels: ['in_app', 'pigeon'], title: 'x' }),
    ).rejects.toMatchObject({
      code: '22023',
      message: expect.stringContaining('config.channels has "pigeon", which is not a channel') as unknown,
    });
  });

  it('fails the action for a role deleted after the rule was written', async () => {
    const [doomed] = await db.query<{ id: string }>(
      `insert into core.roles (name) values ('doomed') returning id`,
    );
    const unknown = await notificationRule('T-2', { recipients: { roles: [doomed!.id] }, title: 'x' });
    await db.query(`delete from core.roles where id = $1`, [doomed!.id]);
    await ticket('T-2');
    const execution = await executionOf(unknown);
    expect(execution.status).toBe('failed');
    expect(execution.error_message).toContain(
      `send_notification: unknown recipients: config.recipients.roles[0]: ${doomed!.id} is neither a user (core.users) nor a role (core.roles)`,
    );
    expect(await deliveriesOf(db, unknown)).toEqual([]);
  });

  it('defaults to in_app, delivered without any provider configured', async () => {
    const ruleId = await notificationRule('T-3', { recipients: { roles: [opsRole] }, title: 'Hi {{code}}' });
    worker = startWorker(db);
    await worker.start();
    await ticket('T-3');
    const [row] = await waitFor('the delivery', async () => settled(await deliveriesOf(db, ruleId), 1));
    expect(row).toMatchObject({ recipient_id: bob, channel: 'in_app', status: 'delivered', attempts: 1 });
    const [payload] = await db.query<{ payload: Record<string, unknown> }>(
      `select payload from workflow.notification_payloads where id = $1`,
      [row!.notification_id],
    );
    expect(payload!.payload).toEqual({
      kind: 'notification',
      title: 'Hi T-3',
      body: '',
      priority: 'medium',
      addresses: {},
      rule: { id: ruleId, name: 'T-3' },
    });
  });
});
