import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../src/engine/engine.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { startEngine, TEST_LOG_TABLE } from './support/engine.js';
import { createRule, registerEntity } from './support/rules.js';
import { waitForExecutions as waitForExecutionsIn } from './support/executions.js';
import { createTable } from './support/tables.js';

let db: TestDatabase;
let engine: Engine | undefined;

type Result = { updated: number; entity: string; field: string; value: unknown };

beforeAll(async () => {
  db = await createTestDatabase();
  await db.query(TEST_LOG_TABLE);
  await createTable(
    db,
    'sales.orders',
    `
    id uuid primary key default gen_random_uuid(),
    order_number text not null,
    status text not null default 'new',
    amount numeric(12,2),
    quantity int,
    seen_at timestamptz,
    sku text,
    label text,
    min_qty int
  `,
  );
  await createTable(
    db,
    'inventory.items',
    `
    id int primary key,
    sku text not null,
    qty int,
    tags text[] not null default '{}',
    attrs jsonb,
    note text,
    flag text
  `,
  );
  await db.query(`insert into inventory.items (id, sku, qty, tags, attrs) values
    (1, 'A-1', 5, '{red,big}', '{"color": "red"}'),
    (2, 'A-2', 10, '{blue}', '{"color": "blue"}'),
    (3, 'B-1', null, '{}', null)`);
  await db.query(`create table inventory.bins (
    aisle text not null,
    shelf int not null,
    label text,
    primary key (aisle, shelf)
  )`);
  await db.query(`create table inventory.unregistered (id int primary key, note text)`);
});

afterEach(async () => {
  await engine?.stop();
  engine = undefined;
  await db.query(`update workflow.automation_rules set is_active = false`);
});

afterAll(async () => {
  await db.drop();
});

function waitForExecutions(ruleId: string, count = 1) {
  return waitForExecutionsIn<Result>(db, ruleId, count);
}

describe('update_field on the triggering row', () => {
  it('sets a column to a templated value cast to the column type', async () => {
    const ruleId = await createRule(db, {
      name: 'mark seen',
      entity: 'sales.orders',
      trigger: 'on_create',
      conditions: [{ field_name: 'label', operator: 'equals', value: 'own-row' }],
      actions: [
        {
          name: 'status',
          config: { action_type: 'update_field', field: 'status', value: '{{new.status}}-seen' },
        },
        // "{{min_qty}}" alone keeps the number; the string "7" becomes the int 7.
        { name: 'quantity', config: { action_type: 'update_field', field: 'quantity', value: '7' } },
        { name: 'amount', config: { action_type: 'update_field', field: 'amount', value: '{{min_qty}}' } },
        {
          name: 'timestamp',
          config: { action_type: 'update_field', field: 'seen_at', value: '{{event.created_at}}' },
        },
        // Already 'own-row': nothing changes, so nothing is counted and no update event follows.
        { name: 'unchanged', config: { action_type: 'update_field', field: 'label', value: 'own-row' } },
      ],
    });
    engine = await startEngine(db);
    const [order] = await db.query<{ id: string }>(
      `insert into sales.orders (order_number, amount, label, min_qty) values ('SO-1', 12.5, 'own-row', 3) returning id`,
    );
    const [execution] = await waitForExecutions(ruleId);
    expect(execution!.status).toBe('success');
    expect(execution!.actions_executed.map((a) => [a.name, a.result?.updated])).toEqual([
      ['status', 1],
      ['quantity', 1],
      ['amount', 1],
      ['timestamp', 1],
      ['unchanged', 0],
    ]);
    expect(execution!.actions_executed[0]!.result).toMatchObject({
      entity: 'sales.orders',
      field: 'status',
      value: 'new-seen',
    });
    const [row] = await db.query(
      `select status, quantity, amount::text, seen_at is not null as seen from sales.orders where id = $1`,
      [order!.id],
    );
    expect(row).toEqual({ status: 'new-seen', quantity: 7, amount: '3.00', seen: true });
  });

  it('finds the row by a composite primary key', async () => {
    const ruleId = await createRule(db, {
      name: 'label bins',
      entity: 'inventory.bins',
      trigger: 'on_create',
      actions: [
        {
          name: 'label',
          config: { action_type: 'update_field', field: 'label', value: '{{aisle}}-{{shelf}}' },
        },
      ],
    });
    engine = await startEngine(db);
    await db.query(`insert into inventory.bins (aisle, shelf) values ('A', 1), ('A', 2), ('B', 1)`);
    await waitForExecutions(ruleId, 3);
    const rows = await db.query(`select aisle, shelf, label from inventory.bins order by aisle, shelf`);
    expect(rows).toEqual([
      { aisle: 'A', shelf: 1, label: 'A-1' },
      { aisle: 'A', shelf: 2, label: 'A-2' },
      { aisle: 'B', shelf: 1, label: 'B-1' },
    ]);
  });

  it("treats the rule's own table as the triggering row, named with or without its schema", async () => {
    const ruleId = await createRule(db, {
      name: 'own table by name',
      entity: 'sales.orders',
      trigger: 'on_create',
      conditions: [{ field_name: 'label', operator: 'equals', value: 'by-name' }],
      actions: [
        {
          name: 'bare',
          config: { action_type: 'update_field', target_entity: 'orders', field: 'status', value: 'bare' },
        },
        {
          name: 'qualified',
          config: {
            action_type: 'update_field',
            target_entity: 'sales.orders',
            field: 'sku',
            value: 'qualified',
          },
        },
      ],
    });
    engine = await startEngine(db);
    await db.query(`insert into sales.orders (order_number, label) values ('SO-X', 'other')`);
    await db.query(`insert into sales.orders (order_number, label) values ('SO-2', 'by-name')`);
    const [execution] = await waitForExecutions(ruleId);
    expect(execution!.status).toBe('success');
    expect(execution!.actions_executed.map((a) => [a.name, a.result?.updated])).toEqual([
      ['bare', 1],
      ['qualified', 1],
    ]);
    const rows = await db.query(
      `select order_number, status, sku from sales.orders where order_number in ('SO-2', 'SO-X') order by 1`,
    );
    expect(rows).toEqual([
      { order_number: 'SO-2', status: 'bare', sku: 'qualified' },
      { order_number: 'SO-X', status: 'new', sku: null },
    ]);
  });
});

describe('update_field on another entity', () => {
  it('selects rows with each operator, comparing values as the column type', async () => {
    await registerEntity(db, 'inventory.items');
    const cases: [string, unknown, number[]][] = [
      ['equals', { field_name: 'sku', operator: 'equals', value: '{{sku}}' }, [2]],
      ['not_equals', { field_name: 'sku', operator: 'not_equals', value: 'A-1' }, [2, 3]],
      // 10 > 5 as numbers ("10" < "5" as text).
      ['greater_than', { field_name: 'qty', operator: 'greater_than', value: '{{min_qty}}' }, [2]],
      ['less_than', { field_name: 'qty', operator: 'less_than', value: 10 }, [1]],
      ['contains text', { field_name: 'sku', operator: 'contains', value: 'A-' }, [1, 2]],
      ['contains array', { field_name: 'tags', operator: 'contains', value: 'red' }, [1]],
      ['contains jsonb', { field_name: 'attrs', operator: 'contains', value: { color: 'blue' } }, [2]],
      ['is_null', { field_name: 'qty', operator: 'is_null' }, [3]],
      ['is_not_null', { field_name: 'qty', operator: 'is_not_null' }, [1, 2]],
      ['in', { field_name: 'sku', operator: 'in', value: ['A-1', 'B-1', 'Z-9'] }, [1, 3]],
      [
        'two conditions',
        [
          { field_name: 'sku', operator: 'contains', value: 'A' },
          { field_name: 'qty', operator: 'less_than', value: 6 },
        ],
        [1],
      ],
    ];
    const rules: string[] = [];
    for (const [label, where] of cases) {
      rules.push(
        await createRule(db, {
          name: `where ${label}`,
          entity: 'sales.orders',
          trigger: 'on_create',
          conditions: [{ field_name: 'label', operator: 'equals', value: label }],
          actions: [
            {
              name: 'note',
              config: {
                action_type: 'update_field',
                target_entity: 'inventory.items',
                field: 'note',
                value: '{{label}}',
                where: Array.isArray(where) ? where : [where],
              },
            },
          ],
        }),
      );
    }
    engine = await startEngine(db);
    for (const [index, [label, , expected]] of cases.entries()) {
      await db.query(`update inventory.items set note = null`);
      await db.query(
        `insert into sales.orders (order_number, label, sku, min_qty) values ($1, $2, 'A-2', 5)`,
        [`OP-${index}`, label],
      );
      const [execution] = await waitForExecutions(rules[index]!);
      expect(execution!.status, label).toBe('success');
      expect(execution!.actions_executed[0]!.result?.updated, label).toBe(expected.length);
      const rows = await db.query<{ id: number }>(
        `select id from inventory.items where note = $1 order by id`,
        [label],
      );
      expect(
        rows.map((row) => row.id),
        label,
      ).toEqual(expected);
    }
  });

  it('writes to a monitored entity produce events that other rules react to', async () => {
    await registerEntity(db, 'inventory.items');
    await db.query(`delete from test_log`);
    const flagRule = await createRule(db, {
      name: 'flag item',
      entity: 'sales.orders',
      trigger: 'on_create',
      conditions: [{ field_name: 'label', operator: 'equals', value: 'chain' }],
      actions: [
        {
          name: 'flag',
          config: {
            action_type: 'update_field',
            target_entity: 'items',
            field: 'flag',
            value: 'ordered {{order_number}}',
            where: [{ field_name: 'sku', operator: 'equals', value: '{{sku}}' }],
          },
        },
      ],
    });
    const chainRule = await createRule(db, {
      name: 'item flagged',
      entity: 'inventory.items',
      trigger: 'on_update',
      conditions: [{ field_name: 'flag', operator: 'changed' }],
      actions: [{ name: 'log', config: { action_type: 'test_log', label: '{{sku}}: {{flag}}' } }],
    });
    engine = await startEngine(db);
    await db.query(`insert into sales.orders (order_number, label, sku) values ('SO-CHAIN', 'chain', 'A-1')`);
    await waitForExecutions(flagRule);
    await waitForExecutions(chainRule);
    const log = await db.query<{ label: string }>(`select label from test_log`);
    expect(log).toEqual([{ label: 'A-1: ordered SO-CHAIN' }]);
    const [chained] = await db.query<{ depth: number }>(
      `select (trigger_data ->> 'depth')::int as depth from workflow.automation_executions
        where automation_rules_id = $1`,
      [chainRule],
    );
    expect(chained!.depth).toBe(1);
  });

  it('refuses an unknown entity, column or operator, or a value of the wrong type, when the rule is written', async () => {
    const base = { action_type: 'update_field', field: 'note', value: 'x' };
    const where = [{ field_name: 'id', operator: 'equals', value: 1 }];
    const refused: [string, Record<string, unknown>, string, RegExp][] = [
      [
        'unregistered',
        { ...base, target_entity: 'inventory.unregistered', where },
        '23503',
        /config\.target_entity "inventory\.unregistered" is not a registered entity/,
      ],
      [
        'unknown column',
        { ...base, target_entity: 'inventory.items', field: 'colour', where },
        '23503',
        /config\.field "colour" is not a column of inventory\.items/,
      ],
      [
        'unknown where column',
        {
          ...base,
          target_entity: 'inventory.items',
          where: [{ field_name: 'size', operator: 'equals', value: 1 }],
        },
        '23503',
        /config\.where\[0\]\.field_name "size" is not a column of inventory\.items/,
      ],
      [
        'unknown operator',
        {
          ...base,
          target_entity: 'inventory.items',
          where: [{ field_name: 'id', operator: 'like', value: 1 }],
        },
        '22023',
        /config\.where\[0\]\.operator "like" is not one of equals, not_equals/,
      ],
      [
        'no where',
        { ...base, target_entity: 'inventory.items' },
        '22023',
        /config\.where is required with config\.target_entity/,
      ],
      [
        'wrong type',
        { ...base, target_entity: 'inventory.items', field: 'qty', value: 'lots', where },
        '22023',
        /config\.value "lots" is not a valid integer for inventory\.items\.qty: invalid input syntax for type integer/,
      ],
      ['no value', { action_type: 'update_field', field: 'status' }, '22023', /config\.value is required/],
    ];
    for (const [name, config, code, message] of refused) {
      await expect(
        createRule(db, {
          name: `refused ${name}`,
          entity: 'sales.orders',
          trigger: 'on_create',
          actions: [{ name, config }],
        }),
        name,
      ).rejects.toMatchObject({ code, message: expect.stringMatching(message) as unknown });
    }
  });

  it('fails with a clear error for a rendered value of the wrong type or a column dropped since', async () => {
    await db.query(`alter table inventory.items add column doomed text`);
    const where = [{ field_name: 'id', operator: 'equals', value: 1 }];
    const ruleId = await createRule(db, {
      name: 'bad updates',
      entity: 'sales.orders',
      trigger: 'on_create',
      conditions: [{ field_name: 'label', operator: 'equals', value: 'bad' }],
      actions: [
        {
          name: 'wrong type',
          config: {
            action_type: 'update_field',
            target_entity: 'inventory.items',
            field: 'qty',
            value: '{{label}}',
            where,
          },
        },
        {
          name: 'dropped column',
          config: {
            action_type: 'update_field',
            target_entity: 'inventory.items',
            field: 'doomed',
            value: 'x',
            where,
          },
        },
      ],
    });
    await db.query(`alter table inventory.items drop column doomed`);
    await db.query(`update inventory.items set note = null`);
    engine = await startEngine(db);
    await db.query(`insert into sales.orders (order_number, label) values ('SO-BAD', 'bad')`);
    const [execution] = await waitForExecutions(ruleId);
    expect(execution!.status).toBe('failed');
    const errors = Object.fromEntries(execution!.actions_executed.map((a) => [a.name, a.error]));
    expect(errors['wrong type']).toMatch(
      /could not set inventory\.items\.qty to "bad": invalid input syntax for type integer/,
    );
    expect(errors['dropped column']).toMatch(/config\.field "doomed" is not a column of inventory\.items/);
    const [item] = await db.query(`select note, qty from inventory.items where id = 1`);
    expect(item).toEqual({ note: null, qty: 5 });
  });
});
