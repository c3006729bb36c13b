import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { leaveWalMode } from '../src/capture/wal/capture-mode.js';
import { WalCapture } from '../src/capture/wal/wal-capture.js';
import { WalReader } from '../src/capture/wal/wal-reader.js';
import { DECLARE_DEPTH_SQL } from '../src/capture/wal/wal-context.js';
import { checkWalRequirements } from '../src/capture/wal/wal-requirements.js';
import { ConfigError, loadConfig } from '../src/config.js';
import { createLogger } from '../src/logger.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { startEngine } from './support/engine.js';
import { startHttp } from './support/staff.js';
import { createRule, ensureDba } from './support/rules.js';
import { waitFor } from './support/wait.js';

// RULEBOOK_CAPTURE=wal (docs/capture-wal.md): what a DBA sees in workflow.events when changes are
// read from the WAL instead of captured by triggers. The first test writes in trigger mode and
// then the same in WAL mode, and the two sets of events must be the same.

const logger = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent');
let db: TestDatabase;
let ordersId: string;
const captures: WalCapture[] = [];

interface EventRow {
  entity_id: string;
  aggregate_type: string;
  operation: string;
  row_key: unknown;
  old_row: Record<string, unknown> | null;
  new_row: Record<string, unknown> | null;
  txid: string;
  actor_id: string | null;
  depth: number;
}

const EVENT_COLUMNS =
  'entity_id, aggregate_type, operation, row_key, old_row, new_row, txid::text, actor_id, depth';

async function events(): Promise<EventRow[]> {
  return db.query<EventRow>(`select ${EVENT_COLUMNS} from workflow.events order by id`);
}

async function eventCount(): Promise<number> {
  const [row] = await db.query<{ count: number }>('select count(*)::int as count from workflow.events');
  return row!.count;
}

async function startCapture(options: { batchSize?: number } = {}): Promise<WalCapture> {
  const capture = new WalCapture({
    databaseUrl: db.url,
    logger,
    batchSize: options.batchSize ?? 100,
    retryMs: 100,
  });
  captures.push(capture);
  await capture.start();
  await waitFor('a reader', () => captures.some((c) => c.isReader));
  return capture;
}

async function stopCaptures(): Promise<void> {
  for (const capture of captures.splice(0)) await capture.stop();
}

/** The slot's confirmed position has passed every change committed so far. */
async function caughtUp(): Promise<void> {
  const [{ lsn }] = (await db.query<{ lsn: string }>('select pg_current_wal_insert_lsn()::text as lsn')) as [
    { lsn: string },
  ];
  await waitFor('the slot to confirm everything written', async () => {
    const [row] = await db.query<{ done: boolean }>(
      `select confirmed_flush_lsn >= $1::pg_lsn as done
         from pg_replication_slots s join workflow.capture_settings c on c.slot_name = s.slot_name`,
      [lsn],
    );
    return row?.done;
  });
}

/** Each of the writes in its own transaction; returns the writers' transaction ids. */
async function writeScript(): Promise<string[]> {
  const statements = [
    `insert into sales.orders (id, status, amount, tags, placed_at, flag, data)
     values (1, 'new', 12.50, '{a,b}', '2026-01-02 03:04:05+00', true, '{"k": [1, 2]}')`,
    `insert into sales.orders (id, status, note) values (2, 'new', 'second')`,
    `update sales.orders set status = 'paid', amount = 13 where id = 1`,
    `update sales.orders set note = 'irrelevant' where id = 2`,
    `delete from sales.orders where id = 2`,
  ];
  const txids: string[] = [];
  await db.withClient(async (client) => {
    for (const statement of statements) {
      await client.query('begin');
      await client.query(statement);
      txids.push((await client.query<{ t: string }>('select pg_current_xact_id()::text as t')).rows[0]!.t);
      await client.query('commit');
    }
  });
  return txids;
}

beforeAll(async () => {
  db = await createTestDatabase();
  await db.query(`
    create schema sales;
    create table sales.orders (
      id bigint primary key,
      status text not null default 'new',
      note text,
      amount numeric(10, 2),
      tags text[],
      placed_at timestamptz,
      flag boolean,
      body text,
      data jsonb
    );
    create table sales.unwatched (id int primary key, v text);
  `);
  const [entity] = await db.query<{ id: string }>(`select workflow.register_entity('sales.orders') as id`);
  ordersId = entity!.id;
  const dba = await ensureDba(db);
  for (const [trigger, watch] of [
    ['on_create', null],
    ['on_update', ['status']],
    ['on_delete', null],
  ] as const) {
    await db.query(
      `insert into workflow.automation_rules
         (name, entity_id, entity_type_id, trigger_type_id, trigger_conditions, is_active, created_by, updated_by)
       select $1, e.id, e.entity_type_id, t.id, $3::jsonb, true, $4, $4
         from workflow.entities e, workflow.trigger_types t where e.id = $2 and t.name = $1`,
      [
        trigger,
        ordersId,
        watch &&
          JSON.stringify({ field_conditions: watch.map((f) => ({ field_name: f, operator: 'changed' })) }),
        dba,
      ],
    );
  }
});

afterAll(async () => {
  await stopCaptures();
  // A slot left behind would keep the server's WAL, and DROP DATABASE refuses a database with one.
  if (db) {
    await db.withClient((client) => leaveWalMode(client, logger));
    await db.query(
      `select pg_drop_replication_slot(slot_name) from pg_replication_slots where database = current_database()`,
    );
    await db.drop();
  }
});

describe('WAL capture', () => {
  it('writes the same events as the triggers, for inserts, updates and deletes', async () => {
    const triggerTxids = await writeScript();
    const fromTriggers = await events();
    expect(fromTriggers.map((e) => e.operation)).toEqual([
      'on_create',
      'on_create',
      'on_update',
      'on_delete',
    ]);
    await db.query('delete from workflow.events; delete from sales.orders; delete from workflow.events');

    await startCapture();
    const [settings] = await db.query<{ mode: string }>('select mode from workflow.capture_settings');
    expect(settings!.mode).toBe('wal');
    const [identity] = await db.query<{ relreplident: string }>(
      `select relreplident from pg_class where oid = 'sales.orders'::regclass`,
    );
    expect(identity!.relreplident).toBe('f');

    const walTxids = await writeScript();
    await waitFor('four events from the WAL', async () => (await eventCount()) >= 4);
    await caughtUp();
    const fromWal = await events();
    const withoutTxid = (rows: EventRow[]) => rows.map(({ txid: _txid, ...rest }) => rest);
    expect(withoutTxid(fromWal)).toEqual(withoutTxid(fromTriggers));
    // The writers' own transaction ids, as the trigger records them.
    expect(fromTriggers.map((e) => e.txid)).toEqual([0, 1, 2, 4].map((i) => triggerTxids[i]));
    expect(fromWal.map((e) => e.txid)).toEqual([0, 1, 2, 4].map((i) => walTxids[i]));
    // created_at is the commit time, not a later append time.
    const [created] = await db.query<{ ok: boolean }>(
      `select bool_and(created_at <= clock_timestamp() and created_at > clock_timestamp() - interval '1 minute') as ok
         from workflow.events`,
    );
    expect(created!.ok).toBe(true);
  });

  it('appends nothing for writes no rule watches and for unregistered tables', async () => {
    await db.query('delete from workflow.events');
    await db.query(`insert into sales.orders (id, status) values (10, 'new')`);
    await db.query(`update sales.orders set note = 'only the note' where id = 10`);
    await db.query(`insert into sales.unwatched values (1, 'x')`);
    await caughtUp();
    expect((await events()).map((e) => e.operation)).toEqual(['on_create']);
  });

  it('fills an unchanged TOASTed value from the old row', async () => {
    await db.query('delete from workflow.events');
    // Random text that does not compress below the TOAST threshold, so it is stored out of line.
    await db.query(`insert into sales.orders (id, status, body)
                    select 20, 'new', string_agg(md5(random()::text), '') from generate_series(1, 400)`);
    await db.query(`update sales.orders set status = 'paid' where id = 20`);
    await caughtUp();
    const [stored] = await db.query<{ body: string }>('select body from sales.orders where id = 20');
    const rows = await events();
    expect(rows.map((e) => e.operation)).toEqual(['on_create', 'on_update']);
    expect(stored!.body.length).toBe(12_800);
    expect(rows[1]!.new_row!.body).toBe(stored!.body);
    expect(rows[1]!.old_row!.body).toBe(stored!.body);
    expect(rows[1]!.new_row!.status).toBe('paid');
  });

  it('follows registrations: a table registered in WAL mode is captured by the reader, not by its triggers', async () => {
    await db.query('delete from workflow.events');
    await db.query(`create table sales.items (sku text primary key, qty int not null)`);
    const [entity] = await db.query<{ id: string }>(`select workflow.register_entity('sales.items') as id`);
    const dba = await ensureDba(db);
    await db.query(
      `insert into workflow.automation_rules
         (name, entity_id, entity_type_id, trigger_type_id, is_active, created_by, updated_by)
       select 'items created', e.id, e.entity_type_id, t.id, true, $2, $2
         from workflow.entities e, workflow.trigger_types t where e.id = $1 and t.name = 'on_create'`,
      [entity!.id, dba],
    );
    const [state] = await db.query<{ identity: string; disabled: number; published: boolean }>(
      `select (select relreplident from pg_class where oid = 'sales.items'::regclass) as identity,
              (select count(*)::int from pg_trigger where tgrelid = 'sales.items'::regclass
                  and tgname like 'rulebook_capture_%' and tgenabled = 'D') as disabled,
              exists (select from pg_publication_tables where pubname = 'rulebook_capture' and tablename = 'items') as published`,
    );
    expect(state).toEqual({ identity: 'f', disabled: 3, published: true });
    // The writer's own transaction sees no event: the trigger did not fire.
    await db.withClient(async (client) => {
      await client.query('begin');
      await client.query(`insert into sales.items values ('a', 1)`);
      const { rows } = await client.query<{ n: number }>('select count(*)::int as n from workflow.events');
      expect(rows[0]!.n).toBe(0);
      await client.query('commit');
    });
    await caughtUp();
    const rows = await events();
    expect(rows.map((e) => [e.aggregate_type, e.operation, e.row_key])).toEqual([
      ['sales.items', 'on_create', { sku: 'a' }],
    ]);
    // Deleting the entity takes the table out of the publication and gives back its identity.
    await db.query('delete from workflow.automation_rules where entity_id = $1', [entity!.id]);
    await db.query('delete from workflow.entities where id = $1', [entity!.id]);
    const [after] = await db.query<{ identity: string; published: boolean }>(
      `select (select relreplident from pg_class where oid = 'sales.items'::regclass) as identity,
              exists (select from pg_publication_tables where pubname = 'rulebook_capture' and tablename = 'items') as published`,
    );
    expect(after).toEqual({ identity: 'd', published: false });
  });

  it("takes the chain depth the daemon signed and the actor from the transaction's logical decoding messages", async () => {
    await db.query('delete from workflow.events');
    await db.withClient(async (client) => {
      await client.query('begin');
      await client.query(`insert into sales.orders (id, status) values (30, 'new')`);
      // Unsigned, and signed for another transaction: ignored. Signed by the daemon's secret: taken.
      await client.query(`select pg_logical_emit_message(true, 'rulebook.depth', '7')`);
      await client.query(`select pg_logical_emit_message(true, 'rulebook.depth', '7:' || repeat('0', 64))`);
      await client.query(DECLARE_DEPTH_SQL, ['3']);
      await client.query(`select pg_logical_emit_message(true, 'rulebook.actor_id', 'alice')`);
      await client.query(`insert into sales.orders (id, status) values (31, 'new')`);
      await client.query('commit');
    });
    await caughtUp();
    const rows = await events();
    expect(rows.map((e) => [(e.row_key as { id: number }).id, e.depth, e.actor_id])).toEqual([
      [30, 0, null],
      [31, 3, 'alice'],
    ]);
  });

  it('the engine declares its chain depth, so changes made by rules are one level deeper', async () => {
    await db.query('delete from workflow.events');
    await db.query(`create table sales.chain (id int primary key, step int not null default 0)`);
    await createRule(db, {
      name: 'first step',
      entity: 'sales.chain',
      trigger: 'on_create',
      actions: [{ name: 'step', config: { action_type: 'update_field', field: 'step', value: 1 } }],
    });
    const second = await createRule(db, {
      name: 'second step',
      entity: 'sales.chain',
      trigger: 'on_update',
      conditions: [{ field_name: 'step', operator: 'changed' }],
    });
    const engine = await startEngine(db, { captureMode: 'wal' });
    try {
      await db.query(`insert into sales.chain (id) values (1)`);
      const [execution] = await waitFor('the second rule to run', () =>
        db
          .query<{ depth: string }>(
            `select trigger_data ->> 'depth' as depth from workflow.automation_executions where automation_rules_id = $1`,
            [second],
          )
          .then((rows) => (rows.length > 0 ? rows : undefined)),
      );
      expect(execution!.depth).toBe('1');
    } finally {
      await engine.stop();
    }
  });

  it('appends a change once when the reader stops between the commit of its batch and the confirmation', async () => {
    await db.query('delete from workflow.events');
    await stopCaptures();
    await db.query(`insert into sales.orders (id, status) select g, 'bulk' from generate_series(100, 149) g`);
    const [settings] = await db.query<{ slot_name: string }>(
      'select slot_name from workflow.capture_settings',
    );
    const pool = new pg.Pool({ connectionString: db.url, max: 2 });
    try {
      // The first reader appends its batch and dies before it confirms anything.
      let appended = 0;
      const dying = new WalReader({
        databaseUrl: db.url,
        slot: settings!.slot_name,
        pool,
        logger,
        batchSize: 1000,
        onAppended: (events) => {
          appended += events;
          throw new Error('killed between commit and confirmation');
        },
      });
      await expect(dying.read()).rejects.toThrow('killed between commit and confirmation');
      await dying.stop();
      expect(appended).toBe(50);
      expect(await eventCount()).toBe(50);
      // The slot sends the same changes again to the next reader, which skips them.
      const [slotBefore] = await db.query<{ confirmed: string }>(
        `select confirmed_flush_lsn::text as confirmed from pg_replication_slots where slot_name = $1`,
        [settings!.slot_name],
      );
      let again = 0;
      const next = new WalReader({
        databaseUrl: db.url,
        slot: settings!.slot_name,
        pool,
        logger,
        batchSize: 1000,
        onAppended: (events, changes) => {
          again += changes;
          expect(events).toBe(0);
        },
      });
      const reading = next.read();
      await waitFor('the changes sent again', () => again >= 50);
      await next.stop();
      await reading;
      expect(slotBefore!.confirmed).toBeDefined();
      expect(await eventCount()).toBe(50);
      const keys = await db.query<{ id: string }>(
        `select row_key ->> 'id' as id from workflow.events order by id`,
      );
      expect(new Set(keys.map((k) => k.id)).size).toBe(50);
    } finally {
      await pool.end();
    }
  });

  it('appends a quiet stream at once and a busy stream of small transactions once per batch wait', async () => {
    await db.query('delete from workflow.events');
    await stopCaptures();
    const [settings] = await db.query<{ slot_name: string }>(
      'select slot_name from workflow.capture_settings',
    );
    const pool = new pg.Pool({ connectionString: db.url, max: 2 });
    const batchWaitMs = 2000;
    const appends: { at: number; changes: number }[] = [];
    const reader = new WalReader({
      databaseUrl: db.url,
      slot: settings!.slot_name,
      pool,
      logger,
      batchSize: 1000,
      batchWaitMs,
      onAppended: (_events, changes) => appends.push({ at: performance.now(), changes }),
    });
    const reading = reader.read();
    try {
      // Nothing appended for batchWaitMs: the first commit is appended without waiting.
      const quietAt = performance.now();
      await db.query(`insert into sales.orders (id, status) values (400, 'new')`);
      await waitFor('the quiet commit', () => appends.length === 1);
      expect(appends[0]!.at - quietAt).toBeLessThan(batchWaitMs);
      // Twenty commits right after it wait for the rest of the batch wait, and go in together.
      const busyAt = performance.now();
      for (let id = 401; id <= 420; id++) {
        await db.query(`insert into sales.orders (id, status) values ($1, 'new')`, [id]);
      }
      const busyMs = performance.now() - busyAt;
      await waitFor('the busy commits', () => appends.reduce((sum, a) => sum + a.changes, 0) === 21);
      expect(appends.length - 1).toBeLessThanOrEqual(Math.ceil(busyMs / batchWaitMs) + 1);
      expect(appends[1]!.at - appends[0]!.at).toBeGreaterThanOrEqual(batchWaitMs - 50);
      expect(await eventCount()).toBe(21);
    } finally {
      await reader.stop();
      await reading;
      await pool.end();
    }
  });

  it('drops changes no active rule watches before the append, and follows rule changes in commit order', async () => {
    await stopCaptures();
    await db.query(`create table sales.watched (id int primary key, status text, note text)`);
    const [entity] = await db.query<{ id: string }>(`select workflow.register_entity('sales.watched') as id`);
    const dba = await ensureDba(db);
    const addRule = (client: { query: pg.ClientBase['query'] }, column: string) =>
      client.query<{ id: string }>(
        `insert into workflow.automation_rules
           (name, entity_id, entity_type_id, trigger_type_id, trigger_conditions, is_active, created_by, updated_by)
         select 'watched ' || $3, e.id, e.entity_type_id, t.id, $2::jsonb, true, $1, $1
           from workflow.entities e, workflow.trigger_types t where e.id = $4 and t.name = 'on_update'
         returning id`,
        [
          dba,
          JSON.stringify({ field_conditions: [{ field_name: column, operator: 'changed' }] }),
          column,
          entity!.id,
        ],
      );
    await db.withClient((client) => addRule(client, 'status'));
    const [settings] = await db.query<{ slot_name: string }>(
      'select slot_name from workflow.capture_settings',
    );
    const pool = new pg.Pool({ connectionString: db.url, max: 2 });
    let appendedChanges = 0;
    const reader = new WalReader({
      databaseUrl: db.url,
      slot: settings!.slot_name,
      pool,
      logger,
      batchSize: 1000,
      batchWaitMs: 0,
      onAppended: (_events, changes) => (appendedChanges += changes),
    });
    const reading = reader.read();
    const notes = async () =>
      (
        await db.query<{ note: string }>(
          `select new_row ->> 'note' as note from workflow.events where entity_id = $1 order by id`,
          [entity!.id],
        )
      ).map((row) => row.note);
    try {
      // No on_create rule, and an update of a column no rule watches: neither reaches the append.
      await db.query(`insert into sales.watched values (1, 'a', 'x')`);
      await db.query(`update sales.watched set note = 'y' where id = 1`);
      await db.query(`update sales.watched set status = 'b' where id = 1`);
      await caughtUp();
      expect(appendedChanges).toBe(1);
      expect(await notes()).toEqual(['y']);
      // A rule on note added in the transaction that then changes note: that change is captured,
      // and so are the ones after it.
      const [noteRule] = await db.withClient(async (client) => {
        await client.query('begin');
        const { rows } = await addRule(client, 'note');
        await client.query(`update sales.watched set note = 'z' where id = 1`);
        await client.query('commit');
        return rows;
      });
      await db.query(`update sales.watched set note = 'w' where id = 1`);
      await caughtUp();
      expect(await notes()).toEqual(['y', 'z', 'w']);
      // The rule switched off: changes of note are dropped again, before the append.
      await db.query(`update workflow.automation_rules set is_active = false where id = $1`, [noteRule!.id]);
      const before = appendedChanges;
      await db.query(`update sales.watched set note = 'v' where id = 1`);
      await caughtUp();
      expect(appendedChanges).toBe(before);
      expect(await notes()).toEqual(['y', 'z', 'w']);
    } finally {
      await reader.stop();
      await reading;
      await pool.end();
    }
  });

  it('elects one reader among two daemons, and the other takes over when it stops', async () => {
    await db.query('delete from workflow.events');
    const first = await startCapture();
    const second = await startCapture();
    await waitFor('one reader', () => first.isReader !== second.isReader);
    const [reader, standby] = first.isReader ? [first, second] : [second, first];
    await db.query(`insert into sales.orders (id, status) values (200, 'new')`);
    await caughtUp();
    expect(reader.appendedEvents).toBe(1);
    expect(standby.appendedEvents).toBe(0);
    captures.splice(captures.indexOf(reader), 1);
    await reader.stop();
    await waitFor('the other daemon to take over', () => standby.isReader, 10_000);
    await db.query(`insert into sales.orders (id, status) values (201, 'new')`);
    await caughtUp();
    expect(standby.appendedEvents).toBe(1);
    expect((await events()).map((e) => (e.row_key as { id: number }).id)).toEqual([200, 201]);
  });

  it('keeps per-row order and appends a 10,000-row statement in batches', async () => {
    await db.query('delete from workflow.events');
    await stopCaptures();
    await startCapture({ batchSize: 700 });
    await db.query(`insert into sales.orders (id, status) select g, 'a' from generate_series(1000, 10999) g`);
    await db.query(`update sales.orders set status = 'b' where id between 1000 and 10999`);
    await caughtUp();
    const [summary] = await db.query<{ rows: number; ordered: boolean }>(
      `select count(*)::int as rows, bool_and(ops = array['on_create', 'on_update']) as ordered
         from (select row_key, array_agg(operation order by id) as ops from workflow.events group by row_key) x`,
    );
    expect(summary).toEqual({ rows: 10_000, ordered: true });
    const [counted] = await db.query<{ n: number }>('select count(*)::int as n from workflow.events');
    expect(counted!.n).toBe(20_000);
  });

  it('shows the slot and its lag in /metrics and /healthz', async () => {
    const { server, base } = await startHttp(db);
    try {
      const metrics = await (await fetch(`${base}/metrics`)).text();
      expect(metrics).toMatch(/^rulebook_wal_capture_slot_lag_bytes \d+/m);
      expect(metrics).toMatch(/^rulebook_wal_capture_slot_active 1$/m);
      const health = (await (await fetch(`${base}/healthz`)).json()) as {
        wal_capture?: { slot: string; active: boolean; lag_bytes: number };
      };
      const [settings] = await db.query<{ slot_name: string }>(
        'select slot_name from workflow.capture_settings',
      );
      expect(health.wal_capture).toMatchObject({ slot: settings!.slot_name, active: true });
      expect(typeof health.wal_capture!.lag_bytes).toBe('number');
    } finally {
      await server.stop();
    }
  });

  it('says what to set when the role may not replicate, and refuses an unknown mode', async () => {
    await db.withClient(async (client) => {
      const role = `wal_test_${db.name}`;
      await client.query(`create role ${role} nologin`);
      try {
        await client.query(`set role ${role}`);
        await expect(checkWalRequirements(client)).rejects.toThrow(
          `role ${role} may not replicate; WAL capture needs ALTER ROLE ${role} REPLICATION`,
        );
      } finally {
        await client.query('reset role');
        await client.query(`drop role ${role}`);
      }
    });
    expect(() => loadConfig({ RULEBOOK_CAPTURE: 'logical' })).toThrow(ConfigError);
    expect(() => loadConfig({ RULEBOOK_CAPTURE: 'logical' })).toThrow(
      'RULEBOOK_CAPTURE must be "triggers" (the default) or "wal", got "logical"',
    );
    expect(loadConfig({}).capture.mode).toBe('triggers');
  });

  it('gives tables back to their triggers and drops the slot when the mode is turned off', async () => {
    await stopCaptures();
    await db.query('delete from workflow.events');
    const [settings] = await db.query<{ slot_name: string }>(
      'select slot_name from workflow.capture_settings',
    );
    const messages: string[] = [];
    const recording = createLogger('info');
    recording.info = ((...args: unknown[]) => {
      messages.push(String(args.find((a) => typeof a === 'string')));
    }) as typeof recording.info;
    await db.withClient((client) => leaveWalMode(client, recording));
    expect(messages).toContain('WAL capture is off: dropped its replication slot');
    const slots = await db.query('select 1 from pg_replication_slots where slot_name = $1', [
      settings!.slot_name,
    ]);
    expect(slots).toEqual([]);
    const [state] = await db.query<{ mode: string; identity: string; enabled: number; publication: boolean }>(
      `select (select mode from workflow.capture_settings) as mode,
              (select relreplident from pg_class where oid = 'sales.orders'::regclass) as identity,
              (select count(*)::int from pg_trigger where tgrelid = 'sales.orders'::regclass
                  and tgname like 'rulebook_capture_%' and tgenabled <> 'D') as enabled,
              exists (select from pg_publication where pubname = 'rulebook_capture') as publication`,
    );
    expect(state).toEqual({ mode: 'triggers', identity: 'd', enabled: 3, publication: false });
    await db.query(`insert into sales.orders (id, status) values (300, 'new')`);
    expect((await events()).map((e) => e.operation)).toEqual(['on_create']);
  });

  describe('turning WAL capture off loses nothing', () => {
    /** WAL mode on, no reader running: what is written stays in the slot, unread. */
    async function walModeWithoutReader(): Promise<string> {
      await startCapture();
      await waitFor('the reader to stream the slot', async () => {
        const rows = await db.query(
          'select 1 from pg_replication_slots where database = current_database() and active',
        );
        return rows.length > 0;
      });
      await stopCaptures();
      // The stopped reader's sessions end on the server a moment after the client closes them.
      await waitFor('the reader lock and the slot to be released', async () => {
        const rows = await db.query(
          `select 1 from pg_locks where locktype = 'advisory' and granted
           union all select 1 from pg_replication_slots where database = current_database() and active`,
        );
        return rows.length === 0;
      });
      await db.query('delete from workflow.events');
      const [settings] = await db.query<{ slot_name: string }>(
        'select slot_name from workflow.capture_settings',
      );
      return settings!.slot_name;
    }

    async function writeUnread(first: number): Promise<void> {
      await db.query(`insert into sales.orders (id, status) values ($1, 'new'), ($2, 'new')`, [
        first,
        first + 1,
      ]);
      await db.query(`update sales.orders set status = 'paid' where id = $1`, [first]);
      await db.query(`delete from sales.orders where id = $1`, [first + 1]);
      await db.query(
        `insert into sales.orders (id, status) select g, 'bulk' from generate_series($1::int, $2::int) g`,
        [first + 10, first + 29],
      );
    }

    const expected = (first: number) => [
      ['on_create', first],
      ['on_create', first + 1],
      ['on_update', first],
      ['on_delete', first + 1],
      ...Array.from({ length: 20 }, (_, i) => ['on_create', first + 10 + i]),
    ];

    async function captured(): Promise<unknown[][]> {
      return (await events()).map((e) => [e.operation, (e.row_key as { id: number }).id]);
    }

    async function slotGone(slot: string): Promise<void> {
      expect(await db.query('select 1 from pg_replication_slots where slot_name = $1', [slot])).toEqual([]);
      const [state] = await db.query<{ mode: string; slot_name: string | null; drain_until: string | null }>(
        'select mode, slot_name, drain_until::text from workflow.capture_settings',
      );
      expect(state).toEqual({ mode: 'triggers', slot_name: null, drain_until: null });
    }

    it('appends what the slot held unread, once and in order, then the triggers take over and the slot is gone', async () => {
      const slot = await walModeWithoutReader();
      await writeUnread(500);
      expect(await eventCount()).toBe(0);
      await db.withClient((client) => leaveWalMode(client, logger, { batchSize: 5 }));
      expect(await captured()).toEqual(expected(500));
      await slotGone(slot);
      await db.query(`update sales.orders set status = 'shipped' where id = 500`);
      expect((await captured()).slice(-1)).toEqual([['on_update', 500]]);
      expect(await eventCount()).toBe(expected(500).length + 1);
    });

    it('finishes the drain at the next start after a crash in the middle of it', async () => {
      const slot = await walModeWithoutReader();
      await writeUnread(600);
      const messages: string[] = [];
      const recording = createLogger('info');
      recording.error = ((...args: unknown[]) => {
        messages.push(String(args.find((a) => typeof a === 'string')));
      }) as typeof recording.error;
      await db.withClient(async (client) => {
        // The daemon dies after its first batch is appended, before the slot is moved past it.
        let advances = 0;
        const crashing = new Proxy(client, {
          get(target, property, receiver) {
            if (property !== 'query') return Reflect.get(target, property, receiver) as unknown;
            return (text: unknown, values?: unknown) => {
              if (
                typeof text === 'string' &&
                text.includes('pg_replication_slot_advance') &&
                ++advances === 1
              ) {
                return Promise.reject(new Error('crashed between the append and moving the slot'));
              }
              return target.query(text as string, values as unknown[]);
            };
          },
        });
        await leaveWalMode(crashing, recording, { batchSize: 5 });
      });
      expect(messages.some((m) => m.includes('its slot could not be read up to the switch'))).toBe(true);
      expect((await captured()).length).toBeGreaterThan(0);
      expect((await captured()).length).toBeLessThan(expected(600).length);
      // Written after the switch: captured by the triggers, not read from the slot at the restart.
      await db.query(`insert into sales.orders (id, status) values (650, 'new')`);
      await db.withClient((client) => leaveWalMode(client, logger, { batchSize: 5 }));
      const all = await captured();
      expect(all.filter((e) => e[1] !== 650)).toEqual(expected(600));
      expect(all.filter((e) => e[1] === 650)).toEqual([['on_create', 650]]);
      await slotGone(slot);
    });

    it('leaves the slot to a daemon still in WAL mode, and the next start drops it', async () => {
      const slot = await walModeWithoutReader();
      await writeUnread(700);
      const reader = await startCapture();
      const warnings: string[] = [];
      const recording = createLogger('info');
      recording.warn = ((...args: unknown[]) => {
        warnings.push(String(args.find((a) => typeof a === 'string')));
      }) as typeof recording.warn;
      await db.withClient((client) => leaveWalMode(client, recording));
      expect(warnings.some((w) => w.includes('mixed configuration'))).toBe(true);
      await waitFor('the WAL reader to append what was written before the switch', async () => {
        return (await eventCount()) === expected(700).length;
      });
      await db.query(`insert into sales.orders (id, status) values (750, 'new')`);
      captures.splice(captures.indexOf(reader), 1);
      await reader.stop();
      await waitFor('the slot to be released', async () => {
        const rows = await db.query('select 1 from pg_replication_slots where slot_name = $1 and active', [
          slot,
        ]);
        return rows.length === 0;
      });
      await db.withClient((client) => leaveWalMode(client, logger));
      expect(await captured()).toEqual([...expected(700), ['on_create', 750]]);
      await slotGone(slot);
    });

    it('resumes an unfinished drain when WAL mode is turned on again', async () => {
      const slot = await walModeWithoutReader();
      await writeUnread(900);
      await db.withClient(async (holder) => {
        // Another daemon in WAL mode holds the reader lock: the slot is left undrained.
        await holder.query(`select pg_advisory_lock(hashtextextended('rulebook.wal_capture', 0))`);
        await db.withClient((client) => leaveWalMode(client, logger));
        await holder.query(`select pg_advisory_unlock(hashtextextended('rulebook.wal_capture', 0))`);
      });
      expect(await eventCount()).toBe(0);
      await db.query(`insert into sales.orders (id, status) values (950, 'new')`);
      await startCapture();
      await db.query(`insert into sales.orders (id, status) values (951, 'new')`);
      await caughtUp();
      const all = await captured();
      expect(all.filter((e) => e[1] !== 950 && e[1] !== 951)).toEqual(expected(900));
      expect(all.filter((e) => e[1] === 950 || e[1] === 951)).toEqual([
        ['on_create', 950],
        ['on_create', 951],
      ]);
      await stopCaptures();
      await db.withClient((client) => leaveWalMode(client, logger));
      await slotGone(slot);
    });

    it('says so and goes on when the slot was dropped by hand', async () => {
      const slot = await walModeWithoutReader();
      await db.query('select pg_drop_replication_slot($1)', [slot]);
      const errors: string[] = [];
      const recording = createLogger('info');
      recording.error = ((...args: unknown[]) => {
        errors.push(String(args.find((a) => typeof a === 'string')));
      }) as typeof recording.error;
      await db.withClient((client) => leaveWalMode(client, recording));
      expect(errors.some((e) => e.includes('its replication slot is gone'))).toBe(true);
      await slotGone(slot);
      await db.query(`insert into sales.orders (id, status) values (800, 'new')`);
      expect(await captured()).toEqual([['on_create', 800]]);
    });
  });
});
