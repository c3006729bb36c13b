import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrateDatabase } from '../../src/db/migrate.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { startEngine } from '../support/engine.js';
import { TestRoles, type LoginRole } from '../support/roles.js';
import { waitFor } from '../support/wait.js';

// The third installer of docs/privileges.md: the database's owner without CREATEROLE. The migration
// stops and says what a DBA must grant; after that grant a second run completes. Without a superuser
// no event trigger is installed, and the daemon runs as a role of its own (the installer could not
// join rulebook_daemon).

let db: TestDatabase;
let roles: TestRoles;
let owner: LoginRole;

beforeAll(async () => {
  db = await createTestDatabase({ migrated: false });
  roles = new TestRoles(db);
  owner = await roles.login('plain_owner', `alter database ${db.name} owner to %I`);
});

afterAll(async () => {
  await roles.endPools();
  await db.drop();
  await roles.dropRoles();
});

interface DatabaseError {
  code?: string;
  message?: string;
  hint?: string;
  cause?: unknown;
}

/** postgres-migrations wraps the database's error in two of its own: the first in the chain with a SQLSTATE. */
function databaseError(error: unknown): DatabaseError {
  let current = error as DatabaseError | undefined;
  while (current && !current.code) current = current.cause as DatabaseError | undefined;
  return current ?? {};
}

describe('migrations run by a database owner without CREATEROLE', () => {
  it('stop with the grant a DBA must give, and after it install rulebook that captures and runs rules', async () => {
    const refused = await migrateDatabase(owner.url).then(
      () => null,
      (error: unknown) => error,
    );
    expect(refused).not.toBeNull();
    const cause = databaseError(refused);
    expect(cause.code).toBe('42501');
    expect(cause.message).toMatch(/must be a member of rulebook_capture/);
    expect(cause.hint).toBe(
      `Have a role with CREATEROLE run: grant rulebook_capture to ${owner.name}; then migrate again.`,
    );
    // What `rulebook migrate` prints: the first line of the message, hint included.
    expect((refused as Error).message.split('\n')[0]).toContain(
      `Hint: Have a role with CREATEROLE run: grant rulebook_capture to ${owner.name}`,
    );
    // The migrations before the refused one committed; the refused one left nothing.
    expect(await db.query(`select to_regproc('workflow.apply_privileges') is null as absent`)).toEqual([
      { absent: true },
    ]);

    await db.query(`grant rulebook_capture to ${owner.name}`);
    const applied = await migrateDatabase(owner.url);
    expect(applied).toContain('000010_privileges.sql');
    expect(await db.query(`select evtname from pg_event_trigger`)).toEqual([]);
    const memberships = await db.query<{ role: string; member: boolean }>(
      `select r as role, pg_has_role($1, r, 'MEMBER') as member
         from unnest(array['rulebook_capture', 'rulebook_daemon', 'rulebook_admin']) r order by r`,
      [owner.name],
    );
    expect(memberships).toEqual([
      { role: 'rulebook_admin', member: false },
      { role: 'rulebook_capture', member: true },
      { role: 'rulebook_daemon', member: false },
    ]);

    // Registration as the owner of workflow, a rule, and a write by an application role.
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
    const app = await roles.login('app', `grant insert on public.parts to %I`);
    await app.query(`insert into public.parts values (1, 'gear')`);
    expect(await owner.query(`select new_row from workflow.events`)).toEqual([
      { new_row: { id: 1, name: 'gear' } },
    ]);

    const daemon = await roles.login('daemon', 'grant rulebook_daemon to %I');
    const engine = await startEngine(db, { databaseUrl: daemon.url });
    try {
      const execution = await waitFor('the execution of "Part created"', async () => {
        const rows = await db.query<{ status: string }>(`select status from workflow.automation_executions`);
        return rows[0];
      });
      expect(execution).toEqual({ status: 'success' });
    } finally {
      await engine.stop();
    }

    // A second run applies nothing and fails on nothing.
    expect(await migrateDatabase(owner.url)).toEqual([]);
    await owner.query(`drop table public.parts`);
  });
});
