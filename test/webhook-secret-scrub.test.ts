import { cp, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { migrate } from 'postgres-migrations';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrateDatabase, migrationsDir } from '../src/db/migrate.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';

// Before migration 000014 a webhook action's own secret was copied into its payload row. Upgrading
// removes it from every such row, and marks the row as signed by its action's secret.

let db: TestDatabase;
let before: string;

beforeAll(async () => {
  db = await createTestDatabase({ migrated: false });
  before = await mkdtemp(path.join(tmpdir(), 'rulebook-before-14-'));
  for (const file of await readdir(migrationsDir())) {
    if (Number.parseInt(file, 10) < 14) await cp(path.join(migrationsDir(), file), path.join(before, file));
  }
});

afterAll(async () => {
  await db?.drop();
  if (before) await rm(before, { recursive: true, force: true });
});

describe('migration 000014', () => {
  it('scrubs the webhook secrets that earlier versions stored with payloads', async () => {
    const client = new pg.Client({ connectionString: db.url, options: '-c search_path=workflow' });
    await client.connect();
    try {
      await client.query('create schema if not exists workflow');
      await migrate({ client }, before);
      await client.query(
        `insert into workflow.notification_payloads (id, payload) values
           ('aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', '{"kind": "webhook", "url": "https://x.example/h", "secret": "old-secret", "body": {}}'),
           ('bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb', '{"kind": "webhook", "url": "https://x.example/h", "body": {}}'),
           ('cccccccc-cccc-4ccc-8ccc-cccccccccccc', '{"kind": "email", "subject": "secret stays in the subject"}')`,
      );
    } finally {
      await client.end();
    }

    expect(await migrateDatabase(db.url)).toContain('000014_every_action_checked.sql');

    const rows = await db.query<{ id: string; payload: unknown }>(
      `select id::text, payload from workflow.notification_payloads order by id`,
    );
    expect(rows).toEqual([
      {
        id: 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa',
        payload: { kind: 'webhook', url: 'https://x.example/h', body: {}, own_secret: true },
      },
      {
        id: 'bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb',
        payload: { kind: 'webhook', url: 'https://x.example/h', body: {} },
      },
      {
        id: 'cccccccc-cccc-4ccc-8ccc-cccccccccccc',
        payload: { kind: 'email', subject: 'secret stays in the subject' },
      },
    ]);
  });
});
