import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import { createLogger } from '../../src/logger.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { startEngine } from '../support/engine.js';
import { createRule } from '../support/rules.js';
import { TestRoles, type LoginRole } from '../support/roles.js';
import { waitFor } from '../support/wait.js';
import { createTable } from '../support/tables.js';

// Issue 9, item 4: capture records how many rule executions led to a change (rulebook.depth), and
// the engine stops chains by it. Only the daemon's own writes may set it: a writer who sets it
// could switch every rule off for its write, or let a self-updating rule loop without end.

let db: TestDatabase;
let roles: TestRoles;
let writer: LoginRole;
let daemon: LoginRole;

/** Inserts a row as `role` after `set local rulebook.depth = value`; returns the captured depth. */
async function depthOfWrite(role: LoginRole, id: number, value: string): Promise<number> {
  const client = await role.pool.connect();
  try {
    await client.query('begin');
    await client.query(`select set_config('rulebook.depth', $1, true)`, [value]);
    await client.query(`insert into app.tasks (id, n) values ($1, 0)`, [id]);
    await client.query('commit');
  } finally {
    client.release();
  }
  const [event] = await db.query<{ depth: number }>(
    `select depth from workflow.events where operation = 'on_create' and row_key = jsonb_build_object('id', $1::int)`,
    [id],
  );
  return event!.depth;
}

beforeAll(async () => {
  db = await createTestDatabase();
  roles = new TestRoles(db);
  await createTable(db, 'app.tasks', `id int primary key, n int not null`);
  writer = await roles.login(
    'writer',
    'grant usage on schema app to %I',
    'grant insert, update on app.tasks to %I',
  );
  daemon = await roles.login(
    'daemon',
    'grant rulebook_daemon to %I',
    'grant usage on schema app to %I',
    'grant insert, update on app.tasks to %I',
  );
});

afterAll(async () => {
  await roles.endPools();
  await db.drop();
  await roles.dropRoles();
});

describe('rulebook.depth set by a writer', () => {
  it('is ignored: every value counts as 0, and no value fails the write', async () => {
    await createRule(db, { name: 'Task created', entity: 'app.tasks', trigger: 'on_create' });
    expect(await depthOfWrite(writer, 1, '11')).toBe(0);
    expect(await depthOfWrite(writer, 2, '-1000000')).toBe(0);
    expect(await depthOfWrite(writer, 3, 'eleven')).toBe(0);
    expect(await depthOfWrite(writer, 4, '99999999999999')).toBe(0);
    expect(await depthOfWrite(writer, 5, '')).toBe(0);
  });

  it("is taken from the daemon's role, and clamped at 0", async () => {
    expect(await depthOfWrite(daemon, 11, '3')).toBe(3);
    expect(await depthOfWrite(daemon, 12, '-5')).toBe(0);
    expect(await depthOfWrite(daemon, 13, 'x')).toBe(0);
  });
});

describe('a self-updating rule', () => {
  let engine: Engine | undefined;
  afterAll(async () => {
    await engine?.stop();
  });

  it('stops at the chain limit although the writer asked for a huge negative depth', async () => {
    const ruleId = await createRule(db, {
      name: 'Bump n',
      entity: 'app.tasks',
      trigger: 'on_update',
      conditions: [{ field_name: 'n', operator: 'changed' }],
      actions: [{ name: 'bump', config: { action_type: 'update_field', field: 'n', value: '{{n}}1' } }],
    });
    await db.query(`update workflow.automation_rules set is_active = false where id <> $1`, [ruleId]);
    await db.query(`delete from workflow.events`);
    // One row, so that the writer (UPDATE without SELECT: no WHERE clause) updates just it.
    await db.query(`delete from app.tasks where id <> 1`);
    engine = await startEngine(db, { maxChainDepth: 3 });
    const client = await writer.pool.connect();
    try {
      await client.query('begin');
      await client.query(`select set_config('rulebook.depth', '-1000000', true)`);
      await client.query(`update app.tasks set n = 1`);
      await client.query('commit');
    } finally {
      client.release();
    }
    const executions = await waitFor('the chain to stop', async () => {
      const rows = await db.query<{ status: string }>(
        `select status from workflow.automation_executions where automation_rules_id = $1`,
        [ruleId],
      );
      const pending = await db.query(`select 1 from workflow.events where state = 'pending'`);
      return rows.length > 0 && pending.length === 0 ? rows : undefined;
    });
    // The writer's change and at most maxChainDepth rule writes after it, not a million.
    expect(executions.length).toBeLessThanOrEqual(5);
    const [task] = await db.query<{ n: number }>(`select n from app.tasks where id = 1`);
    expect(String(task!.n).length).toBeLessThanOrEqual(5);
  });
});

describe('a daemon whose login role is not in rulebook_daemon', () => {
  it('refuses to start, since the chain limit would not hold for it', async () => {
    const engine = new Engine({ databaseUrl: writer.url, logger: createLogger('silent') });
    try {
      await expect(engine.start()).rejects.toThrow(
        new RegExp(
          `"${writer.name}" is not a member of rulebook_daemon.*grant rulebook_daemon to ${writer.name}`,
        ),
      );
    } finally {
      await engine.stop();
    }
  });
});
