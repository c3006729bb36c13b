import pg from 'pg';
import { createToken } from '../admin/tokens.js';
import { AdminError } from '../admin/errors.js';
import { sqlState } from '../sql-state.js';
import { DEMO_DBA, DEMO_ROLE, DEMO_RULES, DEMO_SCHEMAS, DEMO_SQL, DEMO_STAFF } from './demo-sql.js';

/** Serialises concurrent `rulebook demo` runs on one database, so that two never load it twice. */
const DEMO_LOCK = 7_283_104_552;

/** How long the demo's staff token lives: long enough for a tour, not forever. */
const TOKEN_LIFETIME_MS = 30 * 86_400_000;

export interface LoadedDemo {
  /** False when the demo was there already; nothing was changed then. */
  readonly loaded: boolean;
  readonly staffEmail: string;
  /** The new staff token, shown once; only on a first load. */
  readonly token: string | undefined;
}

export interface DroppedDemo {
  /** False when there was no demo to drop. */
  readonly dropped: boolean;
  readonly rules: number;
  readonly entities: number;
  readonly alerts: number;
  readonly deliveries: number;
  readonly allocations: number;
  readonly users: number;
}

const UNIQUE_VIOLATION = '23505';

async function withClient<T>(databaseUrl: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end().catch(() => {});
  }
}

/** Runs `work` in a transaction holding the demo's lock, which the commit or rollback releases. */
async function inDemoTransaction<T>(client: pg.Client, work: () => Promise<T>): Promise<T> {
  await client.query('begin');
  try {
    await client.query('select pg_advisory_xact_lock($1)', [DEMO_LOCK]);
    const result = await work();
    await client.query('commit');
    return result;
  } catch (error) {
    await client.query('rollback').catch(() => {});
    throw error;
  }
}

async function demoRuleCount(client: pg.Client): Promise<number> {
  const { rows } = await client.query<{ count: number }>(
    `select count(*)::int as count from workflow.automation_rules r
       join workflow.entities e on e.id = r.entity_id
      where e.schema_name = any($1::text[]) and r.name = any($2::text[])`,
    [DEMO_SCHEMAS, Object.values(DEMO_RULES)],
  );
  return rows[0]!.count;
}

async function presentSchemas(client: pg.Client): Promise<string[]> {
  const { rows } = await client.query<{ nspname: string }>(
    'select nspname from pg_catalog.pg_namespace where nspname = any($1::text[]) order by nspname',
    [DEMO_SCHEMAS],
  );
  return rows.map((row) => row.nspname);
}

/** Explains why the demo's script failed where a person can do something about it. */
function explainLoadError(error: unknown): never {
  if (sqlState(error) === UNIQUE_VIOLATION) {
    const detail = (error as pg.DatabaseError).detail ?? (error as Error).message;
    throw new AdminError(
      `the demo cannot be loaded: something it creates exists already (${detail}). The demo needs ` +
        `the role "${DEMO_ROLE}", the users ${DEMO_DBA.email} and ${DEMO_STAFF.email}, and the entity ` +
        'names orders, items and order_summary; load it into a database without them',
      { cause: error },
    );
  }
  if (sqlState(error) === '42P01' || sqlState(error) === '3F000') {
    throw new AdminError(
      `the database is missing rulebook's tables (${(error as Error).message}); run \`rulebook migrate\` first`,
      { cause: error },
    );
  }
  throw error;
}

/**
 * Loads the demo (DEMO_SQL) and issues a token for its staff user, in one transaction: either all of
 * it is there afterwards or none. When the demo is loaded already, changes nothing.
 */
export async function loadDemo(databaseUrl: string): Promise<LoadedDemo> {
  return withClient(databaseUrl, (client) =>
    inDemoTransaction(client, async () => {
      const schemas = await presentSchemas(client);
      if (schemas.length > 0) {
        const rules = await demoRuleCount(client);
        if (schemas.length === DEMO_SCHEMAS.length && rules === Object.keys(DEMO_RULES).length) {
          return { loaded: false, staffEmail: DEMO_STAFF.email, token: undefined };
        }
        throw new AdminError(
          `the demo is only partly there (schemas ${schemas.join(', ')}, ${rules} of ` +
            `${Object.keys(DEMO_RULES).length} rules); run \`rulebook demo --drop\`, then \`rulebook demo\``,
        );
      }
      try {
        await client.query(DEMO_SQL);
      } catch (error) {
        explainLoadError(error);
      }
      const created = await createToken(client, {
        email: DEMO_STAFF.email,
        name: 'demo',
        expiresInMs: TOKEN_LIFETIME_MS,
      });
      return { loaded: true, staffEmail: DEMO_STAFF.email, token: created.token };
    }),
  );
}

// Everything the demo made, and everything its rules caused, in the order foreign keys allow.
// Alerts take their recipients and acknowledgments along (on delete cascade), deliveries their
// reads, users their tokens and role memberships; deleting an entity removes its triggers.
// $1: the demo's rule ids, $2: its entity ids.
const DELETE_ALERTS = 'delete from workflow.alerts where source_rule_id = any($1::uuid[])';
const DELETE_DELIVERIES = `
delete from workflow.notification_deliveries where rule_id = any($1::uuid[]) returning notification_id`;
// A payload is shared by its deliveries; one still used by a delivery outside the demo stays.
const DELETE_PAYLOADS = `
delete from workflow.notification_payloads p
 where p.id = any($1::uuid[])
   and not exists (select 1 from workflow.notification_deliveries d where d.notification_id = p.id)`;
const DELETE_ALLOCATIONS = `
delete from workflow.allocation_results where allocation_data ->> 'rule_id' = any($1::text[])`;
const DELETE_EXECUTIONS =
  'delete from workflow.automation_executions where automation_rules_id = any($1::uuid[])';
const DELETE_EVENTS =
  'delete from workflow.events where entity_id = any($2::uuid[]) or rule_id = any($1::uuid[])';
const DELETE_DEPENDENCIES = `
delete from workflow.rule_dependencies where parent_rule_id = any($1::uuid[]) or child_rule_id = any($1::uuid[])`;
const DELETE_ACTIONS = 'delete from workflow.rule_actions where automation_rules_id = any($1::uuid[])';
const DELETE_RULES = 'delete from workflow.automation_rules where id = any($1::uuid[])';
const DELETE_ENTITIES = 'delete from workflow.entities where id = any($1::uuid[])';

const FOREIGN_KEY_VIOLATION = '23503';

/**
 * Removes the demo: its rules and everything they caused (alerts, deliveries, allocations,
 * executions, queued events), its entities (and so their triggers), its schemas, users, tokens and
 * role. In one transaction; on a database without the demo it changes nothing.
 */
export async function dropDemo(databaseUrl: string): Promise<DroppedDemo> {
  return withClient(databaseUrl, (client) =>
    inDemoTransaction(client, async () => {
      const { rows: entities } = await client.query<{ id: string }>(
        'select id from workflow.entities where schema_name = any($1::text[])',
        [DEMO_SCHEMAS],
      );
      const entityIds = entities.map((row) => row.id);
      // The demo's rules are those on its entities, including any a person added during the tour.
      const { rows: rules } = await client.query<{ id: string }>(
        'select id from workflow.automation_rules where entity_id = any($1::uuid[])',
        [entityIds],
      );
      const ruleIds = rules.map((row) => row.id);
      const count = async (sql: string, values: unknown[]) => (await client.query(sql, values)).rowCount ?? 0;
      try {
        const alerts = await count(DELETE_ALERTS, [ruleIds]);
        const deliveries = await client.query<{ notification_id: string }>(DELETE_DELIVERIES, [ruleIds]);
        await client.query(DELETE_PAYLOADS, [
          [...new Set(deliveries.rows.map((row) => row.notification_id))],
        ]);
        const allocations = await count(DELETE_ALLOCATIONS, [ruleIds]);
        await client.query(DELETE_EXECUTIONS, [ruleIds]);
        await client.query(DELETE_EVENTS, [ruleIds, entityIds]);
        await client.query(DELETE_DEPENDENCIES, [ruleIds]);
        await client.query(DELETE_ACTIONS, [ruleIds]);
        const ruleCount = await count(DELETE_RULES, [ruleIds]);
        const entityCount = await count(DELETE_ENTITIES, [entityIds]);
        const schemas = await presentSchemas(client);
        for (const schema of schemas) {
          await client.query(`drop schema ${pg.escapeIdentifier(schema)} cascade`);
        }
        const users = await count('delete from core.users where email = any($1::text[])', [
          [DEMO_DBA.email, DEMO_STAFF.email],
        ]);
        const roles = await count('delete from core.roles where name = $1', [DEMO_ROLE]);
        return {
          dropped: entityIds.length + schemas.length + users + roles > 0,
          rules: ruleCount,
          entities: entityCount,
          alerts,
          deliveries: deliveries.rowCount ?? 0,
          allocations,
          users,
        };
      } catch (error) {
        if (sqlState(error) === FOREIGN_KEY_VIOLATION) {
          throw new AdminError(
            `the demo cannot be dropped: something outside it refers to it (${(error as Error).message}); ` +
              'remove that first (nothing was dropped)',
            { cause: error },
          );
        }
        throw error;
      }
    }),
  );
}
