import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { packageRoot } from '../src/package-root.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { ensureCliBuilt, runRulebook, type RulebookRun } from './support/daemon-process.js';
import { databaseUrl } from './support/urls.js';

// The operator's view: the built `rulebook` command, run as a process.

const root = packageRoot();

/** The CLI with the given DATABASE_URL (or none, whatever the test run itself uses). */
function run(args: string[], databaseUrl: string | undefined): Promise<RulebookRun> {
  return runRulebook(
    args,
    { LOG_LEVEL: 'silent', DATABASE_URL: databaseUrl, TEST_DATABASE_URL: undefined },
    { cwd: root },
  );
}

const migrationFiles = fs
  .readdirSync(path.join(root, 'sql'))
  .filter((file) => file.endsWith('.sql'))
  .sort();

/** What a DBA checks after a migration: every file recorded, and the tables there. */
async function expectFullyMigrated(db: TestDatabase): Promise<void> {
  const [tables] = await db.query<{ rules: string | null; events: string | null; users: string | null }>(
    `select to_regclass('workflow.automation_rules')::text as rules, to_regclass('workflow.events')::text as events,
            to_regclass('core.users')::text as users`,
  );
  expect(tables).toEqual({
    rules: 'workflow.automation_rules',
    events: 'workflow.events',
    users: 'core.users',
  });
  const recorded = await db.query<{ id: number; name: string }>(
    'select id, name from workflow.migrations where id > 0 order by id',
  );
  expect(recorded).toHaveLength(migrationFiles.length);
  recorded.forEach((migration, index) => {
    expect(migrationFiles[index]).toBe(`${String(migration.id).padStart(6, '0')}_${migration.name}.sql`);
  });
  // The seed rows went in exactly once.
  const [seeds] = await db.query<{ triggers: number; types: number }>(
    `select (select count(*)::int from workflow.trigger_types) as triggers,
            (select count(*)::int from workflow.entity_types) as types`,
  );
  expect(seeds).toEqual({ triggers: 4, types: 2 });
}

beforeAll(() => ensureCliBuilt());

describe('rulebook --help', () => {
  it('prints the usage, listing every command', async () => {
    const result = await run(['--help'], undefined);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^Usage:/m);
    const commands = ['start', 'migrate', 'events retry', 'role add', 'user add', 'token create'];
    for (const command of [...commands, 'token list', 'token revoke', 'db url', 'psql', 'demo']) {
      expect(result.stdout).toMatch(new RegExp(`^\\s+rulebook ${command}\\s`, 'm'));
    }
    expect(result.stdout).toContain('DATABASE_URL');
    expect(result.stderr).toBe('');
  });
});

describe('rulebook migrate', () => {
  let empty: TestDatabase;
  let concurrent: TestDatabase;
  beforeAll(async () => {
    [empty, concurrent] = await Promise.all([
      createTestDatabase({ migrated: false }),
      createTestDatabase({ migrated: false }),
    ]);
  });
  afterAll(async () => {
    await Promise.all([empty?.drop(), concurrent?.drop()]);
  });

  it('applies every migration to an empty database', async () => {
    const [before] = await empty.query<{ schema: string | null }>(
      `select to_regnamespace('workflow')::text as schema`,
    );
    expect(before!.schema).toBeNull();

    const result = await run(['migrate'], empty.url);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain(`rulebook: applied ${migrationFiles.join(', ')}\n`);
    await expectFullyMigrated(empty);
  });

  it('says the database is up to date when run again', async () => {
    const result = await run(['migrate'], empty.url);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain('rulebook: database is up to date\n');
    expect(result.stdout).not.toContain('applied');
    await expectFullyMigrated(empty);
  });

  it('two concurrent runs both succeed, and the migrations are applied once', async () => {
    const results = await Promise.all([run(['migrate'], concurrent.url), run(['migrate'], concurrent.url)]);
    for (const result of results) expect(result.code, result.stderr).toBe(0);
    // The runs take turns: one applies everything, the other then finds nothing to do.
    const applied = results.filter((result) =>
      result.stdout.includes(`rulebook: applied ${migrationFiles.join(', ')}\n`),
    );
    const upToDate = results.filter((result) => result.stdout.includes('rulebook: database is up to date\n'));
    expect([applied.length, upToDate.length]).toEqual([1, 1]);
    await expectFullyMigrated(concurrent);
  });

  it('refuses arguments it does not take', async () => {
    const result = await run(['migrate', 'now'], empty.url);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('migrate takes no arguments, got: now');
  });
});

describe('mistakes', () => {
  it('an unknown command exits 2, names it and the commands it is near, in two lines', async () => {
    const result = await run(['migrat'], undefined);
    expect(result).toMatchObject({
      code: 2,
      stdout: '',
      stderr:
        'rulebook: unknown command "migrat"; did you mean "migrate"?\nrulebook --help lists the commands\n',
    });
    expect((await run(['rule'], undefined)).stderr).toBe(
      'rulebook: unknown command "rule"; did you mean "rules" or "role"?\nrulebook --help lists the commands\n',
    );
    expect((await run(['xyzzy'], undefined)).stderr).toBe(
      'rulebook: unknown command "xyzzy"\nrulebook --help lists the commands\n',
    );
  });

  it('--version prints the version of package.json', async () => {
    const manifest = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as {
      version: string;
    };
    const result = await run(['--version'], undefined);
    expect(result).toMatchObject({ code: 0, stdout: `rulebook ${manifest.version}\n`, stderr: '' });
  });

  it('a malformed DATABASE_URL exits 2 with a configuration error, without echoing the password', async () => {
    for (const url of ['not a url', 'mysql://admin:s3cret@db.example.com/app']) {
      const result = await run(['migrate'], url);
      expect(result.code, url).toBe(2);
      expect(result.stdout).toBe('');
      expect(result.stderr).toMatch(/^rulebook: configuration error: DATABASE_URL must be a postgres:\/\//);
      expect(result.stderr).not.toContain('s3cret');
    }
  });

  it('a migration that cannot connect exits 1 with the server’s message', async () => {
    const missing = databaseUrl(inject('pgAdminUrl'), 'rulebook_no_such_database');
    const result = await run(['migrate'], missing);
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr).toContain('database "rulebook_no_such_database" does not exist');
  });
});
