import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { migrate } from 'postgres-migrations';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrateDatabase, migrationsDir } from '../src/db/migrate.js';
import { claimEvents, failEvent } from '../src/engine/event-queue.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { PgOutputDecoder, type DecodedChange, type DecodedRow } from './support/pgoutput.js';
import { TestRoles, type LoginRole } from './support/roles.js';
import { createRule, ensureDba } from './support/rules.js';
import { waitFor } from './support/wait.js';

// The outbox as Debezium's PostgreSQL connector sees it: a logical replication slot with the
// built-in pgoutput plugin, reading the publication rulebook_outbox, opened by a connector role
// set up as docs/kafka.md says (LOGIN REPLICATION, a member of rulebook_outbox_reader). The decoded
// INSERTs must carry every column the documented outbox event router configuration maps.

let db: TestDatabase;
let roles: TestRoles;
let connector: LoginRole;
const slot = `rulebook_kafka_${randomBytes(4).toString('hex')}`;
const decoder = new PgOutputDecoder();
let ordersOnUpdate: string;
let linesOnDelete: string;

/** The Kafka Connect configuration docs/kafka.md gives, read from the page, so that the test follows it. */
function documentedConnector(): Record<string, string> {
  const page = fs.readFileSync(new URL('../docs/kafka.md', import.meta.url), 'utf8');
  const block = /```json\n([\s\S]*?)\n```/.exec(page);
  if (!block) throw new Error('docs/kafka.md has no JSON connector configuration');
  return (JSON.parse(block[1]!) as { config: Record<string, string> }).config;
}

const CONNECTOR = documentedConnector();

/**
 * The columns the documented configuration maps: the router's event id, key, payload and topic
 * fields, and every column of table.fields.additional.placement.
 */
const MAPPED_COLUMNS = [
  CONNECTOR['transforms.outbox.table.field.event.id'] ?? 'id',
  CONNECTOR['transforms.outbox.table.field.event.key'] ?? 'aggregateid',
  CONNECTOR['transforms.outbox.table.field.event.payload'] ?? 'payload',
  CONNECTOR['transforms.outbox.route.by.field'] ?? 'aggregatetype',
  ...(CONNECTOR['transforms.outbox.table.fields.additional.placement'] ?? '')
    .split(',')
    .filter(Boolean)
    .map((field) => field.split(':')[0]!.trim()),
];

/** What a consumer gets from one decoded INSERT into workflow.events, parsed from PostgreSQL's text. */
interface StreamedEvent {
  id: string;
  aggregateType: string | null;
  key: unknown;
  operation: string | null;
  oldRow: unknown;
  newRow: unknown;
  actorId: string | null;
  depth: number;
  ruleId: string | null;
}

function parseJson(value: string | null | undefined): unknown {
  return value == null ? null : JSON.parse(value);
}

function streamed(row: DecodedRow): StreamedEvent {
  return {
    id: row.id!,
    aggregateType: row.aggregate_type ?? null,
    key: parseJson(row.row_key),
    operation: row.operation ?? null,
    oldRow: parseJson(row.old_row),
    newRow: parseJson(row.new_row),
    actorId: row.actor_id ?? null,
    depth: Number(row.depth),
    ruleId: row.rule_id ?? null,
  };
}

/**
 * Everything the slot holds since the last call, consumed, as the connector role reads it. Decoding
 * stops at the WAL flushed to disk, and the test server commits without waiting for the flush
 * (synchronous_commit=off), so the WAL written so far is awaited first, as a streaming connector
 * would wait for it. `peekThrough` reads the same changes through another publication without
 * consuming them (each call is a decoding session of its own, which announces relations anew).
 */
async function readSlot(peekThrough?: string): Promise<DecodedChange[]> {
  const [{ written }] = (await db.query<{ written: string }>(
    `select pg_current_wal_insert_lsn()::text as written`,
  )) as [{ written: string }];
  await waitFor('the WAL to be flushed', async () => {
    const [row] = await db.query<{ flushed: boolean }>(
      `select pg_current_wal_flush_lsn() >= $1::pg_lsn as flushed`,
      [written],
    );
    return row?.flushed;
  });
  const read = peekThrough ? 'pg_logical_slot_peek_binary_changes' : 'pg_logical_slot_get_binary_changes';
  const rows = await connector.query<{ data: Buffer }>(
    `select data from ${read}($1, null, null, 'proto_version', '1', 'publication_names', $2)`,
    [slot, peekThrough ?? 'rulebook_outbox'],
  );
  const session = peekThrough ? new PgOutputDecoder() : decoder;
  return rows.map((row) => session.decode(row.data));
}

/** The row changes among `changes` (transaction boundaries and relation announcements left out). */
function rowChanges(changes: DecodedChange[]): DecodedChange[] {
  return changes.filter((change) => ['insert', 'update', 'delete', 'truncate'].includes(change.kind));
}

function insertsIntoEvents(changes: DecodedChange[]): DecodedRow[] {
  const rows = rowChanges(changes);
  for (const change of rows) {
    expect(change.kind).toBe('insert');
    if (change.kind === 'insert')
      expect(`${change.relation.schema}.${change.relation.table}`).toBe('workflow.events');
  }
  return rows.flatMap((change) => (change.kind === 'insert' ? [change.row] : []));
}

async function inTransaction(work: (client: pg.PoolClient) => Promise<void>): Promise<void> {
  await db.withClient(async (client) => {
    await client.query('begin');
    try {
      await work(client);
      await client.query('commit');
    } catch (error) {
      await client.query('rollback');
      throw error;
    }
  });
}

beforeAll(async () => {
  db = await createTestDatabase();
  await db.query(`
    create schema shop;
    create table shop.orders (id bigint primary key, status text not null, total numeric(10, 2), note text);
    create table shop.order_lines (order_id bigint, line_no int, sku text not null, primary key (order_id, line_no));
  `);
  await createRule(db, { name: 'order placed', entity: 'shop.orders', trigger: 'on_create' });
  ordersOnUpdate = await createRule(db, {
    name: 'order status changes',
    entity: 'shop.orders',
    trigger: 'on_update',
    conditions: [{ field_name: 'status', operator: 'changed' }],
  });
  linesOnDelete = await createRule(db, {
    name: 'line removed',
    entity: 'shop.order_lines',
    trigger: 'on_delete',
  });
  roles = new TestRoles(db);
  connector = await roles.login(
    'debezium',
    'alter role %I replication',
    'grant rulebook_outbox_reader to %I',
  );
  // Debezium creates its slot itself, as the connector role, when it first starts.
  await connector.query(`select pg_create_logical_replication_slot($1, 'pgoutput')`, [slot]);
});

afterAll(async () => {
  // A slot left behind would hold the server's WAL for as long as it exists.
  await db?.query(
    `select pg_drop_replication_slot(slot_name) from pg_replication_slots where slot_name = $1`,
    [slot],
  );
  await roles?.endPools();
  await db?.drop();
  await roles?.dropRoles();
});

describe("docs/kafka.md's connector configuration", () => {
  it('maps the columns this test checks, reads the publication and table it tests, and excludes no mapped column', () => {
    expect([...MAPPED_COLUMNS].sort()).toEqual(
      [
        'actor_id',
        'aggregate_type',
        'created_at',
        'depth',
        'id',
        'new_row',
        'old_row',
        'operation',
        'row_key',
        'rule_id',
      ].sort(),
    );
    expect(CONNECTOR['plugin.name']).toBe('pgoutput');
    expect(CONNECTOR['publication.name']).toBe('rulebook_outbox');
    expect(CONNECTOR['publication.autocreate.mode']).toBe('disabled');
    // Debezium matches these lists against whole schema.table and schema.table.column names.
    expect(new RegExp(`^(?:${CONNECTOR['table.include.list']})$`).test('workflow.events')).toBe(true);
    const excluded = new RegExp(`^(?:${CONNECTOR['column.exclude.list']})$`);
    for (const column of MAPPED_COLUMNS) expect(excluded.test(`workflow.events.${column}`)).toBe(false);
  });
});

describe('the publication rulebook_outbox', () => {
  it('covers workflow.events alone, and publishes its INSERTs only', async () => {
    const publications = await db.query(
      `select puballtables, pubinsert, pubupdate, pubdelete, pubtruncate from pg_publication where pubname = 'rulebook_outbox'`,
    );
    expect(publications).toEqual([
      { puballtables: false, pubinsert: true, pubupdate: false, pubdelete: false, pubtruncate: false },
    ]);
    const tables = await db.query(
      `select schemaname, tablename from pg_publication_tables where pubname = 'rulebook_outbox'`,
    );
    expect(tables).toEqual([{ schemaname: 'workflow', tablename: 'events' }]);
  });
});

describe('captured changes in the logical stream', () => {
  it('carry the topic, key, operation and the old and new row of every captured change, and nothing else', async () => {
    await inTransaction(async (client) => {
      await client.query(`set local workflow.actor_id = 'clerk-7'`);
      await client.query(`insert into shop.orders (id, status, total) values (1, 'new', 10.50)`);
    });
    await db.query(`update shop.orders set status = 'paid' where id = 1`);
    // No rule watches note, none listens to deletes of orders or inserts of lines: not captured.
    await db.query(`update shop.orders set note = 'gift' where id = 1`);
    await db.query(`insert into shop.order_lines values (1, 1, 'A-1'), (1, 2, 'B-2')`);
    await db.query(`delete from shop.order_lines where order_id = 1 and line_no = 2`);
    await db.query(`delete from shop.orders where id = 1`);

    const changes = await readSlot();
    const relations = changes.flatMap((change) =>
      change.kind === 'relation' ? [`${change.relation.schema}.${change.relation.table}`] : [],
    );
    expect(new Set(relations)).toEqual(new Set(['workflow.events']));
    const rows = insertsIntoEvents(changes);
    for (const row of rows) {
      for (const column of MAPPED_COLUMNS) expect(row).toHaveProperty(column);
    }
    const events = rows.map(streamed);
    expect(events.map(({ id: _id, ...event }) => event)).toEqual([
      {
        aggregateType: 'shop.orders',
        key: { id: 1 },
        operation: 'on_create',
        oldRow: null,
        newRow: { id: 1, status: 'new', total: 10.5, note: null },
        actorId: 'clerk-7',
        depth: 0,
        ruleId: null,
      },
      {
        aggregateType: 'shop.orders',
        key: { id: 1 },
        operation: 'on_update',
        oldRow: { id: 1, status: 'new', total: 10.5, note: null },
        newRow: { id: 1, status: 'paid', total: 10.5, note: null },
        actorId: null,
        depth: 0,
        ruleId: null,
      },
      {
        aggregateType: 'shop.order_lines',
        key: { order_id: 1, line_no: 2 },
        operation: 'on_delete',
        oldRow: { order_id: 1, line_no: 2, sku: 'B-2' },
        newRow: null,
        actorId: null,
        depth: 0,
        ruleId: null,
      },
    ]);

    // The event id (the header a consumer drops repeats by) is the row's id in workflow.events, and
    // the stream says what the outbox view says.
    const outbox = await db.query<{ id: string; aggregatetype: string; aggregateid: string; type: string }>(
      `select id::text, aggregatetype, aggregateid, type from workflow.outbox order by id`,
    );
    expect(outbox).toEqual(
      rows.map((row) => ({
        id: row.id,
        aggregatetype: row.aggregate_type,
        aggregateid: row.row_key,
        type: row.operation,
      })),
    );
  });

  it('carry the same fields for events rulebook writes itself: run_rule and scheduled ticks', async () => {
    const dba = await ensureDba(db);
    const [{ id: scheduled }] = (await db.query<{ id: string }>(
      `insert into workflow.automation_rules
         (name, entity_id, entity_type_id, trigger_type_id, trigger_conditions, created_by, updated_by)
       select 'hourly order check', e.id, e.entity_type_id, t.id, '{"schedule": "0 * * * *"}', $1, $1
         from workflow.entities e, workflow.trigger_types t
        where e.schema_name = 'shop' and e.name = 'orders' and t.name = 'scheduled'
       returning id`,
      [dba],
    )) as [{ id: string }];
    await db.query(`select workflow.run_rule($1, '{"id": 5, "status": "vip"}')`, [ordersOnUpdate]);
    await db.query(`select workflow.fire_scheduled_rule($1, '2026-01-05T07:00:00Z')`, [scheduled]);

    const events = insertsIntoEvents(await readSlot()).map(streamed);
    expect(events.map(({ id: _id, ...event }) => event)).toEqual([
      {
        aggregateType: 'shop.orders',
        key: { id: 5 },
        operation: 'manual',
        oldRow: null,
        newRow: { id: 5, status: 'vip' },
        actorId: null,
        depth: 0,
        ruleId: ordersOnUpdate,
      },
      {
        aggregateType: 'shop.orders',
        key: { rule_id: scheduled, scheduled_for: '2026-01-05T07:00:00.000Z' },
        operation: 'scheduled',
        oldRow: null,
        newRow: expect.objectContaining({ rule_id: scheduled, scheduled_for: '2026-01-05T07:00:00.000Z' }),
        actorId: null,
        depth: 0,
        ruleId: scheduled,
      },
    ]);
    await db.query(`delete from workflow.automation_rules where id = $1`, [scheduled]);
    await db.query(`delete from workflow.events`);
    await readSlot();
  });

  it('keep the topic of a renamed table, with workflow.outbox, until its entity takes the new name', async () => {
    await db.query(`insert into shop.order_lines values (2, 1, 'C-3'), (2, 2, 'D-4'), (2, 3, 'E-5')`);
    await db.query(`alter table shop.order_lines rename to order_items`);
    await db.query(`delete from shop.order_items where order_id = 2 and line_no = 1`);
    const renamed = insertsIntoEvents(await readSlot());
    expect(renamed.map(streamed)).toMatchObject([
      { aggregateType: 'shop.order_lines', key: { order_id: 2, line_no: 1 }, operation: 'on_delete' },
    ]);
    expect(await db.query(`select id::text, aggregatetype from workflow.outbox`)).toEqual(
      renamed.map((row) => ({ id: row.id, aggregatetype: row.aggregate_type })),
    );
    await db.query(`delete from workflow.events`);

    await db.query(
      `update workflow.entities set name = 'order_items' where id = (
      select entity_id from workflow.automation_rules where id = $1)`,
      [linesOnDelete],
    );
    await db.query(`delete from shop.order_items where order_id = 2 and line_no = 2`);
    await db.query(`select workflow.run_rule($1, '{"order_id": 2, "line_no": 3, "sku": "E-5"}')`, [
      linesOnDelete,
    ]);
    expect(insertsIntoEvents(await readSlot()).map(streamed)).toMatchObject([
      { aggregateType: 'shop.order_items', key: { order_id: 2, line_no: 2 }, operation: 'on_delete' },
      { aggregateType: 'shop.order_items', operation: 'manual', ruleId: linesOnDelete },
    ]);
    await db.query(`delete from workflow.events`);
  });

  it('gives an event of a table that is not registered a topic no table has, rather than none', async () => {
    const warnings: string[] = [];
    await db.withClient(async (client) => {
      const listener = (notice: { message?: string }) => warnings.push(notice.message ?? '');
      client.on('notice', listener);
      try {
        await client.query(
          `insert into workflow.events (entity_id, operation, row_key) values ('00000000-0000-4000-8000-000000000001', 'manual', '{}')`,
        );
      } finally {
        client.off('notice', listener);
      }
    });
    expect(warnings).toEqual([
      expect.stringMatching(/entity 00000000-0000-4000-8000-000000000001 is not registered/),
    ]);
    const events = insertsIntoEvents(await readSlot()).map(streamed);
    expect(events).toMatchObject([{ aggregateType: 'unregistered', operation: 'manual' }]);
    await db.query(`delete from workflow.events`);
  });
});

describe('what the engine does to the outbox afterwards', () => {
  it('reaches the connector as nothing: claims (DELETE), failures and retries (UPDATE) are not published', async () => {
    await db.query(`insert into shop.orders (id, status) values (2, 'new'), (3, 'new')`);
    const captured = insertsIntoEvents(await readSlot()).map(streamed);
    expect(captured.map((event) => event.key)).toEqual([{ id: 2 }, { id: 3 }]);
    const [first, second] = captured as [StreamedEvent, StreamedEvent];

    await db.withClient(async (client) => {
      await client.query('begin');
      await failEvent(client, second.id, 'the webhook answered 503', 5);
      await client.query('commit');
      await client.query(`select workflow.retry_event($1)`, [second.id]);
      await client.query('begin');
      const claim = await claimEvents(client, 10, 10);
      expect(claim.events.map((event) => event.id)).toEqual([first.id, second.id]);
      await client.query('commit');
    });
    expect(await db.query(`select id from workflow.events`)).toEqual([]);
    expect(rowChanges(await readSlot())).toEqual([]);
  });

  it('keeps working when a publication of every operation covers workflow.events, as Debezium would create one', async () => {
    // publication.autocreate.mode=filtered creates such a publication; UPDATE and DELETE of a table
    // in it need a replica identity, which the primary key gives. docs/kafka.md says what the
    // router does with them (drops DELETEs, warns about UPDATEs): such a connector receives them.
    await db.query(`create publication rulebook_all_operations for table workflow.events`);
    try {
      await db.query(`insert into shop.orders (id, status) values (4, 'new')`);
      const [{ id }] = (await db.query<{ id: string }>(`select id::text from workflow.events`)) as [
        { id: string },
      ];
      await db.withClient(async (client) => {
        await client.query('begin');
        expect(await failEvent(client, id, 'timeout', 5)).toBe('pending');
        await client.query('commit');
        await client.query(`select workflow.retry_event($1)`, [id]);
        await client.query('begin');
        expect((await claimEvents(client, 10, 10)).events.map((event) => event.id)).toEqual([id]);
        await client.query('commit');
      });
      const everything = rowChanges(await readSlot('rulebook_all_operations'));
      expect(everything[0]).toMatchObject({ kind: 'insert', row: { id, operation: 'on_create' } });
      const kinds = new Set(everything.slice(1).map((change) => change.kind));
      expect(kinds).toEqual(new Set(['update', 'delete']));
      // The delete names the event by its primary key, the default replica identity.
      expect(everything.at(-1)).toMatchObject({ kind: 'delete', old: { id, operation: null } });
      expect(insertsIntoEvents(await readSlot()).map(streamed)).toMatchObject([
        { id, operation: 'on_create' },
      ]);
    } finally {
      await db.query(`drop publication rulebook_all_operations`);
    }
  });
});

describe("the connector's privileges", () => {
  it('REPLICATION and rulebook_outbox_reader suffice; without REPLICATION the stream is refused', async () => {
    expect(await connector.query(`select count(*)::int as n from workflow.events`)).toEqual([{ n: 0 }]);
    const reader = await roles.login('outbox_reader', 'grant rulebook_outbox_reader to %I');
    const error = await reader
      .query(
        `select data from pg_logical_slot_peek_binary_changes($1, null, null,
           'proto_version', '1', 'publication_names', 'rulebook_outbox')`,
        [slot],
      )
      .then(
        () => undefined,
        (caught: unknown) => caught as { code?: string; message?: string },
      );
    expect(error?.code).toBe('42501');
    expect(error?.message).toMatch(/replication/i);
  });
});

describe('an installation upgraded to migration 000015', () => {
  let old: TestDatabase;
  let dir: string;

  beforeAll(async () => {
    old = await createTestDatabase({ migrated: false });
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rulebook-migrations-'));
    for (const file of fs.readdirSync(migrationsDir()).filter((name) => name < '000015')) {
      fs.copyFileSync(path.join(migrationsDir(), file), path.join(dir, file));
    }
    const client = new pg.Client({ connectionString: old.url, options: '-c search_path=workflow' });
    await client.connect();
    try {
      await client.query('create schema workflow');
      await migrate({ client }, dir);
    } finally {
      await client.end();
    }
  });

  afterAll(async () => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
    await old?.drop();
  });

  it('gets aggregate_type on waiting events and in the capture functions of registered tables', async () => {
    await old.query(`create schema stock; create table stock.items (sku text primary key, qty int)`);
    await createRule(old, { name: 'item added', entity: 'stock.items', trigger: 'on_create' });
    await old.query(`insert into stock.items values ('A-1', 3)`);

    await migrateDatabase(old.url);
    expect(await old.query(`select aggregate_type, row_key from workflow.events`)).toEqual([
      { aggregate_type: 'stock.items', row_key: { sku: 'A-1' } },
    ]);
    // Rewritten, not left to the trigger that fills in for other INSERTs.
    const [capture] = await old.query<{ writes: boolean }>(
      `select prosrc like '%aggregate_type%' and prosrc like '%''stock.items''%' as writes
         from pg_proc where proname = workflow.capture_function_name(
           (select id from workflow.entities where schema_name = 'stock' and name = 'items'))`,
    );
    expect(capture).toEqual({ writes: true });
    await old.query(`insert into stock.items values ('B-2', 1)`);
    expect(await old.query(`select aggregate_type from workflow.events order by id`)).toEqual([
      { aggregate_type: 'stock.items' },
      { aggregate_type: 'stock.items' },
    ]);
    expect(
      await old.query(`select tablename from pg_publication_tables where pubname = 'rulebook_outbox'`),
    ).toEqual([{ tablename: 'events' }]);
  });
});
