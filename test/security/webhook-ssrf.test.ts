import { randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';
import type { DeliveryWorker } from '../../src/delivery/delivery-worker.js';
import {
  DestinationGuard,
  nonPublicReason,
  WebhookAllowList,
  type ResolveHost,
} from '../../src/delivery/destination-guard.js';
import type { ClaimedDelivery } from '../../src/delivery/types.js';
import { postSignedJson } from '../../src/delivery/webhook-sender.js';
import type { Engine } from '../../src/engine/engine.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import {
  deliveriesOf,
  rulesLoaded,
  settled,
  startReceiver,
  startWorker,
  type TestReceiver,
} from '../support/delivery.js';
import { startEngine } from '../support/engine.js';
import { waitForExecutions } from '../support/executions.js';
import { createRule } from '../support/rules.js';
import { waitFor } from '../support/wait.js';
import { createTable } from '../support/tables.js';

/*
 * Issue 9 item 7: a rule's webhook URL takes values from rows that an application writer controls,
 * and the daemon posts, signed, wherever the URL points. The writer here is a role with INSERT on
 * its table and nothing else; the rules are a DBA's.
 */

const WRITER = `app_writer_${randomBytes(4).toString('hex')}`;

let db: TestDatabase;
let engine: Engine;
let receiver: TestReceiver;
let worker: DeliveryWorker | undefined;

beforeAll(async () => {
  db = await createTestDatabase();
  await createTable(db, 'shop.orders', `id serial primary key, order_number text not null, tag text`);
  await db.query(`create role ${WRITER} nologin`);
  await db.query(`grant usage on schema shop to ${WRITER}`);
  await db.query(`grant insert on shop.orders to ${WRITER}`);
  await db.query(`grant usage on sequence shop.orders_id_seq to ${WRITER}`);
  receiver = await startReceiver();
  engine = await startEngine(db);
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
  await db?.drop();
});

/** The allow-list exactly as the daemon reads it from its environment. */
function allowFromEnv(value: string): readonly string[] {
  return loadConfig({ RULEBOOK_WEBHOOK_ALLOW: value }).delivery.webhookAllow;
}

function hookRule(tag: string, url: string): Promise<string> {
  return createRule(db, {
    name: `hook ${tag}`,
    entity: 'shop.orders',
    trigger: 'on_create',
    conditions: [{ field_name: 'tag', operator: 'equals', value: tag }],
    actions: [{ name: 'hook', config: { action_type: 'webhook', url, body: { n: '{{order_number}}' } } }],
  });
}

/** The application writer inserts an order whose number it chose. */
async function writerInserts(tag: string, orderNumber: string): Promise<void> {
  await rulesLoaded(db, engine);
  await db.withClient(async (client) => {
    await client.query(`set role ${WRITER}`);
    try {
      await client.query(`insert into shop.orders (order_number, tag) values ($1, $2)`, [orderNumber, tag]);
    } finally {
      await client.query('reset role');
    }
  });
}

async function oneDelivery(ruleId: string) {
  const [row] = await waitFor('the delivery to settle', async () =>
    settled(await deliveriesOf(db, ruleId), 1),
  );
  return row!;
}

describe('row values in a webhook URL', () => {
  it('stay inside their path segment: "../../admin/reset-all?confirm=yes&x=" reaches no admin path', async () => {
    const ruleId = await hookRule('traversal', `${receiver.url}/hooks/orders/{{order_number}}`);
    worker = startWorker(db, { webhookAllow: allowFromEnv('127.0.0.1') });
    await worker.start();
    await writerInserts('traversal', '../../admin/reset-all?confirm=yes&x=');

    const row = await oneDelivery(ruleId);
    expect(row.status).toBe('delivered');
    expect(receiver.requests.map((request) => request.path)).toEqual([
      '/hooks/orders/..%2F..%2Fadmin%2Freset-all%3Fconfirm%3Dyes%26x%3D',
    ]);
  });

  it('stay inside their query component', async () => {
    const ruleId = await hookRule('query', `${receiver.url}/hooks?order={{order_number}}&v=1`);
    worker = startWorker(db, { webhookAllow: allowFromEnv('127.0.0.1') });
    await worker.start();
    await writerInserts('query', '7&confirm=yes#frag');

    expect((await oneDelivery(ruleId)).status).toBe('delivered');
    expect(receiver.requests.map((request) => request.path)).toEqual([
      '/hooks?order=7%26confirm%3Dyes%23frag&v=1',
    ]);
  });

  it('cannot be a "." or ".." segment, which URL parsing would resolve away', async () => {
    const ruleId = await hookRule('dots', `${receiver.url}/hooks/orders/{{order_number}}/confirm`);
    await writerInserts('dots', '..');
    const [execution] = await waitForExecutions(db, ruleId);
    expect(execution!.status).toBe('failed');
    expect(execution!.error_message).toContain('which has a "." or ".." path segment');
    expect(await deliveriesOf(db, ruleId)).toEqual([]);
  });

  it('can never choose the scheme, host or port: such a URL is refused when the rule is written', async () => {
    const cases = [
      ['host', 'http://{{order_number}}/hooks'],
      ['port', 'http://127.0.0.1:{{order_number}}/hooks'],
      ['scheme', '{{order_number}}://example.com/hooks'],
      ['glued', `${receiver.url}{{order_number}}`],
    ] as const;
    for (const [tag, url] of cases) {
      await expect(hookRule(tag, url), tag).rejects.toMatchObject({
        code: '22023',
        message: expect.stringContaining(
          'must spell out its scheme, host and port before any {{…}}',
        ) as unknown,
      });
    }
    expect(receiver.requests).toEqual([]);
  });
});

describe('non-public destinations', () => {
  it('are refused after DNS resolution without an allow-list: the delivery fails once, nothing is sent', async () => {
    const port = new URL(receiver.url).port;
    const literal = await hookRule('loopback', `${receiver.url}/hooks/{{order_number}}`);
    const named = await hookRule('localhost', `http://localhost:${port}/hooks/{{order_number}}`);
    worker = startWorker(db);
    await worker.start();
    await writerInserts('loopback', '1');
    await writerInserts('localhost', '2');

    const byLiteral = await oneDelivery(literal);
    expect(byLiteral).toMatchObject({ status: 'failed', attempts: 1 });
    expect(byLiteral.error_message).toBe(
      `POST ${receiver.url}/hooks/1 refused: 127.0.0.1 is a loopback address: webhooks go only to public ` +
        `addresses unless RULEBOOK_WEBHOOK_ALLOW lists the destination (for example 127.0.0.1:${port})`,
    );
    const byName = await oneDelivery(named);
    expect(byName).toMatchObject({ status: 'failed', attempts: 1 });
    expect(byName.error_message).toMatch(
      /refused: (127\.0\.0\.1|::1) is a loopback address \(localhost resolves to (127\.0\.0\.1|::1)\)/,
    );
    expect(receiver.requests).toEqual([]);
  });

  it('are reached when the allow-list names the host and port, and only that port', async () => {
    const port = Number(new URL(receiver.url).port);
    const allowed = await hookRule('allowed', `http://localhost:${port}/hooks/{{order_number}}`);
    const otherPort = await hookRule('other-port', `http://localhost:${port + 1}/hooks/{{order_number}}`);
    worker = startWorker(db, { webhookAllow: allowFromEnv(`localhost:${port}`) });
    await worker.start();
    await writerInserts('allowed', '3');
    await writerInserts('other-port', '4');

    expect(await oneDelivery(allowed)).toMatchObject({ status: 'delivered', attempts: 1 });
    const refused = await oneDelivery(otherPort);
    expect(refused).toMatchObject({ status: 'failed', attempts: 1 });
    expect(refused.error_message).toContain('is a loopback address');
    expect(receiver.requests.map((request) => request.path)).toEqual(['/hooks/3']);
  });

  it('are not reached through a redirect', async () => {
    const ruleId = await hookRule('redirect', `${receiver.url}/hooks/{{order_number}}`);
    receiver.answer = () => ({
      status: 307,
      headers: { location: 'http://169.254.169.254/latest/meta-data' },
    });
    worker = startWorker(db, { webhookAllow: allowFromEnv('127.0.0.0/8') });
    await worker.start();
    await writerInserts('redirect', '5');

    const row = await oneDelivery(ruleId);
    expect(row).toMatchObject({ status: 'failed', attempts: 1 });
    expect(row.error_message).toContain('redirects are not followed');
    expect(receiver.requests).toHaveLength(1);
  });
});

describe('the destination guard', () => {
  const delivery: ClaimedDelivery = {
    id: '00000000-0000-4000-8000-000000000001',
    notificationId: '00000000-0000-4000-8000-000000000002',
    recipientId: '00000000-0000-4000-8000-000000000003',
    channel: 'webhook',
    attempts: 1,
    ruleId: null,
    actionId: null,
    automationExecutionId: null,
    payload: null,
  };

  function post(url: string, guard: DestinationGuard) {
    return postSignedJson({
      url,
      body: '{}',
      secret: undefined,
      timeoutMs: 5_000,
      delivery,
      success: 'delivered',
      signal: new AbortController().signal,
      guard,
    });
  }

  it('connects to the address it checked, not to a second DNS answer (no rebinding)', async () => {
    const port = new URL(receiver.url).port;
    let lookups = 0;
    // `rebind.invalid` exists for no resolver: a connection that asked DNS again would fail.
    const resolve: ResolveHost = async () => {
      lookups++;
      return [{ address: '127.0.0.1', family: 4 }];
    };
    const guard = new DestinationGuard(new WebhookAllowList('127.0.0.1/32'), resolve);
    const outcome = await post(`http://rebind.invalid:${port}/pinned`, guard);
    expect(outcome.status).toBe('delivered');
    expect(lookups).toBe(1);
    expect(receiver.requestsTo('/pinned')).toHaveLength(1);
    expect(receiver.requestsTo('/pinned')[0]!.headers.host).toBe(`rebind.invalid:${port}`);
  });

  it('checks every address a name has, so one public answer cannot carry a private one', async () => {
    const resolve: ResolveHost = async () => [
      { address: '93.184.216.34', family: 4 },
      { address: '10.1.2.3', family: 4 },
    ];
    const outcome = await post(
      'https://mixed.invalid/x',
      new DestinationGuard(new WebhookAllowList(''), resolve),
    );
    expect(outcome).toMatchObject({ status: 'failed' });
    expect('error' in outcome && outcome.error).toContain(
      '10.1.2.3 is a private address (mixed.invalid resolves to 10.1.2.3)',
    );
  });

  it('refuses every kind of non-public address', () => {
    const refused = {
      '127.0.0.1': 'a loopback address',
      '10.0.0.1': 'a private address',
      '172.31.255.255': 'a private address',
      '192.168.1.1': 'a private address',
      '169.254.169.254': 'a link-local address',
      '0.0.0.0': 'an unspecified ("this network") address',
      '100.64.0.1': 'a shared (carrier-grade NAT) address',
      '::': 'the unspecified address',
      '::1': 'a loopback address',
      'fc00::1': 'a private (unique local) address',
      'fd12:3456::1': 'a private (unique local) address',
      'fe80::1': 'a link-local address',
      '::ffff:127.0.0.1': 'a loopback address',
      '::ffff:a9fe:a9fe': 'a link-local address',
      'ff02::1': 'a multicast address',
      '64:ff9b::a00:1': 'a NAT64 address (an IPv4 address inside IPv6)',
      '64:ff9b:1::7f00:1': 'a NAT64 address (an IPv4 address inside IPv6)',
      '2002:7f00:1::1': 'a 6to4 address (an IPv4 address inside IPv6)',
      '2001:0:4136:e378:8000:63bf:3fff:fdd2': 'a Teredo address (an IPv4 address inside IPv6)',
    };
    for (const [address, reason] of Object.entries(refused))
      expect(nonPublicReason(address), address).toBe(reason);
    for (const address of ['93.184.216.34', '172.32.0.1', '2606:4700::1111', '2001:4860::8888', '8.8.8.8']) {
      expect(nonPublicReason(address), address).toBeUndefined();
    }
  });

  it('reads RULEBOOK_WEBHOOK_ALLOW strictly, naming the bad entry', () => {
    expect(allowFromEnv(' hooks.internal, 10.0.0.0/8 ,[::1]:8080,127.0.0.1:9000')).toEqual([
      'hooks.internal',
      '10.0.0.0/8',
      '[::1]:8080',
      '127.0.0.1:9000',
    ]);
    expect(() => allowFromEnv('10.0.0.0/40')).toThrow(
      new ConfigError(
        'RULEBOOK_WEBHOOK_ALLOW: "10.0.0.0/40" is not a CIDR block such as 10.0.0.0/8 or fd00::/8',
      ),
    );
    expect(() => allowFromEnv('hooks.internal:http')).toThrow(
      'RULEBOOK_WEBHOOK_ALLOW: "hooks.internal:http" has port "http", not a port from 1 to 65535',
    );
    expect(() => allowFromEnv('http://hooks.internal/')).toThrow(ConfigError);
    const list = new WebhookAllowList('hooks.internal:8443,fd00::/8,127.0.0.1');
    expect(list.allowsHost('HOOKS.internal', 8443)).toBe(true);
    expect(list.allowsHost('hooks.internal', 443)).toBe(false);
    expect(list.allowsAddress('fd00::5', 1)).toBe(true);
    expect(list.allowsAddress('::ffff:127.0.0.1', 80)).toBe(true);
    expect(list.allowsAddress('10.0.0.1', 80)).toBe(false);
  });
});
