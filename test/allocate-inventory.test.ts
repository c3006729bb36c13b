import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { defaultActions } from '../src/actions/registry.js';
import type { Engine } from '../src/engine/engine.js';
import { EventExecutor } from '../src/engine/executor.js';
import { EngineMetrics } from '../src/engine/metrics.js';
import { RuleSet } from '../src/engine/rule-cache.js';
import type { CapturedEvent } from '../src/model/types.js';
import { createLogger } from '../src/logger.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { startEngine } from './support/engine.js';
import { createRule, ensureDba } from './support/rules.js';
import { waitFor } from './support/wait.js';
import { createTable, createUser } from './support/tables.js';

let db: TestDatabase;
let engines: Engine[] = [];
let annId: string;

interface AllocationData {
  allocation_id: string;
  replayed: boolean;
  status: 'success' | 'partial' | 'failed';
  idempotency_key: string;
  strategy: string;
  mode: string;
  priority: unknown;
  expires_at: string | null;
  allocated_at: string;
  requested: { product: unknown; quantity: number }[];
  allocated_items: {
    product: unknown;
    lot: unknown;
    lot_key: { id: number };
    location: unknown;
    quantity: number;
    unit_cost: number | null;
  }[];
  failed_items: { product: unknown; requested: number; available: number; short_by: number }[];
  totals: { requested: number; allocated: number; short: number; cost: number | null; lots: number };
  warnings: string[];
}

interface ActionRecord {
  name: string;
  status: string;
  error?: string;
  result?: AllocationData;
}

const INVENTORY = {
  table: 'inventory.lots',
  columns: {
    product: 'product_id',
    location: 'location',
    on_hand: 'on_hand',
    reserved: 'reserved',
    received: 'received_date',
    expiry: 'expiry_date',
    unit_cost: 'unit_cost',
    lot: 'lot_number',
  },
};

const ROW_REQUEST = { product_field: 'product_id', quantity_field: 'quantity' };

beforeAll(async () => {
  db = await createTestDatabase();
  await createTable(
    db,
    'inventory.lots',
    `
    id serial primary key,
    product_id text not null,
    location text not null default 'MAIN',
    lot_number text not null,
    on_hand int not null,
    reserved int not null default 0,
    allocated int not null default 0,
    received_date date not null default current_date,
    expiry_date date,
    unit_cost numeric(10,2) not null default 1
  `,
  );
  await createTable(
    db,
    'sales.orders',
    `
    id uuid primary key default gen_random_uuid(),
    order_number text not null,
    scenario text not null,
    product_id text,
    quantity int,
    priority int
  `,
  );
  await db.query(`create table sales.order_lines (
    id serial primary key,
    order_id uuid not null references sales.orders (id),
    product_id text,
    quantity int
  )`);
  await ensureDba(db);
  annId = await createUser(db, 'ann@example.com', 'Ann');
});

afterEach(async () => {
  await Promise.all(engines.map((engine) => engine.stop()));
  engines = [];
  await db.query(`update workflow.automation_rules set is_active = false`);
});

afterAll(async () => {
  await db.drop();
});

async function start(count = 1, options: Parameters<typeof startEngine>[1] = {}): Promise<void> {
  for (let i = 0; i < count; i++) engines.push(await startEngine(db, options));
}

/** A rule that allocates for orders of one scenario; returns the rule id. */
function allocationRule(scenario: string, config: Record<string, unknown>): Promise<string> {
  return createRule(db, {
    name: `allocate ${scenario}`,
    entity: 'sales.orders',
    trigger: 'on_create',
    conditions: [{ field_name: 'scenario', operator: 'equals', value: scenario }],
    actions: [
      {
        name: 'allocate',
        config: { action_type: 'allocate_inventory', inventory: INVENTORY, request: ROW_REQUEST, ...config },
      },
    ],
  });
}

/** Lots as [lot_number, on_hand, received, expiry, unit_cost]; returns lot_number -> id. */
async function stock(
  product: string,
  lots: [string, number, string, string | null, number][],
): Promise<Record<string, number>> {
  const ids: Record<string, number> = {};
  for (const [lot, onHand, received, expiry, cost] of lots) {
    const [row] = await db.query<{ id: number }>(
      `insert into inventory.lots (product_id, lot_number, on_hand, received_date, expiry_date, unit_cost)
       values ($1, $2, $3, $4, $5, $6) returning id`,
      [product, lot, onHand, received, expiry, cost],
    );
    ids[lot] = row!.id;
  }
  return ids;
}

async function lotsOf(product: string) {
  return db.query<{ lot_number: string; on_hand: number; reserved: number; allocated: number }>(
    `select lot_number, on_hand, reserved, allocated from inventory.lots where product_id = $1 order by lot_number`,
    [product],
  );
}

async function executionFor(orderId: string) {
  return waitFor(`the execution for order ${orderId}`, async () => {
    const [row] = await db.query<{
      status: string;
      error_message: string | null;
      actions_executed: ActionRecord[];
    }>(
      `select status, error_message, actions_executed from workflow.automation_executions
        where trigger_data -> 'row_key' ->> 'id' = $1 and trigger_data ->> 'entity' = 'sales.orders'
        order by executed_at desc limit 1`,
      [orderId],
    );
    return row;
  });
}

async function order(
  scenario: string,
  product: string | null,
  quantity: number | null,
  extra: { priority?: number } = {},
) {
  const [row] = await db.query<{ id: string }>(
    `insert into sales.orders (order_number, scenario, product_id, quantity, priority)
     values ($1, $2, $3, $4, $5) returning id`,
    [
      `${scenario}-${Math.random().toString(36).slice(2, 8)}`,
      scenario,
      product,
      quantity,
      extra.priority ?? null,
    ],
  );
  return row!.id;
}

/** Places an order and returns its allocation result, as the action recorded it. */
async function allocate(scenario: string, product: string, quantity: number): Promise<AllocationData> {
  const orderId = await order(scenario, product, quantity);
  const execution = await executionFor(orderId);
  expect(execution.status, execution.error_message ?? '').toBe('success');
  return execution.actions_executed[0]!.result!;
}

function picked(result: AllocationData): [unknown, number][] {
  return result.allocated_items.map((item) => [item.lot, item.quantity]);
}

describe('strategies', () => {
  it('fifo takes the oldest received lots first', async () => {
    await stock('P-FIFO', [
      ['F-JAN', 5, '2024-01-01', null, 1],
      ['F-FEB', 5, '2024-02-01', null, 1],
      ['F-DEC', 2, '2023-12-01', null, 1],
    ]);
    await allocationRule('fifo', { strategy: 'fifo' });
    await start();
    const result = await allocate('fifo', 'P-FIFO', 6);
    expect(result.status).toBe('success');
    expect(picked(result)).toEqual([
      ['F-DEC', 2],
      ['F-JAN', 4],
    ]);
    expect(result.totals).toMatchObject({ requested: 6, allocated: 6, short: 0, lots: 2 });
    expect(await lotsOf('P-FIFO')).toEqual([
      { lot_number: 'F-DEC', on_hand: 2, reserved: 2, allocated: 0 },
      { lot_number: 'F-FEB', on_hand: 5, reserved: 0, allocated: 0 },
      { lot_number: 'F-JAN', on_hand: 5, reserved: 4, allocated: 0 },
    ]);
    // What is reserved is no longer available: the next order starts where this one stopped.
    const next = await allocate('fifo', 'P-FIFO', 3);
    expect(picked(next)).toEqual([
      ['F-JAN', 1],
      ['F-FEB', 2],
    ]);
  });

  it('lifo takes the newest received lots first', async () => {
    await stock('P-LIFO', [
      ['L-JAN', 5, '2024-01-01', null, 1],
      ['L-FEB', 5, '2024-02-01', null, 1],
      ['L-DEC', 2, '2023-12-01', null, 1],
    ]);
    await allocationRule('lifo', { strategy: 'lifo' });
    await start();
    const result = await allocate('lifo', 'P-LIFO', 6);
    expect(picked(result)).toEqual([
      ['L-FEB', 5],
      ['L-JAN', 1],
    ]);
  });

  it('nearest_expiry takes the earliest expiry first and never an expired lot', async () => {
    const today = new Date();
    const inDays = (days: number) => new Date(today.getTime() + days * 86_400_000).toISOString().slice(0, 10);
    await stock('P-EXP', [
      ['X-EXPIRED', 10, '2024-01-01', '2020-01-01', 1],
      ['X-30D', 3, '2024-01-01', inDays(30), 1],
      ['X-10D', 3, '2024-01-01', inDays(10), 1],
      ['X-NONE', 10, '2024-01-01', null, 1],
    ]);
    await allocationRule('expiry', { strategy: 'nearest_expiry', allow_partial: true });
    await start();
    const result = await allocate('expiry', 'P-EXP', 5);
    expect(picked(result)).toEqual([
      ['X-10D', 3],
      ['X-30D', 2],
    ]);
    expect(result.warnings).toContain('product P-EXP: skipped 1 expired lot(s)');
    // Lots without an expiry date come after those with one; the expired lot is never touched.
    const more = await allocate('expiry', 'P-EXP', 12);
    expect(picked(more)).toEqual([
      ['X-30D', 1],
      ['X-NONE', 10],
    ]);
    expect(more.status).toBe('partial');
    expect(more.failed_items).toEqual([{ product: 'P-EXP', requested: 12, available: 11, short_by: 1 }]);
    expect((await lotsOf('P-EXP')).find((lot) => lot.lot_number === 'X-EXPIRED')!.reserved).toBe(0);
  });

  it('lowest_cost takes the cheapest lots first, ties in primary-key order, and totals the cost', async () => {
    await stock('P-COST', [
      ['C-DEAR', 4, '2024-01-01', null, 2.5],
      ['C-CHEAP-1', 3, '2024-01-01', null, 1.25],
      ['C-CHEAP-2', 3, '2024-01-01', null, 1.25],
    ]);
    await allocationRule('cost', { strategy: 'lowest_cost' });
    await start();
    const result = await allocate('cost', 'P-COST', 7);
    expect(result.allocated_items.map((item) => [item.lot, item.quantity, item.unit_cost])).toEqual([
      ['C-CHEAP-1', 3, 1.25],
      ['C-CHEAP-2', 3, 1.25],
      ['C-DEAR', 1, 2.5],
    ]);
    expect(result.totals.cost).toBe(10);
  });
});

describe('shortfalls', () => {
  it('allow_partial allocates what there is and reports the rest', async () => {
    await stock('P-PART', [
      ['PA-1', 3, '2024-01-01', null, 1],
      ['PA-2', 1, '2024-01-02', null, 1],
    ]);
    await allocationRule('partial', { allow_partial: true });
    await start();
    const result = await allocate('partial', 'P-PART', 10);
    expect(result.status).toBe('partial');
    expect(picked(result)).toEqual([
      ['PA-1', 3],
      ['PA-2', 1],
    ]);
    expect(result.failed_items).toEqual([{ product: 'P-PART', requested: 10, available: 4, short_by: 6 }]);
    expect(result.totals).toMatchObject({ requested: 10, allocated: 4, short: 6 });
    expect((await lotsOf('P-PART')).map((lot) => lot.reserved)).toEqual([3, 1]);
  });

  it('all or nothing (the default) allocates nothing on a shortfall and says so, without failing the action', async () => {
    await stock('P-AON', [['AON-1', 4, '2024-01-01', null, 1]]);
    await allocationRule('aon', {});
    await start();
    const orderId = await order('aon', 'P-AON', 10);
    const execution = await executionFor(orderId);
    expect(execution.status).toBe('success');
    const result = execution.actions_executed[0]!.result!;
    expect(result.status).toBe('failed');
    expect(result.allocated_items).toEqual([]);
    expect(result.failed_items).toEqual([{ product: 'P-AON', requested: 10, available: 4, short_by: 6 }]);
    expect(result.warnings).toContain(
      'allow_partial is false and the request cannot be met in full, so nothing was allocated',
    );
    expect((await lotsOf('P-AON')).map((lot) => lot.reserved)).toEqual([0]);
    // The failed result is stored, for rules and people to see.
    const [stored] = await db.query<{ status: string }>(
      `select allocation_data ->> 'status' as status from workflow.allocation_results where idempotency_key = $1`,
      [result.idempotency_key],
    );
    expect(stored!.status).toBe('failed');
  });

  it('a product with no stock at all is a shortfall too', async () => {
    await allocationRule('none', { allow_partial: true });
    await start();
    const result = await allocate('none', 'P-NOWHERE', 2);
    // Even with allow_partial, an allocation of nothing has failed.
    expect(result.status).toBe('failed');
    expect(result.failed_items).toEqual([{ product: 'P-NOWHERE', requested: 2, available: 0, short_by: 2 }]);
    expect(result.warnings).toContain('product P-NOWHERE: no inventory rows');
  });
});

describe('requests', () => {
  it('reads line items, one allocation for every product of the order', async () => {
    await stock('P-LINE-A', [['LA-1', 10, '2024-01-01', null, 2]]);
    await stock('P-LINE-B', [
      ['LB-1', 1, '2024-01-01', null, 3],
      ['LB-2', 5, '2024-01-02', null, 4],
    ]);
    await allocationRule('lines', {
      request: {
        lines_table: 'sales.order_lines',
        match: { order_id: '{{id}}' },
        product_column: 'product_id',
        quantity_column: 'quantity',
      },
    });
    await start();
    // The lines are written in the order's transaction, so they are there when the rule runs.
    const orderId = await db.withClient(async (client) => {
      await client.query('begin');
      const [row] = (
        await client.query<{ id: string }>(
          `insert into sales.orders (order_number, scenario) values ('LINES-1', 'lines') returning id`,
        )
      ).rows;
      await client.query(
        `insert into sales.order_lines (order_id, product_id, quantity)
         values ($1, 'P-LINE-B', 2), ($1, 'P-LINE-A', 2), ($1, 'P-LINE-A', 1), ($1, 'P-LINE-B', 0)`,
        [row!.id],
      );
      await client.query('commit');
      return row!.id;
    });
    const execution = await executionFor(orderId);
    const result = execution.actions_executed[0]!.result!;
    expect(result.status).toBe('success');
    expect(result.requested).toEqual([
      { product: 'P-LINE-A', quantity: 3 },
      { product: 'P-LINE-B', quantity: 2 },
    ]);
    expect(result.allocated_items.map((item) => [item.product, item.lot, item.quantity])).toEqual([
      ['P-LINE-A', 'LA-1', 3],
      ['P-LINE-B', 'LB-1', 1],
      ['P-LINE-B', 'LB-2', 1],
    ]);
    expect(result.totals).toMatchObject({ requested: 5, allocated: 5, cost: 13 });
  });

  it('a request for nothing allocates nothing and says why', async () => {
    await allocationRule('zero', {});
    await start();
    const result = await allocate('zero', 'P-ZERO', 0);
    expect(result).toMatchObject({ status: 'success', allocated_items: [], failed_items: [] });
    expect(result.warnings).toEqual([
      'product P-ZERO: requested quantity 0 is not positive; skipped',
      'nothing to allocate',
    ]);
  });

  it('refuses bad configuration when the rule is written', async () => {
    const refused: [string, Record<string, unknown>, string, string][] = [
      [
        'no table',
        { inventory: { ...INVENTORY, table: 'inventory.nope' }, request: ROW_REQUEST },
        '23503',
        'allocate_inventory config.inventory.table "inventory.nope" is not an existing table (write it as in SQL: schema.table)',
      ],
      [
        'bad column',
        {
          inventory: { ...INVENTORY, columns: { ...INVENTORY.columns, on_hand: 'stock' } },
          request: ROW_REQUEST,
        },
        '23503',
        'allocate_inventory config.inventory.columns.on_hand "stock" is not a column of inventory.lots',
      ],
      [
        'text cost',
        {
          inventory: { ...INVENTORY, columns: { ...INVENTORY.columns, unit_cost: 'lot_number' } },
          request: ROW_REQUEST,
        },
        '22023',
        'allocate_inventory config.inventory.columns.unit_cost "lot_number" must be a number, but it is text',
      ],
      [
        'bad strategy',
        { inventory: INVENTORY, request: ROW_REQUEST, strategy: 'random' },
        '22023',
        'config.strategy must be one of fifo, lifo, nearest_expiry, lowest_cost',
      ],
      [
        'no quantity field',
        { inventory: INVENTORY, request: { product_field: 'product_id', quantity_field: 'qty' } },
        '23503',
        'allocate_inventory config.request.quantity_field "qty" is not a column of sales.orders',
      ],
    ];
    for (const [name, config, code, message] of refused) {
      await expect(
        createRule(db, {
          name: `refused ${name}`,
          entity: 'sales.orders',
          trigger: 'on_create',
          actions: [{ name, config: { action_type: 'allocate_inventory', ...config } }],
        }),
        name,
      ).rejects.toMatchObject({ code, message: expect.stringContaining(message) as unknown });
    }
  });

  it('reports an inventory table dropped since the rule was written as a failed action, recording nothing', async () => {
    await db.query(`create table inventory.doomed (like inventory.lots including all)`);
    await createRule(db, {
      name: 'bad allocations',
      entity: 'sales.orders',
      trigger: 'on_create',
      conditions: [{ field_name: 'scenario', operator: 'equals', value: 'bad' }],
      actions: [
        {
          name: 'no table',
          config: {
            action_type: 'allocate_inventory',
            inventory: { ...INVENTORY, table: 'inventory.doomed' },
            request: ROW_REQUEST,
          },
        },
      ],
    });
    await db.query(`drop table inventory.doomed`);
    await start();
    const orderId = await order('bad', 'P-ANY', 1);
    const execution = await executionFor(orderId);
    expect(execution.status).toBe('failed');
    const errors = Object.fromEntries(
      execution.actions_executed.map((action) => [action.name, action.error]),
    );
    expect(errors).toEqual({
      'no table':
        'allocate_inventory: config.inventory.table "inventory.doomed" is not an existing table (write it as in SQL: schema.table)',
    });
    const [count] = await db.query<{ count: string }>(
      `select count(*) from workflow.allocation_results where allocation_data -> 'source' -> 'row_key' ->> 'id' = $1`,
      [orderId],
    );
    expect(count!.count).toBe('0');
  });
});

describe('modes', () => {
  it('reserve records expires_at, and workflow.release_expired_reservations gives expired stock back', async () => {
    await stock('P-RES', [['R-1', 5, '2024-01-01', null, 1]]);
    await allocationRule('reserve', { mode: 'reserve', reservation_hours: 2, priority: '{{priority}}' });
    await start();
    const orderId = await order('reserve', 'P-RES', 4, { priority: 7 });
    const result = (await executionFor(orderId)).actions_executed[0]!.result!;
    expect(result).toMatchObject({ status: 'success', mode: 'reserve', priority: 7 });
    const hours = (Date.parse(result.expires_at!) - Date.parse(result.allocated_at)) / 3_600_000;
    expect(hours).toBeCloseTo(2, 5);
    expect(await lotsOf('P-RES')).toEqual([{ lot_number: 'R-1', on_hand: 5, reserved: 4, allocated: 0 }]);

    // Not expired yet: nothing to release.
    const [none] = await db.query<{ released: number }>(
      `select workflow.release_expired_reservations() as released`,
    );
    expect(none!.released).toBe(0);
    await db.query(
      `update workflow.allocation_results
          set allocation_data = jsonb_set(allocation_data, '{expires_at}', to_jsonb(now() - interval '1 minute'))
        where id = $1`,
      [result.allocation_id],
    );
    const [one] = await db.query<{ released: number }>(
      `select workflow.release_expired_reservations() as released`,
    );
    expect(one!.released).toBe(1);
    expect((await lotsOf('P-RES'))[0]!.reserved).toBe(0);
    const [stored] = await db.query<{ data: Record<string, unknown> }>(
      `select allocation_data as data from workflow.allocation_results where id = $1`,
      [result.allocation_id],
    );
    expect(stored!.data).toMatchObject({
      release_reason: 'reservation expired',
      released_at: expect.any(String),
    });
    // Released once only.
    const [again] = await db.query<{ released: number }>(
      `select workflow.release_expired_reservations() as released`,
    );
    expect(again!.released).toBe(0);
    expect((await lotsOf('P-RES'))[0]!.reserved).toBe(0);
  });

  it('allocate mode counts in the allocated column, which availability takes into account', async () => {
    await stock('P-ALLOC', [
      ['A-1', 5, '2024-01-01', null, 1],
      ['A-2', 5, '2024-01-02', null, 1],
    ]);
    await db.query(`update inventory.lots set reserved = 2, allocated = 1 where lot_number = 'A-1'`);
    await allocationRule('allocate', {
      mode: 'allocate',
      inventory: { ...INVENTORY, columns: { ...INVENTORY.columns, allocated: 'allocated' } },
    });
    await start();
    const result = await allocate('allocate', 'P-ALLOC', 4);
    expect(result).toMatchObject({ mode: 'allocate', expires_at: null });
    expect(picked(result)).toEqual([
      ['A-1', 2],
      ['A-2', 2],
    ]);
    expect(await lotsOf('P-ALLOC')).toEqual([
      { lot_number: 'A-1', on_hand: 5, reserved: 2, allocated: 3 },
      { lot_number: 'A-2', on_hand: 5, reserved: 0, allocated: 2 },
    ]);
    // An allocation can be given back by hand, e.g. when the order is cancelled.
    const [released] = await db.query<{ released: boolean }>(
      `select workflow.release_allocation($1, 'order cancelled') as released`,
      [result.allocation_id],
    );
    expect(released!.released).toBe(true);
    expect((await lotsOf('P-ALLOC')).map((lot) => lot.allocated)).toEqual([1, 0]);
  });
});

describe('idempotency', () => {
  it('a replayed event (same event id) returns the stored result and allocates nothing more', async () => {
    await stock('P-REPLAY', [['RP-1', 10, '2024-01-01', null, 1]]);
    const ruleId = await allocationRule('replay', {});
    await start();
    const orderId = await order('replay', 'P-REPLAY', 4);
    const first = (await executionFor(orderId)).actions_executed[0]!.result!;
    expect(first).toMatchObject({ status: 'success', replayed: false });
    await Promise.all(engines.map((engine) => engine.stop()));
    engines = [];

    // The same event again, with its id, as a redelivery or a replay from an outbox would bring it.
    const [execution] = await db.query<{ trigger_data: Record<string, unknown> }>(
      `select trigger_data from workflow.automation_executions where automation_rules_id = $1`,
      [ruleId],
    );
    const event = execution!.trigger_data;
    await db.query(
      `insert into workflow.events (id, entity_id, operation, row_key, old_row, new_row, depth)
       overriding system value values ($1, $2, $3, $4, $5, $6, $7)`,
      [event.event_id, event.entity_id, event.operation, event.row_key, event.old, event.new, event.depth],
    );
    await start();
    const executions = await waitFor('the second execution', async () => {
      const rows = await db.query<{ actions_executed: ActionRecord[] }>(
        `select actions_executed from workflow.automation_executions where automation_rules_id = $1 order by executed_at`,
        [ruleId],
      );
      return rows.length === 2 ? rows : undefined;
    });
    const second = executions[1]!.actions_executed[0]!.result!;
    expect(second).toMatchObject({
      replayed: true,
      allocation_id: first.allocation_id,
      idempotency_key: first.idempotency_key,
      status: 'success',
    });
    expect(second.allocated_items).toEqual(first.allocated_items);
    expect((await lotsOf('P-REPLAY'))[0]!.reserved).toBe(4);
    const [count] = await db.query<{ count: string }>(
      `select count(*) from workflow.allocation_results where idempotency_key = $1`,
      [first.idempotency_key],
    );
    expect(count!.count).toBe('1');
    expect(first.idempotency_key).toMatch(
      new RegExp(`^allocate_inventory:${String(event.event_id)}:[0-9a-f-]{36}$`),
    );
  });
});

describe('allocation results are events', () => {
  it('a rule on workflow.allocation_results reacts to a failed allocation', async () => {
    await stock('P-EVENT', [['EV-1', 1, '2024-01-01', null, 1]]);
    await allocationRule('event', {});
    const alertRule = await createRule(db, {
      name: 'allocation failed',
      entity: 'workflow.allocation_results',
      trigger: 'on_create',
      actions: [
        {
          name: 'alert',
          config: {
            action_type: 'create_alert',
            alert_type: 'allocation_{{allocation_data.status}}',
            severity: 'high',
            title: 'Allocation {{allocation_data.status}} for {{allocation_data.source.entity}}',
            message: 'Short by {{allocation_data.totals.short}}',
            context: { order_id: '{{allocation_data.source.row_key.id}}', key: '{{idempotency_key}}' },
            recipients: { users: [annId] },
          },
        },
      ],
    });
    await start();
    const orderId = await order('event', 'P-EVENT', 3);
    const result = (await executionFor(orderId)).actions_executed[0]!.result!;
    expect(result.status).toBe('failed');
    await waitFor('the alert rule to run', async () => {
      const [row] = await db.query(
        `select 1 from workflow.automation_executions where automation_rules_id = $1`,
        [alertRule],
      );
      return row;
    });
    const alerts = await db.query(
      `select alert_type, title, message, context, source_entity_name, source_entity_id from workflow.alerts
        where source_rule_id = $1`,
      [alertRule],
    );
    expect(alerts).toEqual([
      {
        alert_type: 'allocation_failed',
        title: 'Allocation failed for sales.orders',
        message: 'Short by 2',
        context: { order_id: orderId, key: result.idempotency_key },
        source_entity_name: 'workflow.allocation_results',
        source_entity_id: result.allocation_id,
      },
    ]);
  });
});

describe('concurrency', () => {
  /** Inserts rows from `count` connections at once: all transactions are open before any commits. */
  async function concurrently(count: number, write: (client: pg.Client, index: number) => Promise<void>) {
    const clients = await Promise.all(
      Array.from({ length: count }, async () => {
        const client = new pg.Client({ connectionString: db.url });
        await client.connect();
        return client;
      }),
    );
    try {
      await Promise.all(clients.map((client) => client.query('begin')));
      await Promise.all(clients.map((client, index) => write(client, index)));
      await Promise.all(clients.map((client) => client.query('commit')));
    } finally {
      await Promise.all(clients.map((client) => client.end()));
    }
  }

  async function allocationsOf(scenario: string) {
    return db.query<{ order_id: string; status: string; allocated: string; results: string }>(
      `select o.id as order_id, max(r.allocation_data ->> 'status') as status,
              coalesce(sum((r.allocation_data -> 'totals' ->> 'allocated')::numeric), 0)::text as allocated,
              count(r.id)::text as results
         from sales.orders o
         left join workflow.allocation_results r on r.allocation_data -> 'source' -> 'row_key' ->> 'id' = o.id::text
        where o.scenario = $1
        group by o.id`,
      [scenario],
    );
  }

  it('20 orders for one product from 20 connections, 3 daemons: never more than on hand', async () => {
    await stock('P-HOT', [
      ['H-1', 20, '2024-01-01', null, 1],
      ['H-2', 20, '2024-01-02', null, 1],
      ['H-3', 10, '2024-01-03', null, 1],
    ]);
    await allocationRule('hot', {});
    await start(3, { batchSize: 2, concurrency: 2 });
    await concurrently(20, async (client, index) => {
      await client.query(
        `insert into sales.orders (order_number, scenario, product_id, quantity) values ($1, 'hot', 'P-HOT', 3)`,
        [`HOT-${index}`],
      );
    });
    const allocations = await waitFor(
      'all 20 allocations',
      async () => {
        const rows = await allocationsOf('hot');
        return rows.every((row) => row.results === '1') ? rows : undefined;
      },
      60_000,
    );
    // 50 on hand, 3 each, all or nothing: 16 orders get theirs, 4 are refused, 2 are left.
    expect(allocations.filter((row) => row.status === 'success')).toHaveLength(16);
    expect(allocations.filter((row) => row.status === 'failed')).toHaveLength(4);
    const allocated = allocations.reduce((sum, row) => sum + Number(row.allocated), 0);
    expect(allocated).toBe(48);
    const lots = await lotsOf('P-HOT');
    expect(lots.every((lot) => lot.reserved <= lot.on_hand)).toBe(true);
    expect(lots.reduce((sum, lot) => sum + lot.reserved, 0)).toBe(48);
    expect(lots.reduce((sum, lot) => sum + lot.on_hand, 0)).toBe(50);
    const failedActions = await db.query(
      `select error_message from workflow.automation_executions
        where status <> 'success' and trigger_data -> 'new' ->> 'scenario' = 'hot'`,
    );
    expect(failedActions).toEqual([]);
  });

  it('20 orders for two products, 3 daemons batching them in any order: no deadlock, no oversell', async () => {
    // A daemon handles a batch of events in one transaction and keeps the row locks of each until
    // it commits: one batch allocating X then Y and another Y then X would deadlock without the
    // allocation lock.
    await stock('P-X', [
      ['X-1', 15, '2024-01-01', null, 1],
      ['X-2', 10, '2024-01-02', null, 1],
    ]);
    await stock('P-Y', [['Y-1', 12, '2024-01-01', null, 1]]);
    await allocationRule('pair', { allow_partial: true });
    await start(3, { batchSize: 3, concurrency: 2 });
    await concurrently(20, async (client, index) => {
      await client.query(
        `insert into sales.orders (order_number, scenario, product_id, quantity) values ($1, 'pair', $2, 3)`,
        [`PAIR-${index}`, index % 2 === 0 ? 'P-X' : 'P-Y'],
      );
    });
    const allocations = await waitFor(
      'all 20 allocations',
      async () => {
        const rows = await allocationsOf('pair');
        return rows.every((row) => row.results === '1') ? rows : undefined;
      },
      60_000,
    );
    // 30 of each wanted; 25 of X and 12 of Y on hand; partial allowed, so all of it goes.
    const total = allocations.reduce((sum, row) => sum + Number(row.allocated), 0);
    expect(total).toBe(37);
    const x = await lotsOf('P-X');
    const y = await lotsOf('P-Y');
    expect([...x, ...y].every((lot) => lot.reserved <= lot.on_hand)).toBe(true);
    expect(x.reduce((sum, lot) => sum + lot.reserved, 0)).toBe(25);
    expect(y.reduce((sum, lot) => sum + lot.reserved, 0)).toBe(12);
    const failedActions = await db.query(
      `select error_message from workflow.automation_executions
        where status <> 'success' and trigger_data -> 'new' ->> 'scenario' = 'pair'`,
    );
    expect(failedActions).toEqual([]);
  });

  /**
   * The daemon hands a queue's head to one transaction at a time, so to hold the action to truly
   * parallel transactions this drives the executor the daemon runs on its own connections: each
   * transaction handles its events (the orders' on_create events) and commits, all at once.
   */
  async function inParallel(batches: { product: string; quantity: number }[][]) {
    const rules = await db.withClient((client) => RuleSet.load(client));
    const [entity] = await db.query<{ id: string }>(
      `select id from workflow.entities where schema_name = 'sales' and name = 'orders'`,
    );
    const executor = () =>
      new EventExecutor({
        actions: defaultActions(),
        maxChainDepth: 10,
        logger: createLogger('silent'),
        metrics: new EngineMetrics(),
      });
    let nextId = 9_000_000 + Math.floor(Math.random() * 1_000_000) * 100;
    const statuses: string[] = [];
    const clients = await Promise.all(
      batches.map(async () => {
        const client = new pg.Client({ connectionString: db.url });
        await client.connect();
        return client;
      }),
    );
    try {
      await Promise.all(
        batches.map(async (batch, index) => {
          const client = clients[index]!;
          const run = executor();
          await client.query('begin');
          run.beginTransaction();
          for (const { product, quantity } of batch) {
            const id = String(nextId++);
            const [row] = (
              await client.query<Record<string, unknown>>(
                `insert into sales.orders (order_number, scenario, product_id, quantity)
                 values ($1, 'parallel', $2, $3) returning *`,
                [`PAR-${id}`, product, quantity],
              )
            ).rows;
            const event: CapturedEvent = {
              id,
              entityId: entity!.id,
              operation: 'on_create',
              rowKey: { id: row!.id },
              oldRow: null,
              newRow: row!,
              txid: '0',
              actorId: null,
              depth: 0,
              createdAt: new Date(),
              attempts: 0,
              ruleId: null,
            };
            for (const record of await run.execute(client, rules, event)) {
              statuses.push(
                record.status === 'success' ? record.status : `${record.status}: ${record.error_message}`,
              );
            }
          }
          await client.query('commit');
        }),
      );
    } finally {
      await Promise.all(clients.map((client) => client.end()));
    }
    return statuses;
  }

  it('20 parallel transactions allocating one product never oversell', async () => {
    await stock('P-PAR', [
      ['PP-1', 7, '2024-01-01', null, 1],
      ['PP-2', 7, '2024-01-02', null, 1],
    ]);
    await allocationRule('parallel', { allow_partial: true });
    const statuses = await inParallel(Array.from({ length: 20 }, () => [{ product: 'P-PAR', quantity: 1 }]));
    expect(statuses).toEqual(Array.from({ length: 20 }, () => 'success'));
    const lots = await lotsOf('P-PAR');
    expect(lots.map((lot) => lot.reserved)).toEqual([7, 7]);
    const [results] = await db.query<{ success: string; failed: string }>(
      `select count(*) filter (where allocation_data ->> 'status' = 'success') as success,
              count(*) filter (where allocation_data ->> 'status' = 'failed') as failed
         from workflow.allocation_results where allocation_data -> 'requested' -> 0 ->> 'product' = 'P-PAR'`,
    );
    expect(results).toEqual({ success: '14', failed: '6' });
  });

  it('parallel transactions allocating two products in opposite orders do not deadlock', async () => {
    await stock('P-AB-A', [['AB-A', 100, '2024-01-01', null, 1]]);
    await stock('P-AB-B', [['AB-B', 100, '2024-01-01', null, 1]]);
    await allocationRule('parallel', {});
    const statuses = await inParallel(
      Array.from({ length: 10 }, (_, index) =>
        index % 2 === 0
          ? [
              { product: 'P-AB-A', quantity: 2 },
              { product: 'P-AB-B', quantity: 2 },
            ]
          : [
              { product: 'P-AB-B', quantity: 2 },
              { product: 'P-AB-A', quantity: 2 },
            ],
      ),
    );
    expect(statuses).toEqual(Array.from({ length: 20 }, () => 'success'));
    expect((await lotsOf('P-AB-A'))[0]!.reserved).toBe(20);
    expect((await lotsOf('P-AB-B'))[0]!.reserved).toBe(20);
  });
});
