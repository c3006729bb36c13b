import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrateDatabase } from '../../src/db/migrate.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { startEngine } from '../support/engine.js';
import { TestRoles, type LoginRole } from '../support/roles.js';
import { waitFor } from '../support/wait.js';

// Issue 13 asks for an install by a non-superuser: the database's owner with CREATEROLE, as a
// managed PostgreSQL service gives it. Event triggers need a superuser, so none are installed;
// everything else works as after a superuser's install.

let db: TestDatabase;
let roles: TestRoles;
let owner: LoginRole;

beforeAll(async () => {
  db = await createTestDatabase({ migrated: false });
  roles = new TestRoles(db);
  owner = await roles.login('owner', 'alter role %I createrole', `alter database ${db.name} owner to %I`);
});

afterAll(async () => {
  await roles.endPools();
  await db.drop();
  await roles.dropRoles();
});

describe('migrations run by a non-superuser owner with CREATEROLE', () => {
  it('install the privilege model and a capture that works', async () => {
    const applied = await migrateDatabase(owner.url);
    expect(applied).toContain('000010_privileges.sql');
    expect(await db.query(`select evtname from pg_event_trigger`)).toEqual([]);

    await owner.query(`create table public.parts (id int primary key, name text)`);
    const [{ id: entityId }] = (await owner.query<{ id: string }>(
      `select workflow.register_entity('public.parts') as id`,
    )) as [{ id: string }];
    const [dba] = await owner.query<{ id: string }>(
      `insert into core.users (email, name) values ('dba@example.com', 'DBA') returning id`,
    );
    await owner.query(
      `insert into workflow.automation_rules
         (name, entity_id, entity_type_id, trigger_type_id, is_active, created_by, updated_by)
       select 'Part created', e.id, e.entity_type_id, t.id, true, $2, $2
         from workflow.entities e, workflow.trigger_types t
        where e.id = $1 and t.name = 'on_create'`,
      [entityId, dba!.id],
    );
    await owner.query(`insert into public.parts values (1, 'gear')`);
    expect(await owner.query(`select new_row from workflow.events`)).toEqual([
      { new_row: { id: 1, name: 'gear' } },
    ]);

    // One DATABASE_URL for migrating and running is the common install: the installer joined
    // rulebook_daemon, so the daemon starts as it and handles the event.
    const engine = await startEngine(db, { databaseUrl: owner.url });
    try {
      const execution = await waitFor('the execution of "Part created"', async () => {
        const rows = await db.query<{ status: string }>(`select status from workflow.automation_executions`);
        return rows[0];
      });
      expect(execution).toEqual({ status: 'success' });
    } finally {
      await engine.stop();
    }

    const [capture] = await db.query<{ owner: string; create: boolean }>(
      `select pg_get_userbyid(proowner) as owner, has_schema_privilege('rulebook_capture', 'workflow', 'create') as create
         from pg_proc where proname = workflow.capture_function_name($1)`,
      [entityId],
    );
    expect(capture).toEqual({ owner: 'rulebook_capture', create: false });

    // A second run applies nothing and fails on nothing.
    expect(await migrateDatabase(owner.url)).toEqual([]);
    await owner.query(`drop table public.parts`);
  });
});
