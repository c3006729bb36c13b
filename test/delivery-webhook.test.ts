import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import type { DeliveryWorker } from '../src/delivery/delivery-worker.js';
import { urlRecipientId } from '../src/delivery/uuid-v5.js';
import { parseRetryAfter, signatureHeader } from '../src/delivery/webhook-sender.js';
import type { Engine } from '../src/engine/engine.js';
import { freePort } from './support/free-port.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import {
  deliveriesOf,
  DELIVERY_HISTORY,
  historyOf,
  rulesLoaded,
  settled,
  startReceiver,
  startWorker,
  verifySignature,
  type TestReceiver,
} from './support/delivery.js';
import { startEngine } from './support/engine.js';
import { createRule } from './support/rules.js';
import { TestRoles } from './support/roles.js';
import { waitFor } from './support/wait.js';
import { createTable } from './support/tables.js';

// The receivers listen on 127.0.0.1, which webhooks may reach only when the allow-list names it.
const { webhookAllow } = loadConfig({ RULEBOOK_WEBHOOK_ALLOW: '127.0.0.1' }).delivery;

let db: TestDatabase;
let engine: Engine;
let receiver: TestReceiver;
let worker: DeliveryWorker | undefined;
let roles: TestRoles;

beforeAll(async () => {
  db = await createTestDatabase();
  await db.query(DELIVERY_HISTORY);
  await createTable(
    db,
    'billing.invoices',
    `
    id uuid primary key default gen_random_uuid(),
    number text not null,
    amount numeric(12,2),
    tenant text
  `,
  );
  receiver = await startReceiver();
  engine = await startEngine(db);
  roles = new TestRoles(db);
});

afterEach(async () => {
  await worker?.stop();
  worker = undefined;
  receiver.answer = () => ({ status: 200, body: 'ok' });
  receiver.requests.length = 0;
  await db.query(`update workflow.automation_rules set is_active = false`);
});

afterAll(async () => {
  await engine?.stop();
  await receiver?.close();
  await roles?.endPools();
  await db?.drop();
  await roles?.dropRoles();
});

function webhookRule(name: string, config: Record<string, unknown>): Promise<string> {
  return createRule(db, {
    name,
    entity: 'billing.invoices',
    trigger: 'on_create',
    conditions: [{ field_name: 'number', operator: 'equals', value: name }],
    actions: [{ name: 'hook', config: { action_type: 'webhook', ...config } }],
  });
}

async function invoice(number: string, amount = 10, tenant = 'acme'): Promise<void> {
  await rulesLoaded(db, engine);
  await db.query(`insert into billing.invoices (number, amount, tenant) values ($1, $2, $3)`, [
    number,
    amount,
    tenant,
  ]);
}

async function oneDelivery(ruleId: string) {
  const [row] = await waitFor('the delivery to settle', async () =>
    settled(await deliveriesOf(db, ruleId), 1),
  );
  return row!;
}

describe('webhook', () => {
  it('POSTs the rendered JSON body, signed, with the delivery id as Idempotency-Key', async () => {
    const ruleId = await webhookRule('INV-1', {
      url: `${receiver.url}/hooks/{{tenant}}`,
      body: { invoice: '{{number}}', amount: '{{amount}}', text: 'Invoice {{number}} <paid> & done' },
      headers: { 'X-Tenant': '{{tenant}}' },
      secret: 'action-secret',
    });
    receiver.answer = () => ({ status: 200, headers: { 'content-type': 'text/plain' }, body: 'thanks' });
    worker = startWorker(db, { webhookAllow, webhookSecret: 'not-this-one' });
    await worker.start();
    await invoice('INV-1', 125.5);

    const row = await oneDelivery(ruleId);
    const url = `${receiver.url}/hooks/acme`;
    expect(row).toMatchObject({
      channel: 'webhook',
      status: 'delivered',
      attempts: 1,
      recipient_id: urlRecipientId(url),
      error_message: null,
      failed_at: null,
    });
    expect(row.sent_at).toBeInstanceOf(Date);
    expect(row.delivered_at).toBeInstanceOf(Date);
    expect(row.provider_response).toMatchObject({
      http: { url, status: 200, body: 'thanks', content_type: 'text/plain', signed: true },
    });

    const [request] = receiver.requestsTo('/hooks/acme');
    expect(receiver.requests).toHaveLength(1);
    expect(request!.method).toBe('POST');
    expect(request!.headers['content-type']).toBe('application/json');
    expect(request!.headers['x-tenant']).toBe('acme');
    expect(request!.headers['idempotency-key']).toBe(row.id);
    expect(request!.headers['x-rulebook-delivery-id']).toBe(row.id);
    expect(request!.headers['x-rulebook-attempt']).toBe('1');
    // Text is not HTML-escaped; "{{amount}}" alone keeps the column's value, a number.
    expect(JSON.parse(request!.body)).toEqual({
      invoice: 'INV-1',
      amount: 125.5,
      text: 'Invoice INV-1 <paid> & done',
    });
    const signature = request!.headers['x-rulebook-signature'] as string;
    expect(signature).toMatch(/^t=\d+,v1=[0-9a-f]{64}$/);
    expect(verifySignature(signature, request!.body, 'action-secret')).toBe(true);
    expect(verifySignature(signature, request!.body, 'not-this-one')).toBe(false);
    expect(verifySignature(signature, request!.body.replace('INV-1', 'INV-2'), 'action-secret')).toBe(false);
  });

  it('retries a 500 with the same body and Idempotency-Key, signing with WEBHOOK_SECRET', async () => {
    const ruleId = await webhookRule('INV-2', { url: `${receiver.url}/flaky`, body: { n: '{{number}}' } });
    receiver.answer = (_request, index) =>
      index === 0 ? { status: 500, body: 'database on fire' } : { status: 204 };
    worker = startWorker(db, { webhookAllow, webhookSecret: 'env-secret' });
    await worker.start();
    await invoice('INV-2');

    const row = await oneDelivery(ruleId);
    expect(row).toMatchObject({ status: 'delivered', attempts: 2, error_message: null });
    const requests = receiver.requestsTo('/flaky');
    expect(requests).toHaveLength(2);
    expect(requests.map((request) => request.headers['idempotency-key'])).toEqual([row.id, row.id]);
    expect(requests.map((request) => request.headers['x-rulebook-attempt'])).toEqual(['1', '2']);
    expect(requests[1]!.body).toBe(requests[0]!.body);
    for (const request of requests) {
      expect(
        verifySignature(request.headers['x-rulebook-signature'] as string, request.body, 'env-secret'),
      ).toBe(true);
    }
    const history = await historyOf(db, row.id);
    expect(history.map((entry) => [entry.status, entry.attempts])).toEqual([
      ['pending', 0],
      ['retrying', 1],
      ['retrying', 1],
      ['retrying', 2],
      ['delivered', 2],
    ]);
    expect(history[2]!.error_message).toBe(
      `POST ${receiver.url}/flaky answered 500 Internal Server Error: database on fire`,
    );
  });

  it('fails a 400 at once and does not retry it', async () => {
    const ruleId = await webhookRule('INV-3', { url: `${receiver.url}/strict` });
    receiver.answer = () => ({ status: 400, body: '{"error":"unknown field"}' });
    worker = startWorker(db, { webhookAllow });
    await worker.start();
    await invoice('INV-3');

    const row = await oneDelivery(ruleId);
    expect(row).toMatchObject({ status: 'failed', attempts: 1, sent_at: null, delivered_at: null });
    expect(row.failed_at).toBeInstanceOf(Date);
    expect(row.error_message).toBe(
      `POST ${receiver.url}/strict answered 400 Bad Request: {"error":"unknown field"}`,
    );
    expect(row.provider_response).toMatchObject({ http: { status: 400, signed: false } });
    expect(receiver.requestsTo('/strict')).toHaveLength(1);
    // Without a body in the config the change itself is sent, unsigned without any secret.
    const body = JSON.parse(receiver.requestsTo('/strict')[0]!.body) as Record<string, unknown>;
    expect(body).toMatchObject({
      rule: { id: ruleId, name: 'INV-3' },
      entity: { name: 'invoices', schema_name: 'billing' },
      event: { operation: 'on_create' },
      new: { number: 'INV-3', tenant: 'acme' },
      old: null,
    });
    expect(receiver.requestsTo('/strict')[0]!.headers['x-rulebook-signature']).toBeUndefined();
    expect((await historyOf(db, row.id)).map((entry) => entry.status)).toEqual([
      'pending',
      'retrying',
      'failed',
    ]);
  });

  it('waits as long as Retry-After asks before the next attempt', async () => {
    const ruleId = await webhookRule('INV-4', { url: `${receiver.url}/busy` });
    receiver.answer = (_request, index) =>
      index === 0 ? { status: 503, headers: { 'retry-after': '1' }, body: 'busy' } : { status: 200 };
    worker = startWorker(db, { webhookAllow, retryBaseMs: 10 });
    await worker.start();
    await invoice('INV-4');

    const row = await oneDelivery(ruleId);
    expect(row).toMatchObject({ status: 'delivered', attempts: 2 });
    const [first, second] = receiver.requestsTo('/busy');
    // Backoff alone would have retried after 20 ms.
    expect(second!.at - first!.at).toBeGreaterThanOrEqual(1_000);
    const recorded = (await historyOf(db, row.id))[2]!;
    expect(recorded.status).toBe('retrying');
    expect(recorded.provider_response).toMatchObject({ http: { status: 503, retry_after_ms: 1000 } });
    expect(typeof recorded.provider_response!.not_before).toBe('string');
  });

  it('retries a request that times out', async () => {
    const ruleId = await webhookRule('INV-5', { url: `${receiver.url}/slow`, timeout_ms: 300 });
    receiver.answer = (_request, index) => (index === 0 ? { status: 200, delayMs: 5_000 } : { status: 200 });
    worker = startWorker(db, { webhookAllow });
    await worker.start();
    await invoice('INV-5');

    const row = await oneDelivery(ruleId);
    expect(row).toMatchObject({ status: 'delivered', attempts: 2 });
    expect(receiver.requestsTo('/slow')).toHaveLength(2);
    expect((await historyOf(db, row.id))[2]!.error_message).toBe(
      `POST ${receiver.url}/slow: no answer within 300 ms`,
    );
  });

  it('gives up after DELIVERY_MAX_ATTEMPTS', async () => {
    const ruleId = await webhookRule('INV-6', { url: `${receiver.url}/down` });
    receiver.answer = () => ({ status: 502, body: 'bad gateway' });
    worker = startWorker(db, { webhookAllow, maxAttempts: 3 });
    await worker.start();
    await invoice('INV-6');

    const row = await oneDelivery(ruleId);
    expect(row).toMatchObject({ status: 'failed', attempts: 3 });
    expect(row.error_message).toBe(
      `POST ${receiver.url}/down answered 502 Bad Gateway: bad gateway (gave up after 3 attempts: DELIVERY_MAX_ATTEMPTS is 3)`,
    );
    expect(receiver.requestsTo('/down')).toHaveLength(3);
  });

  it('retries a refused connection', async () => {
    const port = await freePort();
    const ruleId = await webhookRule('INV-7', { url: `http://127.0.0.1:${port}/nothing` });
    worker = startWorker(db, { webhookAllow, maxAttempts: 2 });
    await worker.start();
    await invoice('INV-7');

    const row = await oneDelivery(ruleId);
    expect(row).toMatchObject({ status: 'failed', attempts: 2 });
    expect(row.error_message).toMatch(
      new RegExp(
        `^POST http://127\\.0\\.0\\.1:${port}/nothing failed: .*ECONNREFUSED.*gave up after 2 attempts`,
      ),
    );
  });

  it('stop() aborts a send that outlasts the grace period; the next worker attempts it again', async () => {
    const ruleId = await webhookRule('INV-9', { url: `${receiver.url}/hang`, timeout_ms: 60_000 });
    receiver.answer = (_request, index) => (index === 0 ? { status: 200, delayMs: 30_000 } : { status: 200 });
    worker = startWorker(db, { webhookAllow, stopGraceMs: 200 });
    await worker.start();
    await invoice('INV-9');
    await waitFor('the first request', () => receiver.requestsTo('/hang').length === 1);
    await worker.stop();
    const [stopped] = await deliveriesOf(db, ruleId);
    expect(stopped).toMatchObject({
      status: 'retrying',
      attempts: 1,
      error_message: `POST ${receiver.url}/hang: the worker stopped while waiting for the answer; the outcome is unknown`,
    });

    worker = startWorker(db, { webhookAllow });
    await worker.start();
    const row = await oneDelivery(ruleId);
    expect(row).toMatchObject({ status: 'delivered', attempts: 2, error_message: null });
    const requests = receiver.requestsTo('/hang');
    expect(requests.map((request) => request.headers['idempotency-key'])).toEqual([row.id, row.id]);
  });

  it('refuses a URL that is not http(s) or a header rulebook sets itself when the rule is written', async () => {
    const refused = [
      [
        { url: 'ftp://example.com/x' },
        'webhook config.url must be an http:// or https:// URL, got "ftp://example.com/x"',
      ],
      [
        { url: `${receiver.url}/x`, headers: { 'Idempotency-Key': 'mine' } },
        'webhook config.headers.Idempotency-Key is set by rulebook and cannot be given',
      ],
      [
        { url: `${receiver.url}/x`, headers: { 'Transfer-Encoding': 'chunked' } },
        'webhook config.headers.Transfer-Encoding is set by rulebook and cannot be given',
      ],
    ] as const;
    for (const [config, message] of refused) {
      await expect(webhookRule('INV-8', config)).rejects.toMatchObject({
        code: '22023',
        message: expect.stringContaining(message) as unknown,
      });
    }
  });

  it('fails the action once for a row value a header cannot carry', async () => {
    // Known only when the row is there: the action fails once, instead of every delivery attempt.
    const unsendable = await webhookRule('INV-8', {
      url: `${receiver.url}/x`,
      headers: { 'X-Tenant': '{{number}} €' },
    });
    await invoice('INV-8');
    const execution = await waitFor('the execution', async () => {
      const [row] = await db.query<{ status: string; error_message: string }>(
        `select status, error_message from workflow.automation_executions where automation_rules_id = $1`,
        [unsendable],
      );
      return row;
    });
    expect(execution.status).toBe('failed');
    expect(execution.error_message).toContain(
      'webhook: config.headers.X-Tenant may hold only Latin-1 characters, which is all a header can carry; put other text in the body',
    );
    expect(await deliveriesOf(db, unsendable)).toEqual([]);
  });
});

describe('webhook secrets', () => {
  async function pendingDelivery(ruleId: string) {
    const [row] = await waitFor('the queued delivery', async () => {
      const rows = await deliveriesOf(db, ruleId);
      return rows.length === 1 ? rows : undefined;
    });
    return row!;
  }

  it("are never stored with the payload; the worker signs with the action's secret as it is at send time", async () => {
    const admin = await roles.login('secret_admin', 'grant rulebook_admin to %I');
    const reader = await roles.login('secret_reader', 'grant rulebook_outbox_reader to %I');
    const ruleId = await webhookRule('INV-S1', {
      url: `${receiver.url}/signed`,
      body: { n: '{{number}}' },
      secret: 'first-action-secret',
    });
    await invoice('INV-S1');
    const queued = await pendingDelivery(ruleId);

    const [stored] = await admin.query<{ payload: Record<string, unknown>; text: string }>(
      `select payload, payload::text as text from workflow.notification_payloads where id = $1`,
      [queued.notification_id],
    );
    expect(stored!.payload).toMatchObject({ kind: 'webhook', own_secret: true });
    expect(stored!.payload).not.toHaveProperty('secret');
    expect(stored!.text).not.toContain('first-action-secret');
    const outbox = await reader.query<{ text: string }>(
      `select coalesce(string_agg(o::text, ''), '') as text from workflow.outbox o`,
    );
    expect(outbox[0]!.text).not.toContain('first-action-secret');
    await expect(reader.query(`select payload from workflow.notification_payloads`)).rejects.toMatchObject({
      code: '42501',
    });

    // Rotated after the delivery was queued: the new secret signs it.
    await db.query(
      `update workflow.rule_actions set action_config = action_config || '{"secret": "rotated-secret"}'
        where automation_rules_id = $1`,
      [ruleId],
    );
    worker = startWorker(db, { webhookAllow, webhookSecret: 'env-secret' });
    await worker.start();
    expect((await oneDelivery(ruleId)).status).toBe('delivered');
    const [request] = receiver.requestsTo('/signed');
    const signature = request!.headers['x-rulebook-signature'] as string;
    expect(verifySignature(signature, request!.body, 'rotated-secret')).toBe(true);
    expect(verifySignature(signature, request!.body, 'env-secret')).toBe(false);
  });

  it('fail, unsent, when the action and its secret are gone by the time of sending', async () => {
    const ruleId = await webhookRule('INV-S2', { url: `${receiver.url}/gone`, secret: 'doomed-secret' });
    await invoice('INV-S2');
    const queued = await pendingDelivery(ruleId);
    const [action] = await db.query<{ id: string }>(
      `select id from workflow.rule_actions where automation_rules_id = $1`,
      [ruleId],
    );
    // The delivery row's reference is what keeps an action from being deleted; without it, it can be.
    await db.query(`update workflow.notification_deliveries set action_id = null where id = $1`, [queued.id]);
    await db.query(`delete from workflow.rule_actions where id = $1`, [action!.id]);

    worker = startWorker(db, { webhookAllow, webhookSecret: 'env-secret' });
    await worker.start();
    const row = await oneDelivery(ruleId);
    expect(row.status).toBe('failed');
    expect(row.error_message).toContain(
      'no longer exists, and its secret went with it: the request was not sent',
    );
    expect(receiver.requestsTo('/gone')).toEqual([]);
  });
});

describe('signing and Retry-After', () => {
  it('signs "<t>.<body>" with HMAC-SHA256 (vector computed with openssl dgst -sha256 -hmac)', () => {
    expect(signatureHeader('secret', '{"a":1}', 1700000000)).toBe(
      't=1700000000,v1=49f24e537407743fa4a0242bb63b94b9a47ee99cbbe071ccd8a22550ae411686',
    );
  });

  it('reads Retry-After as seconds or as an HTTP date', () => {
    const now = Date.parse('2026-01-01T00:00:00Z');
    expect(parseRetryAfter('120', now)).toBe(120_000);
    expect(parseRetryAfter('Thu, 01 Jan 2026 00:00:30 GMT', now)).toBe(30_000);
    expect(parseRetryAfter('Wed, 31 Dec 2025 23:00:00 GMT', now)).toBe(0);
    expect(parseRetryAfter('soon', now)).toBeUndefined();
    expect(parseRetryAfter(null, now)).toBeUndefined();
  });
});
