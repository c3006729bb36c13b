import type pg from 'pg';
import { ACTION, readAllocationConfig, type AllocationConfig } from './allocation/config.js';
import {
  applyAllocation,
  planAllocation,
  requiresIntegers,
  resolveInventory,
  type Inventory,
  type PlannedProduct,
} from './allocation/inventory.js';
import { isIntegralDecimal, toNumber } from './allocation/quantity.js';
import { readRequest, type RequestLine } from './allocation/request.js';
import { ActionError, type ActionContext, type ActionHandler } from './types.js';
import { triggeringRowKey } from '../model/types.js';

/**
 * Every allocation takes this one transaction-level advisory lock before it locks inventory rows
 * (workflow.release_expired_reservations takes it too). A daemon handles many events in one
 * transaction, and row locks taken for one event are held until that transaction commits, so two
 * daemons allocating different products in opposite orders would deadlock; with this lock they
 * queue instead. Allocations therefore run one transaction at a time across all daemons, while
 * everything else the daemons do stays concurrent.
 */
const LOCK_KEY_SQL = `hashtextextended('rulebook.allocate_inventory', 0)`;

export type AllocationStatus = 'success' | 'partial' | 'failed';

interface AllocatedItem {
  product: unknown;
  lot: unknown;
  lot_key: Record<string, unknown>;
  location: unknown;
  quantity: number | null;
  unit_cost: number | null;
  received: unknown;
  expiry: unknown;
}

interface FailedItem {
  product: unknown;
  requested: number | null;
  available: number | null;
  short_by: number | null;
}

const FIND_RESULT = `
select id, allocation_data from workflow.allocation_results where idempotency_key = $1`;

// Totals are summed here, in numeric, rather than in floating point; times come from the database.
const STORE_RESULT = `
with data as (select $2::jsonb as d)
insert into workflow.allocation_results (id, idempotency_key, allocation_data, created_date)
select gen_random_uuid(), $1,
       d || jsonb_build_object(
         'allocated_at', now(),
         'expires_at', case when $3::float8 is not null then now() + $3::float8 * interval '1 hour' end,
         'totals', jsonb_build_object(
           'requested', (select coalesce(sum((x ->> 'quantity')::numeric), 0) from jsonb_array_elements(d -> 'requested') x),
           'allocated', (select coalesce(sum((x ->> 'quantity')::numeric), 0) from jsonb_array_elements(d -> 'allocated_items') x),
           'short', (select coalesce(sum((x ->> 'short_by')::numeric), 0) from jsonb_array_elements(d -> 'failed_items') x),
           'cost', (select sum((x ->> 'quantity')::numeric * (x ->> 'unit_cost')::numeric)
                      from jsonb_array_elements(d -> 'allocated_items') x),
           'products', jsonb_array_length(d -> 'requested'),
           'lots', jsonb_array_length(d -> 'allocated_items'))),
       now()
  from data
on conflict (idempotency_key) do nothing
returning id, allocation_data`;

/** The idempotency key: the same event and action always name the same allocation. */
export function allocationKey(eventId: string, actionId: string): string {
  return `${ACTION}:${eventId}:${actionId}`;
}

interface Decision {
  status: AllocationStatus;
  allocated: AllocatedItem[];
  failed: FailedItem[];
  takes: { rowTid: string; take: string }[];
  warnings: string[];
}

function decide(products: readonly PlannedProduct[], config: AllocationConfig): Decision {
  const warnings: string[] = [];
  const failed: FailedItem[] = [];
  const candidates: { item: AllocatedItem; rowTid: string; take: string }[] = [];
  for (const product of products) {
    const expired = product.lots.filter((lot) => lot.expired).length;
    if (expired > 0) warnings.push(`product ${product.productText}: skipped ${expired} expired lot(s)`);
    if (product.lots.length === 0) warnings.push(`product ${product.productText}: no inventory rows`);
    if (toNumber(product.shortBy) !== 0) {
      failed.push({
        product: product.product,
        requested: toNumber(product.requested),
        available: toNumber(product.available),
        short_by: toNumber(product.shortBy),
      });
    }
    for (const lot of product.lots) {
      if (toNumber(lot.take) === 0) continue;
      candidates.push({
        rowTid: lot.rowTid,
        take: lot.take,
        item: {
          product: product.product,
          lot: lot.lot,
          lot_key: lot.lotKey,
          location: lot.location,
          quantity: toNumber(lot.take),
          unit_cost: toNumber(lot.unitCost),
          received: lot.received,
          expiry: lot.expiry,
        },
      });
    }
  }
  const short = failed.length > 0;
  // All or nothing: a shortfall on any product allocates nothing at all.
  const allocate = !short || (config.allowPartial && candidates.length > 0);
  if (short && !config.allowPartial && candidates.length > 0) {
    warnings.push('allow_partial is false and the request cannot be met in full, so nothing was allocated');
  }
  const chosen = allocate ? candidates : [];
  const status: AllocationStatus = !short ? 'success' : allocate ? 'partial' : 'failed';
  return {
    status,
    allocated: chosen.map((candidate) => candidate.item),
    failed,
    takes: chosen.map(({ rowTid, take }) => ({ rowTid, take })),
    warnings,
  };
}

async function storedResult(client: pg.ClientBase, key: string) {
  const { rows } = await client.query<{ id: string; allocation_data: Record<string, unknown> }>({
    name: 'rulebook.allocation_find',
    text: FIND_RESULT,
    values: [key],
  });
  return rows[0];
}

function replayed(row: { id: string; allocation_data: Record<string, unknown> }) {
  return { allocation_id: row.id, replayed: true, ...row.allocation_data };
}

function checkIntegral(inventory: Inventory, lines: readonly RequestLine[]): void {
  if (!requiresIntegers(inventory)) return;
  const fractional = lines.find((line) => !isIntegralDecimal(line.quantity));
  if (fractional) {
    throw new ActionError(
      `${ACTION}: product ${fractional.product}: quantity ${fractional.quantity} is not a whole number, but ` +
        `${inventory.relation.schema}.${inventory.relation.name}.${inventory.target.name} is ${inventory.target.type}`,
    );
  }
}

/**
 * allocate_inventory: takes stock for the products the triggering row (or its line items) asks for,
 * lot by lot in the strategy's order, under row locks, and records the outcome in
 * workflow.allocation_results under the key allocate_inventory:<event id>:<action id>. Handling the
 * same event again (a redelivery, workflow.retry_event, a replayed copy) returns the stored result
 * and changes nothing.
 *
 * A shortfall is not an action failure: the result says status "failed" (nothing allocated) or
 * "partial" (allow_partial), the execution succeeds, and the result row is an event other rules can
 * react to. Throwing would roll back the action's savepoint and lose the record. Bad configuration
 * and bad request data (an unknown column, a product that is not of the product column's type) are
 * action failures, and nothing is recorded for them.
 */
export const allocateInventory: ActionHandler = {
  type: ACTION,
  async execute(context: ActionContext) {
    const client = context.client;
    const config = readAllocationConfig(context.action.config);
    const key = allocationKey(context.event.id, context.action.id);
    const earlier = await storedResult(client, key);
    if (earlier) return replayed(earlier);

    const inventory = await resolveInventory(client, config);
    const request = await readRequest(context, config);
    checkIntegral(inventory, request.lines);
    if (request.lines.length === 0) request.warnings.push('nothing to allocate');

    let products: PlannedProduct[] = [];
    if (request.lines.length > 0) {
      await client.query(`select pg_advisory_xact_lock(${LOCK_KEY_SQL})`);
      products = await planAllocation(client, inventory, config, request.lines);
    }
    const decision = decide(products, config);

    const entity = context.rule.entity;
    const { relation } = inventory;
    const data = {
      status: decision.status,
      idempotency_key: key,
      event_id: context.event.id,
      rule_id: context.rule.id,
      action_id: context.action.id,
      execution_id: context.executionId,
      source: { entity: `${entity.schemaName}.${entity.name}`, row_key: triggeringRowKey(context.event) },
      inventory: {
        table: `${relation.schema}.${relation.name}`,
        schema: relation.schema,
        name: relation.name,
        quantity_column: inventory.target.name,
        primary_key: relation.primaryKey,
      },
      strategy: config.strategy,
      mode: config.mode,
      allow_partial: config.allowPartial,
      priority: context.renderValue(config.priority) ?? null,
      requested: products.map((product) => ({
        product: product.product,
        quantity: toNumber(product.requested),
      })),
      allocated_items: decision.allocated,
      failed_items: decision.failed,
      warnings: [...request.warnings, ...decision.warnings],
    };
    const expiresInHours =
      config.mode === 'reserve' && decision.status !== 'failed' ? config.reservationHours : null;
    const stored = await client.query<{ id: string; allocation_data: Record<string, unknown> }>({
      name: 'rulebook.allocation_store',
      text: STORE_RESULT,
      values: [key, JSON.stringify(data), expiresInHours],
    });
    const row = stored.rows[0];
    if (!row) {
      // Another transaction stored this key after the first look and has committed (the insert
      // waited for it). Nothing has been written here yet, so its result stands.
      const other = await storedResult(client, key);
      if (!other)
        throw new ActionError(`${ACTION}: the result for ${key} vanished while it was being stored`);
      return replayed(other);
    }
    await applyAllocation(client, inventory, decision.takes);
    context.logger.debug(
      { key, status: decision.status, lots: decision.takes.length },
      'inventory allocated',
    );
    return { allocation_id: row.id, replayed: false, ...row.allocation_data };
  },
};
