import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { TestRoles, type LoginRole } from './support/roles.js';

// A DBA (a member of rulebook_admin) writes rule actions in plain SQL. Every built-in action type
// is checked when the row is written: a bad config is refused at once with SQLSTATE 22023 (a bad
// value) or 23503 (something named that does not exist), and a message naming the rule, the
// action and the key, instead of failing at every event later.

let db: TestDatabase;
let roles: TestRoles;
let admin: LoginRole;
let ruleId: string;
let userId: string;
let roleId: string;
const MISSING = '00000000-0000-4000-8000-0000000000ff';

beforeAll(async () => {
  db = await createTestDatabase();
  await db.query(`
    create schema shop;
    create table shop.orders (
      id bigint generated always as identity primary key,
      status text not null default 'new',
      qty integer,
      sku text,
      placed_at timestamptz
    );
    create table shop.stock (
      id bigint generated always as identity primary key,
      sku text, on_hand numeric, reserved numeric, received date, label text
    );
    create table shop.nokey (sku text, on_hand numeric, reserved numeric, received date);
    create table shop.lines (order_id bigint, sku text, qty numeric, note text);
    create view shop.summary as select count(*) as n from shop.orders;
    grant usage on schema shop to rulebook_admin;
  `);
  await db.query(`select workflow.register_entity('shop.orders'), workflow.register_entity('shop.stock')`);
  const [user] = await db.query<{ id: string }>(
    `insert into core.users (email, name) values ('dba@example.com', 'DBA') returning id`,
  );
  userId = user!.id;
  const [role] = await db.query<{ id: string }>(
    `insert into core.roles (name) values ('managers') returning id`,
  );
  roleId = role!.id;
  roles = new TestRoles(db);
  admin = await roles.login('action_writer', 'grant rulebook_admin to %I');
  const [rule] = await admin.query<{ id: string }>(
    `insert into workflow.automation_rules (name, entity_id, entity_type_id, trigger_type_id, created_by, updated_by)
     select 'order rule', e.id, e.entity_type_id, t.id, $1, $1
       from workflow.entities e, workflow.trigger_types t where e.name = 'orders' and t.name = 'on_update'
     returning id`,
    [userId],
  );
  ruleId = rule!.id;
});

afterAll(async () => {
  await roles?.endPools();
  await db?.drop();
  await roles?.dropRoles();
});

let order = 0;

/** Writes one action of the rule as the DBA; returns the error, or undefined when it was accepted. */
async function write(
  config: unknown,
  templateId: string | null = null,
): Promise<pg.DatabaseError | undefined> {
  order += 1;
  try {
    await admin.query(
      `insert into workflow.rule_actions (id, automation_rules_id, name, action_config, execution_order, template_id)
       values (('11111111-1111-4111-8111-' || lpad($3::text, 12, '0'))::uuid, $1, 'the action', $2::jsonb, $3::int, $4::uuid)`,
      [ruleId, JSON.stringify(config), order, templateId],
    );
    return undefined;
  } catch (error) {
    if (error instanceof pg.DatabaseError) return error;
    throw error;
  }
}

function actionId(position: number): string {
  return `11111111-1111-4111-8111-${String(position).padStart(12, '0')}`;
}

type Case = readonly [
  what: string,
  config: Record<string, unknown>,
  code: '22023' | '23503',
  message: string,
];

async function expectRefused(type: string, cases: readonly Case[]): Promise<void> {
  for (const [what, config, code, message] of cases) {
    const error = await write({ action_type: type, ...config });
    expect(error, what).toBeDefined();
    expect(error!.code, `${what}: ${error!.message}`).toBe(code);
    expect(error!.message, what).toContain(
      `rule "order rule" (${ruleId}), action #${order} "the action" (${actionId(order)}, ${type}): `,
    );
    expect(error!.message, what).toContain(message);
  }
}

async function expectAccepted(type: string, configs: readonly Record<string, unknown>[]): Promise<void> {
  for (const config of configs) {
    const error = await write({ action_type: type, ...config });
    expect(error?.message, JSON.stringify(config)).toBeUndefined();
  }
}

describe('send_email', () => {
  const good = { to: 'ops@example.com', subject: 'Order {{id}}', text: 'Status {{status}}' };

  it('accepts addresses, existing users and roles, and templates', async () => {
    await expectAccepted('send_email', [
      good,
      { ...good, to: [userId, roleId, '{{sku}}@example.com'], cc: 'boss@example.com', reply_to: userId },
      { ...good, text: undefined, html: '<p>{{status}}</p>' },
    ]);
  });

  it('refuses each bad key', async () => {
    await expectRefused('send_email', [
      ['no to', { ...good, to: undefined }, '22023', 'send_email config.to needs at least one recipient'],
      ['to not a list', { ...good, to: 5 }, '22023', 'config.to must be a string or an array of strings'],
      [
        'to unknown id',
        { ...good, to: [MISSING] },
        '23503',
        `config.to[0] names user or role ${MISSING}, which does not exist`,
      ],
      [
        'to not an address',
        { ...good, to: 'ops' },
        '22023',
        'config.to[0] is "ops", which is neither an e-mail address',
      ],
      ['cc unknown id', { ...good, cc: [MISSING] }, '23503', `config.cc[0] names user or role ${MISSING}`],
      [
        'reply_to a role',
        { ...good, reply_to: roleId },
        '22023',
        `config.reply_to is role ${roleId}, but it must be a user`,
      ],
      ['reply_to unknown', { ...good, reply_to: MISSING }, '23503', `config.reply_to names user ${MISSING}`],
      ['no subject', { ...good, subject: undefined }, '22023', 'send_email config.subject is required'],
      ['no body', { ...good, text: undefined }, '22023', 'send_email config needs text, html or both'],
      ['html not text', { ...good, html: 3 }, '22023', 'send_email config.html must be a non-empty string'],
      [
        'bad template',
        { ...good, subject: 'Order {{#if id}}' },
        '22023',
        'send_email config.subject is a template that does not compile: the block {{#if}} is never closed',
      ],
    ]);
  });
});

describe('send_notification', () => {
  const good = () => ({ recipients: { users: [userId] }, title: 'Order {{id}}' });

  it('accepts existing users and roles and known channels', async () => {
    await expectAccepted('send_notification', [
      good(),
      {
        ...good(),
        recipients: { roles: [roleId] },
        channels: ['email', 'in_app', 'sms', 'push'],
        priority: 'high',
        body: 'x',
      },
    ]);
  });

  it('refuses each bad key', async () => {
    await expectRefused('send_notification', [
      [
        'no recipients',
        { ...good(), recipients: {} },
        '22023',
        'config.recipients needs at least one user or role',
      ],
      [
        'recipients not an object',
        { ...good(), recipients: [userId] },
        '22023',
        'config.recipients must be an object',
      ],
      [
        'users not uuids',
        { ...good(), recipients: { users: ['bob'] } },
        '22023',
        'config.recipients.users[0] is "bob", which is not a uuid',
      ],
      [
        'unknown user',
        { ...good(), recipients: { users: [MISSING] } },
        '23503',
        `config.recipients.users[0] names user ${MISSING}, which does not exist in core.users`,
      ],
      [
        'unknown role',
        { ...good(), recipients: { roles: [userId] } },
        '23503',
        `config.recipients.roles[0] names role ${userId}, which does not exist in core.roles`,
      ],
      [
        'unknown channel',
        { ...good(), channels: ['pigeon'] },
        '22023',
        'config.channels has "pigeon", which is not a channel',
      ],
      ['no channel', { ...good(), channels: [] }, '22023', 'config.channels must be a non-empty array'],
      ['no title', { ...good(), title: undefined }, '22023', 'send_notification config.title is required'],
      [
        'bad priority',
        { ...good(), priority: 'urgent' },
        '22023',
        'config.priority must be one of low, medium, high, critical, got "urgent"',
      ],
      [
        'bad body template',
        { ...good(), body: '{{nosuch id}}' },
        '22023',
        'config.body is a template that does not compile: unknown helper "nosuch"',
      ],
    ]);
  });
});

describe('webhook', () => {
  const good = { url: 'https://hooks.example.com/orders/{{id}}' };

  it('accepts http(s) URLs, POST, timeouts in range and headers', async () => {
    await expectAccepted('webhook', [
      good,
      {
        url: 'http://10.0.0.1:8080/x',
        method: 'POST',
        timeout_ms: 120000,
        headers: { 'X-Order': '{{id}}' },
        secret: 's',
      },
      { ...good, body: { deep: ['{{#each tags}}{{this}}{{/each}}'] } },
    ]);
  });

  it('refuses each bad key', async () => {
    await expectRefused('webhook', [
      ['no url', {}, '22023', 'webhook config.url is required'],
      [
        'ftp',
        { url: 'ftp://example.com/x' },
        '22023',
        'config.url must be an http:// or https:// URL, got "ftp://example.com/x"',
      ],
      [
        'templated host',
        { url: 'https://{{host}}/x' },
        '22023',
        'must spell out its scheme, host and port before any {{…}}',
      ],
      ['method', { ...good, method: 'GET' }, '22023', 'webhook config.method must be POST'],
      [
        'timeout too long',
        { ...good, timeout_ms: 120001 },
        '22023',
        'config.timeout_ms must be a whole number of milliseconds from 1 to 120000, got 120001',
      ],
      [
        'timeout not whole',
        { ...good, timeout_ms: 1.5 },
        '22023',
        'config.timeout_ms must be a whole number',
      ],
      ['headers not object', { ...good, headers: ['x'] }, '22023', 'config.headers must be a JSON object'],
      [
        'reserved header',
        { ...good, headers: { 'X-Rulebook-Signature': 'x' } },
        '22023',
        'config.headers.X-Rulebook-Signature is set by rulebook',
      ],
      [
        'bad header name',
        { ...good, headers: { 'a b': 'x' } },
        '22023',
        'config.headers has "a b", which is not a header name',
      ],
      [
        'line break',
        { ...good, headers: { 'X-A': 'a\r\nB: c' } },
        '22023',
        'config.headers.X-A may hold only Latin-1 characters and no line breaks',
      ],
      ['empty secret', { ...good, secret: '' }, '22023', 'webhook config.secret must be a non-empty string'],
      [
        'bad body template',
        { ...good, body: { a: ['{{/if}}'] } },
        '22023',
        'config.body.a[0] is a template that does not compile',
      ],
    ]);
  });
});

describe('update_field', () => {
  it("accepts a column of the rule's table, a castable or templated value, and a registered target", async () => {
    await expectAccepted('update_field', [
      { field: 'qty', value: 5 },
      { field: 'qty', value: '7' },
      { field: 'qty', value: '{{qty}}' },
      { field: 'status', value: null },
      {
        target_entity: 'shop.stock',
        field: 'label',
        value: 'x',
        where: [{ field_name: 'sku', operator: 'equals', value: '{{sku}}' }],
      },
    ]);
  });

  it('refuses each bad key', async () => {
    await expectRefused('update_field', [
      ['no field', { value: 1 }, '22023', 'update_field config.field is required'],
      ['no value', { field: 'qty' }, '22023', 'update_field config.value is required'],
      [
        'unknown column',
        { field: 'colour', value: 1 },
        '23503',
        'config.field "colour" is not a column of shop.orders',
      ],
      [
        'not castable',
        { field: 'qty', value: 'lots' },
        '22023',
        'config.value "lots" is not a valid integer for shop.orders.qty',
      ],
      [
        'not a time',
        { field: 'placed_at', value: 'soon' },
        '22023',
        'is not a valid timestamp with time zone',
      ],
      [
        'unregistered target',
        { target_entity: 'shop.lines', field: 'note', value: 'x', where: [] },
        '23503',
        'config.target_entity "shop.lines" is not a registered entity',
      ],
      [
        'target without where',
        { target_entity: 'shop.stock', field: 'label', value: 'x' },
        '22023',
        'config.where is required with config.target_entity',
      ],
      [
        'where not a list',
        { target_entity: 'shop.stock', field: 'label', value: 'x', where: [] },
        '22023',
        'config.where must be a non-empty array',
      ],
      [
        'where unknown column',
        {
          target_entity: 'shop.stock',
          field: 'label',
          value: 'x',
          where: [{ field_name: 'size', operator: 'equals', value: 1 }],
        },
        '23503',
        'config.where[0].field_name "size" is not a column of shop.stock',
      ],
      [
        'where unknown operator',
        { field: 'qty', value: 1, where: [{ field_name: 'id', operator: 'like', value: 1 }] },
        '22023',
        'config.where[0].operator "like" is not one of',
      ],
      [
        'where without value',
        { field: 'qty', value: 1, where: [{ field_name: 'id', operator: 'equals' }] },
        '22023',
        'operator "equals" needs a "value"',
      ],
    ]);
  });
});

describe('allocate_inventory', () => {
  const inventory = {
    table: 'shop.stock',
    columns: { product: 'sku', on_hand: 'on_hand', reserved: 'reserved', received: 'received' },
  };
  const good = { inventory, request: { product_field: 'sku', quantity_field: 'qty' } };

  it('accepts existing tables and columns of the right kinds', async () => {
    await expectAccepted('allocate_inventory', [
      good,
      { ...good, strategy: 'lifo', mode: 'reserve', reservation_hours: 2, allow_partial: true },
      {
        inventory,
        request: {
          lines_table: 'shop.lines',
          match: { order_id: '{{id}}' },
          product_column: 'sku',
          quantity_column: 'qty',
        },
      },
    ]);
  });

  it('refuses each bad key', async () => {
    const columns = inventory.columns;
    await expectRefused('allocate_inventory', [
      ['no inventory', { request: good.request }, '22023', 'allocate_inventory config.inventory is required'],
      ['no table', { ...good, inventory: { columns } }, '22023', 'config.table is required'],
      [
        'unknown table',
        { ...good, inventory: { ...inventory, table: 'shop.nothing' } },
        '23503',
        'config.inventory.table "shop.nothing" is not an existing table',
      ],
      [
        'a view',
        { ...good, inventory: { ...inventory, table: 'shop.summary' } },
        '22023',
        'config.inventory.table "shop.summary" is not a table',
      ],
      [
        'no primary key',
        { ...good, inventory: { ...inventory, table: 'shop.nokey' } },
        '22023',
        'has no primary key',
      ],
      [
        'unknown column',
        { ...good, inventory: { ...inventory, columns: { ...columns, on_hand: 'stock' } } },
        '23503',
        'config.inventory.columns.on_hand "stock" is not a column of shop.stock',
      ],
      [
        'quantity not a number',
        { ...good, inventory: { ...inventory, columns: { ...columns, reserved: 'label' } } },
        '22023',
        'config.inventory.columns.reserved "label" must be a number, but it is text',
      ],
      [
        'date not a date',
        { ...good, inventory: { ...inventory, columns: { ...columns, received: 'sku' } } },
        '22023',
        'config.inventory.columns.received "sku" must be a date or timestamp',
      ],
      [
        'unknown column key',
        { ...good, inventory: { ...inventory, columns: { ...columns, colour: 'sku' } } },
        '22023',
        'config.inventory.columns has an unknown key "colour"',
      ],
      [
        'bad strategy',
        { ...good, strategy: 'random' },
        '22023',
        'config.strategy must be one of fifo, lifo, nearest_expiry, lowest_cost',
      ],
      [
        'strategy column',
        { ...good, strategy: 'lowest_cost' },
        '22023',
        'strategy "lowest_cost" needs config.inventory.columns.unit_cost',
      ],
      ['bad mode', { ...good, mode: 'steal' }, '22023', 'config.mode must be one of allocate, reserve'],
      [
        'bad hours',
        { ...good, reservation_hours: 0 },
        '22023',
        'config.reservation_hours must be a positive number, got 0',
      ],
      [
        'bad partial',
        { ...good, allow_partial: 'yes' },
        '22023',
        'config.allow_partial must be true or false',
      ],
      ['no request', { inventory }, '22023', 'config.request needs product_field and quantity_field'],
      [
        'row field unknown',
        { ...good, request: { product_field: 'sku', quantity_field: 'amount' } },
        '23503',
        'config.request.quantity_field "amount" is not a column of shop.orders',
      ],
      [
        'lines table unknown',
        {
          inventory,
          request: {
            lines_table: 'shop.nope',
            match: { order_id: 1 },
            product_column: 'sku',
            quantity_column: 'qty',
          },
        },
        '23503',
        'config.request.lines_table "shop.nope" is not an existing table',
      ],
      [
        'lines quantity text',
        {
          inventory,
          request: {
            lines_table: 'shop.lines',
            match: { order_id: 1 },
            product_column: 'sku',
            quantity_column: 'note',
          },
        },
        '22023',
        'config.request.quantity_column "note" must be a number',
      ],
      [
        'lines match unknown',
        {
          inventory,
          request: {
            lines_table: 'shop.lines',
            match: { order: 1 },
            product_column: 'sku',
            quantity_column: 'qty',
          },
        },
        '23503',
        'config.request.match.order "order" is not a column of shop.lines',
      ],
      [
        'lines no match',
        {
          inventory,
          request: { lines_table: 'shop.lines', match: {}, product_column: 'sku', quantity_column: 'qty' },
        },
        '22023',
        'config.request.match must name at least one column',
      ],
    ]);
  });
});

describe('create_alert', () => {
  it('refuses unknown recipients and templates that do not compile', async () => {
    const good = { title: 'Order {{id}}', message: 'x', recipients: { users: [userId] } };
    await expectAccepted('create_alert', [good]);
    await expectRefused('create_alert', [
      [
        'unknown user',
        { ...good, recipients: { users: [MISSING] } },
        '23503',
        `create_alert recipient user ${MISSING} does not exist`,
      ],
      [
        'bad template',
        { ...good, message: '{{{id}}' },
        '22023',
        'create_alert config.message is a template that does not compile',
      ],
    ]);
  });
});

describe('action templates', () => {
  it('re-check the actions that use them when their defaults change, naming the first one it would break', async () => {
    const [template] = await admin.query<{ id: string }>(
      `insert into workflow.action_templates (name, action_type, default_config, created_by)
       values ('order hook', 'webhook', '{"url": "https://hooks.example.com/{{id}}", "timeout_ms": 500}', $1)
       returning id`,
      [userId],
    );
    expect(await write({}, template!.id)).toBeUndefined();
    const position = order;
    // A template whose defaults leave the URL to its actions is fine on its own...
    await admin
      .query(`update workflow.action_templates set default_config = '{"timeout_ms": 600}' where id = $1`, [
        template!.id,
      ])
      .catch((error: pg.DatabaseError) => {
        // ...but not while an action relies on the URL it took away.
        expect(error.code).toBe('22023');
        expect(error.message).toBe(
          `action template "order hook" (${template!.id}): this change would break rule "order rule" (${ruleId}), ` +
            `action #${position} "the action" (${actionId(position)}, webhook): webhook config.url is required and must be a non-empty string`,
        );
      });
    const [unchanged] = await db.query<{ default_config: unknown }>(
      `select default_config from workflow.action_templates where id = $1`,
      [template!.id],
    );
    expect(unchanged!.default_config).toEqual({ url: 'https://hooks.example.com/{{id}}', timeout_ms: 500 });

    const broken = await admin
      .query(
        `update workflow.action_templates set default_config = default_config || '{"timeout_ms": 0}' where id = $1`,
        [template!.id],
      )
      .then(
        () => undefined,
        (error: pg.DatabaseError) => error,
      );
    expect(broken?.code).toBe('22023');
    expect(broken?.message).toContain('action template "order hook"');
    expect(broken?.message).toContain('config.timeout_ms must be a whole number');

    const template2 = await admin
      .query(
        `update workflow.action_templates set default_config = default_config || '{"body": "{{#each x}}"}' where id = $1`,
        [template!.id],
      )
      .then(
        () => undefined,
        (error: pg.DatabaseError) => error,
      );
    expect(template2?.code).toBe('22023');
    expect(template2?.message).toContain('webhook config.body is a template that does not compile');
  });
});
