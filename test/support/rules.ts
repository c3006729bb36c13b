import type { TestDatabase } from './database.js';

export interface RuleSpec {
  readonly name: string;
  readonly entity: string;
  readonly trigger: 'on_create' | 'on_update' | 'on_delete' | 'scheduled';
  readonly conditions?: unknown[];
  readonly actions?: readonly { name: string; config: Record<string, unknown>; order?: number }[];
  readonly active?: boolean;
}

/** A DBA's user, needed as created_by/updated_by of rules. */
export async function ensureDba(db: TestDatabase): Promise<string> {
  const rows = await db.query<{ id: string }>(
    `insert into core.users (email, name) values ('dba@example.com', 'DBA')
     on conflict (email) do update set name = excluded.name returning id`,
  );
  return rows[0]!.id;
}

/** Registers `schema.table` (idempotent) and returns the entity id. */
export async function registerEntity(db: TestDatabase, table: string): Promise<string> {
  const [schema, name] = table.split('.');
  const existing = await db.query<{ id: string }>(
    'select id from workflow.entities where schema_name = $1 and name = $2',
    [schema, name],
  );
  if (existing[0]) return existing[0].id;
  const rows = await db.query<{ id: string }>('select workflow.register_entity($1) as id', [table]);
  return rows[0]!.id;
}

/** Writes a rule and its actions the way a DBA would, in plain SQL. Returns the rule id. */
export async function createRule(db: TestDatabase, spec: RuleSpec): Promise<string> {
  const dba = await ensureDba(db);
  const entityId = await registerEntity(db, spec.entity);
  const conditions = spec.conditions ? JSON.stringify({ field_conditions: spec.conditions }) : null;
  const rows = await db.query<{ id: string }>(
    `insert into workflow.automation_rules
       (name, entity_id, entity_type_id, trigger_type_id, trigger_conditions, is_active, created_by, updated_by)
     select $1, e.id, e.entity_type_id, t.id, $3::jsonb, $4, $5, $5
       from workflow.entities e, workflow.trigger_types t
      where e.id = $2 and t.name = $6
     returning id`,
    [spec.name, entityId, conditions, spec.active ?? true, dba, spec.trigger],
  );
  const ruleId = rows[0]!.id;
  let order = 1;
  for (const action of spec.actions ?? []) {
    await db.query(
      `insert into workflow.rule_actions (automation_rules_id, name, action_config, execution_order)
       values ($1, $2, $3, $4)`,
      [ruleId, action.name, JSON.stringify(action.config), action.order ?? order++],
    );
  }
  return ruleId;
}
