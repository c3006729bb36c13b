import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { startEngine, TEST_LOG_TABLE } from './support/engine.js';
import { createRule } from './support/rules.js';
import { waitFor } from './support/wait.js';

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase();
  await db.query(TEST_LOG_TABLE);
  await db.query(`create schema sales`);
  await db.query(`create table sales.orders (id int primary key, status text not null default 'new')`);
  await db.query(`insert into sales.orders (id) select g from generate_series(1, 3) g`);
  await createRule(db, {
    name: 'log orders',
    entity: 'sales.orders',
    trigger: 'on_update',
    conditions: [{ field_name: 'status', operator: 'changed' }],
    actions: [{ name: 'log', config: { action_type: 'test_log', label: 'order' } }],
  });
});

afterAll(async () => {
  await db.drop();
});

async function sleeping(daemonId: string): Promise<number> {
  const [row] = await db.query<{ n: string }>(
    `select count(*) as n from workflow.idle_daemons where daemon_id like $1`,
    [`${daemonId}/%`],
  );
  return Number(row!.n);
}

/** What writers read to decide whether to NOTIFY (sql/000024_wake_flag.sql). */
async function idleCount(): Promise<number> {
  const [row] = await db.query<{ n: string | null }>(
    `select pg_sequence_last_value('workflow.idle_daemons_count') as n`,
  );
  return Number(row!.n ?? 0);
}

async function idleRows(): Promise<number> {
  const [row] = await db.query<{ n: string }>(`select count(*) as n from workflow.idle_daemons`);
  return Number(row!.n);
}

async function connect(): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  return client;
}

async function backendPid(client: pg.Client): Promise<number> {
  const { rows } = await client.query<{ pid: number }>('select pg_backend_pid() as pid');
  return rows[0]!.pid;
}

describe('a sleeping claim loop', () => {
  it('says so in workflow.idle_daemons, is woken by each write long before its poll, and sleeps again', async () => {
    // A poll far longer than the test: only the wake-up can bring the events in time.
    const engine = await startEngine(db, { concurrency: 1, pollIntervalMs: 120_000 });
    try {
      await waitFor('the loop to sleep', async () => (await sleeping(engine.daemonId)) === 1);
      expect(await idleCount()).toBe(1);
      for (let id = 1; id <= 3; id++) {
        await db.query(`update sales.orders set status = 'paid' where id = $1`, [id]);
        await waitFor(
          `order ${id} to be handled`,
          async () => (await db.query(`select 1 from test_log`)).length === id,
          10_000,
        );
        await waitFor('the loop to sleep again', async () => (await sleeping(engine.daemonId)) === 1);
      }
    } finally {
      await engine.stop();
    }
    expect(await sleeping(engine.daemonId)).toBe(0);
    expect(await idleCount()).toBe(0);
  });
});

describe('the idle count writers read', () => {
  it('is right when one loop goes to sleep while another wakes, in either order of commits', async () => {
    const first = await connect();
    const second = await connect();
    try {
      for (const [sleeper, waker] of [
        [first, second],
        [second, first],
      ] as const) {
        await db.query('delete from workflow.idle_daemons');
        await waker.query(`insert into workflow.idle_daemons (daemon_id) values ('waker/0')`);
        // The sleeper's row is counted but not committed when the waker deletes its own: without
        // the lock the waker would count neither row and set 0 last.
        await sleeper.query('begin');
        await sleeper.query(`insert into workflow.idle_daemons (daemon_id) values ('sleeper/0')`);
        let woke = false;
        const waking = waker
          .query(`delete from workflow.idle_daemons where daemon_id = 'waker/0'`)
          .then(() => (woke = true));
        await waitFor('the waking loop to count, or to wait for the sleeping one', async () => {
          const [row] = await db.query<{ waiting: boolean }>(
            `select exists (select from pg_locks where locktype = 'advisory' and not granted) as waiting`,
          );
          return woke || row!.waiting;
        });
        await sleeper.query('commit');
        await waking;
        expect(await idleRows()).toBe(1);
        expect(await idleCount()).toBe(1);
      }
    } finally {
      await first.end();
      await second.end();
    }
    await db.query('delete from workflow.idle_daemons');
    expect(await idleCount()).toBe(0);
  });

  it('forgets a loop whose connection is gone at the next loop that goes to sleep', async () => {
    const dying = await connect();
    const pid = await backendPid(dying);
    await dying.query(`insert into workflow.idle_daemons (daemon_id) values ('crashed/0')`);
    await dying.end();
    await waitFor('the backend to go', async () => {
      const rows = await db.query('select 1 from pg_stat_activity where pid = $1', [pid]);
      return rows.length === 0;
    });
    expect(await idleCount()).toBe(1);
    const living = await connect();
    try {
      await living.query(`insert into workflow.idle_daemons (daemon_id) values ('living/0')`);
      const rows = await db.query<{ daemon_id: string }>('select daemon_id from workflow.idle_daemons');
      expect(rows.map((row) => row.daemon_id)).toEqual(['living/0']);
      expect(await idleCount()).toBe(1);
    } finally {
      await living.end();
    }
    await db.query('delete from workflow.idle_daemons');
  });

  it('wakes every loop of two daemons, two loops each, through rounds of writes, and counts them asleep', async () => {
    const engines = [
      await startEngine(db, { concurrency: 2, pollIntervalMs: 120_000 }),
      await startEngine(db, { concurrency: 2, pollIntervalMs: 120_000 }),
    ];
    try {
      // A loop that wakes and finds no work sleeps again at once, and its count moves before its
      // row commits; so the check is that both settle at four while every loop sleeps (a sleeping
      // loop runs no statement, so a wrong count would stay wrong and this would time out).
      const allAsleep = async () =>
        (await sleeping(engines[0]!.daemonId)) === 2 &&
        (await sleeping(engines[1]!.daemonId)) === 2 &&
        (await idleCount()) === 4;
      await waitFor('all four loops to sleep', allAsleep);
      for (let round = 0; round < 4; round++) {
        const logged = (await db.query('select 1 from test_log')).length;
        const status = round % 2 === 0 ? 'shipped' : 'paid';
        // Three writers at once wake loops that then race back to sleep together.
        await Promise.all(
          [1, 2, 3].map((id) => db.query(`update sales.orders set status = $2 where id = $1`, [id, status])),
        );
        await waitFor(
          `round ${round} to be handled`,
          async () => (await db.query('select 1 from test_log')).length === logged + 3,
          10_000,
        );
        await waitFor(`round ${round}: all four loops to sleep again`, allAsleep);
      }
    } finally {
      for (const engine of engines) await engine.stop();
    }
    expect(await idleCount()).toBe(0);
  });
});
