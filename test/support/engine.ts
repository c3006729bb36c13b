import type { ActionRegistry } from '../../src/actions/registry.js';
import { defaultActions } from '../../src/actions/registry.js';
import type { ActionHandler } from '../../src/actions/types.js';
import { Engine, type EngineOptions } from '../../src/engine/engine.js';
import { createLogger } from '../../src/logger.js';
import type { TestDatabase } from './database.js';

/**
 * A test action that appends to test_log(seq, event_id, rule, label, row_key, n): the order in
 * which actions really ran, as a sequence sees it. Tables: the test creates test_log.
 */
export const logAction: ActionHandler = {
  type: 'test_log',
  async execute(context) {
    const label =
      typeof context.action.config.label === 'string' ? context.render(context.action.config.label) : '';
    if (context.action.config.fail) throw new Error(`test_log: asked to fail (${label})`);
    await context.client.query(
      `insert into test_log (event_id, rule, label, row_key, n) values ($1, $2, $3, $4, $5)`,
      [
        context.event.id,
        context.rule.name,
        label,
        JSON.stringify(context.event.rowKey),
        context.event.newRow?.n ?? null,
      ],
    );
    return { logged: label };
  },
};

export const TEST_LOG_TABLE = `
create table if not exists public.test_log (
  seq bigserial primary key,
  event_id bigint not null,
  rule text not null,
  label text,
  row_key jsonb,
  n int,
  backend_pid int default pg_backend_pid()
)`;

export function testActions(): ActionRegistry {
  const registry = defaultActions();
  registry.register(logAction);
  return registry;
}

export async function startEngine(db: TestDatabase, options: Partial<EngineOptions> = {}): Promise<Engine> {
  const engine = new Engine({
    databaseUrl: db.url,
    logger: createLogger(process.env.TEST_LOG_LEVEL ?? 'silent'),
    pollIntervalMs: 200,
    actions: testActions(),
    ...options,
  });
  await engine.start();
  return engine;
}
