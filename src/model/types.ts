/** One captured change (a row of workflow.events) as the engine sees it. */
export interface CapturedEvent {
  readonly id: string;
  readonly entityId: string;
  readonly operation: 'on_create' | 'on_update' | 'on_delete' | 'manual' | 'scheduled';
  readonly rowKey: Record<string, unknown>;
  readonly oldRow: Record<string, unknown> | null;
  readonly newRow: Record<string, unknown> | null;
  readonly txid: string;
  readonly actorId: string | null;
  readonly depth: number;
  readonly createdAt: Date;
  readonly attempts: number;
  /** Set for an event queued by workflow.run_rule: only that rule runs. */
  readonly ruleId: string | null;
}

export interface EntityDefinition {
  readonly id: string;
  readonly name: string;
  readonly schemaName: string;
  readonly isActive: boolean;
}

export interface ActionDefinition {
  readonly id: string;
  readonly name: string;
  readonly executionOrder: number;
  readonly actionType: string;
  /** The template's default_config overlaid by the action's action_config. */
  readonly config: Readonly<Record<string, unknown>>;
  readonly templateId: string | null;
  /** Why the action cannot run (an inactive template), recorded as its failure. */
  readonly problem?: string;
}

export interface RuleDefinition {
  readonly id: string;
  readonly name: string;
  readonly entity: EntityDefinition;
  readonly triggerType: string;
  readonly conditions: unknown;
  readonly matches: (event: CapturedEvent) => boolean;
  readonly actions: readonly ActionDefinition[];
  readonly parentIds: readonly string[];
  /** Why the rule cannot run (its conditions could not be loaded), recorded as its failure. */
  readonly problem?: string;
}

/**
 * The primary key of the row an event is about. A scheduled rule over rows queues one event per
 * row with `{rule_id, scheduled_for, key}` as its row_key (the tick makes it unique); its actions
 * act on `key`, as they would on a captured change of that row.
 */
export function triggeringRowKey(
  event: Pick<CapturedEvent, 'operation' | 'rowKey'>,
): Record<string, unknown> {
  const key = event.operation === 'scheduled' ? event.rowKey.key : undefined;
  return typeof key === 'object' && key !== null && !Array.isArray(key)
    ? (key as Record<string, unknown>)
    : event.rowKey;
}
