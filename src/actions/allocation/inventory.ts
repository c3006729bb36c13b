import type pg from 'pg';
import {
  describeRelation,
  isIntegerColumn,
  requireColumn,
  type ColumnInfo,
  type RelationInfo,
} from '../relation-catalog.js';
import { ActionError } from '../types.js';
import { catalogType, compile, sql, type SQLQuery } from '../../db/sql.js';
import { ACTION, type AllocationConfig, type InventoryColumns } from './config.js';
import { sqlState } from '../../sql-state.js';

/** The inventory table with every configured column checked against the catalog. */
export interface Inventory {
  readonly relation: RelationInfo;
  readonly columns: { readonly [K in keyof InventoryColumns]: ColumnInfo | undefined } & {
    readonly product: ColumnInfo;
    readonly onHand: ColumnInfo;
    readonly reserved: ColumnInfo;
  };
  /** The column this run adds its quantities to: `reserved` in reserve mode, else `allocated` or `reserved`. */
  readonly target: ColumnInfo;
}

const TABLE_KINDS = new Set(['r', 'p']);

function checkCategory(column: ColumnInfo | undefined, category: 'N' | 'D', what: string): void {
  if (column && column.category !== category) {
    const wanted = category === 'N' ? 'a number' : 'a date or timestamp';
    throw new ActionError(
      `${ACTION}: config.inventory.columns.${what} "${column.name}" must be ${wanted}, but it is ${column.type}`,
    );
  }
}

export async function resolveInventory(client: pg.ClientBase, config: AllocationConfig): Promise<Inventory> {
  const relation = await describeRelation(client, config.table);
  if (!relation) {
    throw new ActionError(
      `${ACTION}: config.inventory.table "${config.table}" is not an existing table (write it as in SQL: schema.table)`,
    );
  }
  if (!TABLE_KINDS.has(relation.kind)) {
    throw new ActionError(`${ACTION}: config.inventory.table "${config.table}" is not a table`);
  }
  if (relation.primaryKey.length === 0) {
    throw new ActionError(
      `${ACTION}: inventory table ${relation.schema}.${relation.name} has no primary key; allocations name lots by it`,
    );
  }
  const where = 'config.inventory.columns';
  const column = (name: string | undefined, key: string) =>
    name === undefined ? undefined : requireColumn(relation, name, `${where}.${key}`, ACTION);
  const { columns: names } = config;
  const columns = {
    product: requireColumn(relation, names.product, `${where}.product`, ACTION),
    onHand: requireColumn(relation, names.onHand, `${where}.on_hand`, ACTION),
    reserved: requireColumn(relation, names.reserved, `${where}.reserved`, ACTION),
    allocated: column(names.allocated, 'allocated'),
    location: column(names.location, 'location'),
    received: column(names.received, 'received'),
    expiry: column(names.expiry, 'expiry'),
    unitCost: column(names.unitCost, 'unit_cost'),
    lot: column(names.lot, 'lot'),
  };
  checkCategory(columns.onHand, 'N', 'on_hand');
  checkCategory(columns.reserved, 'N', 'reserved');
  checkCategory(columns.allocated, 'N', 'allocated');
  checkCategory(columns.unitCost, 'N', 'unit_cost');
  checkCategory(columns.received, 'D', 'received');
  checkCategory(columns.expiry, 'D', 'expiry');
  const target = config.mode === 'allocate' && columns.allocated ? columns.allocated : columns.reserved;
  return { relation, columns, target };
}

/** What one lot contributes to one product's request. */
export interface PlannedLot {
  readonly rowTid: string;
  readonly lotKey: Record<string, unknown>;
  readonly lot: unknown;
  readonly location: unknown;
  readonly received: unknown;
  readonly expiry: unknown;
  readonly unitCost: string | null;
  readonly expired: boolean;
  readonly available: string;
  readonly take: string;
}

export interface PlannedProduct {
  /** The product as JSON, in its column's type (a number stays a number). */
  readonly product: unknown;
  readonly productText: string;
  readonly requested: string;
  readonly available: string;
  readonly shortBy: string;
  readonly lots: PlannedLot[];
}

interface PlanRow {
  product: unknown;
  product_text: string;
  requested: string;
  product_available: string;
  short_by: string;
  row_tid: string | null;
  lot_key: Record<string, unknown> | null;
  lot: unknown;
  location: unknown;
  received: unknown;
  expiry: unknown;
  unit_cost: string | null;
  expired: boolean | null;
  available: string | null;
  take: string | null;
}

/** The ORDER BY that picks lots for a strategy, over the `sort_key` the plan selects. */
function strategyOrder(config: AllocationConfig): SQLQuery {
  return config.strategy === 'lifo' ? sql`desc nulls last` : sql`asc nulls last`;
}

function sortColumn(inventory: Inventory, config: AllocationConfig): ColumnInfo {
  const { columns } = inventory;
  const column =
    config.strategy === 'fifo' || config.strategy === 'lifo'
      ? columns.received
      : config.strategy === 'nearest_expiry'
        ? columns.expiry
        : columns.unitCost;
  // readAllocationConfig insists on the strategy's column, and resolveInventory resolved it.
  if (!column) throw new ActionError(`${ACTION}: strategy "${config.strategy}" has no column to sort by`);
  return column;
}

/**
 * Locks every inventory row of the requested products, in primary-key order so that two
 * transactions never wait for each other's rows in opposite orders, and works out what each lot
 * would give: lots are taken in the strategy's order, skipping expired ones, each for as much as it
 * has available (on hand less reserved and allocated) until the request is met. Nothing is written.
 */
export async function planAllocation(
  client: pg.ClientBase,
  inventory: Inventory,
  config: AllocationConfig,
  request: readonly { product: string; quantity: string }[],
): Promise<PlannedProduct[]> {
  const { columns, relation } = inventory;
  const col = (column: ColumnInfo) => sql.ident('i', column.name);
  const json = (column: ColumnInfo | undefined) =>
    column ? sql`to_jsonb(${col(column)})` : sql`'null'::jsonb`;
  const lotKey = sql`jsonb_build_object(${sql.join(
    relation.primaryKey.map((name) => sql`${name}::text, ${sql.ident('i', name)}`),
    sql`, `,
  )})`;
  const committed = sql.join(
    [columns.reserved, columns.allocated]
      .filter((column): column is ColumnInfo => column !== undefined)
      .filter((column, index, all) => all.findIndex((other) => other.name === column.name) === index)
      .map((column) => sql`coalesce(${col(column)}, 0)`),
    sql` + `,
  );
  const expired = columns.expiry
    ? columns.expiry.baseType === 'date'
      ? sql`coalesce(${col(columns.expiry)} < current_date, false)`
      : sql`coalesce(${col(columns.expiry)} <= now(), false)`
    : sql`false`;
  const productList = request.map((line) => line.product);
  const quantityList = request.map((line) => line.quantity);
  const plan = sql`
with request as (
  select r.product::${catalogType(columns.product.type)} as product, r.quantity, r.ord
    from unnest(${productList}::text[], ${quantityList}::numeric[]) with ordinality as r (product, quantity, ord)
), locked as materialized (
  select i.ctid as row_tid, ${lotKey} as lot_key, ${col(columns.product)} as product,
         ${json(columns.location)} as location, ${json(columns.lot)} as lot,
         ${json(columns.received)} as received, ${json(columns.expiry)} as expiry,
         ${columns.unitCost ? sql`${col(columns.unitCost)}::numeric` : sql`null::numeric`} as unit_cost,
         ${col(sortColumn(inventory, config))} as sort_key,
         ${expired} as expired,
         greatest(coalesce(${col(columns.onHand)}, 0) - (${committed}), 0)::numeric as on_hand_free
    from ${sql.ident(relation.schema, relation.name)} as i
   where ${col(columns.product)} = any (select product from request)
   order by ${sql.join(
     relation.primaryKey.map((name) => sql.ident('i', name)),
     sql`, `,
   )}
     for update of i
), ranked as (
  select l.*, case when l.expired then 0 else l.on_hand_free end as available,
         row_number() over w as pick,
         coalesce(sum(case when l.expired then 0 else l.on_hand_free end) over before, 0) as before,
         sum(case when l.expired then 0 else l.on_hand_free end) over (partition by l.product) as product_available
    from locked l
  window w as (partition by l.product order by l.sort_key ${strategyOrder(config)}, l.lot_key),
         before as (w rows between unbounded preceding and 1 preceding)
)
select to_jsonb(q.product) as product, q.product::text as product_text, q.quantity::text as requested,
       coalesce(k.product_available, 0)::text as product_available,
       greatest(q.quantity - coalesce(k.product_available, 0), 0)::text as short_by,
       k.row_tid::text, k.lot_key, k.lot, k.location, k.received, k.expiry, k.unit_cost::text, k.expired,
       k.available::text, least(k.available, greatest(q.quantity - k.before, 0))::text as take
  from request q
  left join ranked k on k.product = q.product
 order by q.ord, k.pick`;
  let rows: PlanRow[];
  try {
    rows = (await client.query<PlanRow>(compile(plan))).rows;
  } catch (error) {
    if (sqlState(error)?.startsWith('22')) {
      throw new ActionError(
        `${ACTION}: a requested product is not a valid ${columns.product.type}: ${(error as Error).message}`,
      );
    }
    throw error;
  }
  const products: PlannedProduct[] = [];
  for (const row of rows) {
    let product = products.at(-1);
    if (!product || product.productText !== row.product_text) {
      product = {
        product: row.product,
        productText: row.product_text,
        requested: row.requested,
        available: row.product_available,
        shortBy: row.short_by,
        lots: [],
      };
      products.push(product);
    }
    if (row.row_tid === null) continue;
    product.lots.push({
      rowTid: row.row_tid,
      lotKey: row.lot_key ?? {},
      lot: row.lot,
      location: row.location,
      received: row.received,
      expiry: row.expiry,
      unitCost: row.unit_cost,
      expired: row.expired === true,
      available: row.available ?? '0',
      take: row.take ?? '0',
    });
  }
  return products;
}

/** Adds each lot's take to the target column; every planned row must still be there (it is locked). */
export async function applyAllocation(
  client: pg.ClientBase,
  inventory: Inventory,
  takes: readonly { rowTid: string; take: string }[],
): Promise<void> {
  if (takes.length === 0) return;
  const { relation, target } = inventory;
  const result = await client.query(
    compile(
      sql`update ${sql.ident(relation.schema, relation.name)} as i
             set ${sql.ident(target.name)} = coalesce(${sql.ident('i', target.name)}, 0) + v.take
            from unnest(${takes.map((take) => take.rowTid)}::tid[], ${takes.map((take) => take.take)}::numeric[])
                 as v (row_tid, take)
           where i.ctid = v.row_tid`,
    ),
  );
  if (result.rowCount !== takes.length) {
    throw new ActionError(
      `${ACTION}: expected to update ${takes.length} inventory rows but updated ${result.rowCount ?? 0}; nothing was allocated`,
    );
  }
}

export function requiresIntegers(inventory: Inventory): boolean {
  return isIntegerColumn(inventory.target);
}
