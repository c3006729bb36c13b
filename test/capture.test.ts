import pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { waitFor } from './support/wait.js';

// What a DBA sees in workflow.events after the application writes to a monitored table.

let db: TestDatabase;
let userId: string;
let ordersId: string;

interface OrderRow {
  id: number;
  status: string;
  note: string | null;
  n: number;
  body: string | null;
  data: unknown;
}

interface EventRow {
  id: string;
  entity_id: string;
  operation: string;
  row_key: Record<string, unknown>;
  old_row: OrderRow | null;
  new_row: OrderRow | null;
  txid: string;
  actor_id: string | null;
  depth: number;
  created_at: Date;
}

type Rule = { trigger: 'on_create' | 'on_update' | 'on_delete'; watch?: string[]; active?: boolean };

/** Replaces the rules of sales.orders. */
async function setRules(...rules: Rule[]): Promise<void> {
  await db.withClient(async (client) => {
    await client.query('begin');
    await client.query('delete from workflow.automation_rules where entity_id = $1', [ordersId]);
    for (const [index, rule] of rules.entries()) {
      const conditions = rule.watch
        ? { field_conditions: rule.watch.map((field) => ({ field_name: field, operator: 'changed' })) }
        : null;
      await client.query(
        `insert into workflow.automation_rules
           (name, entity_id, entity_type_id, trigger_type_id, trigger_conditions, is_active, created_by, updated_by)
         select $1, e.id, e.entity_type_id, t.id, $4::jsonb, $5, $6, $6
           from workflow.entities e, workflow.trigger_types t
          where e.id = $2 and t.name = $3`,
        [
          `rule ${index + 1}: ${rule.trigger}`,
          ordersId,
          rule.trigger,
          conditions && JSON.stringify(conditions),
          rule.active ?? true,
          userId,
        ],
      );
    }
    await client.query('commit');
  });
}

async function events(): Promise<EventRow[]> {
  return db.query<EventRow>('select * from workflow.events order by id');
}

async function eventCount(): Promise<number> {
  const [row] = await db.query<{ count: number }>('select count(*)::int as count from workflow.events');
  return row!.count;
}

async function insertOrders(count: number, status = 'new'): Promise<number[]> {
  const rows = await db.query<{ id: number }>(
    `insert into sales.orders (status) select $2 from generate_series(1, $1) returning id::int`,
    [count, status],
  );
  return rows.map((row) => row.id);
}

beforeAll(async () => {
  db = await createTestDatabase();
  await db.query(`
    create schema sales;
    create table sales.orders (
      id bigint generated always as identity primary key,
      status text not null default 'new',
      note text,
      n int not null default 0,
      body text,
      data jsonb
    );
  `);
  const [entity] = await db.query<{ id: string }>(`select workflow.register_entity('sales.orders') as id`);
  ordersId = entity!.id;
  const [user] = await db.query<{ id: string }>(
    `insert into core.users (email, name) values ('dba@example.com', 'DBA') returning id`,
  );
  userId = user!.id;
});

afterAll(async () => {
  await db?.drop();
});

beforeEach(async () => {
  await db.query('delete from workflow.events');
  await db.query('delete from workflow.idle_daemons');
  await setRules(
    { trigger: 'on_create' },
    { trigger: 'on_update', watch: ['status'] },
    { trigger: 'on_delete' },
  );
});

describe('one event per changed row', () => {
  it('insert, update and delete each give one event with the row as jsonb', async () => {
    const txids: string[] = [];
    let id = 0;
    await db.withClient(async (client) => {
      const step = async (statement: string) => {
        await client.query('begin');
        const { rows } = await client.query<{ id: number }>(statement, id ? [id] : []);
        txids.push(
          (await client.query<{ txid: string }>('select pg_current_xact_id()::text as txid')).rows[0]!.txid,
        );
        // Visible to the writer's own transaction, stamped at the time of the write.
        const [check] = (
          await client.query<{ ok: boolean }>(
            `select bool_and(created_at between now() and clock_timestamp()) and count(*) = 1 as ok
               from workflow.events where txid = pg_current_xact_id()`,
          )
        ).rows;
        expect(check!.ok).toBe(true);
        await client.query('commit');
        id ||= rows[0]!.id;
      };
      await step(`insert into sales.orders (status, note) values ('new', 'first') returning id::int`);
      await step(`update sales.orders set status = 'paid' where id = $1`);
      await step(`delete from sales.orders where id = $1`);
    });

    const captured = await events();
    expect(captured).toHaveLength(3);
    const row = { id, status: 'new', note: 'first', n: 0, body: null, data: null };
    const paid = { ...row, status: 'paid' };
    expect(
      captured.map(({ entity_id, operation, row_key, old_row, new_row, txid, actor_id, depth }) => ({
        entity_id,
        operation,
        row_key,
        old_row,
        new_row,
        txid,
        actor_id,
        depth,
      })),
    ).toEqual([
      {
        entity_id: ordersId,
        operation: 'on_create',
        row_key: { id },
        old_row: null,
        new_row: row,
        txid: txids[0],
        actor_id: null,
        depth: 0,
      },
      {
        entity_id: ordersId,
        operation: 'on_update',
        row_key: { id },
        old_row: row,
        new_row: paid,
        txid: txids[1],
        actor_id: null,
        depth: 0,
      },
      {
        entity_id: ordersId,
        operation: 'on_delete',
        row_key: { id },
        old_row: paid,
        new_row: null,
        txid: txids[2],
        actor_id: null,
        depth: 0,
      },
    ]);
    expect(new Set(txids).size).toBe(3);
    for (const event of captured) expect(event.created_at).toBeInstanceOf(Date);
  });

  it('workflow.changed_fields lists the columns an update changed', async () => {
    const [id] = await insertOrders(1);
    await db.query(`update sales.orders set status = 'paid', note = 'rush', n = n where id = $1`, [id]);
    const rows = await db.query<{ operation: string; changed: string[] }>(
      `select operation, workflow.changed_fields(old_row, new_row) as changed from workflow.events order by id`,
    );
    expect(rows).toEqual([
      { operation: 'on_create', changed: [] },
      { operation: 'on_update', changed: ['note', 'status'] },
    ]);
  });

  it('actor_id comes from set local workflow.actor_id', async () => {
    await db.withClient(async (client) => {
      await client.query('begin');
      await client.query(`set local workflow.actor_id = 'user:42'`);
      await client.query(`insert into sales.orders (status) values ('new')`);
      await client.query('commit');
      // set local ends with the transaction.
      await client.query(`insert into sales.orders (status) values ('new')`);
    });
    expect((await events()).map((event) => event.actor_id)).toEqual(['user:42', null]);
  });

  it('a multi-row UPDATE gives one event per row', async () => {
    const ids = await insertOrders(7);
    await db.query('delete from workflow.events');
    await db.query(`update sales.orders set status = 'shipped' where id = any($1)`, [ids]);
    const captured = await events();
    expect(captured.map((event) => event.row_key.id).sort()).toEqual([...ids].sort());
    expect(new Set(captured.map((event) => event.txid)).size).toBe(1);
    for (const event of captured) {
      expect(event.operation).toBe('on_update');
      expect(event.old_row!.status).toBe('new');
      expect(event.new_row!.status).toBe('shipped');
      expect(event.new_row!.id).toBe(event.row_key.id);
    }
  });
});

describe('only changes that an active rule could match are captured', () => {
  it('an update that changes nothing gives no event', async () => {
    await setRules({ trigger: 'on_update' });
    const [id] = await insertOrders(1);
    await db.query(`update sales.orders set status = status, note = note, n = n, data = data where id = $1`, [
      id,
    ]);
    await db.query(`update sales.orders set status = 'new' where id = $1`, [id]);
    expect(await eventCount()).toBe(0);
  });

  it('an update of an unwatched column gives no event, of a watched one does', async () => {
    const [id] = await insertOrders(1);
    await db.query('delete from workflow.events');
    await db.query(`update sales.orders set note = 'unwatched', n = n + 1 where id = $1`, [id]);
    expect(await eventCount()).toBe(0);
    await db.query(`update sales.orders set status = 'paid' where id = $1`, [id]);
    await db.query(`update sales.orders set status = 'shipped', note = 'both' where id = $1`, [id]);
    const captured = await events();
    expect(captured.map((event) => event.new_row!.status)).toEqual(['paid', 'shipped']);
    // The event carries the whole row, unwatched columns included.
    expect(captured[0]!.old_row).toMatchObject({ note: 'unwatched', n: 1 });
  });

  it('an on_update rule without conditions captures any real change', async () => {
    await setRules({ trigger: 'on_update' });
    const [id] = await insertOrders(1);
    expect(await eventCount()).toBe(0); // no on_create rule
    for (const assignment of [
      `note = 'x'`,
      'n = n + 1',
      `body = 'text'`,
      `data = '{"a": 1}'`,
      `data = '{"a": 2}'`,
    ]) {
      await db.query(`update sales.orders set ${assignment} where id = $1`, [id]);
    }
    const changed = await db.query<{ changed: string[] }>(
      'select workflow.changed_fields(old_row, new_row) as changed from workflow.events order by id',
    );
    expect(changed.map((row) => row.changed)).toEqual([['note'], ['n'], ['body'], ['data'], ['data']]);
  });

  it('a second rule’s watched columns add to the first’s', async () => {
    await setRules({ trigger: 'on_update', watch: ['status'] }, { trigger: 'on_update', watch: ['note'] });
    const [id] = await insertOrders(1);
    await db.query(`update sales.orders set note = 'watched now' where id = $1`, [id]);
    await db.query(`update sales.orders set n = 5 where id = $1`, [id]);
    expect((await events()).map((event) => event.new_row!.note)).toEqual(['watched now']);
  });

  it('deletes are captured only while an active on_delete rule exists', async () => {
    await setRules({ trigger: 'on_create' });
    const ids = await insertOrders(3);
    await db.query('delete from workflow.events');
    await db.query('delete from sales.orders where id = $1', [ids[0]]);
    expect(await eventCount()).toBe(0);

    await setRules({ trigger: 'on_create' }, { trigger: 'on_delete' });
    await db.query('delete from sales.orders where id = $1', [ids[1]]);
    expect((await events()).map((event) => [event.operation, event.row_key])).toEqual([
      ['on_delete', { id: ids[1] }],
    ]);

    await db.query('delete from workflow.events');
    await db.query(
      `update workflow.automation_rules set is_active = false
        where entity_id = $1 and trigger_type_id = (select id from workflow.trigger_types where name = 'on_delete')`,
      [ordersId],
    );
    await db.query('delete from sales.orders where id = $1', [ids[2]]);
    await insertOrders(1);
    expect((await events()).map((event) => event.operation)).toEqual(['on_create']);
  });

  it('an inactive on_update rule watches nothing', async () => {
    await setRules({ trigger: 'on_update', active: false });
    const [id] = await insertOrders(1);
    await db.query(`update sales.orders set status = 'paid' where id = $1`, [id]);
    expect(await eventCount()).toBe(0);
  });

  it('a rolled-back transaction leaves no event', async () => {
    const [id] = await insertOrders(1);
    await db.query('delete from workflow.events');
    await db.withClient(async (client) => {
      await client.query('begin');
      await client.query(`insert into sales.orders (status) values ('ghost')`);
      await client.query(`update sales.orders set status = 'ghost' where id = $1`, [id]);
      await client.query(`delete from sales.orders where id = $1`, [id]);
      const { rows } = await client.query<{ count: number }>(
        'select count(*)::int as count from workflow.events',
      );
      expect(rows[0]!.count).toBe(3);
      await client.query('rollback');
    });
    expect(await eventCount()).toBe(0);
    // A rolled-back savepoint takes its events with it too.
    await db.withClient(async (client) => {
      await client.query('begin');
      await client.query(`update sales.orders set status = 'kept' where id = $1`, [id]);
      await client.query('savepoint s');
      await client.query(`update sales.orders set status = 'undone' where id = $1`, [id]);
      await client.query('rollback to savepoint s');
      await client.query('commit');
    });
    expect((await events()).map((event) => event.new_row!.status)).toEqual(['kept']);
  });
});

describe('the capture function runs as its owner without trusting the caller', () => {
  it('a caller’s search_path cannot redirect what it calls', async () => {
    // The capture function is SECURITY DEFINER without SET search_path; every name in it is
    // qualified. Objects of the same names earlier on the caller's path must not be used.
    await db.query(`
      create schema trap;
      create function trap.to_jsonb(anyelement) returns jsonb language sql as $$ select '"trapped"'::jsonb $$;
      create function trap.jsonb_build_object(text, bigint) returns jsonb language sql as $$ select '"trapped"'::jsonb $$;
      create function trap.current_setting(text, boolean) returns text language sql as $$ select 'trapped' $$;
      create function trap.text_eq(text, text) returns boolean language sql as $$ select false $$;
      create operator trap.= (leftarg = text, rightarg = text, function = trap.text_eq);
      create operator trap.<> (leftarg = text, rightarg = text, function = trap.text_eq);
      create table trap.events (like workflow.events);
    `);
    try {
      await db.withClient(async (client) => {
        await client.query('set search_path = trap, pg_catalog, sales');
        await client.query(`create temp table events (like trap.events)`);
        const { rows } = await client.query<{ id: number }>(
          `insert into orders (status) values ('new') returning id::int`,
        );
        await client.query(`update orders set status = 'paid' where id = $1`, [rows[0]!.id]);
      });
      const captured = await events();
      expect(
        captured.map(({ operation, row_key, new_row, actor_id, depth }) => ({
          operation,
          key: row_key,
          status: new_row!.status,
          actor_id,
          depth,
        })),
      ).toEqual([
        {
          operation: 'on_create',
          key: { id: captured[0]!.new_row!.id },
          status: 'new',
          actor_id: null,
          depth: 0,
        },
        {
          operation: 'on_update',
          key: { id: captured[0]!.new_row!.id },
          status: 'paid',
          actor_id: null,
          depth: 0,
        },
      ]);
      expect(await db.query('select 1 from trap.events')).toEqual([]);
    } finally {
      await db.query('drop schema trap cascade');
    }
  });
});

describe('columns of every kind', () => {
  it('types without an equality operator of their own are compared too', async () => {
    await db.query(`
      create type sales.size as enum ('s', 'm', 'l');
      create domain sales.code as text check (value <> '');
      create table sales.shapes (
        id int primary key,
        j json, p point, v varchar(10), a int[], e sales.size, d sales.code, r numeric, t tsrange
      );
    `);
    const [entity] = await db.query<{ id: string }>(`select workflow.register_entity('sales.shapes') as id`);
    await db.query(
      `insert into workflow.automation_rules
         (name, entity_id, entity_type_id, trigger_type_id, created_by, updated_by)
       select 'any shape change', e.id, e.entity_type_id, t.id, $2, $2
         from workflow.entities e, workflow.trigger_types t where e.id = $1 and t.name = 'on_update'`,
      [entity!.id, userId],
    );
    await db.query(
      `insert into sales.shapes values
         (1, '{"a": 1}', '(1,2)', 'x', '{1,2}', 's', 'c', 1.5, '[2024-01-01,2024-02-01)')`,
    );
    const assignments = [
      `j = '{"a": 2}'`,
      `p = '(1,3)'`,
      `v = 'y'`,
      `a = '{1,2,3}'`,
      `e = 'm'`,
      `d = 'd'`,
      `r = 2.5`,
      `t = '[2024-01-01,2024-03-01)'`,
    ];
    for (const assignment of assignments) {
      // The same value again is no change; a new value is.
      await db.query('update sales.shapes set j = j, p = p, v = v, a = a, e = e, d = d, r = r, t = t');
      await db.query(`update sales.shapes set ${assignment}`);
    }
    const changed = await db.query<{ changed: string[] }>(
      `select workflow.changed_fields(old_row, new_row) as changed from workflow.events
        where entity_id = $1 order by id`,
      [entity!.id],
    );
    expect(changed.map((row) => row.changed)).toEqual([
      ['j'],
      ['p'],
      ['v'],
      ['a'],
      ['e'],
      ['d'],
      ['r'],
      ['t'],
    ]);
  });
});

describe('values are captured whole', () => {
  it('a 1 MB text value', async () => {
    const body = 'x'.repeat(1 << 20) + 'é';
    const [{ id } = { id: 0 }] = await db.query<{ id: number }>(
      'insert into sales.orders (status, body) values ($1, $2) returning id::int',
      ['new', body],
    );
    const [stored] = await db.query<{ length: number; same: boolean }>(
      `select length(e.new_row ->> 'body') as length, e.new_row ->> 'body' = o.body as same
         from workflow.events e join sales.orders o on o.id = (e.row_key ->> 'id')::bigint where o.id = $1`,
      [id],
    );
    expect(stored).toEqual({ length: body.length, same: true });
    const [event] = await events();
    expect(event!.new_row!.body).toBe(body);
  });

  it('a large jsonb value', async () => {
    const [{ id } = { id: 0 }] = await db.query<{ id: number }>(
      `insert into sales.orders (status, data)
       select 'new', jsonb_build_object(
         'items', jsonb_agg(jsonb_build_object('sku', 'sku-' || i, 'qty', i, 'tags', jsonb_build_array(i, repeat('t', 50))))
       )
         from generate_series(1, 20000) i
       returning id::int`,
    );
    await db.query(
      `update sales.orders set status = 'paid', data = jsonb_set(data, '{items,0,qty}', '999') where id = $1`,
      [id],
    );
    const rows = await db.query<{ operation: string; same: boolean; items: number; size: number }>(
      `select e.operation, coalesce(e.new_row -> 'data' = o.data, false) as same,
              jsonb_array_length(e.new_row -> 'data' -> 'items') as items,
              pg_column_size(e.new_row -> 'data') as size
         from workflow.events e join sales.orders o on o.id = (e.row_key ->> 'id')::bigint
        where o.id = $1 order by e.id`,
      [id],
    );
    expect(rows.map(({ operation, items }) => ({ operation, items }))).toEqual([
      { operation: 'on_create', items: 20000 },
      { operation: 'on_update', items: 20000 },
    ]);
    expect(rows[1]!.same).toBe(true);
    const [old] = await db.query<{ qty: number }>(
      `select (old_row #>> '{data,items,0,qty}')::int as qty from workflow.events where operation = 'on_update'`,
    );
    expect(old!.qty).toBe(1);
  });
});

describe('concurrent writers', () => {
  it('events of one row follow commit order', async () => {
    await setRules({ trigger: 'on_update', watch: ['n'] });
    const ids = await insertOrders(5);
    const writers = await Promise.all(
      Array.from({ length: 8 }, async () => {
        const client = new pg.Client({ connectionString: db.url });
        await client.connect();
        return client;
      }),
    );
    try {
      await Promise.all(
        writers.map(async (client, writer) => {
          for (let i = 0; i < 100; i++) {
            await client.query('update sales.orders set n = n + 1 where id = $1', [
              ids[(writer + i) % ids.length],
            ]);
          }
        }),
      );
    } finally {
      await Promise.all(writers.map((client) => client.end()));
    }

    const captured = await db.query<{ key: number; old_n: number; new_n: number }>(
      `select (row_key ->> 'id')::int as key, (old_row ->> 'n')::int as old_n, (new_row ->> 'n')::int as new_n
         from workflow.events order by id`,
    );
    expect(captured).toHaveLength(800);
    const finals = await db.query<{ id: number; n: number }>(
      'select id::int, n from sales.orders where id = any($1)',
      [ids],
    );
    for (const id of ids) {
      const ofRow = captured.filter((event) => event.key === id);
      expect(ofRow).toHaveLength(160);
      ofRow.forEach((event, index) => {
        expect(event.new_n, `row ${id}, event ${index}`).toBe(index + 1);
        expect(event.old_n, `row ${id}, event ${index}`).toBe(index === 0 ? 0 : ofRow[index - 1]!.new_n);
      });
      expect(finals.find((row) => row.id === id)!.n).toBe(160);
    }
  });
});

describe('the NOTIFY wake-up', () => {
  let listener: pg.Client;
  let received: { channel: string; payload: string | undefined }[] = [];
  let writer: pg.Client;
  let marker = 0;

  beforeAll(async () => {
    listener = new pg.Client({ connectionString: db.url });
    writer = new pg.Client({ connectionString: db.url });
    await listener.connect();
    await writer.connect();
    listener.on('notification', (message) =>
      received.push({ channel: message.channel, payload: message.payload }),
    );
    await listener.query('listen rulebook_events');
    await listener.query('listen rulebook_test_marker');
  });

  afterAll(async () => {
    await listener?.end();
    await writer?.end();
  });

  /** Commits a transaction updating `count` watched rows and returns what the listener received for it. */
  async function notificationsFor(
    count: number,
  ): Promise<{ channel: string; payload: string | undefined }[]> {
    const ids = await insertOrders(count);
    // The inserts may notify too; let those arrive before listening for the update.
    await settle();
    received = [];
    await writer.query('begin');
    for (const id of ids) await writer.query(`update sales.orders set status = 'paid' where id = $1`, [id]);
    await writer.query('commit');
    await settle();
    return received.filter((message) => message.channel === 'rulebook_events');
  }

  /**
   * Sends a marker after everything committed so far and waits for it. Notifications are delivered
   * in commit order, so once the marker is in, so is everything committed before it.
   */
  async function settle(): Promise<void> {
    const tag = String(++marker);
    await writer.query(`select pg_notify('rulebook_test_marker', $1)`, [tag]);
    await waitFor(`marker ${tag}`, () =>
      received.some((message) => message.channel === 'rulebook_test_marker' && message.payload === tag),
    );
  }

  it('one empty notification per transaction while a daemon is idle', async () => {
    await db.query(`insert into workflow.idle_daemons (daemon_id) values ('daemon-1')`);
    const notifications = await notificationsFor(50);
    expect(notifications).toEqual([{ channel: 'rulebook_events', payload: '' }]);
    expect(await db.query(`select 1 from workflow.events where operation = 'on_update'`)).toHaveLength(50);

    // And again for the next transaction.
    expect(await notificationsFor(3)).toHaveLength(1);
  });

  it('follows the idle count, which the table keeps, not a query of the table', async () => {
    await db.query(`insert into workflow.idle_daemons (daemon_id) values ('daemon-1')`);
    const [counted] = await db.query<{ n: string }>(
      `select pg_sequence_last_value('workflow.idle_daemons_count') as n`,
    );
    expect(counted!.n).toBe('1');
    // A count of 0 beside a row: writers trust the count (a stale "busy" costs a poll, no more).
    await db.query(`select setval('workflow.idle_daemons_count', 0)`);
    expect(await notificationsFor(5)).toEqual([]);
    await db.query(`delete from workflow.idle_daemons`);
    await db.query(`select setval('workflow.idle_daemons_count', 1)`);
    expect(await notificationsFor(5)).toHaveLength(1);
    await db.query(`select setval('workflow.idle_daemons_count', 0)`);
  });

  it('none while no daemon is idle', async () => {
    const notifications = await notificationsFor(50);
    expect(notifications).toEqual([]);
    expect(await db.query(`select 1 from workflow.events where operation = 'on_update'`)).toHaveLength(50);
  });
});

describe('the Debezium-shaped outbox', () => {
  it('workflow.outbox gives id, aggregatetype, aggregateid, type and payload', async () => {
    const [id] = await insertOrders(1);
    await db.withClient(async (client) => {
      await client.query('begin');
      await client.query(`set local workflow.actor_id = 'user:7'`);
      await client.query(`update sales.orders set status = 'paid', note = 'rush' where id = $1`, [id]);
      await client.query('commit');
    });
    const rows = await db.query<{
      id: string;
      aggregatetype: string;
      aggregateid: string;
      type: string;
      payload: Record<string, unknown>;
    }>('select id, aggregatetype, aggregateid, type, payload from workflow.outbox order by id');
    const captured = await events();
    expect(rows.map((row) => row.id)).toEqual(captured.map((event) => event.id));
    expect(
      rows.map(({ aggregatetype, aggregateid, type }) => ({ aggregatetype, aggregateid, type })),
    ).toEqual([
      { aggregatetype: 'sales.orders', aggregateid: `{"id": ${id}}`, type: 'on_create' },
      { aggregatetype: 'sales.orders', aggregateid: `{"id": ${id}}`, type: 'on_update' },
    ]);
    expect(JSON.parse(rows[0]!.aggregateid)).toEqual({ id });
    const update = rows[1]!.payload;
    expect(update).toMatchObject({
      old: { id, status: 'new', note: null },
      new: { id, status: 'paid', note: 'rush' },
      changed_fields: ['note', 'status'],
      actor_id: 'user:7',
      txid: captured[1]!.txid,
      depth: 0,
    });
    expect(rows[0]!.payload).toMatchObject({ old: null, new: { id, status: 'new' }, actor_id: null });
  });
});
