import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../../src/engine/engine.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { startEngine, TEST_LOG_TABLE } from '../support/engine.js';
import { executionsOf } from '../support/executions.js';
import { TestRoles, type LoginRole } from '../support/roles.js';
import { waitFor } from '../support/wait.js';

// Issue 9, item 5, and the privilege model of docs/privileges.md played by its roles: an
// application owner, a writer with INSERT/UPDATE only, an outbox reader with USAGE on workflow, a
// DBA in rulebook_admin who registers the table and writes the rule, and a daemon login in
// rulebook_daemon that runs the engine. No superuser in the story.

let db: TestDatabase;
let roles: TestRoles;
let app: LoginRole;
let writer: LoginRole;
let reader: LoginRole;
let admin: LoginRole;
let daemon: LoginRole;
let entityId: string;
let ruleId: string;

async function failure(work: Promise<unknown>): Promise<pg.DatabaseError> {
  const error = (await work.then(
    () => undefined,
    (caught: unknown) => caught,
  )) as pg.DatabaseError | undefined;
  expect(error, 'the statement should have failed').toBeDefined();
  return error!;
}

async function capturedIds(): Promise<number[]> {
  const rows = await db.query<{ id: number }>(
    `select (row_key ->> 'id')::int as id from workflow.events where entity_id = $1 order by id`,
    [entityId],
  );
  return rows.map((row) => row.id);
}

beforeAll(async () => {
  db = await createTestDatabase();
  roles = new TestRoles(db);
  app = await roles.login('app', 'create schema app authorization %I');
  writer = await roles.login('writer');
  reader = await roles.login(
    'reader',
    'grant rulebook_outbox_reader to %I',
    'grant usage on schema workflow to %I',
  );
  admin = await roles.login('admin', 'grant rulebook_admin to %I');
  daemon = await roles.login('daemon', 'grant rulebook_daemon to %I');
  await db.query(TEST_LOG_TABLE);
  await db.query(`grant insert on public.test_log to ${daemon.name}`);
  await db.query(`grant usage on sequence public.test_log_seq_seq to ${daemon.name}`);

  await app.query(`create table app.items (id int primary key, name text)`);
  await app.query(`grant usage on schema app to ${writer.name}, ${admin.name}`);
  await app.query(`grant insert, update on app.items to ${writer.name}`);
  // Registering installs capture triggers: the registering role needs TRIGGER on the table.
  await app.query(`grant trigger on app.items to ${admin.name}`);

  [{ id: entityId }] = (await admin.query<{ id: string }>(
    `select workflow.register_entity('app.items') as id`,
  )) as [{ id: string }];
  const [dba] = await db.query<{ id: string }>(
    `insert into core.users (email, name) values ('dba@example.com', 'DBA') returning id`,
  );
  [{ id: ruleId }] = (await admin.query<{ id: string }>(
    `insert into workflow.automation_rules
       (name, entity_id, entity_type_id, trigger_type_id, is_active, created_by, updated_by)
     select 'Item created', e.id, e.entity_type_id, t.id, true, $2, $2
       from workflow.entities e, workflow.trigger_types t
      where e.id = $1 and t.name = 'on_create'
     returning id`,
    [entityId, dba!.id],
  )) as [{ id: string }];
  await admin.query(
    `insert into workflow.rule_actions (automation_rules_id, name, action_config, execution_order)
     values ($1, 'log', '{"action_type": "test_log", "label": "created {{name}}"}', 1)`,
    [ruleId],
  );
});

afterAll(async () => {
  await roles.endPools();
  await db.drop();
  await roles.dropRoles();
});

describe('EXECUTE on workflow functions', () => {
  it('is revoked from PUBLIC on every function but the capture filters', async () => {
    const open = await db.query<{ proname: string }>(
      `select p.proname from pg_proc p
        where p.pronamespace = 'workflow'::regnamespace
          and (p.proacl is null or exists (select 1 from aclexplode(p.proacl) a where a.grantee = 0 and a.privilege_type = 'EXECUTE'))`,
    );
    expect(open.length).toBeGreaterThan(0);
    expect(
      open.map((row) => row.proname).filter((name) => !/^capture_filter_[0-9a-f]{32}_/.test(name)),
    ).toEqual([]);
  });

  it("keeps a reader with USAGE on workflow from dropping a table's capture", async () => {
    const error = await failure(reader.query(`select workflow.drop_capture_filters($1)`, [entityId]));
    expect(error.code).toBe('42501');
    expect(error.message).toMatch(/permission denied for function drop_capture_filters/);
    const refresh = await failure(reader.query(`select workflow.refresh_capture($1)`, [entityId]));
    expect(refresh.code).toBe('42501');
    const insert = await failure(
      reader.query(
        `insert into workflow.events (entity_id, operation, row_key) values ($1, 'on_create', '{}')`,
        [entityId],
      ),
    );
    expect(insert.code).toBe('42501');
  });

  it("keeps a reader from forging another table's events with its capture function", async () => {
    const [{ fn }] = (await db.query<{ fn: string }>(`select workflow.capture_function_name($1) as fn`, [
      entityId,
    ])) as [{ fn: string }];
    const client = await reader.pool.connect();
    try {
      await client.query(`create temp table forged (id int primary key, name text)`);
      const error = await failure(
        client.query(
          `create trigger forge after insert on forged for each row execute function workflow.${fn}()`,
        ),
      );
      expect(error.code).toBe('42501');
      expect(error.message).toMatch(/permission denied for function/);
    } finally {
      client.release();
    }
  });

  it('runs a capture function only for its own table, even for a role that may attach it elsewhere', async () => {
    const [{ fn }] = (await db.query<{ fn: string }>(`select workflow.capture_function_name($1) as fn`, [
      entityId,
    ])) as [{ fn: string }];
    await db.withClient(async (client) => {
      await client.query(`create temp table forged (id int primary key, name text)`);
      await client.query(
        `create trigger forge after insert on forged for each row execute function workflow.${fn}()`,
      );
      const error = await failure(client.query(`insert into forged values (666, 'forged')`));
      expect(error.code).toBe('42501');
      expect(error.message).toMatch(/belongs to app\.items and refuses to run for pg_temp_\d+\.forged/);
    });
    expect(await capturedIds()).not.toContain(666);
  });
});

describe('the roles of the privilege model', () => {
  let engine: Engine | undefined;
  afterAll(async () => {
    await engine?.stop();
  });

  it('let a writer without privileges on workflow be captured, and a daemon in rulebook_daemon run the rule', async () => {
    await writer.query(`insert into app.items values (1, 'bolt')`);
    expect(await capturedIds()).toEqual([1]);
    const outbox = await reader.query<{ aggregatetype: string; type: string; payload: unknown }>(
      `select aggregatetype, type, payload -> 'new' as payload from workflow.outbox`,
    );
    expect(outbox).toEqual([
      { aggregatetype: 'app.items', type: 'on_create', payload: { id: 1, name: 'bolt' } },
    ]);
    engine = await startEngine(db, { databaseUrl: daemon.url });
    const executions = await waitFor('the execution', async () => {
      const rows = await executionsOf(db, ruleId);
      return rows.length > 0 ? rows : undefined;
    });
    expect(executions[0]).toMatchObject({ status: 'success', error_message: null });
    expect(await db.query(`select label from test_log`)).toEqual([{ label: 'created bolt' }]);
  });

  it('let the DBA unregister the table, after which writes go on uncaptured', async () => {
    await engine?.stop();
    engine = undefined;
    await admin.query(`delete from workflow.automation_executions where automation_rules_id = $1`, [ruleId]);
    await admin.query(`delete from workflow.rule_actions where automation_rules_id = $1`, [ruleId]);
    await admin.query(`delete from workflow.automation_rules where id = $1`, [ruleId]);
    await admin.query(`delete from workflow.entities where id = $1`, [entityId]);
    await writer.query(`insert into app.items values (2, 'nut')`);
    expect(await capturedIds()).not.toContain(2);
  });
});
