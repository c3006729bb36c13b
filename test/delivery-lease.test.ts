import type { AddressInfo } from 'node:net';
import { SMTPServer } from 'smtp-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DeliveryWorker } from '../src/delivery/delivery-worker.js';
import type { Engine } from '../src/engine/engine.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { deliveriesOf, rulesLoaded, startWorker } from './support/delivery.js';
import { startEngine } from './support/engine.js';
import { createRule } from './support/rules.js';
import { waitFor } from './support/wait.js';
import { createTable } from './support/tables.js';

/*
 * Issue 9 item 12: a delivery's lease was a fixed 300 s, and an SMTP session may take longer (every
 * step may take up to the SMTP timeout), after which a second worker took the delivery over and
 * sent the message again. Here the lease is 1 s and the SMTP server holds the message at DATA
 * until the test lets it go, long after the first lease would have run out.
 */

// Short enough for a quick test, long enough that renewals (every third of it) still land in time
// on a machine busy running the whole suite.
const LEASE_MS = 1_000;

let db: TestDatabase;
let engine: Engine;
const workers: DeliveryWorker[] = [];

interface SlowSmtp {
  readonly url: string;
  /** Messages whose DATA reached the server, held or answered. */
  readonly received: string[];
  release(): void;
  close(): Promise<void>;
}

/** An SMTP server that answers the end of DATA only once released. */
async function startSlowSmtp(): Promise<SlowSmtp> {
  let release: () => void = () => {};
  const released = new Promise<void>((resolve) => (release = resolve));
  const received: string[] = [];
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS', 'AUTH'],
    logger: false,
    onData(stream, _session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('end', () => {
        received.push(Buffer.concat(chunks).toString('utf8'));
        void released.then(() => callback(null));
      });
    },
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.server.address() as AddressInfo;
  return {
    url: `smtp://127.0.0.1:${port}`,
    received,
    release,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

beforeAll(async () => {
  db = await createTestDatabase();
  await createTable(db, 'shop.orders', `id serial primary key, number text not null`);
  engine = await startEngine(db);
});

afterAll(async () => {
  for (const worker of workers) await worker.stop();
  await engine?.stop();
  await db?.drop();
});

describe('the delivery lease', () => {
  it('outlasts a slow SMTP send: a second worker does not send the message again', async () => {
    const smtp = await startSlowSmtp();
    try {
      const ruleId = await createRule(db, {
        name: 'slow mail',
        entity: 'shop.orders',
        trigger: 'on_create',
        actions: [
          {
            name: 'mail',
            config: {
              action_type: 'send_email',
              to: ['ann@example.com'],
              subject: 'Order {{number}}',
              text: 'x',
            },
          },
        ],
      });
      const options = { smtpUrl: smtp.url, leaseMs: LEASE_MS, smtpTimeoutMs: 30_000, pollIntervalMs: 20 };
      const first = startWorker(db, { ...options, workerId: 'worker-a' });
      const second = startWorker(db, { ...options, workerId: 'worker-b' });
      workers.push(first, second);
      await first.start();
      await second.start();
      await rulesLoaded(db, engine);
      await db.query(`insert into shop.orders (number) values ('SO-1')`);

      await waitFor('the message to reach DATA', () => smtp.received.length === 1);
      const [claimed] = await db.query<{ claimed_at: string; claimed_by: string }>(
        `select provider_response ->> 'claimed_at' as claimed_at, provider_response ->> 'claimed_by' as claimed_by
           from workflow.notification_deliveries where rule_id = $1`,
        [ruleId],
      );
      // Until the first lease has run out three times over, by the database's clock, while both
      // workers keep polling every 20 ms.
      await waitFor('three lease lengths to pass', async () => {
        const [row] = await db.query<{ passed: boolean }>(
          `select now() > $1::timestamptz + $2 * interval '1 millisecond' as passed`,
          [claimed!.claimed_at, 3 * LEASE_MS],
        );
        return row!.passed;
      });
      const [during] = await deliveriesOf(db, ruleId);
      expect(during).toMatchObject({ status: 'retrying', attempts: 1 });
      expect(during!.provider_response).toMatchObject({ claimed_by: claimed!.claimed_by });
      // The lease was pushed on while the send ran.
      expect(Date.parse(String(during!.provider_response!.not_before))).toBeGreaterThan(
        Date.parse(claimed!.claimed_at) + 2 * LEASE_MS,
      );
      expect(smtp.received).toHaveLength(1);

      smtp.release();
      const done = await waitFor('the delivery to be sent', async () => {
        const [row] = await deliveriesOf(db, ruleId);
        return row?.status === 'sent' ? row : undefined;
      });
      expect(done).toMatchObject({ status: 'sent', attempts: 1, error_message: null });
      expect(smtp.received).toHaveLength(1);
    } finally {
      smtp.release();
      await smtp.close();
    }
  });
});
