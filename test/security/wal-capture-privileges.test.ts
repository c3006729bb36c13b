import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { leaveWalMode } from '../../src/capture/wal/capture-mode.js';
import { WalCapture } from '../../src/capture/wal/wal-capture.js';
import { createLogger } from '../../src/logger.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { startEngine } from '../support/engine.js';
import { createRule } from '../support/rules.js';
import { TestRoles, type LoginRole } from '../support/roles.js';
import { waitFor } from '../support/wait.js';

// Issue 11 review: WAL capture (sql/000022_wal_capture_privileges.sql). The append ran the
// application owner's code (a domain's CHECK) as the installer; any writer could forge the chain
// depth with pg_logical_emit_message; rulebook_admin could switch, lock or skip any table. Each is
// tried here as the role that would attack.

const logger = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent');
let db: TestDatabase;
let roles: TestRoles;
let owner: LoginRole;
let writer: LoginRole;
let admin: LoginRole;
let daemon: LoginRole;
let capture: WalCapture | undefined;

async function errorOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    return (error as Error).message;
  }
  return 'no error';
}

beforeAll(async () => {
  db = await createTestDatabase();
  roles = new TestRoles(db);
  owner = await roles.login('appowner', 'create schema app authorization %I');
  // The owner's domain calls the owner's function, which records who runs it and tries to make the
  // owner a superuser: harmless as the owner or rulebook_capture, an escalation as a superuser.
  await owner.query(`
    create table app.seen (who text not null);
    grant usage on schema app to public;
    grant insert on app.seen to public;
    create function app.spy(v int) returns boolean language plpgsql as $f$
    begin
      insert into app.seen (who) values (current_user);
      begin
        execute format('alter role %I superuser', '${owner.name}');
      exception when others then null;
      end;
      return v >= 0;
    end
    $f$;
    grant execute on function app.spy(int) to public;
    create domain app.checked as int check (app.spy(value));
    create table app.orders (id int primary key, n app.checked not null);
    create table app.tasks (id int primary key, n int not null default 0);
    grant insert, update on app.tasks to public;
    create table app.loop (id int primary key, n text not null default '0');
    grant select, insert, update on app.loop to public;
  `);
  await db.query(`grant trigger on app.orders, app.tasks, app.loop to rulebook_admin`);
  await createRule(db, { name: 'orders created', entity: 'app.orders', trigger: 'on_create' });
  await createRule(db, { name: 'tasks created', entity: 'app.tasks', trigger: 'on_create' });
  writer = await roles.login('writer');
  admin = await roles.login('admin', 'grant rulebook_admin to %I');
  daemon = await roles.login('daemon', 'grant rulebook_daemon to %I');
  capture = new WalCapture({ databaseUrl: db.url, logger, batchSize: 100, retryMs: 100 });
  await capture.start();
  await waitFor('a reader', () => capture!.isReader);
});

afterAll(async () => {
  await capture?.stop();
  await roles.endPools();
  if (db) {
    await db.withClient((client) => leaveWalMode(client, logger));
    await db.query(
      `select pg_drop_replication_slot(slot_name) from pg_replication_slots where database = current_database()`,
    );
    await db.drop();
  }
  await roles.dropRoles();
});

describe('WAL capture runs the application owner code as rulebook_capture', () => {
  it('a domain CHECK of a registered table runs as rulebook_capture at append time and cannot escalate', async () => {
    await owner.query(`insert into app.orders (id, n) values (1, 5)`);
    await waitFor('the event from the WAL', async () => {
      const rows = await db.query(`select 1 from workflow.events where row_key = '{"id": 1}'::jsonb`);
      return rows.length > 0;
    });
    const seen = (await db.query<{ who: string }>('select distinct who from app.seen'))
      .map((r) => r.who)
      .sort();
    // The writer's own check, then the append's.
    expect(seen).toEqual([owner.name, 'rulebook_capture'].sort());
    const [role] = await db.query<{ rolsuper: boolean }>('select rolsuper from pg_roles where rolname = $1', [
      owner.name,
    ]);
    expect(role!.rolsuper).toBe(false);
    const [fn] = await db.query<{ owner: string; definer: boolean }>(
      `select proowner::regrole::text as owner, prosecdef as definer from pg_proc
        where oid = 'workflow.append_wal_changes(text, jsonb)'::regprocedure`,
    );
    expect(fn).toEqual({ owner: 'rulebook_capture', definer: true });
  });
});

describe('WAL capture takes the chain depth from the daemon only', () => {
  it('a writer that emits a depth message has its write captured at depth 0 and the rule runs', async () => {
    const client = await writer.pool.connect();
    try {
      await client.query('begin');
      await client.query(`select pg_logical_emit_message(true, 'rulebook.depth', '999999')`);
      await client.query(
        `select pg_logical_emit_message(true, 'rulebook.depth', '999999:' || repeat('ab', 32))`,
      );
      await client.query(`insert into app.tasks (id) values (1)`);
      await client.query('commit');
    } finally {
      client.release();
    }
    const [event] = await waitFor('the event from the WAL', () =>
      db
        .query<{ depth: number }>(
          `select depth from workflow.events where row_key = '{"id": 1}'::jsonb
                                    and aggregate_type = 'app.tasks'`,
        )
        .then((rows) => (rows.length > 0 ? rows : undefined)),
    );
    expect(event!.depth).toBe(0);
    const engine = await startEngine(db, { captureMode: 'wal' });
    try {
      await waitFor('the rule to run for the writer', async () => {
        const rows = await db.query(
          `select 1 from workflow.automation_executions x join workflow.automation_rules r on r.id = x.automation_rules_id
            where r.name = 'tasks created' and x.status = 'success'`,
        );
        return rows.length > 0;
      });
    } finally {
      await engine.stop();
    }
  });

  it("the daemon's own signed depth still stops a self-triggering rule at the chain limit", async () => {
    // The engine logs in as a non-superuser member of rulebook_daemon, which reads the secret.
    const ruleId = await createRule(db, {
      name: 'Bump n',
      entity: 'app.loop',
      trigger: 'on_update',
      conditions: [{ field_name: 'n', operator: 'changed' }],
      actions: [{ name: 'bump', config: { action_type: 'update_field', field: 'n', value: '{{n}}1' } }],
    });
    await db.query(`insert into app.loop (id) values (1)`);
    const engine = await startEngine(db, { databaseUrl: daemon.url, captureMode: 'wal', maxChainDepth: 3 });
    try {
      const client = await writer.pool.connect();
      try {
        await client.query('begin');
        await client.query(`select pg_logical_emit_message(true, 'rulebook.depth', '0')`);
        await client.query(`update app.loop set n = '1' where id = 1`);
        await client.query('commit');
      } finally {
        client.release();
      }
      await waitFor('the chain limit to stop the rule', async () => {
        const rows = await db.query(
          `select 1 from workflow.automation_executions
            where automation_rules_id = $1 and error_message like 'chain depth % exceeds the limit of 3%'`,
          [ruleId],
        );
        return rows.length > 0;
      });
    } finally {
      await engine.stop();
    }
    const executions = await db.query<{ depth: string }>(
      `select trigger_data ->> 'depth' as depth from workflow.automation_executions
        where automation_rules_id = $1 order by executed_at`,
      [ruleId],
    );
    // The writer's change at 0, then one per level up to the limit, then the refused one.
    expect(executions.map((e) => e.depth)).toEqual(['0', '1', '2', '3', '4']);
  });

  it('neither a writer nor rulebook_admin reads the signing secret', async () => {
    expect(await errorOf(writer.query('select secret from workflow.wal_context_secret'))).toMatch(
      /permission denied/,
    );
    expect(await errorOf(admin.query('select secret from workflow.wal_context_secret'))).toMatch(
      /permission denied/,
    );
  });
});

describe('rulebook_admin cannot switch, lock or skip tables through WAL capture', () => {
  it("may not write WAL capture's state, only read it", async () => {
    await admin.query('select mode from workflow.capture_settings');
    await admin.query('select * from workflow.wal_capture_progress');
    for (const statement of [
      `update workflow.capture_settings set mode = 'triggers'`,
      `update workflow.wal_capture_progress set commit_lsn = 'FFFFFFFF/0'`,
      `insert into workflow.wal_capture_tables values ('app.seen'::regclass, 'd')`,
      `delete from workflow.wal_capture_tables`,
    ]) {
      expect(await errorOf(admin.query(statement)), statement).toMatch(/permission denied/);
    }
  });

  it('may not call the functions that switch tables or move the progress', async () => {
    for (const statement of [
      `select workflow.wal_capture_table('app.seen')`,
      `select workflow.trigger_capture_table('app.orders')`,
      `select workflow.start_wal_capture_at('rulebook_capture', 'FFFFFFFF/0')`,
      `select workflow.set_capture_mode('triggers', null)`,
      `select workflow.append_wal_changes('x', '[]')`,
      `select workflow.leave_wal_capture()`,
      `select workflow.finish_leaving_wal_capture('x')`,
    ]) {
      expect(await errorOf(admin.query(statement)), statement).toMatch(/permission denied/);
    }
  });

  it('the switching functions refuse a table that is not registered, whoever calls them', async () => {
    expect(await errorOf(db.query(`select workflow.wal_capture_table('app.seen')`))).toMatch(
      /app\.seen is not a registered table/,
    );
    expect(await errorOf(db.query(`select workflow.trigger_capture_table('app.seen')`))).toMatch(
      /app\.seen is neither registered nor under WAL capture/,
    );
    const [identity] = await db.query<{ relreplident: string }>(
      `select relreplident from pg_class where oid = 'app.seen'::regclass`,
    );
    expect(identity!.relreplident).toBe('d');
  });
});
