import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { ensureCliBuilt, runRulebook } from '../support/daemon-process.js';
import { TestRoles, type LoginRole } from '../support/roles.js';

// A non-superuser install gets no event triggers, and migration 000004 says so in a NOTICE that
// docs/operations.md points to. `rulebook migrate` used to drop every NOTICE, so the installer
// never saw it.

let db: TestDatabase;
let roles: TestRoles;
let owner: LoginRole;

beforeAll(async () => {
  ensureCliBuilt();
  db = await createTestDatabase({ migrated: false });
  roles = new TestRoles(db);
  owner = await roles.login('owner', 'alter role %I createrole', `alter database ${db.name} owner to %I`);
});

afterAll(async () => {
  await roles.endPools();
  await db.drop();
  await roles.dropRoles();
});

describe('rulebook migrate as a non-superuser owner with CREATEROLE', () => {
  it("prints rulebook's notices on stderr, and only them, and the applied files on stdout", async () => {
    const run = await runRulebook(['migrate'], { DATABASE_URL: owner.url });
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/^rulebook: applied 000001_core_users\.sql, .*\n$/);
    expect(run.stderr).toBe(
      'rulebook: not a superuser, so capture filters are not refreshed after ALTER TABLE by themselves\n',
    );
  });

  it('prints nothing on stderr when run again', async () => {
    const run = await runRulebook(['migrate'], { DATABASE_URL: owner.url });
    expect(run).toMatchObject({ code: 0, stdout: 'rulebook: database is up to date\n', stderr: '' });
  });
});
