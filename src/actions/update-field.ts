import { ConfigReader } from './config-reader.js';
import {
  findEntity,
  parameterText,
  requireColumn,
  type ColumnInfo,
  type RelationInfo,
} from './relation-catalog.js';
import { ActionError, type ActionContext, type ActionHandler } from './types.js';
import { triggeringRowKey } from '../model/types.js';
import { sqlState } from '../sql-state.js';
import { catalogType, compile, sql, type SQLQuery } from '../db/sql.js';

const ACTION = 'update_field';

export const UPDATE_OPERATORS = [
  'equals',
  'not_equals',
  'greater_than',
  'less_than',
  'contains',
  'is_null',
  'is_not_null',
  'in',
] as const;
type UpdateOperator = (typeof UPDATE_OPERATORS)[number];

/** Relation kinds an UPDATE can write: tables, partitioned tables, (updatable) views, foreign tables. */
const WRITABLE_KINDS = new Set(['r', 'p', 'v', 'f']);

interface WhereCondition {
  readonly field: string;
  readonly operator: UpdateOperator;
  readonly value: unknown;
}

/** `value::type`, or its text when the type has no = of its own, so the comparison always resolves. */
function comparable(column: ColumnInfo, expression: SQLQuery): SQLQuery {
  return column.hasEquality ? expression : sql`(${expression})::text`;
}

/** One condition over the alias `t`; values are parameters cast to the column's type. */
function conditionSql(column: ColumnInfo, condition: WhereCondition): SQLQuery {
  const target = sql.ident('t', column.name);
  const type = catalogType(column.type);
  const typed = () => sql`${parameterText(condition.value, column)}::${type}`;
  const where = `where condition on "${condition.field}"`;
  switch (condition.operator) {
    case 'is_null':
      return sql`${target} is null`;
    case 'is_not_null':
      return sql`${target} is not null`;
    case 'equals':
      if (condition.value === null) return sql`${target} is null`;
      return sql`${comparable(column, target)} = ${comparable(column, typed())}`;
    case 'not_equals':
      // A null field is not equal to a value, as in trigger conditions.
      if (condition.value === null) return sql`${target} is not null`;
      return sql`${comparable(column, target)} is distinct from ${comparable(column, typed())}`;
    case 'greater_than':
    case 'less_than': {
      if (condition.value === null) {
        throw new ActionError(`${ACTION}: ${where}: operator "${condition.operator}" needs a non-null value`);
      }
      return condition.operator === 'greater_than'
        ? sql`${target} > ${typed()}`
        : sql`${target} < ${typed()}`;
    }
    case 'contains': {
      if (condition.value === null) {
        throw new ActionError(`${ACTION}: ${where}: operator "contains" needs a non-null value`);
      }
      if (column.category === 'A' && column.elementType) {
        return sql`${parameterText(condition.value)}::${catalogType(column.elementType)} = any (${target})`;
      }
      if (column.baseType === 'json' || column.baseType === 'jsonb') {
        return sql`${target}::jsonb @> ${JSON.stringify(condition.value)}::jsonb`;
      }
      return sql`strpos(${target}::text, ${parameterText(condition.value)}::text) > 0`;
    }
    case 'in': {
      if (!Array.isArray(condition.value)) {
        throw new ActionError(`${ACTION}: ${where}: operator "in" needs "value" to be an array`);
      }
      const members = condition.value.map((member) => parameterText(member, column));
      if (!column.hasEquality) return sql`${target}::text = any (${members}::text[])`;
      return sql`${target} = any (${members}::${type}[])`;
    }
  }
}

function parseWhere(raw: unknown): WhereCondition[] {
  if (!Array.isArray(raw) || raw.length === 0) {
    throw new ActionError(`${ACTION}: config.where must be a non-empty array of conditions`);
  }
  return raw.map((item: unknown, index) => {
    const where = `config.where[${index}]`;
    if (typeof item !== 'object' || item === null || Array.isArray(item)) {
      throw new ActionError(`${ACTION}: ${where} must be a JSON object`);
    }
    const condition = item as Record<string, unknown>;
    if (typeof condition.field_name !== 'string' || condition.field_name === '') {
      throw new ActionError(`${ACTION}: ${where}.field_name is missing or not a string`);
    }
    const operator = condition.operator;
    if (typeof operator !== 'string' || !(UPDATE_OPERATORS as readonly string[]).includes(operator)) {
      throw new ActionError(
        `${ACTION}: ${where}: unknown operator ${JSON.stringify(operator)} (known: ${UPDATE_OPERATORS.join(', ')})`,
      );
    }
    const needsValue = operator !== 'is_null' && operator !== 'is_not_null';
    if (needsValue && !Object.hasOwn(condition, 'value')) {
      throw new ActionError(`${ACTION}: ${where}: operator "${operator}" needs a "value"`);
    }
    return {
      field: condition.field_name,
      operator: operator as UpdateOperator,
      value: condition.value ?? null,
    };
  });
}

async function targetRelation(context: ActionContext, entityName: string): Promise<RelationInfo> {
  const entity = await findEntity(context.client, entityName);
  if (!entity) {
    throw new ActionError(
      `${ACTION}: "${entityName}" is not a registered entity; register it with select workflow.register_entity('${entityName}')`,
    );
  }
  if (!entity.isActive) throw new ActionError(`${ACTION}: entity "${entityName}" is inactive`);
  if (!entity.relation) {
    throw new ActionError(`${ACTION}: entity "${entityName}" names no existing table or view`);
  }
  if (!WRITABLE_KINDS.has(entity.relation.kind)) {
    throw new ActionError(`${ACTION}: entity "${entityName}" is not a table or view that can be updated`);
  }
  return entity.relation;
}

/**
 * update_field: sets one column of the triggering row, or of the rows of a registered entity that
 * `where` selects, to a templated value cast to the column's type. Rows that already hold the value
 * are left alone (so a rule that writes its own entity does not chain forever); the result counts
 * the rows that changed.
 *
 *   {"action_type": "update_field", "field": "status", "value": "{{new.status}}-seen"}
 *   {"action_type": "update_field", "target_entity": "inventory.items", "field": "flag", "value": "x",
 *    "where": [{"field_name": "sku", "operator": "equals", "value": "{{sku}}"}]}
 */
export const updateField: ActionHandler = {
  type: ACTION,
  async execute(context: ActionContext) {
    const config = new ConfigReader(ACTION, context.action.config);
    const field = config.string('field');
    if (!Object.hasOwn(context.action.config, 'value')) {
      throw new ActionError(`${ACTION}: config.value is required (null clears the field)`);
    }
    const entityName = config.optionalString('target_entity');
    const ownEntity = `${context.rule.entity.schemaName}.${context.rule.entity.name}`;
    const relation = await targetRelation(context, entityName ?? ownEntity);
    const column = requireColumn(relation, field, 'config.field', ACTION);
    const value = context.renderValue(context.action.config.value);

    const newValue = sql`${parameterText(value, column)}::${catalogType(column.type)}`;
    const conditions: SQLQuery[] = [];
    if (config.has('where')) {
      const where = parseWhere(context.renderValue(config.raw('where')));
      for (const condition of where) {
        const conditionColumn = requireColumn(relation, condition.field, 'config.where field_name', ACTION);
        conditions.push(conditionSql(conditionColumn, condition));
      }
    } else if (entityName !== undefined && `${relation.schema}.${relation.name}` !== ownEntity) {
      // Named either way ("orders" or "sales.orders"), the rule's own table means the triggering row.
      throw new ActionError(`${ACTION}: config.where is required with config.target_entity`);
    } else {
      const key = Object.entries(triggeringRowKey(context.event));
      if (key.length === 0) throw new ActionError(`${ACTION}: the triggering event carries no row key`);
      for (const [name, keyValue] of key) {
        const keyColumn = requireColumn(relation, name, 'row key column', ACTION);
        conditions.push(conditionSql(keyColumn, { field: name, operator: 'equals', value: keyValue }));
      }
    }
    const target = sql.ident('t', column.name);
    conditions.push(sql`${comparable(column, target)} is distinct from ${comparable(column, newValue)}`);
    const entity = `${relation.schema}.${relation.name}`;
    let updated: number;
    try {
      const result = await context.client.query(
        compile(
          sql`update ${sql.ident(relation.schema, relation.name)} as t
                 set ${sql.ident(column.name)} = ${newValue}
               where ${sql.join(conditions, sql` and `)}`,
        ),
      );
      updated = result.rowCount ?? 0;
    } catch (error) {
      // Data exceptions (a value that is not of the column's type) and constraint violations are
      // about this action's input; anything else (a lost connection) propagates as it is.
      const code = sqlState(error);
      if (code !== undefined && /^(22|23)/.test(code)) {
        throw new ActionError(
          `${ACTION}: could not set ${entity}.${field} to ${JSON.stringify(value)}: ${(error as Error).message}`,
          { sqlstate: code },
        );
      }
      throw error;
    }
    return { entity, field, value: value ?? null, updated };
  },
};
