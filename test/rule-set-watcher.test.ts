import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RuleSetWatcher } from '../src/db/rule-set-watcher.js';
import { createLogger } from '../src/logger.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { waitFor } from './support/wait.js';

// The engine's rule cache and the scheduler of one daemon learn of rule changes from one watcher of
// workflow.rule_set_version.

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase();
});

afterAll(async () => {
  await db.drop();
});

async function bumpVersion(): Promise<string> {
  const [row] = await db.query<{ version: string }>(
    'update workflow.rule_set_version set version = version + 1 returning version::text',
  );
  return row!.version;
}

describe('RuleSetWatcher', () => {
  it('tells every subscriber the version it read, at once when woken, from one look', async () => {
    // An hour between polls: only wake() can make it look within the test.
    const watcher = new RuleSetWatcher({
      pool: db.pool,
      logger: createLogger('silent'),
      pollIntervalMs: 3_600_000,
    });
    const engineSaw: (string | undefined)[] = [];
    const schedulerSaw: (string | undefined)[] = [];
    watcher.subscribe((version) => void engineSaw.push(version));
    const unsubscribe = watcher.subscribe((version) => void schedulerSaw.push(version));
    watcher.start();
    try {
      const version = await bumpVersion();
      watcher.wake();
      await waitFor(
        'both subscribers to see the new version',
        () => engineSaw.length > 0 && schedulerSaw.length > 0,
      );
      expect(engineSaw).toEqual([version]);
      expect(schedulerSaw).toEqual([version]);

      unsubscribe();
      const next = await bumpVersion();
      watcher.wake();
      await waitFor('the remaining subscriber to see the next version', () => engineSaw.length > 1);
      expect(engineSaw).toEqual([version, next]);
      expect(schedulerSaw).toEqual([version]);
    } finally {
      await watcher.stop();
    }
  });

  it('polls when no wake comes, and a failing subscriber does not keep the others from hearing', async () => {
    const watcher = new RuleSetWatcher({ pool: db.pool, logger: createLogger('silent'), pollIntervalMs: 20 });
    const seen: (string | undefined)[] = [];
    watcher.subscribe(() => {
      throw new Error('reload failed');
    });
    watcher.subscribe((version) => void seen.push(version));
    watcher.start();
    try {
      const version = await bumpVersion();
      await waitFor('a poll to read the new version', () => seen.includes(version));
    } finally {
      await watcher.stop();
    }
  });
});
