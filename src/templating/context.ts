import { fieldsChanged } from '../conditions/match.js';

type Row = Readonly<Record<string, unknown>>;

/** The parts of a captured event a template can see. */
export interface TemplateEvent {
  readonly id: string | number;
  /** 'manual' for a run queued by workflow.run_rule, whose row is the new row. */
  readonly operation: 'on_create' | 'on_update' | 'on_delete' | 'manual' | 'scheduled';
  readonly rowKey: unknown;
  readonly actorId?: string | null;
  readonly createdAt: string | Date;
  readonly oldRow: Row | null;
  readonly newRow: Row | null;
}

export interface TemplateRule {
  readonly id: string;
  readonly name: string;
}

export interface TemplateEntity {
  readonly id: string;
  readonly name: string;
  readonly schemaName?: string | null;
}

export interface TemplateContextInput {
  readonly event: TemplateEvent;
  readonly rule: TemplateRule;
  readonly entity: TemplateEntity;
  /** Defaults to the current time. */
  readonly now?: Date;
  /** The changed columns of an update, when the caller has worked them out already. */
  readonly changedFields?: readonly string[];
}

/**
 * The data templates render against: `new`, `old`, `changed_fields`, `entity`, `event`, `rule`, `now`,
 * `scheduled_for` (the tick, for a scheduled rule),
 * and the row itself (the new row, or the old one for a delete) spread at the top level so that
 * `{{order_number}}` works. The named keys win over row columns of the same name.
 */
export function buildTemplateContext({
  event,
  rule,
  entity,
  now = new Date(),
  changedFields,
}: TemplateContextInput): Record<string, unknown> {
  const row = event.operation === 'on_delete' ? event.oldRow : event.newRow;
  return {
    ...row,
    // A scheduled rule's tick: one per tick (also in its row), or one per row of the tick.
    ...(event.operation === 'scheduled' ? { scheduled_for: scheduledFor(event.rowKey) } : {}),
    new: event.newRow,
    old: event.oldRow,
    changed_fields:
      event.operation !== 'on_update'
        ? []
        : // A copy: the caller's list also goes into the execution row.
          (changedFields?.slice() ?? fieldsChanged({ ...event, operation: 'on_update' })),
    entity: { id: entity.id, name: entity.name, schema_name: entity.schemaName ?? 'public' },
    event: {
      id: event.id,
      operation: event.operation,
      row_key: event.rowKey,
      actor_id: event.actorId ?? null,
      created_at: isoText(event.createdAt),
    },
    rule: { id: rule.id, name: rule.name },
    now: now.toISOString(),
  };
}

function scheduledFor(rowKey: unknown): unknown {
  return typeof rowKey === 'object' && rowKey !== null
    ? (rowKey as { scheduled_for?: unknown }).scheduled_for
    : undefined;
}

/** Dates become ISO text, which prints readably and which `formatDate` accepts. */
function isoText(value: string | Date): string {
  return value instanceof Date ? value.toISOString() : value;
}
